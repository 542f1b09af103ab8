"""`make gen-data` without a server: the styles file, the command's errors (bad input, the judge's data,
an unreachable API, its arguments), and validation on real replies (the shipped data and hand-written
bad ones).

The live runs (retries, faults, kill and resume) are in test_gen_data_server.py; the standard-library
parts (prompts, request plan and journal, CSV output) in tests/core/test_gen_data_parts.py.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from style_tune.core.prompts import STYLE_SLUGS, STYLE_SYSTEMS, STYLES
from style_tune.core.styles import STYLES_FILE, StylesError, load_styles
from style_tune.data import generate
from style_tune.data.gen.validate import Answer, check_judge_data, load_judge, validate

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "style_data" / "style_chat_data.csv"


@pytest.fixture(scope="module")
def styles():
    return load_styles()


@pytest.fixture(scope="module")
def judge():
    return load_judge(DATA, seed=42)


# ------------------------------------------------------------------------------ the styles file

def test_the_styles_file_matches_the_prompt_definition(styles) -> None:
    assert styles.labels == STYLES
    for style in styles:
        assert style.system == STYLE_SYSTEMS[style.label] and style.slug == STYLE_SLUGS[style.label]
        assert style.examples and style.prompt and style.rules["judge"] == "other"
    assert styles.resolve("snarky") == "毒舌" and styles.resolve(" 温柔 ") == "温柔"
    with pytest.raises(StylesError, match="unknown style '傲娇'"):
        styles.resolve("傲娇")


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d["styles"][1].pop("system"), r"styles\[1\]\.system: missing"),
    (lambda d: d["styles"][0]["validation"].update(max_chars="80"),
     r"styles\[0\]\.validation\.max_chars: must be int"),
    (lambda d: d["defaults"]["validation"].update(maxchars=80),
     r"defaults\.validation: unknown field\(s\) maxchars"),
    (lambda d: d["styles"][0].update(slug="Gentle Style"),
     r"styles\[0\]\.slug: 'Gentle Style' must be lower-case"),
    (lambda d: d["styles"][1].update(label="温柔"), r"styles\[1\]: label '温柔' or slug .* earlier style"),
    (lambda d: d["styles"][0]["validation"].update(judge="maybe"), r"judge: 'maybe' is not one of"),
    (lambda d: d["styles"][0]["generation"]["examples"].append({"user": "x"}), r"examples\[3\]\.assistant"),
])
def test_a_broken_styles_file_names_file_and_field(tmp_path: Path, edit, message: str) -> None:
    data = json.loads(STYLES_FILE.read_text(encoding="utf-8"))
    edit(data)
    path = tmp_path / "styles.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(StylesError, match=f"^{re.escape(str(path))}: .*{message}"):
        load_styles(path)


def test_a_styles_file_that_is_not_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "styles.json"
    path.write_text('{\n  "styles": [,]\n}\n', encoding="utf-8")
    with pytest.raises(StylesError, match=rf"^{re.escape(str(path))}:2: column 14: not valid JSON"):
        load_styles(path)


# ------------------------------------------------------------------------------ the command

@pytest.mark.parametrize(("name", "content", "column", "expected"), [
    ("p.csv", "id,text\n1,你好\n", "user",
     r"p\.csv:1: header: no column 'user' \(found 'id', 'text'\); .*PROMPT_COLUMN="),
    ("p.csv", "user,x\n你好,1\n再见\n", "user", r"p\.csv:3: row: has 1 field\(s\), the header has 2"),
    ("p.csv", 'user\n"你好\n', "user", r"p\.csv:2: csv: malformed CSV"),
    ("p.csv", "", "user", r"p\.csv:1: header: the file is empty"),
    ("p.jsonl", '{"user": "你好"}\n{"user": 你好}\n', "user", r"p\.jsonl:2: json: not a JSON object"),
    ("p.jsonl", '{"user": "你好"}\n{"text": "再见"}\n', "user",
     r"p\.jsonl:2: user: missing; .*PROMPT_COLUMN="),
    ("p.jsonl", '["你好"]\n', "user", r"p\.jsonl:1: json: a list, not a JSON object"),
    ("p.txt", "你好\n".encode("gbk").decode("latin-1"), "user", r"p\.txt:1: undecodable bytes 0xc4 0xe3"),
    ("missing.txt", None, "user", r"missing\.txt: no such file"),
])
def test_bad_input_gets_one_line_per_problem_naming_file_row_and_column(
        tmp_path: Path, capsys: pytest.CaptureFixture, name: str, content: str | None, column: str,
        expected: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content.encode("latin-1") if name == "p.txt" else content.encode())
    code = generate.main([str(path), "--out", str(tmp_path / "out.csv"), "--column", column,
                          "--api-base", "http://127.0.0.1:9/v1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == generate.EXIT_BAD_INPUT
    assert len(err) == 1 and re.match(rf"^gen-data: {re.escape(str(tmp_path))}/{expected}", err[0]), err
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize(("content", "expected"), [
    (None, r"judge\.csv: no such file \(--judge-data: the CSV the style judge learns from\)$"),
    ("user,style,assistant\n你好,温柔,你好呀\n",
     r"judge\.csv: the style judge needs a user,style,assistant CSV with replies of every style "
     r"\(温柔, 毒舌; none of 毒舌\): give one with GEN_ARGS="),
    ("user,style,assistant\n你好,温柔,\n再见,毒舌,走好\n", r"judge\.csv: .*; none of -\)"),  # an empty reply
])
def test_the_judges_data_is_checked_before_anything_is_asked(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                             content: str | None, expected: str) -> None:
    prompts, judge_data = tmp_path / "p.txt", tmp_path / "judge.csv"
    prompts.write_text("你好呀\n", encoding="utf-8")
    if content is not None:
        judge_data.write_text(content, encoding="utf-8")
    code = generate.main([str(prompts), "--out", str(tmp_path / "out.csv"), "--judge-data", str(judge_data),
                          "--api-base", "http://127.0.0.1:9/v1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == generate.EXIT_BAD_INPUT
    assert len(err) == 1 and re.match(rf"^gen-data: {re.escape(str(tmp_path))}/{expected}", err[0]), err
    unjudged = load_styles()  # styles the judge does not read need no judge data
    for style in unjudged:
        style.rules["judge"] = "off"
    check_judge_data(judge_data, unjudged, unjudged.labels)


def test_an_unreachable_api_is_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("你好呀\n", encoding="utf-8")
    code = generate.main([str(prompts), "--out", str(tmp_path / "out.csv"),
                          "--api-base", "http://127.0.0.1:9/v1", "--max-retries", "0", "--timeout", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == generate.EXIT_API
    assert err[-1].startswith("gen-data: error: cannot reach http://127.0.0.1:9/v1/")
    assert "make serve" in err[-1]


def test_make_gen_data_passes_its_variables_to_the_step() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    command = ["make", "-s", "-n", "gen-data", "PROMPTS=p.jsonl", "OUT=x/out.csv", "API_BASE=http://h:1/v1",
               "GEN_MODEL=qwen", "STYLES=gentle", "SAMPLES=3", "CONCURRENCY=5", "PROMPT_COLUMN=text",
               "GEN_ARGS=--timeout 9"]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    lines = proc.stdout.replace("\\\n", " ").splitlines()
    line = next(line for line in lines if "style_tune.data.generate" in line)
    assert line.split(".envs/eval/bin/python -m style_tune.data.generate ", 1)[1].split() == [
        "'p.jsonl'", "--out", "'x/out.csv'", "--api-base", "'http://h:1/v1'", "--model", "'qwen'", "--styles",
        "'gentle'", "--samples", "'3'", "--concurrency", "'5'", "--column", "'text'", "--seed", "'42'",
        "--timeout", "9"]


def test_no_prompts_file_is_one_line(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stop:  # what `make gen-data` without PROMPTS= runs
        generate.main(["", "--out", "data/generated.csv"])
    assert stop.value.code == generate.EXIT_BAD_INPUT
    assert capsys.readouterr().err == ("gen-data: give PROMPTS=FILE (one prompt a line, or .csv/.jsonl "
                                       "with the prompt in column PROMPT_COLUMN=)\n")


def test_the_output_path_must_be_a_csv(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        generate.parse_args([str(tmp_path / "p.txt"), "--out", str(tmp_path / "out.json")])


# ------------------------------------------------------------------------------ validation

GENTLE = "考砸了也没关系呀，一次考试说明不了什么，先好好睡一觉，明天再一起看看错题吧🌷"
SNARKY = "考成这样还敢回家？建议先把试卷折成纸飞机，飞得越远，挨骂的时间来得越晚。"
USER = "这次考试又没考好"


def test_the_shipped_replies_pass_their_styles_rules_the_judge_and_the_duplicate_check(styles, judge) -> None:
    """Calibration: every reference reply passes, except the few-shot examples themselves (copies)."""
    with DATA.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    answers = [Answer(row["user"], row["style"], row["assistant"]) for row in rows]
    reasons = validate(answers, styles, lambda: judge)
    rejected = [(a.reply, why) for a, why in zip(answers, reasons, strict=True) if why]
    examples = {reply for style in styles for _, reply in style.examples}
    assert {reply for reply, _ in rejected} == examples
    assert all(why[0].startswith("copies a few-shot example") for _, why in rejected)


BAD = [
    ("温柔", "", "stop", "empty"),
    ("温柔", "作为一个AI，我没有情绪，但能理解你，建议好好休息一下。", "stop",
     "refusal or boilerplate: 作为一个AI"),
    ("毒舌", "抱歉，我无法回答这个问题，我们换个话题聊聊吧。", "stop",
     "refusal or boilerplate: 抱歉，我无法"),
    ("温柔", "温柔：考砸了也没关系呀，先好好睡一觉，明天再看看错题吧。", "stop", "style label leaks: 温柔"),
    ("毒舌", "【毒舌】考成这样还敢回家？建议先把试卷折成纸飞机吧。", "stop", "style label leaks: 毒舌"),
    ("温柔", "用温柔风格回复：没关系呀，下次一定可以的，先休息一下吧。", "stop", "style label leaks: 温柔"),
    ("温柔", "请用“温柔”的风格回一句：语气温暖体贴，先接住对方的情绪吧。", "stop", "prompt leaks"),
    ("温柔", "It is fine, one exam says nothing about you, get some sleep.", "stop", "not mostly Chinese"),
    ("温柔", "你这个废物，考成这样还好意思哭，赶紧去复习吧你。", "stop", "forbidden phrase: 废物"),
    ("温柔", "考砸了也没关系呀，一次考试说明不了什么，先好好睡", "length", "cut off"),
    ("温柔", "没关系呀" * 30, "stop", "too long: 120 > 90"),
    ("毒舌", "就这？", "stop", "too short: 3 < 8"),
    ("温柔", "辛苦了辛苦了辛苦了辛苦了辛苦了辛苦了辛苦了", "stop", "sanity: repetitive"),
    ("毒舌", "这次考试又没考好，这次考试又没考好", "stop", "sanity: echo"),
    ("毒舌", GENTLE, "stop", "judge: reads as 温柔 (p="),
    ("温柔", SNARKY, "stop", "judge: reads as 毒舌 (p="),
]


@pytest.mark.parametrize(("style", "reply", "finish", "reason"), BAD, ids=[b[3].split(":")[0] + f"-{i}"
                                                                            for i, b in enumerate(BAD)])
def test_a_bad_reply_is_rejected_with_its_reason(styles, judge, style: str, reply: str, finish: str,
                                                  reason: str) -> None:
    good = [Answer(USER, "温柔", GENTLE), Answer(USER, "毒舌", SNARKY)]
    reasons = validate([*good, Answer(USER, style, reply, finish)], styles, lambda: judge)
    assert reasons[:2] == [[], []], "the good replies must pass"
    assert any(why.startswith(reason) for why in reasons[2]), reasons[2]


def test_near_duplicates_keep_the_first_and_say_of_what(styles, judge) -> None:
    copy = GENTLE.replace("，", " ").replace("🌷", "") + "！"
    other = "考砸了就当踩了个坑，爬出来拍拍灰，下次绕开它走，你一定可以的呀。"
    reasons = validate([Answer(USER, "温柔", GENTLE), Answer("考试考砸了", "温柔", copy),
                        Answer(USER, "温柔", other)], styles, lambda: judge)
    assert reasons[0] == [] and reasons[2] == []
    expected = r"near-duplicate: 0\.[5-9]\d similar to the 温柔 reply to '这次考试又没考好'"
    assert len(reasons[1]) == 1 and re.match(expected, reasons[1][0]), reasons[1]


def test_a_strict_judge_also_rejects_text_in_neither_style(styles, judge) -> None:
    neutral = "考试成绩出来以后，可以先整理错题，按知识点分类，再制定每周的复习计划。"
    lenient = validate([Answer(USER, "温柔", neutral)], styles, lambda: judge)
    strict_styles = load_styles()
    strict_styles["温柔"].rules["judge"] = "strict"
    strict = validate([Answer(USER, "温柔", neutral)], strict_styles, lambda: judge)
    assert lenient == [[]]
    assert len(strict[0]) == 1 and strict[0][0].startswith("judge: neither style (p=")
