"""The Makefile's index and its defaults (style_tune/core/defaults.py, read through .envs/defaults.mk)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from style_tune.core import defaults

REPO_ROOT = Path(__file__).resolve().parents[2]


def make(*args: str) -> str:
    proc = subprocess.run(["make", "-s", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "MAKEFLAGS": ""})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_make_help_lists_every_documented_target() -> None:
    documented = re.findall(r"^([a-z-]+):.*## ", (REPO_ROOT / "Makefile").read_text(), re.M)
    listed = [line.split()[0] for line in make("help").splitlines()]
    assert listed == documented and {"split", "train", "metric-table", "demo", "test"} <= set(listed)


def test_the_makefile_takes_its_defaults_from_the_python_module() -> None:
    show = "show: ; @echo $(MODE) $(SEED) $(BASE_MODEL) $(SELECT_INTERNLM) $(EVAL_MAX_OUT_LEN)"
    shown = make("--eval", show, "show").split()
    assert shown == [defaults.MODE, str(defaults.SEED), defaults.BASE_MODEL, defaults.RIVAL_MODEL,
                     str(defaults.EVAL_MAX_OUT_LEN)]
