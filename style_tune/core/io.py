"""Atomic writes: an output appears whole or not at all, and an interrupted write leaves nothing.

    write_atomically(path, text_or_bytes)         one file
    write_files_atomically({path: text, ...})     several files: all are renamed into place together
    with atomic_dir(final, step="merge") as tmp:  a directory, built in ``tmp`` and renamed to ``final``

Files are written to a temporary beside their target (same file system) and renamed over it; text is
UTF-8 with "\\n" line ends; the result gets the usual permissions (0666/0777 less the umask).

A run holds an exclusive lock (flock) on its temporary while it writes. Before writing, it removes the
temporaries an interrupted run left beside the same target (same name pattern, same owner, no process
holding their lock) and says so in one line; a temporary another process still writes makes it stop
instead ("another run (pid N) is writing ..."), so two runs never write one target at once. No lock
files: a killed process's lock goes with it, so what it left is recognisably stale.

And the one reader of JSON-lines input (gen-data's prompts, score-replies' replies):

    json_objects(path, text) -> ([(line number, object), ...], ["FILE:LINE: json: problem", ...])
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from style_tune.core.steps import fail

#: What a file's contents may be given as: text, bytes, or text chunks (written as they come).
Contents = str | bytes | Iterable[str]


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


#: A temporary whose process is alive and which is younger than this counts as that process's even
#: before it is locked: the moment between creating a temporary and locking it.
_FRESH_S = 60.0


def _temporary_pattern(target_name: str) -> re.Pattern[str]:
    """The names of TARGET's temporaries: ``.NAME.tmp-[PID-]XXXXXXXX`` (atomic_dir) and
    ``.NAME.[PID-]XXXXXXXX.tmp`` (the file writer), XXXXXXXX being 8 random characters (hex; tempfile's
    alphabet in the names earlier versions left).
    Names without the pid are what versions before the sweep left."""
    name = re.escape(target_name)
    return re.compile(rf"\.{name}\.(?:tmp-(?:(\d+)-)?[a-z0-9_]{{8}}|(?:(\d+)-)?[a-z0-9_]{{8}}\.tmp)")


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on PATH (file or directory), or None if another process holds it."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _alive(pid: int) -> bool:
    """Whether process PID runs. A zombie does not (a killed step whose parent died too stays one where
    nothing reaps orphans, e.g. in a container without an init process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # someone else's process
            return True
        return True
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def sweep_temporaries(target: Path, step: str, *, own: Path | None = None) -> None:
    """Remove the temporaries interrupted runs left beside TARGET (matched by name and owner, unlocked)
    and say so in one line; stop with one line if another running process is writing TARGET."""
    pattern = _temporary_pattern(target.name)
    try:
        entries = sorted(os.scandir(target.parent), key=lambda entry: entry.name)
    except FileNotFoundError:
        return
    removed = []
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        # by absolute path: scandir names a bare file name's entries ./NAME, the caller's OWN may be NAME
        if match is None or (own is not None and os.path.abspath(entry.path) == os.path.abspath(own)):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if info.st_uid != os.getuid() or entry.is_symlink():
                continue  # not ours: never touched
            fd = _try_lock(Path(entry.path))
        except FileNotFoundError:  # its own run just finished or removed it
            continue
        pid = int(match.group(1) or match.group(2) or 0)
        fresh = pid not in (0, os.getpid()) and _alive(pid) and time.time() - info.st_mtime < _FRESH_S
        if fd is None or fresh:
            if fd is not None:
                os.close(fd)
            fail(step, f"another run (pid {pid or '?'}) is writing {target} (its temporary {entry.name} is "
                       "in use); wait for it to finish, or stop it and run this again")
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
                removed.append(f"{entry.name}/")
            else:
                os.unlink(entry.path)
                removed.append(entry.name)
        finally:
            os.close(fd)
    if removed:
        print(f"{step}: removed what an interrupted run left beside {target}: {', '.join(removed)}",
              file=sys.stderr, flush=True)


def _temporary(target: Path, *, directory: bool) -> Path:
    """A fresh temporary name beside TARGET, with this process's pid (see `_temporary_pattern`). Named
    here rather than by tempfile, so that the name is known before anything exists: a Ctrl-C at any
    moment after the creation finds it in the caller's cleanup."""
    token = secrets.token_hex(4)
    if directory:
        return target.parent / f".{target.name}.tmp-{os.getpid()}-{token}"
    return target.parent / f".{target.name}.{os.getpid()}-{token}.tmp"


def _create_temporary(target: Path, temporaries: list[tuple[Path, Path]]) -> tuple[Path, int]:
    """Create a fresh temporary file beside TARGET, listed in TEMPORARIES before it exists (the caller's
    cleanup knows it): its path and an fd open for reading and writing."""
    while True:
        temporary = _temporary(target, directory=False)
        temporaries.append((temporary, target))
        try:
            return temporary, os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)  # less the umask
        except FileExistsError:  # a dead process with this pid drew the same 8 hex digits
            temporaries.pop()


def write_files_atomically(contents: Mapping[Path, Contents], *, step: str | None = None) -> None:
    """Write each file to a temporary beside it, then rename them all; on failure leave none of them.

    The temporaries interrupted runs left beside these targets go first (`sweep_temporaries`); STEP
    names the step in what that says (default: the program's name).
    """
    step = step or Path(sys.argv[0]).stem
    temporaries: list[tuple[Path, Path]] = []
    fds: list[int] = []
    try:
        for target, data in contents.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary, fd = _create_temporary(target, temporaries)
            fds.append(fd)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held until renamed: ours, not stale
            sweep_temporaries(target, step, own=temporary)
            # a second descriptor to write through: closing it keeps the lock (held by the first)
            if isinstance(data, bytes):
                with os.fdopen(os.dup(fd), "wb") as handle:
                    handle.write(data)
            else:
                with os.fdopen(os.dup(fd), "w", encoding="utf-8", newline="\n") as handle:
                    handle.writelines([data] if isinstance(data, str) else data)
        for temporary, target in temporaries:
            os.replace(temporary, target)
    except BaseException:
        for temporary, _ in temporaries:
            temporary.unlink(missing_ok=True)
        raise
    finally:
        for held in fds:
            os.close(held)


def write_atomically(path: Path, data: Contents, *, step: str | None = None) -> None:
    """Write one file atomically (see the module docstring)."""
    write_files_atomically({path: data}, step=step)


def _make_readable(root: Path) -> None:
    """Give a finished output the usual permissions (the temporary and some writers use owner-only ones)."""
    umask = _umask()
    for path in (root, *root.rglob("*")):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


@contextmanager
def atomic_dir(final: Path, *, force: bool = False, step: str) -> Iterator[Path]:
    """Yield a temporary directory beside ``final``; rename it to ``final`` when the block succeeds.

    An interrupted or failed step leaves no directory at ``final``; a finished one is only replaced
    with ``force``. What interrupted runs left beside ``final`` is removed first (`sweep_temporaries`).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    fd = None
    tmp = _temporary(final, directory=True)
    try:
        while True:
            try:
                os.mkdir(tmp, 0o700)
                break
            except FileExistsError:  # a dead process with this pid drew the same 8 hex digits
                tmp = _temporary(final, directory=True)
        fd = _try_lock(tmp)  # just made: nobody else holds it
        sweep_temporaries(final, step, own=tmp)
        if final.exists() and not force:
            fail(step, f"{final} already exists; remove it or pass --force (make: FORCE=1) to replace it")
        yield tmp
        _make_readable(tmp)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if fd is not None:
            os.close(fd)


def json_objects(path: Path, text: str) -> tuple[list[tuple[int, dict]], list[str]]:
    """The JSON objects of a JSON-lines text, each with its line number (blank lines skipped), and a
    `FILE:LINE: json: ...` problem for each line that is not one object. Lines are split at "\\n" only,
    so the numbers match an editor's (str.splitlines would also split at \\x1c, \\u2028, ...)."""
    objects, problems = [], []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            problems.append(f"{path}:{number}: json: not a JSON object ({err.msg} at column {err.colno})")
            continue
        if isinstance(row, dict):
            objects.append((number, row))
        else:
            problems.append(f"{path}:{number}: json: a {type(row).__name__}, not a JSON object")
    return objects, problems
