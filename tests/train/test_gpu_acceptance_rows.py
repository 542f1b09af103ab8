"""The GPU check's actions that run in the train env (style_tune/dev/gpu_acceptance.py), run here on the CPU
as the check runs them on a GPU machine: `long-rows` on the session's tiny model (the real Qwen2.5
tokenizer) and split with the two GPU configs it reads, and `versions`. Training on those rows needs a GPU
(tools/gpu_acceptance.sh part1)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from transformers import AutoTokenizer

from style_tune import REPO_ROOT
from style_tune.dev import gpu_acceptance as ga


def run_action(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", ga.MODULE, *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600)


def test_long_rows_fill_each_configs_max_length(tmp_path: Path, tiny_model_dir: Path, split_dir: Path
                                                ) -> None:
    rows = tmp_path / "long_rows.json"
    proc = run_action("long-rows", str(split_dir / "train.json"), str(rows), str(tiny_model_dir), "2",
                      ga.DEFAULT_CFG, ga.INT8_CFG)
    assert proc.returncode == 0, proc.stderr
    assert ga.shapes(proc.stdout) == {ga.DEFAULT_CFG: "32 x 256", ga.INT8_CFG: "20 x 256"}
    written = json.loads(rows.read_text(encoding="utf-8"))
    assert len(written) == 32 * 2  # the larger batch, ITERS times
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    shortest = min(len(tokenizer(row["conversation"][0]["output"])["input_ids"]) for row in written)
    assert shortest >= 256
    assert f"the shortest reply alone is {shortest} tokens >= max_length 256" in proc.stdout
    source = json.loads((split_dir / "train.json").read_text(encoding="utf-8"))
    prompts = {row["conversation"][0]["input"] for row in source}
    assert {row["conversation"][0]["input"] for row in written} <= prompts  # the split's, longer replies


def test_versions_names_the_toolchain_and_whether_a_gpu_is_visible() -> None:
    proc = run_action("versions")
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip()
    assert line.startswith("Python 3.") and "torch " in line and "xtuner " in line and "mmengine " in line
    assert line.endswith("GPU visible: False)")
