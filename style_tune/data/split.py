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
import csv
import gc
import hashlib
import io
import itertools
import json
import math
import os
import re
import sys
import tempfile
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from operator import itemgetter
from pathlib import Path


from style_tune.core import defaults
from style_tune.core.io import write_files_atomically
from style_tune.core.stats import percentile
from style_tune.core.prompts import MODES, STYLES, output_text, system_text

REQUIRED_COLUMNS: tuple[str, ...] = ("user", "style", "assistant")
SPLITS: tuple[str, ...] = ("train", "val", "test")
DEFAULT_RATIOS = "0.8,0.1,0.1"
RATIO_TOLERANCE = 1e-6
#: At most this many problems are printed (the total is always given).
MAX_PRINTED_PROBLEMS = 200

EXIT_OK, EXIT_WRITE_FAILED, EXIT_BAD_INPUT = 0, 1, 2

#: Undecodable bytes survive decoding as lone surrogates (the ``surrogateescape`` handler).
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
#: Full-width characters common in Chinese text, with their NFKC forms (see normalise_prompts).
_SEPARATOR = "\x00"
_COMMON_WIDE = tuple((char, unicodedata.normalize("NFKC", char)) for char in "，！？：；（）～\u3000")
#: A str as a JSON string literal, as ``json.dumps(text, ensure_ascii=False)`` writes it (the C
#: function behind it, called directly: the row loop runs millions of times).
_JSON_STRING = json.encoder.encode_basestring
#: One row exactly as ``json.dumps([row], ensure_ascii=False, indent=2)`` lays it out, in the
#: pieces around the system, input and output strings.
_ROW_START = '  {\n    "conversation": [\n      {\n        "system": '
_ROW_INPUT = ',\n        "input": '
_ROW_OUTPUT = ',\n        "output": '
_ROW_END = "\n      }\n    ]\n  }"


#: A data row: (user, style, assistant), cells trimmed. Plain tuples keep a million rows cheap,
#: and their natural order is the order rows are written in within a prompt group.
Row = tuple[str, str, str]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input; ``line`` is None for problems with the file as a whole."""

    line: int | None
    column: str
    message: str

    def render(self, path: str) -> str:
        where = path if self.line is None else f"{path}:{self.line}"
        return f"{where}: {self.column}: {self.message}"


class InputError(Exception):
    """Bad input or usage: the problems are reported, nothing is written, the exit status is 2."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__(f"{len(problems)} problem(s)")
        self.problems = list(problems)


@dataclass(frozen=True)
class Options:
    """The parsed command line."""

    csv_path: Path
    out_dir: Path
    seed: int
    ratios: tuple[Fraction, ...]
    mode: str
    styles: tuple[str, ...]
    encoding: str
    max_chars: int | None
    stats_md: Path | None


@dataclass
class Split:
    """One output split: its rows in output order and how many prompt groups they form."""

    name: str
    rows: list[Row]
    groups: int


@dataclass
class SplitStats:
    """Counts for one split."""

    name: str
    rows: int
    groups: int
    per_style: dict[str, int]


@dataclass
class Stats:
    """Everything the stdout table and the Markdown section report."""

    source: str
    options: Options
    input_rows: int
    duplicates_dropped: int
    splits: list[SplitStats]
    reply_lengths: tuple[int, int, int, int]
    prompt_lengths: tuple[int, int, int, int]
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Command line


def parse_ratios(text: str) -> tuple[Fraction, ...]:
    """Parse ``a,b,c`` into three positive fractions scaled to sum exactly to 1."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != len(SPLITS):
        raise ValueError(f"expected {len(SPLITS)} comma-separated numbers (train,val,test), got {text!r}")
    try:
        ratios = tuple(Fraction(part) for part in parts)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"cannot parse {text!r} as numbers, e.g. {DEFAULT_RATIOS}") from None
    for name, ratio in zip(SPLITS, ratios, strict=True):
        if ratio <= 0:
            raise ValueError(f"the {name} ratio must be positive (every split needs data), got {text!r}")
    total = sum(ratios)
    if abs(total - 1) > RATIO_TOLERANCE:
        raise ValueError(f"ratios must sum to 1, {text!r} sums to {float(total):g}")
    return tuple(ratio / total for ratio in ratios)


def parse_styles(text: str) -> tuple[str, ...]:
    """Parse ``温柔,毒舌`` (ASCII or full-width commas) into known, distinct style labels."""
    styles = tuple(part.strip() for part in re.split("[,，]", text) if part.strip())
    if not styles:
        raise ValueError("no style labels given")
    unknown = [style for style in styles if style not in STYLES]
    if unknown:
        known = ", ".join(STYLES)
        raise ValueError(f"unknown style(s) {', '.join(unknown)}; style_tune.core.prompts knows {known}")
    if len(set(styles)) != len(styles):
        raise ValueError(f"a style is listed twice in {text!r}")
    return styles


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="split_data.py",
        description="Split a style-dialogue CSV (columns user, style, assistant) into XTuner "
        "conversation JSON train/val/test files, grouping rows by normalised prompt.",
    )
    parser.add_argument("csv", type=Path, metavar="CSV", help="input CSV file")
    parser.add_argument("--out-dir", type=Path, required=True, help="directory for {train,val,test}.json")
    parser.add_argument("--seed", type=int, default=defaults.SEED, help=f"split seed (default {defaults.SEED})")
    parser.add_argument("--ratios", default=DEFAULT_RATIOS, help=f"train,val,test (default {DEFAULT_RATIOS})")
    parser.add_argument("--mode", choices=MODES, default=defaults.MODE, help=f"data format (default {defaults.MODE})")
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
# Reading and checking the CSV


def read_text(path: Path, encoding: str) -> tuple[str, bool]:
    """Read and decode the whole file; return the text and whether some bytes were undecodable.

    Undecodable bytes are kept as lone surrogates (``surrogateescape``) so that every place they
    occur can be reported with its line. Line breaks become LF (the line count is unchanged).
    """
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputError([Problem(None, "file", f"cannot read: {err.strerror or err}")]) from None
    codec = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
    try:
        text, has_bad_bytes = data.decode(codec), False
    except UnicodeDecodeError:
        text, has_bad_bytes = data.decode(codec, errors="surrogateescape"), True
    text = text.removeprefix("\ufeff")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text, has_bad_bytes


def iter_records(text: str, problems: list[Problem]) -> Iterator[tuple[int, list[str]]]:
    """Yield (start line, fields) for each non-blank CSV record.

    A syntax error (e.g. an unclosed quote) is appended to ``problems`` and ends the iteration.
    """
    csv.field_size_limit(2**31 - 1)  # long cells are --max-chars's business, not the parser's
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1
    try:
        for record in reader:
            if record:
                yield start, record
            start = reader.line_num + 1
    except csv.Error as err:
        hint = " (is a quote opened in this record and never closed?)" if "end of data" in str(err) else ""
        problems.append(Problem(start, "csv", f"malformed CSV: {err}{hint}"))


def decoding_problems(line: int, fields: Sequence[str], names: Sequence[str], encoding: str) -> list[Problem]:
    """Report cells that hold bytes the encoding could not decode."""
    problems = []
    if codecs.lookup(encoding).name == "gbk":
        hint = "check the file's encoding"
    else:
        hint = "if the file is GBK-encoded, rerun with --encoding gbk"
    for index, value in enumerate(fields):
        bad = _ESCAPED_BYTE.findall(value)
        if bad:
            shown = " ".join(f"0x{ord(char) - 0xDC00:02x}" for char in bad[:4])
            more = " ..." if len(bad) > 4 else ""
            column = names[index].strip() if index < len(names) else f"field {index + 1}"
            problems.append(
                Problem(line, column or f"field {index + 1}",
                        f"undecodable bytes {shown}{more} (tried encoding {encoding}; {hint})")
            )
    return problems


def locate_columns(line: int, names: Sequence[str]) -> tuple[tuple[int, ...], list[Problem]]:
    """Find the required columns in the header; report missing or repeated ones."""
    trimmed = [name.strip() for name in names]
    found = ", ".join(repr(name) for name in trimmed)
    indices, problems = [], []
    for column in REQUIRED_COLUMNS:
        count = trimmed.count(column)
        if count == 0:
            message = f"missing required column {column!r}; found columns: {found}"
            problems.append(Problem(line, "header", message))
        elif count > 1:
            problems.append(Problem(line, "header", f"column {column!r} appears {count} times"))
        else:
            indices.append(trimmed.index(column))
    return tuple(indices), problems


def check_row(line: int, row: Row, styles: Sequence[str], max_chars: int | None) -> list[Problem]:
    """Problems with one data row's required cells."""
    problems = []
    for column, value in zip(REQUIRED_COLUMNS, row, strict=True):
        if not value:
            problems.append(Problem(line, column, "empty cell"))
    _, style, assistant = row
    if style and style not in styles:
        allowed = ", ".join(styles)
        problems.append(Problem(line, "style", f"unknown style {style!r}; allowed: {allowed} (--styles)"))
    if max_chars is not None and len(assistant) > max_chars:
        problems.append(
            Problem(line, "assistant", f"reply is {len(assistant)} characters, over --max-chars {max_chars}")
        )
    return problems


def load_rows(options: Options) -> tuple[list[Row], int]:
    """Read, parse and check the CSV; return the valid rows and the number of data records.

    Raises :class:`InputError` listing every problem found.
    """
    text, has_bad_bytes = read_text(options.csv_path, options.encoding)
    problems: list[Problem] = []
    records = iter_records(text, problems)
    first = next(records, None)
    if first is None:
        expected = ", ".join(REQUIRED_COLUMNS)
        problems.append(Problem(1, "header", f"no header row; expected columns {expected}"))
        raise InputError(problems)
    header_line, names = first
    if has_bad_bytes:
        problems += decoding_problems(header_line, names, names, options.encoding)
    indices, header_problems = locate_columns(header_line, names)
    if header_problems:
        raise InputError(problems + header_problems)

    rows: list[Row] = []
    width = len(names)
    user_at, style_at, assistant_at = indices
    allowed = frozenset(options.styles)
    limit = math.inf if options.max_chars is None else options.max_chars
    n_records = 0
    for line, fields in records:
        n_records += 1
        if has_bad_bytes:
            problems += decoding_problems(line, fields, names, options.encoding)
        if len(fields) != width:
            problems.append(Problem(line, "row", f"has {len(fields)} field(s), the header has {width}"))
            continue
        row = (fields[user_at].strip(), fields[style_at].strip(), fields[assistant_at].strip())
        if row[0] and row[1] in allowed and row[2] and len(row[2]) <= limit:  # the fast, valid path
            rows.append(row)
        else:
            problems += check_row(line, row, options.styles, options.max_chars)
    if n_records == 0 and not problems:
        problems.append(Problem(header_line, "data", "no data rows after the header"))
    if problems:
        raise InputError(problems)
    return rows, n_records


# ---------------------------------------------------------------------------------------------
# Splitting


def normalise_prompt(text: str) -> str:
    """The grouping key: NFKC, trimmed, inner whitespace runs collapsed to one space."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def normalise_prompts(texts: Sequence[str]) -> list[str]:
    """:func:`normalise_prompt` of each text, faster for many texts.

    The full-width punctuation common in Chinese is first swapped for its NFKC form in one pass
    over all texts. That leaves every NFKC result unchanged (a character is replaced by its own
    compatibility decomposition) but lets ``normalize`` mostly take its already-normalised path.
    """
    joined = _SEPARATOR.join(texts)
    for wide, narrow in _COMMON_WIDE:
        joined = joined.replace(wide, narrow)
    prepared = joined.split(_SEPARATOR)
    if len(prepared) != len(texts):  # some text holds the separator itself
        prepared = list(texts)
    return [normalise_prompt(text) for text in prepared]


def drop_duplicates(rows: Sequence[Row]) -> tuple[list[Row], int]:
    """Drop repeats of a (user, style, assistant) row, keeping the first; return rows and count."""
    kept = list(dict.fromkeys(rows))
    return kept, len(rows) - len(kept)


def group_rows(rows: Sequence[Row]) -> dict[str, list[Row]]:
    """Group rows by normalised prompt (each distinct prompt text is normalised once)."""
    users = list({row[0] for row in rows})
    key_of = dict(zip(users, normalise_prompts(users), strict=True))
    groups: defaultdict[str, list[Row]] = defaultdict(list)
    for row in rows:
        groups[key_of[row[0]]].append(row)
    return groups


def order_groups(keys: Iterable[str], seed: int) -> list[str]:
    """Order group keys by a seeded hash: a shuffle that ignores input order.

    The hash is BLAKE2b keyed with a digest of the seed; ties (never seen in practice) fall back
    to the key itself, so the order is total.
    """
    secret = hashlib.blake2b(str(seed).encode(), digest_size=32).digest()

    def sort_key(key: str) -> bytes:
        data = key.encode()
        return hashlib.blake2b(data, digest_size=16, key=secret).digest() + data

    return sorted(keys, key=sort_key)


def split_sizes(n_groups: int, ratios: Sequence[Fraction]) -> list[int]:
    """Group counts per split, cut at the rounded cumulative ratios (each within one of target)."""
    bounds = [0]
    cumulative = Fraction(0)
    for ratio in ratios:
        cumulative += ratio
        bounds.append(math.floor(n_groups * cumulative + Fraction(1, 2)))
    bounds[-1] = n_groups
    return [end - start for start, end in zip(bounds, bounds[1:], strict=False)]


def check_sizes(sizes: Sequence[int], n_groups: int, ratios: Sequence[Fraction]) -> None:
    """Every split needs at least one group."""
    problems = []
    for name, size, ratio in zip(SPLITS, sizes, ratios, strict=True):
        if size == 0:
            message = (
                f"the {name} split would be empty: the data has {n_groups} distinct prompt(s) (groups) "
                f"and ratio {float(ratio):g} of that is {float(n_groups * ratio):.2f} groups; "
                "add data or change --ratios"
            )
            problems.append(Problem(None, "split", message))
    if problems:
        raise InputError(problems)


def split_rows(rows: Sequence[Row], options: Options) -> list[Split]:
    """Assign whole prompt groups to train/val/test.

    A split lists its groups in hash order, and each group's rows in their natural (user, style,
    assistant) order, so the output depends only on the seed and the set of rows.
    """
    groups = group_rows(rows)
    ordered = order_groups(groups, options.seed)
    sizes = split_sizes(len(ordered), options.ratios)
    check_sizes(sizes, len(ordered), options.ratios)
    splits, start = [], 0
    for name, size in zip(SPLITS, sizes, strict=True):
        chosen = list(map(groups.__getitem__, ordered[start:start + size]))
        for group in chosen:
            group.sort()
        splits.append(Split(name, list(itertools.chain.from_iterable(chosen)), size))
        start += size
    return splits


# ---------------------------------------------------------------------------------------------
# Output


def conversation_row(row: Row, mode: str) -> dict[str, list[dict[str, str]]]:
    """One row as the XTuner object (what :func:`json_chunks` writes)."""
    user, style, assistant = row
    return {
        "conversation": [
            {"system": system_text(mode, style), "input": user, "output": output_text(mode, style, assistant)}
        ]
    }


def json_chunks(rows: Iterable[Row], mode: str, batch_size: int = 10_000) -> Iterator[str]:
    """The XTuner JSON array in pieces, together byte-identical to
    ``json.dumps([conversation_row(row) ...], ensure_ascii=False, indent=2)`` plus a final newline.

    Laid out by hand because the pure-Python indenting encoder is several times slower.
    """
    heads: dict[str, str] = {}  # style -> the row's text up to the user's prompt
    prefix = "[\n"
    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, batch_size)):
        parts = []
        for user, style, assistant in batch:
            head = heads.get(style)
            if head is None:
                head = heads[style] = f"{_ROW_START}{_JSON_STRING(system_text(mode, style))}{_ROW_INPUT}"
            output = _JSON_STRING(output_text(mode, style, assistant))
            parts.append(f"{head}{_JSON_STRING(user)}{_ROW_OUTPUT}{output}{_ROW_END}")
        yield prefix + ",\n".join(parts)
        prefix = ",\n"
    yield "[]\n" if prefix == "[\n" else "\n]\n"


def to_json(rows: Iterable[Row], mode: str) -> str:
    """The whole JSON file as one string."""
    return "".join(json_chunks(rows, mode))


# ---------------------------------------------------------------------------------------------
# Statistics


def length_summary(counts: Counter[int]) -> tuple[int, int, int, int]:
    """(min, median, p90, max) of lengths given as {length: how many}; nearest-rank percentiles."""
    lengths = sorted(counts.elements())
    median, p90 = (percentile(lengths, q, nearest_rank=True) for q in (50, 90))
    return lengths[0], median, p90, lengths[-1]


def collect_stats(splits: Sequence[Split], options: Options, input_rows: int, dropped: int) -> Stats:
    """Count rows, groups and styles per split, and length figures over all rows written."""
    split_stats, warnings = [], []
    reply_lengths: Counter[int] = Counter()
    prompt_lengths: Counter[int] = Counter()
    for split in splits:
        counts = Counter(map(itemgetter(1), split.rows))
        per_style = {style: counts[style] for style in options.styles}
        split_stats.append(SplitStats(split.name, len(split.rows), split.groups, per_style))
        prompt_lengths.update(map(len, map(itemgetter(0), split.rows)))
        reply_lengths.update(map(len, map(itemgetter(2), split.rows)))
    present = {style for split in split_stats for style, count in split.per_style.items() if count}
    for split in split_stats:
        missing = [style for style in options.styles if style in present and not split.per_style[style]]
        if missing:
            warnings.append(f"the {split.name} split has no {', '.join(missing)} rows")
    return Stats(
        source=options.csv_path.name,
        options=options,
        input_rows=input_rows,
        duplicates_dropped=dropped,
        splits=split_stats,
        reply_lengths=length_summary(reply_lengths),
        prompt_lengths=length_summary(prompt_lengths),
        warnings=warnings,
    )


def split_table(stats: Stats) -> list[list[str]]:
    """Header plus one line per split plus a total line."""
    styles = stats.options.styles
    table = [["split", "rows", "distinct prompts", *styles]]
    for split in stats.splits:
        counts = (str(split.per_style[style]) for style in styles)
        table.append([split.name, str(split.rows), str(split.groups), *counts])
    table.append([
        "total",
        str(sum(split.rows for split in stats.splits)),
        str(sum(split.groups for split in stats.splits)),
        *(str(sum(split.per_style[s] for split in stats.splits)) for s in styles),
    ])
    return table


def describe_ratios(ratios: Sequence[Fraction]) -> str:
    return ",".join(f"{float(ratio):g}" for ratio in ratios)


def display_width(text: str) -> int:
    """Terminal columns, counting wide (CJK) characters as two."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def render_text(stats: Stats) -> str:
    """The plain-text table printed to stdout."""
    table = split_table(stats)
    widths = [max(display_width(line[i]) for line in table) for i in range(len(table[0]))]
    lines = [
        f"{stats.source}: seed {stats.options.seed}, ratios {describe_ratios(stats.options.ratios)}, "
        f"mode {stats.options.mode}"
    ]
    for line in table:
        cells = [line[0] + " " * (widths[0] - display_width(line[0]))]
        cells += [" " * (widths[i] - display_width(cell)) + cell for i, cell in enumerate(line) if i]
        lines.append("  ".join(cells))
    lines.append(f"input rows: {stats.input_rows}; exact duplicate rows dropped: {stats.duplicates_dropped}")
    for label, figures in (("reply", stats.reply_lengths), ("prompt", stats.prompt_lengths)):
        low, median, p90, high = figures
        lines.append(f"{label} length (characters): min {low}, median {median}, p90 {p90}, max {high}")
    return "\n".join(lines) + "\n"


def render_markdown(stats: Stats) -> str:
    """The same statistics as a Markdown section for the data card."""
    table = split_table(stats)
    options = stats.options
    lines = [
        "## Data splits",
        "",
        f"Generated by `style_tune/data/split.py` from `{stats.source}` with seed {options.seed}, "
        f"ratios {describe_ratios(options.ratios)} (train,val,test, counted in distinct prompts) "
        f"and mode `{options.mode}`. Rows are grouped by normalised prompt; no prompt is in two splits.",
        "",
        "| " + " | ".join(table[0]) + " |",
        "|---|" + "---:|" * (len(table[0]) - 1),
    ]
    lines += ["| " + " | ".join(line) + " |" for line in table[1:]]
    lines += [
        "",
        f"Input rows: {stats.input_rows}. Exact duplicate rows dropped: {stats.duplicates_dropped}.",
        "",
        "| length (characters, per row) | min | median | p90 | max |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, figures in (("reply", stats.reply_lengths), ("prompt", stats.prompt_lengths)):
        lines.append(f"| {label} | " + " | ".join(str(figure) for figure in figures) + " |")
    if stats.warnings:
        lines += ["", *(f"Warning: {warning}." for warning in stats.warnings)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Main


def report_problems(problems: Sequence[Problem], source: str) -> None:
    shown = sorted(problems, key=lambda problem: (problem.line or 0))[:MAX_PRINTED_PROBLEMS]
    for problem in shown:
        print(problem.render(source), file=sys.stderr)
    if len(problems) > len(shown):
        print(f"... and {len(problems) - len(shown)} more problem(s)", file=sys.stderr)
    print(f"split_data.py: {len(problems)} problem(s) in {source}; nothing written", file=sys.stderr)


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
    write_files_atomically(contents)
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
        print(f"split_data.py: cannot write output: {err}", file=sys.stderr)
        return EXIT_WRITE_FAILED
    finally:
        if gc_was_enabled:
            gc.enable()
    sys.stdout.write(render_text(stats))
    for warning in stats.warnings:
        print(f"split_data.py: warning: {warning}", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
