#!/usr/bin/env python3
"""Benchmark style_tune/data/split.py on a generated 1,000,000-row CSV.

Usage::

    python3 -m benchmarks.bench_split [--prompts 500000] [--seed 0] [--keep]

Generates a deterministic CSV of ``--prompts`` distinct prompts x 2 styles (温柔, 毒舌) in a
temporary directory, runs the split tool on it as a subprocess (the way it is used), and prints
one line: rows, wall time (time.perf_counter, around the subprocess) and the split's peak RSS
(resource.getrusage of the child). Generation is not timed. Nothing is written outside the
temporary directory, which is removed afterwards unless ``--keep`` is given.
"""

from __future__ import annotations

import argparse
import csv
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPLIT_TOOL = ("-m", "style_tune.data.split")

SUBJECTS = ["今天", "最近", "这周", "昨天晚上", "刚才", "周末", "上班的时候", "考试前", "搬家以后", "下雨天"]
EVENTS = [
    "我又加班到很晚", "老板批评了我", "我把钥匙弄丢了", "我做的菜糊了", "我跑步跑了五公里",
    "朋友忘了我的生日", "我终于学会了游泳", "电脑突然死机了", "我在地铁上睡过站了", "我的猫打翻了花盆",
]
ENDINGS = ["，你怎么看？", "，好烦啊。", "，求安慰。", "，我是不是很厉害？", "。", "，该怎么办？"]
GENTLE = ["辛苦啦，", "别难过，", "抱抱你，", "没关系的，", "你已经做得很好了，"]
SHARP = ["哟，", "不是吧，", "行吧，", "啧啧，", "就这？"]
MIDDLE = [
    "这种事谁都会遇到", "下次记得早点准备", "生活总要有点插曲", "至少你还有我听你吐槽", "明天又是新的一天",
]


def write_csv(path: Path, n_prompts: int, seed: int) -> int:
    """Write ``n_prompts`` distinct prompts, each with one 温柔 and one 毒舌 reply; return rows."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user", "style", "assistant"])
        for index in range(n_prompts):
            user = f"{rng.choice(SUBJECTS)}{rng.choice(EVENTS)}（第{index}次）{rng.choice(ENDINGS)}"
            gentle = f"{rng.choice(GENTLE)}{rng.choice(MIDDLE)}，慢慢来，我一直都在。"
            sharp = f"{rng.choice(SHARP)}{rng.choice(MIDDLE)}，不过你这操作，也算是一种天赋了。"
            writer.writerow([user, "温柔", gentle])
            writer.writerow([user, "毒舌", sharp])
    return 2 * n_prompts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=500_000, help="distinct prompts (rows = 2x)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench_split_"))
    try:
        csv_path = workdir / "data.csv"
        rows = write_csv(csv_path, args.prompts, args.seed)
        command = [sys.executable, *SPLIT_TOOL, str(csv_path), "--out-dir", str(workdir / "out")]
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - start
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
        if result.returncode != 0:
            print(result.stderr, file=sys.stderr)
            print(f"split failed with exit status {result.returncode}", file=sys.stderr)
            return 1
        size_mib = csv_path.stat().st_size / 2**20
        print(f"bench_split: {rows} rows ({size_mib:.0f} MiB CSV): {wall:.2f} s wall, "
              f"peak RSS {peak_kib / 1024:.0f} MiB")
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
