"""Small helpers shared by the step wrappers in tools/ (train, convert, merge, demo).

Standard library only. The wrappers run XTuner's own entry points as subprocesses and add what the
`xtuner` command lacks: checked inputs, real exit codes, resume, and atomic outputs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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


def _make_readable(root: Path) -> None:
    """Give a finished output the usual permissions (mkdtemp and some writers use owner-only ones)."""
    umask = os.umask(0)
    os.umask(umask)
    for path in (root, *root.rglob("*")):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


@contextmanager
def atomic_dir(final: Path, *, force: bool = False, step: str) -> Iterator[Path]:
    """Yield a temporary directory beside ``final``; rename it to ``final`` when the block succeeds.

    An interrupted or failed step leaves no directory at ``final``; a finished one is only replaced
    with ``force``.
    """
    if final.exists() and not force:
        fail(step, f"{final} already exists; remove it or pass --force (make: FORCE=1) to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        _make_readable(tmp)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
