"""`make serve` without a CUDA GPU: transformers' own server (`transformers serve`), behind a thin
OpenAI-protocol layer that makes it answer like lmdeploy's api_server does on a GPU.

    python -m style_tune.deploy.cpu_server MODEL --mode label|controllable [--style S] [--host H] [--port P]
                                    [--max-model-len N] [--threads N]

The engine is transformers 4.57's ``transformers.commands.serving.ServeCommand``: it loads the model,
renders the messages with the model's own chat template (Qwen2.5's: ChatML), maps the request's
sampling fields to ``generate`` and streams the reply (``generate_chat_completion``). Measured as
shipped (docs/serving.md), it streams even for ``"stream": false`` (the official client then fails),
lists hub model names instead of the served one, ignores the requested model name, answers an empty
``messages`` list with a 500 and drops the connection on an over-long input, and reuses one KV cache
across requests that follow each other (wrong under concurrency). This layer, and only it, fixes
that:

- ``GET /v1/models`` lists one model, ``style-tune``; any other requested name gets a 404;
- requests are checked before the engine sees them: malformed JSON, a body that is not an object,
  an empty or ill-formed ``messages`` list, a prompt plus ``max_tokens`` over ``--max-model-len``
  tokens each get a 400 (OpenAI's error object, with a message saying what to fix);
- a conversation without a system message gets the mode's system text (style_tune.core.prompts; in
  controllable mode ``--style``'s), exactly what lmdeploy's ``meta_instruction`` does on a GPU, so
  the engine renders the training prompt (tests/deploy/test_cpu_server.py);
- ``"stream": false`` collects the engine's stream into one ``chat.completion`` with ``usage``;
  streamed chunks carry the served model name and end with ``data: [DONE]``;
- each request starts from an empty KV cache (the engine's cross-request cache reuse is switched off);
- with API keys (``$STYLE_TUNE_API_KEYS``, one a line: `make serve API_KEY=...`), every ``/v1`` request
  must send one as ``Authorization: Bearer KEY`` or gets a 401 with OpenAI's error object (code
  ``invalid_api_key``), which never repeats the key; ``/health`` stays open. Without a key the server
  listens on loopback only (style_tune.deploy.serving.check_exposure);
- a request body over ``--max-body-bytes`` (1 MiB) gets a 413 before it is read further.

Everything else (loading, templating, sampling, decoding) is the engine's code.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations (Request) at run time.
import argparse
import hmac
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from style_tune.core import defaults
from style_tune.core.prompts import MODES, STYLES, resolve_style, system_text
from style_tune.deploy.serving import API_KEYS_ENV, SERVED_MODEL_NAME, check_exposure

ROLES = ("system", "user", "assistant")
#: The largest request body read: a chat request near the context limit is a few hundred KB of text.
MAX_BODY_BYTES = 2**20
#: Request fields the engine cannot honour on this path (tools, stop strings, logprobs, ...): refused.
UNSUPPORTED = ("stop", "tools", "tool_choice", "functions", "logprobs", "top_logprobs", "response_format",
               "logit_bias")


class RequestError(Exception):
    """A bad request: HTTP status, OpenAI error type and a message that says what to fix."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param,
                          "code": self.status}}


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


def parse_sse(lines: Iterator[str]) -> Iterator[dict]:
    """The JSON payloads of the engine's ``data: {...}`` events; an error event raises RuntimeError."""
    for event in lines:
        for line in event.splitlines():
            if not line.startswith("data: "):
                continue
            payload = json.loads(line[len("data: "):])
            if "error" in payload:
                raise RuntimeError(f"the engine failed: {payload['error']}")
            yield payload


def unauthorized(authorization: str | None, keys: list[str]) -> dict | None:
    """OpenAI's 401 error object for a request whose ``Authorization`` header carries none of KEYS (None
    when it carries one). The message never repeats what was sent."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and token:
        if any(hmac.compare_digest(token.strip().encode(), key.encode()) for key in keys):
            return None
        message = "Incorrect API key provided: send one of the keys the server was started with"
    else:
        message = ("You didn't provide an API key: send it as 'Authorization: Bearer KEY' (the openai client "
                   "reads OPENAI_API_KEY)")
    return {"error": {"message": message, "type": "invalid_request_error", "param": None,
                      "code": "invalid_api_key"}}


def create_app(model_dir: Path, mode: str, style: str | None, max_model_len: int | None,
               keys: list[str] | None = None, max_body_bytes: int = MAX_BODY_BYTES):
    import torch  # noqa: F401  (the engine's dependency; imported first so a broken env fails here)
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse
    from transformers.commands.serving import ServeArguments, ServeCommand

    default_system = system_text(mode, style)
    # model_timeout: transformers unloads an idle model after it; the server keeps its one model loaded.
    args = ServeArguments(force_model=str(model_dir), device="cpu", dtype="float32", model_timeout=10**9,
                          log_level="warning")
    engine = ServeCommand(args)
    engine.is_continuation = lambda request: False  # the engine's shared KV cache is unsafe across requests
    model_id = engine.process_model_name(str(model_dir))
    model, tokenizer = engine.load_model_and_processor(model_id)  # loaded before the port opens
    limit = max_model_len or int(model.config.max_position_embeddings)
    default_max_tokens = int(model.generation_config.max_new_tokens or 1024)
    created = int(time.time())

    def prompt_tokens(messages: list[dict[str, str]]) -> int:
        return len(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))

    def prepare(body: object) -> tuple[dict, int]:
        request = check_request(body, default_system=default_system)
        n_prompt = prompt_tokens(request["messages"])
        max_tokens = request.get("max_tokens", default_max_tokens)
        if n_prompt + max_tokens > limit:
            raise RequestError(400, f"this model's maximum context length is {limit} tokens; the messages "
                                    f"take {n_prompt} and max_tokens asks for {max_tokens} more: shorten the "
                                    "input or lower max_tokens", param="messages")
        request["max_tokens"] = max_tokens
        return request, n_prompt

    def completion_tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    def run(request: dict) -> Iterator[dict]:
        """The engine's chunks for one request (its generate runs in a thread of its own)."""
        engine_request = {k: v for k, v in request.items() if k not in ("stream", "include_usage")}
        engine_request["request_id"] = request["id"]
        yield from parse_sse(engine.generate_chat_completion(engine_request))

    app = FastAPI(title="style-tune CPU server (transformers serve)")

    @app.middleware("http")
    async def check_key(http_request: Request, call_next):
        if keys and http_request.url.path.startswith("/v1"):
            refusal = unauthorized(http_request.headers.get("authorization"), keys)
            if refusal is not None:
                return JSONResponse(refusal, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return await call_next(http_request)

    @app.exception_handler(RequestError)
    async def request_error(_: Request, err: RequestError):
        return JSONResponse(err.body(), status_code=err.status)

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": SERVED_MODEL_NAME, "object": "model", "created": created,
                                            "owned_by": "style-tune", "max_model_len": limit}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(http_request: Request):
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
        request, n_prompt = prepare(body)
        request["id"] = f"chatcmpl-{uuid.uuid4().hex}"
        if request["stream"]:
            return StreamingResponse(stream(request, n_prompt), media_type="text/event-stream")
        from starlette.concurrency import run_in_threadpool

        return JSONResponse(await run_in_threadpool(collect, request, n_prompt))

    def finish(text: str, max_tokens: int) -> tuple[str, int]:
        """finish_reason and usage.completion_tokens: the engine streams text, not token ids, so the reply is
        tokenized again (a reply the model wrote re-tokenizes to its own tokens; random text may not)."""
        n = completion_tokens(text)
        return ("length" if n >= max_tokens else "stop"), min(n, max_tokens)

    def stream(request: dict, n_prompt: int) -> Iterator[str]:
        text = ""
        base = {"id": request["id"], "object": "chat.completion.chunk", "created": int(time.time()),
                "model": SERVED_MODEL_NAME}
        try:
            for chunk in run(request):
                choice = chunk["choices"][0]
                delta = choice.get("delta", {})
                if choice.get("finish_reason"):
                    reason, n = finish(text, request["max_tokens"])
                    yield _event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})
                    if request["include_usage"]:
                        yield _event({**base, "choices": [], "usage": _usage(n_prompt, n)})
                    continue
                text += delta.get("content") or ""
                yield _event({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        except Exception as err:  # mid-stream the status is sent already: the error goes in the stream
            yield _event({"error": {"message": str(err), "type": "server_error", "code": 500}})
        yield "data: [DONE]\n\n"

    def collect(request: dict, n_prompt: int) -> dict:
        text = "".join(chunk["choices"][0].get("delta", {}).get("content") or "" for chunk in run(request))
        reason, n = finish(text, request["max_tokens"])
        return {"id": request["id"], "object": "chat.completion", "created": int(time.time()),
                "model": SERVED_MODEL_NAME,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": reason}],
                "usage": _usage(n_prompt, n)}

    return app


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
    args = parser.parse_args(argv)
    keys = [key.strip() for key in os.environ.get(API_KEYS_ENV, "").split("\n") if key.strip()]
    check_exposure("cpu_server", args.host, keys)
    style = resolve_style(args.style) if args.style else None
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    import uvicorn

    app = create_app(args.model, args.mode, style, args.max_model_len, keys, args.max_body_bytes)
    print(f"cpu_server: {args.model} as {SERVED_MODEL_NAME!r} on http://{args.host}:{args.port}/v1 "
          f"(mode {args.mode}{', style ' + style if style else ''}; "
          f"{f'{len(keys)} API key(s) required' if keys else 'no API key'})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
