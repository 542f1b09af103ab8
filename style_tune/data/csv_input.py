"""Reading and checking the style CSV (`make split`'s first job): decode, parse, validate every row.

Every problem is collected as a :class:`Problem` (file, line, column, what is wrong) and raised
together as :class:`InputError`, so bad input is reported in full and nothing is written.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from style_tune.data.options import Options

REQUIRED_COLUMNS: tuple[str, ...] = ("user", "style", "assistant")

#: Undecodable bytes survive decoding as lone surrogates (the ``surrogateescape`` handler).
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


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
