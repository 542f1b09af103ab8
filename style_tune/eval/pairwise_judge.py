"""The pairwise LLM judge: of two models' replies to a held-out prompt of an eval-style run, which is better?
Every pair of the run's models (base and tuned; or the two or more models of `make eval-style COMPARE=...`)
on every prompt. Asked of any OpenAI-compatible chat API; eval env.

    python -m style_tune.eval.pairwise_judge RUN_DIR --api URL --model NAME [--out FILE] [--seed 42]
        [--prompt FILE] [--concurrency N] [--timeout S] [--retries N] [--max-tokens N]
    python -m style_tune.eval.pairwise_judge RUN_DIR --metrics [--tie-within POINTS] [--out FILE] [--seed 42]

``make judge-pairs JUDGE_API=URL JUDGE_MODEL=NAME`` on STYLE_DIR's last run; the key comes from
OPENAI_API_KEY. N models give N(N-1)/2 pairs a prompt. Each pair is asked twice with the replies swapped
(the order drawn per prompt from the seed first, as the web page does, then the other one): a judge that
prefers whatever comes first would otherwise look like a verdict. The prompt file
(eval_configs/pairwise_judge_prompt.json) asks for one JSON object with ``"better"``: ``"A"``, ``"B"``,
``"tie"`` or ``"both bad"``.

- both answers name the same model (or both say tie, or both "both bad"): that verdict;
- they disagree (the judge followed the order, or cannot tell): a tie, marked ``"orders_agree": false``;
- either answer unreadable (no JSON object, two, another value) or its call failed: a record with
  ``"verdict": null, "unparsable": true``, counted apart by `make verdicts`, never as a verdict.

The records are the web page's (style_tune/eval/verdicts.py ``record``, with ``judge`` set to NAME and
both answers kept), written atomically to RUN_DIR/pairwise_verdicts.jsonl: `make verdicts
VERDICTS="outputs/webui/verdicts.jsonl STYLE_DIR/latest/pairwise_verdicts.jsonl"` counts people and
judge side by side, labelled.

``--metrics`` (``make judge-pairs JUDGE=metrics``): no LLM, no API. The same pairs, both orders, decided
from the style metrics the run's evaluator already wrote for every reply (results/MODEL/*.json, per-reply
``details`` of style_tune.eval.style_metrics.score_replies): :func:`metric_choice`. Its records name the
judge ``style-metrics (deterministic)`` (:data:`METRICS_JUDGE`), carry each reply's scores, and go to
RUN_DIR/pairwise_verdicts_metrics.jsonl, so an LLM judge's verdicts are never overwritten and `make
verdicts` fits it as a rater of its own.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from string import Template
from typing import Any, NamedTuple

from style_tune import REPO_ROOT
from style_tune.core import defaults
from style_tune.core.io import write_atomically
from style_tune.core.prompts import STYLES
from style_tune.core.steps import fail
from style_tune.eval.llm_judge import (
    CONCURRENCY,
    MAX_TOKENS,
    NO_STYLE,
    RETRIES,
    TIMEOUT_S,
    JudgeError,
    ask_judge,
    json_objects,
    judge_parser,
    make_client,
    run_items,
)
from style_tune.eval.verdicts import SIDES, VERDICTS, record, shown_order

DEFAULT_PROMPT = REPO_ROOT / "eval_configs" / "pairwise_judge_prompt.json"
RESULT_NAME = "pairwise_verdicts.jsonl"
PLACEHOLDERS = ("style", "style_description", "user", "reply_a", "reply_b")
#: The metrics judge (--metrics): its name in the records' ``judge`` (so `make verdicts` labels its verdicts
#: "judge style-metrics (deterministic)": never to be taken for an LLM's or a person's), its file, its
#: rule (named in each record's settings) and the per-reply scores each record keeps (why it decided so).
METRICS_JUDGE = "style-metrics (deterministic)"
METRICS_RESULT_NAME = "pairwise_verdicts_metrics.jsonl"
METRICS_RULE = "style_tune.eval.pairwise_judge.metric_choice"
METRIC_FIELDS = ("sane", "problems", "judged", "style_hit", "style_margin")


class Pair(NamedTuple):
    """Two models' replies to one prompt: the prompt, its style, the reply's index in the run, and the
    models in the order they are shown first (A, B)."""

    user: str
    style: str | None
    row: int  # the prompt's place in the run's predictions
    shown: tuple[str, str]


def load_prompt(path: Path) -> tuple[str, Template, dict[str, str]]:
    """The prompt file's system text, user template (every placeholder in it) and style descriptions."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        system, user, styles = data["system"], data["user"], data["styles"]
        user = "\n".join(user) if isinstance(user, list) else user
        template = Template(user)
        filled = template.substitute({name: f"\x00{name}\x00" for name in PLACEHOLDERS})
        descriptions = {style: styles[style] for style in (*STYLES, NO_STYLE)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise JudgeError(f"pairwise judge prompt {path}: {err!r}: it needs 'system', 'user' (placeholders "
                         f"{', '.join('$' + p for p in PLACEHOLDERS)}) and 'styles' for "
                         f"{', '.join((*STYLES, NO_STYLE))}") from err
    missing = [f"${name}" for name in PLACEHOLDERS if f"\x00{name}\x00" not in filled]
    if missing or not isinstance(system, str):
        raise JudgeError(f"pairwise judge prompt {path}: 'user' lacks {', '.join(missing) or 'nothing'}; "
                         "'system' must be a string")
    return system, template, descriptions


def parse_choice(answer: str | None) -> tuple[str | None, str | None]:
    """("A" | "B" | "tie" | "both bad", None), or (None, what is wrong): exactly one JSON object whose
    ``better`` is one of those (prose or a code fence around it is allowed)."""
    if not answer or not answer.strip():
        return None, "empty answer"
    objects = json_objects(answer)
    if len(objects) != 1:
        return None, f"{len(objects)} JSON objects (one expected)"
    better = objects[0].get("better")
    if better not in VERDICTS:
        return None, f"'better' is {better!r}, none of {', '.join(VERDICTS)}"
    return better, None


def combine(first: str, second: str, shown: tuple[str, str]) -> tuple[str, bool]:
    """The verdict, in the first order's A/B (SHOWN: the models as A and B there), from the choice in
    that order and the one in the swapped order; and whether the two agree. Disagreeing: a tie."""
    def winner(choice: str, order: tuple[str, str]) -> str:
        return dict(zip(SIDES, order, strict=True)).get(choice, choice)  # a model name, tie or both bad

    one, other = winner(first, shown), winner(second, shown[::-1])
    if one != other:
        return "tie", False
    return {shown[0]: "A", shown[1]: "B"}.get(one, one), True


def pair_style(one: str | None, other: str | None) -> str | None:
    """The style a pair's replies are judged against. Controllable: the one asked (both sides have it).
    Label: the one a tuned reply announces (the base announces none); when both announce one and they
    differ, none: judging against either would favour the side that chose it."""
    styles = {one, other} - {None}
    return styles.pop() if len(styles) == 1 else None


def run_pairs(run_dir: Path, seed: int) -> tuple[dict[str, list[dict]], list[Pair]]:
    """The run's replies per model (style_tune.eval.llm_judge.run_items), and every pair of its models on
    every prompt, each with the order its A and B are shown in first (drawn from SEED as the web page
    draws it)."""
    items = run_items(run_dir)
    if len(items) < 2 or len({len(replies) for replies in items.values()}) != 1:
        raise JudgeError(f"{run_dir}: the pairwise judge needs two or more models' replies to the same "
                         f"prompts (found {', '.join(f'{k}: {len(v)}' for k, v in items.items())})")
    names = list(items)
    for rows in zip(*items.values(), strict=True):
        if len({row["user"] for row in rows}) != 1:
            raise JudgeError(f"{run_dir}: the predictions of {', '.join(names)} are not in the same prompt "
                             "order")
    pairs = []
    for first, second in itertools.combinations(names, 2):  # base first: base vs tuned as before
        for row, (one, other) in enumerate(zip(items[first], items[second], strict=True)):
            style = pair_style(one["style"], other["style"])
            shown = shown_order(seed, one["user"], style, names=(first, second))
            pairs.append(Pair(one["user"], style, row, shown))
    return items, pairs


def judge_pairs(run_dir: Path, *, api: str, model: str, prompt_path: Path = DEFAULT_PROMPT,
                seed: int = defaults.SEED, out: Path | None = None, concurrency: int = CONCURRENCY,
                timeout: float = TIMEOUT_S, retries: int = RETRIES,
                max_tokens: int = MAX_TOKENS) -> list[dict]:
    """Judge every pair of the run's models on every prompt; write the records; return them."""
    run_dir = run_dir.resolve()
    system, template, descriptions = load_prompt(prompt_path)
    items, pairs = run_pairs(run_dir, seed)
    conversations = []
    for pair in pairs:
        for order in (pair.shown, pair.shown[::-1]):
            text = template.substitute(
                style=pair.style or NO_STYLE, user=pair.user, reply_a=items[order[0]][pair.row]["reply"],
                reply_b=items[order[1]][pair.row]["reply"],
                style_description=descriptions[pair.style if pair.style in STYLES else NO_STYLE])
            conversations.append([{"role": "system", "content": system}, {"role": "user", "content": text}])
    client = make_client(api, timeout, retries)
    answers = ask_judge(conversations, client=client, model=model, concurrency=concurrency,
                        max_tokens=max_tokens, label="pairs (each in both orders)")
    if answers and all(a["error"] for a in answers):
        raise JudgeError(f"no judge call to {api} succeeded; the first error: {answers[0]['error']}")
    records = []
    for n, pair in enumerate(pairs):
        asked = answers[2 * n: 2 * n + 2]
        choices = [(None, a["error"]) if a["error"] else parse_choice(a["answer"]) for a in asked]
        fields: dict[str, Any] = dict(prompt=pair.user, style=pair.style, system=None, seed=seed, judge=model,
                      replies={side: items[name][pair.row]["reply"]
                               for side, name in zip(SIDES, pair.shown, strict=True)},
                      endpoints={side: {"name": name, "api": api}
                                 for side, name in zip(SIDES, pair.shown, strict=True)},
                      settings={"temperature": 0.0, "max_tokens": max_tokens, "prompt": str(prompt_path)},
                      answers=[a["answer"] for a in asked])
        first, second = choices[0][0], choices[1][0]
        if first is None or second is None:
            records.append(record(verdict=None, unparsable=True, problems=[p for _, p in choices], **fields))
        else:
            verdict, agree = combine(first, second, pair.shown)
            records.append(record(verdict=verdict, orders_agree=agree, **fields))
    write_atomically(out or run_dir / RESULT_NAME,
                     "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return records


# ------------------------------------------------------------------------------ the metrics judge

def metric_choice(a: dict, b: dict, tie_within: float = defaults.METRIC_JUDGE_TIE) -> str:
    """"A", "B", "tie" or "both bad" for two replies shown as A and B, from their per-reply style scores
    (``style_hit`` and ``style_margin`` of style_tune.eval.style_metrics.score_replies's details).

    - a reply that does not count for style (not a style hit: not sane, the style asked for / announced
      not the one the judge reads, or neither style) is bad; both bad: "both bad";
    - one good: it wins, however clear the other's style;
    - both good: the clearer style wins, by the margin (the judge's probability of the style asked for
      minus that of the other style, points), unless the two margins are within TIE_WITHIN points: a tie.

    Nothing depends on which reply is A: swapping A and B swaps the answer (tested)."""
    good_a, good_b = bool(a["style_hit"]), bool(b["style_hit"])
    if not (good_a or good_b):
        return "both bad"
    if good_a != good_b:
        return "A" if good_a else "B"
    difference = float(a["style_margin"]) - float(b["style_margin"])
    if abs(difference) <= tie_within:
        return "tie"
    return "A" if difference > 0 else "B"


def run_scores(run_dir: Path, items: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """Per model, the per-reply scores the run's evaluator wrote (results/MODEL/*.json, ``details``), in
    the order of its predictions (checked reply by reply)."""
    scores = {}
    for name, replies in items.items():
        files = sorted((run_dir / "results" / name).glob("*.json"))
        if len(files) != 1:
            raise JudgeError(f"{run_dir / 'results' / name}: expected one results file of the style "
                             f"evaluation, found {len(files)} (did the run finish?)")
        try:
            # OpenCompass's evaluator keeps each field of a detail as the list of the prompt's samples
            # (BaseEvaluator.evaluate; one sample here): unwrapped
            details = [{key: value[0] for key, value in d.items() if key != "example_abbr"}
                       if isinstance(d["prediction"], list) else d
                       for d in json.loads(files[0].read_text(encoding="utf-8"))["details"]]
            if len(details) != len(replies) or any(d["prediction"] != r["prediction"]
                                                   for d, r in zip(details, replies, strict=True)):
                raise ValueError("its details are not the replies of predictions/ in their order")
            scores[name] = [{key: d[key] for key in METRIC_FIELDS} for d in details]
        except (ValueError, KeyError, TypeError) as err:
            raise JudgeError(f"{files[0]}: no per-reply scores of the style evaluation ({err!r}): run "
                             "make eval-style again") from err
    return scores


def judge_pairs_by_metrics(run_dir: Path, *, seed: int = defaults.SEED, out: Path | None = None,
                           tie_within: float = defaults.METRIC_JUDGE_TIE) -> list[dict]:
    """The metrics judge on every pair of the run's models on every prompt, both orders; write the
    records (default RUN_DIR/pairwise_verdicts_metrics.jsonl); return them."""
    run_dir = run_dir.resolve()
    items, pairs = run_pairs(run_dir, seed)
    scores = run_scores(run_dir, items)
    records = []
    for pair in pairs:
        shown = {side: scores[name][pair.row] for side, name in zip(SIDES, pair.shown, strict=True)}
        choices = [metric_choice(shown["A"], shown["B"], tie_within),
                   metric_choice(shown["B"], shown["A"], tie_within)]  # swapped: B shown first
        verdict, agree = combine(choices[0], choices[1], pair.shown)
        records.append(record(
            verdict=verdict, orders_agree=agree, prompt=pair.user, style=pair.style, system=None, seed=seed,
            judge=METRICS_JUDGE,
            replies={side: items[name][pair.row]["reply"] for side, name in zip(SIDES, pair.shown,
                                                                                  strict=True)},
            endpoints={side: {"name": name} for side, name in zip(SIDES, pair.shown, strict=True)},
            settings={"rule": METRICS_RULE, "tie_within": tie_within, "run": run_dir.name},
            answers=choices, scores=shown))
    write_atomically(out or run_dir / METRICS_RESULT_NAME,
                     "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return records


def main(argv: list[str] | None = None) -> int:
    parser = judge_parser(__doc__, DEFAULT_PROMPT, api_required=False)
    parser.add_argument("--out", type=Path, help=f"the records (default: RUN_DIR/{RESULT_NAME}, with "
                        f"--metrics RUN_DIR/{METRICS_RESULT_NAME})")
    parser.add_argument("--seed", type=int, default=defaults.SEED, help="draws each pair's first order")
    parser.add_argument("--metrics", action="store_true",
                        help="no LLM: decide from the run's style metrics (deterministic; see above)")
    parser.add_argument("--tie-within", type=float, default=defaults.METRIC_JUDGE_TIE,
                        help="--metrics: two style hits whose margins differ by at most this many points tie")
    args = parser.parse_args(argv)
    if args.metrics == bool(args.api or args.model):
        fail("judge-pairs", "give either --api URL and --model NAME (an LLM judge) or --metrics (the style "
             "metrics), not both")
    if not args.metrics and not (args.api and args.model):
        fail("judge-pairs", "an LLM judge needs both --api URL and --model NAME")
    if not 0 <= args.tie_within <= 200:
        fail("judge-pairs", f"--tie-within {args.tie_within}: give points from 0 to 200 (margins run "
             "from -100 to 100)")
    try:
        if args.metrics:
            records = judge_pairs_by_metrics(args.run_dir, seed=args.seed, out=args.out,
                                             tie_within=args.tie_within)
        else:
            records = judge_pairs(args.run_dir, api=args.api, model=args.model, prompt_path=args.prompt,
                                  seed=args.seed, out=args.out, concurrency=args.concurrency,
                                  timeout=args.timeout, retries=args.retries, max_tokens=args.max_tokens)
    except JudgeError as err:
        fail("judge-pairs", str(err))
    unparsable = sum(r["verdict"] is None for r in records)
    disagree = sum(r.get("orders_agree") is False for r in records)
    out = args.out or args.run_dir.resolve() / (METRICS_RESULT_NAME if args.metrics else RESULT_NAME)
    judge = METRICS_JUDGE if args.metrics else args.model
    print(f"[judge-pairs] {judge}: {len(records)} pairs: {len(records) - unparsable} verdicts ({disagree} "
          f"ties because the two orders disagreed), {unparsable} unparsable; {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
