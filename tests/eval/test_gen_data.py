"""`make gen-data` without a server: the styles file, input cleaning and its errors, the journal, the
request plan, and validation on real replies (the shipped data and hand-written bad ones).

The live runs (retries, faults, kill and resume) are in test_gen_data_server.py.
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
from style_tune.data.generate import Answer, Journal, clean_prompts, plan_requests, read_prompts, validate

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "style_data" / "style_chat_data.csv"


@pytest.fixture(scope="module")
def styles():
    return load_styles()


@pytest.fixture(scope="module")
def judge():
    return generate.load_judge(DATA, seed=42)


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


# ------------------------------------------------------------------------------ input prompts

def test_prompts_are_cleaned_and_every_drop_is_counted() -> None:
    items = list(enumerate([
        "  今天  好累啊  ",                       # whitespace collapsed
        "今天 好累啊",                            # a repeat after cleaning
        "ＡＢＣ考了１００分！",                      # NFKC: full-width ASCII; Chinese punctuation kept
        "ABC考了100分!",                          # a repeat by the split tool's normalisation (NFKC)
        "看这个 https://example.com/a?b=1 笑死",  # URL removed
        "@bob_99 你说得对",                        # ASCII handle removed
        "老板在群里@所有人，邮件发给 a@b.com",       # a CJK mention and an e-mail address are kept
        "https://t.co/x",                         # nothing left
        "嗯",                                     # too short
        "长" * 201,                               # too long
    ], start=1))
    prompts = clean_prompts(items, {"min_chars": 2, "max_chars": 200})
    assert prompts.kept == ["今天 好累啊", "ABC考了100分！", "看这个 笑死", "你说得对",
                            "老板在群里@所有人，邮件发给 a@b.com"]
    assert prompts.read == 10 and prompts.stripped == 3
    assert prompts.dropped == {"duplicates": 2, "empty after cleaning": 1, "shorter than 2 characters": 1,
                               "longer than 200 characters": 1}
    assert "10 prompts read, 5 kept (3 had URLs or @handles removed); dropped 5" in prompts.summary(Path("p"))


def test_prompts_come_from_lines_a_csv_column_or_a_jsonl_field(tmp_path: Path) -> None:
    lines = tmp_path / "p.txt"
    lines.write_text("\ufeff第一句\r\n\r\n第二句\n", encoding="utf-8")
    assert read_prompts(lines, "user") == [(1, "第一句"), (3, "第二句")]
    table = tmp_path / "p.csv"
    table.write_text('id,text\n1,"第一句，带逗号"\n2,"第二\n行"\n3,\n', encoding="utf-8")
    assert read_prompts(table, "text") == [(2, "第一句，带逗号"), (3, "第二\n行")]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"q": "第一句"}\n\n{"q": "第二句", "x": 1}\n', encoding="utf-8")
    assert read_prompts(jsonl, "q") == [(1, "第一句"), (3, "第二句")]


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


def test_an_unreachable_api_is_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("你好呀\n", encoding="utf-8")
    code = generate.main([str(prompts), "--out", str(tmp_path / "out.csv"),
                          "--api-base", "http://127.0.0.1:9/v1", "--max-retries", "0", "--timeout", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == generate.EXIT_API
    assert err[-1].startswith("gen-data: error: cannot reach http://127.0.0.1:9/v1/")
    assert "make serve" in err[-1]


# ------------------------------------------------------------------------------ requests and journal

def test_requests_carry_the_style_prompt_and_a_key_for_everything_the_answer_depends_on(styles) -> None:
    requests = plan_requests(["今天好累"], styles, ["温柔", "毒舌"], 2, "m", 42)
    assert [(r.style, r.sample, r.index) for r in requests] == [
        ("温柔", 0, 0), ("温柔", 1, 1), ("毒舌", 0, 2), ("毒舌", 1, 3)]
    gentle = requests[0].body
    assert gentle["messages"][0] == {"role": "system", "content": styles["温柔"].prompt}
    assert gentle["messages"][-1] == {"role": "user", "content": "今天好累"}
    assert len(gentle["messages"]) == 2 + 2 * len(styles["温柔"].examples)
    assert gentle["temperature"] == 0.9 and gentle["max_tokens"] == 160
    assert len({r.key for r in requests}) == len({r.body["seed"] for r in requests}) == 4
    again = plan_requests(["今天好累"], styles, ["温柔", "毒舌"], 2, "m", 42)
    assert [r.key for r in again] == [r.key for r in requests]
    for changed in (plan_requests(["今天好累"], styles, ["温柔"], 1, "other-model", 42),
                    plan_requests(["今天好累"], styles, ["温柔"], 1, "m", 7)):
        assert changed[0].key != requests[0].key


def test_the_journal_drops_a_line_cut_short_and_is_locked(tmp_path: Path) -> None:
    path = tmp_path / "out.journal.jsonl"
    path.write_bytes(b'{"key": "a", "reply": "1"}\n{"key": "b", "reply": "2"}\n{"key": "c", "re')
    journal = Journal(path)
    assert set(journal.open()) == {"a", "b"} and journal.dropped_partial
    with pytest.raises(generate.InputError, match="another gen-data run is writing this journal"):
        Journal(path).open()
    journal.append({"key": "c", "reply": "3"})
    journal.close()
    again = Journal(path)
    assert set(again.open()) == {"a", "b", "c"} and not again.dropped_partial
    again.close()


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
    assert generate.side_path(Path("d/gen.csv"), ".rejected.csv") == Path("d/gen.rejected.csv")


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
