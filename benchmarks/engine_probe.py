#!/usr/bin/env python3
"""The protocol probe and throughput run behind docs/serving.md's engine table, for any server.

    python -m benchmarks.engine_probe http://127.0.0.1:PORT/v1 [--model style-tune] [--throughput]

Asks with the official `openai` client: list models, a plain and a streamed completion, 8
concurrent requests, an unknown model name, an empty ``messages`` list, an 80,000-character input,
malformed JSON, and whether the server still answers; prints OK/ERR and what came back per check.
``--throughput``: 16 streamed requests of 64 tokens (greedy) with 1 and with 8 clients: tokens/s,
median time to first token, and how many replies came back empty. Run it from the deploy env.
"""

from __future__ import annotations

import argparse
import statistics
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from openai import OpenAI

USERS = ["今天加班到十点，好累啊", "明天要考试了", "我想减肥", "iPhone 16 又涨价了", "周末下雨", "老板又画饼",
         "室友太吵", "失恋了"]


def check(name: str, call: Callable[[], object]) -> None:
    try:
        print(f"OK   {name}: {str(call())[:200]}")
    except Exception as err:  # the probe reports every failure and goes on
        print(f"ERR  {name}: {type(err).__name__} {str(err)[:300]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base_url")
    parser.add_argument("--model", default="style-tune")
    parser.add_argument("--throughput", action="store_true")
    args = parser.parse_args()
    client = OpenAI(base_url=args.base_url, api_key="none", max_retries=0, timeout=600)
    user = [{"role": "user", "content": USERS[0]}]

    def create(**kwargs: Any) -> Any:  # a ChatCompletion, or its chunks with stream=True
        return client.chat.completions.create(**{"model": args.model, "messages": user, "max_tokens": 32,
                                                 "temperature": 0, **kwargs})

    def stream(messages: list[dict] = user, max_tokens: int = 32) -> tuple[float | None, int]:
        start, first, pieces, usage = time.perf_counter(), None, 0, None
        for chunk in create(messages=messages, max_tokens=max_tokens, stream=True,
                            stream_options={"include_usage": True}):
            if chunk.choices and chunk.choices[0].delta.content:
                pieces += 1
                first = first or time.perf_counter() - start
            usage = chunk.usage or usage
        return first, (usage.completion_tokens if usage else pieces)  # a server without usage: pieces

    def malformed() -> tuple[int, bytes] | None:  # None: the server accepted it
        request = urllib.request.Request(f"{args.base_url}/chat/completions",
                                         data=b'{"model": "x", "messages": [',
                                         headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=30)
        except urllib.error.HTTPError as err:
            return err.code, err.read()[:200]
        return None

    check("models", lambda: [m.id for m in client.models.list().data])
    check("plain", lambda: (lambda r: (r.choices[0].message.content[:60], r.choices[0].finish_reason,
                                       r.usage))(create()))
    check("stream", stream)
    check("concurrent8", lambda: [r.choices[0].finish_reason for r in ThreadPoolExecutor(8).map(
        lambda u: create(messages=[{"role": "user", "content": u}], max_tokens=16), USERS)])
    check("unknown-model", lambda: create(model="nope", max_tokens=4))
    check("empty-messages", lambda: create(messages=[], max_tokens=4))
    check("overlong", lambda: create(messages=[{"role": "user", "content": "你好" * 40_000}], max_tokens=4))
    check("malformed", malformed)
    check("alive", lambda: [m.id for m in client.models.list().data])
    if not args.throughput:
        return
    stream()  # warm-up
    for clients in (1, 8):
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(lambda u: stream([{"role": "user", "content": u}], 64), USERS * 2))
        wall = time.perf_counter() - start
        answered = [(t, n) for t, n in results if t is not None]
        tokens = sum(n for _, n in answered)
        print(f"clients={clients} empty={len(results) - len(answered)} tokens={tokens} "
              f"tok/s={tokens / wall:.1f} "
              f"ttft_median={statistics.median(t for t, _ in answered) * 1000:.0f}ms")


if __name__ == "__main__":
    main()
