"""The style score at every save (style_tune/train/style_score.py), piece by piece, on the CPU.

- The checkpoint rule, on a hand-written score sequence: a real mmengine Runner trains XTuner's model
  (the tiny model with LoRA) and validates at every iteration with the real StyleValLoop (greedy replies
  of the tiny model), StyleScoreHook and the shipped configs' CheckpointHook settings; only the scores
  are scripted (the metric's ``score``), so the rule is tried on ties, degenerate checkpoints with a high
  style_accuracy and no checkpoint sane enough. `max_keep_ckpts` 1 shows the best survives it.
- Validating draws nothing from training's random stream: with LoRA dropout, losses with a score at
  every iteration equal those with one at the end only.
- The metric is style_metrics.score_replies itself: the same numbers for gold, empty, repeated and
  wrong-style replies (whose low scores tests/eval/test_style_robust.py pins).

A real short `make train` with the shipped CPU config, its record, scalars.json, TensorBoard, `make
convert ITER=best` and kills: tests/train/test_recipe.py.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import uuid
from pathlib import Path

import pytest
import torch

from style_tune.core.train_logs import style_scores
from style_tune.train.style_score import (
    REPORTED,
    SAVE_BEST,
    SELECTION,
    StyleScoreMetric,
    rng_kept,
    sane_margin,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
MAIN_CONFIG = REPO_ROOT / "xtuner_configs" / "qwen2_5_1_5b_instruct_lora_int8_style_e3.py"
CPU_CONFIG = "xtuner_configs/qwen2_5_tiny_lora_style_cpu.py"
MIN_SANE_RATE = 90.0

#: Per save (iteration 1, 2, ...): sane_rate, style_margin, style_accuracy; and the iteration of the best
#: checkpoint after it, by the rule (the highest style_margin among sane_rate >= 90, ties to the earlier).
SEQUENCE = [
    ((95.0, 40.0, 80.0), 1),   # the first sane enough checkpoint
    ((95.0, 40.0, 85.0), 1),   # the same margin (a higher accuracy): a tie keeps the earlier
    ((50.0, 90.0, 100.0), 1),  # degenerate: the highest accuracy and margin, half its replies insane
    ((92.0, 55.0, 70.0), 4),   # a wider margin, sane enough: the new best
    ((89.9, 95.0, 100.0), 4),  # just under the threshold: never the best
    ((99.0, 10.0, 60.0), 4),   # sane, a narrower margin
]


class ScriptedMetric(StyleScoreMetric):
    """StyleScoreMetric with its scores taken from a list, one per validation; everything else (the
    rule's number, the record, the checkpoints) is the shipped code's."""

    def __init__(self, scores: list[tuple[float, float, float]], **kwargs) -> None:
        super().__init__(**kwargs)
        self.scores = list(scores)

    def score(self, results: list[dict]) -> dict:
        sane, margin, accuracy = self.scores.pop(0)
        metrics = {name: accuracy for name in REPORTED}
        metrics.update(sane_rate=sane, style_margin=margin)
        metrics["details"] = [{"prediction": r["reply"], "requested": None, "judged": "neither", "sane": True,
                               "problems": []} for r in results]
        return metrics


def collate(instances):
    from xtuner.dataset.collate_fns import default_collate_fn

    return default_collate_fn(instances)


def run_training(tiny_model_dir: Path, split_dir: Path, work_dir: Path, scores: list, *, iters: int,
                 val_interval: int, lora_dropout: float = 0.1, checkpoint: dict | None = None) -> list[float]:
    """Train the tiny model with LoRA for ITERS iterations in this process, validating every VAL_INTERVAL
    (and at the last) on 2 validation prompts; returns the loss of each iteration."""
    from mmengine.config import Config, ConfigDict
    from mmengine.dataset import DefaultSampler
    from mmengine.hooks import LoggerHook
    from mmengine.optim import OptimWrapper
    from mmengine.runner import IterBasedTrainLoop, Runner
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from style_tune.core.train_logs import loss_curve
    from style_tune.train.style_score import StyleScoreHook, StyleValLoop, StyleValPrompts, as_list
    from style_tune.train.xtuner_cpu import CPUSupervisedFinetune

    shipped = Config.fromfile(str(MAIN_CONFIG)).default_hooks.checkpoint
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = json.loads((split_dir / "train.json").read_text(encoding="utf-8"))[:8]
    samples = []
    for row in rows:
        ids = tokenizer(row["conversation"][0]["input"] + row["conversation"][0]["output"],
                        add_special_tokens=False)["input_ids"]
        samples.append({"input_ids": ids, "labels": ids})
    runner = Runner(
        # (XTuner's model reads its settings as attributes: ConfigDict, as a config file gives them)
        model=ConfigDict(type=CPUSupervisedFinetune,
                         llm=ConfigDict(type=AutoModelForCausalLM.from_pretrained,
                                        pretrained_model_name_or_path=str(tiny_model_dir),
                                        torch_dtype=torch.float32, attn_implementation="sdpa"),
                         lora=ConfigDict(type=LoraConfig, r=8, lora_alpha=16, lora_dropout=lora_dropout,
                                         bias="none", task_type="CAUSAL_LM")),
        work_dir=str(work_dir),
        experiment_name=f"style-score-{uuid.uuid4().hex[:8]}",
        train_dataloader=dict(batch_size=2, dataset=samples, sampler=dict(type=DefaultSampler, shuffle=True),
                              collate_fn=dict(type=collate)),
        train_cfg=dict(type=IterBasedTrainLoop, max_iters=iters, val_interval=val_interval),
        optim_wrapper=dict(type=OptimWrapper, optimizer=dict(type=torch.optim.AdamW, lr=1e-3)),
        val_dataloader=dict(batch_size=2, num_workers=0,
                            dataset=dict(type=StyleValPrompts, path=str(split_dir / "val.json"),
                                         tokenizer=tokenizer, limit=2),
                            sampler=dict(type=DefaultSampler, shuffle=False), collate_fn=dict(type=as_list)),
        val_cfg=dict(type=StyleValLoop, max_new_tokens=4),
        val_evaluator=dict(type=ScriptedMetric, scores=scores, judge_data=str(split_dir / "train.json"),
                           min_sane_rate=MIN_SANE_RATE),
        default_hooks=dict(
            checkpoint=dict(shipped, interval=val_interval, max_keep_ckpts=1, **(checkpoint or {})),
            logger=dict(type=LoggerHook, interval=1, log_metric_by_epoch=False),
        ),
        custom_hooks=[dict(type=StyleScoreHook)],
        log_processor=dict(by_epoch=False, window_size=1),
        randomness=dict(seed=0),
    )
    runner.train()
    return [loss for _, loss in loss_curve(work_dir)]


@pytest.fixture(scope="module")
def scored(tiny_model_dir: Path, split_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The hand-written sequence, scored at each of 6 iterations; the losses of the run."""
    work_dir = tmp_path_factory.mktemp("scored") / "work"
    losses = run_training(tiny_model_dir, split_dir, work_dir, [s for s, _ in SEQUENCE], iters=len(SEQUENCE),
                          val_interval=1)
    return {"work_dir": work_dir, "losses": losses}


def test_the_configs_keep_the_best_by_the_rule_s_number() -> None:
    from mmengine.config import Config

    checkpoint = Config.fromfile(str(MAIN_CONFIG)).default_hooks.checkpoint
    assert (checkpoint.save_best, checkpoint.rule) == (SAVE_BEST, "greater")


def test_sane_margin_is_the_margin_of_a_sane_enough_checkpoint() -> None:
    assert sane_margin({"style_margin": 12.5, "sane_rate": 90.0}, 90) == 12.5
    assert math.isnan(sane_margin({"style_margin": 99.0, "sane_rate": 89.9}, 90))
    assert sane_margin({"style_margin": -3.0, "sane_rate": 0.0}, 0) == -3.0


def test_the_best_checkpoint_follows_the_rule(scored: dict) -> None:
    work_dir = scored["work_dir"]
    lines = style_scores(work_dir)
    assert [line["iter"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert [line["best"]["iter"] for line in lines] == [best for _, best in SEQUENCE]
    for line, ((sane, margin, accuracy), _) in zip(lines, SEQUENCE, strict=True):
        assert (line["metrics"]["sane_rate"], line["metrics"]["style_margin"]) == (sane, margin)
        assert line["metrics"]["style_accuracy"] == accuracy
        # the rule's number: the margin, or null (NaN in scalars.json) below the threshold
        assert line["metrics"][SELECTION] == (margin if sane >= MIN_SANE_RATE else None)
    best = lines[-1]["best"]
    assert best["checkpoint"] == "best_style_sane_margin_iter_4.pth"
    assert best["why"] == ("the highest style_margin among the checkpoints whose sane_rate is at least 90 "
                           "(ties keep the earlier): style_margin 55.00 with sane_rate 92.0 (style_accuracy "
                           "70.0)")
    # max_keep_ckpts (save_total_limit) 1: the newest iter_*.pth alone, and the best beside it
    kept = sorted(p.name for p in work_dir.glob("*.pth"))
    assert kept == ["best_style_sane_margin_iter_4.pth", "iter_6.pth"]
    # the best file holds iteration 4's weights, mmengine's message hub its score
    best_ckpt = torch.load(work_dir / best["checkpoint"], map_location="cpu", weights_only=False)
    assert best_ckpt["meta"]["iter"] == 4
    last = torch.load(work_dir / "iter_6.pth", map_location="cpu", weights_only=False)
    assert last["message_hub"]["runtime_info"]["best_score"] == 55.0
    assert Path(last["message_hub"]["runtime_info"]["best_ckpt"]).name == best["checkpoint"]


def test_scalars_json_holds_the_record_s_scores(scored: dict) -> None:
    (scalars,) = scored["work_dir"].glob("*/vis_data/scalars.json")
    val = [json.loads(line) for line in scalars.read_text().splitlines() if SAVE_BEST in line]
    lines = style_scores(scored["work_dir"])
    assert [v["step"] for v in val] == [line["iter"] for line in lines]
    for logged, line in zip(val, lines, strict=True):
        for name, value in line["metrics"].items():
            got = logged[f"style/{name}"]
            assert math.isnan(got) if value is None else got == pytest.approx(value), name


def test_replies_of_each_score_are_kept(scored: dict) -> None:
    for line in style_scores(scored["work_dir"]):
        path = scored["work_dir"] / "style_replies" / f"iter_{line['iter']}.jsonl"
        replies = path.read_text().splitlines()
        assert len(replies) == 2 and all(json.loads(reply)["input"] for reply in replies)


def test_validating_draws_nothing_from_training_randomness(scored: dict, tiny_model_dir: Path,
                                                           split_dir: Path, tmp_path: Path) -> None:
    """LoRA dropout 0.1: the same losses with a score at every iteration as with one at the end only (a
    validation's dataloader draws a seed from torch's stream; StyleValLoop gives the state back)."""
    once = run_training(tiny_model_dir, split_dir, tmp_path / "work", [(95.0, 1.0, 1.0)], iters=len(SEQUENCE),
                        val_interval=1000)
    assert len(style_scores(tmp_path / "work")) == 1
    assert once == scored["losses"]
    state = torch.get_rng_state()
    with rng_kept():
        torch.rand(3)
    assert torch.equal(torch.get_rng_state(), state)


def test_no_sane_checkpoint_keeps_none_and_convert_says_so(tiny_model_dir: Path, split_dir: Path,
                                                          tmp_path: Path) -> None:
    work_dir = tmp_path / "work"
    run_training(tiny_model_dir, split_dir, work_dir, [(80.0, 70.0, 90.0), (10.0, 90.0, 100.0)], iters=2,
                 val_interval=1)
    lines = style_scores(work_dir)
    assert [line["best"]["checkpoint"] for line in lines] == [None, None]
    assert not list(work_dir.glob("best_*.pth"))
    proc = subprocess.run(["make", "convert", f"CONFIG={CPU_CONFIG}", f"WORK_DIR={work_dir}", "ITER=best"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MAKEFLAGS": ""})
    ours = [line for line in proc.stderr.splitlines() if not line.startswith("make")]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert ours == [f"convert: error: no best checkpoint in {work_dir}: no checkpoint so far has a sane_rate "
                    "of at least 90, so none is kept: the rule is the highest style_margin among the "
                    "checkpoints whose sane_rate is at least 90 (ties keep the earlier); convert by "
                    "iteration instead: ITER=N"]



def test_a_checkpoint_hook_without_save_best_is_said_not_taken_for_no_sane_checkpoint(
        tiny_model_dir: Path, split_dir: Path, tmp_path: Path) -> None:
    work_dir = tmp_path / "work"
    run_training(tiny_model_dir, split_dir, work_dir, [(95.0, 50.0, 90.0)], iters=1, val_interval=1,
                 checkpoint={"save_best": None})
    (line,) = style_scores(work_dir)
    assert line["best"] == {"iter": None, "checkpoint": None, "why": (
        f"no CheckpointHook keeps the best checkpoint (save_best='{SAVE_BEST}' is not set), so none is kept")}
    logged = next(work_dir.glob("*/*.log")).read_text()  # mmengine's log of the run
    assert "style score: no CheckpointHook keeps the best checkpoint" in logged

# ------------------------------------------------------------------ the metric is score_replies itself

def test_the_metric_is_the_evaluation_s_function(split_dir: Path) -> None:
    """StyleScoreMetric on a split's references and on bad replies: the numbers score_replies gives with the
    metric's judge (the function `make eval-style` runs, whose degenerate-reply tests are
    tests/eval/test_style_robust.py), and the bad ones low."""
    from style_tune.eval.style_metrics import prompts_in_every_style, score_replies, split_label

    mode, samples = prompts_in_every_style(split_dir / "val.json", limit=12)
    assert mode == "label" and len(samples) == 12
    metric = StyleScoreMetric(judge_data=str(split_dir / "train.json"), min_sane_rate=MIN_SANE_RATE)
    flipped = {"温柔": "毒舌", "毒舌": "温柔"}
    for kind, replies in {
        "gold": [sample["references"][0] for sample in samples],
        "empty": ["" for _ in samples],
        "repeated": ["温柔\n" + "你好" * 30 for _ in samples],
        # a reference under the label of the other style
        "wrong style": [f"{flipped[label]}\n{text}"
                        for label, text in (split_label(s["references"][0]) for s in samples)],
    }.items():
        results = [{"mode": mode, "input": s["input"], "requested_style": s["requested_style"],
                    "references": s["references"], "reply": reply, "runaway": False}
                   for s, reply in zip(samples, replies, strict=True)]
        metrics = metric.compute_metrics(results)
        expected = score_replies(replies, [s["references"] for s in samples], [None] * len(samples), mode,
                                 metric.judge, users=[s["input"] for s in samples],
                                 runaway=[False] * len(samples))
        assert {name: metrics[name] for name in REPORTED} == {name: expected[name] for name in REPORTED}, kind
        if kind == "gold":
            assert metrics["style_accuracy"] >= 75 and metrics["sane_rate"] == 100, metrics
            assert metrics[SELECTION] == metrics["style_margin"] > 0
        else:
            assert metrics["style_accuracy"] <= 25, (kind, metrics)
            if kind == "wrong style":
                assert metrics["style_margin"] < 0, metrics
            else:
                assert metrics["style_margin"] == 0, (kind, metrics)
            assert kind == "wrong style" or math.isnan(metrics[SELECTION]), kind
