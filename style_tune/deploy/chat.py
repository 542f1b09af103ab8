#!/usr/bin/env python3
"""`make chat`, `make serve`, `make chat-cpu`: the merged model, prompted as it was trained.

    python3 -m style_tune.deploy.chat chat     MODEL [--mode label|controllable] [--style S]
    python3 -m style_tune.deploy.chat serve    MODEL [--mode ...] [--style S] [--host 127.0.0.1]
                                               [--port 23333] [--api-key-file FILE]   (key: $API_KEY)
    python3 -m style_tune.deploy.chat chat-cpu MODEL [--mode ...] [--style S] [--max-new-tokens 512]
    ... [--check | --dry-run] [-- EXTRA ARGS for lmdeploy / xtuner chat]

- chat:     ``lmdeploy chat MODEL --chat-template style_data/chat_template*.json`` (CUDA GPU only).
- serve:    ``lmdeploy serve api_server`` with the same template: an OpenAI-compatible API; clients
            pick the style with the system message (controllable mode). Without a CUDA GPU:
            ``python -m style_tune.deploy.cpu_server`` in the deploy env (transformers' own server behind a
            thin OpenAI-protocol layer, docs/serving.md): the same API, model name and system text.
- chat-cpu: XTuner's own ``xtuner chat`` (transformers backend) with the training template
            (``qwen_chat``) and the same system text: slow, but it runs anywhere, the tiny demo
            model included. Input ends with an empty line; EXIT quits, RESET clears the history.

The template and system text come from style_tune/core/prompts.py (``MODE``: the format the model was
trained in; ``STYLE`` in controllable mode: 温柔|毒舌 or gentle|snarky). lmdeploy has no CPU engine:
without a CUDA GPU, chat stops at once with a one-line message pointing to chat-cpu, and serve runs
the CPU server.
serve listens on loopback unless told otherwise, and refuses any other address without an API key:
``$API_KEY`` (`make serve API_KEY=...`) and/or ``--api-key-file`` (one key a line). lmdeploy takes them
as ``--api-keys`` (shown masked); the CPU server from the environment (docs/serving.md#security).
``--check`` validates the arguments (and, for chat/serve, the GPU) and runs nothing; ``--dry-run``
prints the command without any check of the machine. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from style_tune import REPO_ROOT
from style_tune.core import defaults
from style_tune.core.cli import split_passthrough
from style_tune.core.prompts import (
    MODES,
    STYLE_SLUGS,
    XTUNER_PROMPT_TEMPLATE,
    chat_template_file,
    lmdeploy_chat_template,
    resolve_style,
    system_text,
)
from style_tune.core.steps import fail
from style_tune.deploy.serving import (  # clients send SERVED_MODEL_NAME as ``model``
    SERVED_MODEL_NAME,
    api_keys_env,
    check_exposure,
    read_api_keys,
)

DEPLOY_ENV = REPO_ROOT / ".envs" / "deploy"
TRAIN_ENV = REPO_ROOT / ".envs" / "train"
STYLE_CHOICES = " | ".join(f"{style} ({slug})" for style, slug in STYLE_SLUGS.items())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="chat.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("chat", "serve", "chat-cpu"))
    parser.add_argument("model", help="the merged model directory (make merge)")
    parser.add_argument("--mode", default=defaults.MODE, help="the data format the model was trained in")
    parser.add_argument("--style", default=None, help=f"controllable mode: {STYLE_CHOICES}")
    parser.add_argument("--host", default="127.0.0.1", help="serve: the address to listen on")
    parser.add_argument("--api-key-file", help="serve: API keys, one a line (also $API_KEY)")
    parser.add_argument("--port", type=int, default=23333, help="serve: the port")
    parser.add_argument("--max-new-tokens", type=int, default=512, help="chat-cpu: longest reply")
    parser.add_argument("--cpu", action="store_true", help="serve: the CPU server even where a GPU is")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--check", action="store_true", help="validate (GPU included), run nothing")
    what.add_argument("--dry-run", action="store_true", help="print the command, check no machine")
    argv = list(sys.argv[1:] if argv is None else argv)
    ours, extra = split_passthrough(argv)
    args = parser.parse_args(ours)
    args.extra = extra  # after --: more arguments for lmdeploy / xtuner chat
    return args


def resolve_mode_and_style(step: str, mode: str, style: str | None) -> str | None:
    """The style label to use (None in label mode), or a one-line error."""
    if mode not in MODES:
        fail(step, f"unknown MODE {mode!r}; use one of {', '.join(MODES)} (the format the model learned)")
    if mode == "label":
        if style:
            fail(step, "STYLE= is for MODE=controllable; a label-mode model picks the style itself "
                       "(it writes the style label on the reply's first line)")
        return None
    if not style:
        purpose = "the style of requests without a system message" if step == "serve" else "the system text"
        fail(step, f"MODE=controllable needs STYLE= ({purpose}): one of {STYLE_CHOICES}")
    try:
        return resolve_style(style)
    except ValueError as err:
        fail(step, str(err))


def gpu_problem() -> str | None:
    """Why this machine cannot run lmdeploy's engines, or None when nvidia-smi lists a GPU."""
    nvidia_smi = shutil.which("nvidia-smi")
    if nvidia_smi is None:
        return "nvidia-smi is not installed"
    try:
        proc = subprocess.run([nvidia_smi, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"nvidia-smi -L failed: {err}"
    if proc.returncode != 0 or "GPU" not in proc.stdout:
        return "nvidia-smi -L lists no GPU"
    return None


def check_gpu(step: str) -> None:
    problem = gpu_problem()
    if problem:
        fail(step, f"lmdeploy needs a CUDA GPU (it has no CPU engine) and this machine has none ({problem}). "
                   "On a CPU, use `make chat-cpu`: XTuner's chat on the transformers backend, "
                   "same template and system text, slow but real.")


def check_deploy_torch(step: str) -> None:
    """The deploy env on a GPU machine must hold a CUDA torch that sees the GPU."""
    code = "import torch; print(torch.version.cuda or 'cpu', torch.cuda.is_available())"
    proc = subprocess.run([str(DEPLOY_ENV / "bin" / "python"), "-c", code], capture_output=True, text=True)
    cuda, available = (proc.stdout.split() + ["?", "False"])[:2] if proc.returncode == 0 else ("?", "False")
    if available == "True":
        return
    fail(step, f"the deploy environment's torch (CUDA {cuda} build) sees no GPU: the NVIDIA driver must "
               f"support CUDA {cuda} (`nvidia-smi` shows the newest CUDA it supports); "
               f"torch says: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'no error'}")


def check_template(step: str, mode: str, style: str | None) -> Path:
    """The committed lmdeploy template for mode/style, refused when missing or stale."""
    relative = chat_template_file(mode, style)
    path = REPO_ROOT / relative
    try:
        current = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        current = None
    if current != lmdeploy_chat_template(mode, style):
        fail(step, f"{relative} is missing or differs from style_tune/core/prompts.py; "
                   "run `make chat-templates`")
    return path


def build_command(args: argparse.Namespace, style: str | None, template: Path,
                  keys: Sequence[str] = ()) -> list[str]:
    if args.command == "chat":
        return [str(DEPLOY_ENV / "bin" / "lmdeploy"), "chat", args.model, "--chat-template", str(template),
                *args.extra]
    if args.command == "serve":
        return [str(DEPLOY_ENV / "bin" / "lmdeploy"), "serve", "api_server", args.model,
                "--chat-template", str(template), "--model-name", SERVED_MODEL_NAME,
                "--server-name", args.host, "--server-port", str(args.port),
                *(["--api-keys", *keys] if keys else []), *args.extra]
    return [str(TRAIN_ENV / "bin" / "python"), "-m", "xtuner.tools.chat", args.model,
            "--prompt-template", XTUNER_PROMPT_TEMPLATE, "--system", system_text(args.mode, style),
            "--torch-dtype", "fp32", "--max-new-tokens", str(args.max_new_tokens), *args.extra]


def cpu_serve_command(args: argparse.Namespace, style: str | None) -> list[str]:
    """`make serve` without a CUDA GPU: style_tune.deploy.cpu_server in the deploy env (docs/serving.md)."""
    return [str(DEPLOY_ENV / "bin" / "python"), "-m", "style_tune.deploy.cpu_server", args.model,
            "--mode", args.mode, *(["--style", style] if style else []),
            "--host", args.host, "--port", str(args.port), *args.extra]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    step = args.command
    style = resolve_mode_and_style(step, args.mode, args.style)
    on_cpu = step == "serve" and (args.cpu or (not args.dry_run and gpu_problem() is not None))
    keys = read_api_keys(step, os.environ.get("API_KEY", ""), args.api_key_file) if step == "serve" else []
    if step == "serve":
        check_exposure(step, args.host, keys)
    if step == "chat" and not args.dry_run:
        check_gpu(step)
    if not args.dry_run and not (Path(args.model) / "config.json").is_file():
        fail(step, f"no model at {args.model} (no config.json): run `make merge`, or pass MODEL=DIR")
    if on_cpu:
        command = cpu_serve_command(args, style)
    else:
        command = build_command(args, style, check_template(step, args.mode, style), keys)
    shown = shlex.join("***" if part in keys else part for part in command)  # keys never printed
    if args.check:
        return 0
    if args.dry_run:
        print(shown)
        return 0
    if step == "chat" or (step == "serve" and not on_cpu):
        check_deploy_torch(step)
    if on_cpu:
        print(f"serve: no CUDA GPU ({gpu_problem() or '--cpu'}): the CPU server (transformers) at "
              f"http://{args.host}:{args.port}/v1, model name {SERVED_MODEL_NAME!r}; the system message "
              "picks the style (README: make serve)")
    elif step == "serve":
        print(f"serve: OpenAI-compatible API at http://{args.host}:{args.port}/v1, model name "
              f"{SERVED_MODEL_NAME!r}; the system message picks the style (README: make serve)")
    elif step == "chat-cpu":
        print("chat-cpu: XTuner chat on the CPU; end a message with an empty line; EXIT quits, RESET forgets")
    print(f"{step}: $ {shown}", flush=True)
    env = {key: value for key, value in os.environ.items() if key != "API_KEY"}
    if on_cpu:
        env.update(api_keys_env(keys))
    os.execve(command[0], command, env)  # never returns


if __name__ == "__main__":
    sys.exit(main())
