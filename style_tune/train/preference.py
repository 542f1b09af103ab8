"""XTuner's DPO and ORPO models with one fix: a target token with id 0 counts in the loss.

Imported by the preference configs (xtuner_configs/*_dpo_style*.py, *_orpo_style*.py); needs the train
env (xtuner). XTuner 0.2.0's ``DPO.compute_loss`` and ``ORPO.compute_loss`` shift the labels, map the
ignored positions (-100) to 0 and then take ``labels != 0`` as the mask of the tokens whose
log-probabilities are summed, so every target token whose id *is* 0 drops out of the sequence's
log-probability as if it were prompt or padding. In Qwen2.5's vocabulary id 0 is ``!``: a reply with
``!`` would be scored without it (tests/train/test_preference.py shows the difference). Here the mask is
taken from the labels before that mapping (``!= -100``, the same shift); everything else is XTuner's
code. Sequence parallelism and varlen attention (packed pairs: flash-attn, GPUs only) are refused: the
mask would have to be split and unpacked as XTuner does for its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from xtuner.model.dpo import DPO
from xtuner.model.orpo import ORPO
from xtuner.parallel.sequence import get_sequence_parallel_world_size

from style_tune.train.xtuner_cpu import KeepConfigAttention

IGNORE_INDEX = -100


# What the mixin is mixed into, for the type checker: XTuner's DPO (ORPO has the same two methods).
if TYPE_CHECKING:
    from xtuner.model.dpo import DPO as _PreferenceModel
else:
    _PreferenceModel = object


class TargetTokenMask(_PreferenceModel):
    """Mixin for XTuner's DPO / ORPO: the log-probability mask from the labels' -100, not from id 0."""

    _target_mask: torch.Tensor | None = None

    def compute_loss(self, data: dict, data_samples: list | None = None) -> dict:
        if self.use_varlen_attn or get_sequence_parallel_world_size() > 1:
            raise ValueError("style_tune.train.preference supports neither use_varlen_attn nor sequence "
                             "parallelism (its id-0 mask is not split or unpacked); use XTuner's DPO/ORPO")
        labels = data["labels"]
        # the positions XTuner's compute_loss scores: labels shifted left by one, nothing after the last
        shifted = torch.cat((labels[:, 1:], torch.full_like(labels[:, :1], IGNORE_INDEX)), dim=1)
        self._target_mask = shifted != IGNORE_INDEX
        try:
            return super().compute_loss(data, data_samples)
        finally:
            self._target_mask = None

    def _gather_masked_logits(self, logits: torch.Tensor, labels: torch.Tensor,
                              mask: torch.Tensor) -> torch.Tensor:
        if self._target_mask is not None:
            mask = self._target_mask.to(mask.device)
        return super()._gather_masked_logits(logits, labels, mask)


class StyleDPO(TargetTokenMask, DPO):
    """XTuner's DPO, id-0 targets counted."""


class StyleORPO(TargetTokenMask, ORPO):
    """XTuner's ORPO, id-0 targets counted."""


class CPUStyleDPO(KeepConfigAttention, StyleDPO):
    """StyleDPO on a CPU (the config's attention and dtype kept: style_tune.train.xtuner_cpu)."""


class CPUStyleORPO(KeepConfigAttention, StyleORPO):
    """StyleORPO on a CPU."""
