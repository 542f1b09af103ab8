"""`make bench-gen-data`: rows/s of `make gen-data`'s client at CONCURRENCY=1 and 8 against the local
CPU server (`make serve` on the tiny model).

    python -m benchmarks.bench_gen_data --model DIR [--prompts 16] [--max-tokens 16]
        [--out benchmarks/gen_data_bench_cpu]

The same requests at each concurrency: the first N distinct user prompts of the shipped CSV, both
styles, the shipped generation prompts and few-shot examples, greedy decoding, at most --max-tokens
reply tokens (the tiny model rarely stops early). Asked by the step's own code (``plan_requests`` +
``ask_all``: the official async ``openai`` client, the journal) into a fresh journal each time, after
one warm-up request. rows/s = answered requests / wall time of the asking; the validation of the
answers (the judge included) is timed once. Writes OUT.json and OUT.md atomically, with the core
count and the load averages before and after (other work on the machine shows there).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from style_tune.core.io import write_files_atomically
from style_tune.core.styles import load_styles
from style_tune.data.gen.client import Tally, ask_all, make_client
from style_tune.data.gen.journal import Journal, plan_requests, read_journal
from style_tune.data.gen.validate import DEFAULT_JUDGE_DATA, Answer, load_judge, validate
from style_tune.deploy.serving import SERVED_MODEL_NAME, serve_model

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCIES = (1, 8)


def first_prompts(n: int) -> list[str]:
    seen: dict[str, None] = {}
    with open(ROOT / "style_data" / "style_chat_data.csv", encoding="utf-8-sig", newline="") as handle:
        for row in csv.DictReader(handle):
            seen.setdefault(row["user"], None)
            if len(seen) == n:
                break
    return list(seen)


async def ask(base_url: str, requests, concurrency: int, journal_path: Path) -> tuple[float, Tally]:
    client = make_client(base_url, timeout=600, max_retries=0)
    journal = Journal(journal_path)
    journal.open()
    try:
        start = time.perf_counter()
        tally = await ask_all(requests, client, journal, concurrency=concurrency, timeout=600, max_retries=0,
                              progress=False)
        return time.perf_counter() - start, tally
    finally:
        journal.close()
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="model directory (the tiny model)")
    parser.add_argument("--prompts", type=int, default=16, help="distinct prompts (x2 styles; default 16)")
    parser.add_argument("--max-tokens", type=int, default=16, help="reply tokens at most (default 16)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, alternating the order (default 2)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "gen_data_bench_cpu")
    args = parser.parse_args()

    styles = load_styles()
    for style in styles:
        style.settings.update(temperature=0, max_tokens=args.max_tokens)
    prompts = first_prompts(args.prompts)
    requests = plan_requests(prompts, styles, styles.labels, 1, SERVED_MODEL_NAME, 42)
    load_before = os.getloadavg()
    results = []
    server = serve_model(args.model, mode="controllable", style=styles.labels[0])
    with server, tempfile.TemporaryDirectory() as tmp:
        asyncio.run(ask(server.base_url, requests[:1], 1, Path(tmp) / "warmup.jsonl"))
        # alternate the order round by round, so that a change in the machine's load hits both sides
        order = [c for r in range(args.rounds)
                 for c in (CONCURRENCIES if r % 2 == 0 else CONCURRENCIES[::-1])]
        for round_, concurrency in enumerate(order):
            journal = Path(tmp) / f"{round_}-c{concurrency}.journal.jsonl"
            seconds, tally = asyncio.run(ask(server.base_url, requests, concurrency, journal))
            answers = read_journal(journal)
            results.append({"round": round_ // len(CONCURRENCIES) + 1, "concurrency": concurrency,
                            "requests": len(requests), "answered": tally.answered,
                            "failed": len(tally.failed), "seconds": round(seconds, 2),
                            "rows_per_s": round(tally.answered / seconds, 3),
                            "completion_tokens": tally.completion_tokens,
                            "completion_tokens_per_s": round(tally.completion_tokens / seconds, 1)})
            print(f"bench-gen-data: CONCURRENCY={concurrency}: {tally.answered} rows in {seconds:.1f} s = "
                  f"{tally.answered / seconds:.2f} rows/s", flush=True)
        judged = []

        def get_judge():
            judged.append(True)
            return load_judge(DEFAULT_JUDGE_DATA, 42)

        start = time.perf_counter()
        items = [Answer(r.user, r.style, answers[r.key]["reply"], answers[r.key]["finish_reason"])
                 for r in requests if r.key in answers]
        reasons = validate(items, styles, get_judge)
        validate_s = time.perf_counter() - start
        startup_s = server.startup_s
    load_after = os.getloadavg()

    import openai

    report = {
        "command": f"make bench-gen-data (python -m benchmarks.bench_gen_data --model {args.model} "
                   f"--prompts {args.prompts} --max-tokens {args.max_tokens})",
        "time_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_before": [round(x, 2) for x in load_before],
                    "load_after": [round(x, 2) for x in load_after]},
        "versions": {"openai": openai.__version__},
        "server_startup_s": round(startup_s or 0, 1),
        "settings": {"prompts": len(prompts), "styles": list(styles.labels), "max_tokens": args.max_tokens,
                     "temperature": 0, "few_shot_examples": len(styles[styles.labels[0]].examples)},
        "results": results,
        "validate_s": round(validate_s, 2),
    }
    busy = load_before[0] > (os.cpu_count() or 1) or load_after[0] > (os.cpu_count() or 1)
    rates = {c: sum(r["answered"] for r in results if r["concurrency"] == c)
             / sum(r["seconds"] for r in results if r["concurrency"] == c) for c in CONCURRENCIES}
    report["rows_per_s"] = {str(c): round(rate, 3) for c, rate in rates.items()}
    ratio = rates[8] / rates[1]
    lines = [
        f"# gen-data client benchmark ({report['time_utc']})", "",
        f"`{report['command']}`: {len(requests)} requests ({len(prompts)} prompts x {len(styles)} styles, "
        f"the shipped generation prompts with {report['settings']['few_shot_examples']} few-shot examples), "
        f"greedy, at most {args.max_tokens} reply tokens, against `make serve`'s CPU server on the tiny "
        "model. "
        f"{os.cpu_count()} cores; load average (1/5/15 min) before "
        f"{'/'.join(f'{x:.1f}' for x in load_before)}, after {'/'.join(f'{x:.1f}' for x in load_after)}. "
        f"openai {openai.__version__}. Server start: {report['server_startup_s']} s.", "",
    ]
    if busy:
        lines += ["**The machine was shared with other work during this run** (load above its core count): "
                  "the figures mix the client's and server's speed with their share of the CPU.", ""]
    lines += ["| round | CONCURRENCY | rows | seconds | rows/s | reply tokens/s |",
              "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['round']} | {r['concurrency']} | {r['answered']} | {r['seconds']} | "
              f"{r['rows_per_s']:.2f} | {r['completion_tokens_per_s']} |" for r in results]
    accepted = sum(not why for why in reasons)
    judge_note = ("the style judge trained" if judged else
                  "no reply passed the rules before the judge, so it was not trained")
    shown = ", ".join(f"CONCURRENCY={c}: **{rate:.2f} rows/s**" for c, rate in rates.items())
    lines += ["", f"All rounds: {shown}; 8 / 1 = **{ratio:.2f}x**.", "",
              f"Validating the last round's {len(items)} answers ({accepted} accepted: the tiny model's "
              f"replies are random tokens; {judge_note}): {validate_s:.1f} s, once per run.", ""]
    report_json = json.dumps(report, ensure_ascii=False, indent=2) + "\n"
    write_files_atomically({args.out.with_suffix(".json"): [report_json],
                      args.out.with_suffix(".md"): ["\n".join(lines)]})
    print("\n".join(lines))


if __name__ == "__main__":
    main()
