"""The style score at every checkpoint save, and the best checkpoint kept: mmengine's own validation.

Imported by the XTuner configs (xtuner_configs/*.py, PART 3-5); needs the train env. mmengine validates
at every ``train_cfg.val_interval`` iterations and at the last one (the configs set it to the checkpoint
interval, so every checkpoint gets a score: the save comes first, in ``after_train_iter``, then the
validation). What each piece does:

    StyleValPrompts  the validation split's prompts in every style (style_metrics.prompts_in_every_style),
                     rendered by style_tune.core.prompts as training and inference render them, and
                     tokenised as XTuner tokenises a training prompt
    StyleValLoop     mmengine's ValLoop, except that a batch is answered by the model's ``generate``
                     (greedy, a fixed token budget, left-padded batches): XTuner's model ``val_step``
                     returns logits only. Each process answers its share of the prompts (mmengine's
                     DefaultSampler); the torch random state is restored after it, so validating never
                     changes training.
    StyleScoreMetric an mmengine metric: style_metrics.score_replies with a StyleJudge trained on the
                     train split, exactly what `make eval-style` computes; mmengine's Evaluator gathers
                     the replies of every process and scores them once, on rank 0. Its ``sane_margin``
                     is the checkpoint rule (below) as one number.
    StyleScoreHook   writes WORK_DIR/style_scores.jsonl (rank 0), logs the scores and the best checkpoint
                     and why, and on a resumed run scores the checkpoint it resumed from when a kill came
                     between that checkpoint's save and its score.

The best checkpoint: the highest ``style_margin`` among the checkpoints whose ``sane_rate`` is at least
``min_sane_rate``; ties keep the earlier. ``sane_margin`` is style_margin where sane_rate passes and NaN
where it does not; mmengine's CheckpointHook (``save_best="style/sane_margin", rule="greater"``) keeps
the checkpoint with the greatest one as ``best_style_sane_margin_iter_N.pth``: it compares strictly
(a tie keeps the earlier) and NaN is greater than nothing (a degenerate checkpoint never wins, however
high its style_accuracy). That file is not an ``iter_*.pth``, so ``max_keep_ckpts`` never removes it;
mmengine keeps the best score and file in its message hub, which every checkpoint carries: a resumed run
continues the same record.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from mmengine.dist import broadcast_object_list, get_dist_info, is_distributed, is_main_process
from mmengine.evaluator import BaseMetric
from mmengine.hooks import CheckpointHook, Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import ValLoop
from mmengine.runner.amp import autocast
from torch.utils.data import Dataset

from style_tune.core.io import write_atomically
from style_tune.core.prompts import STOP_WORDS, STYLE_SLUGS, STYLES, render_chatml
from style_tune.core.train_logs import STYLE_SCORES, style_scores

#: What the metric reports, after mmengine's prefix "style/" (scalars.json, TensorBoard): the headline,
#: the margin, sanity, accuracy per style, and the checkpoint rule's number.
PREFIX = "style"
REPORTED = ("style_accuracy", "style_margin", "sane_rate",
            *(f"style_accuracy_{STYLE_SLUGS[style]}" for style in STYLES))
SELECTION = "sane_margin"
#: CheckpointHook's ``save_best`` key and the file name it gives the best checkpoint.
SAVE_BEST = f"{PREFIX}/{SELECTION}"
BEST_FILE = re.compile(rf"^best_{PREFIX}_{SELECTION}_iter_(\d+)\.pth$")
#: Where each checkpoint's replies go (one JSON object per prompt), beside the record.
REPLIES_DIR = "style_replies"
#: Replies per style shown in the log at each score (all of them are in REPLIES_DIR).
LOGGED_REPLIES = 2


def sane_margin(metrics: dict[str, float], min_sane_rate: float) -> float:
    """The checkpoint rule as one number: style_margin when sane_rate >= min_sane_rate, else NaN (which
    CheckpointHook's strict ``>`` never prefers to anything)."""
    return metrics["style_margin"] if metrics["sane_rate"] >= min_sane_rate else math.nan


def rule_text(min_sane_rate: float) -> str:
    """The rule, in words (the log, the record, docs)."""
    return (f"the highest style_margin among the checkpoints whose sane_rate is at least {min_sane_rate:g} "
            "(ties keep the earlier)")


# ------------------------------------------------------------------------------------- the prompts

class StyleValPrompts(Dataset):
    """The validation prompts of a split file (:func:`prompts_in_every_style`), each with its ``prompt``,
    the ChatML text the model answers, rendered by :func:`style_tune.core.prompts.render_chatml`, and its
    ``input_ids`` (:func:`prompt_ids`). ``tokenizer``: the config's (a config dict, built by XTuner's
    BUILDER, or a tokenizer); ``limit`` > 0: that many user prompts, drawn with ``seed``."""

    def __init__(self, path: str, tokenizer: Any, limit: int = 0, seed: int = 0) -> None:
        from xtuner.registry import BUILDER

        from style_tune.eval.style_metrics import prompts_in_every_style

        if not Path(path).is_file():
            raise FileNotFoundError(f"validation split {path} not found: `make split` writes it beside "
                                    "train.json (STYLE_TUNE_VAL_DATA / make train VAL_DATA= names another)")
        self.path = path
        self.tokenizer = BUILDER.build(tokenizer) if isinstance(tokenizer, dict) else tokenizer
        self.mode, self.samples = prompts_in_every_style(path, limit=limit, seed=seed)
        for sample in self.samples:
            sample["mode"] = self.mode
            sample["prompt"] = render_chatml([{"role": "system", "content": sample["system"]},
                                              {"role": "user", "content": sample["input"]}],
                                             add_generation_prompt=True)
            sample["input_ids"] = prompt_ids(self.tokenizer, sample["prompt"])

    @property
    def metainfo(self) -> dict[str, Any]:
        return {"split": self.path, "mode": self.mode, "prompts": len(self.samples)}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        return self.samples[index]


def as_list(batch: Sequence[dict]) -> list[dict]:
    """The val dataloader's collate function: a batch is the list of its samples."""
    return list(batch)


# ------------------------------------------------------------------------------------- generating

def prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """A prompt's token ids as XTuner's training tokenises a prompt: the text alone, no special tokens."""
    return tokenizer(prompt, add_special_tokens=False)["input_ids"]


def pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def left_padded(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids and attention_mask of a batch, padded on the left (generate appends on the right)."""
    width = max(len(row) for row in rows)
    input_ids = torch.tensor([[pad] * (width - len(row)) + list(row) for row in rows], dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in rows], dtype=torch.long)
    return input_ids, mask


@contextmanager
def inference_mode(model: Any) -> Iterator[None]:
    """XTuner's model set for generation (no activation checkpointing, the KV cache on), as XTuner's
    EvaluateChatHook does, and put back afterwards."""
    checkpointing = model.llm.is_gradient_checkpointing
    use_cache = model.llm.config.use_cache
    model.activation_checkpointing_disable()
    model.llm.config.use_cache = True
    try:
        yield
    finally:
        if checkpointing:
            model.activation_checkpointing_enable()
        model.llm.config.use_cache = use_cache


def generate_replies(model: Any, tokenizer: Any, prompts: Sequence[Sequence[int]], max_new_tokens: int
                     ) -> list[tuple[str, bool]]:
    """(reply, runaway) per prompt (token ids): greedy replies of XTuner's model (its ``llm``, the adapter
    on), ended at the first stop word (<|im_end|>, <|endoftext|>); runaway when none came within
    max_new_tokens."""
    pad = pad_id(tokenizer)
    input_ids, mask = left_padded(prompts, pad)
    device = next(model.parameters()).device
    stop = [tokenizer.convert_tokens_to_ids(word) for word in STOP_WORDS]
    output = model.llm.generate(
        input_ids=input_ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
        do_sample=False, eos_token_id=stop, pad_token_id=pad,
        # every process steps together until all are done: DeepSpeed ZeRO-3 gathers weights per forward
        synced_gpus=is_distributed(),
    )
    replies = []
    for row in output[:, input_ids.shape[1]:].tolist():
        end = next((i for i, token in enumerate(row) if token in stop), None)
        replies.append((tokenizer.decode(row[:end], skip_special_tokens=True), end is None))
    return replies


@contextmanager
def rng_kept() -> Iterator[None]:
    """The torch random state (CPU and this process's GPU) as it was before: validating draws nothing
    from training's stream (a dataloader iterator draws a seed from it)."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        yield


class StyleValLoop(ValLoop):
    """mmengine's ValLoop with a batch answered by ``generate`` (see the module docstring) on the
    StyleValPrompts of its dataloader (their tokenizer decodes the replies).

    ``max_new_tokens``: the token budget of a reply (a reply that uses it all is a runaway, not sane)."""

    def __init__(self, runner: Any, dataloader: Any, evaluator: Any, max_new_tokens: int,
                 fp16: bool = False) -> None:
        super().__init__(runner, dataloader, evaluator, fp16=fp16)
        self.tokenizer = self.dataloader.dataset.tokenizer
        self.max_new_tokens = max_new_tokens

    def run(self) -> dict:
        started = time.monotonic()
        self.answered = 0
        with rng_kept():
            metrics = super().run()
        rank, world = get_dist_info()
        # one line per process: each answers its share (the scoring is done once, on rank 0)
        print(f"style score: rank {rank} of {world} answered {self.answered} of "
              f"{len(self.dataloader.dataset)} validation prompts in {time.monotonic() - started:.1f} s",
              flush=True)
        return metrics

    @torch.no_grad()
    def run_iter(self, idx: int, data_batch: Sequence[dict]) -> None:
        self.runner.call_hook("before_val_iter", batch_idx=idx, data_batch=data_batch)
        model = self.runner.model.module if is_model_wrapper(self.runner.model) else self.runner.model
        with autocast(enabled=self.fp16), inference_mode(model):  # val_cfg's fp16, as ValLoop.run_iter has it
            replies = generate_replies(model, self.tokenizer, [s["input_ids"] for s in data_batch],
                                       self.max_new_tokens)
        outputs = [{"mode": s["mode"], "input": s["input"], "requested_style": s["requested_style"],
                    "references": s["references"], "reply": reply, "runaway": runaway}
                   for s, (reply, runaway) in zip(data_batch, replies, strict=True)]
        self.answered += len(outputs)
        self.evaluator.process(data_samples=outputs, data_batch=data_batch)
        self.runner.call_hook("after_val_iter", batch_idx=idx, data_batch=data_batch, outputs=outputs)


# ------------------------------------------------------------------------------------- scoring

class StyleScoreMetric(BaseMetric):
    """The project's style metrics of the validation replies (style_metrics.score_replies), reported as
    ``style/<name>`` for the names in REPORTED plus ``style/sane_margin`` (:func:`sane_margin`).

    ``judge_data``: the train split the StyleJudge learns from (built once, on rank 0, at the first score);
    ``min_sane_rate``: the checkpoint rule's sanity threshold. After each score ``last_details`` holds the
    per-reply details (rank 0), which StyleScoreHook writes out."""

    default_prefix = PREFIX

    def __init__(self, judge_data: str, min_sane_rate: float, seed: int = 0, collect_device: str = "cpu",
                 prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.judge_data, self.min_sane_rate, self.seed = judge_data, float(min_sane_rate), seed
        self.judge: Any = None  # a StyleJudge, trained at the first score
        self.last_details: list[dict] = []

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        self.results.extend(data_samples)

    def score(self, results: list[dict]) -> dict:
        """All of score_replies' metrics of the replies, with per-reply ``details``."""
        from style_tune.eval.style_metrics import StyleJudge, score_replies

        if self.judge is None:
            self.judge = StyleJudge.from_split(self.judge_data, seed=self.seed)
        return score_replies(
            [r["reply"] for r in results], [r["references"] for r in results],
            [r["requested_style"] or None for r in results], results[0]["mode"], self.judge,
            users=[r["input"] for r in results], runaway=[r["runaway"] for r in results],
        )

    def compute_metrics(self, results: list) -> dict:
        scores = self.score(results)
        details = scores.pop("details", [])
        self.last_details = [{"input": r["input"], **d} for r, d in zip(results, details, strict=True)]
        metrics = {name: float(scores[name]) for name in REPORTED}
        metrics[SELECTION] = sane_margin(metrics, self.min_sane_rate)
        print(f"style score: {len(results)} replies scored once, on rank 0", flush=True)
        return metrics


# ------------------------------------------------------------------------------------- the record

def record_line(iteration: int, checkpoint: str | None, metrics: dict[str, float], best: dict) -> str:
    """One line of style_scores.jsonl (strict JSON: a NaN is written as null)."""
    clean = {name: (None if math.isnan(v) else v) for name, v in metrics.items()}
    return json.dumps({"iter": iteration, "checkpoint": checkpoint, "metrics": clean, "best": best},
                      ensure_ascii=False, allow_nan=False) + "\n"


class StyleScoreHook(Hook):
    """After each validation: WORK_DIR/style_scores.jsonl gets (or replaces) the line of this iteration,
    WORK_DIR/style_replies/iter_N.jsonl the replies, and the log the scores, a few replies and the best
    checkpoint and why (rank 0). Runs after mmengine's CheckpointHook (priority LOWEST), so the best it
    reports is the one CheckpointHook just kept.

    On a resumed run, before training continues: if the checkpoint it resumed from is a validation point
    and the record has no line for it (the kill came between the save and the score), it is scored now,
    and mmengine's CheckpointHook saves it again with the best it keeps."""

    priority = "LOWEST"

    def before_train(self, runner: Any) -> None:
        if runner.val_loop is None:
            return
        checkpoint_hook = self._checkpoint_hook(runner)
        loop = runner.train_loop
        if checkpoint_hook is not None and checkpoint_hook.interval != loop.val_interval:
            runner.logger.warning(
                f"style score: validation every {loop.val_interval} iterations, checkpoints every "
                f"{checkpoint_hook.interval}: set train_cfg.val_interval and "
                "default_hooks.checkpoint.interval alike for a score per checkpoint")
        if not self._keeps_best(checkpoint_hook):
            runner.logger.warning(
                f"style score: no CheckpointHook keeps the best checkpoint (default_hooks.checkpoint needs "
                f"save_best='{SAVE_BEST}', rule='greater', as the shipped configs have it): the scores are "
                "recorded, but no checkpoint is kept by them and `make convert ITER=best` has none")
        iteration = runner.iter
        if iteration == 0 or not (iteration >= loop.val_begin and (iteration % loop.val_interval == 0
                                                                    or iteration == loop.max_iters)):
            return
        # decided on rank 0, where the record is, for every process: they validate together or not at all
        unscored = [not any(line["iter"] == iteration for line in style_scores(Path(runner.work_dir)))
                    if is_main_process() else None]
        broadcast_object_list(unscored)
        if not unscored[0]:
            return
        runner.logger.info(f"style score: iteration {iteration} was saved but not scored (an interrupted "
                           "run): scoring it now")
        if checkpoint_hook is not None:
            # CheckpointHook saves this iteration's checkpoint again when its score is the best
            checkpoint_hook.last_ckpt = str(Path(checkpoint_hook.out_dir) /
                                            checkpoint_hook.filename_tmpl.format(iteration))
        runner.val_loop.run()

    def after_val_epoch(self, runner: Any, metrics: dict[str, float] | None = None) -> None:
        if not metrics or SAVE_BEST not in metrics or not is_main_process():
            return  # (the other processes' loggers print errors only)
        metric = next((m for m in runner.val_evaluator.metrics if isinstance(m, StyleScoreMetric)), None)
        min_sane_rate = metric.min_sane_rate if metric is not None else math.nan
        iteration = runner.iter
        work_dir = Path(runner.work_dir)
        ours = {name.split("/", 1)[1]: value for name, value in metrics.items()
                if name.startswith(f"{PREFIX}/")}
        checkpoint_hook = self._checkpoint_hook(runner)
        name = checkpoint_hook.filename_tmpl.format(iteration) if checkpoint_hook else f"iter_{iteration}.pth"
        out_dir = Path(checkpoint_hook.out_dir) if checkpoint_hook else work_dir
        checkpoint = name if (out_dir / name).exists() else None
        lines = [line for line in style_scores(work_dir) if line["iter"] < iteration]
        best = self._best(runner, [*lines, {"iter": iteration, "metrics": ours}], min_sane_rate)
        shown = ", ".join(f"{key} {value:.2f}" for key, value in ours.items() if key != SELECTION)
        runner.logger.info(f"style score at iteration {iteration}: {shown}")
        runner.logger.info(f"style score: best checkpoint so far: {best['checkpoint'] or 'none'}: "
                           f"{best['why']}")
        text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
        write_atomically(work_dir / STYLE_SCORES, text + record_line(iteration, checkpoint, ours, best),
                         step="style score")
        if metric is not None and metric.last_details:
            write_atomically(work_dir / REPLIES_DIR / f"iter_{iteration}.jsonl",
                             "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in metric.last_details),
                             step="style score")
            for style in STYLES if metric.last_details[0]["requested"] else (None,):
                shown_replies = [d for d in metric.last_details if d["requested"] == style]
                for detail in shown_replies[:LOGGED_REPLIES]:
                    runner.logger.info(f"style score reply ({style or 'label mode'}): {detail['input']!r} -> "
                                       f"{detail['prediction']!r} (judged {detail['judged']}, "
                                       f"{'sane' if detail['sane'] else ', '.join(detail['problems'])})")

    def after_train(self, runner: Any) -> None:
        lines = style_scores(Path(runner.work_dir))
        if lines and lines[-1]["best"]["checkpoint"]:
            best = lines[-1]["best"]
            runner.logger.info(f"style score: the best checkpoint is {best['checkpoint']} (`make convert "
                               f"ITER=best` converts it): {best['why']}")

    @staticmethod
    def _checkpoint_hook(runner: Any) -> CheckpointHook | None:
        return next((hook for hook in runner.hooks if isinstance(hook, CheckpointHook)), None)

    @staticmethod
    def _keeps_best(hook: CheckpointHook | None) -> bool:
        """Whether HOOK keeps the best checkpoint by the style score (save_best, a key or a list of them)."""
        keys = getattr(hook, "save_best", None)
        return SAVE_BEST in ([keys] if isinstance(keys, str) else list(keys or []))

    @staticmethod
    def _best(runner: Any, lines: list[dict], min_sane_rate: float) -> dict:
        """The best checkpoint CheckpointHook keeps (its message hub's best_ckpt), and why (the record)."""
        hub = runner.message_hub
        name = Path(hub.get_info("best_ckpt")).name if hub.runtime_info.get("best_ckpt") else ""
        match = BEST_FILE.match(name)
        if match is None and not StyleScoreHook._keeps_best(StyleScoreHook._checkpoint_hook(runner)):
            return {"iter": None, "checkpoint": None,
                    "why": f"no CheckpointHook keeps the best checkpoint (save_best='{SAVE_BEST}' is not "
                           "set), so none is kept"}
        if match is None:
            return {"iter": None, "checkpoint": None,
                    "why": f"no checkpoint so far has a sane_rate of at least {min_sane_rate:g}, so none is "
                           f"kept: the rule is {rule_text(min_sane_rate)}"}
        iteration = int(match.group(1))
        scores = next((line["metrics"] for line in lines if line["iter"] == iteration), None)
        why = rule_text(min_sane_rate)
        if scores is not None:
            why = (f"{why}: style_margin {scores['style_margin']:.2f} with sane_rate "
                   f"{scores['sane_rate']:.1f} (style_accuracy {scores['style_accuracy']:.1f})")
        return {"iter": iteration, "checkpoint": name, "why": why}
