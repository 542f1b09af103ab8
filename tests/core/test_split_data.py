"""Tests for style_tune/data/split.py: CSV -> XTuner conversation JSON, split by prompt group."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import json
import os
import random
import subprocess
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import pytest

from style_tune.core.io import write_files_atomically
from style_tune.core.prompts import STYLES, output_text, system_text
from style_tune.data import csv_input, grouping, options, split_stats, xtuner_json

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOL = ("-m", "style_tune.data.split")


SPLITS = ("train", "val", "test")
HEADER = ("user", "style", "assistant")
GENTLE, SHARP = STYLES


# Imported by its module name: mutation testing
# (`make mutation`) tells mutants apart by that module name.
split_data = importlib.import_module("style_tune.data.split")


# ---------------------------------------------------------------------------------------------
# Helpers


def csv_text(rows: Iterable[Sequence[str]], header: Sequence[str] = HEADER, newline: str = "\n") -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=newline)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def write_csv(path: Path, rows: Iterable[Sequence[str]], header: Sequence[str] = HEADER, *,
              encoding: str = "utf-8", newline: str = "\n") -> Path:
    path.write_bytes(csv_text(rows, header, newline).encode(encoding))
    return path


def dataset(n_prompts: int, styles: Sequence[str] = STYLES) -> list[tuple[str, str, str]]:
    """``n_prompts`` distinct prompts, one reply per style."""
    return [
        (f"问题{index}：今天过得怎么样？", style, f"{style}的回复{index}，说得很有道理。")
        for index in range(n_prompts)
        for style in styles
    ]


def run_tool(csv_path: Path, out_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The tool's ``main`` in this process, as its command line runs it: exit status, stdout, stderr.

    In-process, so that it is fast and mutation testing sees which code each test runs;
    :func:`run_cli` runs the real command line in a subprocess.
    """
    argv = [csv_path.name, "--out-dir", str(out_dir), *args]  # run in the CSV's folder
    stdout, stderr = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(csv_path.parent)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = split_data.main(argv)
            except SystemExit as exit_:  # argparse's usage errors
                code = exit_.code
    finally:
        os.chdir(cwd)
    return subprocess.CompletedProcess(argv, code, stdout.getvalue(), stderr.getvalue())


def run_cli(csv_path: Path, out_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    return subprocess.run(
        [sys.executable, *TOOL, str(csv_path), "--out-dir", str(out_dir), *args],
        capture_output=True, text=True, encoding="utf-8", env=env, cwd=cwd,
    )


def run_ok(csv_path: Path, out_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = run_tool(csv_path, out_dir, *args)
    assert result.returncode == 0, result.stderr
    return result


def read_split(out_dir: Path, name: str) -> list[dict]:
    return json.loads((out_dir / f"{name}.json").read_text(encoding="utf-8"))


def read_all(out_dir: Path) -> dict[str, list[dict]]:
    return {name: read_split(out_dir, name) for name in SPLITS}


def turn(row: dict) -> dict[str, str]:
    assert list(row) == ["conversation"] and len(row["conversation"]) == 1
    return row["conversation"][0]


def reference_key(text: str) -> str:
    """The grouping rule, written independently of the tool."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def seed_mode_style(row: dict) -> str:
    return turn(row)["output"].split("\n", 1)[0]


def assert_same_files(first: Path, second: Path) -> None:
    for name in SPLITS:
        assert (first / f"{name}.json").read_bytes() == (second / f"{name}.json").read_bytes(), name


def assert_nothing_written(out_dir: Path) -> None:
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Row format


@pytest.mark.parametrize("mode", ["label", "controllable"])
def test_row_format(tmp_path: Path, mode: str) -> None:
    rows = dataset(30)
    out = tmp_path / "out"
    run_ok(write_csv(tmp_path / "data.csv", rows), out, "--mode", mode)
    written = [row for split in read_all(out).values() for row in split]
    expected = [
        {"conversation": [{"system": system_text(mode, style), "input": user,
                           "output": output_text(mode, style, reply)}]}
        for user, style, reply in rows
    ]
    key = lambda row: json.dumps(row, ensure_ascii=False, sort_keys=True)  # noqa: E731
    assert sorted(map(key, written)) == sorted(map(key, expected))
    for row in written:
        assert list(turn(row)) == ["system", "input", "output"]


def test_output_is_indented_json_with_real_characters(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_ok(write_csv(tmp_path / "data.csv", dataset(20)), out)
    for name in SPLITS:
        text = (out / f"{name}.json").read_text(encoding="utf-8")
        assert text == json.dumps(json.loads(text), ensure_ascii=False, indent=2) + "\n"
        assert "\\u" not in text and "问题" in text


def test_to_json_matches_json_dumps_on_awkward_text() -> None:
    rows = [
        ('引号 " 和反斜杠 \\ 和制表\t', GENTLE, "换行\n回车\r控制\x01 emoji 😀 分隔\u2028符"),
        ("plain", SHARP, "</script> & 'single'"),
    ]
    for mode in ("label", "controllable"):
        objects = [xtuner_json.conversation_row(row, mode) for row in rows]
        expected = json.dumps(objects, ensure_ascii=False, indent=2)
        assert xtuner_json.to_json(rows, mode) == expected + "\n"
        assert "".join(xtuner_json.json_chunks(rows, mode, batch_size=1)) == expected + "\n"
    assert xtuner_json.to_json([], "label") == "[]\n"


# ---------------------------------------------------------------------------------------------
# Determinism, ratios, grouping


def test_same_seed_gives_same_bytes(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "data.csv", dataset(200))
    run_ok(data, tmp_path / "a", "--seed", "7")
    run_ok(data, tmp_path / "b", "--seed", "7")
    assert_same_files(tmp_path / "a", tmp_path / "b")


def test_shuffled_input_gives_same_bytes(tmp_path: Path) -> None:
    rows = dataset(200)
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    assert shuffled != rows
    run_ok(write_csv(tmp_path / "a.csv", rows), tmp_path / "a")
    run_ok(write_csv(tmp_path / "b.csv", shuffled), tmp_path / "b")
    assert_same_files(tmp_path / "a", tmp_path / "b")


def test_seed_changes_the_split(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "data.csv", dataset(200))
    run_ok(data, tmp_path / "a", "--seed", "1")
    run_ok(data, tmp_path / "b", "--seed", "2")
    assert read_split(tmp_path / "a", "test") != read_split(tmp_path / "b", "test")


@pytest.mark.parametrize("n_prompts", [10, 37, 101, 1000])
@pytest.mark.parametrize("ratios", ["0.8,0.1,0.1", "0.7,0.2,0.1", "0.34,0.33,0.33"])
def test_split_sizes_within_one_group_of_target(tmp_path: Path, n_prompts: int, ratios: str) -> None:
    out = tmp_path / "out"
    run_ok(write_csv(tmp_path / "data.csv", dataset(n_prompts)), out, "--ratios", ratios)
    splits = read_all(out)
    for name, ratio in zip(SPLITS, ratios.split(","), strict=True):
        groups = {reference_key(turn(row)["input"]) for row in splits[name]}
        assert groups, name
        assert abs(len(groups) - n_prompts * float(ratio)) <= 1, (name, len(groups))
    assert sum(len(rows) for rows in splits.values()) == 2 * n_prompts


def test_split_sizes_function() -> None:
    for ratios in ((Fraction(8, 10), Fraction(1, 10), Fraction(1, 10)), (Fraction(1, 3),) * 3):
        for n_groups in range(0, 300):
            sizes = grouping.split_sizes(n_groups, ratios)
            assert sum(sizes) == n_groups
            assert all(abs(size - n_groups * ratio) <= 1 for size, ratio in zip(sizes, ratios, strict=True))


def test_prompt_variants_stay_in_one_split(tmp_path: Path) -> None:
    rows = []
    for index in range(60):
        same_as_ascii_comma = [f"你好，世界{index}", f"你好,世界{index}", f" 你好,世界{index}\u3000"]
        same_as_comma_space = [f"你好, 世界{index}", f"你好,\u3000世界{index}", f"你好,  \n世界{index}"]
        variants = same_as_ascii_comma + same_as_comma_space
        rows += [(variant, STYLES[k % 2], f"回复{index}-{k}") for k, variant in enumerate(variants)]
    rows += [(f"ＡＢＣ{index}", GENTLE, "全角") for index in range(30)]
    rows += [(f"ABC{index}", SHARP, "半角") for index in range(30)]
    out = tmp_path / "out"
    run_ok(write_csv(tmp_path / "data.csv", rows), out)
    split_of: dict[str, str] = {}
    for name, split in read_all(out).items():
        for row in split:
            key = reference_key(turn(row)["input"])
            assert split_of.setdefault(key, name) == name, f"{key!r} is in {split_of[key]} and {name}"
    assert len(split_of) == 2 * 60 + 30
    assert sum(len(split) for split in read_all(out).values()) == len(rows)


def test_normalise_prompt_agrees_with_plain_nfkc() -> None:
    samples = [chr(code) for code in range(0xFF01, 0xFF5F)] + [
        "，\u0301", "Ａ\u0301", "（\u0308a）", "\u3000 x \u3000", "ｶﾞ", "①②", "ﬁ", "하\u11a8",
        "，，？！：；（）～", "a  b\tc", " 下雨了\u3000记得\n带伞 ",  # inner whitespace: one space
    ]
    expected = [reference_key(sample) for sample in samples]
    assert [grouping.normalise_prompt(sample) for sample in samples] == expected
    assert grouping.normalise_prompts(samples) == expected
    with_separator = ["a\x00（b）", "（ｃ）"]  # the bulk pass joins texts with NUL: falls back
    assert grouping.normalise_prompts(with_separator) == [reference_key(text) for text in with_separator]


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_both_styles_in_every_split(tmp_path: Path, seed: int) -> None:
    # Real-sized data where each prompt has only one style: styles still reach every split.
    rows = [(f"第{index}个问题", STYLES[index % 2], f"回复{index}") for index in range(400)]
    out = tmp_path / "out"
    result = run_ok(write_csv(tmp_path / "data.csv", rows), out, "--seed", str(seed))
    for name, split in read_all(out).items():
        assert {seed_mode_style(row) for row in split} == set(STYLES), name
    assert "warning" not in result.stderr


def test_exact_duplicates_dropped_and_counted(tmp_path: Path) -> None:
    rows = dataset(20)
    rows += [rows[0], rows[1], (f"  {rows[2][0]} ", rows[2][1], f"{rows[2][2]}  ")]
    out = tmp_path / "out"
    result = run_ok(write_csv(tmp_path / "data.csv", rows), out)
    assert sum(len(split) for split in read_all(out).values()) == 40
    assert "input rows: 43; exact duplicate rows dropped: 3" in result.stdout


def test_stats_table_and_markdown(tmp_path: Path) -> None:
    rows = dataset(50)
    out = tmp_path / "out"
    card = tmp_path / "card" / "splits.md"  # its folder is created, like --out-dir
    result = run_ok(write_csv(tmp_path / "data.csv", rows), out, "--stats-md", str(card))
    markdown = card.read_text(encoding="utf-8")
    splits = read_all(out)
    for name in SPLITS:
        n_rows = len(splits[name])
        line = next(line for line in result.stdout.splitlines() if line.startswith(name))
        assert line.split()[:5] == [name, str(n_rows), str(n_rows // 2), str(n_rows // 2), str(n_rows // 2)]
        assert f"| {name} | {n_rows} | {n_rows // 2} | {n_rows // 2} | {n_rows // 2} |" in markdown
    lengths = sorted(len(reply) for _, _, reply in rows)
    assert f"| reply | {lengths[0]} | {lengths[len(lengths) // 2 - 1]} |" in markdown
    assert f"reply length (characters): min {lengths[0]}," in result.stdout
    assert "Input rows: 100. Exact duplicate rows dropped: 0." in markdown


def test_length_summary_nearest_rank() -> None:
    from collections import Counter

    assert split_stats.length_summary(Counter(range(1, 11))) == (1, 5, 9, 10)
    assert split_stats.length_summary(Counter([7])) == (7, 7, 7, 7)


# ---------------------------------------------------------------------------------------------
# Input formats


def test_utf8_bom(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_ok(write_csv(tmp_path / "data.csv", dataset(20), encoding="utf-8-sig"), out)
    assert len(read_split(out, "train")) == 32
    assert not any(turn(row)["input"].startswith("\ufeff") for row in read_split(out, "train"))


def test_gbk(tmp_path: Path) -> None:
    rows = dataset(20)
    data = write_csv(tmp_path / "data.csv", rows, encoding="gbk")
    out = tmp_path / "out"
    run_ok(data, out, "--encoding", "gbk")
    inputs = {turn(row)["input"] for split in read_all(out).values() for row in split}
    assert inputs == {user for user, _, _ in rows}


def test_quoted_commas_quotes_and_newlines(tmp_path: Path) -> None:
    rows = dataset(20)
    rows[0] = ('他说："你好，世界", 然后走了', GENTLE, '第一行\n第二行, 带逗号\n"引号"')
    out = tmp_path / "out"
    run_ok(write_csv(tmp_path / "data.csv", rows), out)
    turns = [turn(row) for split in read_all(out).values() for row in split]
    match = [t for t in turns if t["input"] == rows[0][0]]
    assert len(match) == 1 and match[0]["output"] == output_text("label", GENTLE, rows[0][2])


def test_crlf(tmp_path: Path) -> None:
    rows = dataset(20)
    rows[0] = (rows[0][0], rows[0][1], "第一行\r\n第二行")
    out = tmp_path / "out"
    run_ok(write_csv(tmp_path / "data.csv", rows, newline="\r\n"), out)
    turns = [turn(row) for split in read_all(out).values() for row in split]
    assert all("\r" not in t["input"] + t["output"] for t in turns)
    assert output_text("label", rows[0][1], "第一行\n第二行") in [t["output"] for t in turns]


def test_extra_columns_and_header_spaces(tmp_path: Path) -> None:
    rows = [(str(i), "备注", user, f" {style} ", reply) for i, (user, style, reply) in enumerate(dataset(20))]
    data = write_csv(tmp_path / "data.csv", rows, header=("id", "note", " user", "style ", " assistant "))
    out = tmp_path / "out"
    run_ok(data, out)
    turns = [turn(row) for split in read_all(out).values() for row in split]
    assert len(turns) == 40 and all(t["input"].startswith("问题") for t in turns)


def test_runs_from_any_cwd(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "data.csv", dataset(20))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_cli(data, tmp_path / "out", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "train.json").is_file() and "input rows: 40" in result.stdout
    bad = run_cli(tmp_path / "nope.csv", tmp_path / "out2", cwd=elsewhere)
    assert bad.returncode == 2 and "nope.csv: file: cannot read" in bad.stderr
    assert "Traceback" not in bad.stderr


# ---------------------------------------------------------------------------------------------
# Bad input: exit 2, FILE:LINE: column: message, nothing written


GOOD = csv_text(dataset(20))
BAD_INPUTS = {
    "missing column": (
        csv_text([("你好", GENTLE, "嗯")], header=("user", "style", "reply")),
        [], ["data.csv:1: header: missing required column 'assistant'", "'reply'"],
    ),
    "empty cell": (
        GOOD + "  ,温柔,回复\n",
        [], ["data.csv:42: user: empty cell"],
    ),
    "empty style": (
        GOOD + "问,,回复\n",
        [], ["data.csv:42: style: empty cell"],
    ),
    "unknown style": (
        GOOD + "问,温和,回复\n",
        [], ["data.csv:42: style: unknown style '温和'", "温柔, 毒舌"],
    ),
    "reply too long": (
        GOOD + "问,毒舌," + "长" * 51 + "\n",
        ["--max-chars", "50"], ["data.csv:42: assistant: reply is 51 characters, over --max-chars 50"],
    ),
    "too few fields": (
        GOOD + "问,温柔\n",
        [], ["data.csv:42: row: has 2 field(s), the header has 3"],
    ),
    "too many fields": (
        GOOD + "问,温柔,回复,多余\n",
        [], ["data.csv:42: row: has 4 field(s), the header has 3"],
    ),
    "no data rows": (
        "user,style,assistant\n",
        [], ["data.csv:1: data: no data rows"],
    ),
    "empty file": (
        "",
        [], ["data.csv:1: header: no header row"],
    ),
    "line numbers after multi-line cells": (
        'user,style,assistant\n问1,温柔,"第一行\n第二行\n第三行"\n问2,毒舌,回复\n问3,坏,回复\n',
        [], ["data.csv:6: style: unknown style '坏'"],
    ),
    "line numbers with crlf and blank lines": (
        'user,style,assistant\r\n\r\n问1,温柔,"a\r\nb"\r\n问2,坏,回复\r\n',
        [], ["data.csv:5: style: unknown style '坏'"],
    ),
    "unclosed quote": (
        GOOD + '问,温柔,"没有结束\n问2,毒舌,回复\n',
        [], ["data.csv:42: csv: malformed CSV"],
    ),
    "all problems reported": (
        GOOD + "问,温和,回复\n问,毒舌\n,温柔,回复\n",
        [], ["data.csv:42: style:", "data.csv:43: row:", "data.csv:44: user: empty cell", "3 problem(s)"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input(tmp_path: Path, case: str) -> None:
    content, args, expected = BAD_INPUTS[case]
    data = tmp_path / "data.csv"
    data.write_bytes(content.encode("utf-8"))
    out = tmp_path / "out"
    result = run_tool(data, out, *args)
    assert result.returncode == 2
    for text in expected:
        assert text in result.stderr
    assert "Traceback" not in result.stderr
    assert_nothing_written(out)


def test_undecodable_bytes(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_bytes(GOOD.encode("utf-8") + "问题,温柔,好的\n".encode("gbk"))
    out = tmp_path / "out"
    result = run_tool(data, out)
    assert result.returncode == 2
    assert "data.csv:42: user: undecodable bytes" in result.stderr
    assert "tried encoding utf-8" in result.stderr and "--encoding gbk" in result.stderr
    assert "Traceback" not in result.stderr
    assert_nothing_written(out)


def test_missing_file(tmp_path: Path) -> None:
    result = run_tool(tmp_path / "nope.csv", tmp_path / "out")
    assert result.returncode == 2
    assert "nope.csv: file: cannot read" in result.stderr and "Traceback" not in result.stderr
    assert_nothing_written(tmp_path / "out")


def test_bad_input_leaves_existing_outputs_alone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.json").write_text("old", encoding="utf-8")
    data = tmp_path / "data.csv"
    data.write_text(GOOD + "问,坏,回复\n", encoding="utf-8")
    assert run_tool(data, out).returncode == 2
    assert [path.name for path in out.iterdir()] == ["train.json"]
    assert (out / "train.json").read_text(encoding="utf-8") == "old"


def test_success_leaves_no_temporaries(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_ok(write_csv(tmp_path / "data.csv", dataset(20)), out)
    assert sorted(path.name for path in out.iterdir()) == ["test.json", "train.json", "val.json"]


def test_what_an_interrupted_run_left_is_removed_in_one_line_naming_the_step(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / ".train.json.0123abcd.tmp").write_text("cut short", encoding="utf-8")  # unlocked, no process
    result = run_ok(write_csv(tmp_path / "data.csv", dataset(20)), out)
    assert result.stderr.splitlines() == [
        f"split: removed what an interrupted run left beside {out / 'train.json'}: .train.json.0123abcd.tmp"]
    assert sorted(path.name for path in out.iterdir()) == ["test.json", "train.json", "val.json"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ratios", "0.8,0.2"], "--ratios"),
        (["--ratios", "a,b,c"], "--ratios"),
        (["--ratios", "0.5,0.3,0.1"], "sum to 1"),
        (["--ratios", "1,0,0"], "positive"),
        (["--seed", "abc"], "--seed"),
        (["--seed", "1.5"], "--seed"),
        (["--mode", "chat"], "--mode"),
        (["--styles", "温柔,温和"], "温和"),
        (["--max-chars", "0"], "--max-chars"),
        (["--encoding", "no-such-codec"], "no-such-codec"),
    ],
)
def test_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "out"
    result = run_tool(write_csv(tmp_path / "data.csv", dataset(20)), out, *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert_nothing_written(out)


def test_ratio_tolerance(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "data.csv", dataset(30))
    run_ok(data, tmp_path / "out", "--ratios", "0.3333333,0.3333333,0.3333333")


def test_too_few_groups(tmp_path: Path) -> None:
    rows = [("只有一个问题", GENTLE, "温柔"), ("只有一个问题", SHARP, "毒舌"), ("第二个", GENTLE, "好")]
    out = tmp_path / "out"
    result = run_tool(write_csv(tmp_path / "data.csv", rows), out)
    assert result.returncode == 2
    assert "split would be empty" in result.stderr and "2 distinct prompt(s)" in result.stderr
    assert "the val split" in result.stderr or "the test split" in result.stderr
    assert_nothing_written(out)


def test_styles_subset(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_tool(write_csv(tmp_path / "data.csv", dataset(20)), out, "--styles", GENTLE)
    assert result.returncode == 2 and f"unknown style '{SHARP}'; allowed: {GENTLE}" in result.stderr
    run_ok(write_csv(tmp_path / "gentle.csv", dataset(20, styles=[GENTLE])), out, "--styles", GENTLE)


def test_cells_longer_than_the_csv_module_default_limit(tmp_path: Path) -> None:
    rows = dataset(20)
    rows[0] = (rows[0][0], rows[0][1], "长" * 200_000)
    out = tmp_path / "out"
    run_ok(write_csv(tmp_path / "data.csv", rows), out)
    outputs = [turn(row)["output"] for split in read_all(out).values() for row in split]
    assert output_text("label", rows[0][1], "长" * 200_000) in outputs
    result = run_tool(tmp_path / "data.csv", tmp_path / "out2", "--max-chars", "1000")
    assert result.returncode == 2 and "data.csv:2: assistant: reply is 200000 characters" in result.stderr


REAL_DATA = REPO_ROOT / "style_data" / "style_chat_data.csv"


@pytest.mark.skipif(not REAL_DATA.exists(), reason="style_data/style_chat_data.csv is not in this checkout")
@pytest.mark.parametrize("seed", [42, 0, 1, 2, 3])
def test_real_data(tmp_path: Path, seed: int) -> None:
    out = tmp_path / "out"
    result = run_tool(REAL_DATA, out, "--seed", str(seed))
    assert result.returncode == 0, result.stderr
    split_of: dict[str, str] = {}
    for name, split in read_all(out).items():
        assert {seed_mode_style(row) for row in split} == set(STYLES), name
        for row in split:
            key = reference_key(turn(row)["input"])
            assert split_of.setdefault(key, name) == name
    assert "warning" not in result.stderr


# ---------------------------------------------------------------------------------------------
# Exact outputs, written out by hand: the statistics, the split a seed gives, every message


def small_dataset() -> list[tuple[str, str, str]]:
    """10 prompts; gentle replies of 1..10 characters, snarky of 11..20; one exact duplicate."""
    rows = []
    for i in range(10):
        rows += [(f"问题{i}", GENTLE, "好" * (i + 1)), (f"问题{i}", SHARP, "哼" * (i + 11))]
    return [*rows, rows[0]]


SMALL_TEXT = """\
data.csv: seed 42, ratios 0.8,0.1,0.1, mode label
split  rows  distinct prompts  温柔  毒舌
train    16                 8     8     8
val       2                 1     1     1
test      2                 1     1     1
total    20                10    10    10
input rows: 21; exact duplicate rows dropped: 1
reply length (characters): min 1, median 10, p90 18, max 20
prompt length (characters): min 3, median 3, p90 3, max 3
"""

SMALL_MARKDOWN = """\
## Data splits

Generated by `style_tune/data/split.py` from `data.csv` with seed 42, ratios 0.8,0.1,0.1 \
(train,val,test, counted in distinct prompts) and mode `label`. Rows are grouped by normalised \
prompt; no prompt is in two splits.

| split | rows | distinct prompts | 温柔 | 毒舌 |
|---|---:|---:|---:|---:|
| train | 16 | 8 | 8 | 8 |
| val | 2 | 1 | 1 | 1 |
| test | 2 | 1 | 1 | 1 |
| total | 20 | 10 | 10 | 10 |

Input rows: 21. Exact duplicate rows dropped: 1.

| length (characters, per row) | min | median | p90 | max |
|---|---:|---:|---:|---:|
| reply | 1 | 10 | 18 | 20 |
| prompt | 3 | 3 | 3 | 3 |
"""


def test_statistics_exactly(tmp_path: Path) -> None:
    import gc

    stats_md = tmp_path / "stats.md"
    data = write_csv(tmp_path / "data.csv", small_dataset())
    result = run_ok(data, tmp_path / "out", "--stats-md", str(stats_md))
    assert result.stdout == SMALL_TEXT
    assert result.stderr == ""
    assert stats_md.read_text(encoding="utf-8") == SMALL_MARKDOWN
    assert gc.isenabled()  # main() switches the cyclic GC off while it works, and back on


def test_the_split_of_a_seed_is_pinned(tmp_path: Path) -> None:
    """Which prompt goes where for seed 42: a change to the hash, the ordering or the cut moves it
    (and would silently reshuffle every user's splits)."""
    run_ok(write_csv(tmp_path / "data.csv", small_dataset()), tmp_path / "out")
    splits = read_all(tmp_path / "out")
    prompts = {name: sorted({turn(row)["input"] for row in rows}) for name, rows in splits.items()}
    assert prompts == {
        "train": ["问题0", "问题3", "问题4", "问题5", "问题6", "问题7", "问题8", "问题9"],
        "val": ["问题1"],
        "test": ["问题2"],
    }
    assert grouping.order_groups(["d", "c", "b", "a"], 42) == ["b", "a", "c", "d"]


def test_a_split_without_a_style_is_warned_about(tmp_path: Path) -> None:
    rows = [(f"问题{i}", GENTLE, "好好好") for i in range(10)] + [("问题0", SHARP, "哼哼哼")]
    stats_md = tmp_path / "stats.md"
    result = run_ok(write_csv(tmp_path / "data.csv", rows), tmp_path / "out", "--stats-md", str(stats_md))
    lacking = [name for name, split in read_all(tmp_path / "out").items()
               if all(turn(row)["output"].split("\n")[0] != SHARP for row in split)]
    assert sorted(lacking) == ["test", "val"]  # 问题0 is a train prompt (see the pinned split)
    assert result.stderr == (
        "split: warning: the val split has no 毒舌 rows\n"
        "split: warning: the test split has no 毒舌 rows\n"
    )
    assert stats_md.read_text(encoding="utf-8").endswith(
        "\n\nWarning: the val split has no 毒舌 rows.\nWarning: the test split has no 毒舌 rows.\n"
    )


def test_lone_cr_line_ends(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_bytes(csv_text(dataset(20), newline="\r").encode("utf-8"))
    out = tmp_path / "out"
    run_ok(data, out)
    assert sum(map(len, read_all(out).values())) == 40


def test_bom_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_bytes(b"\xef\xbb\xbf" + csv_text(dataset(20)).encode("utf-8"))
    assert run_tool(data, tmp_path / "out").returncode == 0
    assert csv_input.read_text(data, "utf-8") == (csv_text(dataset(20)), False)
    assert csv_input.read_text(data, "UTF8")[0].startswith("user,")


def test_undecodable_bytes_exact_messages(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    bad = "问题好".encode("gbk")  # 6 bytes, none valid UTF-8 here
    data.write_bytes(GOOD.encode("utf-8") + bad + b",\xe6\xb8\xa9\xe6\x9f\x94,\xb0\xa1,\xb0\n")
    result = run_tool(data, tmp_path / "out")
    assert result.returncode == 2
    hint = "tried encoding utf-8; if the file is GBK-encoded, rerun with --encoding gbk"
    assert result.stderr.splitlines()[:4] == [
        f"data.csv:42: user: undecodable bytes 0xce 0xca 0xcc 0xe2 ... ({hint})",
        f"data.csv:42: assistant: undecodable bytes 0xb0 0xa1 ({hint})",
        f"data.csv:42: field 4: undecodable bytes 0xb0 ({hint})",
        "data.csv:42: row: has 4 field(s), the header has 3",
    ]


def test_undecodable_bytes_in_gbk_and_in_the_header(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    rows = [(*row, "") for row in dataset(20)]
    text = csv_text(rows, header=("user", "style", "assistant", "x")).encode("gbk")
    data.write_bytes(text.replace(b",x\n", b",x\x80\n", 1) + "问,温柔,".encode("gbk") + b"\xff\xff,\n")
    result = run_tool(data, tmp_path / "out", "--encoding", "gbk")
    assert result.returncode == 2
    hint = "tried encoding gbk; check the file's encoding"
    assert result.stderr.splitlines()[:2] == [
        f"data.csv:1: x\udc80: undecodable bytes 0x80 ({hint})",
        f"data.csv:42: assistant: undecodable bytes 0xff 0xff ({hint})",
    ]


def test_csv_syntax_errors(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text(GOOD + '问,温柔,"没有结束\n', encoding="utf-8")
    result = run_tool(data, tmp_path / "out")
    assert result.stderr.splitlines()[0] == (
        "data.csv:42: csv: malformed CSV: unexpected end of data "
        "(is a quote opened in this record and never closed?)"
    )
    data.write_text(GOOD + '问,温柔,"回复"多余\n', encoding="utf-8")
    result = run_tool(data, tmp_path / "out")
    assert result.stderr.splitlines()[0] == "data.csv:42: csv: malformed CSV: ',' expected after '\"'"


def test_header_problems_exactly(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("user, assistant ,user,extra\n问,回复,问,x\n", encoding="utf-8")
    result = run_tool(data, tmp_path / "out")
    assert result.stderr.splitlines() == [
        "data.csv:1: header: column 'user' appears 2 times",
        "data.csv:1: header: missing required column 'style'; "
        "found columns: 'user', 'assistant', 'user', 'extra'",
        "split: 2 problem(s) in data.csv; nothing written",
    ]
    data.write_text("", encoding="utf-8")
    assert run_tool(data, tmp_path / "out").stderr.splitlines()[0] == (
        "data.csv:1: header: no header row; expected columns user, style, assistant"
    )


def test_every_problem_is_reported_after_bad_bytes(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_bytes((GOOD + "问,坏,回复\n问,温柔,").encode() + b"\xb0\n")
    lines = run_tool(data, tmp_path / "out").stderr.splitlines()
    assert lines[:2] == [
        "data.csv:42: style: unknown style '坏'; allowed: 温柔, 毒舌 (--styles)",
        "data.csv:43: assistant: undecodable bytes 0xb0 (tried encoding utf-8; if the file is "
        "GBK-encoded, rerun with --encoding gbk)",
    ]


def test_max_chars_bounds(tmp_path: Path) -> None:
    rows = [*((user, style, "好") for user, style, _ in dataset(20)), ("", GENTLE, "五个字正好")]
    result = run_tool(write_csv(tmp_path / "data.csv", rows), tmp_path / "out", "--max-chars", "5")
    assert result.stderr.splitlines()[0] == "data.csv:42: user: empty cell"
    assert "--max-chars" not in result.stderr  # exactly 5 characters is allowed
    long = write_csv(tmp_path / "one.csv", dataset(20))
    assert run_tool(long, tmp_path / "o1", "--max-chars", "1").returncode == 2
    ok = [(user, style, "好") for user, style, _ in dataset(20)]
    assert run_tool(write_csv(tmp_path / "ok.csv", ok), tmp_path / "o2", "--max-chars", "1").returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ratios", "0.8,0.2"],
         "--ratios: expected 3 comma-separated numbers (train,val,test), got '0.8,0.2'"),
        (["--ratios", "a,b,c"], "--ratios: cannot parse 'a,b,c' as numbers, e.g. 0.8,0.1,0.1"),
        (["--ratios", "0.8,0.1,0.100001"], "--ratios: ratios must sum to 1, '0.8,0.1,0.100001' sums to 1"),
        (["--ratios", "1,0,0"],
         "--ratios: the val ratio must be positive (every split needs data), got '1,0,0'"),
        (["--styles", " , "], "--styles: no style labels given"),
        (["--styles", "温柔,温和,冷"],
         "--styles: unknown style(s) 温和, 冷; style_tune.core.prompts knows 温柔, 毒舌"),
        (["--styles", "温柔，温柔"], "--styles: a style is listed twice in '温柔，温柔'"),
        (["--max-chars", "0"], "--max-chars must be a positive integer, got 0"),
        (["--encoding", "no-such-codec"], "--encoding: unknown encoding 'no-such-codec'"),
    ],
)
def test_usage_error_messages(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_tool(write_csv(tmp_path / "data.csv", dataset(20)), tmp_path / "out", *args)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0].startswith("usage: python -m style_tune.data.split ")
    assert result.stderr.splitlines()[-1] == f"python -m style_tune.data.split: error: {message}"


def test_output_paths_that_cannot_be(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "data.csv", dataset(20))
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_tool(data, blocker)
    assert result.stderr.splitlines()[-1] == (
        f"python -m style_tune.data.split: error: --out-dir: {blocker} exists and is not a directory"
    )
    result = run_tool(data, tmp_path / "out", "--stats-md", str(tmp_path))
    assert result.stderr.splitlines()[-1] == (
        f"python -m style_tune.data.split: error: --stats-md: {tmp_path} is a directory")
    result = run_tool(data, blocker / "sub")
    assert result.returncode == 1
    assert result.stderr.startswith("split: cannot write output: [Errno 20] Not a directory")


def test_ratios_are_scaled_to_sum_exactly_to_one() -> None:
    ratios = options.parse_ratios("0.3333333,0.3333333,0.3333333")
    assert sum(ratios) == 1 and ratios == (Fraction(1, 3),) * 3
    assert options.parse_ratios("0.8,0.1,0.1000009") == (
        Fraction(8, 10) / Fraction(10000009, 10000000), Fraction(1, 10) / Fraction(10000009, 10000000),
        Fraction(1000009, 10000000) / Fraction(10000009, 10000000),
    )


def test_split_sizes_round_half_up() -> None:
    tenths = (Fraction(8, 10), Fraction(1, 10), Fraction(1, 10))
    assert grouping.split_sizes(5, tenths) == [4, 1, 0]  # 4.5 rounds up to 5
    assert grouping.split_sizes(15, tenths) == [12, 2, 1]  # 13.5 rounds up to 14
    assert grouping.split_sizes(3, (Fraction(1, 3),) * 3) == [1, 1, 1]


def test_too_few_groups_exact_message(tmp_path: Path) -> None:
    rows = [(f"问{i}", GENTLE, "好") for i in range(4)]
    result = run_tool(write_csv(tmp_path / "data.csv", rows), tmp_path / "out")
    assert result.stderr.splitlines()[0] == (
        "data.csv: split: the test split would be empty: the data has 4 distinct prompt(s) (groups) and "
        "ratio 0.1 of that is 0.40 groups; add data or change --ratios"
    )


def test_length_summary_ranks() -> None:
    from collections import Counter

    assert split_stats.length_summary(Counter({1: 1, 5: 1})) == (1, 1, 5, 5)
    assert split_stats.length_summary(Counter(range(1, 102))) == (1, 51, 91, 101)


def test_report_problems_order_and_limit(capsys: pytest.CaptureFixture[str]) -> None:
    Problem = csv_input.Problem
    split_data.report_problems([Problem(1, "a", "first line"), Problem(None, "file", "whole file")], "f.csv")
    assert capsys.readouterr().err.splitlines() == [
        "f.csv: file: whole file",
        "f.csv:1: a: first line",
        "split: 2 problem(s) in f.csv; nothing written",
    ]
    many = [Problem(line, "c", "m") for line in range(205, 0, -1)]
    split_data.report_problems(many, "f.csv")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 202 and err[0] == "f.csv:1: c: m" and err[199] == "f.csv:200: c: m"
    assert err[200:] == [
        "... and 5 more problem(s)", "split: 205 problem(s) in f.csv; nothing written"
    ]
    assert str(csv_input.InputError(many)) == "205 problem(s)"


def test_display_width() -> None:
    assert split_stats.display_width("ab") == 2
    assert split_stats.display_width("温柔") == 4
    assert split_stats.display_width("ａ") == 2  # full-width


def test_write_atomically_writes_beside_the_target_then_renames(tmp_path: Path) -> None:
    out = tmp_path / "new" / "dir"
    seen: list[list[str]] = []

    def chunks() -> Iterable[str]:
        seen.append(sorted(path.name for path in out.iterdir()))
        yield "第一行\n"
        yield "second\n"

    old = os.umask(0o022)
    try:
        write_files_atomically({out / "train.json": chunks()})
    finally:
        os.umask(old)
    (temporary,) = seen[0]  # while writing: one hidden temporary beside the target, nothing else
    assert temporary.startswith(".train.json.") and temporary.endswith(".tmp")
    assert [path.name for path in out.iterdir()] == ["train.json"]
    assert (out / "train.json").read_bytes() == "第一行\nsecond\n".encode()
    assert oct((out / "train.json").stat().st_mode & 0o777) == oct(0o644)


def test_write_atomically_leaves_nothing_when_a_file_fails(tmp_path: Path) -> None:
    out = tmp_path / "out"
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    with pytest.raises(FileExistsError):
        write_files_atomically({out / "train.json": ["x"], blocker / "val.json": ["y"]})
    assert list(out.iterdir()) == []


def test_undecodable_bytes_four_shown_in_full_and_unnamed_columns(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    rows = [(*row, "") for row in dataset(20)]
    text = csv_text(rows, header=("user", "style", "assistant", " ")).encode()
    data.write_bytes(text + "问,温柔,好,".encode() + b"\xb0\xa1\xb0\xa1\n"
                     + "问,温柔,好,".encode() + b"\xb0\xa1\xb0\xa1\xb0\n")
    lines = run_tool(data, tmp_path / "out").stderr.splitlines()
    hint = "(tried encoding utf-8; if the file is GBK-encoded, rerun with --encoding gbk)"
    assert lines[:2] == [
        f"data.csv:42: field 4: undecodable bytes 0xb0 0xa1 0xb0 0xa1 {hint}",
        f"data.csv:43: field 4: undecodable bytes 0xb0 0xa1 0xb0 0xa1 ... {hint}",
    ]


def test_missing_file_exact_message(tmp_path: Path) -> None:
    result = run_tool(tmp_path / "nope.csv", tmp_path / "out")
    assert result.stderr.splitlines()[0] == "nope.csv: file: cannot read: No such file or directory"


def test_a_split_without_rows_of_either_style_names_both() -> None:
    opts = options.Options(csv_path=Path("d.csv"), out_dir=Path("out"), seed=0, ratios=(Fraction(1, 3),) * 3,
                           mode="controllable", styles=("温柔", "毒舌"), encoding="utf-8", max_chars=None,
                           stats_md=None)
    rows = [("问", "温柔", "答"), ("问", "毒舌", "答")]
    splits = [grouping.Split("train", rows, 1), grouping.Split("val", [], 0),
              grouping.Split("test", rows[:1], 1)]
    stats = split_stats.collect_stats(splits, opts, input_rows=3, dropped=0)
    assert stats.warnings == ["the val split has no 温柔, 毒舌 rows", "the test split has no 毒舌 rows"]
