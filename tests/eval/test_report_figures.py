"""The report's figures (style_tune/eval/report.py): the style scores of every model as bars, and the
training run's curves with the style score's record, drawn by `make curves`' module in the eval env.
What is drawn is read back from the matplotlib figure before it is saved (its bars, lines and texts),
not only that a PNG exists. The whole `make report` on a real run: tests/eval/test_eval_make_targets.py."""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from style_tune.core.train_logs import STYLE_SCORES
from style_tune.eval import report
from style_tune.train import curves

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


#: What matplotlib warns when a label has a character its fonts lack (a CJK style name: no CJK font here).
MISSING_GLYPH = r"Glyph .* missing from font"


@pytest.fixture()
def drawn(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """The figures handed to curves.png_bytes (the one place both modules turn a figure into a PNG), read
    before they are saved; a missing glyph fails the test."""
    figures: list[Any] = []
    original = curves.png_bytes

    def keep(fig: Any) -> bytes:
        figures.append(fig)
        return original(fig)

    monkeypatch.setattr(curves, "png_bytes", keep)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=MISSING_GLYPH)
        yield figures


def test_a_cjk_label_is_what_the_glyph_check_catches() -> None:
    """The check above can fail: a style's own name as a label warns (the styles are 温柔 and 毒舌)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.set_title("温柔")
    with pytest.warns(UserWarning, match=MISSING_GLYPH):
        curves.png_bytes(fig)


def texts(fig: Any) -> list[str]:
    from matplotlib.text import Text

    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


def cjk(strings: list[str]) -> list[str]:
    """The strings with a CJK character (ticks may hold matplotlib's minus sign, U+2212: not ASCII, but in
    its own font)."""
    return [s for s in strings if re.search(r"[\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef]", s)]


def test_bars_show_every_models_style_scores_and_the_references(drawn: list[Any]) -> None:
    columns = {
        "base": {"style_accuracy": 52.9, "style_accuracy_gentle": 90.6, "style_accuracy_snarky": 15.2,
                 "style_margin": -5.3, "sane_rate": 99.6, "chrf": 3.0},
        "sft": {"style_accuracy": 93.1, "style_accuracy_gentle": 94.9, "style_accuracy_snarky": 91.3,
                "style_margin": 78.0, "sane_rate": 98.9},
        "dpo": {"style_accuracy": 0.0, "style_accuracy_gentle": math.nan, "style_accuracy_snarky": 0.0,
                "style_margin": 0.0, "sane_rate": 0.0},
        "references": {"style_accuracy": 96.74, "style_accuracy_gentle": 100.0,
                       "style_accuracy_snarky": 93.48, "sane_rate": 100.0},  # no style_margin: no bar
    }
    png = report.plot_scores(columns, "Style scores on 92 held-out prompts (controllable format)")
    assert png is not None and png.startswith(PNG_SIGNATURE)
    (fig,) = drawn
    shares, margin = fig.axes
    assert [t.get_text() for t in shares.get_xticklabels()] == [
        "style_accuracy\nall", "style_accuracy\ngentle", "style_accuracy\nsnarky", "sane_rate"]
    assert [t.get_text() for t in margin.get_xticklabels()] == ["style_margin"]
    order = ("style_accuracy", "style_accuracy_gentle", "style_accuracy_snarky", "sane_rate")
    for ax, metrics in ((shares, order), (margin, ("style_margin",))):
        bars = {container.get_label(): [bar.get_height() for bar in container] for container in ax.containers}
        assert list(bars) == list(columns)  # every model, in the run's order, then the references
        for name, heights in bars.items():
            want = [v for m in metrics if math.isfinite(v := columns[name].get(m, math.nan))]
            assert heights == pytest.approx(want), name  # the NaN and the missing value: no bar
    assert margin.get_ylim()[0] < -5.3  # a negative margin is drawn below zero, not cut off
    assert [t.get_text() for t in shares.get_legend().get_texts()] == list(columns)
    assert texts(fig) and not cjk(texts(fig))  # English labels: no CJK font needed


def test_bars_of_a_label_run_without_any_style_score_are_none(drawn: list[Any]) -> None:
    assert report.plot_scores({"base": {"chrf": 3.0}, "references": {}}, "nothing") is None
    assert drawn == []


def write_run(work_dir: Path, *, best: dict | None) -> list[dict]:
    """A scored run as mmengine and the style score write it: 3 training lines, 2 validation lines (the
    second with a NaN loss), and the record of both saves."""
    run = work_dir / "20260101_000000" / "vis_data"
    run.mkdir(parents=True)
    lines = [{"lr": 1e-3, "loss": 4.0, "iter": 10, "step": 10},
             {"style/style_accuracy": 40.0, "style/style_margin": 10.0, "style/sane_rate": 95.0, "step": 10},
             {"lr": 1e-3, "loss": 2.5, "iter": 20, "step": 20},
             {"style/style_accuracy": 80.0, "style/style_margin": 60.0, "style/sane_rate": 85.0, "step": 20},
             {"lr": 1e-3, "loss": 2.0, "iter": 30, "step": 30}]
    (run / "scalars.json").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    record = [{"iter": 10, "checkpoint": "iter_10.pth",
               "metrics": {"style_accuracy": 40.0, "style_accuracy_gentle": 50.0,
                           "style_accuracy_snarky": 30.0, "style_margin": 10.0, "sane_rate": 95.0,
                           "sane_margin": 10.0},
               "best": best},
              {"iter": 20, "checkpoint": "iter_20.pth",
               "metrics": {"style_accuracy": 80.0, "style_accuracy_gentle": 90.0,
                           "style_accuracy_snarky": 70.0, "style_margin": 60.0, "sane_rate": 85.0,
                           "sane_margin": None},
               "best": best}]
    (work_dir / STYLE_SCORES).write_text("".join(json.dumps(r) + "\n" for r in record), encoding="utf-8")
    return record


def test_training_section_draws_the_curves_and_says_which_checkpoint_was_kept_and_why(
        tmp_path: Path, drawn: list[Any]) -> None:
    work = tmp_path / "demo-controllable"
    why = "the highest style_margin among the checkpoints whose sane_rate is at least 90"
    write_run(work, best={"iter": 10, "checkpoint": "best_style_sane_margin_iter_10.pth", "why": why})
    lines, png = report.training_section(work, tmp_path / "report_training.png", 0.6)
    assert png is not None and png.startswith(PNG_SIGNATURE)
    assert lines[0] == "![training curves of demo-controllable](report_training.png)"
    assert "training loss 4.000 at iteration 10 -> 2.000 at iteration 30 (3 logged points" in lines[2]
    table = lines[lines.index("| iteration | checkpoint | style_accuracy | style_accuracy_gentle | "
                              "style_accuracy_snarky | style_margin | sane_rate | kept |"):]
    assert table[2:4] == ["| 10 | iter_10.pth | 40.00 | 50.00 | 30.00 | 10.00 | 95.00 | **kept** |",
                          "| 20 | iter_20.pth | 80.00 | 90.00 | 70.00 | 60.00 | 85.00 |  |"]
    assert lines[-1] == (f"Kept: `best_style_sane_margin_iter_10.pth` (iteration 10): {why}; "
                         "`make convert ITER=best` converts it.")
    # the figure is make curves' style figure: the loss, the scores (the record's values) and the kept mark
    (fig,) = drawn
    loss_ax, scores_ax, margin_ax = fig.axes
    lines_by_label = {line.get_label(): line for ax in fig.axes for line in ax.get_lines()}
    assert list(lines_by_label["style_accuracy_gentle"].get_xdata()) == [10, 20]
    assert list(lines_by_label["style_accuracy_gentle"].get_ydata()) == [50.0, 90.0]
    assert list(lines_by_label["logged"].get_ydata()) == [4.0, 2.5, 2.0]
    assert [line.get_xdata()[0] for ax in fig.axes for line in ax.get_lines()
            if line.get_linestyle() == "--"] == [10, 10, 10]
    assert "kept: best_style_sane_margin_iter_10.pth" in texts(fig)
    assert not cjk(texts(fig))


def test_training_section_of_a_run_with_no_kept_checkpoint_or_no_score_or_no_logs(
        tmp_path: Path, drawn: list[Any]) -> None:
    scored = tmp_path / "none-kept"
    write_run(scored, best={"iter": None, "checkpoint": None, "why": "no checkpoint has a sane_rate of 90"})
    lines, png = report.training_section(scored, tmp_path / "r.png", 0.6)
    assert png and lines[-1] == "No checkpoint kept: no checkpoint has a sane_rate of 90."
    assert not any("**kept**" in line for line in lines)
    # a run without the style score (an older config): the loss figure, no table
    loss_only = tmp_path / "loss-only"
    write_run(loss_only, best=None)
    (loss_only / STYLE_SCORES).unlink()
    (loss_only / "20260101_000000/vis_data/scalars.json").write_text(
        json.dumps({"loss": 3.0, "iter": 5, "step": 5}) + "\n", encoding="utf-8")
    lines, png = report.training_section(loss_only, tmp_path / "r.png", 0.6)
    assert png and not any(line.startswith("| iteration") for line in lines)
    assert drawn[-1].axes[0].get_ylabel() == "training loss" and len(drawn[-1].axes) == 1
    for missing in (tmp_path / "nowhere", None):
        lines, png = report.training_section(missing, tmp_path / "r.png", 0.6)
        assert png is None and lines == [f"No XTuner training logs (`*/vis_data/scalars.json`, "
                                          f"`{STYLE_SCORES}`) under `{missing}`: no training curves "
                                          "(TRAIN_WORK_DIR= names the training run)."]
