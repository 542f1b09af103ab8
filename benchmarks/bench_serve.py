#!/usr/bin/env python3
"""`make bench-serve`: the CPU server (`make serve`) against transformers ``generate`` in one process;
`make bench-serve BENCH_SERVE_ARGS=--soak`: the server under a long mixed load.

    python -m benchmarks.bench_serve --model DIR [--max-tokens 32] [--rounds 1]
        [--out benchmarks/serve_bench_cpu]
    python -m benchmarks.bench_serve --model DIR --soak [--requests 500] [--concurrency 8]
        [--out benchmarks/serve_soak_cpu]

Both run the same model (float32, CPU), the same 8 prompts (the first distinct user prompts of the
shipped CSV, with the label-mode system text), greedy decoding and the same reply length, side by side
in one run:

- in process: ``model.generate`` on one prompt at a time (1 client) and on the 8 prompts as one
  left-padded batch (8 clients); time to first token = a generate of 1 new token;
- served: `make serve` (style_tune/deploy/cpu_server.py) on a free port, the official ``openai`` client,
  streaming; 1 client asks the prompts one after another, 8 clients ask them at once; time to first
  token = until the first streamed content; tokens = the server's ``usage.completion_tokens``.

tokens/s = reply tokens / wall time.

The soak: the server started with an API key (`make serve API_KEY=...`), then ``--requests`` requests
from ``--concurrency`` clients at once, raw HTTP; every tenth is bad, in turn a malformed JSON body, a body
over the server's 1 MiB limit and a wrong key. Every good request must get a 200 (or a 503 with
Retry-After), every bad one its 4xx (400, 413, 401); the server's resident memory after a warm-up (the
first ``--concurrency`` * 4 requests) and at the end; p50/p95 latency of the good requests; their tokens/s.

Both print a table and write OUT.json and OUT.md atomically, with the machine's core count and load
averages before and after. A run that starts on a busy machine (1-minute load over half its cores) is
labelled so in its table: its figures mix engine speed with CPU share.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import os
import platform
import statistics
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from style_tune import REPO_ROOT
from style_tune.core.io import write_atomically
from style_tune.core.prompts import system_text
from style_tune.deploy.serving import SERVED_MODEL_NAME, find_process, serve_model

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

    with serve_model(model_dir, mode="label", log=log) as server:  # loopback, no key
        client = OpenAI(base_url=server.base_url, api_key=os.environ.get("OPENAI_API_KEY") or "none",
                        max_retries=0, timeout=600)

        def ask(messages: list[dict]) -> tuple[float, int]:
            start, first, usage = time.perf_counter(), None, None
            stream = client.chat.completions.create(model=SERVED_MODEL_NAME, messages=messages, stream=True,
                                                    temperature=0, max_tokens=max_tokens,
                                                    stream_options={"include_usage": True})
            for chunk in stream:
                if first is None and chunk.choices and chunk.choices[0].delta.content:
                    first = time.perf_counter() - start
                usage = chunk.usage or usage
            if usage is None:  # the chunk stream_options asks for: without it, no token count
                raise RuntimeError("the server's stream ended without a usage chunk (include_usage)")
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
        assert server.startup_s is not None  # set when the with-block's start() returned
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
    lines += busy_warning(result)
    lines += ["", "| engine | clients | requests | reply tokens | tokens/s | time to first token (median) |",
              "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['engine']} | {r['clients']} | {r['requests']} | {r['tokens']} | "
              f"{r['tokens_per_s']:.1f} | {r['ttft_s_median'] * 1000:.0f} ms |" for r in rows]
    lines += ["", "| clients | served / in-process tokens/s |", "|---:|---:|"]
    lines += [f"| {c} | {by[('make', c)]['tokens_per_s'] / by[('transformers', c)]['tokens_per_s']:.2f} |"
              for c in CLIENTS]
    lines += ["", f"| engine | {max(CLIENTS)} clients / 1 client, tokens/s |", "|---|---:|"]
    lines += [f"| {r['engine']} | {by[(key, max(CLIENTS))]['tokens_per_s'] / r['tokens_per_s']:.2f} |"
              for key in ("transformers", "make") for r in [by[(key, 1)]]]
    return "\n".join(lines) + "\n"


def busy(result: dict) -> bool:
    """Whether the run started on a busy machine: a 1-minute load over half its cores."""
    return result["loadavg_before"][0] > result["cpus"] / 2


def busy_warning(result: dict) -> list[str]:
    if not busy(result):
        return []
    return ["", f"**The machine was busy when this run started** (1-minute load "
                f"{result['loadavg_before'][0]:.1f} on {result['cpus']} cores): the figures mix engine speed "
                "with the CPU share other work left. Rerun on an idle machine before comparing."]


#: The soak's bad requests, in turn (every tenth request), and the status each must get.
BAD = {"malformed JSON": 400, "body over 1 MiB": 413, "wrong key": 401}


def soak(model_dir: Path, conversations: list[list[dict]], max_tokens: int, requests: int, concurrency: int,
         log: Path) -> dict:
    key = "sk-bench-" + os.urandom(8).hex()
    with serve_model(model_dir, mode="label", log=log, api_key=key) as server:
        assert server.process is not None  # started by the with-block
        pid = find_process(server.process.pid, b"style_tune.deploy.cpu_server")

        def send(i: int) -> dict:
            kind = list(BAD)[(i // 10) % len(BAD)] if i % 10 == 9 else "good"
            body = json.dumps({"model": SERVED_MODEL_NAME, "messages": conversations[i % len(conversations)],
                               "max_tokens": max_tokens, "temperature": 0}).encode()
            if kind == "malformed JSON":
                body = body[:-5]
            elif kind == "body over 1 MiB":
                body = json.dumps({"model": SERVED_MODEL_NAME, "messages": [
                    {"role": "user", "content": "你" * (2**20 // 3 + 10)}]}).encode()
            headers = {"Content-Type": "application/json",
                       "Authorization": f"Bearer {'sk-wrong' if kind == 'wrong key' else key}"}
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
            start = time.perf_counter()
            status: int | str  # the HTTP status, or the name of the error that broke the connection
            try:
                connection.request("POST", "/v1/chat/completions", body=body, headers=headers)
                response = connection.getresponse()
                answer = json.loads(response.read() or b"{}")
                status, retry_after = response.status, response.getheader("Retry-After")
            except OSError as err:  # the connection broke: counted, never expected
                status, retry_after, answer = f"{type(err).__name__}", None, {}
            finally:
                connection.close()
            tokens = answer.get("usage", {}).get("completion_tokens", 0) if status == 200 else 0
            return {"kind": kind, "status": status, "retry_after": retry_after,
                    "latency_s": time.perf_counter() - start, "tokens": tokens}

        warm_up = min(requests, concurrency * 4)
        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(send, range(warm_up)))
            rss_warm = rss_kib(pid)
            start = time.perf_counter()
            measured = list(pool.map(send, range(warm_up, requests)))
            wall = time.perf_counter() - start
        rss_end = rss_kib(pid)
        load = json.load(urllib.request.urlopen(server.base_url.removesuffix("/v1") + "/health", timeout=10))
    results += measured

    def expected(r: dict) -> bool:
        if r["kind"] == "good":
            return r["status"] == 200 or (r["status"] == 503 and r["retry_after"] is not None)
        return r["status"] == BAD[r["kind"]]

    good = [r for r in measured if r["kind"] == "good" and r["status"] == 200]
    latencies = sorted(r["latency_s"] for r in good)
    statuses: dict[str, dict[str, int]] = {}
    for r in results:
        row = statuses.setdefault(r["kind"], {})
        row[str(r["status"])] = row.get(str(r["status"]), 0) + 1
    return {"requests": requests, "concurrency": concurrency, "warm_up": warm_up, "statuses": statuses,
            "unexpected": sum(not expected(r) for r in results), "rss_kib_after_warm_up": rss_warm,
            "rss_kib_end": rss_end, "rss_growth": rss_end / rss_warm - 1, "measured_s": wall,
            "good_answered": len(good), "tokens": sum(r["tokens"] for r in good),
            "tokens_per_s": sum(r["tokens"] for r in good) / wall, "requests_per_s": len(measured) / wall,
            "latency_p50_s": statistics.median(latencies),
            "latency_p95_s": statistics.quantiles(latencies, n=20)[-1], "server": load}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def render_soak(result: dict) -> str:
    """The Markdown report of a soak (also from its JSON)."""
    s = result["soak"]
    before, after = result["loadavg_before"], result["loadavg_after"]
    lines = [f"# CPU server soak ({result['date']})", "",
             f"`make bench-serve BENCH_SERVE_ARGS=--soak` on `{result['model']}`: {s['requests']} requests "
             f"from {s['concurrency']} clients at once, {result['max_tokens']} reply tokens each, greedy; "
             f"every tenth request bad ({', '.join(f'{k}: {v}' for k, v in BAD.items())} expected). "
             f"{result['cpus']} cores, torch {result['torch']} ({result['torch_threads']} threads), "
             f"transformers {result['transformers']}. "
             f"Load average (1/5/15 min) before {before[0]:.1f}/{before[1]:.1f}/{before[2]:.1f}, after "
             f"{after[0]:.1f}/{after[1]:.1f}/{after[2]:.1f}."]
    lines += busy_warning(result)
    lines += ["", "| requests | statuses |", "|---|---|"]
    lines += [f"| {kind} | {', '.join(f'{n} × {status}' for status, n in sorted(counts.items()))} |"
              for kind, counts in s["statuses"].items()]
    lines += ["", "| measure | value |", "|---|---:|",
              f"| answers not as expected | {s['unexpected']} |",
              f"| good requests answered after the warm-up ({s['warm_up']} requests) | "
              f"{s['good_answered']} |",
              f"| latency p50 / p95 (good, answered) | {s['latency_p50_s']:.2f} s / "
              f"{s['latency_p95_s']:.2f} s |",
              f"| throughput | {s['tokens_per_s']:.1f} tokens/s, {s['requests_per_s']:.1f} requests/s |",
              f"| server RSS after the warm-up / at the end | {s['rss_kib_after_warm_up'] / 1024:.0f} MiB / "
              f"{s['rss_kib_end'] / 1024:.0f} MiB ({s['rss_growth']:+.1%}) |",
              f"| server: batches / rows / refused | {s['server'].get('batches', 0)} / "
              f"{s['server'].get('rows', 0)} / {s['server'].get('refused', 0)} |"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--max-tokens", type=int, default=32, help="reply length of every request")
    parser.add_argument("--rounds", type=int, default=1, help="times each client set asks the 8 prompts")
    parser.add_argument("--soak", action="store_true", help="the soak instead: many requests, some bad")
    parser.add_argument("--requests", type=int, default=500, help="soak: requests in all")
    parser.add_argument("--concurrency", type=int, default=8, help="soak: clients at once")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: benchmarks/serve_bench_cpu (soak: benchmarks/serve_soak_cpu)")
    args = parser.parse_args(argv)
    out = args.out or REPO_ROOT / "benchmarks" / ("serve_soak_cpu" if args.soak else "serve_bench_cpu")
    import torch
    import transformers

    conversations = prompts(max(CLIENTS))
    load_before = os.getloadavg()
    log = REPO_ROOT / "outputs" / "bench_serve" / "server.log"
    result = {"model": str(args.model), "max_tokens": args.max_tokens, "cpus": os.cpu_count(),
              "torch_threads": torch.get_num_threads(), "loadavg_before": load_before,
              "torch": torch.__version__,
              "transformers": transformers.__version__, "python": platform.python_version(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if args.soak:
        print(f"bench_serve: soak, {args.requests} requests from {args.concurrency} clients ...", flush=True)
        result["soak"] = soak(args.model, conversations, args.max_tokens, args.requests, args.concurrency,
                              log)
    else:
        print(f"bench_serve: {args.model}, {len(conversations)} prompts, {args.max_tokens} tokens each, "
              f"{args.rounds} rounds; in process first ...", flush=True)
        rows = bench_generate(args.model, conversations, args.max_tokens, args.rounds)
        print("bench_serve: the server ...", flush=True)
        served, startup = bench_server(args.model, conversations, args.max_tokens, args.rounds, log)
        result.update(rounds=args.rounds, server_startup_s=startup, rows=rows + served)
    result["loadavg_after"] = os.getloadavg()
    table = render_soak(result) if args.soak else render(result)
    write_atomically(out.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    write_atomically(out.with_suffix(".md"), table)
    print(table)
    print(f"bench_serve: wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    if args.soak and result["soak"]["unexpected"]:
        print(f"bench_serve: {result['soak']['unexpected']} answers were not as expected (table above)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
