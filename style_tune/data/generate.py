"""`make gen-data`: style replies for your own prompts through any OpenAI-compatible API, validated.

    python -m style_tune.data.generate PROMPTS --out OUT.csv [--api-base URL] [--model NAME]
        [--styles 温柔,毒舌] [--samples 1] [--concurrency 8] [--timeout 120] [--max-retries 5]
        [--column user] [--styles-file style_data/styles.json] [--judge-data CSV] [--seed 42]

The key comes from $OPENAI_API_KEY (a local server ignores it). docs/gen-data.md is the user's guide.

Each part is a module of style_tune/data/gen/, whose docstring says more:

- input (``prompts``): PROMPTS holds one prompt per line, or is a CSV (``.csv``) or JSON-lines
  (``.jsonl``) file with the prompt in column/field ``--column``; the prompts are cleaned, and the empty,
  too short or long and repeated ones dropped, with a count per reason;
- asking (``journal``, ``client``): one request per (prompt, style, sample), keyed by everything its
  answer depends on; the official ``openai`` client (async) sends them, at most --concurrency at a time,
  retrying 408/409/429/5xx, timeouts and dropped connections --max-retries times; 401/403/404 stop the
  run. Every answer goes to ``OUT.journal.jsonl`` as it arrives: a rerun (after Ctrl-C, SIGKILL, a crash
  or failed rows) asks only what has no answer there. Ctrl-C stops cleanly: in-flight requests are
  abandoned, nothing else is lost;
- validation (``validate``): the style's rules, the evaluation's style judge and near-duplicates;
- output (``output``), when every request has been tried: OUT (``user,style,assistant``, ready for
  `make split`) and ``OUT.rejected.csv`` (plus ``reason``), both written atomically. The last line
  printed is ``gen-data: requested N, accepted A, rejected R, failed F`` with N = A + R + F (failed: no
  answer after the retries; the next run asks them again).

Exit status: 0 when the run ends (failed rows included: they are counted and asked again next time);
2 on bad input or usage (one line per problem: FILE:LINE: column: what is wrong); 1 when the API
cannot be used (unreachable, key refused, unknown model); 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from style_tune.core import defaults
from style_tune.core.styles import StylesError, StyleSet, load_styles
from style_tune.data.gen import STEP, InputError
from style_tune.data.gen.client import FatalAPIError, Tally, ask_all, make_client, pick_model
from style_tune.data.gen.journal import Journal, Request, plan_requests, read_journal
from style_tune.data.gen.output import remove_stale, side_path, write_outputs
from style_tune.data.gen.prompts import Prompts, clean_prompts, read_prompts
from style_tune.data.gen.validate import DEFAULT_JUDGE_DATA, Answer, check_judge_data, load_judge, validate

DEFAULT_API_BASE = "http://127.0.0.1:23333/v1"
#: At most this many input problems are printed (the total is always given).
MAX_PRINTED_PROBLEMS = 20
EXIT_OK, EXIT_API, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m style_tune.data.generate ({STEP})",
                                     description="Style replies for your prompts through an "
                                     "OpenAI-compatible API: resumable, validated (docs/gen-data.md).")
    parser.add_argument("prompts", metavar="PROMPTS", help="one prompt a line, or .csv / .jsonl")
    parser.add_argument("--out", type=Path, required=True, help="the output CSV (user,style,assistant)")
    parser.add_argument("--api-base", default=DEFAULT_API_BASE, help=f"default {DEFAULT_API_BASE}")
    parser.add_argument("--model", default="", help="model name (default: the one the server lists)")
    parser.add_argument("--styles", default="", help="styles to ask, comma-separated (default: all)")
    parser.add_argument("--samples", type=int, default=1, help="replies per prompt and style (default 1)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per attempt (default 120)")
    parser.add_argument("--max-retries", type=int, default=5, help="retries per request (default 5)")
    parser.add_argument("--column", default="user", help="the prompt column/field of a CSV/JSONL (user)")
    parser.add_argument("--styles-file", type=Path, help="styles definition (default style_data/styles.json)")
    parser.add_argument("--judge-data", type=Path, default=DEFAULT_JUDGE_DATA,
                        help="user,style,assistant CSV the style judge learns from (default: shipped data)")
    parser.add_argument("--seed", type=int, default=defaults.SEED,
                        help=f"request seeds and the judge's (default {defaults.SEED})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.prompts:  # make gen-data without PROMPTS=
        parser.exit(EXIT_BAD_INPUT, f"{STEP}: give PROMPTS=FILE (one prompt a line, or .csv/.jsonl "
                                    "with the prompt in column PROMPT_COLUMN=)\n")
    args.prompts = Path(args.prompts)
    for name in ("samples", "concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.timeout <= 0 or args.max_retries < 0:
        parser.error("--timeout must be positive and --max-retries not negative")
    if args.out.suffix.lower() != ".csv":
        parser.error(f"--out (OUT=) must end in .csv, got {args.out}")
    return args


async def run(args: argparse.Namespace, styles: StyleSet, labels: Sequence[str], prompts: Prompts) -> int:
    out, rejected_path = args.out, side_path(args.out, ".rejected.csv")
    journal = Journal(side_path(args.out, ".journal.jsonl"))
    client = make_client(args.api_base, args.timeout, args.max_retries)
    try:
        model = await pick_model(client, args.model)
    except FatalAPIError:
        await client.close()
        raise
    requests = plan_requests(prompts.kept, styles, labels, args.samples, model, args.seed)
    answers = journal.open()
    try:
        remove_stale(out, rejected_path)
        if journal.dropped_partial or journal.unreadable:
            print(f"{STEP}: {journal.path}: dropped {int(journal.dropped_partial)} line cut short by a kill "
                  f"and {journal.unreadable} unreadable line(s); those requests are asked again",
                  file=sys.stderr)
        pending = [r for r in requests if r.key not in answers]
        others = len(answers) - (len(requests) - len(pending))
        if others:
            print(f"{STEP}: {journal.path}: {others} answer(s) to other requests (other prompts, styles or "
                  "settings) are kept there and not used", file=sys.stderr)
        print(f"{STEP}: {len(requests)} requests to {client.base_url} (model {model}, styles "
              f"{','.join(labels)}, {args.samples} sample(s)); {len(requests) - len(pending)} answered in "
              f"{journal.path}, asking {len(pending)}", file=sys.stderr, flush=True)

        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(ask_all(pending, client, journal, concurrency=args.concurrency,
                                             timeout=args.timeout, max_retries=args.max_retries,
                                             progress=not args.no_progress))
        stopped: list[signal.Signals] = []

        def stop(sig: signal.Signals) -> None:
            stopped.append(sig)
            task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop, sig)
        try:
            tally = await task
        except asyncio.CancelledError:
            if not stopped:
                raise
            print(f"\n{STEP}: stopped ({stopped[0].name}); every answer so far is in "
                  f"{journal.path}: run the same command again to ask the rest", file=sys.stderr)
            return EXIT_INTERRUPTED
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
    finally:
        journal.close()
        await client.close()

    answers = {**answers, **read_journal(journal.path)}
    return finish(requests, answers, tally, styles, args, out, rejected_path)


def finish(requests: Sequence[Request], answers: dict[str, dict], tally: Tally, styles: StyleSet,
           args: argparse.Namespace, out: Path, rejected_path: Path) -> int:
    """Validate every answered request, write OUT and OUT.rejected.csv atomically, print the counts."""
    answered = [r for r in requests if r.key in answers]
    items = [Answer(r.user, r.style, answers[r.key]["reply"], answers[r.key].get("finish_reason"))
             for r in answered]
    reasons = validate(items, styles, lambda: load_judge(args.judge_data, args.seed))
    accepted, rejected = write_outputs(out, rejected_path, items, reasons)
    failed = len(requests) - len(answered)
    first_reasons = Counter(why[0].split(":")[0] for why in reasons if why)
    if first_reasons:
        shown = ", ".join(f"{count} {reason}" for reason, count in first_reasons.most_common())
        print(f"{STEP}: rejected (first reason): {shown}; review them in {rejected_path}", file=sys.stderr)
    if tally.failed:
        commonest = Counter(tally.failed.values()).most_common(3)
        print(f"{STEP}: failed: " + "; ".join(f"{count} x {why}" for why, count in commonest)
              + " (run the same command again to ask them again)", file=sys.stderr)
    print(f"{STEP}: this run: {tally.answered} answered, {tally.retries} retries, tokens "
          f"{tally.prompt_tokens} prompt + {tally.completion_tokens} completion; wrote {out} and "
          f"{rejected_path}", file=sys.stderr)
    sys.stderr.flush()
    print(f"{STEP}: requested {len(requests)}, accepted {accepted}, rejected {rejected}, "
          f"failed {failed}", flush=True)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        styles = load_styles(args.styles_file)
        labels = [styles.resolve(name) for name in args.styles.replace("，", ",").split(",") if name.strip()]
        labels = list(dict.fromkeys(labels)) or list(styles.labels)
        check_judge_data(args.judge_data, styles, labels)
        prompts = clean_prompts(read_prompts(args.prompts, args.column), styles.prompt_bounds)
        print(prompts.summary(args.prompts), file=sys.stderr)
        if not prompts.kept:
            raise InputError([f"{args.prompts}: no prompt left after cleaning"])
        return asyncio.run(run(args, styles, labels, prompts))
    except (InputError, StylesError) as err:
        problems = err.problems if isinstance(err, InputError) else [str(err)]
        for problem in problems[:MAX_PRINTED_PROBLEMS]:
            print(f"{STEP}: {problem}", file=sys.stderr)
        if len(problems) > MAX_PRINTED_PROBLEMS:
            print(f"{STEP}: ... and {len(problems) - MAX_PRINTED_PROBLEMS} more problem(s)", file=sys.stderr)
        return EXIT_BAD_INPUT
    except FatalAPIError as err:
        print(f"{STEP}: error: {err}", file=sys.stderr)
        return EXIT_API
    except KeyboardInterrupt:  # outside the asking (which stops by itself): nothing to lose
        print(f"\n{STEP}: stopped; every answer so far is in the journal: run the same command again",
              file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
