#!/usr/bin/env python3
"""`make webui`: judge the style by eye, blind. Two models answer the same held-out prompt as "A" and "B".

    python -m style_tune.webui.app [--base-api URL] [--tuned-api URL] [--port 7860] [--verdicts FILE]
                          [--test data/label/test.json] [--mode label|controllable] [--n 20] [--seed 42]
                          [--no-blind] [--base-model DIR] [--tuned-model DIR]

- A rating session: the first ``--n`` distinct held-out prompts per style of ``--test`` (a split's
  test.json; controllable mode: each with its style's system text, the styles taking turns), shown one at
  a time with the progress ("Prompt 7 of 20"); the page opens on the first prompt not yet judged, ready
  to send. The verdict file is the session's state: a reload, or the same rater tomorrow, continues there.
- Blind (the default): the replies are "A" and "B" in an order drawn per prompt from ``--seed``; which
  model wrote which is revealed only after the verdict. Nothing the browser gets before then names an
  endpoint (its name, URL or model name). ``--no-blind``: A is base, B is tuned, each labelled (demos).
- Both models get the same messages: the system text the tuned model was trained with (label mode:
  Qwen's default; controllable mode: the prompt's style's), then the prompt (editable before sending).
- Verdicts: A better, B better, tie, both bad (keys a, b, t, x). Each appends one JSON line to
  ``--verdicts`` with a single write (never half a line): prompt, style, system text, both replies,
  which endpoint was A and which B (name, URL, model), the verdict, the settings, the rater's name (if
  given), the seed and the time. `make verdicts` counts them (style_tune/eval/verdicts.py).
- ``--base-api``/``--tuned-api`` (make: ``BASE_API=``, ``TUNED_API=``): any OpenAI-compatible
  ``.../v1`` endpoint (lmdeploy on a GPU, `make serve` on a CPU, a hosted API; the key from
  OPENAI_API_KEY); each endpoint's first listed model is asked. Without one, the page starts
  `python -m style_tune.deploy.chat serve` for ``--base-model``/``--tuned-model`` (default: `make demo`'s
  models) on a free local port and stops it on exit.
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
from style_tune.eval.verdicts import read as read_verdicts
from style_tune.eval.verdicts import record as verdict_record
from style_tune.eval.verdicts import shown_order

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
    parser.add_argument("--n", type=int, default=20, help="held-out prompts per style in a rating session")
    parser.add_argument("--seed", type=int, default=defaults.SEED,
                        help="draws which reply is A for each prompt (the same on a reload)")
    parser.add_argument("--no-blind", dest="blind", action="store_false",
                        help="name the models beside their replies (demos), A = base, B = tuned")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--ready-timeout", type=float, default=180.0,
                        help="seconds to wait for a local server")
    parser.add_argument("--logs", type=Path, default=REPO_ROOT / "outputs" / "webui",
                        help="the local servers' logs")
    return parser.parse_args(argv)


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


def session_items(test_json: Path, mode: str, n: int) -> list[dict[str, str | None]]:
    """The prompts of a rating session: the first N distinct held-out prompts per style (controllable
    mode: with that style's system text; label mode: one set, no style asked), the styles taking turns."""
    if not test_json.is_file():
        return []
    try:
        turns = [row["conversation"][0] for row in json.loads(test_json.read_text(encoding="utf-8"))]
        pairs = [(turn["input"], turn.get("system", "")) for turn in turns]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as err:
        fail("webui", f"{test_json} is not a split file (make split): {err}")
    if mode != "controllable":
        return [{"prompt": p, "style": None} for p in list(dict.fromkeys(p for p, _ in pairs))[:n]]
    per_style = {style: list(dict.fromkeys(p for p, system in pairs if system == system_text(mode, style)))
                 for style in STYLES}
    per_style = {style: prompts[:n] for style, prompts in per_style.items()}
    return [{"prompt": per_style[style][i], "style": style}
            for i in range(max(map(len, per_style.values()), default=0)) for style in STYLES
            if i < len(per_style[style])]


def judged(verdicts: Path, seed: int, rater: str) -> set[tuple[str, str | None]]:
    """The (prompt, style) pairs this rater already judged in this seed's session: the verdict file is the
    session's state. Read as `make verdicts` reads it: a judge's records are not this rater's, and a line
    that is not a record is left to `make verdicts` to report."""
    if not verdicts.is_file():
        return set()
    records, _ = read_verdicts([verdicts])
    return {(v.prompt, v.style) for v in records
            if v.source == "people" and v.seed == seed and (v.rater or "") == rater}


def build_page(endpoints: dict[str, Endpoint], mode: str, items: list[dict], verdicts: Path, *,
               blind: bool = True, seed: int = 0):
    """The rating page. Blind: the replies are "A" and "B" in a per-prompt order drawn from SEED, and which
    endpoint wrote which is revealed only after the verdict; nothing the browser receives before then names
    an endpoint (names, URLs and model names stay in this process). Not blind: A is base, B is tuned,
    each labelled."""
    import gradio as gr

    def order(item: dict) -> tuple[str, str]:
        return shown_order(seed, item["prompt"], item["style"]) if blind else ("base", "tuned")

    def describe(name: str) -> str:
        return f"{name} (`{endpoints[name].model}` at {endpoints[name].base_url})"

    def position(rater: str) -> tuple[int, str, str]:
        """The first item this rater has not judged, its progress line and its prompt."""
        done = judged(verdicts, seed, (rater or "").strip())
        index = next((i for i, item in enumerate(items) if (item["prompt"], item["style"]) not in done),
                     len(items))
        if not items:
            return 0, "No held-out prompts (--test): type a message.", ""
        if index == len(items):
            return index, f"All {len(items)} prompts judged: `make verdicts VERDICTS={verdicts}` counts.", ""
        item = items[index]
        style = f" · style **{item['style']}**" if item["style"] else ""
        return index, f"Prompt **{index + 1} of {len(items)}**{style}", item["prompt"]

    def start(rater: str):
        index, progress, prompt = position(rater)
        return {"index": index}, progress, prompt, "", ""

    def answer(message: str, rater: str, temperature: float, max_tokens: int, state: dict):
        message = (message or "").strip()
        if not message:
            raise gr.Error("Type a message first.")
        index = (state or {}).get("index", 0)
        item = items[index] if index < len(items) else {"prompt": message, "style": None}
        style = (item["style"] or STYLES[0]) if mode == "controllable" else None
        messages = [{"role": "system", "content": system_text(mode, style)},
                    {"role": "user", "content": message}]
        shown = order(item)
        out: queue.Queue = queue.Queue()
        for name in shown:
            threading.Thread(target=endpoints[name].stream, daemon=True,
                             args=(messages, temperature, int(max_tokens), out)).start()
        replies, running, begun = {name: "" for name in shown}, 2, time.monotonic()
        while running:
            name, text = out.get()
            if text is None:
                running -= 1
            else:
                replies[name] = text
            state = {"index": index, "item": item, "message": message, "messages": messages, "shown": shown,
                     "replies": replies, "temperature": temperature, "max_tokens": int(max_tokens)}
            status = f"done in {time.monotonic() - begun:.1f} s" if not running else "streaming ..."
            yield replies[shown[0]], replies[shown[1]], state, status, ""  # the last reveal goes

    def judge(state: dict | None, rater: str, verdict: str):
        if not state or "replies" not in state or not any(state["replies"].values()):
            raise gr.Error("Send the prompt and wait for both replies first.")
        shown, replies = state["shown"], state["replies"]
        record_verdict(verdicts, verdict_record(
            verdict=verdict, prompt=state["message"], style=state["item"]["style"],
            system=state["messages"][0]["content"], replies={"A": replies[shown[0]], "B": replies[shown[1]]},
            endpoints={side: {"name": name, "api": endpoints[name].base_url, "model": endpoints[name].model}
                       for side, name in zip(("A", "B"), shown, strict=True)},
            settings={"temperature": state["temperature"], "max_tokens": state["max_tokens"]}, seed=seed,
            rater=(rater or "").strip() or None, mode=mode, blind=blind))
        said = {"A": "A better", "B": "B better"}.get(verdict, verdict)
        reveal = (f"Recorded **{said}**. A was {describe(shown[0])}; B was {describe(shown[1])}. "
                  f"(`{verdicts}`)")
        index, progress, prompt = position(rater)
        return reveal, {"index": index}, progress, prompt, "", "", ""

    title = "Which reply is better? (blind)" if blind else "style-tune: base vs tuned"
    with gr.Blocks(title=title) as page:
        if blind:
            gr.Markdown(f"## {title}\nTwo models answer the same prompt as **A** and **B**, in an order "
                        "drawn per prompt; which is which shows after your verdict. Keys: **a** A better, "
                        "**b** B better, **t** tie, **x** both bad.")
        else:
            gr.Markdown(f"## {title}\nA: {describe('base')} · B: {describe('tuned')} · mode: {mode}")
        with gr.Row():
            with gr.Column(scale=3):
                progress = gr.Markdown(elem_id="progress")
                message = gr.Textbox(label="prompt", lines=2, elem_id="message")
            with gr.Column(scale=1):
                rater = gr.Textbox(label="your name (optional: each rater has a session)", elem_id="rater")
                temperature = gr.Slider(0.0, 1.5, value=DEFAULT_TEMPERATURE, step=0.05, label="temperature",
                                        elem_id="temperature")
                max_tokens = gr.Slider(8, 1024, value=DEFAULT_MAX_TOKENS, step=8, label="max tokens",
                                       elem_id="max-tokens")
        send = gr.Button("Send to both", variant="primary", elem_id="send")
        with gr.Row():
            reply_a = gr.Textbox(label="A" if blind else f"A · base · {endpoints['base'].model}", lines=10,
                                 elem_id="reply-a")
            reply_b = gr.Textbox(label="B" if blind else f"B · tuned · {endpoints['tuned'].model}", lines=10,
                                 elem_id="reply-b")
        answer_status = gr.Markdown(elem_id="answer-status")
        state = gr.State(None)
        with gr.Row():
            buttons = {verdict: gr.Button(label, elem_id=f"verdict-{key}") for verdict, label, key in (
                ("A", "A better [a]", "A"), ("B", "B better [b]", "B"), ("tie", "tie [t]", "tie"),
                ("both bad", "both bad [x]", "both-bad"))}
        reveal = gr.Markdown(elem_id="reveal")

        page.load(start, inputs=rater, outputs=[state, progress, message, reply_a, reply_b])
        rater.blur(start, inputs=rater, outputs=[state, progress, message, reply_a, reply_b])
        inputs = [message, rater, temperature, max_tokens, state]
        outputs = [reply_a, reply_b, state, answer_status, reveal]
        send.click(answer, inputs=inputs, outputs=outputs)
        message.submit(answer, inputs=inputs, outputs=outputs)
        for verdict, button in buttons.items():
            button.click(lambda s, r, v=verdict: judge(s, r, v), inputs=[state, rater],
                         outputs=[reveal, state, progress, message, reply_a, reply_b, answer_status])
    return page


#: The verdict keys: a, b, t, x click the verdict buttons, except while typing in a text field.
SHORTCUTS = """<script>
document.addEventListener("keydown", (event) => {
  const target = event.target;
  if (event.ctrlKey || event.metaKey || event.altKey || target.closest("textarea, input")) return;
  const id = {a: "verdict-A", b: "verdict-B", t: "verdict-tie", x: "verdict-both-bad"}[event.key];
  if (id) { document.getElementById(id)?.click(); event.preventDefault(); }
});
</script>"""


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
        print(f"webui: {name} server ready at {server.base_url} in {server.startup_s:.0f} s "
              f"(log: {server.log})", flush=True)
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
        endpoints = {name: Endpoint(name, urls[name]) for name in ("base", "tuned")}
        items = session_items(args.test, args.mode, args.n)
        page = build_page(endpoints, args.mode, items, args.verdicts, blind=args.blind, seed=args.seed)
        print(f"webui: http://{args.host}:{args.port}  ({'blind, ' if args.blind else ''}{len(items)} "
              f"prompts; verdicts: {args.verdicts}; Ctrl-C stops)", flush=True)
        page.queue(default_concurrency_limit=4).launch(server_name=args.host, server_port=args.port,
                                                       prevent_thread_lock=False, show_error=True,
                                                       head=SHORTCUTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
