"""README's metric table, generated from the metric definitions (style_tune.eval.style_metrics).

    python -m style_tune.eval.metric_table           rewrite the table in README.md
    python -m style_tune.eval.metric_table --check   exit 1 if README.md's table is out of date

The table sits between the lines ``<!-- metrics:begin -->`` and ``<!-- metrics:end -->``. Standard
library only at import (the definitions need no eval-env package), so any env can run it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from style_tune import REPO_ROOT
from style_tune.core.io import write_atomically
from style_tune.core.prompts import MODES
from style_tune.eval.style_metrics import METRIC_DEFINITIONS

BEGIN, END = "<!-- metrics:begin -->", "<!-- metrics:end -->"


def table() -> str:
    """The Markdown table: one row per metric, in report order."""
    lines = ["| metric | range | what it measures |", "|---|---|---|"]
    for metric in METRIC_DEFINITIONS:
        only = "" if set(metric.modes) == set(MODES) else f"({', '.join(metric.modes)} mode) "
        lines.append(f"| `{metric.name}` | {metric.range} | {only}{metric.meaning} |")
    return "\n".join(lines) + "\n"


def with_table(text: str) -> str:
    """``text`` with the block between the markers replaced by the current table."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"no {BEGIN} line followed by a {END} line")
    return f"{text[:start]}{BEGIN}\n{table()}{text[end:]}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m style_tune.eval.metric_table",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=REPO_ROOT / "README.md")
    parser.add_argument("--check", action="store_true", help="only check that the table is up to date")
    args = parser.parse_args(argv)
    try:
        current = args.readme.read_text(encoding="utf-8")
        updated = with_table(current)
    except (OSError, ValueError) as err:
        print(f"metric_table: {args.readme}: {err}", file=sys.stderr)
        return 2
    if updated == current:
        print(f"metric_table: {args.readme} is up to date")
        return 0
    if args.check:
        print(f"metric_table: {args.readme}'s metric table is out of date: run `make metric-table`",
              file=sys.stderr)
        return 1
    write_atomically(args.readme, updated)
    print(f"metric_table: wrote the metric table into {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
