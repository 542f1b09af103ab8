"""`make demo-seeds`: the demo's figures over several seeds, as the mean and the range.

    python -m benchmarks.demo_seeds [--seeds 0 1 2] [--jobs 2] [--out benchmarks/demo_seeds_cpu]

For each seed N (DEMO_SEED=N: the stand-in's pretraining seed and the fine-tune's), in a process of its own
(``--jobs`` seeds at a time, one torch thread each), the targets a user runs:

    make demo eval-demo MODE=label                                    the label format: base vs SFT
    make demo eval-demo MODE=controllable                             the controllable format: base vs SFT
    make demo eval-demo MODE=controllable STAGE=sft|dpo|orpo          SFT vs SFT + a second stage

then one table per format, each metric of each model as ``mean [min, max]`` over the seeds, the
stages' training wall time beside them, to OUT.md and every number per seed to OUT.json. A seed whose
results exist is not run again (delete outputs/style_eval_demo-* to rerun). Every step's log goes to
OUT.logs/seedN.log; a failed step stops its seed and the command exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from style_tune.core.io import write_atomically
from style_tune.core.steps import main_of

STEP = "demo-seeds"
STAGES = ("sft", "dpo", "orpo")
#: Rows of the tables: the metrics a reader compares (style_tune/eval/style_metrics.py defines them).
SHOWN = {
    "label": ("style_accuracy", "style_accuracy_gentle", "style_accuracy_snarky", "style_margin",
              "label_rate", "sane_rate", "chrf", "rouge_l", "distinct_2"),
    "controllable": ("style_accuracy", "style_accuracy_gentle", "style_accuracy_snarky", "style_margin",
                     "sane_rate", "chrf", "rouge_l", "distinct_2"),
}


def suffix(seed: int) -> str:
    """The Makefile's DEMO_SUFFIX."""
    return f"-seed{seed}" if seed else ""


def results(style_dir: Path) -> dict[str, dict] | None:
    """{base, tuned} -> metrics of the last eval-style run in style_dir, or None if there is none."""
    found: dict[str, dict] = {}
    for model in ("base", "tuned"):
        paths = sorted((style_dir / "latest" / "results" / model).glob("*.json"))
        if not paths:
            return None
        found[model] = {k: v for k, v in json.loads(paths[0].read_text(encoding="utf-8")).items()
                        if isinstance(v, int | float)}
    return found


def train_seconds(work_dir: Path) -> float | None:
    """Training time of a work dir: mmengine's logged seconds per iteration (each the mean over its
    logging interval) times the interval, summed; start-up and the style scores at the saves (the
    validation lines, which carry their own time but no loss) left out."""
    scalars = sorted(work_dir.glob("*/vis_data/scalars.json"))
    if not scalars:
        return None
    total, last_step, interval = 0.0, 0, 0
    for line in scalars[-1].read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if "time" in record and "step" in record and "loss" in record:
            interval = record["step"] - last_step
            total += record["time"] * interval
            last_step = record["step"]
    return total


def run_seed(seed: int, logs: Path) -> dict:
    """Run one seed's targets (skipping what has results) and collect its numbers."""
    log = logs / f"seed{seed}.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = [("label", None), ("controllable", None), *(("controllable", stage) for stage in STAGES)]
    found: dict[str, dict] = {}
    with log.open("a", encoding="utf-8") as out:
        for mode, stage in runs:
            name = f"{mode}{suffix(seed)}" + (f"-{stage}" if stage else "")
            style_dir = Path(f"outputs/style_eval_demo-{name}")
            metrics = results(style_dir)
            if metrics is None:
                cmd = ["make", "demo", "eval-demo", f"MODE={mode}", f"DEMO_SEED={seed}",
                       *([f"STAGE={stage}"] if stage else [])]
                print(f"{STEP}: seed {seed}: {' '.join(cmd)} (log {log})", flush=True)
                out.write(f"\n$ {' '.join(cmd)}\n")
                out.flush()
                started = time.monotonic()
                code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
                print(f"{STEP}: seed {seed}: {name} {'done' if code == 0 else f'FAILED ({code})'} in "
                      f"{time.monotonic() - started:.0f} s", flush=True)
                metrics = results(style_dir)
                if code != 0 or metrics is None:
                    if code == 0:
                        print(f"{STEP}: seed {seed}: {name}: no eval-style results in {style_dir / 'latest'}",
                              flush=True)
                    return {"seed": seed, "failed": name, "runs": found}
            work_dir = Path(f"work_dirs/demo-{mode}{suffix(seed)}" + (f"-{stage}" if stage else ""))
            found[name.replace(suffix(seed), "")] = {**metrics,
                                                    "train_seconds": train_seconds(work_dir)}
    return {"seed": seed, "runs": found}


def spread(values: list[float]) -> str:
    return f"{statistics.fmean(values):.1f} [{min(values):.1f}, {max(values):.1f}]"


def table(seeds: list[dict], mode: str) -> list[str]:
    """One format's table: a column per model, a row per metric, mean [min, max] over the seeds."""
    columns = [("base", f"{mode}", "base"), ("SFT", f"{mode}", "tuned")]
    if mode == "controllable":
        columns += [(f"SFT + {stage.upper() if stage != 'sft' else 'more SFT'}", f"{mode}-{stage}", "tuned")
                    for stage in STAGES]
    lines = ["| metric | " + " | ".join(c[0] for c in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for metric in SHOWN[mode]:
        cells = []
        for _, run, model in columns:
            values = [s["runs"][run][model][metric] for s in seeds if metric in s["runs"][run][model]]
            cells.append(spread(values) if values else "–")
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    if mode == "controllable":
        cells = ["", spread([s["runs"][mode]["train_seconds"] for s in seeds])]
        cells += [spread([s["runs"][f"{mode}-{stage}"]["train_seconds"] for s in seeds]) for stage in STAGES]
        lines.append("| training s (2nd stage: its own) | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.demo_seeds",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="seeds run at a time")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/demo_seeds_cpu"))
    args = parser.parse_args(argv)

    logs = args.out.with_suffix(".logs")
    logs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with ThreadPoolExecutor(args.jobs) as pool:
        seeds = list(pool.map(lambda seed: run_seed(seed, logs), args.seeds))
    failed = [s for s in seeds if "failed" in s]
    for s in failed:
        print(f"{STEP}: seed {s['seed']}: {s['failed']} failed; see {logs}/seed{s['seed']}.log",
              file=sys.stderr)
    done = [s for s in seeds if "failed" not in s]
    if not done:
        return 1
    lines = [f"# The demo over {len(done)} seeds: mean [min, max]", "",
             f"Command: `make demo-seeds` (seeds {' '.join(str(s['seed']) for s in done)}, {args.jobs} at a "
             f"time, one torch thread each); {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores; {time.monotonic() - started:.0f} s this run.",
             "Held-out prompts of the shipped data, greedy replies scored by `make eval-demo`; "
             "metrics: README's metric table.", ""]
    for mode in ("label", "controllable"):
        lines += [f"## {mode}", "", *table(done, mode), ""]
    write_atomically(args.out.with_suffix(".md"), "\n".join(lines), step=STEP)
    write_atomically(args.out.with_suffix(".json"), json.dumps(done, indent=1), step=STEP)
    print("\n".join(lines))
    return 1 if failed else 0


if __name__ == "__main__":
    main_of(STEP, main)
