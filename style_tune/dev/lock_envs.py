#!/usr/bin/env python3
"""Lock files for the environments, and the CI guard that checks them (`make lock`, `make check-envs`).

    python -m style_tune.dev.lock_envs lock  [--env ENV] [--torch cpu|cuda] [--python 3.X]  write locks
    python -m style_tune.dev.lock_envs check [--env ENV] [--torch cpu|cuda] [--python 3.X]  check them

Every environment (ENVS below) x torch build x supported Python is resolved by uv's resolver
(`uv pip compile`, for Linux x86_64 with glibc >= 2.28; nothing is installed) into
requirements/lock/py3.X/ENV-TORCH.txt, which `make setup` installs with --no-deps: every user's env
is the set CI resolved. An existing lock is the resolver's preference, so `make lock` after an edit
changes only what the edit needs. `check` resolves again without writing and fails, one line per
problem, when a pin set does not resolve, when a lock is stale (differs from the new resolve), when
one env mixes CUDA majors (nvidia-*-cu12 beside CUDA 13 wheels, +cuXYZ build tags), or when a
compiled extension's CUDA differs from torch's.
Needs the `uv` binary of the dev env (requirements/dev.txt) or $UV, and the package index.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from style_tune import REPO_ROOT

REQ = Path("requirements")
LOCK_DIR = REQ / "lock"
PYTHONS = ("3.10", "3.11", "3.12")  # xtuner 0.2.0 declares Requires-Python <3.13
TORCHES = ("cpu", "cuda")
# Where the envs run: Linux x86_64 (torch >= 2.10 ships manylinux_2_28 wheels only).
PLATFORM = "x86_64-manylinux_2_28"
# TORCH=cpu builds whose torch is the CPU build: PyPI's Linux torch wheel names CUDA wheels that the
# CPU build (PyTorch's CPU index, or this project's CI machines' local file) does not have.
CPU_EXCLUDES = REQ / "torch" / "cpu-excludes.txt"


@dataclass(frozen=True)
class Env:
    """One venv: the pin files it is resolved from, per torch build."""

    reqs: tuple[str, ...]  # resolved together, for every torch build
    torch: dict[str, tuple[str, ...]] = field(default_factory=dict)  # extra files per torch build
    nodeps: dict[str, tuple[str, ...]] = field(default_factory=dict)  # --no-deps files per torch build
    cpu_torch: bool = False  # TORCH=cpu installs the CPU torch build (see CPU_EXCLUDES)
    builds: tuple[str, ...] = TORCHES


ENVS: dict[str, Env] = {
    "dev": Env(reqs=("dev.txt", "test.txt")),
    # torch 2.5.1 (CUDA 12.4) on CPU machines too: see requirements/train.txt.
    "train": Env(reqs=("train.txt", "test.txt"), nodeps={t: ("train-nodeps.txt",) for t in TORCHES}),
    "eval": Env(
        reqs=("eval.txt", "test.txt"),
        torch={t: (f"torch/eval-{t}.txt",) for t in TORCHES},
        cpu_torch=True,
    ),
    # OpenCompass's TurboMind backend (eval-select BACKEND=lmdeploy): GPU only, see the file.
    "eval-lmdeploy": Env(
        reqs=("eval-lmdeploy.txt", "test.txt"), torch={"cuda": ("torch/eval-lmdeploy-cuda.txt",)},
        builds=("cuda",),
    ),
    # CPU machines: lmdeploy --no-deps beside the CPU torch (requirements/torch/deploy-cpu.txt).
    "deploy": Env(
        reqs=("test.txt",),
        torch={"cpu": ("torch/deploy-cpu.txt",), "cuda": ("torch/deploy-cuda.txt", "deploy.txt")},
        nodeps={"cpu": ("deploy.txt",)},
        cpu_torch=True,
    ),
    # `make webui` and its browser test: no torch (see requirements/webui.txt).
    "webui": Env(reqs=("webui.txt", "test.txt")),
    # `make mutation` (not part of `make test`): see requirements/mutation.txt.
    "mutation": Env(reqs=("mutation.txt", "test.txt")),
}


def lock_path(env: str, torch: str, python: str) -> Path:
    return LOCK_DIR / f"py{python}" / f"{env}-{torch}.txt"


def find_uv() -> str:
    for uv in (os.environ.get("UV"), str(REPO_ROOT / ".envs/dev/bin/uv"), shutil.which("uv")):
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


def compile_lock(uv: str, env: str, torch: str, python: str, previous: str | None) -> str:
    """The lock text for one env x torch build x Python (raises ResolveError with one line)."""
    spec = ENVS[env]
    files = [REQ / f for f in (*spec.torch.get(torch, ()), *spec.reqs)]
    common = ["--python-version", python, "--python-platform", PLATFORM, "--quiet", "--no-progress"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "lock.txt"
        if previous is not None:  # the committed lock is uv's preference: minimal changes
            out.write_text(previous)
        cmd = [uv, "pip", "compile", *map(str, files), "-o", str(out), *common,
               "--custom-compile-command", "make lock"]
        if spec.cpu_torch and torch == "cpu":
            cmd += ["--excludes", str(CPU_EXCLUDES)]
        run = uv_run(cmd, out, previous)
        if run.returncode:
            raise ResolveError(one_line(run.stderr))
        text = out.read_text()
        for nd in spec.nodeps.get(torch, ()):
            # --no-deps: only checks that each pinned package has a file for this Python/platform.
            run = uv_run([uv, "pip", "compile", str(REQ / nd), "--no-deps", "--no-header", "--no-annotate",
                          *common])
            if run.returncode:
                raise ResolveError(f"{REQ / nd} (--no-deps): {one_line(run.stderr)}")
            text += f"{NODEPS_MARK} (requirements/{nd}): their dependencies are above\n"
            text += run.stdout
    return text


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
    torch_majors = {cuda_major(p) for p in pins if "torch" in p.via} - {None}
    torch_pin = next((p for p in pins if p.name == "torch"), None)
    if torch_pin and (m := cuda_major(torch_pin)) is not None:
        torch_majors.add(m)
    # Every other package that brings CUDA wheels of its own (a compiled extension) must match torch.
    for owner in sorted({v for p in pins if cuda_major(p) is not None for v in p.via}
                        - {"torch"} - {p.name for p in pins if cuda_major(p) is not None}):
        if owner.startswith("-r"):
            continue
        own = {cuda_major(p) for p in pins if owner in p.via} - {None}
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


# ------------------------------------------------------------------ main
def jobs(args) -> list[tuple[str, str, str]]:
    return [(e, t, py) for e in ENVS if args.env in (None, e)
            for t in ENVS[e].builds if args.torch in (None, t)
            for py in PYTHONS if args.python in (None, py)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=("lock", "check"))
    ap.add_argument("--env", choices=sorted(ENVS))
    ap.add_argument("--torch", choices=TORCHES)
    ap.add_argument("--python", choices=PYTHONS)
    ap.add_argument("--jobs", type=int, default=6, help="resolves at a time (they mostly wait on the index)")
    args = ap.parse_args()
    uv = find_uv()

    def one(job: tuple[str, str, str]) -> tuple[tuple[str, str, str], str | None, list[str]]:
        env, torch, py = job
        path = REPO_ROOT / lock_path(env, torch, py)
        previous = path.read_text() if path.exists() else None
        try:
            text = compile_lock(uv, env, torch, py, previous)
        except ResolveError as e:
            return job, None, [f"does not resolve: {e}"]
        problems = cuda_problems(text)
        if args.action == "check" and not problems and text != previous:
            problems.append(f"{lock_path(env, torch, py)} is stale or missing: run `make lock` and commit it")
        return job, text, problems

    failed = 0
    with ThreadPoolExecutor(args.jobs) as pool:
        for (env, torch, py), text, problems in pool.map(one, jobs(args)):
            name = f"{env} TORCH={torch} Python {py}"
            for p in problems:
                print(f"check-envs: {name}: {p}", file=sys.stderr)
            failed += bool(problems)
            if args.action == "lock" and text is not None and not problems:
                path = REPO_ROOT / lock_path(env, torch, py)
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(text)
                tmp.replace(path)
    total = len(jobs(args))
    what = "check-envs: checked" if args.action == "check" else "lock: locked"
    print(f"{what} {total - failed}/{total} env x torch x Python sets"
          + (f"; {failed} failed (reasons above)" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
