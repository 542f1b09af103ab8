"""Atomic writes: an output appears whole or not at all, and an interrupted write leaves nothing.

    write_atomically(path, text_or_bytes)         one file
    write_files_atomically({path: text, ...})     several files: all are renamed into place together
    with atomic_dir(final, step="merge") as tmp:  a directory, built in ``tmp`` and renamed to ``final``

Files are written to a temporary beside their target (same file system) and renamed over it; text is
UTF-8 with "\\n" line ends; the result gets the usual permissions (0666/0777 less the umask).

And the one reader of JSON-lines input (gen-data's prompts, score-replies' replies):

    json_objects(path, text) -> ([(line number, object), ...], ["FILE:LINE: json: problem", ...])
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
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


def write_files_atomically(contents: Mapping[Path, Contents]) -> None:
    """Write each file to a temporary beside it, then rename them all; on failure leave none of them."""
    umask = _umask()
    temporaries: list[tuple[str, Path]] = []
    try:
        for target, data in contents.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            temporaries.append((temporary, target))
            os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600 files
            if isinstance(data, bytes):
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
            else:
                with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
                    handle.writelines([data] if isinstance(data, str) else data)
        for temporary, target in temporaries:
            os.replace(temporary, target)
    except BaseException:
        for temporary, _ in temporaries:
            if os.path.exists(temporary):
                os.unlink(temporary)
        raise


def write_atomically(path: Path, data: Contents) -> None:
    """Write one file atomically (see the module docstring)."""
    write_files_atomically({path: data})


def _make_readable(root: Path) -> None:
    """Give a finished output the usual permissions (mkdtemp and some writers use owner-only ones)."""
    umask = _umask()
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
