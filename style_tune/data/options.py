"""`make split`'s options: what the split, the CSV reader and the statistics are given, and the parsing
of the values that need more than argparse (the ratios, the style list).

Its own module so that csv_input, grouping and split_stats can take an :class:`Options` without
importing the command (split.py), which imports them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from style_tune.core.prompts import STYLES

SPLITS: tuple[str, ...] = ("train", "val", "test")
DEFAULT_RATIOS = "0.8,0.1,0.1"
RATIO_TOLERANCE = 1e-6


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
