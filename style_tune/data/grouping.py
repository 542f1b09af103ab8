"""Grouping and splitting (`make split`'s second job): whole prompt groups go to one split, cut at
the ratios in an order that depends only on the seed and the set of rows.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from style_tune.data.csv_input import InputError, Problem, Row
from style_tune.data.options import SPLITS, Options

#: Full-width characters common in Chinese text, with their NFKC forms (see normalise_prompts).
_SEPARATOR = "\x00"
_COMMON_WIDE = tuple((char, unicodedata.normalize("NFKC", char)) for char in "，！？：；（）～\u3000")


@dataclass
class Split:
    """One output split: its rows in output order and how many prompt groups they form."""

    name: str
    rows: list[Row]
    groups: int


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
