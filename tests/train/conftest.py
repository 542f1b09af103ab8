"""Shared fixtures of the train tests: the tiny stand-in model, built once per session."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kill_points
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_TOOL = ("-m", "style_tune.train.tiny_model")
TINY_SEED = 0


def _build(out_dir: Path, *args: str, timeout: float = 600, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    """Run style_tune/train/tiny_model.py OUT_DIR ARGS... with this interpreter; fail the test on error."""
    proc = subprocess.run(
        [sys.executable, *BUILD_TOOL, str(out_dir), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert proc.returncode == 0, f"build_tiny_model failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen2.5 stand-in (--size tiny, seed 0) built once per session in a tmp dir; read-only.
    The build's file-system changes are recorded in ``tiny-qwen2.5.log`` beside it: the kill points of
    `make tiny-model` (tests/kill_points.py)."""
    out = tmp_path_factory.mktemp("tiny_model") / "tiny-qwen2.5"
    recorded = kill_points.recording(out.parent, kill_points.TINY_LOG)
    _build(out, "--size", "tiny", "--seed", str(TINY_SEED), env=recorded)
    return out


@pytest.fixture(scope="session")
def tiny_bf16_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiny model (seed 0) saved in bfloat16, the real Qwen2.5's dtype; read-only."""
    out = tmp_path_factory.mktemp("tiny_model_bf16") / "tiny-qwen2.5-bf16"
    _build(out, "--size", "tiny", "--seed", str(TINY_SEED), "--dtype", "bfloat16")
    return out


@pytest.fixture(scope="session")
def split_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make split` of the shipped data (label mode) into a tmp dir."""
    out = tmp_path_factory.mktemp("split")
    proc = subprocess.run(
        ["make", "split", f"SPLIT_DIR={out}"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return out
