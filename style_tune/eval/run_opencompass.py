"""Run an OpenCompass config and fail loudly when any result is missing (eval environment).

    python -m style_tune.eval.run_opencompass CONFIG --work-dir DIR [-- OPENCOMPASS_ARGS...]

Runs ``python -m opencompass.cli.main CONFIG -w DIR ARGS`` with DIR as the working directory (so
OpenCompass's scratch folders ``tmp/`` and ``icl_inference_output/`` land there, not in the
repository), then checks its summary: OpenCompass exits 0 even when a task crashed and writes "-" in
the table instead. On success it prints the Markdown summary (dataset | version | metric | mode | one
column per model), copies it to ``DIR/summary.md`` and points ``DIR/latest`` at the run's folder
``DIR/<timestamp>/`` (predictions, results, logs, the dumped config).

``--compare SPEC`` (eval-style's models, style_tune/core/compare.py): each directory is checked and made
absolute (OpenCompass runs in DIR), each API asked for its models (its ``#MODEL`` must be listed; none
given: the first listed); the config reads the result from $STYLE_EVAL_MODELS. OPENAI_API_KEY, when
unset, is set to "none" for an API (OpenCompass's OpenAISDK insists on one; a local server ignores it).

Exit status: OpenCompass's own when it fails; 2 when an input is missing; 1 when the summary is missing
or has an empty cell.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
from pathlib import Path

from style_tune.core.cli import split_passthrough
from style_tune.core.compare import Candidate, format_compare, parse_compare
from style_tune.core.io import write_atomically
from style_tune.deploy.serving import list_models
from style_tune.eval import fewclue

#: Where the config (eval_configs/eval_style.py) reads the resolved --compare spec.
MODELS_ENV = "STYLE_EVAL_MODELS"

RUN_DIR_LINE = re.compile(r"Current exp folder: (\S+)")


def link_latest(work_dir: Path, run_dir: Path) -> None:
    tmp = work_dir / f".latest.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(run_dir.name)
    os.replace(tmp, work_dir / "latest")


def missing_cells(summary_csv: Path) -> tuple[list[str], list[str]]:
    """(model columns, "dataset/metric/model" cells without a number) of an OpenCompass summary CSV."""
    with summary_csv.open(encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], [row for row in rows[1:] if row]
    models = header[4:]
    missing = []
    for row in body:
        for model, cell in zip(models, row[4:], strict=True):
            try:
                float(cell)
            except ValueError:
                missing.append(f"{row[0]}/{row[2]}/{model}")
    if not body:
        missing.append("(no rows)")
    return models, missing


def missing_input(args: argparse.Namespace) -> str | None:
    """The first input of the run that is not there, as what to do about it; None when all are."""
    if args.fewclue_cache is not None:
        absent = fewclue.missing(args.fewclue_cache.resolve())
        if absent:
            return f"no {absent[0]}: make fewclue-data, or see docs/evaluation.md"
    for model in args.models:
        if not (Path(model) / "config.json").is_file():
            return f"no model in {model}: {args.model_hint}"
    if args.split_dir is not None:
        if not all((args.split_dir / f"{name}.json").is_file() for name in ("train", "test")):
            return f"no {args.split_dir}/{{train,test}}.json: make split MODE={args.mode}"
    return None


def resolve(spec: str, hint: str) -> tuple[list[Candidate], str | None]:
    """The --compare models with each directory absolute and each API's model named; or the first
    problem, as what to do about it."""
    try:
        candidates = parse_compare(spec)
    except ValueError as err:
        return [], f"COMPARE: {err}"
    resolved = []
    for c in candidates:
        if not c.is_api:
            if not (Path(c.where) / "config.json").is_file():
                return [], f"no model in {c.where} ({c.name}): {hint}"
            resolved.append(Candidate(c.name, str(Path(c.where).resolve())))
            continue
        try:
            listed = list_models(c.where, timeout=10, api_key=os.environ.get("OPENAI_API_KEY") or None)
        except (OSError, ValueError, KeyError) as err:
            return [], f"{c.name}: {c.where} does not answer GET /models ({err}); is the server up?"
        if (c.model and c.model not in listed) or not listed:
            return [], f"{c.name}: {c.where} lists {', '.join(listed[:10]) or 'no model'}, not {c.model!r}"
        resolved.append(Candidate(c.name, c.where, c.model or listed[0]))
    return resolved, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--work-dir", type=Path, required=True)
    # What the config will read, checked first so that a missing input is one line, not a traceback:
    parser.add_argument("--step", default="eval", help="the make target, for error messages")
    parser.add_argument("--model", dest="models", action="append", default=[],
                        help="a model directory the config loads (repeatable); it needs a config.json")
    parser.add_argument("--model-hint", default="", help="what to do when one is missing")
    parser.add_argument("--compare", default="",
                        help=f"the models, NAME=DIR|URL/v1[#MODEL] ...: resolved into ${MODELS_ENV}")
    parser.add_argument("--split-dir", type=Path, help="the split the config reads (train.json, test.json)")
    parser.add_argument("--mode", help="the split's data format, for the hint")
    parser.add_argument("--fewclue-cache", type=Path, help="the COMPASS_DATA_CACHE FewCLUE is read from")
    parser.epilog = "Arguments after -- go to OpenCompass, e.g. -- --debug."
    argv = sys.argv[1:] if argv is None else list(argv)
    ours, extra = split_passthrough(argv)
    args = parser.parse_args(ours)
    config, work_dir = args.config.resolve(), args.work_dir.resolve()
    if not config.is_file():
        parser.error(f"no config {config}")
    problem = missing_input(args)
    env = dict(os.environ)
    if args.compare and not problem:
        candidates, problem = resolve(args.compare, args.model_hint)
        env[MODELS_ENV] = format_compare(candidates)
        if any(c.is_api for c in candidates):
            env.setdefault("OPENAI_API_KEY", "none")
    if problem:
        print(f"{args.step}: {problem}", file=sys.stderr)
        return 2
    work_dir.mkdir(parents=True, exist_ok=True)

    cmd = [sys.executable, "-m", "opencompass.cli.main", str(config), "-w", str(work_dir), *extra]
    print("[eval] " + " ".join(cmd), flush=True)
    run_dir = None
    with subprocess.Popen(cmd, cwd=work_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, bufsize=1) as proc:
        for line in proc.stdout:
            sys.stdout.write(line)
            found = RUN_DIR_LINE.search(line)
            if found and run_dir is None:
                run_dir = Path(found.group(1))
    if proc.returncode != 0:
        print(f"[eval] error: OpenCompass exited with {proc.returncode}", file=sys.stderr)
        return proc.returncode
    if run_dir is None:
        print("[eval] error: OpenCompass did not say where its outputs went", file=sys.stderr)
        return 1
    run_dir = (work_dir / run_dir).resolve()
    summaries = sorted((run_dir / "summary").glob("summary_*.csv"))
    if not summaries:
        print(f"[eval] error: no summary in {run_dir / 'summary'}", file=sys.stderr)
        return 1
    models, missing = missing_cells(summaries[-1])
    if missing:
        shown = ", ".join(missing[:4]) + (f", ... ({len(missing)} in all)" if len(missing) > 4 else "")
        print(f"[eval] error: no result for {shown}; see the task logs under "
              f"{run_dir / 'logs'} (or the output above, with --debug)", file=sys.stderr)
        return 1
    markdown = summaries[-1].with_suffix(".md").read_text(encoding="utf-8")
    write_atomically(work_dir / "summary.md", markdown)
    link_latest(work_dir, run_dir)
    print(f"\n{markdown.strip()}\n")
    print(f"[eval] models: {', '.join(models)}")
    print(f"[eval] summary: {work_dir / 'summary.md'}; run: {run_dir} (also {work_dir / 'latest'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
