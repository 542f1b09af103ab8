"""`make verdicts` (style_tune/eval/verdicts.py) on hand-written verdict files: counts, win rates, Wilson
intervals and A's share computed by hand; bad lines reported as FILE:LINE and never counted."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from style_tune.eval.verdicts import main, pairs, read, tally

REPO_ROOT = Path(__file__).resolve().parents[2]


def record(verdict: str, a: str, b: str, *, prompt: str = "p", style: str | None = "温柔",
           rater: str | None = "ann", judge: str | None = None) -> dict:
    return {"prompt": prompt, "style": style, "verdict": verdict, "rater": rater, "judge": judge,
            "endpoints": {"A": {"name": a, "api": "http://x/v1"}, "B": {"name": b, "api": "http://y/v1"}}}


#: tuned wins 6 (4 shown as A, 2 as B), base wins 2 (1 as A, 1 as B), 1 tie, 1 both bad: 10 verdicts
#: on 10 prompts by 2 raters; 温柔 holds the first 6, 毒舌 the other 4.
PEOPLE = [
    record("A", "tuned", "base", prompt="p1", rater="ann"),
    record("A", "tuned", "base", prompt="p2", rater="ann"),
    record("A", "tuned", "base", prompt="p3", rater="bob"),
    record("B", "base", "tuned", prompt="p4", rater="bob"),
    record("A", "base", "tuned", prompt="p5", rater="ann"),
    record("tie", "tuned", "base", prompt="p6", rater="ann"),
    record("A", "tuned", "base", prompt="p7", style="毒舌", rater="bob"),
    record("B", "base", "tuned", prompt="p8", style="毒舌", rater="bob"),
    record("B", "tuned", "base", prompt="p9", style="毒舌", rater="ann"),
    record("both bad", "base", "tuned", prompt="p10", style="毒舌", rater="ann"),
]


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson's score interval, written out (the reference the scipy-backed code is checked against)."""
    p = k / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return center - half, center + half


def write(path: Path, records: list[dict | str]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n"
                            for r in records), encoding="utf-8")
    return path


def test_counts_and_intervals_equal_the_hand_computed_ones(tmp_path: Path) -> None:
    verdicts, errors = read([write(tmp_path / "v.jsonl", PEOPLE)])
    assert errors == [] and pairs(verdicts) == [("tuned", "base")]
    t = tally(verdicts, "tuned", "base")
    assert (t["verdicts"], t["wins"], t["losses"], t["ties"], t["both_bad"]) == (10, 6, 2, 1, 1)
    assert (t["prompts"], t["raters"]) == (10, 2)
    assert t["win_rate"] == 6 / 8 and t["win_ci"] == pytest.approx(wilson(6, 8), abs=1e-9)
    assert t["win_ci"] == pytest.approx((0.4093, 0.9285), abs=1e-4)  # by hand, to 4 places
    assert t["a_share"] == 5 / 8 and t["a_ci"] == pytest.approx(wilson(5, 8), abs=1e-9)
    gentle = tally([v for v in verdicts if v.style == "温柔"], "tuned", "base")
    assert (gentle["wins"], gentle["losses"], gentle["ties"]) == (4, 1, 1)
    assert gentle["win_ci"] == pytest.approx(wilson(4, 5), abs=1e-9)
    snarky = tally([v for v in verdicts if v.style == "毒舌"], "tuned", "base")
    assert (snarky["wins"], snarky["losses"], snarky["both_bad"]) == (2, 1, 1)


def test_people_and_judges_are_reported_apart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    unreadable = {**record("A", "tuned", "base", prompt="p3", rater=None, judge="qwen-max"),
                  "verdict": None, "unparsable": True}
    judged = [record("A", "tuned", "base", prompt="p1", rater=None, judge="qwen-max"),
              record("tie", "base", "tuned", prompt="p2", rater=None, judge="qwen-max"), unreadable]
    out = tmp_path / "verdicts.md"
    files = [write(tmp_path / "people.jsonl", PEOPLE), write(tmp_path / "judge.jsonl", judged)]
    assert main([*map(str, files), "--out", str(out)]) == 0
    table = out.read_text(encoding="utf-8")
    assert table == capsys.readouterr().out
    assert "### tuned vs base" in table
    assert "| people | all | 10 | 10 | 2 | 6 | 2 | 1 | 1 | 0 | 75% [41%, 93%] | 62% [31%, 86%] |" in table
    judge_row = ("| judge qwen-max | all | 2 | 2 | 1 | 1 | 0 | 1 | 0 | 1 | 100% [21%, 100%] | "
                 "100% [21%, 100%] |")
    assert judge_row in table


def test_bad_lines_are_named_and_never_counted(tmp_path: Path) -> None:
    no_mapping = record("A", "tuned", "base", prompt="p2")
    del no_mapping["endpoints"]["B"]
    lines = [PEOPLE[0], '{"prompt": "p", "verdict": ', record("tuned better", "tuned", "base"), no_mapping,
             record("A", "tuned", "tuned"), "[1, 2]", {**record("A", "tuned", "base"), "seed": "7"},
             PEOPLE[3]]
    path = write(tmp_path / "bad.jsonl", lines)
    verdicts, errors = read([path])
    assert [v.where for v in verdicts] == [f"{path}:1", f"{path}:8"]
    assert [e.split(": ", 1)[0] for e in errors] == [f"{path}:{n}" for n in (2, 3, 4, 5, 6, 7)]
    assert "not JSON" in errors[0] and "'tuned better' is none of A, B, tie, both bad" in errors[1]
    assert "no mapping of A and B" in errors[2] and "same model" in errors[3]
    assert "not a JSON object" in errors[4] and "seed must be an integer" in errors[5]
    assert all(e.endswith("this line is not counted") for e in errors)
    proc = subprocess.run([sys.executable, "-m", "style_tune.eval.verdicts", str(path)], cwd=REPO_ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"verdicts: {path}:2: not JSON" in proc.stderr
    assert "| people | all | 2 | 2 | 2 | 2 | 0 | 0 | 0 | 0 |" in proc.stdout  # only lines 1 and 8


def test_make_verdicts_counts_a_file(tmp_path: Path) -> None:
    """`make verdicts VERDICTS=FILE`, as README gives it."""
    path = write(tmp_path / "session.jsonl", PEOPLE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    proc = subprocess.run(["make", "-s", "verdicts", f"VERDICTS={path}"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = "| people | all | 10 | 10 | 2 | 6 | 2 | 1 | 1 | 0 | 75% [41%, 93%] | 62% [31%, 86%] |"
    assert row in proc.stdout
