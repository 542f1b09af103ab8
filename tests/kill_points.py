"""Kill points: a step run as a user runs it (`make STEP ...`), stopped by a real signal right after one of
the file-system changes it makes, then run again.

The fault injector is tests/kill_points_site/sitecustomize.py, loaded into every Python process of the
step through PYTHONPATH. A run with ``record=LOG`` and no kill lists the step's changes under ROOT (one
line each); ``at=N`` kills the step's process group right after change N of the same sequence, so a kill
point is named by what the step had just done ("after os.mkdir .../.merged.tmp-..."), the same in every
run, never a timer. `points` picks early, middle and late ones from a recorded run.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SITE = Path(__file__).resolve().parent / "kill_points_site"
#: What the step's own temporaries and locks look like (style_tune/core/io.py names them); any of these
#: left under an output's directory after a finished rerun is a leftover.
#: The log of the session's tiny model build (tests/train/conftest.py), beside its directory.
TINY_LOG = "tiny-qwen2.5.log"
LEFTOVER = re.compile(r"^\..*(\.tmp-.*|\.tmp|\.lock)$")


def make(args: list[str], *, root: Path, log: Path, at: int | str = 0, sig: str = "KILL",
         timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """`make ARGS` in a session of its own, counting changes under ROOT into LOG, signalled after change AT
    (0: never; "/SUFFIX": the first change to a path ending so). Returns when the whole process group is
    done (make waits for its children)."""
    env = {**recording(root, log), "MAKEFLAGS": "", "STYLE_TUNE_KILL_AT": str(at),
           "STYLE_TUNE_KILL_SIGNAL": sig}
    return subprocess.run(["make", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, start_new_session=True, preexec_fn=as_in_a_terminal)


def as_in_a_terminal() -> None:
    """Ctrl-C's default action, as a terminal's foreground job has it: a shell's background job (pytest
    started with `&`) passes SIGINT on ignored, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(args: list[str], *, root: Path, log: Path, at: int, sig: str) -> subprocess.Popen[str]:
    """`make ARGS` as `make` does, but started in the background (a process group of its own)."""
    env = {**recording(root, log), "MAKEFLAGS": "", "STYLE_TUNE_KILL_AT": str(at),
           "STYLE_TUNE_KILL_SIGNAL": sig}
    return subprocess.Popen(["make", *args], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True,
                            preexec_fn=as_in_a_terminal)


def wait_stopped(proc: subprocess.Popen[str], timeout: float = 600) -> int:
    """The pid of the process of PROC's group that the injector stopped (SIGSTOP), once it is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if fields[0] == "T" and int(fields[2]) == proc.pid:  # state, process group
                return int(stat.parent.name)
        time.sleep(0.1)
    raise AssertionError(f"no process of group {proc.pid} stopped (make exited {proc.poll()})")


def recording(root: Path, log: Path | str) -> dict[str, str]:
    """The environment of a process whose changes under ROOT are recorded in LOG (relative: in ROOT's
    parent), with no kill: a reference run."""
    log = root.parent / log
    log.unlink(missing_ok=True)  # changes are counted from the log's lines: each run starts its own
    return {**os.environ, "PYTHONPATH": str(SITE), "STYLE_TUNE_KILL_ROOT": str(root),
            "STYLE_TUNE_KILL_LOG": str(log)}


def changes(log: Path) -> list[str]:
    """The changes a run made, in order: "EVENT PATH" each."""
    return [line.split(" ", 2)[2] for line in log.read_text(encoding="utf-8").splitlines()]


def points(log: Path) -> dict[str, int]:
    """Early, middle and late kill points of the recorded run in LOG: right after its first change to a
    temporary (made, still empty), halfway to the late one, and right before its last rename (the
    temporary complete, not yet in place)."""
    recorded = changes(log)
    early = next(n for n, change in enumerate(recorded, 1) if ".tmp" in change)
    late = max(n for n, change in enumerate(recorded, 1) if change.startswith("os.rename ")) - 1
    assert early < late - 1, f"{log}: too few changes to choose three kill points:\n" + "\n".join(recorded)
    return {"early": early, "middle": (early + late + 1) // 2, "late": late}


def kill_and_rerun(args: list[str], *, root: Path, at: int, timeout: float = 900
                   ) -> tuple[list[str], subprocess.CompletedProcess[str]]:
    """Kill `make ARGS` after change AT, then run it again: the rerun must exit 0, say that it removed
    what the kill left if the kill left a temporary, and leave none. Returns (what the kill left, the
    rerun's stderr)."""
    log = root.parent / f"{root.name}.kill.log"
    proc = make(args, root=root, log=log, at=at, timeout=timeout)
    assert killed(proc), (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    left = leftovers(root)
    rerun = make(args, root=root, log=root.parent / f"{root.name}.rerun.log", timeout=timeout)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    said = "removed what an interrupted run left" in rerun.stderr
    assert said == bool(left), (left, rerun.stderr[-3000:])
    assert leftovers(root) == [], leftovers(root)
    return left, rerun


def describe(log: Path, at: int) -> str:
    """Change AT of a recorded run, its path made relative to what it names (for a table)."""
    event, path = changes(log)[at - 1].split(" ", 1)
    name = Path(path).name
    return f"after {event} {'its temporary' if LEFTOVER.match(name) else name}"


def leftovers(root: Path) -> list[str]:
    """Temporaries and locks anywhere under ROOT (relative paths)."""
    return sorted(str(path.relative_to(root)) for path in root.rglob(".*") if LEFTOVER.match(path.name))


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ROOT by relative path, with its bytes."""
    files = sorted(path for path in root.rglob("*") if path.is_file())
    return {str(path.relative_to(root)): path.read_bytes() for path in files}


def killed(proc: subprocess.CompletedProcess[str], sig: str = "KILL") -> bool:
    """Whether make itself ended by the signal (the injector signals the whole process group)."""
    return proc.returncode == -getattr(signal, f"SIG{sig}")


def interrupted_cleanly(proc: subprocess.CompletedProcess[str], step: str) -> str:
    """After Ctrl-C: make stopped by SIGINT or exited 130 (what a shell shows as 130 either way), the
    step said one line and no traceback. Returns that line."""
    assert proc.returncode in (130, -signal.SIGINT), (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith(f"{step}: interrupted (Ctrl-C)")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]
