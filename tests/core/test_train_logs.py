"""style_tune/core/train_logs.py: mmengine's logged series read back from a work dir (standard library)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from style_tune.core import train_logs


def test_loss_curve_joins_runs_and_skips_other_records(tmp_path: Path) -> None:
    def scalars(run: str, records: list[dict]) -> None:
        path = tmp_path / run / "vis_data" / "scalars.json"
        path.parent.mkdir(parents=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")

    scalars("20260101_000000", [{"iter": 1, "loss": 3.0, "lr": 1}, {"iter": 2, "loss": 2.5},
                                {"iter": 3, "loss": 9.0}, {"iter": 3, "lr": 0.1}, {"loss": 7.0}])
    scalars("20260101_010000", [{"iter": 3, "loss": "2.25"}, {"iter": 4, "loss": 2}])
    (tmp_path / "20260101_020000" / "vis_data").mkdir(parents=True)  # a run that logged nothing
    curve = train_logs.loss_curve(tmp_path)
    assert curve == [(1, 3.0), (2, 2.5), (3, 2.25), (4, 2.0)]
    assert all(type(i) is int and type(loss) is float for i, loss in curve)
    assert train_logs.loss_curve(tmp_path / "missing") == []


def test_logged_scalars_keep_the_latest_run_and_name_validation_records_and_bad_lines(tmp_path: Path) -> None:
    first = tmp_path / "20260101_000000" / "vis_data" / "scalars.json"
    second = tmp_path / "20260101_010000" / "vis_data" / "scalars.json"
    first.parent.mkdir(parents=True)
    second.parent.mkdir(parents=True)
    first.write_text("\n".join([
        json.dumps({"lr": 0.1, "loss": 4.0, "time": 1.5, "iter": 1, "step": 1}),
        json.dumps({"lr": 0.2, "loss": 3.0, "grad_norm": float("nan"), "iter": 2, "step": 2}),
        json.dumps({"style/style_accuracy": 30.0, "loss": 9.0, "time": 7.0, "data_time": 6.0, "step": 2}),
        '{"lr": 0.3, "lo',  # cut by a kill
        json.dumps({"lr": 0.3, "loss": 2.0, "note": "text", "flag": True, "iter": 3, "step": 3}),
    ]) + "\n", encoding="utf-8")
    second.write_text(json.dumps({"lr": 0.3, "loss": 2.5, "iter": 3, "step": 3}) + "\n" +
                      json.dumps({"loss": 1.0, "step": "4"}) + "\n", encoding="utf-8")
    series, problems = train_logs.logged_scalars(tmp_path)
    assert series["loss"] == {1: 4.0, 2: 3.0, 3: 2.5}  # iteration 3: the later run's
    assert series["lr"] == {1: 0.1, 2: 0.2, 3: 0.3}
    assert series["time"] == {1: 1.5}  # not the validation loop's 7.0
    assert series["style/style_accuracy"] == {2: 30.0} and series["val/loss"] == {2: 9.0}
    assert math.isnan(series["grad_norm"][2])
    assert sorted(series) == ["grad_norm", "loss", "lr", "style/style_accuracy", "time", "val/loss"]
    assert len(problems) == 2 and problems[0].startswith(f"{first}:4: json: not a JSON object (Unterminated")
    assert problems[1] == f"{second}:2: no integer iter or step: not a record of training"
    assert train_logs.logged_scalars(tmp_path / "missing") == ({}, [])


def test_a_bad_record_or_undecodable_bytes_do_not_stop_the_reading(tmp_path: Path) -> None:
    path = tmp_path / "20260101_000000" / "vis_data" / "scalars.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"loss": 1.0}\n{"iter": 1, "loss": 2.0, "note": "\xff"}\n{"iter": 2, "loss": 1.5}\n')
    series, problems = train_logs.logged_scalars(tmp_path)
    assert series == {"loss": {1: 2.0, 2: 1.5}}
    assert problems == [f"{path}:1: no integer iter or step: not a record of training"]


def test_style_scores_read_past_undecodable_bytes_and_skip_what_is_not_a_record(tmp_path: Path) -> None:
    assert train_logs.style_scores(tmp_path) == []
    first = {"iter": 2, "checkpoint": "iter_2.pth", "metrics": {"style/style_margin": 10.0},
             "best": {"iter": 2, "checkpoint": "best.pth", "why": "w"}}
    (tmp_path / train_logs.STYLE_SCORES).write_bytes(
        json.dumps(first).encode() + b'\n{"iter": 4, "why": "\xff"}\nnot json\n'
        b'{"iter": "6"}\n{"iter": true}\n')
    assert train_logs.style_scores(tmp_path) == [first, {"iter": 4, "why": "\ufffd"}]


def test_a_resumed_run_drops_what_the_interruption_threw_away(tmp_path: Path) -> None:
    """Run 1 logged to iteration 150 but its last checkpoint was 80; run 2 resumed there, scored 80 again and
    trained to 120 before it stopped too: 90-150 of run 1 are gone (130-150 not replaced), its 10-80 and its
    score at 80 (replaced) stay; a run that logged no training iteration (only a score) drops nothing."""
    def scalars(run: str, records: list[dict]) -> None:
        path = tmp_path / run / "vis_data" / "scalars.json"
        path.parent.mkdir(parents=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")

    scalars("20260101_000000", [*({"iter": i, "step": i, "loss": 10.0} for i in range(10, 160, 10)),
                                {"step": 80, "style/style_margin": 1.0}, {"iter": 90, "grad_norm": 5.0},
                                {"iter": 140, "grad_norm": 5.0}])
    scalars("20260101_010000", [{"step": 80, "style/style_margin": 2.0},
                                *({"iter": i, "step": i, "loss": 20.0} for i in range(90, 130, 10))])
    scalars("20260101_020000", [{"step": 120, "style/style_margin": 3.0}])
    series, problems = train_logs.logged_scalars(tmp_path)
    assert problems == []
    assert series["loss"] == {**{i: 10.0 for i in range(10, 90, 10)}, **{i: 20.0 for i in range(90, 130, 10)}}
    assert series["style/style_margin"] == {80: 2.0, 120: 3.0}
    assert "grad_norm" not in series  # all of it thrown away: no empty series
