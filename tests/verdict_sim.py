"""Verdict files simulated from known Bradley–Terry strengths (Elo scale), for the ranking's tests and the
example in docs/serving.md: `python tests/verdict_sim.py docs/ranking-example.jsonl` writes that file, and
tests/eval/test_ranking.py checks that the committed one is exactly this.

Every prompt asks every pair of models once; which model is A is drawn per pair; each reply gets a length
drawn from 5..60 characters. A verdict is "both bad" with probability BOTH_BAD, else a tie with
probability TIE, else A wins with the Bradley–Terry probability 1 / (1 + 10^(-d/400)), d = A's strength -
B's + POSITION + LENGTH * log2((len A + 1) / (len B + 1)).
"""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path

#: The example's true strengths (docs/serving.md compares the fit with them).
STRENGTHS = {"base": 1000.0, "sft": 1100.0, "dpo": 1250.0, "orpo": 1180.0}
STYLES = ("温柔", "毒舌")


def simulate(strengths: dict[str, float], prompts: int, seed: int, *, position: float = 0.0,
             length: float = 0.0, tie: float = 0.0, both_bad: float = 0.0, judge: str | None = None,
             rater: str = "ann", replies: bool = True, prefix: str = "p") -> list[dict]:
    """The verdict records (the web page's fields that `make verdicts` reads)."""
    rng = random.Random(seed)
    names = sorted(strengths)
    records = []
    for p in range(prompts):
        for i, first in enumerate(names):
            for second in names[i + 1:]:
                a, b = (first, second) if rng.random() < 0.5 else (second, first)
                la, lb = rng.randint(5, 60), rng.randint(5, 60)
                d = strengths[a] - strengths[b] + position + length * math.log2((la + 1) / (lb + 1))
                draw = rng.random()
                verdict = ("both bad" if draw < both_bad else "tie" if draw < both_bad + tie
                           else "A" if rng.random() < 1 / (1 + 10 ** (-d / 400)) else "B")
                record: dict[str, object] = {
                    "prompt": f"{prefix}{p}", "style": STYLES[p % 2], "verdict": verdict,
                    "endpoints": {"A": {"name": a}, "B": {"name": b}}, "rater": None if judge else rater,
                    "judge": judge}
                if replies:
                    record["replies"] = {"A": "a" * la, "B": "b" * lb}
                records.append(record)
    return records


def example() -> list[dict]:
    """docs/serving.md's example: people (40 prompts, A favoured by 60 Elo, 10 % ties, 5 % both bad) and a
    simulated judge (the same 40 prompts, 30 % ties, longer replies favoured by 60 Elo per doubling)."""
    return (simulate(STRENGTHS, 40, 0, position=60, tie=0.10, both_bad=0.05)
            + simulate(STRENGTHS, 40, 1, length=60, tie=0.30, judge="simulated-judge"))


def lines(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(lines(example()), encoding="utf-8")
