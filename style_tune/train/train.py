"""`make train`: run an XTuner config with real exit codes and automatic resume.

    python -m style_tune.train.train CONFIG --work-dir DIR [--deepspeed deepspeed_zero2]
        [-- extra xtuner args]

Model and data paths come from the environment, as the configs read them (STYLE_TUNE_MODEL,
STYLE_TUNE_DATA, STYLE_TUNE_VAL_DATA: the split the style score at every save asks, and beside it the
train.json its judge learns from; STYLE_TUNE_VIS); they are checked before anything starts. If DIR holds a
checkpoint of an interrupted run, training resumes from the newest one (iteration count, optimizer and
scheduler state included, and mmengine's best checkpoint so far); a finished run resumes at its end and
stops at once. Checkpoints a kill cut short are removed first (an iter_N.pth or a best_*.pth).

One process without DeepSpeed runs `python -m xtuner.tools.train`. With NPROC_PER_NODE or NNODES > 1,
or with --deepspeed (DEEPSPEED=) even on one GPU, it starts XTuner's train script under torchrun with the
arguments `xtuner train` itself passes (NNODES, NODE_RANK, NPROC_PER_NODE, ADDR, PORT): DeepSpeed finds its
rank in the variables torchrun sets (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, LOCAL_RANK); without them
it falls back to MPI discovery and stops on `No module named 'mpi4py'`. The `xtuner` command is not used
because it always exits 0, even when training crashed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

from style_tune.core import defaults
from style_tune.core.cli import split_passthrough
from style_tune.core.steps import checkpoint_complete, fail, iter_checkpoints, main_of, run

STEP = "train"


def is_preference_config(config: Path) -> bool:
    """The DPO / ORPO configs (xtuner_configs/*_dpo_style*.py, *_orpo_style*.py) train on pairs."""
    return any(f"_{method}_" in config.stem for method in ("dpo", "orpo"))


def holds_pairs(data: Path) -> bool:
    """Whether a data file's first line is a preference pair (`make prefs`'s JSON lines)."""
    with data.open(encoding="utf-8", errors="replace") as file:
        first = file.readline()
    try:
        row = json.loads(first)
    except json.JSONDecodeError:
        return False
    return isinstance(row, dict) and "chosen" in row


def check_inputs(config: Path) -> None:
    if not config.is_file():
        fail(STEP, f"config {config} not found (see xtuner_configs/)")
    pairs = is_preference_config(config)
    model = os.environ.get("STYLE_TUNE_MODEL")
    if model and not (Path(model) / "config.json").is_file():
        hint = ("the merged SFT model DPO / ORPO start from: `make train convert merge` with the "
                "controllable SFT config first" if pairs else "run `make download` (or `make tiny-model`)")
        fail(STEP, f"model directory {model} has no config.json; {hint}")
    data = os.environ.get("STYLE_TUNE_DATA")
    if data and not Path(data).is_file():
        fail(STEP, f"training data {data} not found; run {'`make prefs`' if pairs else '`make split`'}")
    if data and pairs:
        from style_tune.data.prefs import check_pairs_file

        errors = check_pairs_file(Path(data))
        if errors:
            fail(STEP, f"{errors[0]}: {config.name} trains on preference pairs, one JSON object a line "
                       "(`make prefs` writes them)")
    elif data and holds_pairs(Path(data)):
        fail(STEP, f"{data} holds preference pairs, but {config.name} is an SFT config: give DATA= a split "
                   "(data/<mode>/train.json), or CONFIG= a *_dpo_* / *_orpo_* config")
    if data or os.environ.get("STYLE_TUNE_VAL_DATA"):
        val = Path(defaults.config_val_data(data or ""))
        if not val.is_file():
            fail(STEP, f"validation split {val} not found: the style score at every save asks its prompts; "
                       "`make split` writes val.json beside train.json, or VAL_DATA= names one")
        judge = Path(defaults.judge_data(str(val)))
        if not judge.is_file():
            fail(STEP, f"{judge} not found: the style score's judge learns from the train.json beside the "
                       f"validation split {val} (`make split` writes both)")
    try:
        defaults.config_vis()
    except ValueError as err:
        fail(STEP, str(err))


def check_deepspeed(deepspeed: str) -> None:
    """DeepSpeed is installed in the train env, but XTuner's DeepSpeed path runs on GPUs only.

    DeepSpeed's ZeRO itself trains on a CPU (its CPU accelerator, gloo); what stops without a GPU is
    XTuner and mmengine around it: XTuner resolves the shipped configs' "auto" bf16 with
    ``torch.cpu.is_bf16_supported()``, which does not exist (AttributeError), and mmengine's
    ``--launcher pytorch`` calls ``torch.cuda.set_device`` ("Found no NVIDIA driver").
    """
    import torch

    if not torch.cuda.is_available():
        fail(STEP, f"DEEPSPEED={deepspeed} needs a CUDA GPU (XTuner's DeepSpeed path asks the GPU for bf16 "
                   "support and mmengine's launcher sets a CUDA device); this machine has none: train "
                   "without DEEPSPEED= here (NPROC_PER_NODE=2 runs two processes on the CPU)")


def resume_args(work_dir: Path) -> list[str]:
    """``--resume`` with the newest complete checkpoint; one a kill cut short is removed first (said in
    one line): resuming from it would fail, and training writes it again. So is a best checkpoint a kill cut
    short (mmengine's ``best_*.pth``, saved after a score): the resumed run scores that iteration again
    (style_tune/train/style_score.py) and saves it again."""
    for best in sorted(work_dir.glob("best_*.pth")):  # none where the work dir is not there yet
        if not checkpoint_complete(best):
            best.unlink()
            print(f"{STEP}: removed {best}: an interrupted run left it cut short", flush=True)
    checkpoints = iter_checkpoints(work_dir)
    while checkpoints and not checkpoint_complete(checkpoints[-1][1]):
        _, broken = checkpoints.pop()
        broken.unlink()
        print(f"{STEP}: removed {broken}: an interrupted run left it cut short", flush=True)
    if not checkpoints:
        return []
    iteration, path = checkpoints[-1]
    print(f"{STEP}: resuming from {path} (iteration {iteration})", flush=True)
    return ["--resume", str(path)]


def launcher(train_args: list[str]) -> list[str]:
    nnodes = int(os.environ.get("NNODES", "1"))
    nproc = int(os.environ.get("NPROC_PER_NODE", "1"))
    # DeepSpeed needs torchrun's variables even in one process (without them it asks MPI for its rank)
    if nnodes == 1 and nproc == 1 and "--deepspeed" not in train_args:
        return [sys.executable, "-m", "xtuner.tools.train", *train_args]
    import xtuner.tools.train as xtuner_train  # only to locate the script torchrun runs

    port = os.environ.get("PORT") or str(random.randint(20000, 29999))
    return [
        str(Path(sys.executable).with_name("torchrun")),
        f"--nnodes={nnodes}",
        f"--node_rank={os.environ.get('NODE_RANK', '0')}",
        f"--nproc_per_node={nproc}",
        f"--master_addr={os.environ.get('ADDR', '127.0.0.1')}",
        f"--master_port={port}",
        xtuner_train.__file__,
        *train_args,
        "--launcher",
        "pytorch",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run an XTuner config with real exit codes and resume.")
    parser.add_argument("config", type=Path)
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--deepspeed", help="deepspeed_zero1|deepspeed_zero2|deepspeed_zero3 or a JSON file")
    argv = sys.argv[1:] if argv is None else argv
    ours, extra = split_passthrough(argv)
    args = parser.parse_args(ours)

    check_inputs(args.config)
    train_args = [str(args.config), "--work-dir", str(args.work_dir), *resume_args(args.work_dir)]
    if args.deepspeed:
        check_deepspeed(args.deepspeed)
        train_args += ["--deepspeed", args.deepspeed]
    train_args += extra  # more `xtuner train` arguments, after --
    run(STEP, launcher(train_args))
    if not iter_checkpoints(args.work_dir):
        fail(STEP, f"training ended but wrote no checkpoint in {args.work_dir}")
    print(f"{STEP}: done; checkpoints in {args.work_dir}")
    return 0


if __name__ == "__main__":
    main_of(STEP, main, after_ctrl_c="the checkpoints so far are kept: run the same command again to resume")
