"""`make demo`: the recipe's steps on the stand-in base, timed, then what the model learned.

    python -m style_tune.train.demo --mode label|controllable --config CFG --base DIR --work-dir DIR
        --merged DIR [--split-dir DIR] [--threads 1]
        [--stage dpo|orpo|sft --stage-config CFG --stage-work-dir DIR --stage-merged DIR
         --stage-args "ARGS"] [-- TRAIN_ARGS...]

Runs the targets a user runs, with the demo's paths: `make split` (into ``--split-dir``, default
data/<mode>), `make train` (with TRAIN_ARGS), `make convert`, `make merge`; then
style_tune.eval.demo_report, which prints the wall time since the split started. Stops at the first
step that fails, with its exit status. Torch uses ``--threads`` threads in every step (OMP_NUM_THREADS).

``--stage``: a second stage from the merged model: `make prefs` and DPO or ORPO on the pairs, or (``sft``,
the control) more SFT on the training split, each with its own config and ``--stage-args``; then the
report compares the stage's merged model with the SFT one.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from style_tune.core import defaults
from style_tune.core.cli import split_passthrough
from style_tune.core.steps import main_of


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m style_tune.train.demo",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", default=defaults.MODE)
    parser.add_argument("--config", required=True, help="the CPU config of the mode")
    parser.add_argument("--base", required=True, help="the stand-in base model (make demo-base)")
    parser.add_argument("--work-dir", required=True)
    parser.add_argument("--merged", required=True)
    parser.add_argument("--split-dir", help="where the split goes (default: data/<mode>, as `make split`)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (OMP_NUM_THREADS)")
    parser.add_argument("--stage", choices=("dpo", "orpo", "sft"), help="a second stage (see above)")
    parser.add_argument("--stage-config")
    parser.add_argument("--stage-work-dir")
    parser.add_argument("--stage-merged")
    parser.add_argument("--stage-args", default="", help="`xtuner train` arguments of the stage")
    ours, train_args = split_passthrough(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(ours)

    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # for the make steps and for the report's torch
    make = os.environ.get("MAKE", "make")
    split_dir = args.split_dir or defaults.split_dir(args.mode)
    data = f"{split_dir}/train.json"
    step_model = [f"CONFIG={args.config}", f"MODEL={args.base}", f"DATA={data}", f"WORK_DIR={args.work_dir}"]
    steps = [
        ["split", f"MODE={args.mode}", f"SPLIT_DIR={split_dir}"],
        ["train", *step_model, f"TRAIN_ARGS={' '.join(train_args)}"],
        ["convert", *step_model, "FORCE=1"],
        ["merge", f"MODEL={args.base}", f"ADAPTER={args.work_dir}/adapter", f"MERGED={args.merged}",
         "FORCE=1"],
    ]
    base, merged, work_dir = args.base, args.merged, args.work_dir
    if args.stage:
        if not (args.stage_config and args.stage_work_dir and args.stage_merged):
            parser.error("--stage needs --stage-config, --stage-work-dir and --stage-merged")
        if args.mode != "controllable":
            parser.error("a second stage needs --mode controllable (preference pairs ask for a style)")
        stage_data = data
        if args.stage != "sft":
            stage_data = f"{split_dir}/{defaults.PREFS_FILE}"
            steps.append(["prefs", f"SPLIT_DIR={split_dir}", f"PREFS={stage_data}"])
        stage_model = [f"CONFIG={args.stage_config}", f"MODEL={args.merged}", f"DATA={stage_data}",
                       f"WORK_DIR={args.stage_work_dir}"]
        steps += [
            ["train", *stage_model, f"TRAIN_ARGS={args.stage_args}"],
            ["convert", *stage_model, "FORCE=1"],
            ["merge", f"MODEL={args.merged}", f"ADAPTER={args.stage_work_dir}/adapter",
             f"MERGED={args.stage_merged}", "FORCE=1"],
        ]
        base, merged, work_dir = args.merged, args.stage_merged, args.stage_work_dir
    started = time.time()
    for step in steps:
        returncode = subprocess.run([make, *step]).returncode
        if returncode != 0:
            return returncode

    from style_tune.eval import demo_report

    return demo_report.main(["--base", base, "--merged", merged, "--work-dir", work_dir,
                             "--test", str(Path(split_dir) / "test.json"), "--started", str(started),
                             *(["--stage", args.stage] if args.stage else [])])


if __name__ == "__main__":
    main_of("demo", main, after_ctrl_c="each step cleaned what it was writing: run the same command again")
