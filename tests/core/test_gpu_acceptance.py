"""tools/gpu_acceptance.sh can run: what it names exists, and it is bounded (standard library only).

The script runs only on a GPU machine, so nothing else would notice a config, make target, Makefile
variable, module or path that it names going away (it once named a deleted config). ``problems``
reads the script's text and lists each such name that does not exist, and the settings that keep a
run short and readable: a loss line every iteration (``default_hooks.logger.interval=1``), `make
chat` capped at a few tokens (lmdeploy chat has no max-new-tokens option: ``--session-len``), and
the server wait of the shared helper (style_tune/deploy/serving.py), which stops when the server
process dies, instead of a loop of its own. The script's own ``--dry-run`` proves its argument
parsing and the commands it builds; ``make gpu-wheels`` (tools/gpu_wheels.sh) is run with a stand-in
pip to prove its size check.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "tools" / "gpu_acceptance.sh"
WHEELS_SCRIPT = REPO_ROOT / "tools" / "gpu_wheels.sh"
WHEEL_LIST = REPO_ROOT / "tools" / "gpu_wheels.txt"
TRAIN_LOCK = REPO_ROOT / "requirements" / "lock" / "py3.11" / "train.txt"
#: The script before it was rewritten: it named the deleted config ..._bf16_packed_style_e3.py.
OLD_SCRIPT = "tests/core/fixtures/scripts/gpu_acceptance-ad80818.sh"  # the script before its rewrite

#: Repository folders whose paths the script may name (generated ones, models/ data/ outputs/: not checked).
TRACKED_DIRS = ("xtuner_configs", "style_tune", "tools", "style_data", "eval_configs", "requirements",
                "benchmarks", "tests", "docs")
#: Its shell functions that pass their extra arguments to `make train` (``train_step NAME CFG DIR VAR=...``).
MAKE_WRAPPERS = ("train_step",)
#: The longest `make chat` session (prompt + reply) that still counts as "a few tokens": the label-mode
#: prompt alone is 35 tokens.
MAX_CHAT_SESSION_LEN = 64
MAX_WHEELS_MIB = 60


# ---------------------------------------------------------------- what the Makefile and the tree hold

def makefile_text() -> str:
    return (REPO_ROOT / "Makefile").read_text(encoding="utf-8")


def make_targets(text: str) -> set[str]:
    targets = set()
    for line in text.replace("\\\n", " ").splitlines():
        match = re.match(r"^([^\s#:=$][^:=]*?|\.PHONY)\s*:(?!=)(.*)$", line)
        if not match:
            continue
        if match.group(1) == ".PHONY":
            targets.update(word for word in match.group(2).split() if "$" not in word)
        elif not re.match(r"\s*[A-Z_]+\s*[?:+]?=", match.group(2)):  # not a target-specific variable line
            targets.update(word for word in match.group(1).split() if "%" not in word and "$" not in word)
    return targets


def make_variables(text: str) -> set[str]:
    assigned = re.findall(r"^\s*(?:override\s+|export\s+)?([A-Z][A-Z0-9_]*)\s*[?:+]?=", text, re.M)
    target_specific = re.findall(r"^[\w .-]+:\s*([A-Z][A-Z0-9_]*)\s*[?:+]?=", text, re.M)
    return set(assigned) | set(target_specific)


def setup_envs(text: str) -> set[str]:
    match = re.search(r"^SETUP_ENVS\s*:?=\s*(.*)$", text, re.M)
    assert match, "the Makefile has no SETUP_ENVS"
    return set(match.group(1).split()) | {"mutation"}


def module_problem(dotted: str) -> str | None:
    """None when ``style_tune.a.b`` is a module, or ``style_tune.a.b.NAME`` a name defined in one."""
    parts = dotted.split(".")
    for cut in (len(parts), len(parts) - 1):
        base = REPO_ROOT.joinpath(*parts[:cut])
        for path in (base.with_suffix(".py"), base / "__init__.py"):
            if not path.is_file():
                continue
            if cut == len(parts):
                return None
            name = parts[-1]
            source = path.read_text(encoding="utf-8")
            if re.search(rf"^(?:def|class)\s+{name}\b|^{name}\s*[:=]", source, re.M):
                return None
            return f"{dotted}: no such module, nor a name {name} in {path.relative_to(REPO_ROOT)}"
    return f"{dotted}: no such module"


# ---------------------------------------------------------------- reading the script

def logical_lines(text: str) -> list[tuple[str, bool]]:
    """(line, is_comment) with backslash continuations joined; a code line loses its trailing comment."""
    lines = []
    for line in text.replace("\\\n", " ").splitlines():
        if line.lstrip().startswith("#"):
            lines.append((line, True))
        else:
            lines.append((re.sub(r"(^|\s)#(?![{!@#]).*$", "", line), False))
    return lines


def shell_values(text: str) -> dict[str, str]:
    """The script's simple assignments, NAME=value (one a line), quotes removed."""
    values = {}
    for line, comment in logical_lines(text):
        match = re.match(r"^\s*(?:local\s+|export\s+)?([a-z_][a-z0-9_]*)=(\"[^\"]*\"|'[^']*'|\S*)\s*$", line)
        if match and not comment:
            values.setdefault(match.group(1), match.group(2).strip("\"'"))
    return values


def expand(value: str, values: dict[str, str], depth: int = 0) -> str:
    """$name and ${NAME:-default} as the script would expand them (the defaults for the environment)."""
    if depth > 5:
        return value
    value = re.sub(r"\$\{[A-Z_][A-Z0-9_]*:-([^}]*)\}", r"\1", value)
    def one(match: re.Match) -> str:
        name = match.group(1)
        return expand(values[name], values, depth + 1) if name in values else match.group(0)

    return re.sub(r"\$\{?([a-z_][a-z0-9_]*)\}?", one, value)


MAKE = re.compile(r"(?:^|[\s;|&(`\"])make\s+(?:-[A-Za-z]\S*\s+)*((?:[a-z][\w-]*(?:\s+|$))+)(.*)")
VARIABLE = re.compile(r"(?<![\w$])([A-Z][A-Z0-9_]*)=(\"(?:[^\"\\]|\\.)*\"|'[^']*'|\S*)")


def make_calls(text: str) -> list[tuple[list[str], dict[str, str], str, str]]:
    """Each `make TARGET... VAR=value...` in the script: (targets, variables, line, kind), kind "code" (run
    or printed), "comment" (named in backquotes in a comment) or "wrapper" (a MAKE_WRAPPERS call)."""
    calls = []
    for line, comment in logical_lines(text):
        spans = re.findall(r"`([^`]*)`", line) if comment else [line]
        for span in spans:
            for match in MAKE.finditer(span):
                rest = match.group(2).replace('\\"', '"')  # a command printed by echo "... \"...\""
                variables = {k: v.strip("\"'") for k, v in VARIABLE.findall(rest)}
                kind = "comment" if comment else "code"
                calls.append((match.group(1).split(), variables, span.strip(), kind))
        if not comment and re.match(rf"\s*(?:{'|'.join(MAKE_WRAPPERS)})\s", line):
            variables = {k: v.strip("\"'") for k, v in VARIABLE.findall(line)}
            calls.append((["train"], variables, line.strip(), "wrapper"))
    return calls


def problems(text: str) -> list[str]:
    """Everything the script names that does not exist, and the settings it must keep, one line each."""
    makefile = makefile_text()
    targets, variables, envs = make_targets(makefile), make_variables(makefile), setup_envs(makefile)
    values = shell_values(text)
    found: list[str] = []

    for config in sorted(set(re.findall(r"xtuner_configs/[\w.-]+\.py", text))):
        if not (REPO_ROOT / config).is_file():
            found.append(f"{config}: no such config")
    dirs = "|".join(TRACKED_DIRS)
    for path in sorted(set(re.findall(rf"(?<![\w./$-])((?:{dirs})/[\w./-]*\w)", text))):
        if not path.startswith("xtuner_configs/") and not (REPO_ROOT / path).exists():
            found.append(f"{path}: no such file or folder")
    for env in sorted(set(re.findall(r"\.envs/([\w-]+)/", text))):
        if env not in envs:
            found.append(f".envs/{env}: no such environment (SETUP_ENVS: {' '.join(sorted(envs))})")
    for dotted in sorted(set(re.findall(r"(?<![\w./])style_tune(?:\.\w+)+", text))):
        if problem := module_problem(dotted):
            found.append(problem)
    for dotted, names in re.findall(r"from\s+(style_tune(?:\.\w+)+)\s+import\s+([\w, ]+)", text):
        for name in (n.strip() for n in names.split(",")):
            if problem := module_problem(f"{dotted}.{name}"):
                found.append(problem)

    calls = make_calls(text)
    for call_targets, call_variables, line, _ in calls:
        for target in call_targets:
            if target not in targets:
                found.append(f"make {target}: no such target ({line})")
        for variable in call_variables:
            if variable not in variables:
                found.append(f"make {' '.join(call_targets)}: the Makefile has no variable {variable}")

    trains = [(v, line) for t, v, line, kind in calls if "train" in t and kind == "code"]
    if not trains:
        found.append("no `make train` call")
    for call_variables, line in trains:
        args = expand(call_variables.get("TRAIN_ARGS", ""), values)
        if not re.search(r"default_hooks\.logger\.interval=1(?!\d)", args):
            found.append(f"make train without default_hooks.logger.interval=1 (loss every iteration): {line}")

    chats = [(v, line) for t, v, line, kind in calls if "chat" in t and kind == "code"]
    if not chats:
        found.append("no `make chat` call")
    for call_variables, line in chats:
        session = re.search(r"--session-len[ =](\S+)", expand(call_variables.get("CHAT_ARGS", ""), values))
        if not session or not session.group(1).isdigit():
            found.append(f"make chat without CHAT_ARGS=\"--session-len N\" (lmdeploy chat asks for 4,096 "
                         f"new tokens): {line}")
        elif int(session.group(1)) > MAX_CHAT_SESSION_LEN:
            found.append(f"make chat with --session-len {session.group(1)} > {MAX_CHAT_SESSION_LEN}: "
                         "not a few tokens")

    if not re.search(r"from style_tune\.deploy\.serving import [\w, ]*\bserve_model\b", text) \
            or "serve_model(" not in text:
        found.append("the server is not started and awaited by style_tune.deploy.serving.serve_model")
    if re.search(r"\bsleep\b", text):
        found.append("a sleep: a wait loop of its own (the shared one stops when the server dies)")
    return found


# ---------------------------------------------------------------- the script as it is

def script_text() -> str:
    return SCRIPT.read_text(encoding="utf-8")


def run_script(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "MAKEFLAGS": ""})


def test_everything_the_script_names_exists_and_its_runs_are_bounded() -> None:
    assert problems(script_text()) == []


def test_the_checker_reads_the_script() -> None:
    """Guard against a checker that finds nothing: it sees the calls and values that the checks rely on."""
    calls = make_calls(script_text())
    seen = {target for call_targets, _, _, _ in calls for target in call_targets}
    assert {"train", "convert", "merge", "chat", "eval-style", "split", "gpu-wheels"} <= seen
    assert any(v.get("DEEPSPEED") == "deepspeed_zero2" for _, v, _, _ in calls)
    values = shell_values(script_text())
    default = re.search(r"^CONFIG \?= (\S+)", makefile_text(), re.M).group(1)
    assert values["default_cfg"] == default  # the Makefile's default config
    assert values["int8_cfg"] == "xtuner_configs/qwen2_5_1_5b_instruct_lora_int8_style_e3.py"


def test_the_checker_catches_what_the_script_before_its_rewrite_got_wrong() -> None:
    """The old script (kept as a fixture): a deleted config, a log line every 10 iterations, 4,096-token
    chat, its own wait."""
    old_script = (REPO_ROOT / OLD_SCRIPT).read_text(encoding="utf-8")
    found = "\n".join(problems(old_script))
    assert "xtuner_configs/qwen2_5_1_5b_instruct_lora_bf16_packed_style_e3.py: no such config" in found
    assert "without default_hooks.logger.interval=1" in found
    assert "make chat without CHAT_ARGS" in found
    assert "not started and awaited by style_tune.deploy.serving.serve_model" in found
    assert "a sleep" in found


def test_the_checker_reports_missing_targets_variables_paths_and_modules() -> None:
    text = script_text() + "\n".join([
        "make no-such-target",
        "make split NO_SUCH_VARIABLE=1",
        ".envs/no-such-env/bin/python -m style_tune.no_such_module",
        "cat tools/no_such_file.sh",
        "from style_tune.deploy.serving import no_such_helper",
    ])
    found = "\n".join(problems(text))
    for expected in ("make no-such-target: no such target", "the Makefile has no variable NO_SUCH_VARIABLE",
                     ".envs/no-such-env: no such environment", "style_tune.no_such_module: no such module",
                     "tools/no_such_file.sh: no such file",
                     "nor a name no_such_helper in style_tune/deploy/serving.py"):
        assert expected in found


def test_the_script_parses() -> None:
    proc = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


def test_help_and_bad_arguments() -> None:
    helped = run_script("--help")
    assert helped.returncode == 0 and "part1|part2 [OUT] [--device-stack] [--dry-run]" in helped.stdout
    for args in ((), ("part3",), ("part1", "--no-such-option"), ("part1", "part2"), ("part1", "a", "b")):
        proc = run_script(*args)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, (args, proc.stdout, proc.stderr)


def test_dry_run_of_part_one_builds_the_worst_case_runs_and_the_capped_chat(tmp_path: Path) -> None:
    proc = run_script("part1", str(tmp_path / "out"), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for config in ("qwen2_5_1_5b_instruct_lora_bf16_style_e3.py",
                   "qwen2_5_1_5b_instruct_lora_int8_style_e3.py"):
        train = next(line for line in out.splitlines()
                     if f"make train CONFIG=xtuner_configs/{config}" in line)
        assert "default_hooks.logger.interval=1" in train and "DATA=" in train and "long_rows.json" in train
    assert "tiny_model models/qwen2.5-1.5b-random --size full" in out
    assert "$long_rows_py" in out  # the rows as long as the configs' max_length
    for step in ("convert: make convert", "merge: make merge", "chat: chat_turn", "serve: serve_request"):
        assert f"[gpu-acceptance] {step}" in out
    assert 'make chat MODEL=' in out and '--session-len 48' in out
    assert "serve_model(" in out
    assert "SKIPPED" not in out
    assert not (tmp_path / "out").exists()  # a dry run writes nothing


def test_dry_run_on_the_device_stack_says_what_it_skips_and_why(tmp_path: Path) -> None:
    proc = run_script("part2", str(tmp_path / "out"), "--device-stack", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "venv --system-site-packages" in out and ".whl/" in out
    reasons = {line.split(": ")[1]: line for line in out.splitlines() if "cannot run on this machine" in line}
    assert set(reasons) == {"train-int8", "chat", "serve", "eval-style", "train-deepspeed"}
    assert "bitsandbytes 0.45.0" in reasons["train-int8"] and "CUDA <= 12.6" in reasons["train-int8"]
    assert "lmdeploy" in reasons["chat"] and "CUDA 12" in reasons["serve"]
    assert "sdist" in reasons["train-deepspeed"] and "OpenCompass" in reasons["eval-style"]
    assert "eval-style: SKIPPED on this machine" in out and "train-deepspeed: SKIPPED on this machine" in out
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- make gpu-wheels

def wheel_pins() -> dict[str, str]:
    pins = {}
    for line in WHEEL_LIST.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{WHEEL_LIST.name}: {line} is not name==version"
            assert name.lower() not in pins, f"{name} twice"
            pins[name.lower()] = version
    return pins


def test_the_wheels_are_the_train_locks_versions_and_none_that_cannot_be_carried() -> None:
    lock = dict(re.findall(r"^([\w.-]+)==(\S+)", TRAIN_LOCK.read_text(encoding="utf-8"), re.M))
    lock = {name.lower(): version for name, version in lock.items()}
    pins = wheel_pins()
    assert {"xtuner", "mmengine", "transformers", "peft", "datasets"} <= set(pins)
    assert {name: version for name, version in pins.items() if lock.get(name) != version} == {}, \
        f"tools/gpu_wheels.txt differs from {TRAIN_LOCK.relative_to(REPO_ROOT)}"
    assert not {"torch", "bitsandbytes", "deepspeed", "lmdeploy", "opencompass"} & set(pins)


def test_make_gpu_wheels_runs_the_script_into_an_ignored_folder() -> None:
    recipe = re.search(r"^gpu-wheels:.*\n((?:\t.*\n)+)", makefile_text(), re.M)
    assert recipe and "tools/gpu_wheels.sh .whl" in recipe.group(1)
    assert "/.whl/" in (REPO_ROOT / ".gitignore").read_text(encoding="utf-8").split()


FAKE_PIP = """#!{python}
import os, re, sys
args = sys.argv[1:]
assert args[:3] == ["-m", "pip", "download"], args
assert "--no-deps" in args and "--only-binary=:all:" in args
assert args[args.index("--python-version") + 1] == "3.12"
out = args[args.index("-d") + 1]
for pin in (a for a in args if "==" in a):
    name, version = pin.split("==")
    with open(os.path.join(out, re.sub(r"[-_.]+", "_", name) + f"-{{version}}-py3-none-any.whl"), "wb") as f:
        f.truncate(int(os.environ["FAKE_WHEEL_BYTES"]))
"""


def run_gpu_wheels(tmp_path: Path, wheel_bytes: int) -> subprocess.CompletedProcess:
    fake = tmp_path / "fake-python"
    fake.write_text(FAKE_PIP.format(python=sys.executable), encoding="utf-8")
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake), "FAKE_WHEEL_BYTES": str(wheel_bytes)}
    return subprocess.run(["bash", str(WHEELS_SCRIPT), str(tmp_path / "whl")], capture_output=True, text=True,
                          env=env, timeout=60)


def test_gpu_wheels_reports_the_size_and_fails_over_the_limit_in_one_line(tmp_path: Path) -> None:
    n = len(wheel_pins())
    small = run_gpu_wheels(tmp_path, 1024)
    assert small.returncode == 0, small.stderr
    assert f"{n} wheels" in small.stdout and f"(limit {MAX_WHEELS_MIB} MiB)" in small.stdout
    shutil.rmtree(tmp_path / "whl")
    big = run_gpu_wheels(tmp_path, (MAX_WHEELS_MIB * 2**20) // n + 2**20)
    assert big.returncode != 0
    assert big.stderr.count("\n") == 1, big.stderr
    assert re.search(r"is \d+\.\d MiB, over the 60 MiB", big.stderr), big.stderr


def test_gpu_wheels_refuses_a_wheel_the_list_does_not_name(tmp_path: Path) -> None:
    (tmp_path / "whl").mkdir()
    (tmp_path / "whl" / "transformers-5.17.0-py3-none-any.whl").write_bytes(b"")
    proc = run_gpu_wheels(tmp_path, 1024)
    assert proc.returncode != 0 and "transformers-5.17.0-py3-none-any.whl" in proc.stderr
    assert proc.stderr.count("\n") == 1
