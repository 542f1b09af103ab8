"""`make bench-bootstrap`: how far `make eval-retention`'s paired interval can be trusted (eval env).

    python -m benchmarks.bootstrap_coverage [--sims 400] [--rounds 2000] [--out benchmarks/bootstrap_coverage]

Coverage: for each number of items and each pair of per-item chances (base right and tuned wrong: "lost";
the reverse: "gained"), ``--sims`` simulated runs draw the items' paired outcomes, and
style_tune.eval.retention.paired_interval (the report's own function, ``--rounds`` resamples) gives the
95 % interval of the accuracy difference; the share of runs whose interval holds the true difference
(gained - lost) is its coverage (95 % when the interval is right). Seeds: on one run of 2,000 items, the
interval's ends at the report's default resamples (RETENTION_ROUNDS) from 20 seeds, to show how much the
bootstrap's own randomness moves them. Writes OUT.json (every number) and OUT.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

from style_tune.core.defaults import RETENTION_ROUNDS
from style_tune.core.io import write_files_atomically
from style_tune.eval.retention import paired_interval

ITEMS = (8, 30, 100, 300, 1000, 2000)
#: (lost, gained) chances per item: equal models with some disagreement; a tuned model 5 points worse.
CHANCES = ((0.05, 0.05), (0.15, 0.10))
SEED_ITEMS, SEEDS = 2000, 20


def coverage(items: int, lost: float, gained: float, *, sims: int, rounds: int, seed: int) -> float:
    import numpy as np

    rng = np.random.default_rng(seed)
    truth = 100 * (gained - lost)
    hits = 0
    for sim in range(sims):
        u = rng.random(items)
        # u < lost: base right, tuned wrong; lost <= u < lost + gained: the reverse; else both right
        base = [bool(x < lost or x >= lost + gained) for x in u]
        tuned = [bool(x >= lost) for x in u]
        low, high = paired_interval(base, tuned, seed=sim, rounds=rounds)
        hits += low - 1e-9 <= truth <= high + 1e-9
    return hits / sims


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sims", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/bootstrap_coverage"))
    args = parser.parse_args()
    start = time.monotonic()
    rows = []
    for items in ITEMS:
        for lost, gained in CHANCES:
            share = coverage(items, lost, gained, sims=args.sims, rounds=args.rounds, seed=items)
            rows.append({"items": items, "lost": lost, "gained": gained, "coverage": share})
            print(f"[bench-bootstrap] {items} items, lost {lost:.0%} gained {gained:.0%}: "
                  f"coverage {share:.3f}", flush=True)
    import numpy as np

    u = np.random.default_rng(0).random(SEED_ITEMS)
    base, tuned = [bool(x >= 0.14 or x < 0.08) for x in u], [bool(x >= 0.08) for x in u]
    ends = [paired_interval(base, tuned, seed=seed, rounds=RETENTION_ROUNDS) for seed in range(SEEDS)]
    lows, highs = [e[0] for e in ends], [e[1] for e in ends]
    seeds = {"items": SEED_ITEMS, "lost": 0.08, "gained": 0.06, "rounds": RETENTION_ROUNDS, "seeds": SEEDS,
             "low": lows, "high": highs}
    spread = max(max(lows) - min(lows), max(highs) - min(highs))
    command = "python -m benchmarks.bootstrap_coverage " + " ".join(sys.argv[1:])
    lines = ["# Coverage of make eval-retention's paired 95 % interval", "",
             f"`{command.strip()}` (make bench-bootstrap), {platform.python_version()}, "
             f"{time.monotonic() - start:.0f} s. Each cell: the share of {args.sims} simulated runs whose "
             f"interval (style_tune.eval.retention.paired_interval, {args.rounds} resamples) holds the true "
             "difference; 0.95 when the interval is right (one run's share has a standard error of about "
             f"{(0.95 * 0.05 / args.sims) ** 0.5:.3f}).", "",
             "| items | " + " | ".join(f"lost {lo:.0%}, gained {g:.0%}" for lo, g in CHANCES) + " |",
             "|---:|" + "---:|" * len(CHANCES)]
    for items in ITEMS:
        cells = [r["coverage"] for r in rows if r["items"] == items]
        lines.append(f"| {items} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    lines += ["", f"The bootstrap's own randomness: one run of {SEED_ITEMS} items (lost 8 %, gained 6 %), "
              f"{RETENTION_ROUNDS} resamples, seeds 0-{SEEDS - 1}: lower end "
              f"{min(lows):.2f} to {max(lows):.2f}, upper end {min(highs):.2f} to {max(highs):.2f} points "
              f"(widest spread {spread:.2f}; mean lower end {statistics.mean(lows):.2f})."]
    write_files_atomically({args.out.with_suffix(".md"): "\n".join(lines) + "\n",
                            args.out.with_suffix(".json"): json.dumps(
                                {"command": command.strip(), "sims": args.sims, "rounds": args.rounds,
                                 "coverage": rows, "seeds": seeds}, indent=1) + "\n"}, step="bench-bootstrap")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
