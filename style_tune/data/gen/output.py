"""gen-data's output: OUT (the accepted replies, ``user,style,assistant``, ready for `make split`) and
``OUT.rejected.csv`` (the same columns plus ``reason``), written atomically together when every request
has been tried; an earlier run's are removed first, so an interrupted run leaves neither.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from style_tune.core.io import sweep_temporaries, write_files_atomically
from style_tune.data.gen import STEP
from style_tune.data.gen.validate import Answer

OUTPUT_COLUMNS = ("user", "style", "assistant")
REJECTED_COLUMNS = (*OUTPUT_COLUMNS, "reason")


def side_path(out: Path, suffix: str) -> Path:
    """OUT with ``.csv`` replaced: ``.rejected.csv``, ``.journal.jsonl``."""
    return out.with_name(out.name[: -len(".csv")] + suffix)


def csv_text(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()


def remove_stale(out: Path, rejected: Path) -> None:
    """An earlier run's outputs (a rerun must not leave them looking current if it is interrupted)
    and the temporaries an interrupted write of them left (said in one line)."""
    for path in (out, rejected):
        path.unlink(missing_ok=True)
        sweep_temporaries(path, STEP)


def write_outputs(out: Path, rejected: Path, answers: Sequence[Answer], reasons: Sequence[Sequence[str]]
                  ) -> tuple[int, int]:
    """OUT and the rejected rows (each with its reasons, ``; ``-separated), in the order of ``answers``,
    the replies trimmed; returns how many rows each has."""
    judged = list(zip(answers, reasons, strict=True))
    kept = [(a.user, a.style, a.reply.strip()) for a, why in judged if not why]
    dropped = [(a.user, a.style, a.reply.strip(), "; ".join(why)) for a, why in judged if why]
    write_files_atomically({out: csv_text(OUTPUT_COLUMNS, kept),
                            rejected: csv_text(REJECTED_COLUMNS, dropped)})
    return len(kept), len(dropped)
