"""`make mutation`: mutation testing of the recipe's own logic with mutmut.

    python -m style_tune.dev.mutation [--report-only]

Runs ``mutmut run`` from a fresh ``mutants/`` (the modules and tests are listed in pyproject.toml's
``[tool.mutmut]``), then prints ``mutation: killed K of M`` (a mutant that made the tests time out
counts as killed: they did not pass) and writes every mutant that survived, with its diff, to
``mutation/survivors.md``. Each kept survivor is explained in ``mutation/README.md``; a survivor
that is not listed there is reported as unexplained and the exit status is 1.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from style_tune import REPO_ROOT

MUTMUT = Path(sys.executable).with_name("mutmut")
OUT_DIR = REPO_ROOT / "mutation"
#: mutmut's statuses that mean the tests noticed the mutant.
DETECTED = ("killed", "timeout")


def mutmut(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(MUTMUT), *args], cwd=REPO_ROOT, capture_output=True, text=True)
    if check and proc.returncode != 0:
        sys.exit(f"mutation: error: `mutmut {' '.join(args)}` exited {proc.returncode}:\n"
                 f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc


def mutant_diffs(names: list[str]) -> dict[str, str]:
    """Each mutant's diff against the original function, read from mutmut's copies in mutants/
    (``mutmut show`` does the same, one process per mutant)."""
    functions: dict[str, dict[str, str]] = {}
    diffs = {}
    for name in names:
        module, _, mangled = name.rpartition(".")
        if module not in functions:
            source = (REPO_ROOT / "mutants" / (module.replace(".", "/") + ".py")).read_text(encoding="utf-8")
            lines = source.splitlines()
            functions[module] = {
                node.name: "\n".join(lines[node.lineno - 1:node.end_lineno])
                for node in ast.walk(ast.parse(source)) if isinstance(node, ast.FunctionDef)
            }
        base = mangled.rsplit("__mutmut_", 1)[0]
        original, mutant = functions[module].get(f"{base}__mutmut_orig"), functions[module].get(mangled)
        if original is None or mutant is None:
            diffs[name] = mutmut("show", name, check=False).stdout.strip()
            continue
        mutant = mutant.replace(mangled, f"{base}__mutmut_orig", 1)
        diff = difflib.unified_diff(original.splitlines(), mutant.splitlines(), lineterm="", n=0)
        diffs[name] = "\n".join(line for line in diff if not line.startswith(("---", "+++", "@@")))
    return diffs


def explained(readme: Path) -> set[str]:
    """The mutant names that mutation/README.md explains (each in backquotes)."""
    if not readme.is_file():
        return set()
    return set(re.findall(r"`([\w.]+__mutmut_\d+)`", readme.read_text(encoding="utf-8")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report-only", action="store_true",
                        help="only rewrite the report from the last run's mutants/")
    args = parser.parse_args(argv)
    if not MUTMUT.exists():
        sys.exit(f"mutation: error: no {MUTMUT}; run `make env-mutation`")
    if not args.report_only:
        shutil.rmtree(REPO_ROOT / "mutants", ignore_errors=True)
        print("mutation: running mutmut (progress in mutants/; about 6 min on 2 cores) ...", flush=True)
        run = subprocess.run([str(MUTMUT), "run", "--max-children", "2"], cwd=REPO_ROOT)
        if run.returncode != 0:
            sys.exit(f"mutation: error: mutmut run exited {run.returncode}")
    mutmut("export-cicd-stats")
    stats = json.loads((REPO_ROOT / "mutants" / "mutmut-cicd-stats.json").read_text(encoding="utf-8"))
    total = stats["total"]
    killed = sum(stats[status] for status in DETECTED)

    results = mutmut("results").stdout
    survivors = sorted(re.findall(r"^\s*([\w.]+__mutmut_\d+): (.+)$", results, re.MULTILINE))
    OUT_DIR.mkdir(exist_ok=True)
    known = explained(OUT_DIR / "README.md")
    lines = [
        "# Surviving mutants",
        "",
        "Written by `make mutation` (style_tune/dev/mutation.py); why each is kept: [README.md](README.md).",
        "",
        f"mutation: killed {killed} of {total} ({killed / total:.1%}; {stats['timeout']} by timeout). "
        f"Not killed: {total - killed} "
        + "(" + ", ".join(f"{stats[k]} {k}" for k in ("survived", "no_tests", "suspicious", "skipped")
                          if stats.get(k)) + ").",
        "",
    ]
    diffs = mutant_diffs([name for name, _ in survivors])
    for name, status in survivors:
        diff = diffs[name]
        note = "" if name in known else " — **not explained in README.md**"
        lines += [f"## `{name}`: {status}{note}", "", "```diff", diff, "```", ""]
    (OUT_DIR / "survivors.md").write_text("\n".join(lines), encoding="utf-8")

    print(f"mutation: killed {killed} of {total}")
    unexplained = [name for name, _ in survivors if name not in known]
    print(f"mutation: {len(survivors)} survivor(s) in mutation/survivors.md; "
          f"{len(unexplained)} not explained in mutation/README.md")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
