"""The style-evaluation metrics and OpenCompass parts on hand-made replies (style_tune/eval/style_metrics.py,
style_tune/eval/evaluator.py): gold replies score top marks, swapped styles score low, empty and runaway
replies are counted, Chinese text gets real overlap scores, and the configs agree with the metric list."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from style_tune.core.prompts import output_text, system_text
from style_tune.core.stats import percentile
from style_tune.eval.style_metrics import (
    METRIC_HELP,
    METRICS,
    StyleJudge,
    chrf,
    distinct_n,
    group_prompts,
    lcs_length,
    rouge_l,
    score_replies,
    zh_tokens,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


GENTLE = [
    "辛苦啦，先好好休息一下吧，你已经很棒了呢🌸",
    "抱抱你呀，难过的时候就慢慢来，我一直都在哦💖",
    "没关系的呀，慢慢来就好，照顾好自己最重要呢",
    "好温暖的小事呀，希望你每天都这么开心哦～",
    "别担心呀，你已经很努力了，记得早点睡哦🌙",
    "听起来好累呀，先喝杯热水，抱抱你💖",
    "真为你开心呀，这份快乐要好好珍惜哦🌸",
    "慢慢来呀，不着急，你可以的，加油哦～",
]
SNARKY = [
    "就这？你的自律大概只活了三秒。",
    "好家伙，钱包听了都想报警。",
    "恭喜你，成功把拖延症练成了满级。",
    "建议先照照镜子，再决定要不要自信。",
    "你这操作，连空气都替你尴尬。",
    "别问，问就是你自己作的。",
    "这水平，隔壁家的猫都看不下去了。",
    "醒醒吧，闹钟都比你有上进心。",
]
PROMPTS = ["今天加班到十点，好累啊", "我又买了一堆用不上的东西", "考试没考好", "周末一直在睡觉"]


def split_rows(mode: str, pairs: list[tuple[str, str, str]]) -> list[dict]:
    """XTuner rows (style_tune/data/split.py's format) from (user, style, reply)."""
    return [{"conversation": [{"system": system_text(mode, style), "input": user,
                               "output": output_text(mode, style, reply)}]} for user, style, reply in pairs]


@pytest.fixture(scope="module")
def train_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pairs = [(f"问题{i}", "温柔", reply) for i, reply in enumerate(GENTLE)]
    pairs += [(f"问题{i}", "毒舌", reply) for i, reply in enumerate(SNARKY)]
    path = tmp_path_factory.mktemp("split") / "train.json"
    path.write_text(json.dumps(split_rows("label", pairs), ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def judge(train_file: Path) -> StyleJudge:
    return StyleJudge.from_split(train_file)


def seed_samples() -> list[dict]:
    """Held-out label-mode samples: each prompt with a gentle and a snarky reference."""
    rows = []
    for i in range(len(PROMPTS)):
        rows += [("温柔", GENTLE[i]), ("毒舌", SNARKY[i])]
    turns = [row["conversation"][0] for row in split_rows(
        "label", [(PROMPTS[i // 2], style, reply) for i, (style, reply) in enumerate(rows)])]
    return group_prompts(turns, "label")


# ------------------------------------------------------------------------------- tokens and scores

def test_chinese_tokens_are_characters_and_ascii_words_stay_whole() -> None:
    assert zh_tokens("iPhone 16 又涨价了！") == ["iPhone", "16", "又", "涨", "价", "了", "!"]
    assert zh_tokens("  ") == []


def test_lcs_and_rouge_l_values() -> None:
    assert lcs_length("abcd", "acbd") == 3
    assert lcs_length("", "abc") == 0
    # 今天天气 in common: P = R = 4/6
    assert rouge_l("今天天气真好", ["今天天气不错"]) == pytest.approx(100 * 4 / 6)
    assert rouge_l("今天天气真好", ["完全无关", "今天天气真好"]) == pytest.approx(100.0)  # the best reference
    assert rouge_l("", ["今天天气"]) == 0.0
    assert rouge_l("今天天气", [""]) == 0.0


def test_chinese_text_gets_nonzero_overlap() -> None:
    """OpenCompass's RougeEvaluator and sacrebleu's default BLEU give 0 on unsegmented Chinese."""
    hyp, ref = "辛苦啦，早点休息吧", "辛苦了，今晚早点休息哦"
    corpus, sentences = chrf([hyp], [[ref]])
    assert 0 < corpus < 100 and 0 < sentences[0] < 100
    assert 0 < rouge_l(hyp, [ref]) < 100
    assert chrf([ref], [[ref]])[0] == pytest.approx(100.0)
    assert chrf(["完全不同的句子"], [[ref]])[0] < 10


def test_chrf_takes_any_number_of_references_per_reply() -> None:
    corpus, sentences = chrf(["甲乙丙丁", "子丑寅卯"], [["甲乙丙丁"], ["无关", "子丑寅卯", "还是无关"]])
    assert corpus == pytest.approx(100.0) and sentences == pytest.approx([100.0, 100.0])


def test_distinct_n_and_percentiles() -> None:
    assert distinct_n(["哈哈哈哈"], 1) == pytest.approx(25.0)
    assert distinct_n(["哈哈哈哈"], 2) == pytest.approx(100 / 3)
    assert distinct_n(["一二三", "四五六"], 1) == 100.0
    assert distinct_n(["", "一"], 2) == 0.0
    assert percentile([1, 2, 3, 4], 50) == pytest.approx(2.5)
    assert percentile([], 90) == 0.0


# ------------------------------------------------------------------------------- the judge

def test_judge_reads_held_out_styles(judge: StyleJudge) -> None:
    held_out = ["哎呀，辛苦你啦，抱抱，早点休息哦💖", "就这？你的钱包都想报警了。"]
    assert judge.predict(held_out) == ["温柔", "毒舌"]
    assert judge.predict(["", "   "]) == [None, None]  # nothing to judge


# ------------------------------------------------------------------------------- all metrics

def score(samples: list[dict], predictions: list[str], mode: str, judge: StyleJudge, **kwargs) -> dict:
    return score_replies(predictions, [s["references"] for s in samples],
                         [s["requested_style"] or None for s in samples], mode, judge, **kwargs)


def test_gold_replies_score_100(judge: StyleJudge) -> None:
    samples = seed_samples()
    for pick in (0, 1):  # the gentle reference, then the snarky one
        result = score(samples, [s["references"][pick] for s in samples], "label", judge)
        assert result["style_accuracy"] == 100.0
        assert result["label_rate"] == result["label_agreement"] == 100.0
        assert result["chrf"] == pytest.approx(100.0) and result["rouge_l"] == pytest.approx(100.0)
        assert result["judged_gentle"] == (100.0 if pick == 0 else 0.0)
        assert result["empty_rate"] == 0.0
        assert result["judge_accuracy"] == 100.0
        assert set(result) - {"details"} == set(METRICS["label"]) - {"runaway_rate"}


def test_swapped_styles_score_low(judge: StyleJudge) -> None:
    samples = seed_samples()
    # the label says one style, the text is the other one
    swapped = [f"毒舌\n{GENTLE[i]}" for i in range(len(samples))]
    result = score(samples, swapped, "label", judge)
    assert result["label_rate"] == 100.0
    assert result["style_accuracy"] == 0.0 and result["label_agreement"] == 0.0
    # controllable mode: asked for 温柔, answered 毒舌 (and the other way round)
    turns = [row["conversation"][0] for row in split_rows("controllable", [
        (PROMPTS[0], "温柔", GENTLE[0]), (PROMPTS[0], "毒舌", SNARKY[0]),
        (PROMPTS[1], "温柔", GENTLE[1]), (PROMPTS[1], "毒舌", SNARKY[1]),
    ])]
    samples = group_prompts(turns, "controllable")
    assert [s["requested_style"] for s in samples] == ["温柔", "毒舌", "温柔", "毒舌"]
    gold = score(samples, [s["references"][0] for s in samples], "controllable", judge)
    assert gold["style_accuracy"] == 100.0 and gold["chrf"] == pytest.approx(100.0)
    swapped = [SNARKY[0], GENTLE[0], SNARKY[1], GENTLE[1]]
    result = score(samples, swapped, "controllable", judge)
    assert result["style_accuracy"] == 0.0
    assert "label_rate" not in result


def test_style_margin_rewards_the_asked_style_and_nothing_degenerate(judge: StyleJudge) -> None:
    turns = [row["conversation"][0] for row in split_rows("controllable", [
        (PROMPTS[i], style, (GENTLE if style == "温柔" else SNARKY)[i])
        for i in range(4) for style in ("温柔", "毒舌")])]
    samples = group_prompts(turns, "controllable")
    gold = [s["references"][0] for s in samples]
    other = [SNARKY[i // 2] if s["requested_style"] == "温柔" else GENTLE[i // 2]
             for i, s in enumerate(samples)]
    margins = {name: score(samples, replies, "controllable", judge)
               for name, replies in [("gold", gold), ("other", other), ("empty", [""] * len(samples)),
                                     ("noise", ["的了是我你" * 3] * len(samples)),
                                     ("repeats", [gold[0] * 4] * len(samples))]}
    assert margins["gold"]["style_margin"] > 40
    assert margins["other"]["style_margin"] < -40
    # not sane (empty, characters in no order, one reply for every prompt repeated): 0 each, never credit
    assert margins["empty"]["style_margin"] == 0.0
    assert all(d["style_margin"] == 0.0 for d in margins["noise"]["details"] if not d["sane"])
    assert margins["noise"]["style_margin"] <= 0.0 and margins["repeats"]["style_margin"] < 40
    per_reply = [d["style_margin"] for d in margins["gold"]["details"]]
    assert margins["gold"]["style_margin"] == pytest.approx(sum(per_reply) / len(per_reply))
    assert all(-100 <= m <= 100 for m in per_reply)
    # label mode: the announced style is the target; no label, no margin
    samples = seed_samples()
    labelled = score(samples, [f"毒舌\n{SNARKY[i]}" for i in range(len(samples))], "label", judge)
    unlabelled = score(samples, [SNARKY[i] for i in range(len(samples))], "label", judge)
    assert labelled["style_margin"] > 40 and unlabelled["style_margin"] == 0.0


def test_empty_and_runaway_replies_are_counted(judge: StyleJudge) -> None:
    samples = seed_samples()
    predictions = ["温柔\n", "", "毒舌\n" + SNARKY[2], "随便说点什么"]
    result = score(samples, predictions, "label", judge, token_counts=[2, 0, 16, 16], max_out_len=16)
    assert result["empty_rate"] == 50.0  # a label line with nothing after it is an empty reply too
    assert result["label_rate"] == 50.0
    predictions = ["温柔", "   ", "毒舌\n" + SNARKY[2], "随便说点什么"]
    result = score(samples, predictions, "label", judge, token_counts=[1, 1, 15, 17], max_out_len=16)
    assert result["empty_rate"] == 50.0
    assert result["label_rate"] == 50.0
    assert result["runaway_rate"] == 25.0
    assert result["style_accuracy"] == 25.0  # the snarky one; an empty reply is never a hit
    assert [d["empty"] for d in result["details"]] == [True, True, False, False]
    assert [d["runaway"] for d in result["details"]] == [False, False, False, True]
    # the same snarky reply cut off at the budget does not count for style
    result = score(samples, predictions, "label", judge, token_counts=[1, 1, 16, 17], max_out_len=16)
    assert result["runaway_rate"] == 50.0 and result["style_accuracy"] == 0.0
    assert result["details"][2]["problems"] == ["runaway"]
    assert result["details"][0]["judged"] == "neither"  # an empty reply is in no style


def test_prompts_are_grouped_and_modes_checked() -> None:
    samples = seed_samples()
    assert len(samples) == len(PROMPTS)
    assert all(len(s["references"]) == 2 and s["requested_style"] == "" for s in samples)
    controllable = [row["conversation"][0] for row in split_rows("controllable", [(PROMPTS[0], "温柔", "x")])]
    with pytest.raises(ValueError, match="MODE="):
        group_prompts(controllable, "label")


def test_every_metric_is_explained() -> None:
    assert set(METRIC_HELP) == set(METRICS["label"]) | set(METRICS["controllable"])


# ------------------------------------------------------------------------------- OpenCompass parts

def test_opencompass_dataset_and_evaluator(train_file: Path, tmp_path: Path) -> None:
    from style_tune.eval.evaluator import StyleEvaluator, StyleReplyDataset

    test_file = tmp_path / "test.json"
    test_file.write_text(train_file.read_text(encoding="utf-8"), encoding="utf-8")
    dataset = StyleReplyDataset(path=str(test_file), mode="label", abbr="style-label",
                                reader_cfg=dict(input_columns=["system", "input"], output_column="references",
                                                test_split="train"))
    test_set = dataset.test
    assert len(test_set) == len(GENTLE)  # one sample per distinct prompt, both styles as references
    assert test_set[0]["system"] == system_text("label")
    assert len(StyleReplyDataset.load(str(test_file), mode="label", limit=3, seed=1)) == 3
    evaluator = StyleEvaluator(train_path=str(train_file), mode="label")
    gold = [refs[0] for refs in test_set["references"]]
    result = evaluator.score(gold, test_set["references"], test_set)
    assert result["style_accuracy"] == 100.0 and result["chrf"] == pytest.approx(100.0)
    assert "runaway_rate" not in result  # no tokenizer given


def test_style_config_lists_every_metric(monkeypatch: pytest.MonkeyPatch) -> None:
    """eval_configs/eval_style.py's summary rows are the metric list of its mode (read at load time)."""
    from mmengine.config import Config

    for mode in ("label", "controllable"):
        monkeypatch.setenv("STYLE_EVAL_MODE", mode)
        monkeypatch.setenv("STYLE_EVAL_BASE", "models/some-base")
        monkeypatch.setenv("STYLE_EVAL_DEVICE", "cpu")
        cfg = Config.fromfile(str(REPO_ROOT / "eval_configs" / "eval_style.py"))
        assert [metric for _, metric in cfg.summarizer.dataset_abbrs] == list(METRICS[mode])
        assert cfg.models[0].path == str(REPO_ROOT / "models" / "some-base")
        assert cfg.models[0].run_cfg.num_gpus == 0
        assert cfg.datasets[0].eval_cfg.evaluator.mode == mode


def test_select_configs_read_the_local_models(monkeypatch: pytest.MonkeyPatch) -> None:
    from mmengine.config import Config

    monkeypatch.delenv("SELECT_QWEN", raising=False)
    monkeypatch.setenv("SELECT_INTERNLM", "/elsewhere/internlm")
    for name, suffix in (("select_models.py", "hf"), ("select_models_lmdeploy.py", "turbomind")):
        cfg = Config.fromfile(str(REPO_ROOT / "eval_configs" / name))
        assert [m.abbr for m in cfg.models] == [f"qwen2.5-1.5b-instruct-{suffix}",
                                                f"internlm2_5-1_8b-chat-{suffix}"]
        assert [m.path for m in cfg.models] == [str(REPO_ROOT / "models" / "Qwen2.5-1.5B-Instruct"),
                                                "/elsewhere/internlm"]
        assert [d.abbr for d in cfg.datasets] == ["bustm-dev", "bustm-test", "ocnli_fc-dev", "ocnli_fc-test"]


def test_the_runner_flags_missing_results(tmp_path: Path) -> None:
    from style_tune.eval.run_opencompass import missing_cells

    path = tmp_path / "summary.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["dataset", "version", "metric", "mode", "a", "b"],
                                 ["bustm-dev", "5cc669", "accuracy", "gen", "50.00", "-"]])
    assert missing_cells(path) == (["a", "b"], ["bustm-dev/accuracy/b"])


def test_readme_metric_table_is_generated_from_the_definitions(tmp_path: Path) -> None:
    """README.md's metric table is the rendering of METRIC_DEFINITIONS (`make metric-table`)."""
    from style_tune.eval import metric_table

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert metric_table.with_table(readme) == readme, "README's metric table is stale: make metric-table"
    for metric in METRICS["label"]:
        assert f"| `{metric}` |" in readme
    stale = tmp_path / "README.md"
    stale.write_text(f"x\n{metric_table.BEGIN}\n| old |\n{metric_table.END}\ny\n", encoding="utf-8")
    assert metric_table.main(["--readme", str(stale), "--check"]) == 1
    assert metric_table.main(["--readme", str(stale)]) == 0
    fresh = f"x\n{metric_table.BEGIN}\n{metric_table.table()}{metric_table.END}\ny\n"
    assert stale.read_text(encoding="utf-8") == fresh
