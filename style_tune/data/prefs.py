"""`make prefs`: preference pairs for XTuner's DPO / ORPO from the controllable training split.

Usage::

    python -m style_tune.data.prefs --split-dir data/controllable [--out DIR/prefs.jsonl]
        [--verdicts outputs/webui/verdicts.jsonl ...]

Every training prompt has one reply per style. For each prompt and each style S, the pair is: the
prompt with S's system text, chosen = S's reply, rejected = each other style's reply (2 styles: two
pairs per prompt). Only the controllable format has pairs: there the system text asks for a style, so
a reply in another style is a worse answer to the same prompt (in the label format the model picks the
style itself, and no reply is the wrong one).

``--verdicts``: verdict files of the blind comparison (`make webui`, `make judge-pairs`) add a pair per
decisive verdict: the preferred reply chosen, the other rejected, with the system text the replies
were asked with. Ties, "both bad" and unreadable judge answers give none; neither does a verdict on a
prompt of the split's val or test file (training on it would leak the evaluation), counted and said.

Output: one JSON object a line, the rows XTuner's ``build_preference_dataset`` reads::

    {"prompt": [{"role": "system", "content": ...}, {"role": "user", "content": ...}],
     "chosen": [{"role": "assistant", "content": ...}], "rejected": [{"role": "assistant", ...}]}

rendered by the model's chat template: for a chosen row that is the text the SFT row of the same turn
trains on (tests/train/test_prefs_train.py). Exit status 2 on bad input (``FILE: row N: ...``), writing
nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

from style_tune.core import defaults
from style_tune.core.io import write_atomically
from style_tune.core.prompts import STYLE_SYSTEMS, STYLES
from style_tune.core.steps import main_of
from style_tune.eval import verdicts as verdict_records

STEP = "prefs"
OUT_NAME = "prefs.jsonl"


#: Problems listed in full; past these, a count.
MAX_ERRORS = 10


class PrefsError(ValueError):
    """Bad input: one line per problem, each naming the file and row."""

    def __init__(self, errors: list[str] | str):
        errors = [errors] if isinstance(errors, str) else errors
        more = len(errors) - MAX_ERRORS
        super().__init__("\n".join(errors[:MAX_ERRORS] + ([f"... and {more} more"] if more > 0 else [])))


def pair(system: str, user: str, chosen: str, rejected: str) -> dict[str, list[dict[str, str]]]:
    """One preference row as XTuner reads it."""
    return {"prompt": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}]}


def pair_problem(row: object) -> str | None:
    """What is wrong with a row of a pairs file, or None: XTuner's DPO / ORPO read ``prompt`` (messages,
    the last a user's), ``chosen`` and ``rejected`` (one assistant message each, with text)."""
    if not isinstance(row, dict):
        return "not a JSON object"
    prompt = row.get("prompt")
    if not (isinstance(prompt, list) and prompt and all(isinstance(m, dict) for m in prompt)
            and prompt[-1].get("role") == "user"):
        return '"prompt" must be a list of messages ending with the user\'s'
    for key in ("chosen", "rejected"):
        reply = row.get(key)
        if not (isinstance(reply, list) and len(reply) == 1 and isinstance(reply[0], dict)
                and reply[0].get("role") == "assistant" and isinstance(reply[0].get("content"), str)
                and reply[0]["content"].strip()):
            return f'"{key}" must be one assistant message with text'
    return None


def check_pairs_file(path: Path) -> list[str]:
    """One ``FILE: row N: ...`` line per bad row of a pairs file (JSON lines), at most MAX_ERRORS."""
    errors = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        return [f"{path}: cannot read it: {err}"]
    for n, line in enumerate(lines, 1):
        try:
            problem = pair_problem(json.loads(line)) if line.strip() else None
        except json.JSONDecodeError as err:
            problem = f"not JSON ({err.msg})"
        if problem:
            errors.append(f"{path}: row {n}: {problem}")
            if len(errors) == MAX_ERRORS:
                break
    if not errors and not any(line.strip() for line in lines):
        errors.append(f"{path}: no pairs")
    return errors


def read_split(path: Path) -> list[object]:
    """The rows of a split file (`make split`'s JSON array; each row as the JSON holds it, checked by the
    caller), or PrefsError naming what is wrong."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PrefsError(f"{path}: not found; run `make split MODE=controllable` first") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PrefsError(f"{path}: cannot read it as `make split`'s JSON ({err}); run `make split` again") \
            from None
    if not isinstance(rows, list):
        raise PrefsError(f"{path}: not a JSON array of conversation rows; run `make split` again")
    return rows


def data_pairs(path: Path) -> tuple[list[dict], Counter[str]]:
    """The pairs of a controllable training split, and the chosen style of each, counted."""
    by_system = {system: style for style, system in STYLE_SYSTEMS.items()}
    replies: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    rows_of: dict[str, int] = {}
    errors = []
    for n, row in enumerate(read_split(path), 1):
        turns = row.get("conversation") if isinstance(row, dict) else None
        turn = turns[0] if isinstance(turns, list) and len(turns) == 1 and isinstance(turns[0], dict) else {}
        system, user, output = turn.get("system"), turn.get("input"), turn.get("output")
        if not (isinstance(system, str) and isinstance(user, str) and isinstance(output, str)
                and system and user and output):
            errors.append(f"{path}: row {n}: not a one-turn conversation with system, input and output")
        elif system not in by_system:
            errors.append(f"{path}: row {n}: its system text is no style's ({system[:40]!r}...): preference "
                          "pairs need the controllable format; run `make split MODE=controllable`")
        else:
            replies[user][by_system[system]].append(output)
            rows_of.setdefault(user, n)
    for user, styles in replies.items():
        missing = [style for style in STYLES if style not in styles]
        if missing:
            errors.append(f"{path}: row {rows_of[user]}: prompt {user!r} has no {'/'.join(missing)} reply: a "
                          "pair needs one reply per style; add it to the CSV (or drop the prompt), then "
                          "`make split MODE=controllable`")
    if errors:
        raise PrefsError(errors)
    pairs, counts = [], Counter[str]()
    for user, styles in replies.items():
        for style in STYLES:
            for chosen in styles[style]:
                for other in STYLES:
                    for rejected in styles[other] if other != style else ():
                        pairs.append(pair(STYLE_SYSTEMS[style], user, chosen, rejected))
                        counts[style] += 1
    return pairs, counts


def held_out_prompts(split_dir: Path) -> set[str]:
    """The prompts of the split's val and test files (what the evaluation asks)."""
    prompts: set[str] = set()
    for path in (split_dir / "val.json", split_dir / "test.json"):
        for row in read_split(path) if path.is_file() else []:
            turns = row.get("conversation") if isinstance(row, dict) else None
            prompts.update(turn["input"] for turn in turns or []
                           if isinstance(turn, dict) and isinstance(turn.get("input"), str))
    return prompts


def verdict_pairs(paths: list[Path], held_out: set[str]) -> tuple[list[dict], Counter[str]]:
    """Pairs from decisive verdicts; what was left out, counted by reason."""
    pairs, left_out, errors = [], Counter[str](), []
    for path in paths:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise PrefsError(f"{path}: cannot read it: {err}") from None
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{path}: row {n}"
            try:
                verdict = verdict_records.parse(line, where)
            except ValueError as err:
                errors.append(f"{where}: {err}")
                continue
            record = json.loads(line)
            if verdict.winner() is None:
                left_out[verdict.verdict] += 1
                continue
            if verdict.prompt in held_out:
                left_out["held-out prompt"] += 1
                continue
            replies = record.get("replies")
            side = verdict.verdict
            other = "B" if side == "A" else "A"
            system = record.get("system") or STYLE_SYSTEMS.get(verdict.style or "")
            chosen, rejected = (replies.get(s) if isinstance(replies, dict) else None for s in (side, other))
            if not (isinstance(chosen, str) and isinstance(rejected, str)
                    and chosen.strip() and rejected.strip()):
                errors.append(f"{where}: no text for both replies (\"replies\": {{\"A\": ..., \"B\": ...}})")
            elif not isinstance(system, str) or system not in STYLE_SYSTEMS.values():
                errors.append(f"{where}: its system text is no style's: only controllable-format verdicts "
                              "make pairs (the web page with MODE=controllable)")
            else:
                pairs.append(pair(system, verdict.prompt, chosen.strip(), rejected.strip()))
    if errors:
        raise PrefsError(errors)
    return pairs, left_out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m style_tune.data.prefs",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--split-dir", type=Path, default=Path(defaults.split_dir("controllable")))
    parser.add_argument("--out", type=Path, help=f"default: SPLIT_DIR/{OUT_NAME}")
    parser.add_argument("--verdicts", type=Path, nargs="*", default=[], help="verdict files (make webui)")
    args = parser.parse_args(argv)
    out = args.out or args.split_dir / OUT_NAME

    try:
        pairs, counts = data_pairs(args.split_dir / "train.json")
        extra, left_out = verdict_pairs(args.verdicts, held_out_prompts(args.split_dir))
    except PrefsError as err:
        print("\n".join(f"{STEP}: error: {line}" for line in str(err).splitlines()), file=sys.stderr)
        return 2
    lines = [json.dumps(row, ensure_ascii=False) + "\n" for row in pairs + extra]
    write_atomically(out, "".join(lines), step=STEP)
    prompts = len({row["prompt"][1]["content"] for row in pairs})
    per_style = ", ".join(f"{style} {counts[style]}" for style in STYLES)
    print(f"{STEP}: {len(pairs)} pairs from {prompts} training prompts (chosen style: {per_style})")
    if args.verdicts:
        dropped = ", ".join(f"{count} {reason}" for reason, count in sorted(left_out.items())) or "none"
        print(f"{STEP}: {len(extra)} pairs from the verdicts; left out: {dropped}")
    print(f"{STEP}: wrote {out}")
    return 0


if __name__ == "__main__":
    main_of(STEP, main)
