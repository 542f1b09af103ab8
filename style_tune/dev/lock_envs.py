#!/usr/bin/env python3
"""Lock files for the environments, and the CI guard that checks them (`make lock`, `make check-envs`).

    python -m style_tune.dev.lock_envs lock  [--env ENV]   write locks
    python -m style_tune.dev.lock_envs check [--env ENV]   check them: resolve, then import and run each env
    python -m style_tune.dev.lock_envs imports ENV         (in ENV's own interpreter) import its packages

Every environment (ENVS below) is resolved by uv's resolver (`uv pip compile`, for Linux x86_64 with
glibc >= 2.28 and Python 3.11, from PyPI alone: uv reads no pip configuration) into
requirements/lock/py3.11/ENV.txt, which `make setup` installs with --no-deps: every user's env is the set
CI resolved, installed and ran. One lock per env for CPU and GPU machines: PyPI's Linux torch is a CUDA
build, and it runs on a CPU. An existing lock is the resolver's preference, so `make lock` after an edit
changes only what the edit needs.
`check` resolves again without writing and fails, one line per problem, when a pin set does not
resolve, when a lock is stale or names a version PyPI does not serve (the pins that differ are named),
when one env mixes CUDA majors (nvidia-*-cu12 beside CUDA 13 wheels, +cuXYZ build tags), or when a
compiled extension's CUDA differs from torch's. Then, for each env built under .envs/ (`make test`
builds them all), it imports the env's packages and the project's modules of that toolchain
(Env.imports: the one list, which tools/setup_env.sh also checks before it stamps an env) and runs the
env's smallest real step on the CPU (Env.smoke).
Needs the `uv` binary (.envs/.uv, bootstrapped by tools/setup_env.sh, or $UV) and the package index.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from style_tune import REPO_ROOT

REQ = Path("requirements")
LOCK_DIR = REQ / "lock"
# The one Python every env is built with, and the only one CI installs and tests (docs/environments.md).
PYTHON = "3.11"
# Where the envs run: Linux x86_64 (torch >= 2.10 ships manylinux_2_28 wheels only).
PLATFORM = "x86_64-manylinux_2_28"


@dataclass(frozen=True)
class Env:
    """One venv: the pin files it is resolved from and what it must import (its smallest step: SMOKE)."""

    reqs: tuple[str, ...]  # resolved together
    nodeps: tuple[str, ...] = ()  # installed with --no-deps (their dependencies are in reqs)
    # Import names: the toolchain's top-level packages, then the project's modules that run in this env.
    imports: tuple[str, ...] = ()
    # The part of tests/ that `make test` runs in this env: it exercises the env's steps at length and runs
    # its SMOKE steps in SUITE/test_ENV_env_step.py (tests/env_steps.py), with the session's tiny model.
    suite: str | None = None


# Modules every env imports (the standard-library core the steps share).
CORE = ("style_tune.core.defaults", "style_tune.core.prompts", "style_tune.core.io", "style_tune.data.split",
        "style_tune.data.chat_templates")
ENVS: dict[str, Env] = {
    "dev": Env(
        reqs=("dev.txt", "test.txt"), suite="tests/core",
        imports=("ruff", "uv", "mypy", "pytest", *CORE, "style_tune.data.card", "style_tune.dev.lock_envs",
                 "style_tune.deploy.chat", "style_tune.eval.metric_table"),
    ),
    # torch 2.5.1 (CUDA 12.4) on CPU machines too: see requirements/train.txt.
    "train": Env(
        reqs=("train.txt", "test.txt"), nodeps=("train-nodeps.txt",), suite="tests/train",
        imports=("torch", "torchvision", "transformers", "mmengine", "peft", "datasets", "bitsandbytes",
                 "deepspeed", "modelscope", "tensorboard", "sklearn", "sacrebleu", "matplotlib", "xtuner",
                 "xtuner.tools.train",
                 "xtuner.tools.model_converters.pth_to_hf", "xtuner.tools.model_converters.merge", *CORE,
                 "style_tune.train.train", "style_tune.train.convert", "style_tune.train.merge",
                 "style_tune.train.tiny_model", "style_tune.train.demo", "style_tune.train.demo_base",
                 "style_tune.train.xtuner_cpu", "benchmarks.bench_train"),
    ),
    "eval": Env(
        reqs=("eval.txt", "test.txt"), suite="tests/eval",
        imports=("torch", "transformers", "datasets", "pyarrow", "opencompass", "opencompass.cli.main",
                 "sklearn", "sacrebleu", "matplotlib", *CORE, "style_tune.eval.evaluator",
                 "style_tune.eval.run_opencompass", "style_tune.eval.style_metrics", "style_tune.eval.report",
                 "style_tune.eval.llm_judge", "style_tune.eval.score_replies", "style_tune.eval.fewclue",
                 "style_tune.data.generate"),
    ),
    # OpenCompass's TurboMind backend (eval-select BACKEND=lmdeploy; the engine needs a CUDA GPU).
    "eval-lmdeploy": Env(
        reqs=("eval-lmdeploy.txt", "test.txt"),
        imports=("torch", "transformers", "datasets", "opencompass", "opencompass.cli.main", "lmdeploy",
                 "lmdeploy.cli.entrypoint", *CORE, "style_tune.eval.turbomind",
                 "style_tune.eval.run_opencompass", "style_tune.eval.evaluator"),
    ),
    # lmdeploy (GPU) and the CPU server (transformers generate, FastAPI) in one set: requirements/deploy.txt.
    "deploy": Env(
        reqs=("deploy.txt", "test.txt"), suite="tests/deploy",
        imports=("torch", "transformers", "lmdeploy", "lmdeploy.cli.entrypoint", "fastapi", "uvicorn",
                 "openai", *CORE, "style_tune.deploy.batcher", "style_tune.deploy.cpu_server",
                 "style_tune.deploy.serving", "benchmarks.bench_serve"),
    ),
    # `make webui` and its browser test: no torch (see requirements/webui.txt).
    "webui": Env(
        reqs=("webui.txt", "test.txt"), suite="tests/webui",
        imports=("gradio", "openai", "playwright.sync_api", *CORE, "style_tune.webui.app"),
    ),
    # `make mutation` (not part of `make test`): see requirements/mutation.txt.
    "mutation": Env(
        reqs=("mutation.txt", "test.txt"),
        imports=("mutmut", "scipy", "pytest", *CORE, "style_tune.dev.mutation"),
    ),
}


def lock_path(env: str) -> Path:
    return LOCK_DIR / f"py{PYTHON}" / f"{env}.txt"


def find_uv() -> str:
    for uv in (os.environ.get("UV"), str(REPO_ROOT / ".envs/.uv/bin/uv"), shutil.which("uv")):
        if uv and Path(uv).is_file():
            return uv
    sys.exit("lock_envs: no uv: build the dev env (make env-dev) or set UV=/path/to/uv")


def one_line(uv_stderr: str) -> str:
    """uv's multi-line resolver error as one line (its explanation, without the box drawing)."""
    text = " ".join(line.strip(" ×╰─▶│") for line in uv_stderr.splitlines() if line.strip())
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"^(error: )?No solution found when resolving dependencies:? (cause: )?", "", text)
    return text[:600] + (" …" if len(text) > 600 else "")


NODEPS_MARK = "# installed with --no-deps"


def resolved_part(lock: str | None) -> str | None:
    """A lock without its --no-deps part (which follows the resolver's output)."""
    return None if lock is None else lock.split(NODEPS_MARK)[0]


class ResolveError(Exception):
    pass


def uv_run(cmd: list[str], out: Path | None = None, previous: str | None = None
           ) -> subprocess.CompletedProcess:
    """uv from its cache alone first (under a second a resolve), kept only when it reproduces the
    previous lock (a partial cache can yield another valid set); otherwise again with the index."""
    run = subprocess.run([*cmd, "--offline"], cwd=REPO_ROOT, capture_output=True, text=True)
    if run.returncode == 0 and (out is None or resolved_part(previous) == out.read_text()):
        return run
    if out is not None and previous is not None:
        out.write_text(previous)
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)


def compile_lock(uv: str, env: str, previous: str | None) -> str:
    """The lock text for one env (raises ResolveError with one line)."""
    spec = ENVS[env]
    files = [REQ / f for f in spec.reqs]
    common = ["--python-version", PYTHON, "--python-platform", PLATFORM, "--quiet", "--no-progress"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "lock.txt"
        if previous is not None:  # the committed lock is uv's preference: minimal changes
            out.write_text(previous)
        cmd = [uv, "pip", "compile", *map(str, files), "-o", str(out), *common,
               "--custom-compile-command", "make lock"]
        run = uv_run(cmd, out, previous)
        if run.returncode:
            raise ResolveError(one_line(run.stderr))
        text = out.read_text()
        for nd in spec.nodeps:
            # --no-deps: only checks that each pinned package has a file for this Python/platform.
            run = uv_run([uv, "pip", "compile", str(REQ / nd), "--no-deps", "--no-header", "--no-annotate",
                          *common])
            if run.returncode:
                raise ResolveError(f"{REQ / nd} (--no-deps): {one_line(run.stderr)}")
            text += f"{NODEPS_MARK} (requirements/{nd}): their dependencies are above\n"
            text += run.stdout
    return text


def pin_changes(old: str | None, new: str) -> str:
    """The pins that differ between two locks, as `name A -> B` (for a stale lock's message)."""
    before = {p.name: p.version for p in parse_lock(old or "")}
    after = {p.name: p.version for p in parse_lock(new)}
    changes = [f"{n} {before.get(n, '(none)')} -> {after.get(n, '(none)')}"
               for n in sorted(before.keys() | after.keys()) if before.get(n) != after.get(n)]
    return "; ".join(changes[:8]) + (f"; … {len(changes) - 8} more" if len(changes) > 8 else "")


# ------------------------------------------------------------------ CUDA coherence of a lock
# Unsuffixed CUDA wheels (CUDA 13's naming) whose version's major is the CUDA major.
CUDA_VERSIONED = {
    "cuda-toolkit", "cuda-bindings", "cuda-python", "nvidia-cuda-runtime", "nvidia-cublas",
    "nvidia-cuda-nvrtc", "nvidia-cuda-cupti", "nvidia-nvjitlink", "nvidia-nvtx", "nvidia-cuda-nvcc",
    "nvidia-cuda-cccl", "nvidia-cuda-crt", "nvidia-nvvm",
}
RUNTIME = re.compile(r"^nvidia-cuda-runtime(-cu\d+)?$")
# Compiled extensions that load the CUDA runtime torch brings, and the CUDA versions their wheel has
# kernels for. bitsandbytes 0.45.0: libbitsandbytes_cuda{117,118,120..126}.so (read from the wheel).
# lmdeploy needs no entry: its TurboMind links libcudart.so.12 and its wheel names nvidia-*-cu12.
COMPILED_CUDA = {("bitsandbytes", "0.45.0"): ("11.7", "11.8", *(f"12.{i}" for i in range(7)))}


@dataclass
class Pin:
    name: str
    version: str
    via: set[str]


def parse_lock(text: str) -> list[Pin]:
    pins: list[Pin] = []
    in_via = False
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z0-9._-]+)==(\S+)", line)
        if m:
            pins.append(Pin(m[1].lower().replace("_", "-"), m[2], set()))
            in_via = False
            continue
        m = re.match(r"^\s+# via(?: (.+))?$", line)
        if m and pins:
            in_via = m[1] is None
            if m[1]:
                pins[-1].via.add(m[1].strip())
        elif in_via and (m := re.match(r"^\s+#\s+(\S+)", line)):
            pins[-1].via.add(m[1])
        else:
            in_via = False
    return pins


def cuda_major(pin: Pin) -> int | None:
    if m := re.search(r"-cu(\d+)$", pin.name):
        return int(m[1])
    if m := re.search(r"\+cu(\d+)$", pin.version):  # build tag, e.g. torch==2.5.1+cu121
        return int(m[1][:-1])
    if pin.name in CUDA_VERSIONED:
        return int(pin.version.split(".")[0])
    return None


def cuda_problems(text: str) -> list[str]:
    """What makes one env's pin set an incoherent CUDA set (empty when it is coherent)."""
    pins = parse_lock(text)
    majors: dict[int, list[Pin]] = {}
    for p in pins:
        if (m := cuda_major(p)) is not None:
            majors.setdefault(m, []).append(p)
    problems = []
    if len(majors) > 1:
        problems.append("mixes CUDA majors: " + "; ".join(
            f"CUDA {m}: " + ", ".join(f"{p.name}=={p.version} (via {', '.join(sorted(p.via)) or '?'})"
                                      for p in ps[:3]) + (" …" if len(ps) > 3 else "")
            for m, ps in sorted(majors.items())))
    torch_majors = {major for major in (cuda_major(p) for p in pins if "torch" in p.via) if major is not None}
    torch_pin = next((p for p in pins if p.name == "torch"), None)
    if torch_pin and (m := cuda_major(torch_pin)) is not None:
        torch_majors.add(m)
    # Every other package that brings CUDA wheels of its own (a compiled extension) must match torch.
    for owner in sorted({v for p in pins if cuda_major(p) is not None for v in p.via}
                        - {"torch"} - {p.name for p in pins if cuda_major(p) is not None}):
        if owner.startswith("-r"):
            continue
        own = {major for major in (cuda_major(p) for p in pins if owner in p.via) if major is not None}
        if torch_majors and own and own != torch_majors:
            problems.append(f"{owner} needs CUDA {'/'.join(map(str, sorted(own)))} wheels but torch "
                            f"is CUDA {'/'.join(map(str, sorted(torch_majors)))}")
    runtime = next((p.version for p in pins if RUNTIME.match(p.name) and "torch" in p.via), None)
    for p in pins:
        supported = COMPILED_CUDA.get((p.name, p.version))
        if supported and runtime and ".".join(runtime.split(".")[:2]) not in supported:
            problems.append(f"{p.name}=={p.version} has kernels for CUDA {supported[0]}-{supported[-1]} "
                            f"only, torch brings CUDA {runtime}")
    return problems


# ------------------------------------------------------------------ import and run the built envs
ENVS_DIR = REPO_ROOT / ".envs"


def env_python(env: str) -> Path:
    return ENVS_DIR / env / "bin" / "python"


def import_problems(env: str) -> list[str]:
    """In ENV's own interpreter: each of its imports that fails, as one line."""
    problems = []
    for module in ENVS[env].imports:
        try:
            importlib.import_module(module)
        except BaseException as err:  # noqa: BLE001  (a broken package can raise anything, SystemExit too)
            last = traceback.format_exception_only(type(err), err)[-1].strip()
            problems.append(f"import {module}: {last}")
    return problems


# The smallest real step of each env, on the CPU with the tiny model; {tmp} is the guard's scratch
# directory (the tiny model in {tmp}/tiny, a split in {tmp}/split, built by the train env's step),
# {py} the env's own interpreter. `make` runs the step the way a user does.
CPU_CONFIG = "xtuner_configs/qwen2_5_tiny_lora_style_cpu.py"
# One iteration, its loss logged, the style score at its save on one validation prompt, one token a reply.
ONE_ITER = ("--cfg-options train_cfg.max_iters=1 default_hooks.logger.interval=1 "
            "val_dataloader.dataset.limit=1 val_cfg.max_new_tokens=1")
IN_ENV = ("{py}", "-m", "style_tune.dev.lock_envs")
SMOKE: dict[str, tuple[tuple[str, ...], ...]] = {
    "dev": (("make", "-s", "lint"),),
    "train": (
        ("{py}", "-m", "style_tune.train.tiny_model", "{tmp}/tiny"),
        ("make", "-s", "split", "MODE=label", "SPLIT_DIR={tmp}/split"),
        ("make", "-s", "train", f"CONFIG={CPU_CONFIG}", "MODEL={tmp}/tiny", "DATA={tmp}/split/train.json",
         "WORK_DIR={tmp}/work", f"TRAIN_ARGS={ONE_ITER}"),
    ),
    "eval": (("make", "-s", "eval-style", "BASE={tmp}/tiny", "TUNED={tmp}/tiny", "MODE=label",
              "SPLIT_DIR={tmp}/split", "EVAL_LIMIT=2", "EVAL_MAX_OUT_LEN=8", "EVAL_DEVICE=cpu",
              "STYLE_DIR={tmp}/style_eval", "TRAIN_WORK_DIR={tmp}/work"),),
    "eval-lmdeploy": ((*IN_ENV, "smoke-lmdeploy"),),
    "deploy": ((*IN_ENV, "smoke-lmdeploy"), (*IN_ENV, "smoke-serve", "{tmp}/tiny")),
    "webui": ((*IN_ENV, "smoke-webui", "{tmp}/tiny", "{tmp}/split/test.json"),),
    "mutation": (("{dir}/bin/mutmut", "--help"),),
}
# The steps that later ones use (the tiny model and the split): run even where a suite stands in.
SHARED_SMOKE = "train"


def smoke_lmdeploy() -> None:
    """lmdeploy registers the committed chat template and renders a turn as training does; its CLI parses."""
    from lmdeploy.model import ChatTemplateConfig

    from style_tune.core import prompts

    path = REPO_ROOT / "style_data" / "chat_template.json"
    template = ChatTemplateConfig.from_json(str(path)).chat_template()  # a method since lmdeploy 0.18
    rendered = template.messages2prompt([{"role": "user", "content": "你好"}])
    assert "<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n" in rendered, rendered
    assert prompts.__name__  # the project's prompt module imports beside lmdeploy
    # The `lmdeploy` command's own entry point parses `serve api_server --help`, in this process (a second
    # process would import lmdeploy again: about 17 s on a 2-core machine).
    from lmdeploy.cli.entrypoint import run

    assert Path(sys.executable).with_name("lmdeploy").is_file(), "the lmdeploy command is not installed"
    argv, sys.argv = sys.argv, ["lmdeploy", "serve", "api_server", "--help"]
    try:
        with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):
            run()
    finally:
        sys.argv = argv
    assert "--server-port" in out.getvalue(), out.getvalue()[-500:]


def smoke_serve(model: str) -> None:
    """`make serve` (the CPU server here) answers one chat completion from the official client."""
    from openai import OpenAI

    from style_tune.deploy.serving import SERVED_MODEL_NAME, serve_model

    with serve_model(model, mode="label") as server:
        reply = OpenAI(base_url=server.base_url, api_key="none").chat.completions.create(
            model=SERVED_MODEL_NAME, max_tokens=4, messages=[{"role": "user", "content": "你好"}])
        assert reply.choices[0].finish_reason in ("stop", "length"), reply


def smoke_webui(model: str, test_json: str) -> None:
    """The rating page builds against a live server (the CPU server on the tiny model), without a browser:
    the endpoint lists its model, the split's held-out prompts make a session."""
    import gradio as gr

    from style_tune.deploy.serving import serve_model
    from style_tune.webui.app import Endpoint, build_page, session_items

    with serve_model(model, mode="label") as server, tempfile.TemporaryDirectory() as tmp:
        items = session_items(Path(test_json), "label", 2)
        assert items, f"no held-out prompts in {test_json}"
        endpoints = {name: Endpoint(name, server.base_url) for name in ("base", "tuned")}
        page = build_page(endpoints, "label", items, Path(tmp) / "verdicts.jsonl")
        assert isinstance(page, gr.Blocks), page


IN_ENV_STEPS: dict[str, Callable[..., None]] = {
    "smoke-lmdeploy": smoke_lmdeploy, "smoke-serve": smoke_serve, "smoke-webui": smoke_webui}


def run_smoke(env: str, tmp: Path, *, in_process: bool = False) -> str | None:
    """Run ENV's smoke steps; the first failure as one line (with the log's last line), else None.

    in_process: the steps that are functions of this module (IN_ENV) run in this interpreter, which must
    be ENV's (its suite calls them so: the toolchain is imported once); their exceptions propagate."""
    for step in SMOKE[env]:
        argv = [a.format(py=env_python(env), tmp=tmp, dir=ENVS_DIR / env) for a in step]
        if in_process and step[1:3] == IN_ENV[1:]:
            IN_ENV_STEPS[argv[3]](*argv[4:])
            continue
        log = tmp / f"{env}.log"
        with log.open("a") as out:
            run = subprocess.run(argv, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                 env={**os.environ, "MAKEFLAGS": ""})
        if run.returncode:
            lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
            return (f"`{' '.join(argv)}` exited {run.returncode}: {lines[-1] if lines else 'no output'}"
                    f" (log: {log})")
    return None


def imports_checked_since_last_change(env: str) -> bool:
    """Whether setup's import check of ENV (its stamp, written right after it) is newer than every module
    of the project: the env changes only by a rebuild, so importing its list again would repeat it (in
    `make test`'s cold run: 45 s for eval-lmdeploy)."""
    stamp = ENVS_DIR / env / ".installed"
    newest = max(path.stat().st_mtime for folder in ("style_tune", "benchmarks")
                 for path in (REPO_ROOT / folder).rglob("*.py"))
    return stamp.exists() and stamp.stat().st_mtime > newest


def check_built_envs(names: list[str], smoke: str) -> int:
    """Import and run each built env; one line per env. The number that failed.

    smoke: "all" (make check-envs), "none" (imports only), or "untested" (make test): an env whose suite
    `make test` runs next is left to it (setup imported its list when it built the env, and the suite runs
    its smallest step in SUITE/test_ENV_env_step.py), except the train step when a later step needs its
    tiny model and split.
    """
    def runs(env: str) -> bool:
        return smoke == "all" or (smoke == "untested" and not ENVS[env].suite)

    failed = 0
    tmp = Path(tempfile.mkdtemp(prefix="check-envs-"))
    for env in names:
        start = time.monotonic()
        if not (ENVS_DIR / env / ".installed").exists():
            print(f"check-envs: {env}: not built: make env-{env}", file=sys.stderr)
            failed += 1
            continue
        # the train step builds the tiny model and split that later steps read from {tmp}
        feeds = env == SHARED_SMOKE and any(runs(e) and "{tmp}/" in repr(SMOKE[e]) for e in names if e != env)
        if smoke == "untested" and ENVS[env].suite and not feeds:
            print(f"check-envs: {env}: its suite {ENVS[env].suite} runs its smallest step next "
                  "(imports checked by setup)")
            continue
        checked = imports_checked_since_last_change(env)
        if not checked:
            run = subprocess.run([str(env_python(env)), "-m", "style_tune.dev.lock_envs", "imports", env],
                                 cwd=REPO_ROOT, capture_output=True, text=True)
            if run.returncode:  # its own lines, `check-envs: ENV: import X: ...`
                lines = [line for line in run.stderr.splitlines() if line.startswith("check-envs: ")]
                print("\n".join(lines) or f"check-envs: {env}: imports failed: {run.stderr.strip()[-300:]}",
                      file=sys.stderr)
                failed += 1
                continue
        step = smoke != "none" and (runs(env) or feeds)
        if step and (problem := run_smoke(env, tmp)):
            print(f"check-envs: {env}: {problem}", file=sys.stderr)
            failed += 1
            continue
        print(f"check-envs: {env}: imports {len(ENVS[env].imports)} modules"
              f"{' (checked by setup, nothing changed since)' if checked else ''}"
              f"{', its smallest step ran' if step else ''} ({time.monotonic() - start:.0f} s)")
    if not failed:
        shutil.rmtree(tmp, ignore_errors=True)
    return failed


# ------------------------------------------------------------------ main
def resolve_all(action: str, names: list[str], jobs: int) -> int:
    """Resolve each env's pins; write the locks (lock) or compare with them (check). The number failed."""
    uv = find_uv()

    def one(env: str) -> tuple[str, str | None, list[str]]:
        path = REPO_ROOT / lock_path(env)
        previous = path.read_text() if path.exists() else None
        try:
            text = compile_lock(uv, env, previous)
        except ResolveError as e:
            return env, None, [f"does not resolve: {e}"]
        problems = cuda_problems(text)
        if action == "check" and not problems and text != previous:
            problems.append(f"{lock_path(env)} is stale, missing or names a version PyPI does not serve "
                            f"(PyPI resolves: {pin_changes(previous, text) or 'other annotations'}): "
                            "run `make lock` and commit it")
        return env, text, problems

    failed = 0
    with ThreadPoolExecutor(jobs) as pool:
        for env, text, problems in pool.map(one, names):
            for p in problems:
                print(f"check-envs: {env}: {p}", file=sys.stderr)
            failed += bool(problems)
            if action == "lock" and text is not None and not problems:
                path = REPO_ROOT / lock_path(env)
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(text)
                tmp.replace(path)
    what = "check-envs: resolved" if action == "check" else "lock: locked"
    print(f"{what} {len(names) - failed}/{len(names)} envs (Python {PYTHON}, {PLATFORM})"
          + (f"; {failed} failed (reasons above)" if failed else ""))
    return failed


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1].startswith(("imports", "smoke-")):  # in an env's own interpreter
        action, values = sys.argv[1], sys.argv[2:]
        if action == "imports":
            problems = import_problems(values[0])
            for p in problems:
                print(f"check-envs: {values[0]}: {p}", file=sys.stderr)
            return 1 if problems else 0
        IN_ENV_STEPS[action](*values)
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=("lock", "check"))
    ap.add_argument("--env", choices=sorted(ENVS))
    ap.add_argument("--smoke", choices=("all", "untested", "none"), default="all",
                    help="check: run every env's smallest step, only those of envs `make test` runs no suite "
                         "in (it runs the suites next), or none (resolve and import only)")
    ap.add_argument("--jobs", type=int, default=6, help="resolves at a time (they mostly wait on the index)")
    args = ap.parse_args()
    names = [e for e in ENVS if args.env in (None, e)]
    failed = resolve_all(args.action, names, args.jobs)
    if args.action == "check":
        failed += check_built_envs(names, args.smoke)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
