#!/usr/bin/env python3
"""Diversity and near-duplicate report for a style-dialogue CSV (columns user, style, assistant).

Usage::

    python3 -m style_tune.data.check CSV [--max-jaccard 0.5] [--md FILE]

For each style it reports, over the replies of that style: the highest character-bigram Jaccard
similarity ``|A & B| / |A | B|`` of any pair (and which pair), how many pairs are above
``--max-jaccard``, the most common opening (first two characters) and its share, the number of
distinct openings, and the share of replies holding an emoji. The same maximum is reported for
the distinct prompts, for information only: short prompts legitimately share phrasings, and the
split groups exact (normalised) repeats anyway.

Exit status: 0 if no pair of same-style replies is above ``--max-jaccard``; 1 if some pair is
(each is named by its two CSV line numbers on stderr); 2 on unreadable input or missing columns.
``--md FILE`` writes the figures as a Markdown section ``## Diversity`` for the data card.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PROG = "python -m style_tune.data.check"  # no make target of its own: the command names itself

REQUIRED_COLUMNS = ("user", "style", "assistant")
DEFAULT_MAX_JACCARD = 0.5
OPENING_CHARS = 2
MAX_PRINTED_PAIRS = 50
#: Code point ranges treated as emoji (pictographs, symbols and dingbats, arrows/stars, clocks).
EMOJI_RANGES = ((0x1F000, 0x1FAFF), (0x2600, 0x27BF), (0x2B00, 0x2BFF), (0x2300, 0x23FF))


@dataclass(frozen=True)
class Text:
    """A reply or prompt and the CSV line its record starts on."""

    line: int
    text: str


@dataclass(frozen=True)
class Pair:
    similarity: float
    first: Text
    second: Text


@dataclass(frozen=True)
class Similarity:
    """The most similar pair of a set of texts and the pairs above the threshold (most similar first)."""

    count: int
    top: Pair | None
    above: list[Pair]


@dataclass(frozen=True)
class StyleReport:
    style: str
    similarity: Similarity
    opening: str
    opening_share: float
    openings: int
    emoji_share: float


@dataclass(frozen=True)
class Report:
    source: str
    max_jaccard: float
    styles: list[StyleReport]
    prompts: Similarity


def read_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    """(start line, row) for each non-blank record; cells trimmed. Raises ValueError on bad input."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        missing = [column for column in REQUIRED_COLUMNS if column not in header]
        if missing:
            raise ValueError(f"missing column(s) {', '.join(missing)}; found {', '.join(header) or 'none'}")
        rows, start = [], reader.line_num + 1
        for record in reader:
            if record:
                cells = {name: value.strip() for name, value in zip(header, record, strict=False)}
                rows.append((start, cells))
            start = reader.line_num + 1
    return rows


def bigrams(text: str) -> frozenset[str]:
    """Character bigrams of the text (a one-character text is its own single 'bigram')."""
    if len(text) < 2:
        return frozenset([text]) if text else frozenset()
    return frozenset(text[i:i + 2] for i in range(len(text) - 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def similarity(texts: Sequence[Text], threshold: float) -> Similarity:
    """Compare every pair of texts by bigram Jaccard similarity."""
    grams = [bigrams(text.text) for text in texts]
    top: Pair | None = None
    above: list[Pair] = []
    for i, j in itertools.combinations(range(len(texts)), 2):
        value = jaccard(grams[i], grams[j])
        if top is None or value > top.similarity:
            top = Pair(value, texts[i], texts[j])
        if value > threshold:
            above.append(Pair(value, texts[i], texts[j]))
    above.sort(key=lambda pair: (-pair.similarity, pair.first.line, pair.second.line))
    return Similarity(len(texts), top, above)


def has_emoji(text: str) -> bool:
    return any(low <= ord(char) <= high for char in text for low, high in EMOJI_RANGES)


def style_report(style: str, replies: Sequence[Text], threshold: float) -> StyleReport:
    openings = Counter(reply.text[:OPENING_CHARS] for reply in replies)
    # Most common first; ties go to the opening seen first in the file (Counter keeps that order).
    opening, opening_count = openings.most_common(1)[0]
    return StyleReport(
        style=style,
        similarity=similarity(replies, threshold),
        opening=opening,
        opening_share=opening_count / len(replies),
        openings=len(openings),
        emoji_share=sum(map(has_emoji, (reply.text for reply in replies))) / len(replies),
    )


def analyse(path: Path, threshold: float = DEFAULT_MAX_JACCARD) -> Report:
    """The whole report for one CSV; raises ValueError/OSError on unreadable input."""
    rows = read_rows(path)
    by_style: dict[str, list[Text]] = {}
    prompts: dict[str, Text] = {}
    for line, row in rows:
        user, style, reply = (row.get(column, "") for column in REQUIRED_COLUMNS)
        by_style.setdefault(style, []).append(Text(line, reply))
        prompts.setdefault(user, Text(line, user))
    styles = [style_report(style, replies, threshold) for style, replies in by_style.items()]
    return Report(path.name, threshold, styles, similarity(list(prompts.values()), threshold))


# ---------------------------------------------------------------------------------------------
# Output


def describe_top(similarity: Similarity) -> str:
    top = similarity.top
    if top is None:
        return "no pairs"
    return f"{top.similarity:.3f} (lines {top.first.line} and {top.second.line})"


def render_text(report: Report) -> str:
    lines = [f"{report.source}: character-bigram Jaccard, threshold {report.max_jaccard:g}"]
    for item in report.styles:
        sim = item.similarity
        lines += [
            f"{item.style}: {sim.count} replies; max Jaccard {describe_top(sim)}; "
            f"{len(sim.above)} pair(s) above {report.max_jaccard:g}",
            f"  most common opening {item.opening!r}: {item.opening_share:.1%}; "
            f"{item.openings} distinct openings; with emoji: {item.emoji_share:.1%}",
        ]
    prompts = report.prompts
    lines.append(
        f"prompts: {prompts.count} distinct; max Jaccard {describe_top(prompts)}; "
        f"{len(prompts.above)} pair(s) above {report.max_jaccard:g} (information only)"
    )
    return "\n".join(lines) + "\n"


def quote(text: str) -> str:
    return "「" + text.replace("|", "\\|") + "」"


def render_markdown(report: Report) -> str:
    """The figures as the data card's ``## Diversity`` section."""
    threshold = f"{report.max_jaccard:g}"
    lines = [
        "## Diversity",
        "",
        f"Generated by `style_tune/data/check.py` from `{report.source}`. Similarity is the Jaccard "
        "index of the character-bigram sets of two texts, over every pair of replies of the same "
        f"style; pairs above {threshold} count as near-duplicates and fail the check. The opening is "
        "a reply's first two characters.",
        "",
        f"| style | replies | max Jaccard | pairs > {threshold} | most common opening | share "
        "| distinct openings | with emoji |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for item in report.styles:
        sim = item.similarity
        top = f"{sim.top.similarity:.3f}" if sim.top else "–"
        lines.append(
            f"| {item.style} | {sim.count} | {top} | {len(sim.above)} | {quote(item.opening)} "
            f"| {item.opening_share:.1%} | {item.openings} | {item.emoji_share:.1%} |"
        )
    lines += ["", "Most similar pairs (CSV line numbers):", ""]
    named = [(f"{item.style} replies", item.similarity) for item in report.styles]
    for label, sim in [*named, ("prompts", report.prompts)]:
        if sim.top is not None:
            top = sim.top
            lines.append(
                f"- {label}: {top.similarity:.3f}, lines {top.first.line} and {top.second.line}: "
                f"{quote(top.first.text)} / {quote(top.second.text)}"
            )
    prompts = report.prompts
    lines += [
        "",
        f"Prompts: {prompts.count} distinct, {len(prompts.above)} pair(s) above {threshold} "
        "(reported, not a failure: short prompts on different topics can share a phrasing, and "
        "exact repeats after normalisation are grouped by the split).",
    ]
    return "\n".join(lines) + "\n"


def report_pairs(report: Report, source: str) -> int:
    """Print every reply pair above the threshold to stderr; return how many there are."""
    pairs = [(item.style, pair) for item in report.styles for pair in item.similarity.above]
    for style, pair in pairs[:MAX_PRINTED_PAIRS]:
        print(
            f"{source}:{pair.first.line} and {source}:{pair.second.line}: near-duplicate {style} replies "
            f"(bigram Jaccard {pair.similarity:.3f} > {report.max_jaccard:g}): "
            f"{pair.first.text!r} / {pair.second.text!r}",
            file=sys.stderr,
        )
    if len(pairs) > MAX_PRINTED_PAIRS:
        print(f"... and {len(pairs) - MAX_PRINTED_PAIRS} more pair(s)", file=sys.stderr)
    return len(pairs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path, metavar="CSV", help="input CSV (UTF-8, BOM allowed)")
    parser.add_argument("--max-jaccard", type=float, default=DEFAULT_MAX_JACCARD,
                        help=f"near-duplicate threshold (default {DEFAULT_MAX_JACCARD})")
    parser.add_argument("--md", type=Path, metavar="FILE", help="also write a Markdown ## Diversity section")
    args = parser.parse_args(argv)
    if not 0 <= args.max_jaccard <= 1:
        parser.error(f"--max-jaccard must be between 0 and 1, got {args.max_jaccard}")
    try:
        report = analyse(args.csv, args.max_jaccard)
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as err:
        print(f"{PROG}: {args.csv}: {err}", file=sys.stderr)
        return 2
    sys.stdout.write(render_text(report))
    if args.md is not None:
        args.md.write_text(render_markdown(report), encoding="utf-8")
    if report_pairs(report, str(args.csv)):
        print(f"{PROG}: near-duplicate replies in {args.csv}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
