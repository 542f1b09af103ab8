"""Tests for tools/split_data.py: CSV -> XTuner conversation JSON, split by prompt group."""

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
from types import ModuleType

import pytest

from style_tune.prompts import STYLES, output_text, system_text

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOL = REPO_ROOT / "tools" / "split_data.py"


SPLITS = ("train", "val", "test")
HEADER = ("user", "style", "assistant")
GENTLE, SHARP = STYLES


def load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("split_data_tool", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


split_data = load_tool()


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
    argv = [str(csv_path), "--out-dir", str(out_dir), *args]
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
        [sys.executable, str(TOOL), str(csv_path), "--out-dir", str(out_dir), *args],
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


@pytest.mark.parametrize("mode", ["seed", "controllable"])
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
    for mode in ("seed", "controllable"):
        objects = [split_data.conversation_row(row, mode) for row in rows]
        expected = json.dumps(objects, ensure_ascii=False, indent=2)
        assert split_data.to_json(rows, mode) == expected + "\n"
        assert "".join(split_data.json_chunks(rows, mode, batch_size=1)) == expected + "\n"
    assert split_data.to_json([], "seed") == "[]\n"


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
            sizes = split_data.split_sizes(n_groups, ratios)
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
        "，，？！：；（）～",
    ]
    expected = [reference_key(sample) for sample in samples]
    assert [split_data.normalise_prompt(sample) for sample in samples] == expected
    assert split_data.normalise_prompts(samples) == expected
    with_separator = ["a\x00（b）", "（ｃ）"]  # the bulk pass joins texts with NUL: falls back
    assert split_data.normalise_prompts(with_separator) == [reference_key(text) for text in with_separator]


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

    assert split_data.length_summary(Counter(range(1, 11))) == (1, 5, 9, 10)
    assert split_data.length_summary(Counter([7])) == (7, 7, 7, 7)


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
    assert len(match) == 1 and match[0]["output"] == output_text("seed", GENTLE, rows[0][2])


def test_crlf(tmp_path: Path) -> None:
    rows = dataset(20)
    rows[0] = (rows[0][0], rows[0][1], "第一行\r\n第二行")
    out = tmp_path / "out"
    run_ok(write_csv(tmp_path / "data.csv", rows, newline="\r\n"), out)
    turns = [turn(row) for split in read_all(out).values() for row in split]
    assert all("\r" not in t["input"] + t["output"] for t in turns)
    assert output_text("seed", rows[0][1], "第一行\n第二行") in [t["output"] for t in turns]


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
    assert output_text("seed", rows[0][1], "长" * 200_000) in outputs
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
