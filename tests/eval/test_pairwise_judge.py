"""The pairwise judge's reading of answers (style_tune/eval/pairwise_judge.py), on hand-written answers:
what counts as a choice, how the two orders combine into one verdict, and the prompt file's checks.
The live run, with the CPU server as a junk judge: tests/eval/test_eval_make_targets.py.

The metrics judge (``--metrics``, `make judge-pairs JUDGE=metrics`) on replies scored by the evaluator's
own function: good replies beat every kind of degenerate one, two degenerate ones are "both bad", it has
no position bias, and its records over a hand-built run folder are labelled and readable by make verdicts.
Over a real run: tests/eval/test_leaderboard.py."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from style_tune.core.defaults import METRIC_JUDGE_TIE as TIE
from style_tune.core.prompts import STYLES, system_text
from style_tune.eval import verdicts
from style_tune.eval.llm_judge import JudgeError
from style_tune.eval.pairwise_judge import (
    DEFAULT_PROMPT,
    METRICS_JUDGE,
    METRICS_RESULT_NAME,
    combine,
    judge_pairs_by_metrics,
    load_prompt,
    main,
    metric_choice,
    parse_choice,
)
from style_tune.eval.style_metrics import StyleJudge, group_prompts, load_rows, score_replies, shuffled
from style_tune.eval.verdicts import shown_order

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("answer", "choice"), [
    ('{"reason": "A stays on topic", "better": "A"}', "A"),
    ('Here you go:\n```json\n{"better": "both bad", "reason": "neither"}\n```', "both bad"),
    ('{"better": "tie"}', "tie"),
])
def test_a_choice_is_one_json_object_with_a_known_value(answer: str, choice: str) -> None:
    assert parse_choice(answer) == (choice, None)


@pytest.mark.parametrize(("answer", "problem"), [
    (None, "empty answer"),
    ("A is better", "0 JSON objects"),
    ('{"better": "A"} {"better": "B"}', "2 JSON objects"),
    ('{"better": "a"}', "'better' is 'a'"),
    ('{"better": "A better"}', "'better' is 'A better'"),
    ('{"reason": "no choice"}', "'better' is None"),
])
def test_anything_else_is_unparsable(answer: str | None, problem: str) -> None:
    choice, why = parse_choice(answer)
    assert choice is None and problem in why


@pytest.mark.parametrize(("first", "second", "verdict", "agree"), [
    ("A", "B", "A", True),         # tuned first, then tuned second: tuned both times
    ("B", "A", "B", True),         # base both times
    ("A", "A", "tie", False),      # the judge took whatever came first: no verdict, a tie
    ("B", "B", "tie", False),      # whatever came second
    ("tie", "tie", "tie", True),
    ("both bad", "both bad", "both bad", True),
    ("A", "tie", "tie", False),
    ("both bad", "B", "tie", False),
])
def test_both_orders_must_agree(first: str, second: str, verdict: str, agree: bool) -> None:
    assert combine(first, second, ("tuned", "base")) == (verdict, agree)


def test_the_shipped_prompt_loads_and_a_broken_one_is_named(tmp_path: Path) -> None:
    system, template, styles = load_prompt(DEFAULT_PROMPT)
    assert system and set(styles) == {"温柔", "毒舌", "none"}
    text = template.substitute(style="温柔", style_description="d", user="U", reply_a="RA", reply_b="RB")
    assert text.index("RA") < text.index("RB") and "U" in text
    data = json.loads(DEFAULT_PROMPT.read_text(encoding="utf-8"))
    data["user"] = [line for line in data["user"] if "$reply_b" not in line]
    broken = tmp_path / "prompt.json"
    broken.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(JudgeError, match=r"lacks \$reply_b"):
        load_prompt(broken)


# ------------------------------------------------------------------------------ the metrics judge
# Replies scored by the evaluator's own function (style_metrics.score_replies) with the style judge trained
# on the shipped data's controllable train split, then decided by metric_choice; the good replies are the
# held-out references (the judge never trained on them).

@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> tuple[StyleJudge, list[tuple[str, str, str]]]:
    """The style judge of the shipped controllable split, and held-out (user, style asked for, reference)."""
    out = tmp_path_factory.mktemp("split")
    subprocess.run([sys.executable, "-m", "style_tune.data.split",
                    str(REPO_ROOT / "style_data" / "style_chat_data.csv"), "--out-dir", str(out),
                    "--mode", "controllable"], check=True, capture_output=True, timeout=120)
    samples = group_prompts(load_rows(out / "test.json"), "controllable")[:16]
    return (StyleJudge.from_split(out / "train.json"),
            [(s["input"], s["requested_style"], s["references"][0]) for s in samples])


def scored(real: tuple[StyleJudge, list], replies: list[str], runaway: list[bool] | None = None
           ) -> list[dict]:
    """The evaluator's per-reply details of REPLIES to the held-out cases (controllable format)."""
    judge, cases = real
    result = score_replies(replies, [[good] for _, _, good in cases], [style for _, style, _ in cases],
                           "controllable", judge, users=[user for user, _, _ in cases], runaway=runaway)
    return result["details"]


def other_style(case: tuple[str, str, str], cases: list[tuple[str, str, str]]) -> str:
    """The reference in the other style to the same prompt (else to the first prompt that has one)."""
    user, style, _ = case
    others = [(u, g) for u, s, g in cases if s != style]
    return next((g for u, g in others if u == user), others[0][1])


def degenerate(kind: str, cases: list[tuple[str, str, str]]) -> list[str]:
    good = [g for _, _, g in cases]
    return {
        "empty": [""] * len(cases),
        "the good reply repeated": [g * 3 for g in good],
        "the other style": [other_style(case, cases) for case in cases],
        "the user's message echoed": [user for user, _, _ in cases],
        "the user's message echoed, a flourish added": [f"{user}呀，{user}" for user, _, _ in cases],
        "its words shuffled": shuffled(good, seed=0),
        "neither style": [NEUTRAL] * len(cases),
    }[kind]


NEUTRAL = "下雨天路面湿滑，骑车时请减速慢行，注意与前车保持距离。"
KINDS = ["empty", "the good reply repeated", "the other style", "the user's message echoed",
         "the user's message echoed, a flourish added", "its words shuffled", "neither style"]


@pytest.mark.parametrize("kind", KINDS)
def test_the_metrics_judge_never_prefers_a_degenerate_reply(real: tuple, kind: str) -> None:
    good = scored(real, [g for _, _, g in real[1]])
    bad = scored(real, degenerate(kind, real[1]))
    assert sum(d["style_hit"] for d in good) >= 14  # nearly every held-out reference reads as its style
    choices = [(metric_choice(mine, other), metric_choice(other, mine))
               for mine, other in zip(good, bad, strict=True) if mine["style_hit"]]
    assert all(b != "A" for _, b in choices)  # the degenerate reply never wins, in either position
    if kind == "its words shuffled":
        # the one gate a reply can slip through: a short shuffle may keep enough of its phrases to pass the
        # coherence gate and read as its style (1-2 of the 92 held-out references, docs/evaluation-judge.md);
        # then it ties or loses on its margin, it never wins
        assert sum(a == "A" for a, _ in choices) >= len(choices) - 1
    else:
        assert all((a, b) == ("A", "B") for a, b in choices), kind
        # two failures: "both bad", no credit and no tie
        assert all(metric_choice(other, other) == "both bad" for other in bad)


def test_the_metrics_judge_ranks_a_runaway_reply_below_the_same_reply_ended(real: tuple) -> None:
    replies = [g for _, _, g in real[1]]
    ended, cut = scored(real, replies), scored(real, replies, runaway=[True] * len(replies))
    assert all(metric_choice(e, c) == "A" for e, c in zip(ended, cut, strict=True) if e["style_hit"])


def test_two_replies_in_style_tie_unless_one_is_clearer_by_more_than_the_tolerance() -> None:
    hit = {"style_hit": True, "style_margin": 80.0}
    assert metric_choice(hit, {**hit, "style_margin": 80.0 - TIE}) == "tie"  # at the tolerance: a tie
    assert metric_choice(hit, {**hit, "style_margin": 79.0 - TIE}) == "A"
    assert metric_choice({**hit, "style_margin": 20.0}, hit) == "B"
    assert metric_choice(hit, {**hit, "style_margin": 60.0}, tie_within=25) == "tie"
    # a sane reply that is not a hit (read as the other style or neither) loses, whatever its margin
    assert metric_choice({"style_hit": False, "style_margin": 95.0}, {**hit, "style_margin": 10.0}) == "B"
    assert TIE == 15.0  # the benchmark's choice (benchmarks/metric_judge_ties.md): the docs say so


def test_the_metrics_judge_has_no_position_bias() -> None:
    """metric_choice(B, A) is metric_choice(A, B) mirrored, for any scores: both orders always agree."""
    rng = random.Random(0)
    mirror = {"A": "B", "B": "A", "tie": "tie", "both bad": "both bad"}
    seen = set()
    for _ in range(2000):
        a, b = ({"style_hit": rng.random() < 0.6, "style_margin": rng.choice([rng.uniform(-100, 100), 50.0])}
                for _ in range(2))
        first, second = metric_choice(a, b), metric_choice(b, a)
        assert second == mirror[first]
        assert combine(first, second, ("x", "y"))[1] is True
        seen.add(first)
    assert seen == {"A", "B", "tie", "both bad"}


def write_run(root: Path, models: dict[str, list[str]], real: tuple) -> Path:
    """An eval-style run folder as OpenCompass writes it, for the held-out cases: each model's
    predictions/ and results/ (the evaluator's per-reply details, from score_replies)."""
    for name, replies in models.items():
        rows = {str(i): {"origin_prompt": [{"role": "SYSTEM", "prompt": system_text("controllable", style)},
                                           {"role": "HUMAN", "prompt": user}], "prediction": reply}
                for i, ((user, style, _), reply) in enumerate(zip(real[1], replies, strict=True))}
        # OpenCompass keeps each field of a detail as the list of the prompt's samples (one)
        details = [{"example_abbr": f"style-controllable_{i}", **{key: [value] for key, value in d.items()}}
                   for i, d in enumerate(scored(real, replies))]
        for folder, data in (("predictions", rows), ("results", {"details": details})):
            (root / folder / name).mkdir(parents=True)
            (root / folder / name / "style_eval.json").write_text(json.dumps(data, ensure_ascii=False),
                                                                  encoding="utf-8")
    return root


def test_the_metrics_judge_over_a_run_writes_labelled_records(real: tuple, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    cases = real[1][:8]
    good = [g for _, _, g in cases]
    run = write_run(tmp_path / "run", {"base": degenerate("the other style", cases),
                                       "tuned": good, "mute": [""] * len(cases)}, (real[0], cases))
    assert all(d["style_hit"] for d in scored((real[0], cases), good))
    assert main([str(run), "--metrics"]) == 0
    assert "style-metrics (deterministic): 24 pairs: 24 verdicts (0 ties because" in capsys.readouterr().out
    path = run / METRICS_RESULT_NAME
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 3 * len(cases) and all(r["judge"] == METRICS_JUDGE for r in records)
    found, errors = verdicts.read([path])
    assert not errors and {v.source for v in found} == {"judge style-metrics (deterministic)"}
    for r, v in zip(records, found, strict=True):
        pair = (r["endpoints"]["A"]["name"], r["endpoints"]["B"]["name"])
        names = tuple(sorted(pair, key=["base", "mute", "tuned"].index))  # run_items' order: base first
        assert pair == shown_order(42, r["prompt"], r["style"], names=names)  # as the web page draws A/B
        assert r["orders_agree"] is True and r["answers"][1] == {"A": "B", "B": "A"}.get(r["answers"][0],
                                                                                         r["answers"][0])
        assert set(r["scores"]) == {"A", "B"} and r["settings"]["tie_within"] == TIE
        expected = "both bad" if "tuned" not in pair else "tuned"
        assert (v.winner() or v.verdict) == expected, r  # the good replies win; two failures are both bad


def test_the_metrics_judge_names_what_is_missing(real: tuple, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    good = [g for _, _, g in real[1]]
    run = write_run(tmp_path / "run", {"base": good, "tuned": good}, real)
    details = run / "results" / "tuned" / "style_eval.json"
    details.write_text(json.dumps({"details": scored(real, good[::-1])}), encoding="utf-8")  # unwrapped too
    with pytest.raises(JudgeError, match="not the replies of predictions/ in their order"):
        judge_pairs_by_metrics(run)
    details.unlink()
    with pytest.raises(JudgeError, match=r"found 0 \(did the run finish\?\)"):
        judge_pairs_by_metrics(run)
    for argv, problem in (([str(run)], "give either --api URL and --model NAME"),
                          ([str(run), "--metrics", "--api", "http://x/v1", "--model", "m"], "not both"),
                          ([str(run), "--api", "http://x/v1"], "needs both --api URL and --model NAME"),
                          ([str(run), "--metrics", "--tie-within", "-1"], "give points from 0 to 200")):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 1 and problem in capsys.readouterr().err


def test_a_pair_is_judged_against_the_style_both_sides_share_or_none() -> None:
    from style_tune.eval.pairwise_judge import pair_style

    gentle, snarky = STYLES
    assert pair_style(gentle, gentle) == gentle  # controllable: the style asked of both
    assert pair_style(None, snarky) == snarky == pair_style(snarky, None)  # label: base vs a tuned model
    assert pair_style(gentle, snarky) is None and pair_style(snarky, gentle) is None  # two tuned, two labels
    assert pair_style(None, None) is None
