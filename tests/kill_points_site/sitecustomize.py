"""Fault injection for the kill-point tests (tests/kill_points.py): Python loads this module at start-up
in every process of a step run with ``PYTHONPATH=tests/kill_points_site`` (make, the wrapper, XTuner's
own process). Inert unless STYLE_TUNE_KILL_ROOT is set.

It counts the changes to the file system under STYLE_TUNE_KILL_ROOT that Python's audit events announce
(an open for writing, mkdir, rename, remove, rmdir, rmtree) in the order they happen, across the step's
processes, one line each in STYLE_TUNE_KILL_LOG ("N PID EVENT PATH"). With STYLE_TUNE_KILL_AT=N it acts
right after change N took effect (STYLE_TUNE_KILL_AT=/SUFFIX: the first change to a path ending so), at the
next thing the process does:
STYLE_TUNE_KILL_SIGNAL=KILL (default) or INT sends the signal to the whole process group, as `kill -9` of
the job or Ctrl-C at its terminal would; STOP stops this process alone, holding it mid-write.
Writes Python does not announce (safetensors' and torch's own C++ writers) are not counted: a kill point
is always one of the announced changes.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys

_ROOT = os.environ.get("STYLE_TUNE_KILL_ROOT")
_LOG = os.environ.get("STYLE_TUNE_KILL_LOG", "")
_AT = os.environ.get("STYLE_TUNE_KILL_AT") or "0"
_SIGNAL = os.environ.get("STYLE_TUNE_KILL_SIGNAL", "KILL")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_busy = False
_fired: set[str] = set()


def _path(value: object) -> str | None:
    """An absolute path of an event's path argument (None for a file descriptor)."""
    if isinstance(value, int):
        return None
    value = os.fsdecode(os.fspath(value))
    return os.path.abspath(value)


def _change(event: str, args: tuple) -> str | None:
    """The path a file-system change touches, if EVENT is one (and not relative to a directory fd)."""
    if event == "open":
        path, mode, flags = args
        writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & _WRITE_FLAGS)
        return _path(path) if writes else None
    if event in ("os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree"):
        dir_fd = args[-1]
        return _path(args[0]) if dir_fd in (None, -1) else None
    if event == "os.rename":
        return _path(args[1]) if args[2] in (None, -1) and args[3] in (None, -1) else None
    return None


def _count(line: str) -> int:
    """Append LINE to the shared log under its lock; return its number (1-based)."""
    fd = os.open(_LOG, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        number = os.pread(fd, os.fstat(fd).st_size, 0).count(b"\n") + 1
        os.write(fd, f"{number} {os.getpid()} {line}\n".encode())
        return number
    finally:
        os.close(fd)


def _act() -> None:
    if _SIGNAL == "STOP":
        os.kill(os.getpid(), signal.SIGSTOP)
    else:
        os.killpg(os.getpgrp(), getattr(signal, f"SIG{_SIGNAL}"))


def _after(frame, event, arg) -> None:  # noqa: ANN001 - sys.setprofile's callback
    """The first profile event outside this module: the announced change has happened."""
    if frame.f_code.co_filename == __file__:
        return
    sys.setprofile(None)
    _act()


def _hook(event: str, args: tuple) -> None:
    global _busy
    if _busy:
        return
    _busy = True
    try:
        path = _change(event, args)
        if path is None or path == _LOG or not (path == _ROOT or path.startswith(_ROOT + os.sep)):
            return
        number = _count(f"{event} {path}")
        if (number == int(_AT)) if _AT.isdigit() else (path.endswith(_AT) and _AT not in _fired):
            _fired.add(_AT)
            sys.setprofile(_after)  # act once the change is made, at this thread's next call or return
    finally:
        _busy = False


if _ROOT:
    _ROOT = os.path.abspath(_ROOT)
    sys.addaudithook(_hook)
