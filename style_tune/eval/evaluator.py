"""The project's OpenCompass parts for the style evaluation (eval environment only).

    StyleReplyDataset   test.json (style_tune/data/split.py's rows) -> one sample per distinct prompt:
                        system, input, requested_style, references
    StyleEvaluator      style / sanity / content / fluency scores of the generated replies
                        (style_tune/style_metrics.score_replies, the same code `make score-replies`
                        runs; its module docstring says what each number means)

Importing this module registers the dataset with OpenCompass's LOAD_DATASET registry and the
evaluator with ICL_EVALUATORS; configs refer to them by type, and OpenCompass's task processes import
them again from the dumped config (``style_tune.eval.evaluator.StyleReplyDataset``), so the repository
must be importable there (the eval environment has it on its path: tools/setup_env.sh).
"""

from __future__ import annotations

import random

from datasets import Dataset
from opencompass.datasets.base import BaseDataset
from opencompass.openicl.icl_evaluator import BaseEvaluator
from opencompass.registry import ICL_EVALUATORS, LOAD_DATASET

from style_tune.core import defaults
from style_tune.eval.style_metrics import METRICS, StyleJudge, group_prompts, load_rows, score_replies


@LOAD_DATASET.register_module()
class StyleReplyDataset(BaseDataset):
    """A split file as style-evaluation samples: one per distinct (system text, user input)."""

    @staticmethod
    def load(path: str, mode: str = defaults.MODE, limit: int = 0, seed: int = 0) -> Dataset:
        """``limit`` > 0: that many prompts, drawn with ``seed`` (kept in file order)."""
        samples = group_prompts(load_rows(path), mode)
        if 0 < limit < len(samples):
            keep = sorted(random.Random(seed).sample(range(len(samples)), limit))
            samples = [samples[i] for i in keep]
        return Dataset.from_list(samples)


@ICL_EVALUATORS.register_module()
class StyleEvaluator(BaseEvaluator):
    """Scores replies against the dataset's references with a style judge trained on ``train_path``.

    ``max_out_len`` and ``tokenizer_path``: the generation's token budget and the tokenizer that counts
    a reply's tokens (runaway replies hit the budget); without them runaway_rate is left out.
    """

    def __init__(self, train_path: str, mode: str = defaults.MODE, max_out_len: int | None = None,
                 tokenizer_path: str | None = None, seed: int = 0,
                 pred_postprocessor: dict | None = None) -> None:
        super().__init__(pred_postprocessor=pred_postprocessor)
        if mode not in METRICS:
            raise ValueError(f"unknown mode {mode!r}")
        self.mode, self.max_out_len, self.tokenizer_path = mode, max_out_len, tokenizer_path
        self.judge = StyleJudge.from_split(train_path, seed=seed)

    def _token_counts(self, predictions: list[str]) -> list[int] | None:
        if not (self.max_out_len and self.tokenizer_path):
            return None
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_path)
        return [len(tokenizer(p or "", add_special_tokens=False)["input_ids"]) for p in predictions]

    def score(self, predictions: list[str], references: list[list[str]], test_set: Dataset) -> dict:
        requested = [style or None for style in test_set["requested_style"]]
        return score_replies(
            predictions, references, requested, self.mode, self.judge,
            token_counts=self._token_counts(predictions), max_out_len=self.max_out_len,
            users=list(test_set["input"]),
        )
