"""`make lint`'s type checker (mypy, `[tool.mypy]` in pyproject.toml; docs/testing.md#type-checking): the
project's configuration catches the kind of bug the CPU tests cannot reach.

A probe module, checked with the project's configuration, holds one of each: a misspelt name from the
project's own code, a wrong keyword in a branch only a GPU takes, a module that does not exist (the
toolchains' packages are ignored by name, not wholesale), a function without annotations and a
`# type: ignore` that does not say what it silences. Each must be reported with its error code.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from style_tune import REPO_ROOT

MYPY = Path(sys.executable).parent / "mypy"  # the dev env's, which runs tests/core

PROBE = '''\
from pathlib import Path

import torch
import torhc

from style_tune.core.io import write_atomically
from style_tune.core.io import write_atomicaly
from style_tune.core import no_such_module


def save(path: Path) -> None:
    if torch.cuda.is_available():  # never taken on the CPU
        write_atomically(path, "x", stepp="save")


def untyped(x):
    return x


count: int = "one"  # type: ignore
'''


def test_the_configuration_reports_each_kind_of_bug(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE, encoding="utf-8")
    # the project's configuration and cache (make lint's), the probe instead of the project's files
    done = subprocess.run([str(MYPY), "--config-file", str(REPO_ROOT / "pyproject.toml"), str(probe)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    errors = re.findall(r"^[^:\n]*probe\.py:(\d+): error: .*\[([a-z-]+)\]$", done.stdout, re.MULTILINE)
    found = {(int(line), code) for line, code in errors}
    assert found == {
        (4, "import-not-found"),       # torhc: not one of the packages ignored by name
        (7, "attr-defined"),           # the project's own name, misspelt
        (8, "attr-defined"),           # a module of the project's that does not exist
        (13, "call-arg"),              # a wrong keyword in the GPU branch
        (16, "no-untyped-def"),        # every function is annotated
        (20, "ignore-without-code"),   # a `# type: ignore` names what it silences
    }, done.stdout + done.stderr
    assert done.returncode == 1
