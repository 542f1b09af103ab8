"""The GPU check (style_tune/dev/gpu_acceptance.py, started by tools/gpu_acceptance.sh) can run, and its
decisions hold: standard library only, nothing here needs a GPU.

The check runs only on a GPU machine, so nothing else would notice a config, make target, Makefile
variable, module or path that its steps name going away (the script before it once named a deleted
config). ``problems`` reads the steps each part plans (both parts, with and without --device-stack) and
the module's text, and lists each such name that does not exist, and the settings that keep a run short
and readable: a loss line every iteration (``default_hooks.logger.interval=1``), `make chat` capped at a
few tokens (lmdeploy chat has no max-new-tokens option: ``--session-len``), and the server wait of the
shared helper (style_tune/deploy/serving.py), which stops when the server process dies, instead of a
loop of its own. The decisions are tested as functions: the arguments, which steps run, skip or are
blocked by a failed one, the figures read from the logs and the report; ``main`` runs whole with the
step runner replaced (the real runner runs here on small commands). Not run here: the steps themselves
on a GPU; the in-env actions run in their suites on the CPU (tests/train/test_gpu_acceptance_rows.py:
long-rows and versions; tests/deploy/test_gpu_acceptance_serve.py: serve-request). ``make gpu-wheels``
(tools/gpu_wheels.sh) is run with a stand-in pip to prove its size check.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from style_tune.dev import gpu_acceptance as ga

REPO_ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = REPO_ROOT / "tools" / "gpu_acceptance.sh"
MODULE_FILE = REPO_ROOT / "style_tune" / "dev" / "gpu_acceptance.py"
WHEELS_SCRIPT = REPO_ROOT / "tools" / "gpu_wheels.sh"
WHEEL_LIST = REPO_ROOT / "tools" / "gpu_wheels.txt"
TRAIN_LOCK = REPO_ROOT / "requirements" / "lock" / "py3.11" / "train.txt"
#: The shell script before its first rewrite: it named the deleted config ..._bf16_packed_style_e3.py.
OLD_SCRIPT = "tests/core/fixtures/scripts/gpu_acceptance-ad80818.sh"

#: Repository folders whose paths the check may name (generated ones, models/ data/ outputs/: not checked).
TRACKED_DIRS = ("xtuner_configs", "style_tune", "tools", "style_data", "eval_configs", "requirements",
                "benchmarks", "tests", "docs")
#: The longest `make chat` session (prompt + reply) that still counts as "a few tokens": the label-mode
#: prompt alone is 35 tokens.
MAX_CHAT_SESSION_LEN = 64
MAX_WHEELS_MIB = 60
#: What a run of each part is made of.
PART1 = ["random-model", "split", "long-rows", "train-default", "train-int8", "convert", "merge", "chat",
         "serve"]
PART2 = ["random-model", "split", "long-rows", "eval-style", "train-deepspeed", "prefs", "train-dpo"]


# ---------------------------------------------------------------- what the Makefile and the tree hold

def makefile_text() -> str:
    return (REPO_ROOT / "Makefile").read_text(encoding="utf-8")


def make_targets(text: str) -> set[str]:
    targets: set[str] = set()
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


# ---------------------------------------------------------------- the checker

def options(part: str, tmp: Path, *, iters: int = 5, device_stack: bool = False,
            device_python: str = "python3") -> ga.Options:
    return ga.Options(part=part, out=tmp / "out", work=tmp / "work", iters=iters, device_stack=device_stack,
                      device_python=device_python)


def every_plan(tmp: Path) -> list[ga.Step]:
    return [step for part in ga.PARTS for stack in (False, True)
            for step in ga.plan(options(part, tmp, device_stack=stack), str(tmp / "work" / "merged"))]


def name_problems(text: str) -> list[str]:
    """What a text (the module, a step's command) names that does not exist: configs, paths, envs, modules,
    targets named in its usage."""
    makefile = makefile_text()
    targets, envs = make_targets(makefile), setup_envs(makefile)
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
    for target in sorted(set(re.findall(r"`make ([a-z][\w-]*)", text)) - targets):  # named in the usage
        found.append(f"`make {target}`: no such target")
    return found


def wait_problems(text: str) -> list[str]:
    """The server started and awaited by the shared helper, no wait loop of its own."""
    found = []
    if not re.search(r"from style_tune\.deploy\.serving import [\w, ]*\bserve_model\b", text) \
            or "serve_model(" not in text:
        found.append("the server is not started and awaited by style_tune.deploy.serving.serve_model")
    if re.search(r"\bsleep\b", text):
        found.append("a sleep: a wait loop of its own (the shared one stops when the server dies)")
    return found


def step_problems(steps: list[ga.Step]) -> list[str]:
    """What the steps' commands name that does not exist, and the settings that keep the runs bounded."""
    makefile = makefile_text()
    targets, variables = make_targets(makefile), make_variables(makefile)
    found = [problem for step in steps for problem in name_problems(" ".join(step.argv))]
    trains = chats = 0
    for step in steps:
        line = ga.show(step)
        if step.limit <= 0 or step.kill_after <= 0:
            found.append(f"{step.name}: no time limit")
        if "-m" in step.argv and (problem := module_problem(step.argv[step.argv.index("-m") + 1])):
            found.append(f"{step.name}: {problem}")
        if step.argv[0] != "make":
            continue
        words = [word for word in step.argv[1:] if not word.startswith("-")]
        call_targets = [word for word in words if "=" not in word]
        call_variables = dict(word.split("=", 1) for word in words if "=" in word)
        for target in call_targets:
            if target not in targets:
                found.append(f"make {target}: no such target ({line})")
        for variable in call_variables:
            if variable not in variables:
                found.append(f"make {' '.join(call_targets)}: the Makefile has no variable {variable}")
        if "train" in call_targets:
            trains += 1
            train_args = call_variables.get("TRAIN_ARGS", "")
            if not re.search(r"default_hooks\.logger\.interval=1(?!\d)", train_args):
                found.append(f"make train without default_hooks.logger.interval=1 (a loss every iteration): "
                             f"{line}")
        if "chat" in call_targets:
            chats += 1
            session = re.search(r"--session-len[ =](\S+)", call_variables.get("CHAT_ARGS", ""))
            if not session or not session.group(1).isdigit():
                found.append(f"make chat without CHAT_ARGS=\"--session-len N\" (lmdeploy chat asks for 4,096 "
                             f"new tokens): {line}")
            elif int(session.group(1)) > MAX_CHAT_SESSION_LEN:
                found.append(f"make chat with --session-len {session.group(1)} > {MAX_CHAT_SESSION_LEN}: "
                             "not a few tokens")
    if not trains:
        found.append("no `make train` call")
    if not chats:
        found.append("no `make chat` call")
    return found


def test_everything_the_check_names_exists_and_its_runs_are_bounded(tmp_path: Path) -> None:
    assert step_problems(every_plan(tmp_path)) == []
    module = MODULE_FILE.read_text(encoding="utf-8")
    assert name_problems(module) == wait_problems(module) == []
    assert name_problems(LAUNCHER.read_text(encoding="utf-8")) == []


def test_the_checker_sees_the_steps_and_the_makefiles_defaults(tmp_path: Path) -> None:
    """Guard against a checker that finds nothing: it sees the calls and values that the checks rely on."""
    steps = every_plan(tmp_path)
    seen = {word for step in steps if step.argv[0] == "make" for word in step.argv[1:] if "=" not in word}
    assert {"train", "convert", "merge", "chat", "eval-style", "split", "prefs"} <= seen
    assert any("DEEPSPEED=deepspeed_zero2" in step.argv for step in steps)
    assert "`make gpu-wheels`" in MODULE_FILE.read_text(encoding="utf-8")
    default = re.search(r"^CONFIG \?= (\S+)", makefile_text(), re.M)
    assert default and ga.DEFAULT_CFG == default.group(1)  # the Makefile's default config
    assert ga.INT8_CFG == "xtuner_configs/qwen2_5_1_5b_instruct_lora_int8_style_e3.py"


def test_the_checker_catches_what_the_script_before_its_rewrite_got_wrong(tmp_path: Path) -> None:
    """The old script (kept as a fixture): a deleted config, its own wait; and its runs as steps: a log line
    every 10 iterations, a 4,096-token chat."""
    old_script = (REPO_ROOT / OLD_SCRIPT).read_text(encoding="utf-8")
    found = "\n".join(name_problems(old_script) + wait_problems(old_script))
    assert "xtuner_configs/qwen2_5_1_5b_instruct_lora_bf16_packed_style_e3.py: no such config" in found
    assert "not started and awaited by style_tune.deploy.serving.serve_model" in found
    assert "a sleep" in found
    steps = ga.plan(options("part1", tmp_path), "merged")
    old = [dataclasses.replace(step, argv=tuple(
        arg.replace("logger.interval=1 ", "logger.interval=10 ") for arg in step.argv
        if not arg.startswith("CHAT_ARGS="))) for step in steps]
    found = "\n".join(step_problems(old))
    assert "without default_hooks.logger.interval=1" in found
    assert "make chat without CHAT_ARGS" in found
    longer = [dataclasses.replace(step, argv=tuple(a.replace("--session-len 48", "--session-len 4096")
                                                   for a in step.argv)) for step in steps]
    assert "make chat with --session-len 4096 > 64" in "\n".join(step_problems(longer))


def test_the_checker_reports_missing_targets_variables_paths_and_modules(tmp_path: Path) -> None:
    steps = ga.plan(options("part1", tmp_path), "merged") + [
        ga.Step("a", ("make", "no-such-target"), 1), ga.Step("b", ("make", "split", "NO_SUCH_VARIABLE=1"), 1),
        ga.Step("c", (".envs/no-such-env/bin/python", "-m", "style_tune.no_such_module"), 1),
        ga.Step("d", ("cat", "tools/no_such_file.sh"), 1), ga.Step("e", ("true",), 0)]
    found = "\n".join(step_problems(steps))
    for expected in ("make no-such-target: no such target", "the Makefile has no variable NO_SUCH_VARIABLE",
                     ".envs/no-such-env: no such environment", "style_tune.no_such_module: no such module",
                     "tools/no_such_file.sh: no such file", "e: no time limit"):
        assert expected in found
    text = "from style_tune.deploy.serving import no_such_helper\nsee `make no-such-step`"
    found = "\n".join(name_problems(text))
    assert "nor a name no_such_helper in style_tune/deploy/serving.py" in found
    assert "`make no-such-step`: no such target" in found


# ---------------------------------------------------------------- the arguments

def run_launcher(*args: str, cwd: Path = REPO_ROOT, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(LAUNCHER), *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "MAKEFLAGS": "", "DEVICE_PYTHON": sys.executable, **env})


def test_help_and_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    helped = run_launcher("--help")  # through the launcher, as a user starts it
    assert helped.returncode == 0 and "part1|part2 [OUT] [--device-stack] [--dry-run]" in helped.stdout
    assert "--device-stack: a lent" in helped.stdout  # the usage block
    bad = run_launcher("part1", "--no-such-option")
    assert bad.returncode == 2 and bad.stderr.startswith("gpu_acceptance: ") and bad.stderr.count("\n") == 1
    for args, environ in (((), {}), (("part3",), {}), (("part1", "part2"), {}), (("part1", "a", "b"), {}),
                          (("part1",), {"ITERS": "0"}), (("part1",), {"ITERS": "x"})):
        with pytest.raises(SystemExit) as exited:
            ga.parse_args(args, environ, tmp_path)
        out, err = capsys.readouterr()
        assert exited.value.code == 2 and out == "" and err.count("\n") == 1, (args, err)
        assert err.startswith("gpu_acceptance: ") and err.rstrip().endswith(f"(usage: {ga.USAGE})"), err
    with pytest.raises(SystemExit):
        ga.parse_args(["part1"], {"ITERS": "0"}, tmp_path)
    assert "ITERS=0 is not a positive number" in capsys.readouterr().err


def test_out_and_the_work_dir_are_relative_to_where_it_was_started(tmp_path: Path) -> None:
    environ = {"GPU_ACCEPTANCE_WORK": "w", "ITERS": "3"}
    opts = ga.parse_args(["part2", "here", "--device-stack"], environ, tmp_path)
    assert (opts.part, opts.out, opts.work, opts.iters) == ("part2", tmp_path / "here", tmp_path / "w", 3)
    assert opts.device_stack and not opts.dry_run and opts.device_python == "python3"
    opts = ga.parse_args(["--dry-run", "part1"], {"DEVICE_PYTHON": "/opt/py"}, tmp_path)
    assert opts.out == Path("outputs/gpu_acceptance/part1")  # in the checkout, where the steps run
    assert opts.work == REPO_ROOT / "outputs/gpu_acceptance/work" and opts.iters == 5
    assert opts.dry_run and opts.device_python == "/opt/py"


def test_the_orchestrator_needs_the_standard_library_alone(tmp_path: Path) -> None:
    """A --device-stack machine has no env yet: python -S (no site-packages) runs a dry run."""
    command = [sys.executable, "-S", "-m", ga.MODULE, "part1", str(tmp_path / "out"), "--dry-run"]
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert "[gpu-acceptance] serve: " in proc.stdout


# ---------------------------------------------------------------- which steps run

def names(steps: list[ga.Step]) -> list[str]:
    return [step.name for step in steps]


def test_each_part_plans_its_steps_each_after_what_it_needs(tmp_path: Path) -> None:
    part1 = ga.plan(options("part1", tmp_path), "unused")
    assert names(part1) == PART1
    for steps in (part1, ga.plan(options("part2", tmp_path), "tuned")):
        for i, step in enumerate(steps):
            assert set(step.needs) <= set(names(steps[:i])), step.name
    need = {step.name: step.needs for step in part1}
    assert need["convert"] == ("train-default",) and need["chat"] == need["serve"] == ("merge",)
    assert need["train-int8"] == ("long-rows",)  # the 8-bit run does not wait for the default one
    chat = part1[PART1.index("chat")]
    assert chat.stdin == f"{ga.CHAT_QUESTION}\n\nexit\n\n" and "CHAT_ARGS=--session-len 48" in chat.argv
    assert ga.show(chat).startswith("printf '你好，今天过得怎么样？\\n\\nexit\\n\\n' | make chat MODEL=")
    assert ga.show(chat).endswith('CHAT_ARGS="--session-len 48"')
    trains = [step for step in part1 if step.train]
    assert names(trains) == ["train-default", "train-int8"]
    assert [step.fresh for step in trains] == [tmp_path / "work" / f"work-{r}" for r in ("default", "int8")]
    assert [step.iters for step in trains] == [5, 5]


def test_part_two_tunes_and_compares_the_model_it_is_given(tmp_path: Path) -> None:
    steps = {step.name: step for step in ga.plan(options("part2", tmp_path, iters=3), "TUNED")}
    assert list(steps) == PART2
    assert {"TUNED=TUNED", f"BASE={ga.MODEL}"} <= set(steps["eval-style"].argv)
    dpo = steps["train-dpo"]
    assert "MODEL=TUNED" in dpo.argv and f"DATA={ga.PREFS}" in dpo.argv and dpo.iters == ga.DPO_ITERS
    # the style score on 2 prompts (both styles each) of the split beside the pairs, 8 tokens a reply
    assert "val_dataloader.dataset.limit=2 val_cfg.max_new_tokens=8" in ga.show(dpo)
    assert "max_iters=2 " in ga.show(dpo)
    assert not [word for word in dpo.argv if word.startswith("VAL_DATA=")]
    deepspeed = steps["train-deepspeed"]
    assert "max_iters=3 " in ga.show(deepspeed) and "DEEPSPEED=deepspeed_zero2" in deepspeed.argv
    # the long rows have no val.json beside them: the label split's
    assert f"VAL_DATA={ga.SPLIT_DIR}/val.json" in deepspeed.argv


def test_the_device_stack_builds_its_venvs_first_and_part_two_needs_no_preparation(tmp_path: Path) -> None:
    part1 = ga.plan(options("part1", tmp_path, device_stack=True, device_python="/opt/py"), "tuned")
    assert names(part1) == ["device-stack", *PART1]
    assert part1[0].argv == ("/opt/py", "-m", ga.MODULE, "device-stack")
    assert "venv --system-site-packages" in part1[0].detail and ".whl/" in part1[0].detail
    # part2's steps that read the model, the split and the rows cannot run there: none are made
    part2 = ga.plan(options("part2", tmp_path, device_stack=True), "tuned")
    assert names(part2) == ["device-stack", "eval-style", "train-deepspeed", "prefs", "train-dpo"]


# ---------------------------------------------------------------- running them: skips, blocks, failures

def quiet(line: str) -> None:
    """What execute says, unread."""


def run_with(codes: dict[str, int], ran: list[str] | None = None):
    def run(step: ga.Step) -> int:
        if ran is not None:
            ran.append(step.name)
        return codes.get(step.name, 0)
    return run


def test_a_failed_step_blocks_only_the_steps_that_need_it(tmp_path: Path) -> None:
    ran: list[str] = []
    said: list[str] = []
    steps = ga.plan(options("part1", tmp_path), "tuned")
    done = ga.execute(steps, {}, run_with({"train-default": 1}, ran), said.append)
    assert ran == ["random-model", "split", "long-rows", "train-default", "train-int8"]
    assert done.rc == {**dict.fromkeys(ran, 0), "train-default": 1, **dict.fromkeys(
        ("convert", "merge", "chat", "serve"), "blocked")}
    assert done.failed == 5 and done.skipped == 0  # the failed one and the four it blocked
    assert "[gpu-acceptance] convert: not run (train-default: 1)" in said
    assert "[gpu-acceptance] merge: not run (convert: blocked)" in said
    rows = {row[0]: row for row in done.rows}
    assert rows["convert"] == ("convert", "not run", "-", "needs train-default, which did not pass")
    assert rows["train-default"][1] == "1" and rows["train-int8"][1] == "0"
    timed_out = ga.execute(steps, {}, run_with({"split": 124}), quiet)
    assert {row[0]: row[1] for row in timed_out.rows}["split"] == "124 (timed out)"
    assert timed_out.rc["long-rows"] == "blocked" and timed_out.rc["random-model"] == 0


def test_what_the_machine_cannot_run_is_skipped_with_its_reason_even_when_blocked(tmp_path: Path) -> None:
    steps = ga.plan(options("part1", tmp_path, device_stack=True), "tuned")
    said: list[str] = []
    done = ga.execute(steps, ga.DEVICE_STACK_SKIPS, run_with({"merge": 2}), said.append)
    assert done.rc["chat"] == done.rc["serve"] == done.rc["train-int8"] == "skipped"  # skipped, not blocked
    assert done.skipped == 3 and done.failed == 1
    assert f"[gpu-acceptance] chat: SKIPPED on this machine: {ga.DEVICE_STACK_SKIPS['chat']}" in said
    assert ("train-int8", "skipped", "-", ga.DEVICE_STACK_SKIPS["train-int8"]) in done.rows


def test_venvs_that_could_not_be_built_stop_the_run_with_a_note(tmp_path: Path) -> None:
    ran: list[str] = []
    done = ga.execute(ga.plan(options("part1", tmp_path, device_stack=True), "tuned"), ga.DEVICE_STACK_SKIPS,
                      run_with({"device-stack": 1}, ran), quiet)
    assert ran == ["device-stack"] and len(done.rows) == 1 and done.failed == 1
    assert done.notes == ["the --device-stack venvs could not be built: nothing else ran "
                          "(see the device-stack log)"]


def test_the_runner_logs_feeds_limits_and_starts_fresh(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    old_run = tmp_path / "work-old"
    (old_run / "iter_3.pth").parent.mkdir()
    (old_run / "iter_3.pth").write_text("from an earlier run")
    step = ga.Step("echo", ("sh", "-c", "cat; echo to-out; echo to-err >&2; exit 3"), 30, stdin="fed\n",
                   fresh=old_run)
    assert ga.run_step(step, logs) == 3
    assert (logs / "echo.log").read_text().split() == ["fed", "to-out", "to-err"]
    assert not old_run.exists()
    assert ga.run_step(ga.Step("reads", ("cat",), 30), logs) == 0  # no input given: none read
    assert ga.run_step(ga.Step("slow", ("sh", "-c", "exec tail -f /dev/null"), 1, kill_after=1), logs) == 124


# ---------------------------------------------------------------- the report

def iteration(i: int, memory: int, loss: float) -> str:
    """An iteration line as mmengine logs it on a GPU."""
    return (f"12/07 19:57:08 - mmengine - INFO - Iter(train) [{i}/5]  lr: 2.0000e-05  eta: 0:00:05  "
            f"time: 0.5061  data_time: 0.0216  memory: {memory}  grad_norm: 3.8903  loss: {loss}")


def test_the_figures_are_read_from_the_logs_as_mmengine_and_nvidia_smi_write_them() -> None:
    log = "\n".join([iteration(1, 15234, 2.5), "12/07 - mmengine - INFO - Iter(val) memory: 99999  loss: 9",
                     iteration(2, 16001, 2.25), "EvaluateChatHook: sample loss: none"])
    assert ga.peak_allocated(log) == 16001  # the training iterations' alone
    assert ga.losses(log) == ["2.5", "2.25"]
    assert ga.peak_allocated("no iteration") == 0 and ga.losses("") == []
    assert ga.peak_used("1200\n24001\n[N/A]\n900\n") == 24001
    assert ga.peak_used("") is None and ga.peak_used("nvidia-smi: not found\n") is None
    assert ga.verdict(12288, None) == "within (50%)"
    assert ga.verdict(100, ga.BUDGET_MIB) == "within (100%)"  # the larger of the two counts
    assert ga.verdict(ga.BUDGET_MIB + 1, 0) == "OVER" and ga.verdict(0, None) == "not measured"
    shapes = ga.shapes("shape a.py 32 256\nrows\nshape b.py 20 256\n")
    assert shapes == {"a.py": "32 x 256", "b.py": "20 x 256"}


def fake_logs(logs: Path, codes: dict[str, int]):
    """A runner that writes each step's log as the real one would: iteration lines for the training runs."""
    def run(step: ga.Step) -> int:
        lines = [f"{step.name} line {i}" for i in range(30)]
        if step.name == "long-rows":
            lines = [f"shape {ga.DEFAULT_CFG} 32 256", f"shape {ga.INT8_CFG} 20 256"]
        if step.name == "train-default":
            lines = [iteration(i, 20000 + i, 3 - i / 10) for i in range(1, 6)]
            (logs / "train-default.smi").write_text("21000\n23500\n")
        if step.name == "train-int8":
            lines = [iteration(i, 30000, 1.0) for i in range(1, 4)]  # killed after 3 of 5
        (logs / f"{step.name}.log").write_text("\n".join(lines) + "\n")
        return codes.get(step.name, 0)
    return run


def test_the_summary_has_a_row_per_step_the_memory_the_losses_and_each_failure(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    opts = options("part1", tmp_path)
    steps = ga.plan(opts, "tuned")
    done = ga.execute(steps, {}, fake_logs(logs, {"train-int8": 1, "merge": 2}), quiet)
    done.notes.append("a note")
    versions = ["- GPU: H100", "- train env: v"]
    text = ga.summary(opts, steps, done, logs, date="D", commit="abc1234", versions=versions)
    lines = text.splitlines()
    assert lines[:6] == ["# GPU acceptance run, part1", "", "- date: D; commit: abc1234",
                         "- iterations a training run: 5; steps failed: 4; skipped on this machine: 0",
                         "- GPU: H100", "- train env: v"]
    assert "- a note" in lines
    assert "| chat | not run | - | needs merge, which did not pass |" in lines
    assert any(line.startswith("| merge | 2 | ") and "make merge MODEL=" in line for line in lines)
    assert ("| train-default | `qwen2_5_1_5b_instruct_lora_bf16_style_e3.py` | 32 x 256 | 20005 | 23500 "
            "| within (96%) |") in lines
    assert ("| train-int8 | `qwen2_5_1_5b_instruct_lora_int8_style_e3.py` | 20 x 256 | 30000 | not sampled "
            "| OVER |") in lines
    assert "- train-default: 2.9 2.8 2.7 2.6 2.5" in lines
    assert "- train-int8: 1.0 1.0 1.0 (3 loss lines for 5 iterations)" in lines
    merge = lines.index("## merge failed (exit 2): the end of its log")
    assert lines[merge + 2:merge + 4] == ["```", "merge line 5"] and lines[merge + 28] == "```"  # its last 25
    assert "## train-int8 failed (exit 1): the end of its log" in lines
    assert not [line for line in lines if line.startswith("## chat failed")]  # not run: no log to show
    stack = ga.summary(dataclasses.replace(opts, device_stack=True), steps, done, logs, date="D", commit="c",
                       versions=[])
    assert f"  - eval-style: {ga.DEVICE_STACK_SKIPS['eval-style']}" in stack.splitlines()
    no_rows = ga.execute(steps, {}, fake_logs(logs, {"long-rows": 1}), quiet)  # no training run started
    text = ga.summary(opts, steps, no_rows, logs, date="D", commit="c", versions=[])
    assert "| train-default | not run | - | needs long-rows, which did not pass |" in text
    assert "## Peak GPU memory" not in text and "## long-rows failed (exit 1)" in text


def test_a_run_writes_its_summary_and_logs_and_exits_1_when_a_step_failed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """main as a GPU machine runs it, with each step's command replaced by a stand-in that writes its log."""
    work = tmp_path / "work"
    (work / "logs-part1").mkdir(parents=True)
    (work / "logs-part1" / "stale.smi").write_text("99999\n")  # an earlier run's: removed first
    monkeypatch.setenv("GPU_ACCEPTANCE_WORK", str(work))
    monkeypatch.setattr(ga, "run_step", lambda step, logs: fake_logs(logs, {"serve": 1})(step))
    monkeypatch.setattr(ga, "versions", lambda: ["- GPU: stand-in"])
    monkeypatch.chdir(tmp_path)
    assert ga.main(["part1", "out"]) == 1
    printed = capsys.readouterr().out
    assert f"[gpu-acceptance] serve failed (1): {work / 'logs-part1' / 'serve.log'}" in printed
    assert printed.splitlines()[-1] == (f"[gpu-acceptance] part1: 1 failed, 0 skipped; "
                                        f"{tmp_path}/out/summary.md, logs: {tmp_path}/out/logs.tar.gz")
    summary = (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    assert summary in printed and "- GPU: stand-in" in summary and "| serve | 1 | " in summary
    with tarfile.open(tmp_path / "out" / "logs.tar.gz") as tar:
        assert {Path(name).name for name in tar.getnames()} >= {f"{name}.log" for name in PART1}
        assert "stale.smi" not in {Path(name).name for name in tar.getnames()}


def test_part_two_without_part_ones_model_compares_the_base_with_itself(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    ran: list[ga.Step] = []
    monkeypatch.setenv("GPU_ACCEPTANCE_WORK", str(tmp_path / "work"))
    def run_step(step: ga.Step, logs: Path) -> int:
        ran.append(step)
        return 0

    monkeypatch.setattr(ga, "run_step", run_step)
    monkeypatch.setattr(ga, "versions", lambda: [])
    monkeypatch.chdir(tmp_path)
    assert ga.main(["part2", "out"]) == 0
    assert f"TUNED={ga.MODEL}" in next(step for step in ran if step.name == "eval-style").argv
    assert "- no merged model from part1 in" in (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    (tmp_path / "work" / "merged").mkdir()
    (tmp_path / "work" / "merged" / "config.json").write_text("{}")
    ran.clear()
    monkeypatch.chdir(tmp_path)  # main runs from the checkout
    assert ga.main(["part2", "out"]) == 0
    eval_style = next(step for step in ran if step.name == "eval-style")
    assert f"TUNED={tmp_path / 'work' / 'merged'}" in eval_style.argv
    assert not (REPO_ROOT / "out").exists()
    capsys.readouterr()


def test_dry_runs_print_every_step_and_write_nothing(tmp_path: Path) -> None:
    proc = run_launcher("part1", "out", "--dry-run", cwd=tmp_path, GPU_ACCEPTANCE_WORK="runs")
    assert proc.returncode == 0, proc.stderr
    for step in PART1:
        assert f"[gpu-acceptance] {step}: " in proc.stdout
    assert f"WORK_DIR={tmp_path / 'runs' / 'work-default'}" in proc.stdout and "SKIPPED" not in proc.stdout
    assert "serve_model(" in proc.stdout
    proc = run_launcher("part2", "out", "--device-stack", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    reasons = {line.split(": ")[1] for line in out.splitlines() if "cannot run on this machine" in line}
    assert reasons == set(ga.DEVICE_STACK_SKIPS)
    assert "eval-style: SKIPPED on this machine" in out and "venv --system-site-packages" in out
    assert list(tmp_path.iterdir()) == []  # a dry run writes nothing


def test_the_device_stack_leaves_an_env_it_did_not_make_alone(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Its refusals, and the venvs it makes, in a stand-in checkout. Not run here: pip's install of the
    wheels (this env has no pip) and the import check over a GPU machine's torch."""
    assert ga.device_stack(str(tmp_path)) == 1
    assert "no wheels in .whl/" in capsys.readouterr().out
    (tmp_path / ".whl").mkdir()
    (tmp_path / ".whl" / "x-1-py3-none-any.whl").write_bytes(b"")
    (tmp_path / ".envs" / "dev").mkdir(parents=True)
    assert ga.device_stack(str(tmp_path)) == 1
    assert "was not made by --device-stack: left alone" in capsys.readouterr().out
    assert list((tmp_path / ".envs" / "dev").iterdir()) == []
    (tmp_path / ".envs" / "dev" / ".device-stack").touch()  # its own from an earlier run: remade
    assert ga.device_stack(str(tmp_path)) != 0  # pip is not in this env
    for env in ("dev", "train"):
        pth = list((tmp_path / ".envs" / env).glob("lib/python*/site-packages/style_tune_checkout.pth"))
        assert [p.read_text() for p in pth] == [f"{REPO_ROOT}\n"]
        assert "include-system-site-packages = true" in (tmp_path / ".envs" / env / "pyvenv.cfg").read_text()
        assert not (tmp_path / ".envs" / env / ".installed").exists()  # not stamped: make would rebuild it

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
