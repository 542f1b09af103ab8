"""`make prefs`: preference pairs from the controllable split (style_tune/data/prefs.py).

What XTuner does with the file (rendering, the loss) is tested in tests/train/test_preference.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from style_tune.core.prompts import STYLE_SYSTEMS, STYLES
from style_tune.data import prefs
from style_tune.data import split as split_data
from style_tune.eval.verdicts import record

REPO_ROOT = Path(__file__).resolve().parents[2]
GENTLE, SNARKY = STYLES


def row(style: str, user: str, output: str) -> dict:
    return {"conversation": [{"system": STYLE_SYSTEMS[style], "input": user, "output": output}]}


def write_split(split_dir: Path, train: list[dict], test: list[dict] | None = None) -> Path:
    split_dir.mkdir(parents=True, exist_ok=True)
    (split_dir / "train.json").write_text(json.dumps(train, ensure_ascii=False), encoding="utf-8")
    (split_dir / "test.json").write_text(json.dumps(test or [], ensure_ascii=False), encoding="utf-8")
    return split_dir


TRAIN = [row(GENTLE, "下雨了", "记得带伞哦"), row(SNARKY, "下雨了", "天气预报白看了？"),
         row(SNARKY, "加班到十点", "老板的梦想由你守护"), row(GENTLE, "加班到十点", "辛苦啦，早点休息")]


def read_pairs(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_each_prompt_and_style_gives_a_pair_with_that_styles_system_text(tmp_path: Path,
                                                                         capsys) -> None:
    split = write_split(tmp_path / "split", TRAIN)
    assert prefs.main(["--split-dir", str(split)]) == 0
    pairs = read_pairs(split / "prefs.jsonl")
    assert len(pairs) == 4
    by_key = {(p["prompt"][0]["content"], p["prompt"][1]["content"]): p for p in pairs}
    gentle_rain = by_key[(STYLE_SYSTEMS[GENTLE], "下雨了")]
    assert gentle_rain == {
        "prompt": [{"role": "system", "content": STYLE_SYSTEMS[GENTLE]},
                   {"role": "user", "content": "下雨了"}],
        "chosen": [{"role": "assistant", "content": "记得带伞哦"}],
        "rejected": [{"role": "assistant", "content": "天气预报白看了？"}],
    }
    snarky_rain = by_key[(STYLE_SYSTEMS[SNARKY], "下雨了")]
    assert snarky_rain["chosen"][0]["content"] == "天气预报白看了？"
    assert snarky_rain["rejected"][0]["content"] == "记得带伞哦"
    assert all(prefs.pair_problem(p) is None for p in pairs)
    out = capsys.readouterr().out
    assert f"4 pairs from 2 training prompts (chosen style: {GENTLE} 2, {SNARKY} 2)" in out


def test_a_prompt_without_a_style_is_named_and_nothing_is_written(tmp_path: Path, capsys) -> None:
    split = write_split(tmp_path / "split", [*TRAIN, row(GENTLE, "只有温柔", "抱抱你")])
    assert prefs.main(["--split-dir", str(split)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"prefs: error: {split}/train.json: row 5: prompt '只有温柔' has no {SNARKY} reply: a "
                   "pair needs one reply per style; add it to the CSV (or drop the prompt), then "
                   "`make split MODE=controllable`"]
    assert not (split / "prefs.jsonl").exists()


def test_a_label_mode_split_is_refused_in_a_few_lines(tmp_path: Path, capsys) -> None:
    split = tmp_path / "label"
    # `make split MODE=label`'s command, in this process (mutation testing runs it here)
    assert split_data.main([str(REPO_ROOT / "style_data" / "style_chat_data.csv"), "--out-dir", str(split),
                            "--mode", "label"]) == 0
    capsys.readouterr()
    assert prefs.main(["--split-dir", str(split)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == prefs.MAX_ERRORS + 1 and err[-1].startswith("prefs: error: ... and ")
    assert "preference pairs need the controllable format; run `make split MODE=controllable`" in err[0]


def test_missing_or_broken_split_says_what_to_run(tmp_path: Path, capsys) -> None:
    assert prefs.main(["--split-dir", str(tmp_path / "none")]) == 2
    assert "train.json: not found; run `make split MODE=controllable` first" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "train.json").write_text("[{", encoding="utf-8")
    assert prefs.main(["--split-dir", str(tmp_path / "bad")]) == 2
    assert "cannot read it as `make split`'s JSON" in capsys.readouterr().err


def verdict_line(verdict: str, prompt: str, style: str, a: str = "A reply", b: str = "B reply") -> str:
    endpoints = {"A": {"name": "tuned"}, "B": {"name": "base"}}
    return json.dumps(record(verdict=verdict, prompt=prompt, style=style, system=STYLE_SYSTEMS[style],
                             replies={"A": a, "B": b}, endpoints=endpoints, settings={}, seed=0),
                      ensure_ascii=False)


def test_decisive_verdicts_add_pairs_ties_and_held_out_prompts_do_not(tmp_path: Path,
                                                                       capsys) -> None:
    split = write_split(tmp_path / "split", TRAIN, test=[row(GENTLE, "考试挂了", "下次会更好")])
    verdicts = tmp_path / "verdicts.jsonl"
    verdicts.write_text("\n".join([
        verdict_line("B", "新问题", SNARKY, a="平平无奇", b="犀利吐槽"),
        verdict_line("tie", "新问题", GENTLE),
        verdict_line("both bad", "另一个", GENTLE),
        verdict_line("A", "考试挂了", GENTLE),  # a test prompt: would leak the evaluation
    ]) + "\n", encoding="utf-8")
    assert prefs.main(["--split-dir", str(split), "--verdicts", str(verdicts)]) == 0
    pairs = read_pairs(split / "prefs.jsonl")
    assert len(pairs) == 5
    assert pairs[-1] == prefs.pair(STYLE_SYSTEMS[SNARKY], "新问题", "犀利吐槽", "平平无奇")
    out = capsys.readouterr().out
    assert "1 pairs from the verdicts; left out: 1 both bad, 1 held-out prompt, 1 tie" in out


def test_a_bad_verdict_line_is_named(tmp_path: Path, capsys) -> None:
    split = write_split(tmp_path / "split", TRAIN)
    verdicts = tmp_path / "verdicts.jsonl"
    lines = [verdict_line("A", "新问题", GENTLE), '{"verdict": "maybe"}']
    verdicts.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert prefs.main(["--split-dir", str(split), "--verdicts", str(verdicts)]) == 2
    err = capsys.readouterr().err
    assert f"{verdicts}: row 2: verdict 'maybe' is none of A, B, tie, both bad" in err
    assert not (split / "prefs.jsonl").exists()


@pytest.mark.parametrize(("line", "problem"), [
    ('{"prompt": [], "chosen": [], "rejected": []}',
     "\"prompt\" must be a list of messages ending with the user's"),
    ('{"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": " "}], '
     '"rejected": [{"role": "assistant", "content": "r"}]}',
     '"chosen" must be one assistant message with text'),
    ("[1, 2]", "not a JSON object"),
    ("{", "not JSON (Expecting property name enclosed in double quotes)"),
])
def test_check_pairs_file_names_the_row_and_the_problem(tmp_path: Path, line: str,
                                                        problem: str) -> None:
    good = json.dumps(prefs.pair("s", "q", "c", "r"))
    path = tmp_path / "pairs.jsonl"
    path.write_text(f"{good}\n{line}\n", encoding="utf-8")
    assert prefs.check_pairs_file(path) == [f"{path}: row 2: {problem}"]


def test_make_prefs_runs_on_the_shipped_data(tmp_path: Path) -> None:
    split = tmp_path / "controllable"
    proc = subprocess.run(["make", "split", "prefs", "MODE=controllable", f"SPLIT_DIR={split}"],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    train = json.loads((split / "train.json").read_text(encoding="utf-8"))
    prompts = {r["conversation"][0]["input"] for r in train}
    pairs = read_pairs(split / "prefs.jsonl")
    # two styles: one pair per training row (each prompt has one reply per style)
    assert len(pairs) == len(train) == 2 * len(prompts)
    assert f"prefs: {len(pairs)} pairs from {len(prompts)} training prompts" in proc.stdout
    assert prefs.check_pairs_file(split / "prefs.jsonl") == []


def test_what_prefs_says_and_writes_where(tmp_path: Path, monkeypatch, capsys) -> None:
    """The default split directory (`make split MODE=controllable`'s), real characters in the file, the
    stale temporary an interrupted run left removed and said under prefs' name, every line of the report."""
    monkeypatch.chdir(tmp_path)
    split = write_split(tmp_path / "data" / "controllable", TRAIN)
    (split / ".prefs.jsonl.4242-ab12cd34.tmp").write_text("half")
    verdicts = tmp_path / "verdicts.jsonl"
    verdicts.write_text(verdict_line("A", "新问题", GENTLE) + "\n", encoding="utf-8")
    assert prefs.main(["--verdicts", str(verdicts)]) == 0
    captured = capsys.readouterr()
    out = Path("data/controllable/prefs.jsonl")
    assert captured.out == (f"prefs: 4 pairs from 2 training prompts (chosen style: {GENTLE} 2, {SNARKY} 2)\n"
                            "prefs: 1 pairs from the verdicts; left out: none\n"
                            f"prefs: wrote {out}\n")
    assert captured.err == (f"prefs: removed what an interrupted run left beside {out}: "
                            ".prefs.jsonl.4242-ab12cd34.tmp\n")
    assert "下雨了" in out.read_text(encoding="utf-8") and sorted(p.name for p in split.iterdir()) == [
        "prefs.jsonl", "test.json", "train.json"]
    with pytest.raises(SystemExit) as info:
        prefs.main(["--split"])
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith("usage: python -m style_tune.data.prefs ")


@pytest.mark.parametrize(("rows", "problem"), [
    (["not a row"], "row 1: not a one-turn conversation with system, input and output"),
    ([{"conversation": []}], "row 1: not a one-turn conversation with system, input and output"),
    ([{"conversation": ["turn"]}], "row 1: not a one-turn conversation with system, input and output"),
    ([{"conversation": [TRAIN[0]["conversation"][0]] * 2}], "row 1: not a one-turn conversation with system, "
     "input and output"),
    ([{"conversation": [{**TRAIN[0]["conversation"][0], "output": 5}]}], "row 1: not a one-turn conversation "
     "with system, input and output"),
    ([{"conversation": [{**TRAIN[0]["conversation"][0], "system": "You are a helpful assistant who answers "
                                                                   "every question."}]}],
     "row 1: its system text is no style's ('You are a helpful assistant who answers '...): preference pairs "
     "need the controllable format; run `make split MODE=controllable`"),
])
def test_each_bad_row_of_the_split_is_named(tmp_path: Path, capsys, rows: list, problem: str) -> None:
    split = write_split(tmp_path / "split", rows)
    assert prefs.main(["--split-dir", str(split)]) == 2
    assert capsys.readouterr().err == f"prefs: error: {split}/train.json: {problem}\n"
    (split / "train.json").write_text('{"conversation": []}', encoding="utf-8")
    assert prefs.main(["--split-dir", str(split)]) == 2
    assert capsys.readouterr().err == (f"prefs: error: {split}/train.json: not a JSON array of conversation "
                                       "rows; run `make split` again\n")


def test_problems_past_ten_are_counted() -> None:
    assert str(prefs.PrefsError([f"e{n}" for n in range(10)])).splitlines()[-1] == "e9"
    assert str(prefs.PrefsError([f"e{n}" for n in range(11)])).splitlines()[-2:] == ["e9", "... and 1 more"]


def test_verdicts_give_pairs_with_the_system_text_they_were_asked_with(tmp_path: Path, capsys) -> None:
    """A's verdict: A's reply chosen; without a system text the style's; a held-out prompt's ties and "both
    bad" counted each; blank lines passed over."""
    split = write_split(tmp_path / "split", TRAIN, test=[row(GENTLE, "考试挂了", "下次会更好"), "not a row"])
    val = json.dumps([row(GENTLE, "验证集", "x")], ensure_ascii=False)
    (split / "val.json").write_text(val, encoding="utf-8")
    no_system = json.loads(verdict_line("B", "新问题", GENTLE, a="平淡", b=" 温暖 "))
    del no_system["system"]
    asked_without_style = {**json.loads(verdict_line("A", "再问", SNARKY, a="犀利", b="温和")), "style": None}
    verdicts = tmp_path / "verdicts.jsonl"
    verdicts.write_text("\n".join([
        verdict_line("A", "新问题", SNARKY, a="犀利吐槽", b="平平无奇"), "",
        verdict_line("tie", "新问题", GENTLE), verdict_line("tie", "另一个", GENTLE),
        verdict_line("A", "考试挂了", GENTLE), verdict_line("B", "验证集", GENTLE),
        json.dumps(no_system, ensure_ascii=False), json.dumps(asked_without_style, ensure_ascii=False),
    ]) + "\n", encoding="utf-8")
    assert prefs.main(["--split-dir", str(split), "--verdicts", str(verdicts)]) == 0
    assert read_pairs(split / "prefs.jsonl")[4:] == [
        prefs.pair(STYLE_SYSTEMS[SNARKY], "新问题", "犀利吐槽", "平平无奇"),
        prefs.pair(STYLE_SYSTEMS[GENTLE], "新问题", "温暖", "平淡"),
        prefs.pair(STYLE_SYSTEMS[SNARKY], "再问", "犀利", "温和"),
    ]
    assert "3 pairs from the verdicts; left out: 2 held-out prompt, 2 tie" in capsys.readouterr().out


def test_each_bad_verdict_is_named(tmp_path: Path, capsys) -> None:
    split = write_split(tmp_path / "split", TRAIN)
    label_mode = {**json.loads(verdict_line("A", "新问题", GENTLE)), "system": "You are a helpful assistant."}
    no_replies = json.loads(verdict_line("A", "新问题", GENTLE))
    del no_replies["replies"]
    verdicts = tmp_path / "verdicts.jsonl"
    verdicts.write_text("\n".join([
        '{"verdict": "maybe"}', "[1]", json.dumps(label_mode), json.dumps(no_replies),
        verdict_line("A", "新问题", GENTLE, b="  "),
    ]) + "\n", encoding="utf-8")
    assert prefs.main(["--split-dir", str(split), "--verdicts", str(verdicts)]) == 2
    no_text = 'no text for both replies ("replies": {"A": ..., "B": ...})'
    assert capsys.readouterr().err.splitlines() == [
        f"prefs: error: {verdicts}: row 1: verdict 'maybe' is none of A, B, tie, both bad",
        f"prefs: error: {verdicts}: row 2: not a JSON object",
        f"prefs: error: {verdicts}: row 3: its system text is no style's: only controllable-format verdicts "
        "make pairs (the web page with MODE=controllable)",
        f"prefs: error: {verdicts}: row 4: {no_text}",
        f"prefs: error: {verdicts}: row 5: {no_text}",
    ]
    missing = tmp_path / "missing.jsonl"
    assert prefs.main(["--split-dir", str(split), "--verdicts", str(missing)]) == 2
    assert capsys.readouterr().err == (f"prefs: error: {missing}: cannot read it: [Errno 2] No such file or "
                                       f"directory: '{missing}'\n")


def test_a_pairs_file_with_blank_lines_many_bad_rows_or_none(tmp_path: Path) -> None:
    good = json.dumps(prefs.pair("s", "q", "c", "r"))
    path = tmp_path / "pairs.jsonl"
    path.write_text(f"{good}\n\n{good}\n", encoding="utf-8")
    assert prefs.check_pairs_file(path) == []
    path.write_text("[1]\n" * 12, encoding="utf-8")
    assert prefs.check_pairs_file(path) == [f"{path}: row {n}: not a JSON object" for n in range(1, 11)]
    for text in ("", "\n \n"):
        path.write_text(text, encoding="utf-8")
        assert prefs.check_pairs_file(path) == [f"{path}: no pairs"]


def test_held_out_prompts_are_the_string_inputs_of_val_and_test(tmp_path: Path) -> None:
    (tmp_path / "val.json").write_text(json.dumps([
        {"conversation": [{"input": "问一", "output": "答"}, {"input": 5}, "not a turn"]},
        ["not a row"], {"conversation": None}]), encoding="utf-8")
    (tmp_path / "test.json").write_text(json.dumps([{"conversation": [{"input": "问二"}]}]), encoding="utf-8")
    assert prefs.held_out_prompts(tmp_path) == {"问一", "问二"}
    assert prefs.held_out_prompts(tmp_path / "missing") == set()
