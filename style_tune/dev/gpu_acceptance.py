"""The recipe on one NVIDIA GPU, in two parts of <= 5 minutes each on an H100/H200: the steps a user runs,
through the Makefile, on Qwen2.5-1.5B-Instruct's real shapes with random weights (no download).

    tools/gpu_acceptance.sh part1|part2 [OUT] [--device-stack] [--dry-run]

part1  train the default config and the article's 8-bit config ITERS (5) iterations each on rows that
       fill the config's max_length, so every step is the config's worst case (batch x max_length:
       32 x 256 and 20 x 256), with a loss line per iteration and the peak GPU memory (torch's
       max_memory_allocated, as mmengine logs it, and nvidia-smi) against the article's 24 GB
       training budget; convert and merge the default run; one `make chat` turn capped at a few
       tokens; one `make serve` request from the openai client.
part2  `make eval-style` on 5 prompts (part1's merged model against the base; the base twice where
       part1 has not run on this machine); `make train DEEPSPEED=deepspeed_zero2` on the same rows;
       `make split prefs MODE=controllable` and 2 iterations of the DPO config from part1's merged model.

OUT (default outputs/gpu_acceptance/PART) gets summary.md (a row per step: exit code, seconds; the
versions; the peak memory; the losses; the end of each failed step's log) and logs.tar.gz (every
step's log). Models, data and work dirs go to GPU_ACCEPTANCE_WORK (default
outputs/gpu_acceptance/work), which part2 reads part1's merged model from. A failed step does not
stop the steps that do not need it; the exit code is 1 when a step failed.

Where: a machine with an NVIDIA GPU and the environments (`make setup`). --device-stack: a lent
machine without a package index (Python 3.12 with its own torch): run `make gpu-wheels` where PyPI
is reachable and carry .whl/; this then builds .envs/dev and .envs/train there as
--system-site-packages venvs over that Python (DEVICE_PYTHON, default python3) with the carried
wheels (tools/gpu_wheels.txt), so every step runs with that machine's torch. What cannot be carried
is printed and each step that needs it is skipped, with the reason, in the output and summary.md.
--dry-run: print every step's command (and what --device-stack skips), run nothing, write nothing.

The launcher (tools/gpu_acceptance.sh) starts this module with the machine's Python (DEVICE_PYTHON,
default python3: no env may exist yet); it needs the standard library alone. The steps that need a
toolchain run as `python -m style_tune.dev.gpu_acceptance ACTION` in that toolchain's env (IN_ENV).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import NoReturn

from style_tune import REPO_ROOT
from style_tune.core.io import write_atomically
from style_tune.core.steps import main_of

STEP = "gpu_acceptance"
USAGE = "tools/gpu_acceptance.sh part1|part2 [OUT] [--device-stack] [--dry-run]"
MODULE = "style_tune.dev.gpu_acceptance"
PARTS = ("part1", "part2")

MODEL = "models/qwen2.5-1.5b-random"  # make bench's BENCH_FULL_MODEL: reused when there
DEFAULT_CFG = "xtuner_configs/qwen2_5_1_5b_instruct_lora_bf16_style_e3.py"
INT8_CFG = "xtuner_configs/qwen2_5_1_5b_instruct_lora_int8_style_e3.py"
DPO_CFG = "xtuner_configs/qwen2_5_1_5b_instruct_lora_bf16_dpo_style.py"
DPO_ITERS = 2
DPO_SHAPE = "16 pairs (32 sequences) x <= 256"
PREFS = "data/controllable/prefs.jsonl"  # what `make split prefs MODE=controllable` writes
SPLIT_DIR = "data/label"  # what `make split` writes (MODE=label)
TRAIN_PY = ".envs/train/bin/python"
DEPLOY_PY = ".envs/deploy/bin/python"
BUDGET_MIB = 24576  # the article's 24 GB training card
# lmdeploy chat has no max-new-tokens option and asks for 4,096; the session length caps prompt + reply.
# The label-mode prompt (system text, the question) is 35 tokens: at most 13 new ones.
CHAT_SESSION_LEN = 48
CHAT_QUESTION = "你好，今天过得怎么样？"
SERVE_MAX_TOKENS = 8
SERVE_READY_S = 240
LOG_TAIL = 25  # lines of a failed step's log in summary.md

_LMDEPLOY = ("lmdeploy 0.18.0 (TurboMind): built for CUDA 12 (libcudart.so.12; this machine is CUDA 13), "
             "a 102 MiB wheel, plus a CUDA 12 torch (GBs): not carried")
#: What a --device-stack machine cannot run, and why (tools/gpu_wheels.txt says the same).
DEVICE_STACK_SKIPS = {
    "train-int8": "bitsandbytes 0.45.0 (the 8-bit config's LLM.int8): its kernels are built for CUDA <= 12.6 "
                  "(this machine's torch is CUDA 13) and its wheel is 66 MiB, over what a call carries",
    "chat": _LMDEPLOY,
    "serve": _LMDEPLOY,
    "eval-style": "the eval env (OpenCompass 0.5.4): it imports ~40 packages at start-up, among them sdists "
                  "only (jieba 19 MB, rouge-score, timeout-decorator), and pins numpy < 2 (17 MB): over the "
                  "60 MiB carried",
    "train-deepspeed": "deepspeed 0.16.2: PyPI has only its sdist, which needs a build against torch "
                       "(this machine has no index for its build)",
}


# ---------------------------------------------------------------- arguments

@dataclass(frozen=True)
class Options:
    part: str
    out: Path  # summary.md and logs.tar.gz
    work: Path  # models, data, work dirs, logs
    iters: int  # iterations a training run
    device_stack: bool = False
    dry_run: bool = False
    device_python: str = "python3"  # the interpreter --device-stack builds its venvs over


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{STEP}: {message} (usage: {USAGE})", file=sys.stderr)
        sys.exit(2)


def parse_args(argv: Sequence[str], environ: Mapping[str, str], cwd: Path) -> Options:
    """The options: OUT and GPU_ACCEPTANCE_WORK as given, relative to CWD (where the run was started; the
    steps run from the checkout); ITERS a positive number. A bad argument: one line, exit 2."""
    parser = _Parser(prog="gpu_acceptance", usage=USAGE, description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=PARTS)
    parser.add_argument("out", nargs="?", type=Path)
    parser.add_argument("--device-stack", action="store_true")
    parser.add_argument("--dry-run", action="store_true")
    if not argv:
        parser.error("say which part: part1 or part2")
    args = parser.parse_args(argv)
    if str(args.out) in PARTS:
        parser.error("one part a run")
    iters = environ.get("ITERS", "5")
    if not re.fullmatch(r"[1-9][0-9]*", iters):
        parser.error(f"ITERS={iters} is not a positive number")
    work = Path(environ.get("GPU_ACCEPTANCE_WORK", "") or REPO_ROOT / "outputs/gpu_acceptance/work")
    out = cwd / args.out if args.out else Path("outputs/gpu_acceptance", args.part)
    return Options(part=args.part, out=out, work=cwd / work, iters=int(iters), device_stack=args.device_stack,
                   dry_run=args.dry_run, device_python=environ.get("DEVICE_PYTHON", "") or "python3")


# ---------------------------------------------------------------- the steps

@dataclass(frozen=True)
class Step:
    """One command, run from the checkout under `timeout -k KILL_AFTER LIMIT`, its output to LOGS/NAME.log."""

    name: str
    argv: tuple[str, ...]
    limit: int  # seconds
    needs: tuple[str, ...] = ()  # steps that must have passed
    stdin: str | None = None
    kill_after: int = 10
    detail: str = ""  # what a dry run adds below the command
    # a training run: GPU memory sampled, its peak and losses read from its log
    train: bool = False
    config: str = ""
    shape: str = ""  # batch x max_length, when the long rows' log does not say it
    iters: int = 0
    fresh: Path | None = None  # removed first: a fresh run, no resume from an earlier one


def train_args(iters: int, prompts: int) -> str:
    """ITERS iterations of the epoch-based configs, a checkpoint and a style score at the end, a loss line
    every iteration; the style score (the configs' val_cfg, StyleValLoop: the long-rows step checks it) on
    PROMPTS validation prompts, 8 tokens a reply."""
    return (f"--cfg-options train_cfg.max_epochs=None train_cfg.max_iters={iters} "
            f"default_hooks.checkpoint.interval={iters} train_cfg.val_interval={iters} "
            f"default_hooks.logger.interval=1 val_dataloader.dataset.limit={prompts} "
            "val_cfg.max_new_tokens=8")


def make(*words: str, **variables: str | Path) -> tuple[str, ...]:
    return ("make", *words, *(f"{name}={value}" for name, value in variables.items()))


def plan(opts: Options, tuned: str) -> list[Step]:
    """The part's steps in order, each with the steps it needs (TUNED: part2's model to compare and tune)."""
    work, skips = opts.work, DEVICE_STACK_SKIPS if opts.device_stack else {}
    logs = work / f"logs-{opts.part}"
    long_rows, adapter, merged = work / "long_rows.json", work / "adapter", work / "merged"

    def train(name: str, config: str, work_dir: Path, needs: str, **overrides: str | Path) -> Step:
        # the style score asks the label split's prompts: the long rows have no val.json beside them
        variables = {"CONFIG": config, "MODEL": MODEL, "DATA": long_rows, "VAL_DATA": f"{SPLIT_DIR}/val.json",
                     "WORK_DIR": work_dir, "TRAIN_ARGS": train_args(opts.iters, 4), **overrides}
        return Step(name, make("train", **variables), 420, (needs,), train=True, config=config,
                    iters=opts.iters, fresh=work_dir)

    prepare = [
        Step("random-model", (TRAIN_PY, "-m", "style_tune.train.tiny_model", MODEL, "--size", "full"), 600),
        Step("split", make("split"), 120),
        # rows as long as the configs' max_length, so every batch is batch x max_length (the worst case)
        Step("long-rows", (TRAIN_PY, "-m", MODULE, "long-rows", f"{SPLIT_DIR}/train.json", str(long_rows),
                           MODEL, str(opts.iters), DEFAULT_CFG, INT8_CFG), 300, ("random-model", "split")),
    ]
    if opts.part == "part1":
        steps = [
            train("train-default", DEFAULT_CFG, work / "work-default", "long-rows"),
            train("train-int8", INT8_CFG, work / "work-int8", "long-rows"),
            Step("convert", make("convert", CONFIG=DEFAULT_CFG, MODEL=MODEL, WORK_DIR=work / "work-default",
                                 ADAPTER=adapter, FORCE="1"), 300, ("train-default",)),
            Step("merge", make("merge", MODEL=MODEL, ADAPTER=adapter, MERGED=merged, FORCE="1"), 300,
                 ("convert",)),
            # one scripted turn: the question, the empty line that sends it, then exit
            Step("chat", make("chat", MODEL=merged, MODE="label",
                              CHAT_ARGS=f"--session-len {CHAT_SESSION_LEN}"),
                 300, ("merge",), stdin=f"{CHAT_QUESTION}\n\nexit\n\n"),
            Step("serve", (DEPLOY_PY, "-m", MODULE, "serve-request", str(merged),
                           str(logs / "serve-server.log"), str(SERVE_READY_S), str(SERVE_MAX_TOKENS)),
                 360, ("merge",), kill_after=20,
                 detail=f"serve_model({merged}, mode=label, ready_timeout={SERVE_READY_S}) -> make serve "
                        f"MODEL={merged} MODE=label API_KEY=...; a wrong key, one request "
                        f"(max_tokens={SERVE_MAX_TOKENS}), another model name"),
        ]
    else:
        steps = [
            Step("eval-style", make("eval-style", BASE=MODEL, TUNED=tuned, MODE="label", EVAL_LIMIT="5",
                                    EVAL_DEVICE="cuda", STYLE_DIR=work / "style_eval",
                                    TRAIN_WORK_DIR=work / "work-default"), 420, ("random-model", "split")),
            train("train-deepspeed", DEFAULT_CFG, work / "work-deepspeed", "long-rows",
                  DEEPSPEED="deepspeed_zero2"),
            Step("prefs", make("split", "prefs", MODE="controllable"), 120),
            # DPO from the model eval-style tuned (part1's merged model, else the random base), shipped pairs
            Step("train-dpo", make("train", CONFIG=DPO_CFG, MODEL=tuned, DATA=PREFS,
                                   WORK_DIR=work / "work-dpo", TRAIN_ARGS=train_args(DPO_ITERS, 2)),
                 420, ("prefs",), train=True,
                 config=DPO_CFG, shape=DPO_SHAPE, iters=DPO_ITERS, fresh=work / "work-dpo"),
        ]
    # the model, the split and the long rows, where a step that reads them can run on this machine
    prepared = {step.name for step in prepare}
    if any(step.name not in skips and prepared & set(step.needs) for step in steps):
        steps = prepare + steps
    if opts.device_stack:
        wheels = len(list((REPO_ROOT / ".whl").glob("*.whl")))
        steps.insert(0, Step("device-stack", (opts.device_python, "-m", MODULE, "device-stack"), 300, detail=(
            f"{opts.device_python} -m venv --system-site-packages --without-pip .envs/dev .envs/train; "
            f"{wheels} wheels from .whl/ into .envs/train (pip install --no-index --no-deps --target ...); "
            "stamps .envs/{dev,train}/.installed")))
    return steps


def show(step: Step) -> str:
    """A step's command as one line to paste: VAR="a b" quoted, its input piped in."""
    words = []
    for arg in step.argv:
        name, eq, value = arg.partition("=")
        if any(c.isspace() for c in arg):
            arg = f'{name}="{value}"' if eq and re.fullmatch(r"[A-Z_]+", name) else f'"{arg}"'
        words.append(arg)
    line = " ".join(words)
    if step.stdin is None:
        return line
    text = step.stdin.replace("\\", "\\\\").replace("%", "%%").replace("\n", "\\n").replace("'", "'\\''")
    return f"printf '{text}' | {line}"


# ---------------------------------------------------------------- running them

@dataclass
class Outcome:
    """What a run did: a summary row per step, each step's exit code (or "skipped", "blocked")."""

    rows: list[tuple[str, str, str, str]] = field(default_factory=list)
    rc: dict[str, int | str] = field(default_factory=dict)
    failed: int = 0
    skipped: int = 0
    notes: list[str] = field(default_factory=list)


def execute(steps: Sequence[Step], skips: Mapping[str, str], run: Callable[[Step], int],
            say: Callable[[str], None] = print) -> Outcome:
    """Run each step whose needs passed (RUN gives its exit code); a step this machine cannot run is
    skipped with its reason, one whose needs did not pass is "not run" and counts as failed."""
    done = Outcome()
    for step in steps:
        name = step.name
        if name in skips:
            say(f"[gpu-acceptance] {name}: SKIPPED on this machine: {skips[name]}")
            done.rows.append((name, "skipped", "-", skips[name]))
            done.rc[name], done.skipped = "skipped", done.skipped + 1
            continue
        missing = next((need for need in step.needs if done.rc.get(need) != 0), None)
        if missing is not None:
            say(f"[gpu-acceptance] {name}: not run ({missing}: {done.rc.get(missing, 'not run')})")
            done.rows.append((name, "not run", "-", f"needs {missing}, which did not pass"))
            done.rc[name], done.failed = "blocked", done.failed + 1
            continue
        say(f"[gpu-acceptance] {name}: {show(step)}")
        start = time.monotonic()
        rc = done.rc[name] = run(step)
        done.rows.append((name, f"{rc}{' (timed out)' if rc == 124 else ''}",
                          f"{time.monotonic() - start:.0f}", f"`{show(step)}`"))
        if rc:
            done.failed += 1
        if name == "device-stack" and rc:
            done.notes.append("the --device-stack venvs could not be built: nothing else ran "
                              "(see the device-stack log)")
            break
    return done


def run_step(step: Step, logs: Path) -> int:
    """Run STEP's command, its output to LOGS/NAME.log; a training run's GPU memory sampled every 250 ms
    into LOGS/NAME.smi. The exit code: 124 when it ran past its limit (coreutils' timeout)."""
    if step.fresh is not None:
        shutil.rmtree(step.fresh, ignore_errors=True)
    sampler = None
    if step.train and shutil.which("nvidia-smi"):
        with (logs / f"{step.name}.smi").open("w") as smi:
            sampler = subprocess.Popen(["nvidia-smi", "--query-gpu=memory.used",
                                        "--format=csv,noheader,nounits", "-lms", "250"],
                                       stdout=smi, stderr=subprocess.STDOUT)
    try:
        with (logs / f"{step.name}.log").open("w") as log:
            return subprocess.run(["timeout", "-k", str(step.kill_after), str(step.limit), *step.argv],
                                  cwd=REPO_ROOT, input=None if step.stdin is None else step.stdin.encode(),
                                  stdin=subprocess.DEVNULL if step.stdin is None else None,
                                  stdout=log, stderr=subprocess.STDOUT).returncode
    finally:
        if sampler is not None:
            sampler.terminate()
            sampler.wait()


def dry_run_step(step: Step) -> int:
    if step.detail:
        print(f"    {step.detail}")
    return 0


# ---------------------------------------------------------------- the report

def peak_allocated(log: str) -> int:
    """The largest `memory` (MiB) of mmengine's iteration lines (torch.cuda.max_memory_allocated); 0: none."""
    return max((int(m) for line in log.splitlines() if "Iter(train)" in line
                for m in re.findall(r"memory: ([0-9]+)", line)), default=0)


def losses(log: str) -> list[str]:
    """The loss of each of mmengine's iteration lines, as logged."""
    return [loss for line in log.splitlines() if "Iter(train)" in line
            for loss in re.findall(r" loss: ([^ ]+)", line)]


def peak_used(smi: str) -> int | None:
    """The largest memory.used (MiB) nvidia-smi sampled; None: not sampled."""
    return max((int(line) for line in smi.splitlines() if re.fullmatch(r"[0-9]+", line)), default=None)


def verdict(allocated: int, used: int | None, budget: int = BUDGET_MIB) -> str:
    peak = max(allocated, used or 0)
    if peak == 0:
        return "not measured"
    return f"within ({100 * peak / budget:.0f}%)" if peak <= budget else "OVER"


def shapes(long_rows_log: str) -> dict[str, str]:
    """{config: "batch x max_length"} from the long-rows step's `shape CONFIG BATCH LENGTH` lines."""
    return {m[1]: f"{m[2]} x {m[3]}" for m in re.finditer(r"^shape (\S+) (\S+) (\S+)", long_rows_log, re.M)}


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""


def memory_and_losses(steps: Sequence[Step], done: Outcome, logs: Path, iters: int) -> list[str]:
    """Per training run that ran: its shape, peak memory against the budget, and losses."""
    runs = [step for step in steps if step.train and isinstance(done.rc.get(step.name), int)]
    shape_of = shapes(read(logs / "long-rows.log"))
    lines = ["", f"## Peak GPU memory (budget: the article's 24 GB card, {BUDGET_MIB} MiB)", "",
             "| run | config | batch x max_length | peak allocated (torch, MiB) "
             "| peak used (nvidia-smi, MiB) | verdict |", "|---|---|---|---|---|---|"]
    for step in runs:
        allocated = peak_allocated(read(logs / f"{step.name}.log"))
        used = peak_used(read(logs / f"{step.name}.smi"))
        shape = step.shape or shape_of.get(step.config, "?")
        lines.append(f"| {step.name} | `{Path(step.config).name}` | {shape} | {allocated} "
                     f"| {'not sampled' if used is None else used} | {verdict(allocated, used)} |")
    lines += [
        "", "Peak allocated: the largest `memory` of mmengine's iteration lines "
        "(torch.cuda.max_memory_allocated since",
        "the previous line; the first one covers the model load and the chat hook's samples). Peak used:",
        "nvidia-smi's memory.used, sampled every 250 ms: torch's reserved memory plus the CUDA context.",
        "", f"## Losses (one line per iteration: default_hooks.logger.interval=1, {iters} iterations)", ""]
    for step in runs:
        found = losses(read(logs / f"{step.name}.log"))
        count = "" if len(found) == step.iters else f" ({len(found)} loss lines for {step.iters} iterations)"
        lines.append(f"- {step.name}: {' '.join(found) or 'none'}{count}")
    return lines


def summary(opts: Options, steps: Sequence[Step], done: Outcome, logs: Path, *, date: str, commit: str,
            versions: Sequence[str]) -> str:
    """summary.md: the run's facts, a row per step, the training runs' memory and losses, the end of each
    failed step's log."""
    lines = [f"# GPU acceptance run, {opts.part}", "", f"- date: {date}; commit: {commit}",
             f"- iterations a training run: {opts.iters}; steps failed: {done.failed}; "
             f"skipped on this machine: {done.skipped}"]
    if opts.device_stack:
        lines += ["- --device-stack: .envs/dev and .envs/train are venvs over this machine's Python and "
                  "torch with the wheels of",
                  "  tools/gpu_wheels.txt. Cannot run on this machine, so skipped wherever this part has "
                  "them:",
                  *(f"  - {name}: {why}" for name, why in DEVICE_STACK_SKIPS.items())]
    lines += [*versions, *(f"- {note}" for note in done.notes), "", "| step | exit | seconds | command |",
              "|---|---|---|---|", *(f"| {' | '.join(row)} |" for row in done.rows)]
    if any(step.train and done.rc.get(step.name, "blocked") != "blocked" for step in steps):  # run or skipped
        lines += memory_and_losses(steps, done, logs, opts.iters)
    for step in steps:
        rc = done.rc.get(step.name)
        if isinstance(rc, int) and rc and (logs / f"{step.name}.log").is_file():
            tail = read(logs / f"{step.name}.log").splitlines()[-LOG_TAIL:]
            lines += ["", f"## {step.name} failed (exit {rc}): the end of its log", "", "```", *tail, "```"]
    return "\n".join(lines) + "\n"


def output(argv: Sequence[str]) -> str:
    """A command's output (stdout and stderr), or why it could not start."""
    try:
        return subprocess.run(argv, cwd=REPO_ROOT, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT).stdout
    except OSError as err:
        return f"{argv[0]}: {err.strerror}"


def commit() -> str:
    try:
        run = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True)
    except OSError:
        run = None
    if run is None or run.returncode:
        return "? (no git here)"
    changed = subprocess.run(["git", "diff", "--quiet", "HEAD", "--"], cwd=REPO_ROOT).returncode
    return run.stdout.strip() + (" (with local changes)" if changed else "")


def versions() -> list[str]:
    """A line for the GPU and a line per env: the versions the steps ran with."""
    gpu = output(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"])
    lines = [f"- GPU: {(gpu.splitlines() or [''])[0]}"]
    for env in ("train", "eval", "deploy", "eval-lmdeploy"):
        python = REPO_ROOT / ".envs" / env / "bin" / "python"
        if not os.access(python, os.X_OK):
            lines.append(f"- {env} env: not built")
            continue
        run = subprocess.run([str(python), "-m", MODULE, "versions"], cwd=REPO_ROOT, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        stack = " (--device-stack venv)" if (REPO_ROOT / ".envs" / env / ".device-stack").exists() else ""
        lines.append(f"- {env} env{stack}: {(run.stdout.splitlines() or [''])[-1]}")
    return lines


# ---------------------------------------------------------------- the actions run inside an env

def long_rows(src: str, dst: str, model: str, iters: str, *configs: str) -> None:
    """(train env) Rows as long as the configs' max_length, so every batch is batch x max_length."""
    from mmengine.config import Config
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    shape = {}
    for path in configs:
        cfg = Config.fromfile(path)
        loop = str(cfg.val_cfg["type"])
        assert "StyleValLoop" in loop, f"{path}: val_cfg is {loop}, not the style score's StyleValLoop"
        shape[path] = (cfg.train_dataloader.batch_size, cfg.train_dataloader.dataset.max_length)
    max_length = max(length for _, length in shape.values())
    count = max(batch for batch, _ in shape.values()) * int(iters)
    rows = json.loads(Path(src).read_text(encoding="utf-8"))
    out = []
    for row in (rows * (count // len(rows) + 1))[:count]:
        turn = dict(row["conversation"][0])
        text = turn["output"]
        while len(tokenizer(text)["input_ids"]) < max_length:  # the reply alone fills max_length
            text += "\n" + turn["output"]
        out.append({"conversation": [{**turn, "output": text}]})
    write_atomically(Path(dst), json.dumps(out, ensure_ascii=False), step=STEP)
    shortest = min(len(tokenizer(r["conversation"][0]["output"])["input_ids"]) for r in out)
    for path, (batch, length) in shape.items():
        print(f"shape {path} {batch} {length}")
    print(f"{dst}: {count} rows; the shortest reply alone is {shortest} tokens >= max_length {max_length}, "
          "so every row is cut to max_length and every batch is batch x max_length")


def serve_request(model: str, log: str, ready_s: str, max_tokens: str) -> None:
    """(deploy env) `make serve` through the shared helper (its wait ends when the server answers, or at
    once when the server process exits, or after READY_S), started with an API key (make serve API_KEY=...:
    lmdeploy's --api-keys); one request from the official openai client with the key and one without, then
    the server's whole process group is stopped."""
    import openai
    from openai import OpenAI

    from style_tune.deploy.serving import SERVED_MODEL_NAME, serve_model

    key = "sk-gpu-check-" + os.urandom(8).hex()
    with serve_model(model, mode="label", ready_timeout=float(ready_s), log=Path(log), api_key=key) as server:
        print(f"make serve: ready after {server.startup_s:.0f} s at {server.base_url}", flush=True)
        try:
            OpenAI(base_url=server.base_url, api_key="sk-wrong", max_retries=0).models.list()
            print("a wrong key: answered (NOT refused)")
        except openai.AuthenticationError as err:
            print("a wrong key:", type(err).__name__, err.status_code)
        client = OpenAI(base_url=server.base_url, api_key=key, timeout=120, max_retries=0)
        reply = client.chat.completions.create(model=SERVED_MODEL_NAME, max_tokens=int(max_tokens),
                                               messages=[{"role": "user", "content": "你好"}])
        choice = reply.choices[0]
        print(f"reply: {choice.message.content!r} (finish_reason {choice.finish_reason})", flush=True)
        try:
            client.chat.completions.create(model="not-" + SERVED_MODEL_NAME, max_tokens=1,
                                           messages=[{"role": "user", "content": "hi"}])
            print("another model name: answered")
        except Exception as err:  # lmdeploy answers another model name with 404
            print("another model name:", type(err).__name__, getattr(err, "status_code", ""))


def print_versions() -> None:
    """(any env with torch) Its Python and the toolchain's versions, one line."""
    import importlib.metadata as md
    import platform

    import torch

    names = ("torch", "transformers", "xtuner", "mmengine", "peft", "datasets", "deepspeed", "bitsandbytes",
             "lmdeploy", "opencompass")
    found = [f"{n} {md.version(n)}" for n in names if any(True for _ in md.distributions(name=n))]
    print(f"Python {platform.python_version()},", ", ".join(found),
          f"(CUDA {torch.version.cuda}, GPU visible: {torch.cuda.is_available()})")


def check_train_venv() -> None:
    """(the --device-stack train venv) The toolchain imports over this machine's torch, which sees the GPU."""
    import importlib.metadata as md

    import datasets  # noqa: F401
    import mmengine  # noqa: F401
    import peft  # noqa: F401
    import torch
    import transformers  # noqa: F401
    import xtuner  # noqa: F401

    names = ("torch", "transformers", "xtuner", "mmengine", "peft", "datasets", "tokenizers")
    print("train venv:", ", ".join(f"{n} {md.version(n)}" for n in names), f"(CUDA {torch.version.cuda})")
    assert torch.cuda.is_available(), "torch sees no GPU"


def device_stack(root: str = ".") -> int:
    """(DEVICE_PYTHON) .envs/dev and .envs/train of the checkout ROOT as venvs over this interpreter and
    its torch, the carried wheels (ROOT/.whl/) installed into the train one; stamped: make sees them built."""
    import site
    import venv

    wheels = sorted(str(p) for p in Path(root, ".whl").glob("*.whl"))
    if not wheels:
        print("no wheels in .whl/: run `make gpu-wheels` where PyPI is reachable and carry .whl")
        return 1
    envs = [Path(root, ".envs", env) for env in ("dev", "train")]
    for env in envs:
        if env.exists() and not (env / ".device-stack").exists():
            print(f"{env} exists and was not made by --device-stack: left alone; run without --device-stack")
            return 1
    parent = site.getsitepackages()[0]
    purelib = ""
    for env in envs:
        shutil.rmtree(env, ignore_errors=True)
        venv.create(env, system_site_packages=True, with_pip=False)
        purelib_of = "import sysconfig; print(sysconfig.get_path('purelib'))"
        asked = subprocess.run([str(env / "bin/python"), "-c", purelib_of], capture_output=True, text=True)
        if asked.returncode:
            print(f"{env}: its Python does not start: {asked.stderr.strip()}")
            return 1
        purelib = asked.stdout.strip()
        # A venv made from a venv (/opt/torch/.venv) sees the base interpreter's packages, not that venv's:
        # add them after its own, so the carried wheels come first. And the checkout, as `make setup` does.
        Path(purelib, "zz_device_site_packages.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
        Path(purelib, "style_tune_checkout.pth").write_text(f"{REPO_ROOT}\n")
    # the wheels go into the last one made: the train venv
    for command in ([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                     "--no-cache-dir", "--target", purelib, *wheels],
                    [str(envs[-1] / "bin/python"), "-m", MODULE, "check-train-venv"]):
        if rc := subprocess.run(command).returncode:
            return rc
    for env in envs:
        (env / ".device-stack").touch()
    for env in envs:  # after the locks: make sees them up to date
        (env / ".installed").touch()
    return 0


IN_ENV: dict[str, Callable[..., int | None]] = {
    "long-rows": long_rows, "serve-request": serve_request, "versions": print_versions,
    "check-train-venv": check_train_venv, "device-stack": device_stack,
}


# ---------------------------------------------------------------- main

def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in IN_ENV:
        os.chdir(REPO_ROOT)
        return IN_ENV[argv[0]](*argv[1:]) or 0
    opts = parse_args(argv, os.environ, Path.cwd())
    os.chdir(REPO_ROOT)
    logs = opts.work / f"logs-{opts.part}"
    if opts.dry_run:
        print(f"[gpu-acceptance] dry run of {opts.part}: the steps, nothing run; OUT would be {opts.out}")
    else:
        if not shutil.which("make"):
            print(f"{STEP}: this machine has no GNU make", file=sys.stderr)
            return 2
        opts.out.mkdir(parents=True, exist_ok=True)
        logs.mkdir(parents=True, exist_ok=True)
        for old in [*logs.glob("*.log"), *logs.glob("*.smi")]:
            old.unlink()
    skips = DEVICE_STACK_SKIPS if opts.device_stack else {}
    for name, reason in skips.items():
        print(f"[gpu-acceptance] cannot run on this machine: {name}: {reason}")
    merged, notes = opts.work / "merged", []
    tuned = str(merged)
    if opts.part == "part2" and not opts.dry_run and not (merged / "config.json").is_file():
        tuned = MODEL
        notes.append(f"no merged model from part1 in {opts.work} on this machine: eval-style compares the "
                     "random base with itself")
    steps = plan(opts, tuned)

    def run(step: Step) -> int:
        rc = run_step(step, logs)
        if rc:
            print(f"[gpu-acceptance] {step.name} failed ({rc}): {logs / f'{step.name}.log'}", flush=True)
        return rc

    done = execute(steps, skips, dry_run_step if opts.dry_run else run)
    done.notes[:0] = notes
    summary_path = opts.out / "summary.md"
    if opts.dry_run:
        print(f"[gpu-acceptance] dry run: nothing was run; summary: {summary_path}, "
              f"logs: {opts.out}/logs.tar.gz")
        return 0
    text = summary(opts, steps, done, logs, date=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                   commit=commit(), versions=versions())
    write_atomically(summary_path, text, step=STEP)
    with tarfile.open(opts.out / "logs.tar.gz", "w:gz") as tar:
        tar.add(logs, arcname=".")
    print(text, end="")
    print(f"[gpu-acceptance] {opts.part}: {done.failed} failed, {done.skipped} skipped; {summary_path}, "
          f"logs: {opts.out}/logs.tar.gz")
    return 1 if done.failed else 0


if __name__ == "__main__":
    main_of(STEP, main)
