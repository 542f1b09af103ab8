"""mmengine's training logs in a work dir, read back: every series it logged, by training iteration
(`make curves`, the loss curve of the demo's and the evaluation's reports), and the style score's record.
Standard library only."""

from __future__ import annotations

from pathlib import Path

from style_tune.core.io import json_objects

#: The style score's record in a work dir, one JSON object a line per scored checkpoint, oldest first
#: (style_tune/train/style_score.py writes it; `make convert ITER=best` reads its last line's "best").
STYLE_SCORES = "style_scores.jsonl"
#: The keys of a logged record that say where it belongs rather than measure something.
_INDEX_KEYS = ("iter", "step", "epoch")
#: A validation record's own timing (its loop's, not training's): left out.
_VAL_TIMING = ("time", "data_time")


def _number(value: object) -> float | None:
    """A logged value as a float (NaN and infinity kept as logged); None for what is not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def logged_scalars(work_dir: Path) -> tuple[dict[str, dict[int, float]], list[str]]:
    """Every series mmengine's LocalVisBackend logged in a work dir (``*/vis_data/scalars.json``), by
    training iteration, ``{name: {iteration: value}}``, and a ``FILE:LINE: ...`` problem for each line
    skipped (not one JSON object, or neither ``iter`` nor ``step``).

    A training record carries ``iter`` (LoggerHook's; ``step`` is the same); a validation record (a val
    loop's metrics, such as the style scores) carries only ``step``, the training iteration it scored. Its
    keys without a "/" get mmengine's ``val/`` prefix, so that a validation ``loss`` is not taken for the
    training loss, and its ``time`` and ``data_time`` (the val loop's) are left out.

    One run directory per start of training, named by its start time (so sorted = in order). A resumed run
    starts again at its checkpoint and trains the iterations after it a second time: what earlier runs
    logged from its first training iteration on is dropped, even where the resumed run has not got as far
    (that training the interruption threw away), and within a run the latest line wins. Values that are
    not numbers are skipped.
    """
    series: dict[str, dict[int, float]] = {}
    problems: list[str] = []
    for scalars in sorted(work_dir.glob("*/vis_data/scalars.json")):
        records, bad = json_objects(scalars, scalars.read_text(encoding="utf-8", errors="replace"))
        problems += bad
        starts = [record["iter"] for _, record in records if type(record.get("iter")) is int]
        if starts:  # a resumed run: from its first training iteration on, earlier runs' points are gone
            for points in series.values():
                for thrown in [i for i in points if i >= min(starts)]:
                    del points[thrown]
        for number, record in records:
            training = "iter" in record
            at = record.get("iter", record.get("step"))
            if not isinstance(at, int) or isinstance(at, bool):
                problems.append(f"{scalars}:{number}: no integer iter or step: not a record of training")
                continue
            for key, raw in record.items():
                value = _number(raw)
                if key in _INDEX_KEYS or value is None or (not training and key in _VAL_TIMING):
                    continue
                name = key if training or "/" in key else f"val/{key}"
                series.setdefault(name, {})[at] = value
    return {name: points for name, points in series.items() if points}, problems


def loss_curve(work_dir: Path) -> list[tuple[int, float]]:
    """(iteration, loss) pairs from mmengine's LocalVisBackend logs (``*/vis_data/scalars.json``), as
    `logged_scalars` merges them: a resumed run's points continue the earlier ones."""
    return sorted(logged_scalars(work_dir)[0].get("loss", {}).items())


def style_scores(work_dir: Path) -> list[dict]:
    """The lines of WORK_DIR/style_scores.jsonl ([] where there is none), oldest first: each {"iter",
    "checkpoint", "metrics", "best": {"iter", "checkpoint", "why"}}. The file is written whole each time
    (atomically); a line that is not one JSON object with an integer iter is skipped (`make curves` names
    it): what reads the record (the hook on a resume, `make convert ITER=best`, the reports) looks lines up
    by iteration."""
    path = work_dir / STYLE_SCORES
    if not path.is_file():
        return []
    records = json_objects(path, path.read_text(encoding="utf-8", errors="replace"))[0]
    return [record for _, record in records if type(record.get("iter")) is int]
