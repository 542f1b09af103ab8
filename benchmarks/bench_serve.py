#!/usr/bin/env python3
"""`make bench-serve`: the CPU server (`make serve`) against transformers ``generate`` in one process.

    python -m benchmarks.bench_serve --model DIR [--max-tokens 32] [--rounds 1]
        [--out benchmarks/serve_bench_cpu]

Both run the same model (float32, CPU), the same 8 prompts (the first distinct user prompts of the
shipped CSV, with the label-mode system text), greedy decoding and the same reply length, side by side
in one run:

- in process: ``model.generate`` on one prompt at a time (1 client) and on the 8 prompts as one
  left-padded batch (8 clients); time to first token = a generate of 1 new token;
- served: `make serve` (style_tune/deploy/cpu_server.py) on a free port, the official ``openai`` client,
  streaming; 1 client asks the prompts one after another, 8 clients ask them at once; time to first
  token = until the first streamed content; tokens = the server's ``usage.completion_tokens``.

tokens/s = reply tokens / wall time. Prints a table and writes OUT.json and OUT.md atomically, with the
machine's core count and load averages before and after (other work on the machine shows there).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from style_tune import REPO_ROOT
from style_tune.core.io import write_atomically
from style_tune.core.prompts import system_text
from style_tune.deploy.serving import SERVED_MODEL_NAME, serve_model

CLIENTS = (1, 8)


def prompts(n: int) -> list[list[dict[str, str]]]:
    seen: list[str] = []
    with open(REPO_ROOT / "style_data" / "style_chat_data.csv", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["user"] not in seen:
                seen.append(row["user"])
            if len(seen) == n:
                break
    system = {"role": "system", "content": system_text("label")}
    return [[system, {"role": "user", "content": user}] for user in seen]


def bench_generate(model_dir: Path, conversations: list[list[dict]], max_tokens: int,
                   rounds: int) -> list[dict]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    texts = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False)
             for c in conversations]

    def generate(batch: list[str], new_tokens: int) -> tuple[float, int]:
        inputs = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False)
        start = time.perf_counter()
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                 do_sample=False, temperature=None, top_p=None, top_k=None,
                                 pad_token_id=tokenizer.pad_token_id)
        return time.perf_counter() - start, int(out[:, inputs["input_ids"].shape[1]:].numel())

    generate(texts[:1], 2)  # warm-up
    rows = []
    for clients in CLIENTS:
        batches = [[t] for t in texts] if clients == 1 else [texts[:clients]]
        wall = tokens = 0.0
        ttft = []
        for _ in range(rounds):
            for batch in batches:
                ttft.append(generate(batch, 1)[0])
                seconds, n = generate(batch, max_tokens)
                wall, tokens = wall + seconds, tokens + n
        rows.append({"engine": "transformers generate (in process)", "clients": clients,
                     "requests": rounds * len(texts), "tokens": int(tokens), "tokens_per_s": tokens / wall,
                     "ttft_s_median": statistics.median(ttft)})
    return rows


def bench_server(model_dir: Path, conversations: list[list[dict]], max_tokens: int, rounds: int,
                 log: Path) -> tuple[list[dict], float]:
    from openai import OpenAI

    with serve_model(model_dir, mode="label", log=log) as server:
        client = OpenAI(base_url=server.base_url, api_key="none", max_retries=0, timeout=600)

        def ask(messages: list[dict]) -> tuple[float, int]:
            start, first, usage = time.perf_counter(), None, None
            stream = client.chat.completions.create(model=SERVED_MODEL_NAME, messages=messages, stream=True,
                                                    temperature=0, max_tokens=max_tokens,
                                                    stream_options={"include_usage": True})
            for chunk in stream:
                if first is None and chunk.choices and chunk.choices[0].delta.content:
                    first = time.perf_counter() - start
                usage = chunk.usage or usage
            return first or float("nan"), usage.completion_tokens

        ask(conversations[0])  # warm-up
        rows = []
        for clients in CLIENTS:
            start = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                results = list(pool.map(ask, conversations * rounds))
            wall = time.perf_counter() - start
            tokens = sum(n for _, n in results)
            rows.append({"engine": "make serve (CPU server, openai client, streamed)", "clients": clients,
                         "requests": len(results), "tokens": tokens, "tokens_per_s": tokens / wall,
                         "ttft_s_median": statistics.median(t for t, _ in results)})
        return rows, server.startup_s


def render(result: dict) -> str:
    """The Markdown report of a run (also from its JSON: ``render(json.load(...))``)."""
    rows, before, after = result["rows"], result["loadavg_before"], result["loadavg_after"]
    by = {(r["engine"].split(" ")[0], r["clients"]): r for r in rows}
    lines = [f"# CPU serving benchmark ({result['date']})", "",
             f"`make bench-serve` on `{result['model']}`: {max(CLIENTS)} prompts, {result['max_tokens']} "
             f"reply tokens each, greedy, {result['rounds']} rounds; {result['cpus']} cores, "
             f"torch {result['torch']} "
             f"({result['torch_threads']} threads), transformers {result['transformers']}. Server start: "
             f"{result['server_startup_s']:.1f} s. Load average (1/5/15 min) before "
             f"{before[0]:.1f}/{before[1]:.1f}/{before[2]:.1f}, "
             f"after {after[0]:.1f}/{after[1]:.1f}/{after[2]:.1f}."]
    if max(before[0], after[0]) > result["cpus"]:
        lines += ["", f"**The machine was shared with other work during this run** (load above its "
                      f"{result['cpus']} cores): each runnable thread gets a slice of the CPU, so the "
                      "server's "
                      "concurrent request threads win a larger share than one in-process `generate`, and the "
                      "figures mix engine speed with CPU share. Rerun `make bench-serve` on an idle machine "
                      "before comparing engines."]
    lines += ["", "| engine | clients | requests | reply tokens | tokens/s | time to first token (median) |",
              "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['engine']} | {r['clients']} | {r['requests']} | {r['tokens']} | "
              f"{r['tokens_per_s']:.1f} | {r['ttft_s_median'] * 1000:.0f} ms |" for r in rows]
    lines += ["", "| clients | served / in-process tokens/s |", "|---:|---:|"]
    lines += [f"| {c} | {by[('make', c)]['tokens_per_s'] / by[('transformers', c)]['tokens_per_s']:.2f} |"
              for c in CLIENTS]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--max-tokens", type=int, default=32, help="reply length of every request")
    parser.add_argument("--rounds", type=int, default=1, help="times each client set asks the 8 prompts")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "serve_bench_cpu")
    args = parser.parse_args(argv)
    import torch
    import transformers

    conversations = prompts(max(CLIENTS))
    load_before = os.getloadavg()
    print(f"bench_serve: {args.model}, {len(conversations)} prompts, {args.max_tokens} tokens each, "
          f"{args.rounds} rounds; in process first ...", flush=True)
    rows = bench_generate(args.model, conversations, args.max_tokens, args.rounds)
    print("bench_serve: the server ...", flush=True)
    served, startup = bench_server(args.model, conversations, args.max_tokens, args.rounds,
                                   REPO_ROOT / "outputs" / "bench_serve" / "server.log")
    rows += served
    load_after = os.getloadavg()
    result = {
        "model": str(args.model), "max_tokens": args.max_tokens, "rounds": args.rounds,
        "server_startup_s": startup, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "loadavg_before": load_before, "loadavg_after": load_after, "torch": torch.__version__,
        "transformers": transformers.__version__, "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows,
    }
    table = render(result)
    write_atomically(args.out.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    write_atomically(args.out.with_suffix(".md"), table)
    print(table)
    print(f"bench_serve: wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
