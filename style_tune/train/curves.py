"""`make curves`: what a training run logged, by iteration, as figures and one CSV.

    python -m style_tune.train.curves WORK_DIR [--out WORK_DIR/curves] [--smoothing 0.6] [--only FIGURE...]

Reads, in WORK_DIR (the `make train` work dir; `make train` runs this at its end):
- mmengine's LocalVisBackend logs, one ``<timestamp>/vis_data/scalars.json`` per start of training
  (style_tune.core.train_logs.logged_scalars, which says how resumed runs merge: for each series and
  iteration the latest run's value wins), and in them the validation records (the style scores);
- the style-score record ``style_scores.jsonl`` if there (one object per checkpoint: ``iter``,
  ``metrics``, ``best``): its metrics join the ``style/`` series (for the same iteration the record's
  value wins; it is what the kept checkpoint is chosen from), and its last line's ``best`` is the
  checkpoint the style figure marks.
Either source may be missing; a line that is not one JSON object is named (FILE:LINE) and skipped: a
run killed while mmengine appended a line leaves it cut, and the rest of the run is still worth seeing.

Writes to OUT (default WORK_DIR/curves), the files renamed into place together (style_tune.core.io):
- ``curves.csv``: one row per iteration, one column per series, a cell left empty where the series was
  not logged at that iteration; NaN and infinity written as logged (``nan``, ``inf``); ``loss_smoothed``
  is the loss smoothed as in the figure;
- ``loss.png`` (logged and smoothed), ``lr.png``, ``grad_norm.png`` (the total norm before clipping, as
  mmengine's OptimWrapper logs it), ``time.png`` (seconds per iteration and its data loading),
  ``tokens_per_sec.png`` and ``memory.png`` (peak GPU memory, MB), each where the run logged it;
- ``style_scores.png``: the training loss, the validation style scores (``style/*``) and the style
  margin by iteration, the kept checkpoint marked.
A series with no finite value gets no figure and a line saying so; one with some NaN gets gaps.

Smoothing: TensorBoard's (its scalar dashboard's, tensorboard/components/vz_line_chart2): an exponential
moving average with weight w over the logged points, divided by 1 - w^n after n points. The division
(debiasing) keeps the first points unbiased: a moving average started at 0 drags them towards zero, one
started at the first value gives that one noisy value a weight that decays slowly. The default weight is
TensorBoard's slider default (style_tune/core/defaults.py), so the figure and `VIS=tensorboard` show the
same curve. NaN or infinite points are left out of the average (their smoothed value is what was logged).

A work dir that does not exist, or in which nothing was logged, stops with one line (exit 2).

The one drawing of a run's curves: `make report` (style_tune/eval/report.py, eval env) and `make figures`
(README's figure, from the demo run's logs committed in docs/figures/) draw with `collect` and `render`
too. This module imports the standard library, style_tune.core and matplotlib only, which the train and
the eval env both have.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from style_tune.core import defaults
from style_tune.core.io import json_objects, write_files_atomically
from style_tune.core.steps import main_of
from style_tune.core.train_logs import STYLE_SCORES, logged_scalars

if TYPE_CHECKING:
    from matplotlib.axes import Axes

STEP = "curves"
CSV_NAME = "curves.csv"
SMOOTHED = "loss_smoothed"
STYLE = "style/"
#: Problem lines shown one by one; the rest are counted.
SHOWN_PROBLEMS = 10
#: Fewer points than this are drawn with a marker each (a single point is visible, few points readable).
MARKERS_BELOW = 60


@dataclass(frozen=True)
class Figure:
    stem: str
    ylabel: str
    series: tuple[tuple[str, str], ...]  # (series name, legend label)


FIGURES = (
    Figure("loss", "training loss", (("loss", "logged"), (SMOOTHED, "smoothed"))),
    Figure("lr", "learning rate", (("lr", "learning rate"),)),
    Figure("grad_norm", "gradient norm (before clipping)", (("grad_norm", "total L2 norm"),)),
    Figure("time", "seconds per iteration", (("time", "iteration"), ("data_time", "of which data loading"))),
    Figure("tokens_per_sec", "tokens per second", (("tokens_per_sec", "tokens/s"),)),
    Figure("memory", "peak GPU memory (MB)", (("memory", "peak memory"),)),
)
STYLE_FIGURE = "style_scores"
#: Every figure's file stem, in the order they are drawn.
STEMS = (*(f.stem for f in FIGURES), STYLE_FIGURE)
#: The CSV's first columns, in this order; other training series follow by name, then the style scores.
FIRST_COLUMNS = ("loss", SMOOTHED, "lr", "grad_norm", "time", "data_time", "tokens_per_sec", "tflops",
                 "memory")
FIRST_STYLE = ("style/style_accuracy", "style/style_margin", "style/sane_rate")


@dataclass
class Curves:
    series: dict[str, dict[int, float]]  # name -> {iteration: value}
    best: dict[str, Any] | None  # the last record line's "best": the checkpoint kept
    problems: list[str]  # FILE:LINE: what was wrong (the line was skipped)


def smooth(values: Sequence[float], weight: float) -> list[float]:
    """TensorBoard's debiased exponential moving average (see the module docstring)."""
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight {weight} is not in [0, 1)")
    last, count, smoothed = 0.0, 0, []
    for value in values:
        if not math.isfinite(value):
            smoothed.append(value)
            continue
        last = last * weight + (1.0 - weight) * value
        count += 1
        smoothed.append(last / (1.0 - weight**count))
    return smoothed


def read_record(path: Path) -> tuple[dict[str, dict[int, float]], dict[str, Any] | None, list[str]]:
    """The style scores of the record, as ``style/<metric>`` series by iteration (a later line wins), the
    last line's ``best``, and a FILE:LINE problem for each line skipped."""
    series: dict[str, dict[int, float]] = {}
    best = None
    records, problems = json_objects(path, path.read_text(encoding="utf-8", errors="replace"))
    for number, record in records:
        at, metrics = record.get("iter"), record.get("metrics")
        if not isinstance(at, int) or isinstance(at, bool) or not isinstance(metrics, dict):
            problems.append(f"{path}:{number}: not a style-score record (an integer iter, a metrics object)")
            continue
        for key, value in metrics.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                series.setdefault(key if "/" in key else f"{STYLE}{key}", {})[at] = float(value)
        best = record["best"] if isinstance(record.get("best"), dict) else best
    return series, best, problems


def collect(work_dir: Path, smoothing: float) -> Curves:
    """Every series of WORK_DIR merged by iteration (the module docstring says how), the loss smoothed."""
    series, problems = logged_scalars(work_dir)
    best = None
    if (work_dir / STYLE_SCORES).is_file():
        scores, best, bad = read_record(work_dir / STYLE_SCORES)
        problems += bad
        for name, points in scores.items():
            series.setdefault(name, {}).update(points)
    if "loss" in series:
        iterations = sorted(series["loss"])
        series[SMOOTHED] = dict(zip(iterations, smooth([series["loss"][i] for i in iterations], smoothing),
                                    strict=True))
    return Curves(series, best, problems)


def columns(series: dict[str, dict[int, float]]) -> list[str]:
    """The series in the CSV's order: FIRST_COLUMNS, other training series, then the style scores."""
    style = sorted((n for n in series if n.startswith(STYLE)),
                   key=lambda n: (FIRST_STYLE.index(n) if n in FIRST_STYLE else len(FIRST_STYLE), n))
    rest = sorted(n for n in series if n not in FIRST_COLUMNS and not n.startswith(STYLE))
    return [n for n in FIRST_COLUMNS if n in series] + rest + style


def csv_text(series: dict[str, dict[int, float]]) -> str:
    """One row per iteration, one column per series; an empty cell where a series has no value there.
    Values are written with repr: they read back as the same floats."""
    names = columns(series)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["iter", *names])
    for at in sorted({i for points in series.values() for i in points}):
        writer.writerow([at, *(repr(series[n][at]) if at in series[n] else "" for n in names)])
    return buffer.getvalue()


def finite_points(points: dict[int, float]) -> int:
    return sum(math.isfinite(v) for v in points.values())


def series_notes(series: dict[str, dict[int, float]]) -> list[str]:
    """A line for each series with NaN or infinite points: none finite (no figure) or some (gaps)."""
    notes = []
    for name in columns(series):
        if name == SMOOTHED:
            continue  # the loss's line says it
        total, finite = len(series[name]), finite_points(series[name])
        if finite == 0:
            notes.append(f"{name}: no finite value in its {total} point(s) (NaN or infinite): "
                         "no figure of it")
        elif finite < total:
            notes.append(f"{name}: {total - finite} of its {total} points are NaN or infinite: "
                         "gaps in its figure")
    return notes


def _draw(ax: Axes, points: dict[int, float], label: str, **style: Any) -> None:
    iterations = sorted(points)
    values = [points[i] if math.isfinite(points[i]) else math.nan for i in iterations]
    marker = "." if len(iterations) < MARKERS_BELOW else None
    ax.plot(iterations, values, label=label, marker=marker, **style)


def png_bytes(fig: Any) -> bytes:
    """A matplotlib figure as PNG bytes, laid out, the figure closed."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buffer = io.BytesIO()
    # no "Software" text chunk (matplotlib's version): the same data and fonts give the same bytes, so a
    # committed figure can be checked against the target that makes it (make figures)
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def _axes(ax: Axes, ylabel: str) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _mark_best(axes: Sequence[Axes], best: dict[str, Any] | None) -> None:
    at = best.get("iter") if best else None
    if not best or not isinstance(at, int) or isinstance(at, bool):
        return
    label = f"kept: {best.get('checkpoint') or f'iter_{at}.pth'}"
    for n, ax in enumerate(axes):  # said once, in the first panel's legend
        ax.axvline(at, color="tab:red", linestyle="--", linewidth=1, label=label if n == 0 else "_nolegend_")


def render(curves: Curves, title: str, smoothing: float, only: Collection[str] | None = None
           ) -> dict[str, bytes]:
    """The PNGs (file name -> bytes) of every figure with a finite value to draw (``only``: of the
    figures with these stems, e.g. ``{"style_scores"}``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = curves.series
    drawable = {name for name, points in series.items() if finite_points(points)}
    labels = {"loss": "logged", SMOOTHED: f"smoothed (TensorBoard EMA, weight {smoothing:g})"}
    pngs = {}
    for figure in FIGURES:
        shown = [(name, label) for name, label in figure.series if name in drawable]
        if not shown or (only is not None and figure.stem not in only):
            continue
        fig, ax = plt.subplots(figsize=(7, 3.5), dpi=120)
        for name, label in shown:
            faint = name == "loss" and SMOOTHED in drawable
            _draw(ax, series[name], labels.get(name, label), **({"alpha": 0.35} if faint else {}))
        _axes(ax, figure.ylabel)
        ax.set_xlabel("iteration")
        ax.set_title(f"{title}: {figure.ylabel}")
        if len(shown) > 1:
            ax.legend()
        pngs[f"{figure.stem}.png"] = png_bytes(fig)

    margins = [n for n in columns(series) if n.startswith(STYLE) and "margin" in n and n in drawable]
    scores = [n for n in columns(series) if n.startswith(STYLE) and n not in margins and n in drawable]
    if (scores or margins) and (only is None or STYLE_FIGURE in only):
        panels = [(names, ylabel) for names, ylabel in (
            (["loss", SMOOTHED] if "loss" in drawable else [], "training loss"),
            (scores, "validation score (%)"), (margins, "style margin (-100 to 100)")) if names]
        fig, axes = plt.subplots(len(panels), 1, sharex=True, figsize=(7, 2.4 * len(panels) + 0.6), dpi=120,
                                 squeeze=False)
        column = [row[0] for row in axes]
        for ax, (names, ylabel) in zip(column, panels, strict=True):
            for name in names:
                if name in drawable:
                    faint = name == "loss" and SMOOTHED in drawable
                    _draw(ax, series[name], labels.get(name, name.removeprefix(STYLE)),
                          **({"alpha": 0.35} if faint else {}))
            _axes(ax, ylabel)
        _mark_best(column, curves.best)
        for ax in column:
            ax.legend(fontsize="small")
        column[0].set_title(f"{title}: loss and validation style scores")
        column[-1].set_xlabel("iteration")
        pngs[f"{STYLE_FIGURE}.png"] = png_bytes(fig)
    return pngs


def smoothing_weight(text: str) -> float:
    """An argparse type: a smoothing weight in [0, 1)."""
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in [0, 1)")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m style_tune.train.curves",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("work_dir", type=Path, help="the work dir `make train` wrote (WORK_DIR=)")
    parser.add_argument("--out", type=Path, help="where the files go (default: WORK_DIR/curves)")
    parser.add_argument("--smoothing", type=smoothing_weight, default=defaults.CURVES_SMOOTHING,
                        help="TensorBoard's smoothing weight for the loss, in [0, 1) (default: %(default)s)")
    parser.add_argument("--only", nargs="+", choices=STEMS, metavar="FIGURE",
                        help=f"draw only these figures (of: {', '.join(STEMS)}); the CSV is written whole")
    parser.add_argument("--after-train", action="store_true",
                        help="as the end of `make train`: a run that logged nothing yet (fewer iterations "
                             "than the logger's interval) is said in one line, not an error")
    args = parser.parse_args(argv)
    work_dir: Path = args.work_dir
    out: Path = args.out or work_dir / "curves"

    if not work_dir.is_dir():
        print(f"{STEP}: error: work dir {work_dir} not found: train first (`make train "
              f"WORK_DIR={work_dir}`), or give WORK_DIR= the work dir `make train` wrote", file=sys.stderr)
        return 2
    curves = collect(work_dir, args.smoothing)
    for problem in curves.problems[:SHOWN_PROBLEMS]:
        print(f"{STEP}: {problem}; line skipped", file=sys.stderr)
    if len(curves.problems) > SHOWN_PROBLEMS:
        print(f"{STEP}: {len(curves.problems) - SHOWN_PROBLEMS} more lines skipped", file=sys.stderr)
    if not curves.series and args.after_train:
        print(f"{STEP}: nothing logged in {work_dir} yet (a run shorter than the logger's interval): "
              "no curves")
        return 0
    if not curves.series:
        print(f"{STEP}: error: nothing logged in {work_dir}: no value in */vis_data/scalars.json (mmengine "
              f"writes one per start of training) nor in {STYLE_SCORES}; run `make train "
              f"WORK_DIR={work_dir}` first", file=sys.stderr)
        return 2
    for note in series_notes(curves.series):
        print(f"{STEP}: {note}")
    wanted = args.only or STEMS
    missing = [f.stem for f in FIGURES
               if f.stem in wanted and not any(name in curves.series for name, _ in f.series)]
    if STYLE_FIGURE in wanted and not any(name.startswith(STYLE) for name in curves.series):
        missing.append(f"style scores (style/* or {STYLE_SCORES})")
    if missing:
        print(f"{STEP}: not logged in this run, so no figure: {', '.join(missing)}")

    pngs = render(curves, work_dir.name, args.smoothing, only=wanted)
    files: dict[Path, str | bytes] = {out / CSV_NAME: csv_text(curves.series)}
    files.update({out / name: data for name, data in pngs.items()})
    write_files_atomically(files, step=STEP)
    for stem in wanted:  # a figure an earlier run drew, not this one
        if f"{stem}.png" not in pngs:
            (out / f"{stem}.png").unlink(missing_ok=True)

    iterations = len({i for points in curves.series.values() for i in points})
    print(f"{STEP}: wrote {out}: {CSV_NAME} ({iterations} iterations; {', '.join(columns(curves.series))}), "
          f"{', '.join(sorted(pngs))}")
    best = curves.best
    if best and f"{STYLE_FIGURE}.png" in pngs:
        why = f": {best['why']}" if best.get("why") else ""
        if type(best.get("iter")) is int:
            print(f"{STEP}: marked the kept checkpoint {best.get('checkpoint')} (iter {best['iter']}){why}")
        else:  # no checkpoint sane enough (yet): nothing drawn
            print(f"{STEP}: no checkpoint kept{why}")
    return 0


if __name__ == "__main__":
    main_of(STEP, main)
