"""The pairwise judge's reading of answers (style_tune/eval/pairwise_judge.py), on hand-written answers:
what counts as a choice, how the two orders combine into one verdict, and the prompt file's checks.
The live run, with the CPU server as a junk judge: tests/eval/test_eval_make_targets.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from style_tune.eval.llm_judge import JudgeError
from style_tune.eval.pairwise_judge import DEFAULT_PROMPT, combine, load_prompt, parse_choice


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
