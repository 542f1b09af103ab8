"""Small helpers shared by the steps (style_tune.train: train, convert, merge, demo; the reports).

Standard library only. The wrappers run XTuner's own entry points as subprocesses and add what the
`xtuner` command lacks: checked inputs, real exit codes, resume, and atomic outputs.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

_ITER_RE = re.compile(r"^iter_(\d+)\.pth$")


def fail(step: str, message: str) -> NoReturn:
    """Print one line saying what is wrong and what to do, then exit 1."""
    print(f"{step}: error: {message}", file=sys.stderr)
    sys.exit(1)


def main_of(step: str, main: Callable[[], int], *, after_ctrl_c: str = "nothing half-written was kept; "
            "run the same command again") -> NoReturn:
    """Run a step's ``main`` as the program: exit with its code, and after Ctrl-C with one line and 130
    (the shell's code for SIGINT) instead of a traceback. What the step was writing is cleaned by the
    ``finally`` blocks the KeyboardInterrupt passes through (style_tune.core.io)."""
    try:
        code = main()
    except KeyboardInterrupt:
        print(f"{step}: interrupted (Ctrl-C); {after_ctrl_c}", file=sys.stderr, flush=True)
        code = 130
    sys.exit(code)


def _ignore_ctrl_c() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run(step: str, cmd: Sequence[str], env: dict[str, str] | None = None) -> None:
    """Run a command with its output streaming through; exit with a one-line reason if it fails.

    Ctrl-C reaches the whole foreground process group; the command ignores it and this process stops
    it (SIGTERM, then SIGKILL after 30 s) and raises KeyboardInterrupt, so a tool's own traceback does
    not bury the step's one line. The command stays in this process group: a kill of the group (a
    closed terminal, `kill -- -PGID`) still reaches it.
    """
    print(f"{step}: $ {' '.join(cmd)}", flush=True)
    merged_env = {**os.environ, **(env or {})}
    proc = subprocess.Popen(list(cmd), env=merged_env, preexec_fn=_ignore_ctrl_c)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
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


def checkpoint_complete(path: Path) -> bool:
    """Whether an ``iter_N.pth`` file was written to its end: torch.save writes a zip archive, whose
    directory comes last, so a save cut short by a kill lacks it. Read without unpickling anything. A
    DeepSpeed checkpoint (a directory) is taken as it is."""
    return path.is_dir() or zipfile.is_zipfile(path)
