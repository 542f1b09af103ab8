"""`make verdicts VERDICTS=FILE`: count side-by-side verdicts (the web page's, people or an LLM judge).

    python -m style_tune.eval.verdicts FILE [FILE ...] [--out verdicts.md] [--anchor NAME] [--seed 42]
        [--rounds 1000] [--figure ranking.png]

One JSON object a line, as the web page (`make webui`) writes them:

    {"prompt": "...", "style": "温柔", "verdict": "A",                  # A | B | tie | both bad
     "endpoints": {"A": {"name": "tuned", ...}, "B": {"name": "base", ...}},
     "rater": "ann", "judge": null, ...}                                  # judge: the LLM judge's model

For each pair of models (endpoint names) it reports, overall and per style, and apart for people and for
each judge: wins, losses, ties and "both bad" of one model against the other; its win rate over the
decisive verdicts (wins + losses) with a 95 % Wilson interval (scipy's ``binomtest(...).proportion_ci``);
the number of prompts and raters; and the share of decisive verdicts won by the reply shown as "A" with
its interval: about 50 % when the order does not sway the raters (position bias otherwise). When the
verdicts of one kind of rater connect three models or more, a Bradley–Terry ranking follows (Elo scale,
``--anchor`` at 1000, bootstrap intervals over prompts seeded by ``--seed``, its figure to ``--figure`` or
beside ``--out``): style_tune/eval/ranking.py.

A judge's answer that could not be read is a record with ``"verdict": null, "unparsable": true`` (the
pairwise judge writes them): counted apart, in its own column, never as a verdict. A line that is not
such a record (not JSON, an unknown verdict, no mapping of A and B, the same model on both sides) is
reported as ``FILE:LINE: what is wrong`` and never counted; the command then exits 1 after printing what
the valid lines give. :func:`record` builds the records (the web page and the pairwise judge write
them); :func:`shown_order` draws which model is A.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from style_tune.core import defaults
from style_tune.core.io import write_atomically
from style_tune.core.stats import LEVEL, percent, wilson_interval
from style_tune.core.steps import fail
from style_tune.eval import ranking

VERDICTS = ("A", "B", "tie", "both bad")
#: What a judge's record holds when its answers could not be read: never a verdict.
UNPARSABLE = "unparsable"
SIDES = ("A", "B")


@dataclass(frozen=True)
class Verdict:
    where: str  # FILE:LINE
    prompt: str
    style: str | None
    a: str  # the model shown as "A"
    b: str
    verdict: str
    rater: str | None
    source: str  # "people", or "judge MODEL"
    seed: int | None = None  # the session's seed (the web page's SEED=): its order of A and B
    lengths: tuple[int, int] | None = None  # characters of the replies shown as A and B, if recorded

    def winner(self) -> str | None:
        return {"A": self.a, "B": self.b}.get(self.verdict)


def shown_order(seed: int, prompt: str, style: str | None,
                names: tuple[str, str] = ("base", "tuned")) -> tuple[str, str]:
    """Which of two models is "A" for a prompt: drawn from the seed and the prompt alone, so a reload (or
    another rater, or the judge, with the same seed) gets the same order."""
    draw = random.Random(f"{seed}\n{style}\n{prompt}").random()
    return (names[1], names[0]) if draw < 0.5 else names


def record(*, verdict: str | None, prompt: str, style: str | None, system: str | None,
           replies: dict[str, str], endpoints: dict[str, dict], settings: dict, seed: int,
           rater: str | None = None, judge: str | None = None, **extra) -> dict:
    """One verdict line: REPLIES and ENDPOINTS by side ("A", "B"); each endpoint at least its ``name``."""
    return {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "verdict": verdict, "prompt": prompt,
            "style": style, "system": system, "replies": {side: replies[side] for side in SIDES},
            "endpoints": {side: endpoints[side] for side in SIDES}, "settings": settings, "seed": seed,
            "rater": rater, "judge": judge, **extra}


def parse(line: str, where: str) -> Verdict:
    """One record, or ValueError saying what is wrong with it."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"not JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    verdict = record.get("verdict")
    if verdict is None and record.get("unparsable") is True and record.get("judge"):
        verdict = UNPARSABLE
    elif verdict not in VERDICTS:
        raise ValueError(f"verdict {verdict!r} is none of {', '.join(VERDICTS)}")
    endpoints = record.get("endpoints")
    names = [(endpoints.get(side) or {}).get("name") if isinstance(endpoints, dict) else None
             for side in SIDES]
    if not all(isinstance(name, str) and name for name in names):
        raise ValueError('no mapping of A and B to models: give "endpoints": {"A": {"name": ...}, '
                         '"B": {"name": ...}}')
    if names[0] == names[1]:
        raise ValueError(f"A and B are the same model ({names[0]!r}): nothing to compare")
    prompt = record.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise ValueError("no prompt")
    style, rater, judge = record.get("style"), record.get("rater"), record.get("judge")
    for field, value in (("style", style), ("rater", rater), ("judge", judge)):
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{field} must be a string")
    seed = record.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError("seed must be an integer")
    replies, lengths = record.get("replies"), None
    if replies is not None:
        if not (isinstance(replies, dict) and all(isinstance(replies.get(side), str) for side in SIDES)):
            raise ValueError('replies must map "A" and "B" to the reply texts')
        lengths = (len(replies["A"]), len(replies["B"]))
    return Verdict(where, prompt, style or None, names[0], names[1], verdict, rater or None,
                   f"judge {judge}" if judge else "people", seed, lengths)


def read(paths: Iterable[Path]) -> tuple[list[Verdict], list[str]]:
    """The valid records of the files, and one ``FILE:LINE: ...`` error per invalid line."""
    verdicts, errors = [], []
    for path in paths:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            errors.append(f"{path}: cannot read it: {err}")
            continue
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                verdicts.append(parse(line, f"{path}:{n}"))
            except ValueError as err:
                errors.append(f"{path}:{n}: {err}; this line is not counted")
    return verdicts, errors


def tally(verdicts: list[Verdict], first: str, second: str) -> dict:
    """FIRST against SECOND over the verdicts that compare exactly these two."""
    pair = [v for v in verdicts if {v.a, v.b} == {first, second}]
    wins = sum(v.winner() == first for v in pair)
    losses = sum(v.winner() == second for v in pair)
    a_wins = sum(v.verdict == "A" for v in pair)
    decisive = wins + losses
    unparsable = sum(v.verdict == UNPARSABLE for v in pair)
    return {"first": first, "second": second, "verdicts": len(pair) - unparsable, "wins": wins,
            "losses": losses,
            "ties": sum(v.verdict == "tie" for v in pair),
            "both_bad": sum(v.verdict == "both bad" for v in pair),
            "unparsable": sum(v.verdict == UNPARSABLE for v in pair),
            "win_rate": wins / decisive if decisive else None, "win_ci": wilson_interval(wins, decisive),
            "a_share": a_wins / decisive if decisive else None, "a_ci": wilson_interval(a_wins, decisive),
            "prompts": len({(v.prompt, v.style) for v in pair if v.verdict != UNPARSABLE}),
            "raters": len({v.rater or v.source for v in pair})}


def pairs(verdicts: list[Verdict]) -> list[tuple[str, str]]:
    """Each pair of models compared, the tuned one (or else the first by name) first."""
    found = sorted({tuple(sorted((v.a, v.b))) for v in verdicts})
    return [(b, a) if b == "tuned" else (a, b) for a, b in found]


def render(verdicts: list[Verdict]) -> str:
    lines = ["## Side-by-side verdicts", "",
             "Win rate: wins / (wins + losses), ties and \"both bad\" left out; A's share: the decisive "
             f"verdicts won by the reply shown first (50 % without position bias). Brackets: {LEVEL:.0%} "
             "Wilson intervals (scipy `binomtest(...).proportion_ci`)."]
    for first, second in pairs(verdicts):
        lines += ["", f"### {first} vs {second}", "",
                  "| raters | style | verdicts | prompts | raters (n) | wins | losses | ties | both bad | "
                  f"unparsable | {first} win rate | A's share |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
        for source in sorted({v.source for v in verdicts}):
            mine = [v for v in verdicts if v.source == source]
            for style in [None, *sorted({v.style for v in mine if v.style})]:
                group = [v for v in mine if style is None or v.style == style]
                t = tally(group, first, second)
                if not t["verdicts"] and not t["unparsable"]:
                    continue
                lines.append(f"| {source} | {style or 'all'} | {t['verdicts']} | {t['prompts']} | "
                             f"{t['raters']} | {t['wins']} | {t['losses']} | {t['ties']} | {t['both_bad']} | "
                             f"{t['unparsable']} | "
                             f"{percent(t['win_rate'], t['win_ci'])} | {percent(t['a_share'], t['a_ci'])} |")
    return "\n".join(lines) + "\n"


def report_section(path: Path, *, figure: Path | None = None, anchor: str | None = None,
                   seed: int = defaults.SEED, rounds: int = defaults.RANKING_ROUNDS) -> list[str]:
    """`make report`'s section for a verdict file (its bad lines counted apart, named by `make verdicts`),
    with the ranking when it connects three models (its figure drawn to FIGURE, linked by file name)."""
    verdicts, errors = read([path])
    lines = (render(verdicts) if verdicts else "## Side-by-side verdicts\n\nNo valid verdict.\n").splitlines()
    lines.insert(1, f"\nFrom `{path}` (`make verdicts VERDICTS={path}`).")
    if errors:
        lines.append(f"\n{len(errors)} line(s) of it are not verdicts and are not counted: `make verdicts` "
                     "names them.")
    try:
        ranked = ranking.section(verdicts, anchor=anchor, seed=seed, rounds=rounds, figure=figure,
                                 figure_link=figure.name if figure else None)
    except ValueError as err:
        ranked = ["## Ranking (Bradley–Terry)", "", f"No ranking: {err}."]
    return [*lines, *([""] + ranked if ranked else []), ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m style_tune.eval.verdicts",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="verdict files (JSONL), people's and judges'")
    parser.add_argument("--out", type=Path, help="also write the Markdown table here (and the ranking's "
                        "figure next to it, OUT's name + _ranking.png, unless --figure names one)")
    parser.add_argument("--anchor", help=f"the ranking's model at {ranking.ANCHOR_RATING} (default: the one "
                        f"named {defaults.RANKING_ANCHOR!r}, else the first by name)")
    parser.add_argument("--seed", type=int, default=defaults.SEED, help="seeds the ranking's bootstrap")
    parser.add_argument("--rounds", type=int, default=defaults.RANKING_ROUNDS,
                        help="bootstrap rounds behind the ranking's 95 %% intervals")
    parser.add_argument("--figure", type=Path, help="draw the ratings with their intervals to this PNG")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        fail("verdicts", f"--rounds {args.rounds}: give a positive number of bootstrap rounds")
    verdicts, errors = read(args.files)
    table = render(verdicts) if verdicts else "## Side-by-side verdicts\n\nNo valid verdict.\n"
    figure = args.figure or (args.out.with_name(args.out.stem + "_ranking.png") if args.out else None)
    link = None
    if figure:
        link = os.path.relpath(figure, args.out.parent) if args.out else os.fspath(figure)
    try:
        ranked = ranking.section(verdicts, anchor=args.anchor, seed=args.seed, rounds=args.rounds,
                                 figure=figure, figure_link=link)
    except ValueError as err:
        fail("verdicts", f"{err}: give ANCHOR= one of them")
    if ranked:
        table += "\n" + "\n".join(ranked) + "\n"
    if args.figure and not any(line.startswith("![") for line in ranked):
        print(f"verdicts: no ratings to draw (no three models connected): {args.figure} not written",
              file=sys.stderr)
    print(table, end="")
    if args.out:
        write_atomically(args.out, table)
    for error in errors:
        print(f"verdicts: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
