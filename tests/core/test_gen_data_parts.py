"""`make gen-data`'s standard-library parts (style_tune/data/gen/): the prompts file read and cleaned, the
request plan and its journal, the CSV output. The command, the client and validation (which need the
eval env: openai, the style judge) are tested in tests/eval/test_gen_data*.py.
"""

from __future__ import annotations

import csv
import os
import stat
from pathlib import Path

import pytest

from style_tune.core.styles import Style, StyleSet, load_styles
from style_tune.data.gen import InputError
from style_tune.data.gen.journal import Journal, plan_requests, read_journal
from style_tune.data.gen.output import REJECTED_COLUMNS, remove_stale, side_path, write_outputs
from style_tune.data.gen.prompts import clean_prompts, read_prompts
from style_tune.data.gen.validate import Answer


@pytest.fixture(scope="module")
def styles():
    return load_styles()


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
    with pytest.raises(InputError, match="another gen-data run is writing this journal"):
        Journal(path).open()
    journal.append({"key": "c", "reply": "3"})
    journal.close()
    again = Journal(path)
    assert set(again.open()) == {"a", "b", "c"} and not again.dropped_partial
    again.close()


def test_read_journal_takes_the_last_answer_per_key_and_skips_unreadable_lines(tmp_path: Path) -> None:
    path = tmp_path / "out.journal.jsonl"
    path.write_bytes(b'{"key": "a", "reply": "1"}\nnot json\n{"reply": "no key"}\n[1]\n\n'
                     b'{"key": "a", "reply": "2"}\n{"key": "b", "reply": "3"}\n')
    assert read_journal(path) == {"a": {"key": "a", "reply": "2"}, "b": {"key": "b", "reply": "3"}}
    journal = Journal(path)
    assert journal.open() == read_journal(path)
    assert journal.unreadable == 4 and not journal.dropped_partial  # the blank line counts too
    journal.close()


# ------------------------------------------------------------------------------ output

def read_rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


def test_the_outputs_are_the_accepted_and_the_rejected_rows_in_order(tmp_path: Path) -> None:
    out = tmp_path / "gen.csv"
    rejected = side_path(out, ".rejected.csv")
    answers = [Answer("你好", "温柔", " 你好呀，\n今天怎么样？ "), Answer("再见", "毒舌", "走好不送"),
               Answer("在吗", "温柔", "在的，\"怎么了\"？", "length")]
    reasons = [[], ["too short: 4 < 8 characters", "no marker: none of 哼"], []]
    assert write_outputs(out, rejected, answers, reasons) == (2, 1)
    assert read_rows(out) == [["user", "style", "assistant"], ["你好", "温柔", "你好呀，\n今天怎么样？"],
                              ["在吗", "温柔", "在的，\"怎么了\"？"]]
    assert read_rows(rejected) == [list(REJECTED_COLUMNS), [
        "再见", "毒舌", "走好不送", "too short: 4 < 8 characters; no marker: none of 哼"]]
    assert out.read_bytes().endswith(b"\n") and b"\r" not in out.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen.csv", "gen.rejected.csv"]

    assert write_outputs(out, rejected, [], []) == (0, 0)  # nothing answered: the headers alone
    assert read_rows(out) == [["user", "style", "assistant"]]
    assert read_rows(rejected) == [list(REJECTED_COLUMNS)]


def test_a_rerun_removes_the_earlier_outputs_and_what_an_interrupted_write_left(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out, rejected = tmp_path / "gen.csv", tmp_path / "gen.rejected.csv"
    for path in (out, rejected, tmp_path / ".gen.rejected.csv.0123abcd.tmp", tmp_path / "other.csv"):
        path.write_text("x\n", encoding="utf-8")
    remove_stale(out, rejected)
    assert [p.name for p in tmp_path.iterdir()] == ["other.csv"]
    assert "gen-data: removed what an interrupted run left" in capsys.readouterr().err
    remove_stale(out, rejected)  # nothing there: nothing to say
    assert capsys.readouterr().err == ""


def test_the_side_files_are_named_after_out() -> None:
    assert side_path(Path("d/gen.csv"), ".rejected.csv") == Path("d/gen.rejected.csv")
    assert side_path(Path("d/my.data.CSV"), ".journal.jsonl") == Path("d/my.data.journal.jsonl")


# ------------------------------------------------------------------------------ each message in full

@pytest.mark.parametrize(("name", "content", "column", "problem"), [
    ("p.csv", "user,user\n你好,嗨\n", "user", "1: header: more than one column 'user' (found 'user', "
                                             "'user'); name the prompt column with PROMPT_COLUMN= "
                                             "(--column)"),
    ("p.jsonl", '{"user": 5}\n', "user", "1: user: not a string (int); name the prompt field with "
                                         "PROMPT_COLUMN= (--column)"),
    ("p.csv", b"user\n\xff\xfe\xfd\xfc\xfb\n", "user", "2: user: undecodable bytes 0xff 0xfe 0xfd 0xfc "
                                                    "(the file must be UTF-8; convert it, e.g. iconv -f GBK "
                                                    "-t UTF-8)"),  # the first four shown
    ("p.JSONL", b'{"q": "\xc4\xe3"}\n', "q", "1: q: undecodable bytes 0xc4 0xe3 (the file must be UTF-8; "
                                           "convert it, e.g. iconv -f GBK -t UTF-8)"),
    ("p.ndjson", b'{"q": "\xc4\xe3"}\n', "q", "1: q: undecodable bytes 0xc4 0xe3 (the file must be UTF-8; "
                                            "convert it, e.g. iconv -f GBK -t UTF-8)"),
    ("p.txt", "\n \n", "user", " no prompts in the file"),
])
def test_each_problem_of_a_prompts_file_is_said_in_full(tmp_path: Path, name: str, content: str | bytes,
                                                       column: str, problem: str) -> None:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(InputError) as info:
        read_prompts(path, column)
    assert info.value.problems == [f"{path}:{problem}"]


def test_odd_prompts_files(tmp_path: Path) -> None:
    """Lone CR line ends; a JSON-lines file by the .ndjson name; a directory is no file."""
    lines = tmp_path / "p.txt"
    lines.write_bytes("第一句\r第二句\n".encode())
    assert read_prompts(lines, "user") == [(1, "第一句"), (2, "第二句")]
    ndjson = tmp_path / "p.ndjson"
    ndjson.write_text('{"q": "第一句"}\n', encoding="utf-8")
    assert read_prompts(ndjson, "q") == [(1, "第一句")]
    with pytest.raises(InputError) as info:
        read_prompts(tmp_path, "q")
    assert info.value.problems == [f"{tmp_path}: cannot read: Is a directory"]


def test_prompt_bounds_are_inclusive_and_every_drop_counted() -> None:
    items = list(enumerate(["", " ", "嗯嗯", "嗯", "啊", "长长长", "长长长长", "长长长长"], start=1))
    prompts = clean_prompts(items, {"min_chars": 2, "max_chars": 3})
    assert prompts.kept == ["嗯嗯", "长长长"]
    assert prompts.dropped == {"empty after cleaning": 2, "shorter than 2 characters": 2,
                               "longer than 3 characters": 2}
    assert prompts.summary(Path("p")) == ("gen-data: p: 8 prompts read, 2 kept (0 had URLs or @handles "
                                          "removed); dropped 6: 2 empty after cleaning, 2 shorter than 2 "
                                          "characters, 2 longer than 3 characters")
    whole = clean_prompts([(1, "好的")], {})
    assert whole.summary(Path("p")) == "gen-data: p: 1 prompts read, 1 kept (0 had URLs or @handles removed)"


def test_a_request_is_the_style_prompt_its_examples_and_the_prompt_and_its_key_is_pinned() -> None:
    """The key (and the seed drawn from it) is what a resumed run finds its answers by: a change to how it
    is made would ask every journal's requests afresh."""
    style = Style("温柔", "gentle", "sys", "温柔地回答", (("例子", "回复"),),
                  {"temperature": 0.9, "top_p": None}, {})
    styles = StyleSet(Path("s.json"), {"温柔": style}, {})
    [request] = plan_requests(["今天好累"], styles, ["温柔"], 1, "m", 42)
    assert request.user == "今天好累" and request.body == {
        "model": "m", "temperature": 0.9, "seed": 1115230573,
        "messages": [{"role": "system", "content": "温柔地回答"}, {"role": "user", "content": "例子"},
                     {"role": "assistant", "content": "回复"}, {"role": "user", "content": "今天好累"}]}
    assert request.key == "00ef39834caf1ba366759b112d967c5504fc693c791d7f720e339f7ea806fb91"


def test_a_journal_is_made_where_asked_readable_and_holds_real_characters(tmp_path: Path) -> None:
    unopened = Journal(tmp_path / "j.jsonl")
    assert unopened.fd is None and unopened.dropped_partial is False
    unopened.close()  # nothing to close
    path = tmp_path / "new" / "dir" / "out.journal.jsonl"
    journal = Journal(path)
    assert journal.open() == {}
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    other = Journal(path)
    with pytest.raises(InputError) as info:
        other.open()
    assert info.value.problems == [f"{path}: another gen-data run is writing this journal (same OUT); wait "
                                   "for it or use another OUT"]
    assert other.fd is None
    journal.append({"key": "a", "reply": "你好"})
    journal.close()
    assert journal.fd is None and path.read_bytes() == '{"key": "a", "reply": "你好"}\n'.encode()
