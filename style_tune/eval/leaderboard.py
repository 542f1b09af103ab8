"""`make leaderboard`: make demo's models ranked side by side and checked for what tuning cost them; README's
leaderboard from the committed data (`make leaderboard-readme`). Eval env.

    python -m style_tune.eval.leaderboard collect STYLE_RUN RETENTION_DIR --dir DIR [--started EPOCH]
        [--command TEXT]
    python -m style_tune.eval.leaderboard readme --dir DIR [--readme README.md] [--check] [--seed 42]
        [--rounds 1000]

``collect`` copies into DIR (docs/leaderboard/, committed) what README's leaderboard is made from, and
nothing it cannot be made from again: ``verdicts.jsonl``, the pairwise judge's records of the eval-style
run STYLE_RUN (`make judge-pairs JUDGE=metrics`: RUN/pairwise_verdicts_metrics.jsonl); ``retention.json``
and ``retention.md``, `make eval-retention`'s report in RETENTION_DIR; ``about.json``, what produced them
(the models by name and directory, the mode, the prompts and token budget of the style run, the retention
run's settings, the command, the commit, the date and the wall time since EPOCH).

``readme`` reads DIR alone: the verdicts' Bradley–Terry ranking per kind of rater (style_tune.eval.ranking,
as `make verdicts` fits it, seeded: the same data give the same table), `make verdicts`' full Markdown to
DIR/verdicts.md and its figure to DIR/ranking.png, and a block of README between ``<!-- leaderboard:begin
-->`` and ``<!-- leaderboard:end -->``: one table, a row per model, best first, with each kind of rater's
rank, rating [95 %] and wins / losses / ties / both bad, then its retention (the formats it was asked in,
its accuracy per task in each, its unparseable answers); under it a paragraph saying what produced each
part (command, commit, date, time; models; judge, verdicts, prompts, seed, rounds; FewCLUE data, items,
margin, verdicts) and the figure. ``--check``: write nothing, exit 1 when README's block is not what DIR
gives.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from style_tune import REPO_ROOT
from style_tune.core import defaults
from style_tune.core.io import write_atomically, write_files_atomically
from style_tune.core.prompts import STYLE_SLUGS
from style_tune.core.steps import fail
from style_tune.eval import ranking, retention, verdicts
from style_tune.eval.pairwise_judge import METRICS_RESULT_NAME

STEP = "leaderboard"
BEGIN, END = "<!-- leaderboard:begin -->", "<!-- leaderboard:end -->"
VERDICTS, RETENTION, RETENTION_MD, ABOUT = "verdicts.jsonl", "retention.json", "retention.md", "about.json"
FULL, FIGURE = "verdicts.md", "ranking.png"
#: The order of the formats in the retention table's cells (style_tune.eval.retention's entry formats): each
#: style's, the label format's, then no system text.
FORMATS = (*STYLE_SLUGS.values(), "label", retention.NO_SYSTEM)


# ----------------------------------------------------------------------------------------- collect

def git_commit() -> str | None:
    """The checkout's commit (with ``+changes`` when the work tree differs from it), or None outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+changes" if dirty else "")


def shown(path: str) -> str:
    """A path as README shows it: relative to the checkout when inside it (the runs record absolute ones);
    anything else (a path outside, an API model's "NAME at URL") as it is."""
    if not os.path.isabs(path):
        return path
    inside = os.path.relpath(path, REPO_ROOT)
    return path if inside.startswith("..") else inside


def in_checkout(path: Path) -> str:
    """A report's text with the checkout's own paths relative to it (the runs record absolute ones, which
    would name the machine it ran on in a committed file)."""
    return path.read_text(encoding="utf-8").replace(f"{REPO_ROOT}{os.sep}", "")


def collect(style_run: Path, retention_dir: Path, out: Path, *, started: float | None, command: str,
            fewclue: str) -> dict:
    """Copy the inputs of README's leaderboard into OUT (atomically, all or none) and say what made them."""
    from style_tune.eval.report import run_settings

    style_run = style_run.resolve()
    records = style_run / METRICS_RESULT_NAME
    report_json, report_md = retention_dir / "report.json", retention_dir / "report.md"
    for path, how in ((records, "make judge-pairs JUDGE=metrics"), (report_json, "make eval-retention"),
                      (report_md, "make eval-retention")):
        if not path.is_file():
            fail(STEP, f"{path} is missing: run {how} first (make leaderboard runs every step)")
    settings = run_settings(style_run)
    report = json.loads(report_json.read_text(encoding="utf-8"))
    about = {
        "command": command, "commit": git_commit(), "date": time.strftime("%Y-%m-%d %H:%M %z"),
        "wall_time_s": round(time.time() - started) if started else None,
        "style_run": {"mode": settings["mode"], "test": shown(settings["test"]),
                      "train": shown(settings["train"]), "limit": settings["limit"],
                      "max_out_len": settings["max_out_len"],
                      "models": {name: shown(path) for name, path in settings["paths"].items()}},
        "retention_run": {key: report["settings"][key] for key in ("backend", "margin", "seed", "rounds")}
        | {"fewclue": fewclue, "models": {e["abbr"]: shown(e["path"]) for e in report["entries"]}},
    }
    write_files_atomically({out / VERDICTS: records.read_bytes(), out / RETENTION: in_checkout(report_json),
                            out / RETENTION_MD: in_checkout(report_md),
                            out / ABOUT: json.dumps(about, ensure_ascii=False, indent=1) + "\n"}, step=STEP)
    return about


# ----------------------------------------------------------------------------------------- readme

def retention_cells(summary: dict, name: str) -> tuple[str, list[str], str]:
    """A model's retention: the formats it was asked in, its accuracy per task in each ("a / b / c"), and
    its unparseable answers of all."""
    rows = sorted((r for r in summary["rows"] if r["name"] == name),
                  key=lambda r: FORMATS.index(r["format"]) if r["format"] in FORMATS else len(FORMATS))
    if not rows:
        return "(not asked)", ["—" for _ in summary["tasks"]], "—"
    formats = list(dict.fromkeys(r["format"] for r in rows))
    cells = [" / ".join(f"{r['accuracy']:.1f}" for f in formats for r in rows
                        if r["task"] == task and r["format"] == f) for task in summary["tasks"]]
    asked = " / ".join("no system text" if f == retention.NO_SYSTEM else f for f in formats)
    return asked, cells, f"{sum(r['unparseable'] for r in rows)} of {sum(r['items'] for r in rows)}"


def table(rankings: list[ranking.Ranking], summary: dict) -> list[str]:
    """One row per model, best first: each kind of rater's rank, rating and counts, then FewCLUE."""
    rated = {r.source: {row.model: row for row in r.rows} for r in rankings}
    first = rankings[0] if rankings else None
    models = [row.model for row in sorted(first.rows, key=lambda row: -(row.rating or -1e9))] if first else []
    models += [m for r in rankings for m in rated[r.source] if m not in models]
    models += [e["name"] for e in summary["entries"] if e["name"] not in models]
    tasks = list(summary["tasks"])
    head = ["model"]
    for r in rankings:
        tag = f" ({r.source})" if len(rankings) > 1 else ""
        head += [f"rank{tag}", f"rating [95 %]{tag}", f"wins / losses / ties / both bad{tag}"]
    head += ["FewCLUE asked with", *tasks, "unparseable"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|---|---|" * len(rankings) + "---|" +
             "---:|" * len(tasks) + "---:|"]
    for model in models:
        cells = [model]
        for r in rankings:
            row = rated[r.source].get(model)
            if row is None:
                cells += ["—", "—", "—"]
                continue
            rating = (f"{ranking.ANCHOR_RATING} (anchor)" if model == r.anchor else
                      ranking.elo(row.rating, row.ci) if row.rating is not None else f"— ({row.note})")
            cells += [str(row.rank or "—"), rating,
                      f"{row.wins} / {row.losses} / {row.ties} / {row.both_bad}"]
        asked, accuracy, unparseable = retention_cells(summary, model)
        lines.append("| " + " | ".join([*cells, asked, *accuracy, unparseable]) + " |")
    return lines


def block(folder: Path, readme: Path, *, seed: int, rounds: int, draw: bool = True) -> str:
    """README's leaderboard block (without the marker lines) from FOLDER's committed data: the table, then
    a paragraph saying what produced it, with the figure. DRAW: also draw the figure and write `make
    verdicts`' full Markdown beside the data."""
    about = json.loads((folder / ABOUT).read_text(encoding="utf-8"))
    found, errors = verdicts.read([folder / VERDICTS])
    if errors:
        fail(STEP, f"{errors[0]} ({len(errors)} bad line(s) in all)")
    summary = json.loads((folder / RETENTION).read_text(encoding="utf-8"))
    rankings, reasons = ranking.rank_all(found, anchor=None, seed=seed, rounds=rounds)
    if draw:
        if rankings:
            ranking.plot(rankings, folder / FIGURE)
        write_atomically(folder / FULL, verdicts.render(found) + "\n" + "\n".join(
            ranking.render(rankings, reasons, found, FIGURE if rankings else None)) + "\n", step=STEP)
    here = readme.resolve().parent
    style, run = about["style_run"], about["retention_run"]
    minutes = f", {about['wall_time_s'] / 60:.0f} min" if about.get("wall_time_s") else ""
    asked = (f"every pair of models on each held-out prompt of `{style['test']}` (replies greedy, at most "
             f"{style['max_out_len']} tokens); [full tables]({os.path.relpath(folder / FULL, here)})")
    if rankings:
        raters = "; ".join(
            f"**{r.source}**, {sum(v.source == r.source for v in ranking.usable(found))} verdicts on "
            f"{r.prompts} prompts "
            f"({sum(v.source == r.source and v.verdict == 'both bad' for v in found)} both bad)"
            for r in rankings)
        ranked = (f"Ratings: Bradley–Terry, Elo scale, {rankings[0].anchor} = {ranking.ANCHOR_RATING}, 95 % "
                  f"bootstrap intervals over prompts (seed {seed}, {rounds} rounds), of the pairwise "
                  f"verdicts of {raters}: {asked}.")
    else:
        ranked = ("No ranking (" + "; ".join(f"{k}: {v}" for k, v in reasons.items()) + f") from the "
                  f"verdicts on {asked}.")
    items = {task: next(r["items"] for r in summary["rows"] if r["task"] == task)
             for task in summary["tasks"]}
    judged = sorted({r["verdict"] for r in summary["rows"] if "verdict" in r})
    text = (
        f"Made by `{about['command']}` ({about['date']}, commit {about['commit']}{minutes}; "
        f"[data]({os.path.relpath(folder, here)}/), redrawn by `make leaderboard-readme`). Models "
        f"({style['mode']} format): " + ", ".join(f"{n} `{p}`" for n, p in style["models"].items())
        + f". {ranked} FewCLUE: `make eval-retention` ({run['backend']}) on `{run['fewclue']}`, accuracy "
        "in points per format asked, " + ", ".join(f"{t} {n} items" for t, n in items.items())
        + f", margin {run['margin']:g} points, verdicts: {', '.join(judged) or 'none'} "
        f"([report]({os.path.relpath(folder / RETENTION_MD, here)})).")
    if rankings:  # at the end of the paragraph: README has no line to spare (tests/core/test_readme.py)
        text += (f" ![Bradley–Terry ratings of the models with 95 % bootstrap intervals]"
                 f"({os.path.relpath(folder / FIGURE, here)})")
    return "\n".join([*table(rankings, summary), "", text]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m style_tune.eval.leaderboard",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    c = sub.add_parser("collect", help="copy the leaderboard's inputs into DIR")
    c.add_argument("style_run", type=Path, help="the eval-style run the metrics judge judged")
    c.add_argument("retention_dir", type=Path, help="make eval-retention's RETENTION_DIR")
    c.add_argument("--dir", type=Path, required=True)
    c.add_argument("--started", type=float, help="when the run began (seconds since the epoch)")
    c.add_argument("--command", default="make leaderboard", help="the command that made it, as it is shown")
    c.add_argument("--fewclue", required=True, help="where the retention run's FewCLUE data came from")
    r = sub.add_parser("readme", help="README's leaderboard block, figure and DIR/verdicts.md from DIR")
    r.add_argument("--dir", type=Path, required=True)
    r.add_argument("--readme", type=Path, default=REPO_ROOT / "README.md")
    r.add_argument("--check", action="store_true", help="write nothing; exit 1 if README's block differs")
    r.add_argument("--seed", type=int, default=defaults.SEED, help="seeds the ranking's bootstrap")
    r.add_argument("--rounds", type=int, default=defaults.RANKING_ROUNDS, help="bootstrap rounds")
    args = parser.parse_args(argv)
    if args.action == "collect":
        about = collect(args.style_run, args.retention_dir, args.dir, started=args.started,
                        command=args.command, fewclue=args.fewclue)
        print(f"[{STEP}] {args.dir}: {VERDICTS}, {RETENTION}, {RETENTION_MD}, {ABOUT} "
              f"({about['wall_time_s']} s since the start)")
        return 0
    for name in (VERDICTS, RETENTION, ABOUT):
        if not (args.dir / name).is_file():
            fail(STEP, f"{args.dir / name} is missing: make leaderboard writes it (LEADERBOARD_DIR=)")
    try:
        current = args.readme.read_text(encoding="utf-8")
    except OSError as err:
        fail(STEP, f"{args.readme}: cannot read it ({err})")
    start, end = current.find(BEGIN), current.find(END)
    if start < 0 or end < start:
        fail(STEP, f"{args.readme} has no {BEGIN} line followed by a {END} line: add them where the "
             "leaderboard goes")
    text = block(args.dir, args.readme, seed=args.seed, rounds=args.rounds, draw=not args.check)
    updated = f"{current[:start]}{BEGIN}\n{text}{current[end:]}"
    if args.check:
        if updated != current:
            print(f"{STEP}: {args.readme}'s leaderboard is not what {args.dir} gives: run make "
                  "leaderboard-readme", file=sys.stderr)
            return 1
        print(f"[{STEP}] {args.readme}'s leaderboard is what {args.dir} gives")
        return 0
    if updated != current:
        write_atomically(args.readme, updated, step=STEP)
    print(text, end="")
    print(f"[{STEP}] {args.readme}: the leaderboard block; {args.dir / FIGURE}, {args.dir / FULL}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
