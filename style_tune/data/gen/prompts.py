"""gen-data's input: the prompts file (one prompt a line, a CSV column or a JSON-lines field) read, each
prompt cleaned, and the ones not worth asking dropped with a count per reason.

Each prompt is NFKC-normalised (Chinese punctuation kept as typed), stripped of URLs and ASCII @handles,
its whitespace collapsed; prompts outside the styles file's length bounds, empty ones and repeats (the
split tool's normalisation, so no prompt is asked twice that `make split` would group) are dropped.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from style_tune.core.io import json_objects
from style_tune.data.gen import STEP, InputError
from style_tune.data.grouping import normalise_prompt  # the split tool's grouping key

_URL = re.compile(r"(?:https?://|www\.)[^\s\u3000-\u303f\uff01-\uff5e]+", re.IGNORECASE)
#: ASCII @handles only: a CJK mention has no end marker in unspaced text (群里@所有人).
_HANDLE = re.compile(r"(?<![A-Za-z0-9_.@])@[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
#: Chinese punctuation that NFKC would turn into ASCII: kept as typed, as the shipped data and users
#: write it (the split tool's grouping key normalises it anyway, so duplicates are still found).
_KEEP_WIDE = re.compile("([，。！？：；（）～、《》“”‘’])")

def read_prompts(path: Path, column: str) -> list[tuple[int, str]]:
    """(line, text) of every prompt in the file: lines, a CSV column or a JSON-lines field."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError([f"{path}: no such file (PROMPTS= names the prompts file)"]) from None
    except OSError as err:
        raise InputError([f"{path}: cannot read: {err.strerror or err}"]) from None
    text = data.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        items, problems = _read_csv(path, text, column)
    elif suffix in (".jsonl", ".ndjson"):
        items, problems = _read_jsonl(path, text, column)
    else:
        items = [(n, line) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
        problems = []
    for line, value in items:
        bad = _ESCAPED_BYTE.findall(value)
        if bad:
            shown = " ".join(f"0x{ord(ch) - 0xDC00:02x}" for ch in bad[:4])
            where = "" if suffix not in (".csv", ".jsonl", ".ndjson") else f" {column}:"
            problems.append(f"{path}:{line}:{where} undecodable bytes {shown} (the file must be UTF-8; "
                            "convert it, e.g. iconv -f GBK -t UTF-8)")
    if problems:
        raise InputError(problems)
    if not items:
        raise InputError([f"{path}: no prompts in the file"])
    return items


def _read_csv(path: Path, text: str, column: str) -> tuple[list[tuple[int, str]], list[str]]:
    csv.field_size_limit(2**31 - 1)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    items, problems, start, at = [], [], 1, None
    try:
        for record in reader:
            if record:
                if at is None:
                    names = [name.strip() for name in record]
                    if names.count(column) != 1:
                        found = ", ".join(repr(name) for name in names)
                        what = "no" if column not in names else "more than one"
                        return [], [f"{path}:{start}: header: {what} column {column!r} (found {found}); "
                                    "name the prompt column with PROMPT_COLUMN= (--column)"]
                    at, width = names.index(column), len(names)
                elif len(record) != width:
                    problems.append(f"{path}:{start}: row: has {len(record)} field(s), "
                                    f"the header has {width}")
                elif record[at].strip():
                    items.append((start, record[at]))
            start = reader.line_num + 1
    except csv.Error as err:
        problems.append(f"{path}:{start}: csv: malformed CSV: {err} (an unclosed quote?)")
    if at is None and not problems:
        problems.append(f"{path}:1: header: the file is empty; expected a header row with column {column!r}")
    return items, problems


def _read_jsonl(path: Path, text: str, column: str) -> tuple[list[tuple[int, str]], list[str]]:
    items = []
    rows, problems = json_objects(path, text)
    for number, row in rows:
        if not isinstance(row.get(column), str):
            what = "missing" if column not in row else f"not a string ({type(row[column]).__name__})"
            problems.append(f"{path}:{number}: {column}: {what}; name the prompt field with PROMPT_COLUMN= "
                            "(--column)")
        elif row[column].strip():
            items.append((number, row[column]))
    return items, problems


def clean_prompt(text: str) -> tuple[str, int]:
    """NFKC (Chinese punctuation kept), URLs and ASCII @handles removed, whitespace runs made one space,
    trimmed; and how many URLs and handles were removed."""
    text = "".join(part if _KEEP_WIDE.fullmatch(part) else unicodedata.normalize("NFKC", part)
                   for part in _KEEP_WIDE.split(text))
    text, urls = _URL.subn(" ", text)
    text, handles = _HANDLE.subn(" ", text)
    return " ".join(text.split()), urls + handles


@dataclass
class Prompts:
    """The cleaned prompts in file order, and what was dropped and why."""

    kept: list[str]
    read: int
    stripped: int
    dropped: Counter[str] = field(default_factory=Counter)

    def summary(self, path: Path) -> str:
        parts = [f"{count} {reason}" for reason, count in self.dropped.most_common()]
        dropped = f"; dropped {sum(self.dropped.values())}: {', '.join(parts)}" if parts else ""
        return (f"{STEP}: {path}: {self.read} prompts read, {len(self.kept)} kept "
                f"({self.stripped} had URLs or @handles removed){dropped}")


def clean_prompts(items: Sequence[tuple[int, str]], bounds: dict[str, int | None]) -> Prompts:
    """Clean each prompt, then drop empty, too short / too long and repeated ones (first one kept)."""
    low, high = bounds.get("min_chars"), bounds.get("max_chars")
    prompts = Prompts(kept=[], read=len(items), stripped=0)
    seen: set[str] = set()
    for _, raw in items:
        text, removed = clean_prompt(raw)
        prompts.stripped += removed > 0
        if not text:
            prompts.dropped["empty after cleaning"] += 1
        elif low is not None and len(text) < low:
            prompts.dropped[f"shorter than {low} characters"] += 1
        elif high is not None and len(text) > high:
            prompts.dropped[f"longer than {high} characters"] += 1
        elif (key := normalise_prompt(text)) in seen:
            prompts.dropped["duplicates"] += 1
        else:
            seen.add(key)
            prompts.kept.append(text)
    return prompts
