"""The pieces of XTuner/mmengine that CPU-only runs (the tiny-model demo and tests) need replaced.

Imported by the CPU configs (xtuner_configs/qwen2_5_tiny_*_cpu.py) and style_tune.train.preference;
needs the train env (xtuner).
"""

from __future__ import annotations

import torch
from mmengine.dist import is_distributed
from mmengine.runner import Runner
from xtuner.model import SupervisedFinetune


class KeepConfigAttention:
    """Mixin for XTuner's model classes: no attention-implementation dispatch.

    Before loading the model, XTuner picks flash/SDPA attention and a dtype by calling
    ``torch.<device>.is_bf16_supported()``; ``torch.cpu`` has no such function, so on a CPU-only
    machine training stops with ``AttributeError``. Here the config's own ``attn_implementation``
    and ``torch_dtype`` are kept as they are.
    """

    @staticmethod
    def _prepare_for_flash_attn(cfg: dict, llm_cfg: object) -> dict:
        return cfg


class CPUSupervisedFinetune(KeepConfigAttention, SupervisedFinetune):
    """XTuner's ``SupervisedFinetune`` without its attention dispatch; everything else is XTuner's code."""


class CPURunner(Runner):
    """mmengine's ``Runner``, able to run under torchrun on a machine without a GPU (gloo).

    With ``--launcher pytorch`` mmengine's ``init_dist`` calls ``torch.cuda.set_device`` before it
    creates the process group, which fails where there is no CUDA device. Here, when no GPU is
    visible, the default process group is created with gloo first; mmengine then finds it initialized
    and goes on with it. With a GPU nothing changes. Everything else is mmengine's code.
    """

    def setup_env(self, env_cfg: dict) -> None:
        if self.distributed and not is_distributed() and not torch.cuda.is_available():
            torch.distributed.init_process_group(backend="gloo")
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
            print(f"CPURunner: no GPU: gloo process group, rank {rank} of {world}", flush=True)
        super().setup_env(env_cfg)
