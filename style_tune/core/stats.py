"""Percentiles (one definition for the data card and the evaluation metrics) and the Wilson interval of a
share (the verdict counts and the ranking's rater agreement)."""

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


#: The confidence level of every interval of a share the reports print.
LEVEL = 0.95


def wilson_interval(successes: int, trials: int) -> tuple[float, float] | None:
    """The 95 % Wilson interval of successes / trials (None without trials): scipy's ``binomtest``."""
    if not trials:
        return None
    from scipy.stats import binomtest

    ci = binomtest(successes, trials).proportion_ci(confidence_level=LEVEL, method="wilson")
    return float(ci.low), float(ci.high)


def percent(share: float | None, ci: tuple[float, float] | None) -> str:
    """A share with its interval, as ``42% [30%, 55%]`` (an em dash without one)."""
    if share is None or ci is None:
        return "—"
    return f"{share:.0%} [{ci[0]:.0%}, {ci[1]:.0%}]"
