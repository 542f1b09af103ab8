"""The shipped dataset and its data card: content rules, diversity, and an up-to-date card."""

from __future__ import annotations

import csv
import subprocess
import sys
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

from style_tune.core.prompts import STYLES

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA = REPO_ROOT / "style_data" / "style_chat_data.csv"
CHECK = "style_tune.data.check"
UPDATE = "style_tune.data.card"


#: The article's evaluation prompts: they must stay out of the training data.
ARTICLE_EVAL_PROMPTS = (
    "工作忙的没有私人时间，生活已经变得不会再幸福了。",
    "进医院你陪钱",
    "那个社长明信片还没收到么",
    "老林有对象我都替他开心",
    "静静的校园真美，羡慕",
    "穿这衣服，会被人领走的",
    "外星人还有台式呢？",
    "今天都没来道早安作业一大堆啊写死了",
    "居然有情人一起回去",
    "狗东西吃这么好",
)


def run_tool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *map(str, args)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    with DATA.open(encoding="utf-8-sig", newline="") as handle:
        return [{key: value.strip() for key, value in row.items()} for row in csv.DictReader(handle)]


def test_shipped_csv_has_no_near_duplicates() -> None:
    result = run_tool(CHECK, DATA)
    assert result.returncode == 0, result.stdout + result.stderr
    for style in STYLES:
        assert f"{style}: " in result.stdout, result.stdout


def test_data_card_is_up_to_date() -> None:
    result = run_tool(UPDATE, "--check")
    assert result.returncode == 0, (
        result.stderr + "\nThe data card no longer matches the CSV: run `make data-card`."
    )


def test_stale_card_is_caught(tmp_path: Path) -> None:
    card = tmp_path / "README.md"
    text = (REPO_ROOT / "style_data" / "README.md").read_text(encoding="utf-8")
    card.write_text(text.replace("| total | 920 |", "| total | 921 |"), encoding="utf-8")
    result = run_tool(UPDATE, "--card", card, "--check")
    assert result.returncode == 1 and result.stderr.startswith(f"data-card: {card} is out of date")
    assert run_tool(UPDATE, "--card", card).returncode == 0
    assert card.read_text(encoding="utf-8") == text


def test_planted_near_duplicate_is_flagged(tmp_path: Path) -> None:
    gentle, sharp = STYLES
    planted = tmp_path / "planted.csv"
    with planted.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerows([
            ("user", "style", "assistant"),
            ("今天好累", gentle, "辛苦啦，早点休息，明天又是元气满满的一天呢🌸"),  # line 2
            ("今天好累", sharp, "累成这样还刷手机，你的电量比手机掉得还快。"),  # line 3
            ("明天要考试", gentle, "别紧张呀，你已经准备得很好了，相信自己哦✨"),  # line 4
            ("明天要考试", sharp, "现在才想起来复习？临时抱佛脚，佛都嫌你脚凉。"),  # line 5
            ("加班到半夜", gentle, "辛苦啦，早点休息，明天又是元气满满的一天哦🌸"),  # line 6: near-copy of 2
            ("加班到半夜", sharp, "半夜还在公司，保安都以为你是新来的值班员。"),  # line 7
        ])
    result = run_tool(CHECK, planted, "--max-jaccard", "0.5")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{planted}:2 and {planted}:6" in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"python -m style_tune.data.check: near-duplicate replies in {planted}")
    assert run_tool(CHECK, planted, "--max-jaccard", "0.95").returncode == 0


def test_enough_distinct_prompts(rows: list[dict[str, str]]) -> None:
    assert len({row["user"] for row in rows}) >= 400


def test_one_reply_per_style_per_prompt(rows: list[dict[str, str]]) -> None:
    counts = Counter((row["user"], row["style"]) for row in rows)
    prompts = {row["user"] for row in rows}
    wrong = {
        (user, style): counts[user, style] for user in prompts for style in STYLES if counts[user, style] != 1
    }
    assert not wrong, f"prompts without exactly one reply per style: {wrong}"
    assert {row["style"] for row in rows} == set(STYLES)


def test_reply_lengths(rows: list[dict[str, str]]) -> None:
    bad = [(row["user"], row["assistant"]) for row in rows if not 10 <= len(row["assistant"]) <= 80]
    assert not bad, f"replies outside 10-80 characters: {bad}"


def normalise(text: str) -> str:
    """As style_tune/data/split.py groups prompts: NFKC, whitespace runs collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def test_seed_evaluation_prompts_are_excluded(rows: list[dict[str, str]]) -> None:
    prompts = {normalise(row["user"]) for row in rows}
    leaked = [prompt for prompt in ARTICLE_EVAL_PROMPTS if normalise(prompt) in prompts]
    assert not leaked, f"the article's evaluation prompts in the data: {leaked}"


def test_card_is_generated_from_the_csv_given(tmp_path: Path) -> None:
    """`--csv` is the data the card describes: a 20-row CSV gives its own counts, not the shipped ones."""
    gentle, sharp = STYLES
    small = tmp_path / "small.csv"
    with small.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("user", "style", "assistant"))
        for i in range(9):
            writer.writerow((f"问题{i}", gentle, f"温柔的回答第{i}号，慢慢来"))
            writer.writerow((f"问题{i}", sharp, f"毒舌的回答第{i}号：就这？"))
        writer.writerow(("问题0", gentle, "温柔的回答第0号，慢慢来"))  # an exact duplicate, dropped
        writer.writerow(("问题9", gentle, "只有温柔的回答，九号"))
    card = tmp_path / "README.md"
    begin, end = "<!-- generated:begin -->", "<!-- generated:end -->"
    card.write_text(f"# Card\n\n{begin}\nold\n{end}\n\nTail.\n", encoding="utf-8")
    result = run_tool(UPDATE, "--csv", small, "--card", card)
    assert result.returncode == 0, result.stderr
    text = card.read_text(encoding="utf-8")
    assert text.startswith(f"# Card\n\n{begin}\n") and text.endswith(f"{end}\n\nTail.\n")
    assert "old" not in text and "from `small.csv`" in text
    # 10 distinct prompts: 9 with both styles, 1 gentle only; 20 rows read, 1 duplicate dropped
    assert f"| split | rows | distinct prompts | {gentle} | {sharp} |" in text
    assert "| total | 19 | 10 | 10 | 9 |" in text, text
    assert "Input rows: 20. Exact duplicate rows dropped: 1." in text
    assert "| total | 920 |" not in text  # the shipped CSV's figure
    assert run_tool(UPDATE, "--csv", small, "--card", card, "--check").returncode == 0
    assert run_tool(UPDATE, "--card", card, "--check").returncode == 1  # the shipped CSV differs
