"""XTuner conversation JSON (`make split`'s output): one row per conversation, written in chunks.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator

from style_tune.core.prompts import output_text, system_text
from style_tune.data.csv_input import Row

#: A str as a JSON string literal, as ``json.dumps(text, ensure_ascii=False)`` writes it (the C
#: function behind it, called directly: the row loop runs millions of times).
_JSON_STRING = json.encoder.encode_basestring
#: One row exactly as ``json.dumps([row], ensure_ascii=False, indent=2)`` lays it out, in the
#: pieces around the system, input and output strings.
_ROW_START = '  {\n    "conversation": [\n      {\n        "system": '
_ROW_INPUT = ',\n        "input": '
_ROW_OUTPUT = ',\n        "output": '
_ROW_END = "\n      }\n    ]\n  }"


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
