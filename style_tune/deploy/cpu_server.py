"""`make serve` without a CUDA GPU: an OpenAI-protocol server that answers like lmdeploy's api_server does
on a GPU, with transformers ``generate`` as its engine, batching concurrent requests
(style_tune.deploy.batcher).

    python -m style_tune.deploy.cpu_server MODEL --mode label|controllable [--style S] [--host H] [--port P]
        [--max-model-len N] [--threads N] [--max-batch 8] [--max-waiting 32] [--timeout 300]
        [--max-body-bytes 1048576]

The model and tokenizer load with transformers' Auto classes (float32, no remote code); the prompt is the
tokenizer's own chat template (Qwen2.5's: ChatML), the text every other front end renders
(tests/deploy/test_cpu_server.py). ``transformers serve``, the first engine here, was dropped: as shipped
(4.57) it streams even for ``"stream": false``, reuses one KV cache across requests, runs concurrent
requests one beside the other in threads (8 clients got 111.8 tokens/s against one client's 123.8), and
its continuous batching forces greedy decoding and drops the logits processors (docs/serving.md).

- ``GET /v1/models`` lists one model, ``style-tune``; any other requested name gets a 404;
- requests are checked before the engine sees them: malformed JSON, a body that is not an object,
  an empty or ill-formed ``messages`` list, a prompt plus ``max_tokens`` over ``--max-model-len``
  tokens each get a 400 (OpenAI's error object, with a message saying what to fix);
- a conversation without a system message gets the mode's system text (style_tune.core.prompts; in
  controllable mode ``--style``'s), exactly what lmdeploy's ``meta_instruction`` does on a GPU, so
  the engine renders the training prompt;
- ``"stream": false`` gets one ``chat.completion`` with ``usage``; streamed chunks end with
  ``data: [DONE]``;
- with API keys (``$STYLE_TUNE_API_KEYS``, one a line: `make serve API_KEY=...`), every ``/v1`` request
  must send one as ``Authorization: Bearer KEY`` or gets a 401 with OpenAI's error object (code
  ``invalid_api_key``), which never repeats the key; ``/health`` stays open. Without a key the server
  listens on loopback only (style_tune.deploy.serving.check_exposure);
- limits, each answered while the server goes on: a body over ``--max-body-bytes`` gets a 413 before it
  is read further; with ``--max-batch`` generations running and ``--max-waiting`` more waiting, a new
  request gets a 503 with ``Retry-After`` (the openai client waits that long and retries); a request
  still unanswered ``--timeout`` seconds after it arrived gets a 504 (streamed: an error event); a
  client that disconnects stops its generation at the next token; one that never reads its stream
  holds only its own connection.

``GET /health`` reports the engine's load: generations running and waiting, batches run, requests
cancelled, timed out and refused.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations (Request) at run time;
# the types of packages this module imports when it runs are named in quotes.
import argparse
import hmac
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from style_tune.core import defaults
from style_tune.core.prompts import MODES, STYLES, resolve_style, system_text
from style_tune.deploy.serving import SERVED_MODEL_NAME, api_keys_from_env, check_exposure

if TYPE_CHECKING:
    from fastapi import FastAPI
    from transformers import PreTrainedTokenizerBase

ROLES = ("system", "user", "assistant")
#: The largest request body read: a chat request near the context limit is a few hundred KB of text.
MAX_BODY_BYTES = 2**20
#: Generations run together, requests waiting for a place, seconds a request may take: --max-batch,
#: --max-waiting, --timeout. 8 rows cost a 2-core CPU little more per token than 1 (serve_bench_cpu.md).
MAX_BATCH, MAX_WAITING, TIMEOUT_S = 8, 32, 300.0
#: Request fields the engine cannot honour on this path (tools, stop strings, logprobs, ...): refused.
UNSUPPORTED = ("stop", "tools", "tool_choice", "functions", "logprobs", "top_logprobs", "response_format",
               "logit_bias")


class RequestError(Exception):
    """A bad request: HTTP status, OpenAI error type and a message that says what to fix."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 param: str | None = None, code: str | int | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param
        self.code, self.headers = code or status, headers

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param,
                          "code": self.code}}


def check_request(body: object, *, default_system: str) -> dict:
    """The engine request for an OpenAI chat request body, or RequestError (standard library only)."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    model = body.get("model")
    if model != SERVED_MODEL_NAME:
        raise RequestError(404, f"model {model!r} does not exist: this server serves {SERVED_MODEL_NAME!r} "
                                "(GET /v1/models)", kind="not_found_error", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "'messages' must be a non-empty list of {role, content} objects",
                           param="messages")
    checked = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise RequestError(400, f"messages[{i}] must be an object with a role of {', '.join(ROLES)}",
                               param="messages")
        content = message.get("content")
        if isinstance(content, list):  # the OpenAI content-part form: text parts only
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                       for p in content):
                raise RequestError(400, f"messages[{i}].content: only text parts are supported",
                                   param="messages")
            content = "".join(part["text"] for part in content)
        if not isinstance(content, str):
            raise RequestError(400, f"messages[{i}].content must be a string", param="messages")
        if message["role"] == "system" and i != 0:
            raise RequestError(400, f"messages[{i}]: a system message may only come first", param="messages")
        checked.append({"role": message["role"], "content": content})
    if checked[-1]["role"] != "user":
        raise RequestError(400, "the last message must be the user's", param="messages")
    if checked[0]["role"] != "system":
        checked.insert(0, {"role": "system", "content": default_system})
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise RequestError(400, f"'{name}' must be a positive integer", param=name)
    if body.get("n", 1) != 1:
        raise RequestError(400, "only n=1 is supported", param="n")
    for name in UNSUPPORTED:
        if body.get(name):  # generate would fail in its thread and leave the stream hanging
            raise RequestError(400, f"'{name}' is not supported by the CPU server", param=name)
    for name in ("frequency_penalty", "presence_penalty"):
        if body.get(name):
            raise RequestError(400, f"'{name}' is not supported by the CPU server (only 0)", param=name)
    for name, low, high in (("temperature", 0.0, 2.0), ("top_p", 0.0, 1.0)):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not low <= value <= high or (name == "top_p" and value == 0)):
            raise RequestError(400, f"'{name}' must be a number in {'(' if name == 'top_p' else '['}{low}, "
                                    f"{high}]", param=name)
    if body.get("seed") is not None and (isinstance(body["seed"], bool) or not isinstance(body["seed"], int)):
        raise RequestError(400, "'seed' must be an integer", param="seed")
    request = {key: body[key] for key in ("temperature", "top_p", "seed") if body.get(key) is not None}
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens is not None:
        request["max_tokens"] = max_tokens
    return {"model": SERVED_MODEL_NAME, "messages": checked, "stream": bool(body.get("stream")),
            "include_usage": bool((body.get("stream_options") or {}).get("include_usage")), **request}


def unauthorized(authorization: str | None, keys: list[str]) -> str | None:
    """Why a request whose ``Authorization`` header carries none of KEYS is refused (None when it carries
    one): the message of the server's 401. It never repeats what was sent."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and token:
        if any(hmac.compare_digest(token.strip().encode(), key.encode()) for key in keys):
            return None
        return "Incorrect API key provided: send one of the keys the server was started with"
    return ("You didn't provide an API key: send it as 'Authorization: Bearer KEY' (the openai client "
            "reads OPENAI_API_KEY)")


def create_app(model_dir: Path, mode: str, style: str | None, max_model_len: int | None,
               keys: list[str] | None = None, max_body_bytes: int = MAX_BODY_BYTES, *,
               max_batch: int = MAX_BATCH, max_waiting: int = MAX_WAITING, timeout_s: float = TIMEOUT_S
               ) -> "FastAPI":
    import asyncio

    import torch
    from fastapi import Depends, FastAPI, Request
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from style_tune.deploy.batcher import Batcher, Busy, Job

    default_system = system_text(mode, style)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()  # before the port
    # opens: a client never sees a server that is still loading
    batcher = Batcher(model, tokenizer, max_batch=max_batch, max_waiting=max_waiting,
                      timeout_s=timeout_s).start()
    limit = max_model_len or int(model.config.max_position_embeddings)
    default_max_tokens = int(model.generation_config.max_new_tokens or 1024)
    created = int(time.time())

    def prepare(body: object) -> tuple[dict, list[int]]:
        request = check_request(body, default_system=default_system)
        prompt_ids = render(tokenizer, request["messages"])
        max_tokens = request.get("max_tokens", default_max_tokens)
        if len(prompt_ids) + max_tokens > limit:
            raise RequestError(400, f"this model's maximum context length is {limit} tokens; the messages "
                                    f"take {len(prompt_ids)} and max_tokens asks for {max_tokens} more: "
                                    "shorten the input or lower max_tokens", param="messages")
        request["max_tokens"] = max_tokens
        return request, prompt_ids

    def submit(request: dict, prompt_ids: list[int]) -> tuple[Job, asyncio.Queue]:
        loop, items = asyncio.get_running_loop(), asyncio.Queue[tuple]()
        sampling = batcher.sampling(request.get("temperature"), request.get("top_p"), request.get("seed"))
        job = Job(prompt_ids, request["max_tokens"], sampling,
                  deliver=lambda item: loop.call_soon_threadsafe(items.put_nowait, item))
        try:
            batcher.submit(job)
        except Busy as busy:
            raise RequestError(503, f"the server is busy ({max_batch} generations running, {max_waiting} "
                                    f"waiting): retry after {busy.retry_after_s} s", kind="server_busy",
                               headers={"Retry-After": str(busy.retry_after_s)}) from None
        return job, items

    app = FastAPI(title="style-tune CPU server (transformers generate, batched)")

    def check_key(http_request: Request) -> None:
        if keys:
            if refusal := unauthorized(http_request.headers.get("authorization"), keys):
                raise RequestError(401, refusal, code="invalid_api_key",
                                   headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(RequestError)
    async def request_error(_: Request, err: RequestError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    # response_model=None: the dicts go out as they are, not validated against a model made from `dict`
    @app.get("/health", response_model=None)
    def health() -> dict:
        return {"status": "ok", **batcher.load()}

    @app.get("/v1/models", dependencies=[Depends(check_key)], response_model=None)
    def models() -> dict:
        return {"object": "list", "data": [{"id": SERVED_MODEL_NAME, "object": "model", "created": created,
                                            "owned_by": "style-tune", "max_model_len": limit}]}

    @app.post("/v1/chat/completions", dependencies=[Depends(check_key)])
    async def chat_completions(http_request: Request) -> Response:
        too_big = RequestError(413, f"the request body is over {max_body_bytes} bytes: shorten the messages",
                               param="messages")
        declared = http_request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_body_bytes:
            raise too_big
        raw = bytearray()
        async for part in http_request.stream():  # a body sent without a length is counted as it comes
            raw += part
            if len(raw) > max_body_bytes:
                raise too_big
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as err:
            raise RequestError(400, f"the request body is not valid JSON: {err}") from None
        request, prompt_ids = prepare(body)
        job, items = submit(request, prompt_ids)
        request["id"] = f"chatcmpl-{uuid.uuid4().hex}"
        if request["stream"]:
            return StreamingResponse(stream(request, len(prompt_ids), job, items),
                                     media_type="text/event-stream")
        return JSONResponse(await collect(request, len(prompt_ids), job, items, http_request))

    async def stream(request: dict, n_prompt: int, job: Job, items: asyncio.Queue) -> AsyncIterator[str]:
        base = {"id": request["id"], "object": "chat.completion.chunk", "created": int(time.time()),
                "model": SERVED_MODEL_NAME}
        try:
            yield _event({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                               "finish_reason": None}]})
            while True:
                kind, *rest = await items.get()
                if kind == "text":
                    yield _event({**base, "choices": [{"index": 0, "delta": {"content": rest[0]},
                                                       "finish_reason": None}]})
                    continue
                if kind == "end":
                    yield _event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": rest[0]}]})
                    if request["include_usage"]:
                        yield _event({**base, "choices": [], "usage": _usage(n_prompt, rest[1])})
                else:  # mid-stream the status is sent already: the error goes in the stream
                    yield _event({"error": failure(rest[0], rest[1]).body()["error"]})
                break
            yield "data: [DONE]\n\n"
        finally:  # the client is gone (Starlette cancels the stream) or the reply is complete
            job.cancel()

    async def collect(request: dict, n_prompt: int, job: Job, items: asyncio.Queue,
                      http_request: Request) -> dict:
        text = []
        while True:
            try:
                kind, *rest = await asyncio.wait_for(items.get(), timeout=1.0)
            except TimeoutError:
                if await http_request.is_disconnected():
                    job.cancel()
                    return {}
                continue
            if kind == "text":
                text.append(rest[0])
            elif kind == "end":
                return {"id": request["id"], "object": "chat.completion", "created": int(time.time()),
                        "model": SERVED_MODEL_NAME,
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(text)},
                                     "finish_reason": rest[0]}],
                        "usage": _usage(n_prompt, rest[1])}
            else:
                raise failure(rest[0], rest[1])

    return app


def render(tokenizer: "PreTrainedTokenizerBase", messages: list[dict[str, str]]) -> list[int]:
    """The prompt's token ids: the tokenizer's own chat template, as every other front end renders it."""
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))


def failure(kind: str, message: str) -> RequestError:
    """The error for an engine's failure: 504 when the request ran past the server's timeout, else 500."""
    if kind == "timeout":
        return RequestError(504, message + ": ask for fewer tokens, or retry later", kind="timeout_error")
    return RequestError(500, message, kind="server_error")


def _event(payload: dict) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def _usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m style_tune.deploy.cpu_server",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="the merged model directory")
    parser.add_argument("--mode", default=defaults.MODE, choices=MODES)
    parser.add_argument("--style", default=None,
                        help=f"controllable mode: the default style, one of {STYLES}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=23333)
    parser.add_argument("--max-model-len", type=int, default=None,
                        help="longest prompt + reply in tokens (default: max_position_embeddings)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES,
                        help=f"largest request body (default {MAX_BODY_BYTES}); larger: 413")
    parser.add_argument("--max-batch", type=int, default=MAX_BATCH,
                        help=f"generations run together (default {MAX_BATCH}): more is more throughput, "
                             "slower replies each")
    parser.add_argument("--max-waiting", type=int, default=MAX_WAITING,
                        help=f"requests that may wait for a place (default {MAX_WAITING}); more: 503")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S,
                        help=f"seconds a request may take from arrival to its last token (default "
                             f"{TIMEOUT_S:g}); longer: 504")
    args = parser.parse_args(argv)
    keys = api_keys_from_env()
    check_exposure("cpu_server", args.host, keys)
    style = resolve_style(args.style) if args.style else None
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    import uvicorn

    for name in ("max_body_bytes", "max_batch", "max_waiting", "timeout"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    app = create_app(args.model, args.mode, style, args.max_model_len, keys, args.max_body_bytes,
                     max_batch=args.max_batch, max_waiting=args.max_waiting, timeout_s=args.timeout)
    print(f"cpu_server: {args.model} as {SERVED_MODEL_NAME!r} on http://{args.host}:{args.port}/v1 "
          f"(mode {args.mode}{', style ' + style if style else ''}; "
          f"{f'{len(keys)} API key(s) required' if keys else 'no API key'})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
