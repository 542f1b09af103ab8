"""`make verdicts` (style_tune/eval/verdicts.py) on hand-written verdict files: counts, win rates, Wilson
intervals and A's share computed by hand; bad lines reported as FILE:LINE and never counted."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from style_tune.core import defaults, stats
from style_tune.eval import verdicts
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


def test_the_interval_is_at_the_stated_level(monkeypatch) -> None:
    assert stats.wilson_interval(6, 8) == pytest.approx(wilson(6, 8), abs=1e-9)
    monkeypatch.setattr(stats, "LEVEL", 0.5)  # the one level every report states
    assert stats.wilson_interval(6, 8) == pytest.approx(wilson(6, 8, z=0.6744897501960817), abs=1e-9)


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


# --- each part in this process (mutation testing sees which code each test runs) -----------------------


def test_a_written_record_reads_back_as_the_verdict_it_records() -> None:
    """The web page and the pairwise judge write `record`s; `make verdicts` and `make prefs` read them."""
    line = verdicts.record(verdict="B", prompt="p", style="温柔", system="sys",
                           replies={"A": "one", "B": "three"},
                           endpoints={"A": {"name": "base"}, "B": {"name": "tuned", "api": "http://x/v1"}},
                           settings={"temperature": 0}, seed=7, rater="ann", extra_field=1)
    assert sorted(line) == ["endpoints", "extra_field", "judge", "prompt", "rater", "replies", "seed",
                            "settings", "style", "system", "time", "verdict"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}", line["time"])
    assert (line["system"], line["settings"], line["judge"]) == ("sys", {"temperature": 0}, None)
    assert verdicts.parse(json.dumps(line), "f:1") == verdicts.Verdict(
        "f:1", "p", "温柔", "base", "tuned", "B", "ann", "people", 7, (3, 5))
    judged = verdicts.record(verdict=None, prompt="p", style=None, system=None, replies={"A": "", "B": "b"},
                             endpoints={"A": {"name": "x"}, "B": {"name": "y"}}, settings={}, seed=0,
                             judge="qwen", unparsable=True)
    assert verdicts.parse(json.dumps(judged), "f:2") == verdicts.Verdict(
        "f:2", "p", None, "x", "y", "unparsable", None, "judge qwen", 0, (0, 1))


@pytest.mark.parametrize(("change", "problem"), [
    ({"verdict": None}, "verdict None is none of A, B, tie, both bad"),  # no unparsable flag
    ({"verdict": None, "unparsable": True}, "verdict None is none of A, B, tie"),  # no judge
    ({"endpoints": ["tuned", "base"]}, 'no mapping of A and B to models: give "endpoints": {"A": {"name": '
     '...}, "B": {"name": ...}}'),
    ({"endpoints": {"A": {"name": 5}, "B": {"name": "base"}}}, "no mapping of A and B to models"),
    ({"prompt": ""}, "no prompt"),
    ({"prompt": 5}, "no prompt"),
    ({"style": 1}, "style must be a string"),
    ({"rater": 1}, "rater must be a string"),
    ({"judge": 1}, "judge must be a string"),
    ({"seed": True}, "seed must be an integer"),
    ({"replies": "one"}, 'replies must map "A" and "B" to the reply texts'),
    ({"replies": {"A": "one"}}, 'replies must map "A" and "B" to the reply texts'),
])
def test_each_problem_of_a_record_is_said(change: dict, problem: str) -> None:
    with pytest.raises(ValueError) as info:
        verdicts.parse(json.dumps({**record("A", "tuned", "base"), **change}), "f:1")
    assert str(info.value).startswith(problem)
    with pytest.raises(ValueError, match="^not a JSON object$"):
        verdicts.parse("[1]", "f:1")


def test_unreadable_files_and_blank_lines_are_passed_over(tmp_path: Path) -> None:
    missing = tmp_path / "missing.jsonl"
    good = write(tmp_path / "v.jsonl", [PEOPLE[0], "", "  ", PEOPLE[1]])
    found, errors = read([missing, good])
    assert [v.where for v in found] == [f"{good}:1", f"{good}:4"]
    assert errors == [f"{missing}: cannot read it: [Errno 2] No such file or directory: '{missing}'"]


def test_pairs_and_a_tally_without_decisive_verdicts() -> None:
    ties = [verdicts.parse(json.dumps(record(v, "sft", "base")), "f:1") for v in ("tie", "both bad")]
    assert pairs(ties) == [("base", "sft")]  # no "tuned": the first by name first
    t = tally(ties, "sft", "base")
    assert (t["first"], t["second"], t["wins"], t["ties"], t["both_bad"]) == ("sft", "base", 0, 1, 1)
    assert t["win_rate"] is t["win_ci"] is t["a_share"] is t["a_ci"] is None


#: Two pairs, people and a judge; a style with no verdict of a pair, a judge with only an unreadable answer.
MIXED = [*PEOPLE[:3], record("A", "sft", "base", prompt="q1", style="毒舌", rater="cy"),
         {**record("A", "sft", "base", prompt="q2", style="毒舌", rater=None, judge="j"), "verdict": None,
          "unparsable": True}]
HEAD = ("| raters | style | verdicts | prompts | raters (n) | wins | losses | ties | both bad | unparsable | "
        "{} win rate | A's share |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n")
MIXED_TABLE = (
    "## Side-by-side verdicts\n\nWin rate: wins / (wins + losses), ties and \"both bad\" left out; A's "
    "share: the decisive verdicts won by the reply shown first (50 % without position bias). Brackets: 95% "
    "Wilson intervals (scipy `binomtest(...).proportion_ci`).\n\n### base vs sft\n\n" + HEAD.format("base")
    + "| judge j | all | 0 | 0 | 1 | 0 | 0 | 0 | 0 | 1 | — | — |\n"
    "| judge j | 毒舌 | 0 | 0 | 1 | 0 | 0 | 0 | 0 | 1 | — | — |\n"
    "| people | all | 1 | 1 | 1 | 0 | 1 | 0 | 0 | 0 | 0% [0%, 79%] | 100% [21%, 100%] |\n"
    "| people | 毒舌 | 1 | 1 | 1 | 0 | 1 | 0 | 0 | 0 | 0% [0%, 79%] | 100% [21%, 100%] |\n"
    "\n### tuned vs base\n\n" + HEAD.format("tuned")
    + "| people | all | 3 | 3 | 2 | 3 | 0 | 0 | 0 | 0 | 100% [44%, 100%] | 100% [44%, 100%] |\n"
    "| people | 温柔 | 3 | 3 | 2 | 3 | 0 | 0 | 0 | 0 | 100% [44%, 100%] | 100% [44%, 100%] |\n")


def test_the_table_has_a_row_per_rater_kind_and_style_with_verdicts_of_the_pair(tmp_path: Path, monkeypatch,
                                                                                 capsys) -> None:
    monkeypatch.setattr(verdicts.ranking, "section", lambda *args, **kwargs: [])  # 3 models: test_ranking.py
    path = write(tmp_path / "v.jsonl", MIXED)
    assert main([str(path)]) == 0
    assert capsys.readouterr().out == MIXED_TABLE
    empty = write(tmp_path / "empty.jsonl", [])
    assert main([str(empty)]) == 0
    assert capsys.readouterr().out == "## Side-by-side verdicts\n\nNo valid verdict.\n"


def test_bad_lines_are_said_on_stderr_and_make_the_exit_status_1(tmp_path: Path, capsys) -> None:
    path = write(tmp_path / "v.jsonl", [PEOPLE[0], "[1]"])
    assert main([str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.err == f"verdicts: {path}:2: not a JSON object; this line is not counted\n"
    assert "| people | all | 1 | 1 | 1 | 1 | 0 |" in captured.out


def test_options_reach_the_ranking_and_bad_ones_are_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    """What main hands the ranking (style_tune/eval/ranking.py, tested with scikit-learn in
    test_ranking.py): replaced here by a recorder that returns a section."""
    calls = []

    def section(found, **kwargs):
        calls.append((len(found), kwargs))
        return ["## Ranking", "", "![ratings](x.png)"]

    path = write(tmp_path / "v.jsonl", PEOPLE)
    out = tmp_path / "report" / "v.md"
    out.parent.mkdir()
    monkeypatch.setattr(verdicts.ranking, "section", section)
    assert main([str(path), "--out", str(out), "--anchor", "base", "--seed", "3", "--rounds", "1"]) == 0
    assert calls == [(10, {"anchor": "base", "seed": 3, "rounds": 1, "figure": out.with_name("v_ranking.png"),
                           "figure_link": "v_ranking.png"})]
    table = capsys.readouterr().out
    assert table.endswith("|\n\n## Ranking\n\n![ratings](x.png)\n")
    assert out.read_text(encoding="utf-8") == table
    figure = tmp_path / "f.png"
    assert main([str(path), "--figure", str(figure)]) == 0
    assert calls[-1][1]["figure"] == figure and calls[-1][1]["figure_link"] == str(figure)
    assert capsys.readouterr().err == ""  # drawn: nothing to say
    assert main([str(path)]) == 0
    assert calls[-1][1] == {"anchor": None, "seed": defaults.SEED, "rounds": defaults.RANKING_ROUNDS,
                            "figure": None, "figure_link": None}
    monkeypatch.undo()
    capsys.readouterr()
    assert main([str(path), "--figure", str(figure)]) == 0  # two models: nothing to draw
    assert capsys.readouterr().err == f"verdicts: no ratings to draw (no three models connected): {figure} " \
                                      "not written\n"
    assert not figure.exists()
    for argv, message in ((["--rounds", "0"], "verdicts: error: --rounds 0: give a positive number of "
                                              "bootstrap rounds\n"),
                          (["--anchor", "gpt-4"], "verdicts: error: ANCHOR=gpt-4 is none of the models in "
                                                  "the verdicts (base, tuned): give ANCHOR= one of them\n")):
        with pytest.raises(SystemExit) as info:
            main([str(path), *argv])
        assert info.value.code == 1 and capsys.readouterr().err == message
    with pytest.raises(SystemExit) as info:
        main([str(path), "--rounds", "many"])
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith("usage: python -m style_tune.eval.verdicts ")


def test_make_reports_section(tmp_path: Path, monkeypatch) -> None:
    """`make report`'s section: the table, where it came from, bad lines counted, the ranking or why none."""
    path = write(tmp_path / "v.jsonl", [*PEOPLE[:3], "[1]"])
    table = verdicts.render(read([path])[0]).splitlines()
    said = [f"\nFrom `{path}` (`make verdicts VERDICTS={path}`).",
            "\n1 line(s) of it are not verdicts and are not counted: `make verdicts` names them."]
    assert verdicts.report_section(path) == [table[0], said[0], *table[1:], said[1], ""]
    assert verdicts.report_section(path, anchor="gpt-4") == [
        table[0], said[0], *table[1:], said[1], "", "## Ranking (Bradley–Terry)", "",
        "No ranking: ANCHOR=gpt-4 is none of the models in the verdicts (base, tuned).", ""]
    none = tmp_path / "none.jsonl"
    assert verdicts.report_section(none) == [
        "## Side-by-side verdicts", f"\nFrom `{none}` (`make verdicts VERDICTS={none}`).", "",
        "No valid verdict.", said[1], ""]
    calls = []
    monkeypatch.setattr(verdicts.ranking, "section",
                        lambda found, **kwargs: calls.append((len(found), kwargs)) or ["## Ranking"])
    figure = tmp_path / "out" / "r.png"
    assert verdicts.report_section(path, figure=figure, anchor="base", seed=5, rounds=9)[-3:] == [
        "", "## Ranking", ""]
    assert calls == [(3, {"anchor": "base", "seed": 5, "rounds": 9, "figure": figure,
                          "figure_link": "r.png"})]
    verdicts.report_section(path)
    assert calls[-1][1] == {"anchor": None, "seed": defaults.SEED, "rounds": defaults.RANKING_ROUNDS,
                            "figure": None, "figure_link": None}


def test_which_model_is_shown_as_a_depends_on_the_seed_and_the_prompt_alone() -> None:
    orders = [verdicts.shown_order(7, f"p{i}", "温柔") for i in range(200)]
    assert orders == [verdicts.shown_order(7, f"p{i}", "温柔") for i in range(200)]  # a reload: the same
    assert set(orders) == {("base", "tuned"), ("tuned", "base")}
    assert 70 < orders.count(("base", "tuned")) < 130  # about half
    assert orders != [verdicts.shown_order(8, f"p{i}", "温柔") for i in range(200)]
    assert orders != [verdicts.shown_order(7, f"p{i}", "毒舌") for i in range(200)]
    named = {verdicts.shown_order(7, f"p{i}", None, names=("x", "y")) for i in range(20)}
    assert named == {("x", "y"), ("y", "x")}
