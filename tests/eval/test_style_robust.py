"""The style score on the shipped data: real references score high, degenerate replies score 0.

The judge is trained on the real train split and measured on data it never trained on (the test
split's references, held-out neutral answers). Crafted replies -- the label repeated, the label plus
noise, random tokens, a neutral helpful answer, a copy of the user's message -- each score 0 for
style in both modes, through score_replies (the OpenCompass evaluator's function) and through
`style_tune/eval/score_replies.py` (`make score-replies`).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from style_tune.core.prompts import STYLES, output_text, system_text
from style_tune.eval.style_metrics import (
    METRICS,
    NEITHER,
    StyleJudge,
    group_prompts,
    load_rows,
    neutral_replies,
    row_style_reply,
    sanity_problems,
    score_replies,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SCORE_TOOL = "style_tune.eval.score_replies"

#: Neutral helpful answers written for this test (not in style_data/neutral_replies.txt).
NEUTRAL = [
    "加班之后可以适当补充睡眠，并合理安排第二天的工作计划。",
    "换工作前建议先了解目标行业的薪资水平和发展前景，再做决定。",
    "考试前一周可以按科目整理错题，重点复习出错较多的知识点。",
    "养猫需要准备猫砂盆、猫粮和饮水器，并定期带猫咪接种疫苗。",
    "下雨天路面湿滑，骑车时请减速慢行，注意与前车保持距离。",
    "想省钱的话，可以每月记账，区分必要支出和非必要支出。",
]
#: What the issue saw the random-weight demo model write: the label repeated, then noise.
LABEL_NOISE = "毒舌\n毒舌\n毒舌\n tuberculosis，你，你， Board"


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """style_tune/data/split.py on the shipped CSV, both modes."""
    out = {}
    for mode in ("label", "controllable"):
        out[mode] = tmp_path_factory.mktemp(f"split_{mode}")
        subprocess.run([sys.executable, "-m", "style_tune.data.split",
                        str(REPO_ROOT / "style_data" / "style_chat_data.csv"), "--out-dir", str(out[mode]),
                        "--mode", mode], check=True, capture_output=True, timeout=120)
    return out


@pytest.fixture(scope="module")
def judge(splits: dict[str, Path]) -> StyleJudge:
    return StyleJudge.from_split(splits["label"] / "train.json")


def samples(splits: dict[str, Path], mode: str) -> list[dict]:
    return group_prompts(load_rows(splits[mode] / "test.json"), mode)


def score(samples_: list[dict], predictions: list[str], mode: str, judge: StyleJudge, **kwargs) -> dict:
    return score_replies(predictions, [s["references"] for s in samples_],
                         [s["requested_style"] or None for s in samples_], mode, judge,
                         users=[s["input"] for s in samples_], **kwargs)


# ------------------------------------------------------------------------------- the judge, held out

def test_judge_held_out_accuracy(judge: StyleJudge, splits: dict[str, Path]) -> None:
    """On the test split's references (never trained on): measured 96.7 % with the shipped data."""
    train_replies = {row_style_reply(t)[1] for t in load_rows(splits["label"] / "train.json")}
    pairs = [row_style_reply(t) for t in load_rows(splits["label"] / "test.json")]
    assert not train_replies & {reply for _, reply in pairs}  # really held out
    assert len(pairs) == 92
    assert judge.accuracy([r for _, r in pairs], [s for s, _ in pairs]) >= 95.0


def test_judge_says_neither_to_held_out_neutral_answers(splits: dict[str, Path]) -> None:
    """Trained on three quarters of the neutral answers, tested on the rest (and on NEUTRAL)."""
    plain = neutral_replies()
    held_out = plain[::4]
    judge = StyleJudge.from_split(splits["label"] / "train.json",
                                  neutral=[t for i, t in enumerate(plain) if i % 4])
    verdicts = judge.predict(held_out + NEUTRAL)
    assert sum(v == NEITHER for v in verdicts) / len(verdicts) >= 0.9, verdicts


def test_label_words_are_no_evidence_even_if_left_in_training(splits: dict[str, Path]) -> None:
    """A judge trained on outputs with their label line left in still ignores label words."""
    turns = load_rows(splits["label"] / "train.json")
    styles = [row_style_reply(t)[0] for t in turns]
    leaky = StyleJudge([t["output"] for t in turns], styles, NEUTRAL * 10)
    for style in STYLES:
        assert leaky.predict([style, f"{style}\n{style}\n{style}"]) == [None, None]
        for text in NEUTRAL:
            assert leaky.predict([f"{style}\n{text}"]) == leaky.predict([text])


# ------------------------------------------------------------------------------- sanity gates

def test_sanity_gates_name_the_problem() -> None:
    assert sanity_problems("") == ["empty"]
    assert sanity_problems("毒舌\n毒舌") == ["label_line", "short", "script"]
    assert "repetitive" in sanity_problems("你，你，你，你，你，你，你，你，好的好的好的好的")
    assert sanity_problems("tuberculosis Board, the weather is fine today") == ["script"]
    assert sanity_problems("今天又加班到十点，腿都站麻了", user="今天又加班到十点，腿都站麻了") == ["echo"]
    assert sanity_problems(NEUTRAL[0], runaway=True) == ["runaway"]
    assert sanity_problems(NEUTRAL[0]) == []


# ------------------------------------------------------------------------------- whole scores

@pytest.mark.parametrize("mode", ["label", "controllable"])
def test_references_score_at_least_95(judge: StyleJudge, splits: dict[str, Path], mode: str) -> None:
    samples_ = samples(splits, mode)
    flat = [(ref, s) for s in samples_ for ref in s["references"]]
    result = score_replies([ref for ref, _ in flat], [s["references"] for _, s in flat],
                           [s["requested_style"] or None for _, s in flat], mode, judge,
                           users=[s["input"] for _, s in flat])
    assert result["sane_rate"] == 100.0
    assert result["style_accuracy"] >= 95.0
    for metric in ("style_accuracy_gentle", "style_accuracy_snarky"):
        assert result[metric] >= 90.0
    assert result["judged_neither"] <= 5.0
    assert set(result) - {"details"} == set(METRICS[mode]) - {"runaway_rate"}


def random_vocabulary_text(tokenizer, rng: random.Random, n: int = 24) -> str:
    return tokenizer.decode([rng.randrange(151_643) for _ in range(n)])


def crafted(samples_: list[dict], mode: str, tokenizer) -> dict[str, list[str]]:
    """Each kind of degenerate reply, one per prompt (label mode: after a valid label line)."""
    rng = random.Random(0)

    def labelled(i: int, text: str) -> str:
        return output_text("label", STYLES[i % 2], text) if mode == "label" else text

    label = STYLES[1]
    return {
        "label repeated": [f"{label}\n{label}\n{label}" for _ in samples_],
        "label plus noise": [LABEL_NOISE for _ in samples_],
        "random tokens": [labelled(i, random_vocabulary_text(tokenizer, rng)) for i in range(len(samples_))],
        "neutral answer": [labelled(i, NEUTRAL[i % len(NEUTRAL)]) for i in range(len(samples_))],
        "copy of the user message": [labelled(i, s["input"]) for i, s in enumerate(samples_)],
    }


@pytest.mark.parametrize("mode", ["label", "controllable"])
def test_degenerate_replies_score_zero(judge: StyleJudge, splits: dict[str, Path], mode: str,
                                       tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    samples_ = samples(splits, mode)
    for kind, predictions in crafted(samples_, mode, tokenizer).items():
        result = score(samples_, predictions, mode, judge)
        assert result["style_accuracy"] == 0.0, (kind, [d for d in result["details"] if d["style_hit"]][:3])
        assert result["judged_gentle"] == result["judged_snarky"] == 0.0, kind
        assert result["style_accuracy_gentle"] == result["style_accuracy_snarky"] == 0.0, kind


def test_random_characters_of_the_data_do_not_count(judge: StyleJudge, splits: dict[str, Path]) -> None:
    """Harder noise: characters drawn from the references themselves (the judge's own alphabet).
    Each is cut by the coherence gate (measured: 0 of 92 count; without the gate 30 of 92)."""
    samples_ = samples(splits, "controllable")
    alphabet = [ch for s in samples_ for ref in s["references"] for ch in ref]
    rng = random.Random(0)
    predictions = ["".join(rng.choice(alphabet) for _ in range(28)) for _ in samples_]
    assert score(samples_, predictions, "controllable", judge)["style_accuracy"] == 0.0


def test_runaway_replies_do_not_count(judge: StyleJudge, splits: dict[str, Path]) -> None:
    samples_ = samples(splits, "controllable")[:10]
    gold = [s["references"][0] for s in samples_]
    assert score(samples_, gold, "controllable", judge)["style_accuracy"] >= 80.0
    cut = score(samples_, gold, "controllable", judge, token_counts=[96] * 10, max_out_len=96)
    assert cut["style_accuracy"] == 0.0 and cut["runaway_rate"] == 100.0


# ------------------------------------------------------------------------------- make score-replies

def run_tool(replies: Path, data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", SCORE_TOOL, str(replies), "--data-dir", str(data_dir),
                           *args],
                          capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)


def test_score_replies_tool_uses_the_evaluator_scores(splits: dict[str, Path], judge: StyleJudge,
                                                       tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "controllable").symlink_to(splits["controllable"])
    samples_ = samples(splits, "controllable")
    predictions = [s["references"][0] if i % 3 else NEUTRAL[i % len(NEUTRAL)] for i, s in enumerate(samples_)]
    rows = [{"user": s["input"], "style": s["requested_style"], "reply": p}
            for s, p in zip(samples_, predictions, strict=True)]
    rows[0] = {"user": rows[0]["user"], "system": system_text("controllable", rows[0]["style"]),
               "reply": rows[0]["reply"], "finish_reason": "length"}
    replies = tmp_path / "replies.jsonl"
    replies.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    proc = run_tool(replies, data_dir, "--out", str(tmp_path / "scores.json"))
    assert proc.returncode == 0, proc.stderr
    expected = score(samples_, predictions, "controllable", judge, runaway=[True] + [False] * (len(rows) - 1))
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| metric | replies |")
    assert table[1].startswith("| style_accuracy | ")
    values = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in table[1:]}
    assert values["style_accuracy"] == f"{expected['style_accuracy']:.2f}"
    assert values["runaway_rate"] == f"{100 / len(rows):.2f}"
    assert 55.0 < expected["style_accuracy"] < 70.0  # the references count, the neutral third does not
    saved = json.loads((tmp_path / "scores.json").read_text(encoding="utf-8"))
    assert saved["style_accuracy"] == pytest.approx(expected["style_accuracy"])


def test_score_replies_tool_names_file_line_and_field(tmp_path: Path, splits: dict[str, Path]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([
        json.dumps({"user": "你好", "style": "温柔", "reply": "你好呀"}, ensure_ascii=False),
        "{not json",
        json.dumps({"user": 3, "style": "温柔", "reply": "x"}),
        json.dumps({"user": "你好", "style": "可爱", "reply": "x"}, ensure_ascii=False),
        json.dumps({"user": "你好", "reply": "x"}, ensure_ascii=False),
        json.dumps({"user": "你好", "system": "be nice", "reply": "x"}, ensure_ascii=False),
    ]) + "\n", encoding="utf-8")
    proc = run_tool(bad, tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    for where in (f"{bad}:2: json: not a JSON object", f"{bad}:3: user:", f"{bad}:4: style: unknown style",
                  f"{bad}:5: style / system:", f"{bad}:6: system: unknown system text"):
        assert where in proc.stderr, proc.stderr
    assert f"{bad}:1:" not in proc.stderr
    good = tmp_path / "good.jsonl"
    good.write_text(bad.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    proc = run_tool(good, tmp_path / "nowhere")
    assert proc.returncode != 0 and "make split MODE=controllable" in proc.stderr
