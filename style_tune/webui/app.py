#!/usr/bin/env python3
"""`make webui`: judge the style by eye, blind. Two or more models; each prompt goes to two of them, shown as
"A" and "B".

    python -m style_tune.webui.app [--compare "NAME=DIR|URL[#MODEL] ..."] [--port 7860] [--verdicts FILE]
                          [--test data/label/test.json] [--mode label|controllable] [--n 20] [--seed 42]
                          [--no-blind] [--host 127.0.0.1] [--auth-file FILE]      (logins also: $WEBUI_AUTH)
                          [--base-api URL] [--tuned-api URL] [--base-model DIR] [--tuned-model DIR]

- The models: ``--compare`` (make: ``COMPARE=``), two or more named models, each a model directory or an
  OpenAI-compatible ``.../v1`` URL with an optional ``#MODEL`` (style_tune/core/compare.py says the
  syntax); without it ``base`` and ``tuned`` from ``--base-api``/``--base-model`` and
  ``--tuned-api``/``--tuned-model`` (make: BASE_API=/TUNED_API=, WEBUI_BASE=/WEBUI_TUNED=). For a
  directory the page starts `python -m style_tune.deploy.chat serve` on a free local port (one server per
  directory, whatever the names) and stops it on exit; a URL is asked as it is (lmdeploy on a GPU, `make
  serve` on a CPU, a hosted API; the key from OPENAI_API_KEY), its ``#MODEL`` or else the first model
  it lists.
- A rating session: the first ``--n`` distinct held-out prompts per style of ``--test`` (a split's
  test.json; controllable mode: each with its style's system text, the styles taking turns), shown one at
  a time with the progress ("Prompt 7 of 20"); the page opens on the first prompt not yet judged, ready
  to send. The verdict file is the session's state: a reload, or the same rater tomorrow, continues there.
- Which two models answer a prompt (:func:`pair_plan`): every pair of models, in an order shuffled from
  ``--seed``, taken in turn within each style, so each pair is asked equally often, and about each style
  alike (when the prompts of a style are not a multiple of the pairs, some pairs get one more). Two
  models: always that pair.
- Blind (the default): the pair's replies are "A" and "B" in an order drawn per prompt from ``--seed``;
  which model wrote which is revealed only after the verdict. Nothing the browser gets before then names
  a model (its name, URL or model name). ``--no-blind``: A is the one named first, each labelled (demos).
- Both models get the same messages: the system text the tuned model was trained with (label mode:
  Qwen's default; controllable mode: the prompt's style's), then the prompt (editable before sending).
- Verdicts: A better, B better, tie, both bad (keys a, b, t, x). Each appends one JSON line to
  ``--verdicts`` with a single write (never half a line): prompt, style, system text, both replies,
  which endpoint was A and which B (name, URL, model), the verdict, the settings, the rater, the seed
  and the time. `make verdicts` counts them (style_tune/eval/verdicts.py).
- Raters: on loopback without logins, a rater may type a name (each name has its own session). Logins
  (``--auth-file``: one ``user:password`` a line, # comments; and/or ``$WEBUI_AUTH``: ``user:password``
  words) put the page behind Gradio's own login, and the rater of each verdict is the logged-in user.
  Any host but loopback without a login is refused: anyone reaching the port could rate and read the
  replies (docs/serving.md#several-raters-logins). Passwords are never printed.
"""

# No `from __future__ import annotations` here: Gradio finds the `gr.Request` parameter of a handler by
# its evaluated annotation, and gradio is imported inside build_page, where a string would not resolve.

import argparse
import itertools
import json
import os
import queue
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from style_tune import REPO_ROOT
from style_tune.core import defaults
from style_tune.core.compare import Candidate, parse_compare
from style_tune.core.prompts import MODES, STYLES, system_text
from style_tune.core.steps import fail
from style_tune.deploy.serving import Server, free_port, is_loopback, list_models
from style_tune.eval.verdicts import read as read_verdicts
from style_tune.eval.verdicts import record as verdict_record
from style_tune.eval.verdicts import shown_order

if TYPE_CHECKING:  # build_page's return type, named in quotes (gradio is imported when the page is built)
    import gradio as gr

#: Defaults of the sliders (also what a verdict records when they were not moved).
DEFAULT_TEMPERATURE = 0.7
DEFAULT_MAX_TOKENS = 256
#: The logins given in the environment (`make webui WEBUI_AUTH="ann:pw bob:pw"`): user:password words.
AUTH_ENV = "WEBUI_AUTH"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="webui.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", default="",
                        help='the models: "NAME=DIR|URL/v1[#MODEL] ..." (two or more); default: base and '
                             "tuned from the four options below")
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
                        help="draws the pairs' order and which reply is A for each prompt (the same on a "
                             "reload)")
    parser.add_argument("--no-blind", dest="blind", action="store_false",
                        help="name the models beside their replies (demos), A = the one named first")
    parser.add_argument("--host", default="127.0.0.1",
                        help="any address but loopback needs logins (--auth-file or $WEBUI_AUTH)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--auth-file", type=Path,
                        help=f"logins, one user:password a line (# comments); also ${AUTH_ENV}")
    parser.add_argument("--ready-timeout", type=float, default=180.0,
                        help="seconds to wait for a local server")
    parser.add_argument("--logs", type=Path, default=REPO_ROOT / "outputs" / "webui",
                        help="the local servers' logs")
    return parser.parse_args(argv)


def candidates(args: argparse.Namespace) -> list[Candidate]:
    """The compared models: --compare, else the two-model shorthand (base, tuned)."""
    if not args.compare:
        return [Candidate("base", args.base_api.rstrip("/") or str(args.base_model)),
                Candidate("tuned", args.tuned_api.rstrip("/") or str(args.tuned_model))]
    try:
        return parse_compare(args.compare)
    except ValueError as err:
        fail("webui", f"COMPARE: {err}")


def read_logins(auth_file: Path | None, inline: str) -> list[tuple[str, str]]:
    """The logins for Gradio's ``auth``: the ``user:password`` words of INLINE ($WEBUI_AUTH) and the lines
    of AUTH_FILE. A bad entry stops the page with one line naming where it is, never what it holds."""
    entries = [(word, AUTH_ENV) for word in inline.split()]
    if auth_file is not None:
        try:
            lines = auth_file.read_text(encoding="utf-8").splitlines()
        except OSError as err:
            fail("webui", f"WEBUI_AUTH_FILE={auth_file}: {err.strerror or err}; give a file with one "
                          "user:password a line")
        except UnicodeDecodeError:
            fail("webui", f"WEBUI_AUTH_FILE={auth_file} is not UTF-8 text (one user:password a line)")
        entries += [(line.strip(), f"{auth_file}:{n}") for n, line in enumerate(lines, 1)
                    if line.strip() and not line.lstrip().startswith("#")]
        if not any(where != AUTH_ENV for _, where in entries):
            fail("webui", f"WEBUI_AUTH_FILE={auth_file} holds no login (one user:password a line; "
                          "# comments)")
    logins: dict[str, str] = {}
    for entry, where in entries:
        user, colon, password = entry.partition(":")
        if not (colon and user and password) or any(c.isspace() or not c.isprintable() for c in entry):
            fail("webui", f"{where}: a login is user:password (a name, a colon, a password, no spaces); "
                          "this one is not (not shown: it may hold a password)")
        if user in logins:
            fail("webui", f"{where}: user {user!r} is given twice")
        logins[user] = password
    return list(logins.items())


def check_exposure(host: str, logins: list[tuple[str, str]]) -> None:
    """A page beyond loopback without a login lets anyone who reaches the port rate and read: refuse."""
    if not logins and not is_loopback(host):
        fail("webui", f"listening on {host} without a login would let anyone who reaches the port rate the "
                      "models and read their replies: give WEBUI_AUTH_FILE=FILE (one user:password a line) "
                      f"or {AUTH_ENV}='user:password ...', or keep WEBUI_HOST=127.0.0.1 "
                      "(docs/serving.md#several-raters-logins)")


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
    """One OpenAI-compatible endpoint and the model asked there (MODEL, else the first it lists)."""

    def __init__(self, name: str, base_url: str, model: str = ""):
        from openai import OpenAI

        self.name = name
        self.base_url = base_url.rstrip("/")
        key = os.environ.get("OPENAI_API_KEY") or None
        try:
            models = list_models(self.base_url, timeout=10, api_key=key)
        except (OSError, ValueError, KeyError) as err:
            fail("webui", f"{name} endpoint {self.base_url} does not answer GET /models: {err}")
        if model and model not in models:
            fail("webui", f"{name} endpoint {self.base_url} does not list model {model!r} (it lists "
                          f"{', '.join(models[:10]) or 'none'})")
        if not models:
            fail("webui", f"{name} endpoint {self.base_url} lists no model")
        self.model = model or models[0]
        self.client = OpenAI(base_url=self.base_url, api_key=key or "none", max_retries=0, timeout=600)

    def stream(self, messages: list[dict[str, str]], temperature: float, max_tokens: int,
               out: queue.Queue) -> None:
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
            # the page shows no address or model name before the verdict: the details go to the log
            print(f"webui: {self.name} ({self.base_url}): {type(err).__name__}: {err}", file=sys.stderr,
                  flush=True)
            text += "\n[no reply: the model's server failed; the terminal running the page says why]"
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


def pair_plan(items: list[dict], names: list[str], seed: int) -> list[tuple[str, str]]:
    """The two models asked about each item: every pair of NAMES (in their order within a pair), the pairs
    in an order shuffled from SEED and taken in turn within each style, each style going on where the one
    before it stopped: each pair is asked as often as any other, in all and within each style (one more at
    most, when the prompts are not a multiple of the pairs). Which of the two is A is drawn apart, per
    prompt (verdicts.shown_order)."""
    pairs = list(itertools.combinations(names, 2))
    random.Random(f"{seed}\npairs").shuffle(pairs)
    per_style = Counter(item["style"] for item in items)  # the styles in the order they first come
    start = dict(zip(per_style, itertools.accumulate(per_style.values(), initial=0), strict=False))
    taken: Counter = Counter()
    plan = []
    for item in items:
        plan.append(pairs[(start[item["style"]] + taken[item["style"]]) % len(pairs)])
        taken[item["style"]] += 1
    return plan


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
               blind: bool = True, seed: int = 0, login: bool = False) -> "gr.Blocks":
    """The rating page over two or more ENDPOINTS (by name, in the order given). Each item's pair comes from
    :func:`pair_plan`. Blind: the pair's replies are "A" and "B" in a per-prompt order drawn from SEED, and
    which endpoint wrote which is revealed only after the verdict; nothing the browser receives before then
    names an endpoint (names, URLs and model names stay in this process). Not blind: A is the pair's model
    named first, each labelled. LOGIN: the page is behind Gradio's login (launch(auth=...)); the rater is
    the logged-in user, and the name field is hidden."""
    import gradio as gr

    names = list(endpoints)
    if len(names) < 2:
        raise ValueError(f"a rating page needs two or more endpoints, got {names}")
    plan = pair_plan(items, names, seed)

    def order(index: int, item: dict) -> tuple[str, str]:
        """Which model is A and which B for the item at INDEX (a typed prompt past the session: a pair
        drawn from the prompt)."""
        if index < len(plan):
            pair = plan[index]
        else:
            first, second = random.Random(f"{seed}\n{item['prompt']}").sample(names, 2)
            pair = (first, second)
        return shown_order(seed, item["prompt"], item["style"], names=pair) if blind else pair

    def describe(name: str) -> str:
        return f"{name} (`{endpoints[name].model}` at {endpoints[name].base_url})"

    def who(typed: str | None, request: gr.Request | None) -> str:
        """The rater: the logged-in user behind a login, else the name typed (may be empty)."""
        if login:
            return (getattr(request, "username", None) or "").strip()
        return (typed or "").strip()

    def labels(index: int) -> tuple[dict, dict]:
        """The reply boxes, emptied; not blind, labelled with the models that will answer."""
        if blind or not items:
            return gr.update(value="", label="A"), gr.update(value="", label="B")
        shown = order(index, items[min(index, len(items) - 1)])
        return tuple(gr.update(value="", label=f"{side} · {name} · {endpoints[name].model}")
                     for side, name in zip(("A", "B"), shown, strict=True))

    def position(rater: str) -> tuple[int, str, str]:
        """The first item this rater has not judged, its progress line and its prompt."""
        done = judged(verdicts, seed, rater)
        index = next((i for i, item in enumerate(items) if (item["prompt"], item["style"]) not in done),
                     len(items))
        if not items:
            return 0, "No held-out prompts (--test): type a message.", ""
        if index == len(items):
            return index, f"All {len(items)} prompts judged: `make verdicts VERDICTS={verdicts}` counts.", ""
        item = items[index]
        style = f" · style **{item['style']}**" if item["style"] else ""
        return index, f"Prompt **{index + 1} of {len(items)}**{style}", item["prompt"]

    # The handlers' outputs, in the order of their `outputs=` below.
    def start(typed: str, request: gr.Request) -> tuple[dict, str, str, dict, dict]:
        index, progress, prompt = position(who(typed, request))
        return {"index": index}, progress, prompt, *labels(index)

    def answer(message: str, temperature: float, max_tokens: int,
               state: dict | None) -> Iterator[tuple[str, str, dict, str, str]]:
        message = (message or "").strip()
        if not message:
            raise gr.Error("Type a message first.")
        index = (state or {}).get("index", 0)
        item = items[index] if index < len(items) else {"prompt": message, "style": None}
        at = index  # where the pair comes from: the plan, or (past it) the prompt
        # an edited session prompt: a prompt of the rater's own, in the style asked, its pair drawn from it;
        # the session's prompt stays to be judged
        if message != (item["prompt"] or "").strip():
            item, at = {"prompt": message, "style": item["style"]}, len(plan)
        style = (item["style"] or STYLES[0]) if mode == "controllable" else None
        messages = [{"role": "system", "content": system_text(mode, style)},
                    {"role": "user", "content": message}]
        shown = order(at, item)
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
                     "replies": replies, "temperature": temperature, "max_tokens": int(max_tokens),
                     "done": not running}
            status = f"done in {time.monotonic() - begun:.1f} s" if not running else "streaming ..."
            yield replies[shown[0]], replies[shown[1]], state, status, ""  # the last reveal goes

    def judge(state: dict | None, typed: str, verdict: str,
              request: gr.Request | None) -> tuple[str, dict, str, str, dict, dict, str]:
        if not state or not state.get("done"):
            raise gr.Error("Send the prompt and wait for both replies first.")
        shown, replies, rater = state["shown"], state["replies"], who(typed, request)
        record_verdict(verdicts, verdict_record(
            verdict=verdict, prompt=state["message"], style=state["item"]["style"],
            system=state["messages"][0]["content"], replies={"A": replies[shown[0]], "B": replies[shown[1]]},
            endpoints={side: {"name": name, "api": endpoints[name].base_url, "model": endpoints[name].model}
                       for side, name in zip(("A", "B"), shown, strict=True)},
            settings={"temperature": state["temperature"], "max_tokens": state["max_tokens"]}, seed=seed,
            rater=rater or None, mode=mode, blind=blind))
        said = {"A": "A better", "B": "B better"}.get(verdict, verdict)
        reveal = (f"Recorded **{said}**. A was {describe(shown[0])}; B was {describe(shown[1])}. "
                  f"(`{verdicts}`)")
        index, progress, prompt = position(rater)
        return reveal, {"index": index}, progress, prompt, *labels(index), ""

    title = "Which reply is better? (blind)" if blind else f"style-tune: {' vs '.join(names)}"
    with gr.Blocks(title=title) as page:
        if blind:
            who_answers = ("Two models answer the same prompt" if len(names) == 2 else
                           f"{len(names)} models take part; two of them (each pair equally often) answer "
                           "each prompt")
            gr.Markdown(f"## {title}\n{who_answers} as **A** and **B**, in an order drawn per prompt; which "
                        "is which shows after your verdict. Keys: **a** A better, **b** B better, **t** tie, "
                        "**x** both bad.")
        else:
            gr.Markdown(f"## {title}\n" + " · ".join(map(describe, names)) + f" · mode: {mode}")
        with gr.Row():
            with gr.Column(scale=3):
                progress = gr.Markdown(elem_id="progress")
                message = gr.Textbox(label="prompt", lines=2, elem_id="message")
            with gr.Column(scale=1):
                rater = gr.Textbox(label="your name (optional: each rater has a session)", elem_id="rater",
                                   visible=not login)
                temperature = gr.Slider(0.0, 1.5, value=DEFAULT_TEMPERATURE, step=0.05, label="temperature",
                                        elem_id="temperature")
                max_tokens = gr.Slider(8, 1024, value=DEFAULT_MAX_TOKENS, step=8, label="max tokens",
                                       elem_id="max-tokens")
        send = gr.Button("Send to both", variant="primary", elem_id="send")
        with gr.Row():
            reply_a = gr.Textbox(label="A", lines=10, elem_id="reply-a")
            reply_b = gr.Textbox(label="B", lines=10, elem_id="reply-b")
        answer_status = gr.Markdown(elem_id="answer-status")
        state = gr.State(None)
        with gr.Row():
            buttons = {verdict: gr.Button(label, elem_id=f"verdict-{key}") for verdict, label, key in (
                ("A", "A better [a]", "A"), ("B", "B better [b]", "B"), ("tie", "tie [t]", "tie"),
                ("both bad", "both bad [x]", "both-bad"))}
        reveal = gr.Markdown(elem_id="reveal")

        page.load(start, inputs=rater, outputs=[state, progress, message, reply_a, reply_b])
        rater.blur(start, inputs=rater, outputs=[state, progress, message, reply_a, reply_b])
        inputs = [message, temperature, max_tokens, state]
        outputs = [reply_a, reply_b, state, answer_status, reveal]
        send.click(answer, inputs=inputs, outputs=outputs)
        message.submit(answer, inputs=inputs, outputs=outputs)
        for verdict, button in buttons.items():
            def clicked(s: dict | None, typed: str, request: gr.Request,
                        verdict: str = verdict) -> tuple[str, dict, str, str, dict, dict, str]:
                return judge(s, typed, verdict, request)

            button.click(clicked, inputs=[state, rater],
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
    """Start `python -m style_tune.deploy.chat serve` per model directory of {name: dir} on free ports (one
    server for names that give the same directory: the same model); return {name: URL}."""
    servers: dict[Path, Server] = {}
    for name, model_dir in models.items():
        if not (model_dir / "config.json").is_file():
            fail("webui", f"no {name} model at {model_dir} (no config.json): build it (make demo's models: "
                          "make demo [STAGE=dpo|orpo]), or name an OpenAI-compatible URL for it (COMPARE=, "
                          "BASE_API=, TUNED_API=)")
        if model_dir.resolve() in servers:
            continue
        port = free_port()
        style = ["--style", STYLES[0]] if args.mode == "controllable" else []
        command = [sys.executable, "-m", "style_tune.deploy.chat", "serve", str(model_dir),
                   "--mode", args.mode, *style, "--host", "127.0.0.1", "--port", str(port)]
        print(f"webui: starting the {name} model's server: {model_dir} on port {port} ...", flush=True)
        server = Server(command, port, ready_timeout=args.ready_timeout, log=args.logs / f"{name}-server.log")
        stack.callback(server.stop)
        servers[model_dir.resolve()] = server.launch()
    for model_dir, server in servers.items():
        server.wait()
        served = ", ".join(name for name, d in models.items() if d.resolve() == model_dir)
        print(f"webui: {served} server ready at {server.base_url} in {server.startup_s:.0f} s "
              f"(log: {server.log})", flush=True)
    return {name: servers[model_dir.resolve()].base_url for name, model_dir in models.items()}


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM like Ctrl-C: Gradio closes, the ExitStack stops the local servers


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    compared = candidates(args)
    logins = read_logins(args.auth_file, os.environ.get(AUTH_ENV, ""))
    check_exposure(args.host, logins)  # before any server starts
    signal.signal(signal.SIGTERM, _interrupt)
    with ExitStack() as stack:
        local = {c.name: Path(c.where) for c in compared if not c.is_api}
        urls = {**{c.name: c.where for c in compared if c.is_api}, **local_servers(stack, local, args)}
        endpoints = {c.name: Endpoint(c.name, urls[c.name], c.model) for c in compared}
        items = session_items(args.test, args.mode, args.n)
        page = build_page(endpoints, args.mode, items, args.verdicts, blind=args.blind, seed=args.seed,
                          login=bool(logins))
        print(f"webui: http://{args.host}:{args.port}  ({'blind, ' if args.blind else ''}{len(endpoints)} "
              f"models, {len(items)} prompts; {len(logins) or 'no'} login(s); verdicts: {args.verdicts}; "
              "Ctrl-C stops)", flush=True)
        page.queue(default_concurrency_limit=4).launch(
            server_name=args.host, server_port=args.port, prevent_thread_lock=False, show_error=True,
            share=False,  # never a public link (GRADIO_SHARE=true, a notebook): it would skip the login rule
            head=SHORTCUTS, auth=logins or None,
            auth_message="Log in with the name and password you were given: your verdicts are recorded "
                         "under your name." if logins else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
