"""`make convert`: an XTuner ``iter_N.pth`` checkpoint -> a Hugging Face PEFT adapter (safetensors).

    python -m style_tune.train.convert CONFIG --work-dir DIR [--iter N|best] [--out OUT] [--force]

Runs XTuner's own converter (`xtuner convert pth_to_hf`) on the newest checkpoint in DIR, on
iter_N.pth, or (``--iter best``) on the best checkpoint by the style score at every save: the one the
last line of DIR/style_scores.jsonl names (mmengine's ``best_style_sane_margin_iter_N.pth``; the rule
and why: style_tune/train/style_score.py). The adapter goes to OUT (default DIR/iter_N_hf), written to a
temporary directory and
renamed only when XTuner finished and the adapter files are there. XTuner rebuilds the model from a
config, which must be the one training used: mmengine dumps it into the work dir (DIR/<CONFIG's file
name>, with training's --cfg-options such as a LoRA rank, and its model path), and convert uses that
dump when it is there; CONFIG itself (with STYLE_TUNE_MODEL) only for a work dir without one.
Checkpoints are pickles: convert only work dirs you created yourself.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from style_tune.core.io import atomic_dir
from style_tune.core.steps import checkpoint_complete, fail, iter_checkpoints, main_of, run
from style_tune.core.train_logs import STYLE_SCORES, style_scores

STEP = "convert"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def pick_checkpoint(work_dir: Path, iteration: int | None) -> tuple[int, Path]:
    checkpoints = iter_checkpoints(work_dir)
    if not checkpoints:
        fail(STEP, f"no iter_*.pth checkpoint in {work_dir}; run `make train` first")
    if iteration is None:
        return checkpoints[-1]
    for number, path in checkpoints:
        if number == iteration:
            return number, path
    have = ", ".join(str(n) for n, _ in checkpoints)
    fail(STEP, f"{work_dir}/iter_{iteration}.pth not found; checkpoints there: {have}")


def best_checkpoint(work_dir: Path) -> tuple[int, Path, str]:
    """(iteration, file, why) of the best checkpoint the style score's record names in its last line."""
    lines = style_scores(work_dir)
    if not lines:
        fail(STEP, f"no {STYLE_SCORES} in {work_dir}: ITER=best needs a run scored at its saves (the shipped "
                   "configs score every save); convert by iteration instead: ITER=N")
    best = lines[-1]["best"]
    if not best.get("checkpoint"):
        fail(STEP, f"no best checkpoint in {work_dir}: {best['why']}; convert by iteration instead: ITER=N")
    path = work_dir / best["checkpoint"]
    if not path.exists():
        fail(STEP, f"{path} not found, though {work_dir / STYLE_SCORES} names it as the best checkpoint")
    return int(best["iter"]), path, best["why"]


def iteration_or_best(value: str) -> int | str:
    if value == "best":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is neither an iteration number nor 'best'") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Convert an XTuner .pth checkpoint to a HF adapter.")
    parser.add_argument("config", type=Path)
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--iter", type=iteration_or_best, dest="iteration",
                        help="checkpoint iteration, or 'best': the best by the style score (default: newest)")
    parser.add_argument("--out", type=Path, help="adapter directory (default: WORK_DIR/iter_N_hf)")
    parser.add_argument("--force", action="store_true", help="replace an existing adapter directory")
    args = parser.parse_args(argv)

    if not args.config.is_file():
        fail(STEP, f"config {args.config} not found")
    if args.iteration == "best":
        iteration, pth, why = best_checkpoint(args.work_dir)
        print(f"{STEP}: the best checkpoint by the style score: {pth.name} (iteration {iteration}): {why}")
    else:
        iteration, pth = pick_checkpoint(args.work_dir, args.iteration)
    if not checkpoint_complete(pth):
        fail(STEP, f"{pth} is cut short (an interrupted training run, or not a checkpoint); run `make train` "
                   "again: it removes it and resumes")
    trained = args.work_dir / args.config.name  # what training ran, overrides included (mmengine's dump)
    config = trained if trained.is_file() else args.config
    out = args.out or args.work_dir / f"iter_{iteration}_hf"
    with atomic_dir(out, force=args.force, step=STEP) as tmp:
        cmd = [sys.executable, "-m", "xtuner.tools.model_converters.pth_to_hf", str(config), str(pth)]
        run(STEP, [*cmd, str(tmp), "--safe-serialization"])
        missing = [name for name in ADAPTER_FILES if not (tmp / name).is_file()]
        if missing:
            fail(STEP, f"XTuner wrote no {', '.join(missing)}; is {config} a LoRA config?")
    print(f"{STEP}: adapter from {pth} (config {config}) written to {out}")
    return 0


if __name__ == "__main__":
    main_of(STEP, main)
