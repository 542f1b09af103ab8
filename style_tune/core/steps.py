"""Small helpers shared by the steps (style_tune.train: train, convert, merge, demo; the reports).

Standard library only. The wrappers run XTuner's own entry points as subprocesses and add what the
`xtuner` command lacks: checked inputs, real exit codes, resume, and atomic outputs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

_ITER_RE = re.compile(r"^iter_(\d+)\.pth$")


def fail(step: str, message: str) -> NoReturn:
    """Print one line saying what is wrong and what to do, then exit 1."""
    print(f"{step}: error: {message}", file=sys.stderr)
    sys.exit(1)


def run(step: str, cmd: Sequence[str], env: dict[str, str] | None = None) -> None:
    """Run a command with its output streaming through; exit with a one-line reason if it fails."""
    print(f"{step}: $ {' '.join(cmd)}", flush=True)
    merged_env = {**os.environ, **(env or {})}
    code = subprocess.call(list(cmd), env=merged_env)
    if code != 0:
        shown = " ".join([Path(cmd[0]).name, *cmd[1:3]])
        fail(step, f"`{shown} ...` failed with exit code {code} (its output is above)")


def iter_checkpoints(work_dir: Path) -> list[tuple[int, Path]]:
    """XTuner/mmengine checkpoints ``iter_N.pth`` in a work dir, oldest first."""
    if not work_dir.is_dir():
        return []
    found = []
    for path in work_dir.iterdir():
        match = _ITER_RE.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)



def loss_curve(work_dir: Path) -> list[tuple[int, float]]:
    """(iteration, loss) pairs from mmengine's LocalVisBackend logs (``*/vis_data/scalars.json``).

    One run directory per start of training; a resumed run's points continue the earlier ones.
    """
    points: dict[int, float] = {}
    for scalars in sorted(work_dir.glob("*/vis_data/scalars.json")):
        for line in scalars.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if "loss" in record and "iter" in record:
                points[int(record["iter"])] = float(record["loss"])
    return sorted(points.items())
