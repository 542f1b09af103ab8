#!/usr/bin/env python3
"""`make webui`: judge the style by eye. The base and the tuned model answer side by side, streaming.

    python -m style_tune.webui.app [--base-api URL] [--tuned-api URL] [--port 7860] [--verdicts FILE]
                          [--test data/label/test.json] [--mode label|controllable]
                          [--base-model DIR] [--tuned-model DIR]

- Type a message or pick one of the held-out test prompts (``--test``: a split's test.json).
- Both models get the same messages: the system text the tuned model was trained with (label mode:
  Qwen's default; controllable mode: the chosen style's, so the style picker is shown), then the
  user's message. Temperature and max tokens apply to both.
- A verdict button appends one JSON line to ``--verdicts`` (prompt, system text, both replies,
  settings, endpoints, verdict), written with a single append so a line is never half there.
- ``--base-api``/``--tuned-api`` (make: ``BASE_API=``, ``TUNED_API=``): any OpenAI-compatible
  ``.../v1`` endpoint (lmdeploy on a GPU, `make serve` on a CPU); each endpoint's first listed model
  is asked. Without one, the page starts `python -m style_tune.deploy.chat serve` for
  ``--base-model``/``--tuned-model`` (default: `make demo`'s models) on a free local port and stops
  it on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

from style_tune import REPO_ROOT
from style_tune.core import defaults
from style_tune.core.prompts import MODES, STYLES, system_text
from style_tune.core.steps import fail
from style_tune.deploy.serving import Server, free_port, list_models

VERDICTS = ("base better", "tie", "tuned better", "both bad")
#: Defaults of the sliders (also what a verdict records when they were not moved).
DEFAULT_TEMPERATURE = 0.7
DEFAULT_MAX_TOKENS = 256


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="webui.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-api", default="", help="OpenAI-compatible URL of the base model (.../v1)")
    parser.add_argument("--tuned-api", default="", help="OpenAI-compatible URL of the tuned model (.../v1)")
    parser.add_argument("--base-model", type=Path, default=REPO_ROOT / defaults.TINY_MODEL,
                        help="served locally when --base-api is not given")
    parser.add_argument("--tuned-model", type=Path,
                        default=REPO_ROOT / "models" / "tiny-qwen2.5-style-merged",
                        help="served locally when --tuned-api is not given")
    parser.add_argument("--mode", default=defaults.MODE, choices=MODES,
                        help="the format the tuned model was trained in")
    parser.add_argument("--test", type=Path, default=REPO_ROOT / defaults.split_dir() / "test.json",
                        help="held-out prompts to pick from (a split's test.json); optional")
    parser.add_argument("--verdicts", type=Path, default=REPO_ROOT / "outputs" / "webui" / "verdicts.jsonl")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--ready-timeout", type=float, default=180.0,
                        help="seconds to wait for a local server")
    parser.add_argument("--logs", type=Path, default=REPO_ROOT / "outputs" / "webui",
                        help="the local servers' logs")
    return parser.parse_args(argv)


def held_out_prompts(test_json: Path) -> list[str]:
    """The distinct first-turn prompts of a split file, in file order; [] when there is none."""
    if not test_json.is_file():
        return []
    try:
        rows = json.loads(test_json.read_text(encoding="utf-8"))
        prompts = [row["conversation"][0]["input"] for row in rows]
    except (ValueError, KeyError, IndexError, TypeError) as err:
        fail("webui", f"{test_json} is not a split file (make split): {err}")
    return list(dict.fromkeys(prompts))


def record_verdict(path: Path, record: dict) -> None:
    """Append one JSON line with a single write (O_APPEND): concurrent clicks never interleave."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


class Endpoint:
    """One OpenAI-compatible endpoint and the model it serves."""

    def __init__(self, name: str, base_url: str):
        from openai import OpenAI

        self.name = name
        self.base_url = base_url.rstrip("/")
        try:
            models = list_models(self.base_url, timeout=10)
        except OSError as err:
            fail("webui", f"{name} endpoint {self.base_url} does not answer GET /models: {err}")
        if not models:
            fail("webui", f"{name} endpoint {self.base_url} lists no model")
        self.model = models[0]
        self.client = OpenAI(base_url=self.base_url, api_key=os.environ.get("OPENAI_API_KEY", "none"),
                             max_retries=0, timeout=600)

    def stream(self, messages: list[dict[str, str]], temperature: float, max_tokens: int, out: queue.Queue):
        """Put (name, text so far) on ``out`` as the reply grows, then (name, None) when done."""
        text = ""
        try:
            stream = self.client.chat.completions.create(model=self.model, messages=messages, stream=True,
                                                         temperature=temperature, max_tokens=max_tokens)
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    text += chunk.choices[0].delta.content
                    out.put((self.name, text))
        except Exception as err:  # shown in the page, the other side goes on
            text += f"\n[error from {self.base_url}: {err}]"
            out.put((self.name, text))
        out.put((self.name, None))


def build_page(base: Endpoint, tuned: Endpoint, mode: str, prompts: list[str], verdicts: Path):
    import gradio as gr

    def messages_for(message: str, style: str | None) -> list[dict[str, str]]:
        return [{"role": "system", "content": system_text(mode, style if mode == "controllable" else None)},
                {"role": "user", "content": message}]

    def answer(message: str, style: str | None, temperature: float, max_tokens: int):
        message = (message or "").strip()
        if not message:
            raise gr.Error("Type a message or pick a held-out prompt first.")
        messages = messages_for(message, style)
        out: queue.Queue = queue.Queue()
        for side in (base, tuned):
            threading.Thread(target=side.stream, args=(messages, temperature, int(max_tokens), out),
                             daemon=True).start()
        replies, running, start = {"base": "", "tuned": ""}, 2, time.monotonic()
        while running:
            name, text = out.get()
            if text is None:
                running -= 1
            else:
                replies[name] = text
            state = {"message": message, "messages": messages, **replies, "temperature": temperature,
                     "max_tokens": int(max_tokens)}
            status = f"done in {time.monotonic() - start:.1f} s" if not running else "streaming ..."
            yield replies["base"], replies["tuned"], state, status

    def judge(last: dict | None, verdict: str):
        if not last or not (last.get("base") or last.get("tuned")):
            raise gr.Error("Send a prompt and wait for both replies first.")
        record = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "verdict": verdict,
            "prompt": last["message"],
            "system": last["messages"][0]["content"],
            "base_reply": last["base"],
            "tuned_reply": last["tuned"],
            "temperature": last["temperature"],
            "max_tokens": last["max_tokens"],
            "mode": mode,
            "base": {"api": base.base_url, "model": base.model},
            "tuned": {"api": tuned.base_url, "model": tuned.model},
        }
        record_verdict(verdicts, record)
        return f"Recorded **{verdict}** in `{verdicts}`."

    with gr.Blocks(title="style-tune: base vs tuned") as page:
        gr.Markdown(f"## style-tune: base vs tuned\nBase: `{base.model}` at {base.base_url} · "
                    f"Tuned: `{tuned.model}` at {tuned.base_url} · mode: {mode}")
        with gr.Row():
            with gr.Column(scale=3):
                pick = gr.Dropdown(prompts, label=f"held-out test prompts ({len(prompts)})", value=None,
                                   interactive=True, elem_id="held-out")
                message = gr.Textbox(label="message", lines=2, elem_id="message")
            with gr.Column(scale=1):
                style = gr.Radio(list(STYLES), value=STYLES[0], label="style (system text)",
                                 visible=mode == "controllable", elem_id="style")
                temperature = gr.Slider(0.0, 1.5, value=DEFAULT_TEMPERATURE, step=0.05, label="temperature",
                                        elem_id="temperature")
                max_tokens = gr.Slider(8, 1024, value=DEFAULT_MAX_TOKENS, step=8, label="max tokens",
                                       elem_id="max-tokens")
        send = gr.Button("Send to both", variant="primary", elem_id="send")
        with gr.Row():
            base_reply = gr.Textbox(label=f"base · {base.model}", lines=10, elem_id="base-reply")
            tuned_reply = gr.Textbox(label=f"tuned · {tuned.model}", lines=10, elem_id="tuned-reply")
        answer_status = gr.Markdown(elem_id="answer-status")
        last = gr.State(None)
        with gr.Row():
            buttons = [gr.Button(v, elem_id="verdict-" + v.replace(" ", "-")) for v in VERDICTS]
        status = gr.Markdown(elem_id="verdict-status")

        pick.change(lambda p: p or gr.update(), inputs=pick, outputs=message)
        inputs = [message, style, temperature, max_tokens]
        outputs = [base_reply, tuned_reply, last, answer_status]
        send.click(answer, inputs=inputs, outputs=outputs)
        message.submit(answer, inputs=inputs, outputs=outputs)
        for button, verdict in zip(buttons, VERDICTS, strict=True):
            button.click(lambda state, v=verdict: judge(state, v), inputs=last, outputs=status)
    return page


def local_servers(stack: ExitStack, models: dict[str, Path], args: argparse.Namespace) -> dict[str, str]:
    """Start `python -m style_tune.deploy.chat serve` per {name: model dir} on free ports; return URLs."""
    servers = {}
    for name, model_dir in models.items():
        if not (model_dir / "config.json").is_file():
            fail("webui", f"no {name} model at {model_dir} (no config.json): run `make demo`, or give "
                          f"{name.upper()}_API=URL of a running server")
        port = free_port()
        style = ["--style", STYLES[0]] if args.mode == "controllable" else []
        command = [sys.executable, "-m", "style_tune.deploy.chat", "serve", str(model_dir),
                   "--mode", args.mode, *style, "--host", "127.0.0.1", "--port", str(port)]
        print(f"webui: starting the {name} model's server: {model_dir} on port {port} ...", flush=True)
        server = Server(command, port, ready_timeout=args.ready_timeout, log=args.logs / f"{name}-server.log")
        stack.callback(server.stop)
        servers[name] = server.launch()
    for name, server in servers.items():
        server.wait()
        print(f"webui: {name} server ready in {server.startup_s:.0f} s (log: {server.log})", flush=True)
    return {name: server.base_url for name, server in servers.items()}


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM like Ctrl-C: Gradio closes, the ExitStack stops the local servers


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    with ExitStack() as stack:
        urls = {"base": args.base_api, "tuned": args.tuned_api}
        models = {"base": args.base_model, "tuned": args.tuned_model}
        urls.update(local_servers(stack, {name: models[name] for name, url in urls.items() if not url}, args))
        page = build_page(Endpoint("base", urls["base"]), Endpoint("tuned", urls["tuned"]), args.mode,
                          held_out_prompts(args.test), args.verdicts)
        print(f"webui: http://{args.host}:{args.port}  (verdicts: {args.verdicts}; Ctrl-C stops)", flush=True)
        page.queue(default_concurrency_limit=4).launch(server_name=args.host, server_port=args.port,
                                                       prevent_thread_lock=False, show_error=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
