#!/usr/bin/env python3
"""Split a style-dialogue CSV into XTuner conversation JSON: train / val / test.

Usage::

    python3 -m style_tune.data.split CSV --out-dir DIR [--seed 42] [--ratios 0.8,0.1,0.1]
        [--mode label|controllable] [--styles 温柔,毒舌] [--encoding utf-8]
        [--max-chars N] [--stats-md FILE]

Input
    A CSV file (UTF-8 with or without BOM, or the codec named by ``--encoding``; LF or CRLF; the
    usual double-quote quoting, so cells may hold commas, quotes and newlines) whose header row
    has the columns ``user``, ``style`` and ``assistant`` (names matched after trimming spaces;
    other columns are ignored). Every data row needs the same number of fields as the header.
    Cells are trimmed and newlines inside cells become ``\\n``.

Output
    ``DIR/train.json``, ``DIR/val.json`` and ``DIR/test.json``: JSON arrays of XTuner rows
    ``{"conversation": [{"system": ..., "input": user, "output": ...}]}``, with the system and
    output texts built by :mod:`style_tune.core.prompts` for ``--mode``. A statistics table goes to
    stdout; ``--stats-md FILE`` also writes it as a Markdown section for the data card.

Splitting
    Exact duplicate rows (same user, style and assistant after trimming) are dropped. Rows are
    grouped by the normalised prompt (NFKC, trimmed, inner whitespace runs collapsed to one
    space) and whole groups go to one split, so no prompt is in two splits. Groups are ordered
    by a BLAKE2b hash of (seed, prompt) and cut at the cumulative ratios (counted in groups, so
    each split is within one group of its target). The result depends only on the seed and the
    set of rows, not on their order in the file.

Exit status
    0 on success; 2 on bad input or usage, after listing every problem as
    ``FILE:LINE: column: what is wrong`` (LINE is the line where the CSV record starts) and
    writing nothing; 1 if the output files cannot be written.
"""

from __future__ import annotations

import argparse
import codecs
import gc
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from style_tune.core import defaults
from style_tune.core.io import write_files_atomically
from style_tune.core.prompts import MODES, STYLES
from style_tune.core.steps import main_of
from style_tune.data.csv_input import InputError, Problem, load_rows
from style_tune.data.grouping import drop_duplicates, split_rows
from style_tune.data.options import DEFAULT_RATIOS, Options, parse_ratios, parse_styles
from style_tune.data.split_stats import Stats, collect_stats, render_markdown, render_text
from style_tune.data.xtuner_json import json_chunks

STEP = "split"  # what its messages start with: `make split`
PROG = "python -m style_tune.data.split"  # what --help and usage errors name: the command itself
#: At most this many problems are printed (the total is always given).
MAX_PRINTED_PROBLEMS = 200

EXIT_OK, EXIT_WRITE_FAILED, EXIT_BAD_INPUT = 0, 1, 2


# ---------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Split a style-dialogue CSV (columns user, style, assistant) into XTuner "
        "conversation JSON train/val/test files, grouping rows by normalised prompt.",
    )
    parser.add_argument("csv", type=Path, metavar="CSV", help="input CSV file")
    parser.add_argument("--out-dir", type=Path, required=True, help="directory for {train,val,test}.json")
    parser.add_argument("--seed", type=int, default=defaults.SEED,
                        help=f"split seed (default {defaults.SEED})")
    parser.add_argument("--ratios", default=DEFAULT_RATIOS, help=f"train,val,test (default {DEFAULT_RATIOS})")
    parser.add_argument("--mode", choices=MODES, default=defaults.MODE,
                        help=f"data format (default {defaults.MODE})")
    parser.add_argument("--styles", default=",".join(STYLES), help="allowed style labels, in order")
    parser.add_argument("--encoding", default="utf-8", help="CSV encoding (default utf-8; BOM allowed)")
    parser.add_argument("--max-chars", type=int, help="reject replies longer than N characters")
    parser.add_argument("--stats-md", type=Path, help="also write the statistics as Markdown here")
    return parser


def parse_options(argv: Sequence[str] | None) -> Options:
    """Parse and check the command line; usage errors exit 2 through argparse."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        ratios = parse_ratios(args.ratios)
    except ValueError as err:
        parser.error(f"--ratios: {err}")
    try:
        styles = parse_styles(args.styles)
    except ValueError as err:
        parser.error(f"--styles: {err}")
    if args.max_chars is not None and args.max_chars < 1:
        parser.error(f"--max-chars must be a positive integer, got {args.max_chars}")
    try:
        codecs.lookup(args.encoding)
    except LookupError:
        parser.error(f"--encoding: unknown encoding {args.encoding!r}")
    if args.out_dir.exists() and not args.out_dir.is_dir():
        parser.error(f"--out-dir: {args.out_dir} exists and is not a directory")
    if args.stats_md is not None and args.stats_md.is_dir():
        parser.error(f"--stats-md: {args.stats_md} is a directory")
    return Options(
        csv_path=args.csv,
        out_dir=args.out_dir,
        seed=args.seed,
        ratios=ratios,
        mode=args.mode,
        styles=styles,
        encoding=args.encoding,
        max_chars=args.max_chars,
        stats_md=args.stats_md,
    )


# ---------------------------------------------------------------------------------------------
# Main


def report_problems(problems: Sequence[Problem], source: str) -> None:
    shown = sorted(problems, key=lambda problem: (problem.line or 0))[:MAX_PRINTED_PROBLEMS]
    for problem in shown:
        print(problem.render(source), file=sys.stderr)
    if len(problems) > len(shown):
        print(f"... and {len(problems) - len(shown)} more problem(s)", file=sys.stderr)
    print(f"{STEP}: {len(problems)} problem(s) in {source}; nothing written", file=sys.stderr)


def run(options: Options) -> Stats:
    """Load, split and write; raises :class:`InputError` before writing anything on bad input."""
    rows, input_rows = load_rows(options)
    rows, dropped = drop_duplicates(rows)
    splits = split_rows(rows, options)
    del rows
    stats = collect_stats(splits, options, input_rows, dropped)
    contents: dict[Path, Iterable[str]] = {
        options.out_dir / f"{split.name}.json": json_chunks(split.rows, options.mode) for split in splits
    }
    if options.stats_md is not None:
        contents[options.stats_md] = [render_markdown(stats)]
    write_files_atomically(contents, step=STEP)
    return stats


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    source = str(options.csv_path)
    # Millions of small acyclic objects (rows, fields) make the cyclic GC rescan the heap over and
    # over for nothing; reference counting frees everything here.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        stats = run(options)
    except InputError as err:
        report_problems(err.problems, source)
        return EXIT_BAD_INPUT
    except OSError as err:
        print(f"{STEP}: cannot write output: {err}", file=sys.stderr)
        return EXIT_WRITE_FAILED
    finally:
        if gc_was_enabled:
            gc.enable()
    sys.stdout.write(render_text(stats))
    for warning in stats.warnings:
        print(f"{STEP}: warning: {warning}", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    main_of(STEP, main)
