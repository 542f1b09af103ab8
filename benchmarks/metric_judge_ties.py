"""`make bench-metric-judge`: below which difference of two style margins the metrics judge must call a tie.

    python -m benchmarks.metric_judge_ties [--split data/controllable] [--judges 40]
        [--out benchmarks/metric_judge_ties]

The pairwise metrics judge (style_tune/eval/pairwise_judge.py ``metric_choice``, `make judge-pairs
JUDGE=metrics`) prefers, of two replies that both count for style, the one with the larger style_margin.
How large must the difference be before that preference means something? The margin comes from a
classifier trained on the split's replies (StyleJudge.from_split); another sample of the same training
data gives another classifier and other margins. So: ``--judges`` style judges, each trained on a
bootstrap resample of the train split's rows (seeded 0, 1, ...), score the held-out references (every
test prompt's reply in the style it asks for: replies that all count for style); for every two
references of the same style, the difference of their margins under the judge `make eval-style` trains
(the whole split) is compared with its sign under each resampled judge. A pair is *stable* when at least
95 % of the resampled judges order it the same way. The table: per band of the difference, the pairs and
the share stable; and per threshold T, the share of the pairs beyond T (those the rule decides) that are
stable. Writes OUT.json (every number) and OUT.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

from style_tune.core import defaults
from style_tune.core.io import write_files_atomically
from style_tune.eval.style_metrics import StyleJudge, group_prompts, load_rows, row_mode

#: Bands of |difference| (points) for the table, and the thresholds tried.
BANDS = ((0, 2), (2, 5), (5, 10), (10, 15), (15, 20), (20, 40), (40, 200))
THRESHOLDS = (0, 2, 5, 8, 10, 12, 15, 20, 25)
#: A pair is stable when this share of the resampled judges orders it as the full judge does.
STABLE = 0.95


def main() -> int:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", type=Path, default=Path(defaults.split_dir("controllable")),
                        help="a split folder (train.json, test.json), either format")
    parser.add_argument("--judges", type=int, default=40, help="style judges on bootstrap resamples")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/metric_judge_ties"))
    args = parser.parse_args()
    start = time.monotonic()
    train, test = args.split / "train.json", args.split / "test.json"
    rows = json.loads(train.read_text(encoding="utf-8"))
    turns = load_rows(test)
    mode = row_mode(turns[0].get("system"))
    samples = group_prompts(turns, mode)
    if mode == "controllable":
        texts = [s["references"][0] for s in samples]
        targets = [s["requested_style"] for s in samples]
    else:  # label mode: each prompt's references carry their label line
        from style_tune.core.prompts import split_label

        labelled = [split_label(ref) for s in samples for ref in s["references"]]
        targets, texts = [label for label, _ in labelled], [text for _, text in labelled]
    full = np.array(StyleJudge.from_split(train, seed=0).margins(texts, targets))
    resampled = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.judges):
            rng = random.Random(k)
            path = Path(tmp) / f"resample{k}.json"
            path.write_text(json.dumps([rows[rng.randrange(len(rows))] for _ in rows], ensure_ascii=False),
                            encoding="utf-8")
            resampled.append(StyleJudge.from_split(path, seed=0).margins(texts, targets))
            print(f"[bench-metric-judge] judge {k + 1} of {args.judges}", flush=True)
    margins = np.array(resampled)
    pairs = [(i, j) for i, j in itertools.combinations(range(len(texts)), 2) if targets[i] == targets[j]]
    first, second = np.array([i for i, _ in pairs]), np.array([j for _, j in pairs])
    difference = full[first] - full[second]
    agreement = (np.sign(margins[:, first] - margins[:, second]) == np.sign(difference)).mean(axis=0)
    stable = agreement >= STABLE
    size = np.abs(difference)
    bands = [{"from": lo, "to": hi, "pairs": int(sel.sum()), "stable": float(stable[sel].mean()),
              "agreement": float(agreement[sel].mean())}
             for lo, hi in BANDS if (sel := (size > lo) & (size <= hi)).any()]
    thresholds = [{"tie_within": t, "decided": float((size > t).mean()),
                   "stable": float(stable[size > t].mean())} for t in THRESHOLDS]
    spread = margins.std(axis=0)
    command = "python -m benchmarks.metric_judge_ties " + " ".join(sys.argv[1:])
    lines = ["# The metrics judge's tie tolerance", "",
             f"`{command.strip()}` (make bench-metric-judge), {platform.python_version()}, "
             f"{time.monotonic() - start:.0f} s. {len(texts)} held-out references of `{test}` ({mode}), "
             f"{len(pairs)} pairs of the same style; {args.judges} style judges on bootstrap resamples of "
             f"`{train}`'s {len(rows)} rows. A reference's margin moves by a standard deviation of "
             f"{float(np.median(spread)):.1f} points (median over references; 90th percentile "
             f"{float(np.percentile(spread, 90)):.1f}) from one resampled judge to another. A pair is stable "
             f"when {STABLE:.0%} of them order it as the full judge does.", "",
             "| difference of margins (points) | pairs | stable | mean agreement |", "|---|---:|---:|---:|"]
    lines += [f"| {b['from']}-{b['to']} | {b['pairs']} | {b['stable']:.0%} | {b['agreement']:.1%} |"
              for b in bands]
    lines += ["", "| tie within (points) | pairs decided | of them stable |", "|---:|---:|---:|"]
    lines += [f"| {t['tie_within']} | {t['decided']:.0%} | {t['stable']:.1%} |" for t in thresholds]
    write_files_atomically({args.out.with_suffix(".md"): "\n".join(lines) + "\n",
                            args.out.with_suffix(".json"): json.dumps(
                                {"command": command.strip(), "split": str(args.split), "mode": mode,
                                 "references": len(texts), "pairs": len(pairs), "judges": args.judges,
                                 "stable_share": STABLE, "median_sd": float(np.median(spread)),
                                 "bands": bands, "thresholds": thresholds}, indent=1) + "\n"},
                           step="bench-metric-judge")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
