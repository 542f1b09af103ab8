"""Score replies from anywhere (an API, another framework) with the style evaluation's own code.

    python -m style_tune.eval.score_replies REPLIES.jsonl [--data-dir data] [--out scores.json]

REPLIES.jsonl holds one JSON object per line:

    {"user": "今天加班到十点，好累啊", "style": "温柔", "reply": "辛苦啦，早点休息哦🌸"}
    {"user": "...", "system": "You are Qwen, created by Alibaba Cloud. ...", "reply": "毒舌\\n..."}

- ``user``: the user's message; ``reply``: the model's reply (text, may be empty);
- ``style`` (温柔 / 毒舌, or gentle / snarky): controllable mode, the style that was asked for; or
  ``system``: the system text that was sent, one that style_tune.core.prompts writes (Qwen's default one:
  label mode, where the reply starts with its label line; a style instruction: controllable mode);
- optional ``finish_reason``: OpenAI's field; ``"length"`` marks a reply cut off at the token budget.

Every row must be of one mode. The style judge is trained on DATA_DIR/<mode>/train.json; a reply to a
held-out prompt of DATA_DIR/<mode>/test.json is also compared with that prompt's references (chrF,
ROUGE-L). Scoring is style_tune.eval.style_metrics.score_replies, the same function as the OpenCompass
evaluator of `make eval-style`; the printed table is the report's (style_tune/eval/report.py). Bad rows are
listed as FILE:LINE: field: problem and nothing is scored.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from style_tune.core.io import json_objects, write_atomically
from style_tune.core.prompts import STYLE_SLUGS, STYLES, resolve_style, system_text
from style_tune.eval.report import metric_table
from style_tune.eval.style_metrics import (
    StyleJudge,
    group_prompts,
    load_rows,
    requested_style,
    row_mode,
    score_replies,
)

STEP = "score_replies"


def read_rows(path: Path) -> list[dict]:
    """The rows of a replies file with their mode and requested style; SystemExit listing every bad row."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SystemExit(f"{STEP}: {path}: no such file (REPLIES= names a JSON-lines file)") from None
    except UnicodeDecodeError as err:
        raise SystemExit(f"{STEP}: {path}: not UTF-8 text ({err})") from None
    rows = []
    objects, problems = json_objects(path, text)
    for number, row in objects:
        where = f"{path}:{number}"
        bad = [f"{where}: {field}: missing or not a string" for field in ("user", "reply")
               if not isinstance(row.get(field), str)]
        if not bad and not row["user"].strip():
            bad.append(f"{where}: user: empty")
        style: str | None = None  # mode, system and style: the row's, set below unless it is bad
        mode = system = ""
        if ("style" in row) == ("system" in row):
            names = "|".join((*STYLES, *STYLE_SLUGS.values()))
            bad.append(f"{where}: style / system: give exactly one of them (style: {names}; "
                       "system: the system text that was sent)")
        elif "style" in row:
            try:
                style = resolve_style(str(row["style"]))
                mode, system = "controllable", system_text("controllable", style)
            except ValueError as err:
                bad.append(f"{where}: style: {err}")
        else:
            system = row["system"]
            try:
                if not isinstance(system, str):
                    raise ValueError("not a string")
                mode, style = row_mode(system), requested_style(system)
                system = system_text(mode, style)
            except ValueError as err:
                bad.append(f"{where}: system: {err}; or give `style` instead")
        reason = row.get("finish_reason")
        if reason is not None and not isinstance(reason, str):
            bad.append(f"{where}: finish_reason: not a string")
        if bad:
            problems += bad
            continue
        rows.append({"line": number, "user": row["user"], "reply": row["reply"], "mode": mode,
                     "system": system, "requested": style, "cut_off": reason == "length"})
    if not rows and not problems:
        problems.append(f"{path}: no rows")
    modes = {row["mode"] for row in rows}
    if len(modes) > 1:
        first = {mode: next(r["line"] for r in rows if r["mode"] == mode) for mode in sorted(modes)}
        seen = ", ".join(f"{m} from line {n}" for m, n in first.items())
        problems.append(f"{path}: rows of both modes ({seen}): score each mode's file on its own")
    if problems:
        raise SystemExit(f"{STEP}: {len(problems)} problem(s), nothing scored:\n" + "\n".join(problems))
    return rows


def score_file(path: Path, data_dir: Path) -> tuple[str, dict]:
    """(mode, score_replies' result) for a replies file."""
    rows = read_rows(path)
    mode = rows[0]["mode"]
    train, test = data_dir / mode / "train.json", data_dir / mode / "test.json"
    for split in (train, test):
        if not split.is_file():
            raise SystemExit(f"{STEP}: no {split} (the judge and the references of {mode}-mode replies): "
                             f"run `make split MODE={mode}` (or --data-dir)")
    judge = StyleJudge.from_split(train)
    references = {(s["system"], s["input"]): s["references"] for s in group_prompts(load_rows(test), mode)}
    return mode, score_replies(
        [row["reply"] for row in rows],
        [references.get((row["system"], row["user"]), []) for row in rows],
        [row["requested"] for row in rows], mode, judge,
        users=[row["user"] for row in rows], runaway=[row["cut_off"] for row in rows],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("replies", help="JSON lines: user, style or system, reply")
    parser.add_argument("--data-dir", type=Path, default=Path("data"),
                        help="where `make split` wrote <mode>/{train,test}.json (default: data)")
    parser.add_argument("--out", type=Path, help="also write the scores and per-reply details (JSON)")
    args = parser.parse_args(argv)
    if not args.replies:  # make score-replies without REPLIES=
        print("score-replies: give REPLIES=FILE.jsonl (rows: user, style or system, reply)", file=sys.stderr)
        return 2
    args.replies = Path(args.replies)
    mode, result = score_file(args.replies, args.data_dir)
    details = result["details"]
    with_refs = sum(d["chrf"] is not None for d in details)
    print(f"{args.replies}: {len(details)} {mode}-mode replies ({with_refs} to held-out prompts with "
          f"references); judge: {args.data_dir / mode / 'train.json'}")
    print("\n".join(metric_table(mode, {"replies": result})))
    if args.out:
        write_atomically(args.out, json.dumps(result, ensure_ascii=False, indent=1).encode("utf-8"))
        print(f"[scores] {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
