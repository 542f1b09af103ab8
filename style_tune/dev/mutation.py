"""`make mutation` and `make test`'s mutation gate: mutation testing of the recipe's own logic with mutmut.

    python -m style_tune.dev.mutation            every mutant (`make mutation`)
    python -m style_tune.dev.mutation --gate     a fixed sample and what changed (`make test`)
    python -m style_tune.dev.mutation --report-only

The modules and their tests are pyproject.toml's ``[tool.mutmut]``; mutmut runs each mutant against the
tests that reached its function, from a fresh ``mutants/`` (a mutant that made its tests time out counts
as killed: they did not pass).

Every mutant has a key, ``module.function#digest``, the digest hashing the lines it changes (before and
after; ``-2``, ``-3`` for a second and third identical change in one function). Unlike mutmut's numbered
names (``x_run__mutmut_7``), a key stays the same when the function changes elsewhere: mutation/README.md
explains each kept survivor by its key.

Without options: every mutant. Prints ``mutation: killed K of M`` and each module's score, writes each
mutant that was not killed, with its key and diff, to mutation/survivors.md, and what the run covered
to mutation/record.json: each mutated function's hash, each test's (and the rest of its file's) and the
functions each test reached. Exit status 1 when a survivor is not explained in the README or a module
kills under MIN_SCORE.

``--gate``: the same test on a few minutes' worth of mutants, written nowhere: a fixed share of each
function's mutants (the first by the hash of their keys: the same ones every run of the same code), and
every mutant of a function whose code changed since record.json was written, or that a test reached
which has changed or gone since (a file's helpers changed: each of its tests; tests/*.py: every test; a
new test can only kill more); at most GATE_CAP of those, again the first by key hash. Exit status 1 when
one of them survives unexplained.

A survivor of a function that a test reaches only in a child process (mutmut sees the calls of its own
process alone; CHILD_TESTS) is run once more against that test, with the mutant switched on in the
child; it counts as killed if the test fails.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from style_tune import REPO_ROOT

MUTMUT = Path(sys.executable).with_name("mutmut")
OUT_DIR = REPO_ROOT / "mutation"
README = OUT_DIR / "README.md"
SURVIVORS = OUT_DIR / "survivors.md"
RECORD = OUT_DIR / "record.json"
MUTANTS = REPO_ROOT / "mutants"
#: The least share of its mutants each mutated module must kill (`make mutation`).
MIN_SCORE = 0.90
#: The gate's fixed sample: this share of every function's mutants (at least one each: 392 of 3401) ...
GATE_SHARE = 0.10
#: ... and at most this many mutants of what changed since the record. Measured on the 2 shared cores
#: (docs/testing.md): about 6 mutants a second, plus about 60 s for any number (generating the mutants
#: twice, mutmut's run of the tests that records what each reaches, and its clean run).
GATE_CAP = 300
#: The shared helpers of tests/ (chat_cases.py, kill_points.py, conftest.py...): read by any test.
HELPERS = "tests/*.py"
#: Tests that reach a function only in a child process they start (mutmut cannot see those calls):
#: {function: [test node ids]}; see the module docstring.
CHILD_TESTS = {
    "style_tune.core.steps.x_run": [
        "tests/core/test_steps.py::test_announcements_come_before_the_child_output"],
    # run's preexec_fn: it runs in the forked child, before the tool
    "style_tune.core.steps.x__ignore_ctrl_c": [
        "tests/core/test_steps.py::test_run_stops_the_tool_on_ctrl_c_and_passes_the_interrupt_on"],
}
#: mutmut's statuses (mutmut.stats.status_by_exit_code) that mean the tests noticed the mutant.
DETECTED = ("killed", "timeout")
KEY = re.compile(r"`([\w.]+#[0-9a-f]{6}(?:-\d+)?)`")


@dataclass(frozen=True)
class Mutant:
    name: str  # mutmut's: module.x_function__mutmut_N
    key: str  # ours: module.function#digest (see the module docstring)
    function: str  # mutmut's mangled function: module.x_function
    diff: str

    @property
    def module(self) -> str:
        return self.function.rsplit(".", 1)[0]


def settings() -> tuple[list[str], list[str]]:
    """The mutated modules and the tests mutmut runs ([tool.mutmut] in pyproject.toml, read by mutmut)."""
    from mutmut.configuration import config

    return [str(path) for path in config().source_paths], list(config().pytest_add_cli_args_test_selection)


def module_of(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def readable(mangled: str) -> str:
    """mutmut's function name as written: x_run -> run, xǁBatcherǁsubmit -> Batcher.submit."""
    return mangled[2:] if mangled.startswith("x_") else mangled[1:].replace("ǁ", ".").strip(".")


def digest(text: str, length: int) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def mutants_of(module: str, code: str) -> list[Mutant]:
    """The mutants in a module's mutated code (mutmut's copy in mutants/, or as mutmut generates it), each
    with its diff against the original function and its key."""
    lines = code.splitlines()
    functions = {node.name: "\n".join(lines[node.lineno - 1:node.end_lineno])
                 for node in ast.walk(ast.parse(code))
                 if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}
    found: list[Mutant] = []
    seen: dict[str, int] = defaultdict(int)
    numbered = [(name.rsplit("__mutmut_", 1)[0], int(name.rsplit("__mutmut_", 1)[1]), name)
                for name in functions if re.search(r"__mutmut_\d+$", name)]
    for base, _, mangled in sorted(numbered):
        original = functions[f"{base}__mutmut_orig"].splitlines()
        mutated = functions[mangled].replace(mangled, f"{base}__mutmut_orig", 1).splitlines()
        changed = [line for line in difflib.unified_diff(original, mutated, lineterm="", n=0)
                   if not line.startswith(("---", "+++", "@@"))]
        # the lines removed, then those added (difflib may give them in either order for one change)
        changed = sorted(changed, key=lambda line: line[0] == "+")
        diff = "\n".join(changed)
        change = "\n".join(line[0] + line[1:].strip() for line in changed)  # indentation aside
        stem = f"{module}.{readable(base)}#{digest(change, 6)}"
        seen[stem] += 1
        key = stem if seen[stem] == 1 else f"{stem}-{seen[stem]}"
        found.append(Mutant(f"{module}.{mangled}", key, f"{module}.{base}", diff))
    return found


def generated_mutants(paths: list[str]) -> list[Mutant]:
    """Every mutant mutmut will make of PATHS, made as `mutmut run` makes them (its own generator)."""
    from mutmut.mutation.file_mutation import mutate_file_contents

    found = []
    for path in paths:
        code = mutate_file_contents(path, (REPO_ROOT / path).read_text(encoding="utf-8")).code
        found += mutants_of(module_of(path), code)
    return found


def run_mutants(paths: list[str]) -> list[Mutant]:
    """The mutants of the last run, read from mutmut's copies in mutants/."""
    return [mutant for path in paths
            for mutant in mutants_of(module_of(path), (MUTANTS / path).read_text(encoding="utf-8"))]


def statuses(paths: list[str]) -> dict[str, str]:
    """Each mutant's status after the run (mutmut's words: killed, survived, no tests, not checked...)."""
    from mutmut.stats import status_by_exit_code

    found = {}
    for path in paths:
        meta = json.loads((MUTANTS / f"{path}.meta").read_text(encoding="utf-8"))
        found.update({name: status_by_exit_code[code] for name, code in meta["exit_code_by_key"].items()})
    return found


def function_hashes(paths: list[str]) -> dict[str, str]:
    """Each function's hash, as mutmut computes it (of its syntax tree: comments and layout do not count)."""
    from mutmut.mutation.file_mutation import compute_function_hashes

    hashes = {}
    for path in paths:
        found = compute_function_hashes((REPO_ROOT / path).read_text(encoding="utf-8"))
        hashes.update({f"{module_of(path)}.{name}": value for name, value in found.items()})
    return hashes


def test_hashes(tests: list[str]) -> dict[str, str]:
    """A hash of each test function of the files mutmut runs (``FILE::NAME``, its decorators included),
    of the rest of each file (its helpers, fixtures and data: ``FILE``) and of the shared helpers
    (HELPERS), each of its syntax tree (comments and layout do not count)."""
    hashes = {}
    for path in tests:
        rest = []
        for node in ast.parse((REPO_ROOT / path).read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
                hashes[f"{path}::{node.name}"] = digest(ast.dump(node), 12)
            else:
                rest.append(ast.dump(node))
        hashes[path] = digest("\n".join(rest), 12)
    helpers = sorted(REPO_ROOT.glob(HELPERS))
    hashes[HELPERS] = digest("".join(path.name + path.read_text(encoding="utf-8") for path in helpers), 12)
    return hashes


def first_by_key(mutants: list[Mutant], count: int) -> list[Mutant]:
    """COUNT of MUTANTS, the same ones for the same keys: the first by the hash of their keys."""
    return sorted(mutants, key=lambda m: digest(m.key, 16))[:count]


def gate_selection(mutants: list[Mutant], functions: dict[str, str], tests: dict[str, str],
                   record: dict) -> tuple[list[Mutant], str]:
    """The gate's mutants (see the module docstring) and a line saying what they are, from the current
    FUNCTIONS' and TESTS' hashes and the RECORD of the last full run."""
    by_function: dict[str, list[Mutant]] = defaultdict(list)
    for mutant in mutants:
        by_function[mutant.function].append(mutant)
    sample = {m for group in by_function.values()
              for m in first_by_key(group, math.ceil(GATE_SHARE * len(group)))}

    old_functions, old_tests = record.get("functions", {}), record.get("tests", {})
    changed = {name for name, value in functions.items() if old_functions.get(name) != value}
    # tests changed or gone (a new test can only kill more); a file's helpers or data: all its tests
    weakened = {name for name, value in old_tests.items() if tests.get(name) != value}
    reach = record.get("reach", {})
    if HELPERS in weakened:
        changed |= set(by_function)
    else:
        changed |= {function for test, functions_reached in reach.items()
                    if test in weakened or test.split("::")[0] in weakened for function in functions_reached}
    wider = [m for m in mutants if m.function in changed and m not in sample]
    picked = first_by_key(wider, GATE_CAP)
    said = (f"{len(sample)} of {len(mutants)} mutants as the fixed sample, {len(picked)} more of the "
            f"{len(changed & set(by_function))} function(s) changed since {RECORD.name}"
            + (f" (of {len(wider)}: run `make mutation` for all)" if len(wider) > len(picked) else ""))
    return sorted(sample | set(picked), key=lambda m: m.name), said


def explained() -> set[str]:
    """The keys of the mutants mutation/README.md explains (each in backquotes)."""
    return set(KEY.findall(README.read_text(encoding="utf-8"))) if README.is_file() else set()


def mutmut_run(names: list[str]) -> None:
    """`mutmut run` on NAMES (every mutant when none), its progress shown; not its list of each named
    mutant's result at the end (read from mutants/ instead)."""
    shutil.rmtree(MUTANTS, ignore_errors=True)
    proc = subprocess.Popen([str(MUTMUT), "run", "--max-children", "2", *names], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE)
    assert proc.stdout is not None
    held, done, marker = b"", False, b"Mutant results"
    while chunk := os.read(proc.stdout.fileno(), 65536):  # as it comes: its progress line is redrawn with \r
        if done:
            continue
        held += chunk
        done = marker in held
        shown, held = (held.split(marker)[0], b"") if done else (held[:-len(marker)], held[-len(marker):])
        sys.stdout.buffer.write(shown)
        sys.stdout.flush()
    sys.stdout.buffer.write(held)
    if proc.wait() != 0:
        sys.exit(f"mutation: error: mutmut run exited {proc.returncode}")


def killed_in_a_child(mutant: Mutant) -> bool:
    """Whether the child-process tests of MUTANT's function (CHILD_TESTS) fail with it switched on."""
    tests = CHILD_TESTS.get(mutant.function)
    if not tests:
        return False
    env = {**os.environ, "MUTANT_UNDER_TEST": mutant.name, "PY_IGNORE_IMPORTMISMATCH": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p",
                           "no:randomly", *tests], cwd=MUTANTS, env=env, capture_output=True, text=True)
    return proc.returncode in (1, 3)  # tests failed, or pytest's internal error: as mutmut counts them


def score_lines(mutants: list[Mutant], status: dict[str, str]) -> tuple[list[str], list[str]]:
    """A Markdown table of each module's score, and the modules under MIN_SCORE."""
    rows, low = ["| module | mutants | killed | score |", "|---|---:|---:|---:|"], []
    by_module: dict[str, list[Mutant]] = defaultdict(list)
    for mutant in mutants:
        by_module[mutant.module].append(mutant)
    for module, group in by_module.items():
        killed = sum(status[m.name] in DETECTED for m in group)
        rows.append(f"| `{module}` | {len(group)} | {killed} | {killed / len(group):.1%} |")
        if killed / len(group) < MIN_SCORE:
            low.append(module)
    return rows, low


def write_record(paths: list[str], tests: list[str]) -> None:
    """What the run covered: each function's and test's hash, the functions each test reached."""
    stats = json.loads((MUTANTS / "mutmut-stats.json").read_text(encoding="utf-8"))
    reach: dict[str, set[str]] = defaultdict(set)
    for function, nodes in stats["tests_by_mangled_function_name"].items():
        for node in nodes:
            reach[node.split("[", 1)[0]].add(function)  # a parametrized test's cases together
    record: dict[str, dict[str, str] | dict[str, list[str]]] = {
        "functions": function_hashes(paths), "tests": test_hashes(tests),
        "reach": {test: sorted(functions) for test, functions in reach.items()}}
    # one line per function and per test: a later run's changes are a readable diff
    parts = [f'"{part}": {{\n' + ",\n".join(f"  {json.dumps(name)}: {json.dumps(value)}"
                                             for name, value in sorted(entries.items())) + "\n}"
             for part, entries in record.items()]
    RECORD.write_text("{\n" + ",\n".join(parts) + "\n}\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m style_tune.dev.mutation",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--gate", action="store_true",
                        help="a fixed sample and what changed since the record")
    parser.add_argument("--report-only", action="store_true",
                        help="only rewrite the report from the last full run's mutants/")
    args = parser.parse_args(argv)
    if not MUTMUT.exists():
        sys.exit(f"mutation: error: no {MUTMUT}; run `make env-mutation`")
    os.chdir(REPO_ROOT)  # mutmut reads pyproject.toml and writes mutants/ here
    paths, tests = settings()
    start = time.monotonic()
    selected: list[Mutant] = []  # the gate's sample (the full run takes every mutant)
    if args.gate:
        record = json.loads(RECORD.read_text(encoding="utf-8")) if RECORD.is_file() else {}
        selected, said = gate_selection(generated_mutants(paths), function_hashes(paths), test_hashes(tests),
                                        record)
        print(f"mutation: gate: {said}", flush=True)
        mutmut_run([m.name for m in selected])
    elif not args.report_only:
        print("mutation: running mutmut on every mutant (progress in mutants/; about 20 min on 2 busy "
              "cores) ...", flush=True)
        mutmut_run([])
    mutants = run_mutants(paths)
    status = statuses(paths)
    if args.gate:  # only the sample's results (mutants/ holds every mutant's, from the last full run too)
        chosen = {m.name for m in selected}
        mutants = [m for m in mutants if m.name in chosen]
    for mutant in mutants:
        if status[mutant.name] not in DETECTED and killed_in_a_child(mutant):
            status[mutant.name] = "killed"  # by a test's child process (CHILD_TESTS)
    known = explained()
    survivors = [m for m in mutants if status[m.name] not in DETECTED]
    unexplained = [m for m in survivors if m.key not in known]
    killed = len(mutants) - len(survivors)
    print(f"mutation: killed {killed} of {len(mutants)} ({killed / len(mutants):.1%}) in "
          f"{time.monotonic() - start:.0f} s")
    if args.gate:
        for mutant in unexplained:
            print(f"\n{mutant.key} ({mutant.name}): {status[mutant.name]}\n{mutant.diff}")
        print(f"mutation: gate: {len(survivors)} survivor(s), {len(unexplained)} not explained in "
              f"mutation/README.md (kill each with a test, or explain it there by its key)")
        return 1 if unexplained else 0

    rows, low = score_lines(mutants, status)
    print("\n".join(rows))
    kinds = Counter(status[m.name] for m in survivors)
    lines = ["# Surviving mutants", "",
             "Written by `make mutation` (style_tune/dev/mutation.py); why each is kept: "
             "[README.md](README.md), by key.", "",
             f"mutation: killed {killed} of {len(mutants)} ({killed / len(mutants):.1%}). Not killed: "
             + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) + ".", "", *rows, ""]
    for mutant in survivors:
        note = "" if mutant.key in known else " — **not explained in README.md**"
        lines += [f"## `{mutant.key}`: {status[mutant.name]}{note}", "",
                  f"mutmut's name: `{mutant.name}`", "", "```diff", mutant.diff, "```", ""]
    SURVIVORS.write_text("\n".join(lines), encoding="utf-8")
    write_record(paths, tests)
    stale = sorted(known - {m.key for m in survivors})
    print(f"mutation: {len(survivors)} survivor(s) in mutation/survivors.md; {len(unexplained)} not "
          "explained in mutation/README.md"
          + (f"; modules under {MIN_SCORE:.0%}: {', '.join(low)}" if low else ""))
    if stale:
        print(f"mutation: README.md explains {len(stale)} key(s) that no survivor has now (killed, or the "
              f"code changed): {', '.join(stale)}")
    return 1 if unexplained or low else 0


if __name__ == "__main__":
    sys.exit(main())
