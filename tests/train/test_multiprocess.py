"""`make train NPROC_PER_NODE=2`: XTuner's torchrun path, two processes on the CPU (gloo); DeepSpeed.

The same launch a multi-GPU user makes (style_tune.train.train starts torchrun with XTuner's train script and
`--launcher pytorch`); the CPU config's CPURunner creates the gloo process group that mmengine would
create with NCCL on GPUs. The GPU path with NPROC_PER_NODE=1 is in tools/gpu_acceptance.sh.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path

import pytest
import torch
from test_recipe import CPU_CONFIG, FAST, make

from style_tune.core.steps import iter_checkpoints


def test_two_processes_train_together_on_cpu(tiny_model_dir: Path, split_dir: Path, tmp_path: Path) -> None:
    work_dir, data = tmp_path / "work", tmp_path / "train.json"
    # 16 rows: each rank's share of the data is what matters here, not its size
    data.write_text(json.dumps(json.loads((split_dir / "train.json").read_text())[:16], ensure_ascii=False))
    proc = make(
        "train", f"CONFIG={CPU_CONFIG}", f"MODEL={tiny_model_dir}", f"DATA={data}", f"WORK_DIR={work_dir}",
        "NPROC_PER_NODE=2", f"TRAIN_ARGS={FAST.format(iters=2)} custom_hooks.1.max_new_tokens=4",
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "--nproc_per_node=2" in out and "--launcher pytorch" in out
    # both processes joined one process group of two
    assert "gloo process group, rank 0 of 2" in out and "gloo process group, rank 1 of 2" in out, out[-4000:]
    assert "Distributed training: True" in out
    assert [i for i, _ in iter_checkpoints(work_dir)] == [2]


def test_deepspeed_is_the_version_xtuner_asks_for() -> None:
    """xtuner goes in with --no-deps; its `deepspeed` extra's pin is installed beside it (and imports)."""
    requires = importlib.metadata.requires("xtuner") or []
    pin = next(r for r in requires if re.match(r"deepspeed==", r) and 'extra == "deepspeed"' in r)
    import deepspeed

    assert pin.split(";")[0] == f"deepspeed=={deepspeed.__version__}"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU answer; GPUs: tools/gpu_acceptance.sh")
def test_deepspeed_on_cpu_fails_with_one_line(tiny_model_dir: Path, split_dir: Path, tmp_path: Path) -> None:
    proc = make("train", f"CONFIG={CPU_CONFIG}", f"MODEL={tiny_model_dir}", f"DATA={split_dir}/train.json",
                f"WORK_DIR={tmp_path / 'work'}", "DEEPSPEED=deepspeed_zero2")
    ours = [line for line in proc.stderr.splitlines() if not line.startswith("make")]
    assert proc.returncode != 0
    assert len(ours) == 1, ours
    assert ours[0].startswith("train: error: DEEPSPEED=deepspeed_zero2 needs a CUDA GPU"), ours
    assert not (tmp_path / "work").exists()
