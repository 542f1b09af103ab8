"""`make train NPROC_PER_NODE=2`: XTuner's torchrun path, two processes on the CPU (gloo); DeepSpeed.

The same launch a multi-GPU user makes (style_tune.train.train starts torchrun with XTuner's train script and
`--launcher pytorch`); the CPU config's CPURunner creates the gloo process group that mmengine would
create with NCCL on GPUs. DeepSpeed in one process goes through the same torchrun launch (without it,
DeepSpeed looks for MPI); XTuner's DeepSpeed training itself needs a GPU: tools/gpu_acceptance.sh.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path

import pytest
import torch
from test_recipe import CPU_CONFIG, FAST, make
from train_stand_ins import stand_in_xtuner_train, train_inputs

from style_tune.core import steps
from style_tune.core.steps import iter_checkpoints
from style_tune.core.train_logs import style_scores
from style_tune.train import train


def test_two_processes_train_together_on_cpu(tiny_model_dir: Path, split_dir: Path, tmp_path: Path) -> None:
    work_dir, data = tmp_path / "work", tmp_path / "train.json"
    # 16 rows: each rank's share of the data is what matters here, not its size
    data.write_text(json.dumps(json.loads((split_dir / "train.json").read_text())[:16], ensure_ascii=False))
    proc = make(
        "train", f"CONFIG={CPU_CONFIG}", f"MODEL={tiny_model_dir}", f"DATA={data}", f"WORK_DIR={work_dir}",
        f"VAL_DATA={split_dir}/val.json", "NPROC_PER_NODE=2", f"TRAIN_ARGS={FAST.format(iters=2)}",
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "--nproc_per_node=2" in out and "--launcher pytorch" in out
    # both processes joined one process group of two
    assert "gloo process group, rank 0 of 2" in out and "gloo process group, rank 1 of 2" in out, out[-4000:]
    assert "Distributed training: True" in out
    assert [i for i, _ in iter_checkpoints(work_dir)] == [2]
    # the style score: each process answered its half of the 4 validation prompts, rank 0 scored the 4 once
    answered = sorted(re.findall(r"style score: rank (\d) of 2 answered (\d+) of 4 validation prompts", out))
    assert answered == [("0", "2"), ("1", "2")], out[-4000:]
    assert out.count("style score: 4 replies scored once, on rank 0") == 1
    (line,) = style_scores(work_dir)
    assert line["iter"] == 2
    assert len((work_dir / "style_replies" / "iter_2.jsonl").read_text().splitlines()) == 4


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


#: What DeepSpeed's init_distributed reads; where they are missing it asks MPI (mpi4py) for them.
DIST_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK")
#: Stands in for XTuner's train script (training with DeepSpeed needs a GPU): writes the arguments and
#: the distributed variables it was started with, and a checkpoint, as training would.
STAND_IN_TRAIN = f"""
import json, os, sys
from pathlib import Path
work = Path(sys.argv[sys.argv.index("--work-dir") + 1])
work.mkdir(parents=True)
seen = {{"argv": sys.argv[1:], "env": {{name: os.environ.get(name) for name in {DIST_VARIABLES!r}}}}}
(work / "seen.json").write_text(json.dumps(seen))
(work / "iter_1.pth").write_bytes(b"")
"""


def test_deepspeed_in_one_process_starts_under_torchrun(tmp_path: Path, monkeypatch) -> None:
    """`make train DEEPSPEED=deepspeed_zero2` on one GPU: torchrun sets what DeepSpeed reads (no MPI)."""
    paths = train_inputs(tmp_path, monkeypatch, unset=DIST_VARIABLES)
    config, work = paths["config"], tmp_path / "w"
    # the launcher runs the file of xtuner.tools.train: the stand-in's
    script = tmp_path / "xtuner_train.py"
    script.write_text(STAND_IN_TRAIN)
    stand_in_xtuner_train(monkeypatch, script)
    # this CPU is refused by the GPU check (the test above); the launch after it is what is tested here
    monkeypatch.setattr(train, "check_deepspeed", lambda deepspeed: None)
    commands: list[list[str]] = []

    def record_then_run(step: str, cmd: list[str], env: dict | None = None) -> None:
        commands.append(list(cmd))
        # `python -m xtuner.tools.train` would start XTuner's real training, not the stand-in
        assert Path(cmd[0]).name == "torchrun", cmd
        steps.run(step, cmd, env)

    monkeypatch.setattr(train, "run", record_then_run)
    assert train.main([str(config), "--work-dir", str(work), "--deepspeed", "deepspeed_zero2"]) == 0

    [cmd] = commands
    assert "--nnodes=1" in cmd and "--nproc_per_node=1" in cmd, cmd
    seen = json.loads((work / "seen.json").read_text())
    assert seen["argv"] == [str(config), "--work-dir", str(work), "--deepspeed", "deepspeed_zero2",
                            "--launcher", "pytorch"]
    port = next(arg.split("=")[1] for arg in cmd if arg.startswith("--master_port="))
    assert seen["env"] == {"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port,
                           "LOCAL_RANK": "0"}
