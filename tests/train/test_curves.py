"""`make curves` (style_tune/train/curves.py) on synthetic logs written as mmengine writes them: two runs
of one work dir whose iterations overlap (a resume), missing keys, NaN, a single point, an empty log, a
cut line, and the style-score record. The CSV's values are read back and checked against what was
logged; the PNGs are read back as images. The same on a real run: tests/train/test_recipe.py."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import struct
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from style_tune.core import defaults
from style_tune.core.train_logs import STYLE_SCORES
from style_tune.train import curves

REPO_ROOT = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: The first run: iterations 1-6; the NaN loss at 3, no grad_norm at 4, a validation record at 4.
FIRST = "20260101_000000"
#: The resumed run (from iter_4.pth): iterations 5-8 again, with other values: these win.
SECOND = "20260101_010000"


def train_record(at: int, loss: float, **more: float) -> dict:
    """A LoggerHook line (window 1) as mmengine writes it."""
    return {"lr": 1e-3 * at, "data_time": 0.01 * at, "grad_norm": 2.0 + at, "loss": loss, "time": 0.5 + at,
            **more, "iter": at, "step": at}


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def scalars(work_dir: Path, run: str) -> Path:
    return work_dir / run / "vis_data" / "scalars.json"


@pytest.fixture()
def work_dir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    first = [train_record(1, 1.0), train_record(2, 2.0), train_record(3, math.nan),
             {k: v for k, v in train_record(4, 4.0).items() if k != "grad_norm"},
             # the val loop's record: its time is not training's
             {"style/style_accuracy": 10.0, "style/style_margin": -5.0, "style/sane_rate": 90.0,
              "time": 99.0, "data_time": 98.0, "step": 4},
             train_record(5, 50.0), train_record(6, 60.0, tokens_per_sec=math.nan)]
    lines = [json.dumps(r) for r in first]
    lines.insert(3, '{"lr": 0.003, "loss": 3.')  # line 4: a line cut by a kill
    write_lines(scalars(work, FIRST), lines)
    second = [train_record(5, 5.0), train_record(6, 6.0, tokens_per_sec=math.inf), train_record(7, 7.0),
              train_record(8, 8.0, memory=1234),
              {"style/style_accuracy": 40.0, "style/style_margin": 20.0, "style/sane_rate": 80.0, "step": 8}]
    write_lines(scalars(work, SECOND), [json.dumps(r) for r in second])
    write_lines(scalars(work, "20260101_020000"), [])  # a start killed before it logged anything
    kept = {"iter": 4, "checkpoint": "iter_4.pth"}
    record = [{"iter": 4, "checkpoint": "iter_4.pth",
               "metrics": {"style_accuracy": 12.5, "style_margin": -5.0, "sane_rate": 90.0},
               "best": {**kept, "why": "the only one"}},
              {"iter": 8, "checkpoint": "iter_8.pth",
               "metrics": {"style_accuracy": 40.0, "style_margin": 20.0, "sane_rate": 80.0},
               "best": {**kept, "why": "iter_8.pth's sane_rate is below 85"}}]
    write_lines(work / STYLE_SCORES, [json.dumps(r) for r in record])
    return work


def run_curves(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "style_tune.train.curves", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file))


def column(rows: list[dict[str, str]], name: str) -> list[float | None]:
    return [float(row[name]) if row[name] else None for row in rows]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def drawn_pixels(path: Path) -> int:
    """Pixels in matplotlib's first two line colours (tab:blue, tab:orange): what a plotted series draws;
    the axes, grid and labels are grey and black."""
    import matplotlib.image
    import numpy as np

    image = matplotlib.image.imread(path)[..., :3]
    colours = np.array([[0x1F, 0x77, 0xB4], [0xFF, 0x7F, 0x0E]]) / 255
    near = np.abs(image[:, :, None, :] - colours[None, None]).max(axis=-1) < 0.05
    return int(near.any(axis=-1).sum())


def same(got: list[float | None], expected: list[float | None]) -> bool:
    """Equal value by value, NaN equal to NaN."""
    return len(got) == len(expected) and all(
        g == e or (g is not None and e is not None and math.isnan(g) and math.isnan(e))
        for g, e in zip(got, expected, strict=True))


def test_smoothing_is_tensorboards_debiased_ema_by_hand() -> None:
    # w = 0.6: after 1.0, 2.0 the moving average is 0.4*(0.6*1.0 + 2.0) = 1.04, debiased by 1 - 0.6^2 = 0.64;
    # the NaN is left out (and kept as logged); after 4.0: 0.6*1.04 + 0.4*4.0 = 2.224, by 1 - 0.6^3 = 0.784
    got = curves.smooth([1.0, 2.0, math.nan, 4.0], 0.6)
    assert got[:2] == pytest.approx([1.0, 1.625]) and math.isnan(got[2])
    assert got[3] == pytest.approx(2.224 / 0.784)
    assert curves.smooth([3.0, -1.0, math.inf], 0.0) == [3.0, -1.0, math.inf]  # weight 0: as logged
    assert curves.smooth([5.0, 5.0, 5.0], 0.9) == pytest.approx([5.0, 5.0, 5.0])  # no pull towards 0
    assert curves.smooth([], 0.6) == []
    with pytest.raises(ValueError):
        curves.smooth([1.0], 1.0)


def test_resumed_runs_merge_by_iteration_the_later_run_winning(work_dir: Path) -> None:
    proc = run_curves(str(work_dir))
    assert proc.returncode == 0, proc.stderr
    rows = read_csv(work_dir / "curves" / "curves.csv")
    assert list(rows[0]) == ["iter", "loss", "loss_smoothed", "lr", "grad_norm", "time", "data_time",
                             "tokens_per_sec", "memory", "style/style_accuracy", "style/style_margin",
                             "style/sane_rate"]
    assert [int(row["iter"]) for row in rows] == list(range(1, 9))
    # 5 and 6 come from the resumed run (5.0, 6.0), not the first (50.0, 60.0); the NaN stays a NaN
    assert same(column(rows, "loss"), [1.0, 2.0, math.nan, 4.0, 5.0, 6.0, 7.0, 8.0])
    assert column(rows, "lr") == [1e-3 * i for i in range(1, 9)]
    assert column(rows, "grad_norm") == [3.0, 4.0, 5.0, None, 7.0, 8.0, 9.0, 10.0]  # none logged at 4
    # the val loop's time (99.0) at 4 is not the training time of iteration 4
    assert column(rows, "time") == [0.5 + i for i in range(1, 9)]
    assert column(rows, "data_time") == [0.01 * i for i in range(1, 9)]
    assert column(rows, "memory") == [None] * 7 + [1234.0]  # one point
    assert same(column(rows, "tokens_per_sec"), [None] * 5 + [math.inf, None, None])  # the later run's inf
    # the style record's values win over scalars.json's for the same iteration (12.5, not 10.0)
    assert column(rows, "style/style_accuracy") == [None] * 3 + [12.5] + [None] * 3 + [40.0]
    assert column(rows, "style/style_margin") == [None] * 3 + [-5.0] + [None] * 3 + [20.0]
    assert column(rows, "style/sane_rate") == [None] * 3 + [90.0] + [None] * 3 + [80.0]
    # the smoothed loss, by hand (w = 0.6) over the merged points 1.0, 2.0, NaN, 4.0, 5.0, ...
    smoothed = column(rows, "loss_smoothed")
    assert smoothed[:2] == pytest.approx([1.0, 1.625]) and math.isnan(smoothed[2])  # type: ignore[arg-type]
    assert smoothed[3] == pytest.approx(2.224 / 0.784)
    assert smoothed[4] == pytest.approx((0.6 * 2.224 + 0.4 * 5.0) / (1 - 0.6**4))


def test_what_is_wrong_or_missing_is_said_in_one_line_each(work_dir: Path) -> None:
    proc = run_curves(str(work_dir))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    cut = scalars(work_dir, FIRST)
    assert proc.stderr.splitlines() == [
        f"curves: {cut}:4: json: not a JSON object (Expecting ',' delimiter at column 24); line skipped"]
    lines = proc.stdout.splitlines()
    assert "curves: loss: 1 of its 8 points are NaN or infinite: gaps in its figure" in lines
    assert ("curves: tokens_per_sec: no finite value in its 1 point(s) (NaN or infinite): no figure of it"
            in lines)
    assert ("curves: marked the kept checkpoint iter_4.pth (iter 4): iter_8.pth's sane_rate is below 85"
            in lines)
    assert not any(line.startswith("curves: not logged") for line in lines), lines


def test_no_checkpoint_kept_is_said_so_and_nothing_marked(work_dir: Path) -> None:
    """No checkpoint sane enough: the hook's best names none (iter null); curves says so, marks nothing."""
    none_kept = {"iter": None, "checkpoint": None,
                 "why": "no checkpoint so far has a sane_rate of at least 90"}
    records = [json.loads(line) for line in (work_dir / STYLE_SCORES).read_text().splitlines()]
    write_lines(work_dir / STYLE_SCORES, [json.dumps({**r, "best": none_kept}) for r in records])
    proc = run_curves(str(work_dir))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert f"curves: no checkpoint kept: {none_kept['why']}" in lines
    assert not any("marked" in line for line in lines), lines
    proc = run_curves(str(work_dir), "--only", "loss")  # no style figure drawn: nothing said of a mark
    assert proc.returncode == 0 and "curves: no checkpoint kept" not in proc.stdout, proc.stdout


def test_the_figures_are_pngs_with_something_drawn_and_none_for_an_empty_series(work_dir: Path) -> None:
    out = work_dir / "curves"
    out.mkdir()
    (out / "tokens_per_sec.png").write_bytes(b"an earlier run's figure")
    proc = run_curves(str(work_dir))
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["curves.csv", "grad_norm.png", "loss.png", "lr.png", "memory.png", "style_scores.png",
                     "time.png"]  # tokens_per_sec: no finite value, no figure (and the stale one is gone)
    for name in names[1:]:
        width, height = png_size(out / name)
        assert (width, height) == ((840, 420) if name != "style_scores.png" else (840, 936)), name
        # a line draws hundreds of pixels in the series colours, memory's single point ~25, empty axes none
        assert drawn_pixels(out / name) > (10 if name == "memory.png" else 100), f"{name}: no series drawn"
    assert f"curves: wrote {out}: curves.csv (8 iterations;" in proc.stdout


def test_a_single_point_run_and_a_record_only_run(tmp_path: Path) -> None:
    one = tmp_path / "one"
    write_lines(scalars(one, FIRST), [json.dumps(train_record(1, 2.5))])
    proc = run_curves(str(one), "--smoothing", "0.9")
    assert proc.returncode == 0, proc.stderr
    (row,) = read_csv(one / "curves" / "curves.csv")
    assert (float(row["loss"]), float(row["loss_smoothed"])) == (2.5, 2.5)
    assert "curves: not logged in this run, so no figure: tokens_per_sec, memory, style scores" in proc.stdout
    assert drawn_pixels(one / "curves" / "loss.png") > 10

    record_only = tmp_path / "record"
    write_lines(record_only / STYLE_SCORES,
                [json.dumps({"iter": 10, "metrics": {"style_accuracy": 30.0}}), "[1, 2]"])
    proc = run_curves(str(record_only))
    assert proc.returncode == 0, proc.stderr
    assert f"{record_only / STYLE_SCORES}:2: json: a list, not a JSON object; line skipped" in proc.stderr
    assert read_csv(record_only / "curves" / "curves.csv") == [{"iter": "10", "style/style_accuracy": "30.0"}]
    assert sorted(p.name for p in (record_only / "curves").iterdir()) == ["curves.csv", "style_scores.png"]


@pytest.mark.parametrize("case", ["missing", "empty", "only-bad-lines"])
def test_no_logs_stop_with_one_line_and_exit_2(tmp_path: Path, case: str) -> None:
    work = tmp_path / "work"
    if case == "empty":
        write_lines(scalars(work, FIRST), [])
    elif case == "only-bad-lines":
        write_lines(scalars(work, FIRST), ["{", json.dumps({"loss": 1.0})])  # cut; neither iter nor step
    proc = run_curves(str(work))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    last = proc.stderr.splitlines()[-1]
    if case == "missing":
        assert last == (f"curves: error: work dir {work} not found: train first (`make train "
                        f"WORK_DIR={work}`), or give WORK_DIR= the work dir `make train` wrote")
    else:
        assert last == (f"curves: error: nothing logged in {work}: no value in */vis_data/scalars.json "
                        "(mmengine writes one per start of training) nor in style_scores.jsonl; run `make "
                        f"train WORK_DIR={work}` first")
    if case == "only-bad-lines":
        assert proc.stderr.splitlines()[:2] == [
            f"curves: {scalars(work, FIRST)}:1: json: not a JSON object (Expecting property name enclosed in "
            "double quotes at column 2); line skipped",
            f"curves: {scalars(work, FIRST)}:2: no integer iter or step: not a record of training; "
            "line skipped"]
    assert not (work / "curves").exists()


def test_after_training_a_run_too_short_to_log_is_said_not_an_error(tmp_path: Path) -> None:
    """make train draws the curves at its end: a run of fewer iterations than the logger's interval logged
    nothing, which is no failure of training (make demo STAGE= in test_preference trains 2 iterations)."""
    work = tmp_path / "work"
    write_lines(scalars(work, FIRST), [])
    proc = run_curves(str(work), "--after-train")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (f"curves: nothing logged in {work} yet (a run shorter than the logger's "
                           "interval): no curves\n")
    assert not (work / "curves").exists()
    assert run_curves(str(tmp_path / "missing"), "--after-train").returncode == 2  # no work dir: an error


def test_a_bad_smoothing_weight_is_refused() -> None:
    proc = run_curves("work", "--smoothing", "1")
    assert proc.returncode == 2 and "--smoothing: 1 is not in [0, 1)" in proc.stderr


def test_make_curves_writes_where_told_and_names_a_missing_work_dir(work_dir: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    out = tmp_path / "figures"
    proc = subprocess.run(["make", "-s", "curves", f"WORK_DIR={work_dir}", f"CURVES_DIR={out}",
                           "CURVES_SMOOTHING=0"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = read_csv(out / "curves.csv")
    assert same(column(rows, "loss_smoothed"), column(rows, "loss"))  # weight 0: as logged
    missing = tmp_path / "nowhere"
    proc = subprocess.run(["make", "-s", "curves", f"WORK_DIR={missing}"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert (f"curves: error: work dir {missing} not found: train first (`make train WORK_DIR={missing}`)"
            in proc.stderr)
    assert "Traceback" not in proc.stderr


def test_only_the_named_figures_are_drawn_and_an_unknown_name_is_refused(work_dir: Path,
                                                                         tmp_path: Path) -> None:
    out = tmp_path / "curves"
    out.mkdir()
    (out / "loss.png").write_bytes(b"an earlier run's")  # not asked for: left alone
    proc = run_curves(str(work_dir), "--out", str(out), "--only", "style_scores")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["curves.csv", "loss.png", "style_scores.png"]
    assert (out / "loss.png").read_bytes() == b"an earlier run's"
    assert len(read_csv(out / "curves.csv")) == 8  # the CSV whole: every iteration
    proc = run_curves(str(work_dir), "--out", str(out), "--only", "losses")
    assert proc.returncode == 2 and "invalid choice: 'losses'" in proc.stderr


#: README's figure: `make figures` draws it from the controllable demo's logs committed here.
FIGURES_DATA = REPO_ROOT / "docs" / "figures" / "demo-controllable"
MISSING_GLYPH = r"Glyph .* missing from font"


def test_the_committed_readme_figure_is_what_make_figures_draws_from_the_committed_logs(
        tmp_path: Path) -> None:
    """`make figures` on the committed logs gives the committed PNG byte for byte (no version text in it,
    the same matplotlib from the lock) and the committed CSV; what it draws is the record's scores and its
    kept checkpoint. A change to the drawing or the data without `make figures` fails here."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    proc = subprocess.run(["make", "-s", "figures", f"FIGURES_OUT={tmp_path}"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.csv", "style_scores.png"]
    committed = FIGURES_DATA / "curves"
    assert (tmp_path / "curves.csv").read_text(encoding="utf-8") == \
        (committed / "curves.csv").read_text(encoding="utf-8")
    assert (tmp_path / "style_scores.png").read_bytes() == (committed / "style_scores.png").read_bytes(), \
        "docs/figures/demo-controllable/curves/style_scores.png is not what `make figures` draws: run it"
    # the data is the demo's run: 800 iterations, a score at every 80th, and the figure draws its record
    record = [json.loads(line) for line in
              (FIGURES_DATA / STYLE_SCORES).read_text(encoding="utf-8").splitlines()]
    assert [line["iter"] for line in record] == list(range(80, 801, 80))
    rows = {int(row["iter"]): row for row in read_csv(tmp_path / "curves.csv")}
    assert max(rows) == 800 and rows[800]["loss"]
    for line in record:
        for metric, value in line["metrics"].items():
            assert same(column([rows[line["iter"]]], f"style/{metric}"),
                        [math.nan if value is None else value]), (line["iter"], metric)
    best = record[-1]["best"]
    assert (f"curves: marked the kept checkpoint {best['checkpoint']} (iter {best['iter']}): {best['why']}"
            in proc.stdout.splitlines())
    # README names the checkpoint the record kept
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert f"kept: iteration {best['iter']}, the highest style margin with sane rate >= 90" in readme


def test_the_readme_figure_has_english_labels_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No label needs a CJK font (none is installed: a style's own name would draw as boxes): matplotlib
    warns of no missing glyph while drawing the figure, and no text in it is CJK."""
    from matplotlib.text import Text

    drawn: list = []
    original = curves.png_bytes

    def keep(fig: Any) -> bytes:
        drawn.append([t.get_text() for t in fig.findobj(Text) if t.get_text()])
        return original(fig)

    monkeypatch.setattr(curves, "png_bytes", keep)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=MISSING_GLYPH)
        pngs = curves.render(curves.collect(FIGURES_DATA, defaults.CURVES_SMOOTHING), FIGURES_DATA.name,
                             defaults.CURVES_SMOOTHING, only={curves.STYLE_FIGURE})
    assert pngs["style_scores.png"] == (FIGURES_DATA / "curves" / "style_scores.png").read_bytes()
    (texts,) = drawn
    assert {"style_accuracy_gentle", "style_accuracy_snarky", "sane_rate", "style_margin"} <= set(texts)
    assert not [t for t in texts if re.search(r"[\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef]", t)], texts


def test_figures_data_copies_a_runs_logs_and_draws_or_says_what_is_missing(work_dir: Path,
                                                                          tmp_path: Path) -> None:
    """`make figures-data`: the run's logs (every start's scalars.json, the record; no checkpoint) into
    FIGURES_DATA, replacing what was there, then `make figures` on them; a run not scored: one line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    data = tmp_path / "demo-controllable"
    (data / "old-run" / "vis_data").mkdir(parents=True)  # an earlier run's logs: replaced, not merged
    (work_dir / "iter_8.pth").write_bytes(b"weights")
    proc = subprocess.run(["make", "-s", "figures-data", f"FIGURES_RUN={work_dir}", f"FIGURES_DATA={data}"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    copied = sorted(str(p.relative_to(data)) for p in data.rglob("*") if p.is_file())
    assert copied == sorted(["curves/curves.csv", "curves/style_scores.png", STYLE_SCORES, *(
        f"{run}/vis_data/scalars.json" for run in (FIRST, SECOND, "20260101_020000"))])
    assert (data / STYLE_SCORES).read_bytes() == (work_dir / STYLE_SCORES).read_bytes()
    assert not list(tmp_path.glob("*.tmp"))
    unscored = tmp_path / "unscored"
    unscored.mkdir()
    proc = subprocess.run(["make", "-s", "figures-data", f"FIGURES_RUN={unscored}", f"FIGURES_DATA={data}"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and proc.stderr.startswith(
        f"figures-data: error: no {unscored}/{STYLE_SCORES}: run `make demo MODE=controllable` first")
    assert (data / STYLE_SCORES).is_file()  # what was there is left
