"""`make demo-seeds` (benchmarks/demo_seeds.py): its tables, and README's figures from the committed run.

The run itself (three seeds of `make demo` and `make eval-demo`, ~45 min) is not part of `make test`; the
steps it calls are (tests/eval/test_eval_make_targets.py, tests/train/test_preference.py). Here: the
runner reads eval-style's result files and mmengine's logs as they are laid out, its table is the mean
and range of what it read, and README and docs state what benchmarks/demo_seeds_cpu.json holds.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from benchmarks import demo_seeds

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMITTED = json.loads((REPO_ROOT / "benchmarks" / "demo_seeds_cpu.json").read_text(encoding="utf-8"))


def fake_run(root: Path, name: str, base: float, tuned: float) -> Path:
    """An eval-style run folder as OpenCompass leaves it: latest/results/<model>/<abbr>.json."""
    for model, value in (("base", base), ("tuned", tuned)):
        folder = root / f"style_eval_demo-{name}" / "latest" / "results" / model
        folder.mkdir(parents=True)
        (folder / "style.json").write_text(json.dumps({"style_accuracy": value, "details": [{"x": 1}]}))
    return root / f"style_eval_demo-{name}"


def test_results_read_the_numbers_of_both_models(tmp_path: Path) -> None:
    run = fake_run(tmp_path, "label", 10.0, 90.0)
    assert demo_seeds.results(run) == {"base": {"style_accuracy": 10.0}, "tuned": {"style_accuracy": 90.0}}
    assert demo_seeds.results(tmp_path / "missing") is None


def test_train_seconds_weights_each_logged_time_by_its_interval(tmp_path: Path) -> None:
    scalars = tmp_path / "20261203_000000" / "vis_data" / "scalars.json"
    scalars.parent.mkdir(parents=True)
    # (a style score's line: its validation's own time, at its iteration; not training time)
    lines = [{"step": 10, "time": 0.5, "loss": 1.0}, {"step": 20, "time": 0.25, "loss": 0.9},
             {"step": 22, "time": 9.0, "style/style_accuracy": 50.0}, {"step": 25, "time": 1.0, "loss": 0.8}]
    scalars.write_text("\n".join(json.dumps(line) for line in lines))
    assert demo_seeds.train_seconds(tmp_path) == pytest.approx(10 * 0.5 + 10 * 0.25 + 5 * 1.0)
    assert demo_seeds.train_seconds(tmp_path / "none") is None


def test_a_run_that_leaves_no_results_fails_its_seed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # A `make demo eval-demo` that exits 0 but leaves no eval-style results (found by mypy: the runner
    # unpacked the missing results, None, and stopped with a TypeError).
    monkeypatch.chdir(tmp_path)
    fake_run(tmp_path / "outputs", "label", 10.0, 90.0)  # the first run has its results: not run again
    ran: list[list[str]] = []

    def make(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        ran.append(cmd)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(demo_seeds.subprocess, "run", make)
    result = demo_seeds.run_seed(0, tmp_path)
    assert ran == [["make", "demo", "eval-demo", "MODE=controllable", "DEMO_SEED=0"]]
    assert result["failed"] == "controllable" and list(result["runs"]) == ["label"]
    assert "controllable: no eval-style results in outputs/style_eval_demo-controllable/latest" in \
        capsys.readouterr().out


def test_the_table_is_mean_and_range_over_the_seeds() -> None:
    def seed(value: float) -> dict:
        metrics = {"base": {"style_accuracy": value}, "tuned": {"style_accuracy": value + 50}}
        return {"runs": {"label": metrics}}

    lines = demo_seeds.table([seed(10.0), seed(20.0), seed(40.0)], "label")
    row = next(line for line in lines if line.startswith("| style_accuracy |"))
    assert row == "| style_accuracy | 23.3 [10.0, 40.0] | 73.3 [60.0, 90.0] |"
    assert "| style_margin | – | – |" in lines  # a metric no seed has is shown as missing, not as 0


def test_make_demo_seeds_runs_the_runner_over_the_seeds() -> None:
    proc = subprocess.run(["make", "-n", "demo-seeds", "DEMO_SEEDS=0 1"], cwd=REPO_ROOT, capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin"})
    assert "-m benchmarks.demo_seeds --seeds 0 1 --jobs 3" in proc.stdout, proc.stdout + proc.stderr


def test_the_committed_tables_are_the_committed_numbers() -> None:
    shown = (REPO_ROOT / "benchmarks" / "demo_seeds_cpu.md").read_text(encoding="utf-8")
    assert [s["seed"] for s in COMMITTED] == [0, 1, 2]
    for mode in ("label", "controllable"):
        for line in demo_seeds.table(COMMITTED, mode):
            assert line in shown


def spread(run: str, model: str, metric: str = "style_accuracy") -> str:
    return demo_seeds.spread([s["runs"][run][model][metric] for s in COMMITTED])


def test_readme_figures_are_the_committed_runs() -> None:
    readme = " ".join((REPO_ROOT / "README.md").read_text(encoding="utf-8").split())
    figures = re.sub(r"\.0\b", "", " ".join([
        f"label format base 0 -> SFT {spread('label', 'tuned')};",
        f"controllable base {spread('controllable', 'base')} -> SFT {spread('controllable', 'tuned')}",
        f"-> + DPO {spread('controllable-dpo', 'tuned')}",
    ]))
    assert figures in re.sub(r"\.0\b", "", readme), figures
    for stage, words in (("orpo", "+ ORPO"), ("sft", "+ more SFT in the same time")):
        assert f"{words} {spread(f'controllable-{stage}', 'tuned').split()[0]}" in readme
