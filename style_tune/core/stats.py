"""Percentiles, one definition for the data card and the evaluation metrics."""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(values: Iterable[float], q: float, *, nearest_rank: bool = False) -> float:
    """The q-th percentile (0-100) of ``values``; 0 for no values.

    Linear interpolation between the closest ranks (numpy's default), or with ``nearest_rank`` the
    smallest value with at least q% of the values at or below it (always one of the values: the data
    card's integer lengths).
    """
    ordered = sorted(values)
    if not ordered:
        return 0.0
    if nearest_rank:
        return ordered[max(1, math.ceil(q * len(ordered) / 100)) - 1]
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
