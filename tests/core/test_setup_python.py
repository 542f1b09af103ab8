"""tools/setup_env.sh: every env is Python 3.11 whatever PYTHON is; PYTHON only bootstraps uv, and a PYTHON
that cannot do that stops with one line, before any venv is made."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def scratch_checkout(tmp_path: Path) -> Path:
    """The setup script beside a dev lock, in a checkout of its own (no .envs/.uv yet)."""
    (tmp_path / "tools").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "tools" / "setup_env.sh", tmp_path / "tools")
    (tmp_path / "requirements" / "lock" / "py3.11").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "requirements" / "lock" / "py3.11" / "dev.txt",
                tmp_path / "requirements" / "lock" / "py3.11")
    return tmp_path


def test_a_python_without_pip_stops_with_one_line(tmp_path: Path) -> None:
    root = scratch_checkout(tmp_path / "checkout")
    fake = tmp_path / "python3"
    fake.write_text(f"#!/bin/sh\necho \"$*\" >> {tmp_path}/calls\nexit 1\n")
    fake.chmod(0o755)
    proc = subprocess.run([str(root / "tools" / "setup_env.sh"), "dev"], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": str(fake)}, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"setup: error: PYTHON={fake} cannot run pip; uv is bootstrapped with any Python 3 that has pip: "
        "make setup PYTHON=/path/to/python3"]
    assert (tmp_path / "calls").read_text().splitlines() == ["-m pip --version"]
    assert not (root / ".envs").exists()


def test_an_unknown_env_is_named(tmp_path: Path) -> None:
    proc = subprocess.run(["tools/setup_env.sh", "eval-cpu"], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "setup: error: no requirements/lock/py3.11/eval-cpu.txt: environments are "
        "style_tune/dev/lock_envs.py's ENVS"]
