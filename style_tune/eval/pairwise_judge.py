"""The pairwise LLM judge: of two models' replies to a held-out prompt of an eval-style run, which is better?
Every pair of the run's models (base and tuned; or the two or more models of `make eval-style COMPARE=...`)
on every prompt. Asked of any OpenAI-compatible chat API; eval env.

    python -m style_tune.eval.pairwise_judge RUN_DIR --api URL --model NAME [--out FILE] [--seed 42]
        [--prompt FILE] [--concurrency N] [--timeout S] [--retries N] [--max-tokens N]

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
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from string import Template

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


def judge_pairs(run_dir: Path, *, api: str, model: str, prompt_path: Path = DEFAULT_PROMPT,
                seed: int = defaults.SEED, out: Path | None = None, concurrency: int = CONCURRENCY,
                timeout: float = TIMEOUT_S, retries: int = RETRIES,
                max_tokens: int = MAX_TOKENS) -> list[dict]:
    """Judge every pair of the run's models on every prompt; write the records; return them."""
    run_dir = run_dir.resolve()
    system, template, descriptions = load_prompt(prompt_path)
    items = run_items(run_dir)
    if len(items) < 2 or len({len(replies) for replies in items.values()}) != 1:
        raise JudgeError(f"{run_dir}: the pairwise judge needs two or more models' replies to the same "
                         f"prompts (found {', '.join(f'{k}: {len(v)}' for k, v in items.items())})")
    names = list(items)
    for rows in zip(*items.values(), strict=True):
        if len({row["user"] for row in rows}) != 1:
            raise JudgeError(f"{run_dir}: the predictions of {', '.join(names)} are not in the same prompt "
                             "order")
    pairs, conversations = [], []
    for first, second in itertools.combinations(names, 2):  # base first: base vs tuned as before
        for one, other in zip(items[first], items[second], strict=True):
            # controllable: the requested style; label: the one the second (tuned) reply announces
            style = other["style"] or one["style"]
            replies = {first: one["reply"], second: other["reply"]}
            shown = shown_order(seed, one["user"], style, names=(first, second))
            pairs.append((one["user"], style, replies, shown))
            for order in (shown, shown[::-1]):
                text = template.substitute(
                    style=style or NO_STYLE, user=one["user"], reply_a=replies[order[0]],
                    reply_b=replies[order[1]],
                    style_description=descriptions[style if style in STYLES else NO_STYLE])
                conversations.append([{"role": "system", "content": system},
                                      {"role": "user", "content": text}])
    client = make_client(api, timeout, retries)
    answers = ask_judge(conversations, client=client, model=model, concurrency=concurrency,
                        max_tokens=max_tokens, label="pairs (each in both orders)")
    if answers and all(a["error"] for a in answers):
        raise JudgeError(f"no judge call to {api} succeeded; the first error: {answers[0]['error']}")
    records = []
    for n, (user, style, replies, shown) in enumerate(pairs):
        asked = answers[2 * n: 2 * n + 2]
        choices = [(None, a["error"]) if a["error"] else parse_choice(a["answer"]) for a in asked]
        fields = dict(prompt=user, style=style, system=None, seed=seed, judge=model,
                      replies={side: replies[name] for side, name in zip(SIDES, shown, strict=True)},
                      endpoints={side: {"name": name, "api": api}
                                 for side, name in zip(SIDES, shown, strict=True)},
                      settings={"temperature": 0.0, "max_tokens": max_tokens, "prompt": str(prompt_path)},
                      answers=[a["answer"] for a in asked])
        if any(choice is None for choice, _ in choices):
            records.append(record(verdict=None, unparsable=True, problems=[p for _, p in choices], **fields))
        else:
            verdict, agree = combine(choices[0][0], choices[1][0], shown)
            records.append(record(verdict=verdict, orders_agree=agree, **fields))
    out = out or run_dir / RESULT_NAME
    write_atomically(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return records


def main(argv: list[str] | None = None) -> int:
    parser = judge_parser(__doc__, DEFAULT_PROMPT)
    parser.add_argument("--out", type=Path, help=f"the records (default: RUN_DIR/{RESULT_NAME})")
    parser.add_argument("--seed", type=int, default=defaults.SEED, help="draws each pair's first order")
    args = parser.parse_args(argv)
    try:
        records = judge_pairs(args.run_dir, api=args.api, model=args.model, prompt_path=args.prompt,
                              seed=args.seed, out=args.out, concurrency=args.concurrency,
                              timeout=args.timeout, retries=args.retries, max_tokens=args.max_tokens)
    except JudgeError as err:
        fail("judge-pairs", str(err))
    unparsable = sum(r["verdict"] is None for r in records)
    disagree = sum(r.get("orders_agree") is False for r in records)
    out = args.out or args.run_dir.resolve() / RESULT_NAME
    print(f"[judge-pairs] {len(records)} pairs: {len(records) - unparsable} verdicts ({disagree} ties "
          f"because the two orders disagreed), {unparsable} unparsable; {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
