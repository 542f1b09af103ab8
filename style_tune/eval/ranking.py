"""A ranking from side-by-side verdicts: Bradley–Terry ratings on the Elo scale, as the public arenas fit
them (`make verdicts`, `make report`; docs/serving.md says how to read it).

Whenever the verdicts of one kind of rater (people, or one LLM judge) connect three or more models, each
kind gets its own fit: scikit-learn's ``LogisticRegression`` (no intercept) on one row per verdict, +1
in the column of the model shown as A, -1 in B's, the outcome "A won"; the coefficients are the
models' strengths in logits, shown as ``1000 + 400/ln 10 * (strength - anchor's strength)`` (the Elo
scale: 400 points = 10:1 odds), the anchor (``--anchor``, default the model named ``base``) at 1000.

- A tie is half a win for each side: two rows, "A won" and "B won", each with sample weight 1/2.
- "Both bad" is left out of the fit and counted per model (its own column, a share of the model's
  verdicts): it says neither reply would do, not that the two are equally good, so it carries no
  information about which is better; counted as a tie it would pull the two ratings together on the
  strength of two failures.
- The reply shown as A gets its own column (1 in every row): the position effect, in Elo, with its
  interval. The second view adds the length difference, log2 of (characters of A + 1) / (characters of
  B + 1): the Elo a reply gains by being twice as long as the other. No style covariate: the style is
  what is measured.
- A weak Gaussian prior (L2, standard deviation PRIOR_SD logits) keeps every coefficient finite; the
  table never shows a number where only the prior sets it (below).
- 95 % intervals: percentiles of ``rounds`` bootstrap fits that resample prompts (a prompt and its style
  is one unit: every verdict on it moves together), drawn with numpy's generator seeded by ``--seed``.
- Rank: 1 + the number of models whose interval lies wholly above this one's: models whose intervals
  overlap share a rank.
- Said, not printed: a model outside the anchor's connected group (no chain of wins, losses or ties to
  the anchor); one with fewer than MIN_VERDICTS verdicts in the fit; one whose verdicts against the
  anchor's group all went one way (no finite Bradley–Terry rating exists: it never lost, or never won).
"""

from __future__ import annotations

import io
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from style_tune.core import defaults
from style_tune.core.io import write_atomically
from style_tune.core.stats import percent, wilson_interval

if TYPE_CHECKING:
    import numpy as np
    from sklearn.linear_model import LogisticRegression


class Verdict(Protocol):
    """What the ranking reads of a verdict: style_tune.eval.verdicts.Verdict (a frozen dataclass, hence
    read-only members here), which imports this module for its ranking section."""

    @property
    def prompt(self) -> str: ...
    @property
    def style(self) -> str | None: ...
    @property
    def a(self) -> str: ...  # the model shown as "A"
    @property
    def b(self) -> str: ...
    @property
    def verdict(self) -> str: ...
    @property
    def source(self) -> str: ...  # "people", or "judge MODEL"
    @property
    def lengths(self) -> tuple[int, int] | None: ...  # characters of the replies shown as A and B
    def winner(self) -> str | None: ...


#: The Elo scale of the arenas: 400 points per factor of 10 in the odds, the anchor at 1000.
ELO_PER_LOGIT = 400 / math.log(10)
ANCHOR_RATING = 1000
#: Fewer verdicts in the fit (wins, losses and ties) than this: no rating shown, "too few verdicts".
MIN_VERDICTS = 10
#: The prior's standard deviation in logits (sklearn's C is its square): 4 logits is ±695 Elo, far wider
#: than any rating the data determine, so it moves a well-measured rating by less than an Elo point; it
#: only keeps a one-sided model or a thin bootstrap resample from running off to infinity.
PRIOR_SD = 4.0
LEVEL = 0.95
#: Sources whose bootstrap left more than this share of rounds with a reported model cut off: said.
MAX_DROPPED = 0.05
FIT_VERDICTS = ("A", "B", "tie")


@dataclass
class Row:
    """One model in one source's ranking."""

    model: str
    verdicts: int = 0  # every verdict on it ("both bad" included, unreadable ones not)
    wins: int = 0
    losses: int = 0
    ties: int = 0
    both_bad: int = 0
    rating: float | None = None
    ci: tuple[float, float] | None = None
    length_rating: float | None = None
    length_ci: tuple[float, float] | None = None
    rank: int | None = None
    note: str = ""

    @property
    def in_fit(self) -> int:
        return self.wins + self.losses + self.ties


@dataclass
class Term:
    """The position or the length term: Elo, interval, or why there is none."""

    value: float | None = None
    ci: tuple[float, float] | None = None
    missing: str = ""


@dataclass
class Ranking:
    source: str
    anchor: str
    anchor_note: str  # how the anchor was chosen
    rows: list[Row]
    prompts: int
    rounds: int
    dropped: int
    seed: int
    position: Term = field(default_factory=Term)
    length_position: Term = field(default_factory=Term)
    length: Term = field(default_factory=Term)

    def rated(self) -> dict[str, float]:
        return {r.model: r.rating for r in self.rows if r.rating is not None}


@dataclass
class Design:
    """The fit's rows: model columns (+1 A, -1 B), the position column, optionally the length column."""

    models: list[str]
    x: np.ndarray
    y: np.ndarray
    weight: np.ndarray
    unit: np.ndarray  # the row's prompt (index into the source's prompts)
    units: int


def prompt_of(v: Verdict) -> tuple[str, str | None]:
    """The bootstrap's unit: a prompt asked in a style (all verdicts on it move together)."""
    return v.prompt, v.style


def log_length_ratio(lengths: tuple[int, int]) -> float:
    """The length covariate: log2 of (characters of A + 1) / (characters of B + 1)."""
    return math.log2((lengths[0] + 1) / (lengths[1] + 1))


def design(verdicts: Sequence[Verdict], models: Sequence[str], *, length: bool = False) -> Design:
    """The rows of the fit from the verdicts among MODELS (A, B and tie; a tie is two half rows)."""
    import numpy as np

    column = {m: i for i, m in enumerate(models)}
    units = {u: i for i, u in enumerate(dict.fromkeys(prompt_of(v) for v in verdicts))}
    width = len(models) + 1 + length
    xs, ys, ws, us = [], [], [], []
    for v in verdicts:
        if v.verdict not in FIT_VERDICTS or v.a not in column or v.b not in column:
            continue
        x = [0.0] * width
        x[column[v.a]], x[column[v.b]], x[len(models)] = 1.0, -1.0, 1.0
        if length:
            assert v.lengths is not None
            x[-1] = log_length_ratio(v.lengths)
        outcomes = {"A": ((1, 1.0),), "B": ((0, 1.0),), "tie": ((1, 0.5), (0, 0.5))}[v.verdict]
        for y, w in outcomes:
            xs.append(x)
            ys.append(y)
            ws.append(w)
            us.append(units[prompt_of(v)])
    return Design(list(models), np.array(xs, dtype=float).reshape(-1, width), np.array(ys, dtype=int),
                  np.array(ws), np.array(us, dtype=int), len(units))


def fit(d: Design, weight: np.ndarray | None = None, model: LogisticRegression | None = None
        ) -> np.ndarray | None:
    """The coefficients in logits (models, position[, length]), or None when every weighted row has the
    same outcome (nothing to fit). MODEL: a LogisticRegression to reuse (warm start)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    weight = d.weight if weight is None else weight
    keep = weight > 0
    if len(set(d.y[keep].tolist())) < 2:
        return None
    model = model or LogisticRegression(fit_intercept=False, C=PRIOR_SD**2, tol=1e-8, max_iter=10_000)
    model.fit(d.x[keep], d.y[keep], sample_weight=weight[keep])
    return np.asarray(model.coef_[0], dtype=float)


def components(d: Design, weight: np.ndarray | None = None, *, strong: bool = False) -> list[set[str]]:
    """The groups of D's models linked by its rows of positive weight (scipy's connected_components).
    STRONG: by the directed "did not lose to" graph (a win is an edge from the loser to the winner, a tie
    both ways), whose strong components are where finite Bradley–Terry ratings exist."""
    import numpy as np
    from scipy.sparse.csgraph import connected_components

    m = len(d.models)
    keep = (d.weight if weight is None else weight) > 0
    a, b = d.x[:, :m].argmax(axis=1), d.x[:, :m].argmin(axis=1)
    graph = np.zeros((m, m))
    won = keep & (d.y == 1)
    lost = keep & (d.y == 0)
    graph[b[won], a[won]] = 1
    graph[a[lost], b[lost]] = 1
    n, labels = connected_components(graph, directed=strong, connection="strong")
    return [{d.models[i] for i in range(m) if labels[i] == k} for k in range(n)]


def tallies(verdicts: Sequence[Verdict], models: Sequence[str]) -> dict[str, Row]:
    rows = {m: Row(m) for m in models}
    for v in verdicts:
        if v.verdict not in (*FIT_VERDICTS, "both bad"):
            continue
        for me in (v.a, v.b):
            row = rows[me]
            row.verdicts += 1
            if v.verdict == "tie":
                row.ties += 1
            elif v.verdict == "both bad":
                row.both_bad += 1
            elif v.winner() == me:
                row.wins += 1
            else:
                row.losses += 1
    return rows


def pick_anchor(models: Sequence[str], groups: list[set[str]], anchor: str | None) -> tuple[str, str]:
    """The anchor and how it was chosen: ANCHOR if given, else the model named ``base`` (the name the web
    page and the pairwise judge give the base endpoint), else the first by name of the largest group."""
    if anchor:
        return anchor, f"ANCHOR={anchor}"
    if defaults.RANKING_ANCHOR in models:
        return defaults.RANKING_ANCHOR, f"the model named `{defaults.RANKING_ANCHOR}`"
    largest = max(groups, key=lambda g: (len(g), sorted(g)[::-1]))
    first = sorted(largest)[0]
    return first, f"no model is named `{defaults.RANKING_ANCHOR}`: the first by name; ANCHOR= picks one"


def bootstrap(d: Design, rated: Sequence[str], anchor: int, *, rounds: int, seed: int
              ) -> tuple[np.ndarray, int]:
    """The coefficients of ROUNDS fits on prompts drawn with replacement (each prompt's rows weighted by
    how often it was drawn), relative to the anchor's; a round in which a RATED model lost its finite
    rating (cut off from the others, or its verdicts one-sided) is dropped and counted."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    model = LogisticRegression(fit_intercept=False, C=PRIOR_SD**2, tol=1e-8, max_iter=10_000, warm_start=True)
    shift = np.zeros(d.x.shape[1])
    shift[:len(d.models)] = 1.0
    draws, dropped = [], 0
    with threadpool_limits(1):  # tiny fits: BLAS threads only fight each other (and other processes)
        for _ in range(rounds):
            counts = np.bincount(rng.integers(0, d.units, d.units), minlength=d.units)
            weight = d.weight * counts[d.unit]
            coef = None
            if any(set(rated) <= group for group in components(d, weight, strong=True)):
                coef = fit(d, weight, model)
            if coef is None:
                dropped += 1
                continue
            draws.append(coef - shift * coef[anchor])
    return np.array(draws).reshape(-1, d.x.shape[1]), dropped


def identifiable(d: Design, column: int) -> bool:
    """Whether a term's column is not a combination of the model columns (else the data cannot tell
    the term from the ratings: e.g. every pair always shown in the same order)."""
    import numpy as np

    others = np.delete(d.x, column, axis=1)
    return bool(np.linalg.matrix_rank(d.x) > np.linalg.matrix_rank(others))


def interval(draws: np.ndarray) -> tuple[float, float]:
    import numpy as np

    low, high = np.percentile(draws, [50 * (1 - LEVEL), 50 * (1 + LEVEL)])
    return float(low) * ELO_PER_LOGIT, float(high) * ELO_PER_LOGIT


def rank_source(source: str, verdicts: Sequence[Verdict], *, anchor: str | None, seed: int,
                rounds: int) -> Ranking | str:
    """One source's ranking, or why there is none (fewer than three models connected, no anchor)."""
    models = sorted({m for v in verdicts for m in (v.a, v.b)})
    groups = components(design(verdicts, models))
    if max(len(g) for g in groups) < 3:
        return "no three models are connected by verdicts (wins, losses or ties)"
    anchor, how = pick_anchor(models, groups, anchor)
    if anchor not in models:
        return f"ANCHOR={anchor} has no verdicts from these raters (models: {', '.join(models)})"
    group = next(g for g in groups if anchor in g)
    if len(group) < 3:
        largest: set[str] = max(groups, key=len)
        return (f"the anchor {anchor} is connected to {len(group) - 1} other model(s) only; ANCHOR= one of "
                f"{', '.join(sorted(largest))}")
    fitted = sorted(group)
    in_group = [v for v in verdicts if v.a in group and v.b in group]
    decided = [v for v in in_group if v.verdict in FIT_VERDICTS]
    strong = next(g for g in components(design(in_group, fitted), strong=True) if anchor in g)
    rows = tallies(verdicts, models)
    for m in models:
        row = rows[m]
        if m not in group:
            met = sorted({o for v in verdicts if m in (v.a, v.b) for o in (v.a, v.b)} - {m})
            row.note = (f"not connected to {anchor}'s group (its verdicts compare it only with "
                        f"{', '.join(met)}): no rating")
        elif m not in strong:
            against = [v for v in decided if m in (v.a, v.b) and ({v.a, v.b} - {m}) <= strong]
            beat = any(v.winner() == m or v.verdict == "tie" for v in against)
            lost = any(v.winner() not in (None, m) or v.verdict == "tie" for v in against)
            how_ = ("never lost to" if beat and not lost else "never beat" if lost and not beat
                    else "its verdicts never link it both ways with")
            row.note = f"no finite rating: {how_} {anchor}'s group (ANCHOR= another model)"
        elif row.in_fit < MIN_VERDICTS:
            row.note = f"too few verdicts: {row.in_fit} in the fit (< {MIN_VERDICTS}): no rating"
    rated = [m for m in fitted if not rows[m].note or m == anchor]
    if rows[anchor].note:  # too few verdicts: still the anchor, but it says so
        rows[anchor].note = rows[anchor].note.replace("no rating", "every interval is the wider for it")
    a = fitted.index(anchor)
    ranking = Ranking(source, anchor, how, [rows[m] for m in models],
                      len({prompt_of(v) for v in decided}), rounds, 0, seed)

    views = [False]
    if all(v.lengths is not None for v in decided):
        views.append(True)
    else:
        ranking.length.missing = (f"{sum(v.lengths is None for v in decided)} verdict(s) carry no replies "
                                  "(the records' \"replies\"): no lengths to fit")
    for with_length in views:
        d = design(in_group, fitted, length=with_length)
        coef = fit(d)
        if coef is None:
            return "every verdict in the fit went to the same side (all A or all B): nothing to fit"
        draws, dropped = bootstrap(d, [m for m in rated if m in strong], a, rounds=rounds, seed=seed)
        if not len(draws):
            return "no bootstrap round kept the rated models connected: too few verdicts to rank"
        ranking.dropped = max(ranking.dropped, dropped)
        for i, m in enumerate(fitted):
            if m in rated:
                rating = ANCHOR_RATING + (coef[i] - coef[a]) * ELO_PER_LOGIT
                low, high = interval(draws[:, i])
                ci = (ANCHOR_RATING + low, ANCHOR_RATING + high)
                if with_length:
                    rows[m].length_rating, rows[m].length_ci = rating, ci
                else:
                    rows[m].rating, rows[m].ci = rating, ci
        terms = [(len(fitted), ranking.length_position if with_length else ranking.position)]
        if with_length:
            terms.append((len(fitted) + 1, ranking.length))
        for column, term in terms:
            if identifiable(d, column):
                term.value, term.ci = float(coef[column]) * ELO_PER_LOGIT, interval(draws[:, column])
            else:
                term.missing = "not identifiable: " + ("every pair was shown in one order only"
                                                       if column == len(fitted) else
                                                       "the lengths do not vary apart from the models")
    shown = [r for r in ranking.rows if r.rating is not None and r.ci is not None]
    for r in shown:
        r.rank = 1 + sum(o.ci is not None and r.ci is not None and o.ci[0] > r.ci[1] for o in shown)
    ranking.rows.sort(key=lambda r: (r.rating is None, -(r.rating or 0), r.model))
    return ranking


def agreement(first: Sequence[Verdict], second: Sequence[Verdict]) -> tuple[int, int]:
    """(same, both): over the items (prompt, style, pair of models) both sources decided, the number on
    which they prefer the same model. A source's preference on an item: the model with more of its wins
    there (an even count decides nothing)."""
    def preferences(verdicts: Sequence[Verdict]) -> dict[tuple, int]:
        score: dict[tuple, int] = {}
        for v in verdicts:
            low, high = sorted((v.a, v.b))
            key = (v.prompt, v.style, low, high)
            score[key] = score.get(key, 0) + (v.winner() == low) - (v.winner() == high)
        return {k: (s > 0) - (s < 0) for k, s in score.items() if s}

    one, other = preferences(first), preferences(second)
    shared = one.keys() & other.keys()
    return sum(one[k] == other[k] for k in shared), len(shared)


def elo(value: float | None, ci: tuple[float, float] | None) -> str:
    if value is None or ci is None:
        return "—"
    return f"{value:.0f} [{ci[0]:.0f}, {ci[1]:.0f}]"


def signed(term: Term) -> str:
    if term.value is None or term.ci is None:
        return term.missing or "—"
    return f"{term.value:+.0f} Elo [{term.ci[0]:+.0f}, {term.ci[1]:+.0f}]"


def render(rankings: list[Ranking], reasons: dict[str, str], verdicts: Sequence[Verdict],
           figure: str | None) -> list[str]:
    """The ranking section (Markdown lines)."""
    from scipy.stats import spearmanr

    lines = ["## Ranking (Bradley–Terry)", "",
             "Each kind of rater (people, each LLM judge) fitted apart: scikit-learn's logistic "
             "regression on the verdicts (a tie is half a win for each side; \"both bad\" is left out and "
             "counted in its own column), on the Elo scale (400 points = odds of 10:1; the anchor at "
             f"{ANCHOR_RATING}), the reply shown as A as a term of its own. Brackets: 95 % bootstrap "
             "intervals over prompts (every verdict on a prompt moves together). Rank: 1 + the number of "
             "models whose interval lies wholly above this one's (overlapping intervals share a rank). "
             "*With length term*: the same fit with the replies' length difference as a covariate (Elo per "
             "doubling of the length). docs/serving.md says how to read it."]
    for source, reason in reasons.items():
        lines += ["", f"### {source}", "", f"No ranking: {reason}."]
    for r in rankings:
        kept = r.rounds - r.dropped
        lines += ["", f"### {r.source}", "",
                  f"Anchor: {r.anchor} = {ANCHOR_RATING} ({r.anchor_note}); {r.prompts} prompts; "
                  f"intervals from {kept} of {r.rounds} bootstrap rounds (seed {r.seed})"
                  + (f"; {r.dropped} dropped: the resample cut a rated model off" if r.dropped else "")
                  + ".", "",
                  "| rank | model | rating [95 %] | verdicts | wins | losses | ties | both bad | "
                  "with length term [95 %] | note |",
                  "|---:|---|---|---:|---:|---:|---:|---:|---|---|"]
        for row in r.rows:
            rating = elo(row.rating, row.ci)
            if row.model == r.anchor:
                rating = f"{ANCHOR_RATING} (anchor)"
            share = f"{row.both_bad} ({row.both_bad / row.verdicts:.0%})" if row.verdicts else "0"
            length = elo(row.length_rating, row.length_ci)
            if row.model == r.anchor and row.length_rating is not None:
                length = f"{ANCHOR_RATING} (anchor)"
            lines.append(f"| {row.rank or '—'} | {row.model} | {rating} | {row.verdicts} | {row.wins} | "
                         f"{row.losses} | {row.ties} | {share} | {length} | {row.note} |")
        position = r.position
        between = (f" (between equal replies A wins {1 / (1 + 10 ** (-position.value / 400)):.0%})"
                   if position.value is not None else "")
        with_length = f"; position with it: {signed(r.length_position)}" if r.length.value is not None else ""
        lines += ["", f"- position (the reply shown as A): {signed(position)}{between}",
                  f"- length (per doubling of a reply's characters against the other's): {signed(r.length)}"
                  + with_length]
        if r.rounds and r.dropped > MAX_DROPPED * r.rounds:
            lines.append(f"- too thin: {r.dropped} of {r.rounds} resamples cut a rated model off; the "
                         "intervals understate the uncertainty")
    if len(rankings) + len(reasons) > 1:
        sources = sorted({v.source for v in verdicts}, key=lambda s: (s != "people", s))
        lines += ["", "### Agreement between raters", "",
                  "Same winner: over the prompts and pairs both decided (more wins for one model), the share "
                  "where both prefer the same model (Wilson interval). Spearman's ρ: the rank correlation of "
                  "the two kinds' ratings, over the models both rated.", "",
                  "| raters | raters | same winner | Spearman's ρ |", "|---|---|---|---|"]
        ranked = {r.source: r.rated() for r in rankings}
        for i, first in enumerate(sources):
            for second in sources[i + 1:]:
                same, both = agreement([v for v in verdicts if v.source == first],
                                       [v for v in verdicts if v.source == second])
                cell = (f"{same} of {both}: {percent(same / both, wilson_interval(same, both))}" if both
                        else "no prompt and pair both decided")
                common = sorted(ranked.get(first, {}).keys() & ranked.get(second, {}).keys())
                rho = "—"
                if len(common) >= 3:
                    value = spearmanr([ranked[first][m] for m in common], [ranked[second][m] for m in common])
                    rho = f"{float(value.statistic):.2f} over {len(common)} models"
                lines.append(f"| {first} | {second} | {cell} | {rho} |")
    if figure:
        lines += ["", f"![Bradley–Terry ratings with 95 % bootstrap intervals]({figure})"]
    return lines


def plot(rankings: list[Ranking], png: Path) -> None:
    """The ratings with their intervals, one colour per kind of rater (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = [r.model for r in rankings[0].rows if r.rating is not None]
    for ranking in rankings[1:]:
        order += [r.model for r in ranking.rows if r.rating is not None and r.model not in order]
    order = order[::-1]  # the best at the top
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.45 * len(order) * max(1, len(rankings)) ** 0.5), dpi=120)
    step = 0.6 / max(1, len(rankings))
    for k, ranking in enumerate(rankings):
        ys, xs, lows, highs = [], [], [], []
        for row in ranking.rows:
            if row.rating is None or row.ci is None:
                continue
            ys.append(order.index(row.model) + ((len(rankings) - 1) / 2 - k) * step)  # the first on top
            xs.append(row.rating)
            lows.append(row.rating - row.ci[0])
            highs.append(row.ci[1] - row.rating)
        ax.errorbar(xs, ys, xerr=[lows, highs], fmt="o", capsize=3, label=ranking.source)
    ax.axvline(ANCHOR_RATING, color="grey", lw=0.8, ls="--")
    ax.set_yticks(range(len(order)), order)
    ax.set_xlabel(f"Bradley–Terry rating (Elo scale, anchor {rankings[0].anchor} = {ANCHOR_RATING})")
    ax.set_title(f"Ratings with {LEVEL:.0%} bootstrap intervals over prompts")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    write_atomically(png, buffer.getvalue())


def usable(verdicts: Sequence[Verdict]) -> list[Verdict]:
    """The verdicts a ranking counts: decisive ones, ties and "both bad" (not an unparsable judge answer)."""
    return [v for v in verdicts if v.verdict in (*FIT_VERDICTS, "both bad")]


def rank_all(verdicts: Sequence[Verdict], *, anchor: str | None, seed: int, rounds: int
             ) -> tuple[list[Ranking], dict[str, str]]:
    """Each kind of rater's ranking of its usable verdicts, fitted apart (people first), or why there is
    none."""
    fitted = usable(verdicts)
    rankings, reasons = [], {}
    for source in sorted({v.source for v in fitted}, key=lambda s: (s != "people", s)):
        mine = [v for v in fitted if v.source == source]
        print(f"verdicts: ranking {source}: {len(mine)} verdicts, {rounds} bootstrap rounds ...",
              file=sys.stderr, flush=True)
        result = rank_source(source, mine, anchor=anchor, seed=seed, rounds=rounds)
        if isinstance(result, str):
            reasons[source] = result
        else:
            rankings.append(result)
    return rankings, reasons


def section(verdicts: Sequence[Verdict], *, anchor: str | None = None, seed: int = defaults.SEED,
            rounds: int = defaults.RANKING_ROUNDS, figure: Path | None = None,
            figure_link: str | None = None) -> list[str]:
    """The ranking section for VERDICTS (empty when no kind of rater connects three models); FIGURE: the
    PNG to draw (FIGURE_LINK: how the Markdown names it). Raises ValueError for an ANCHOR that no
    verdict names."""
    fitted = usable(verdicts)
    if anchor and fitted and anchor not in {m for v in fitted for m in (v.a, v.b)}:
        raise ValueError(f"ANCHOR={anchor} is none of the models in the verdicts "
                         f"({', '.join(sorted({m for v in fitted for m in (v.a, v.b)}))})")
    if len({m for v in fitted for m in (v.a, v.b)}) < 3:
        return []
    rankings, reasons = rank_all(fitted, anchor=anchor, seed=seed, rounds=rounds)
    drawn = bool(figure) and any(r.rated() for r in rankings)
    if drawn and figure is not None:
        plot(rankings, figure)
    link = (figure_link or (os.fspath(figure) if figure else None)) if drawn else None
    return render(rankings, reasons, verdicts, link)
