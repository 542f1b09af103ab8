"""`make setup` with an unsupported Python stops at once with one line, before any pip work."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def fake_python(tmp_path: Path, version: str) -> tuple[Path, Path]:
    """An interpreter stand-in that reports VERSION and logs every call."""
    log = tmp_path / "calls"
    exe = tmp_path / f"python{version}"
    exe.write_text(f'#!/bin/sh\necho "$*" >> {log}\ncase "$*" in *version_info*) echo {version};; '
                   "*) exit 1;; esac\n")
    exe.chmod(0o755)
    return exe, log


@pytest.mark.parametrize("target", ["setup", "test", "train"])
def test_python_3_13_stops_with_one_line(tmp_path: Path, target: str) -> None:
    exe, log = fake_python(tmp_path, "3.13")
    proc = subprocess.run(["make", target, f"PYTHON={exe}"], cwd=REPO_ROOT, capture_output=True, text=True,
                          env={**os.environ, "MAKEFLAGS": ""}, timeout=60)
    ours = [line for line in proc.stderr.splitlines() if not line.startswith("make")]
    assert proc.returncode == 2
    assert ours == [f"setup: error: PYTHON={exe} is Python 3.13; the environments need Python 3.10, 3.11 "
                    "or 3.12 (xtuner 0.2.0: < 3.13): make setup PYTHON=python3.12"]
    # asked for its version only: no venv, no pip
    assert set(log.read_text().splitlines()) == {'-c import sys; print("%d.%d" % sys.version_info[:2])'}


def test_a_missing_interpreter_is_named(tmp_path: Path) -> None:
    proc = subprocess.run(["make", "setup", f"PYTHON={tmp_path}/python3.12"], cwd=REPO_ROOT,
                          capture_output=True, text=True, env={**os.environ, "MAKEFLAGS": ""}, timeout=60)
    assert proc.returncode == 2
    assert f"setup: error: cannot run PYTHON={tmp_path}/python3.12; the environments need Python 3.10" \
        in proc.stderr


def test_supported_versions_pass_the_check(tmp_path: Path) -> None:
    exe, _ = fake_python(tmp_path, "3.12")
    proc = subprocess.run(["tools/setup_env.sh", "--check-python"], cwd=REPO_ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHON": str(exe)}, timeout=60)
    assert (proc.returncode, proc.stderr) == (0, "")
