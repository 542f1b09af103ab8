"""`make serve` without a GPU (style_tune.deploy.cpu_server: transformers' server behind a thin OpenAI layer),
asked with the official `openai` client, on the tiny model built from the current code in this session.

- The prompt the engine renders is the training prompt, for every shared case (tests/chat_cases.py),
  label and controllable mode, with and without a client system message: the engine's own message
  parsing and chat-template call, after the layer's checks, give the reference text and token ids.
- A live server (`make serve`, controllable mode, STYLE=温柔; the ``cpu_server`` fixture): plain and
  streamed completions, 8 concurrent requests, the system text choosing the style, and bad requests
  (unknown model, malformed JSON, empty messages, over-long input) each answered with a 4xx and a
  message while the server stays up; `make` stops it cleanly (no process left, port freed).
- A server started with a key (`make serve API_KEY=...`): 401 without it or with a wrong one, 413 for
  a body over the limit.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
from chat_cases import CASE_IDS, CASES, Case
from openai import OpenAI

from style_tune.core.prompts import QWEN_DEFAULT_SYSTEM, STYLE_SYSTEMS, system_text
from style_tune.deploy.cpu_server import RequestError, check_request
from style_tune.deploy.serving import SERVED_MODEL_NAME, port_in_use, serve_model

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Greedy, short: replies are deterministic, and the tiny model writes random tokens up to the limit.
GREEDY = dict(temperature=0, max_tokens=12, seed=0)


# --- the prompt: rendered by the engine's own code, in process ------------------------------------


@pytest.fixture(scope="module")
def engine_processor(fresh_tiny_model_dir: Path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(fresh_tiny_model_dir)  # what transformers serve loads


def engine_render(processor, messages: list[dict[str, str]], *, tokenize: bool):
    """What ServeCommand.generate_chat_completion feeds generate for these messages (transformers 4.57)."""
    from transformers.commands.serving import Modality, ServeCommand

    inputs = ServeCommand.get_processor_inputs_from_inbound_messages(messages, Modality.LLM)
    rendered = processor.apply_chat_template(inputs, add_generation_prompt=True, tools=None,
                                             tokenize=tokenize, return_dict=tokenize)
    return rendered["input_ids"] if tokenize else rendered


@pytest.mark.parametrize("with_system", [True, False], ids=["client-system", "default-system"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_the_engine_renders_the_training_prompt(case: Case, with_system: bool, engine_processor) -> None:
    for k in range(1, len(case.turns) + 1):
        body = {"model": SERVED_MODEL_NAME, "messages": case.prompt_messages(k, with_system=with_system)}
        request = check_request(body, default_system=system_text(case.mode, case.style))
        assert engine_render(engine_processor, request["messages"], tokenize=False) == case.prompt(k)
        ids = engine_render(engine_processor, request["messages"], tokenize=True)
        assert ids == engine_processor(case.prompt(k), add_special_tokens=False)["input_ids"]


def test_without_the_layer_a_controllable_prompt_would_be_wrong(engine_processor) -> None:
    case = next(case for case in CASES if case.mode == "controllable")
    bare = engine_render(engine_processor, case.prompt_messages(1, with_system=False), tokenize=False)
    assert bare != case.prompt(1) and QWEN_DEFAULT_SYSTEM in bare  # Qwen's template inserts its own text


@pytest.mark.parametrize(("body", "status", "words"), [
    ([], 400, "JSON object"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}, 404, "does not exist"),
    ({"model": SERVED_MODEL_NAME, "messages": []}, 400, "non-empty list"),
    ({"model": SERVED_MODEL_NAME, "messages": [{"role": "bot", "content": "hi"}]}, 400, "role"),
    ({"model": SERVED_MODEL_NAME, "messages": [{"role": "user", "content": 3}]}, 400, "string"),
    ({"model": SERVED_MODEL_NAME, "messages": [{"role": "assistant", "content": "hi"}]}, 400, "user's"),
    ({"model": SERVED_MODEL_NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, 400,
     "positive"),
    ({"model": SERVED_MODEL_NAME, "messages": [{"role": "user", "content": "hi"}], "temperature": -1}, 400,
     "temperature"),
    ({"model": SERVED_MODEL_NAME, "messages": [{"role": "user", "content": "hi"}], "stop": ["\n"]}, 400,
     "not supported"),
])
def test_bad_requests_are_refused_with_a_reason(body: object, status: int, words: str) -> None:
    with pytest.raises(RequestError) as err:
        check_request(body, default_system="x")
    assert err.value.status == status and words in err.value.message


# --- the live server ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(cpu_server) -> OpenAI:
    return OpenAI(base_url=cpu_server.base_url, api_key="none", max_retries=0, timeout=120)


def ask(client: OpenAI, user: str, system: str | None = None, **kwargs) -> str:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": user})
    reply = client.chat.completions.create(model=SERVED_MODEL_NAME, messages=messages, **{**GREEDY, **kwargs})
    return reply.choices[0].message.content


def test_models_lists_the_served_name(client: OpenAI, cpu_server) -> None:
    assert [model.id for model in client.models.list().data] == [SERVED_MODEL_NAME]
    assert cpu_server.startup_s < cpu_server.ready_timeout


@pytest.fixture(scope="module")
def served_tokenizer(fresh_tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(fresh_tiny_model_dir)


def test_plain_completion(client: OpenAI, served_tokenizer) -> None:
    # a hand-written controllable 温柔 case (tests/chat_cases.py): the server's STYLE is 温柔
    case = next(case for case in CASES if case.mode == "controllable" and case.style == "温柔")
    reply = client.chat.completions.create(model=SERVED_MODEL_NAME, messages=[
        {"role": "user", "content": case.turns[0][0]}], **GREEDY)
    assert reply.object == "chat.completion" and reply.model == SERVED_MODEL_NAME
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert 0 < reply.usage.completion_tokens <= GREEDY["max_tokens"]
    # the prompt the server counted is the training prompt with 温柔's system text (the server's STYLE)
    reference_ids = served_tokenizer(case.prompt(1), add_special_tokens=False)["input_ids"]
    assert reply.usage.prompt_tokens == len(reference_ids)


def test_streamed_completion_equals_the_plain_one(client: OpenAI) -> None:
    plain = ask(client, "明天要考试了")
    chunks = list(client.chat.completions.create(
        model=SERVED_MODEL_NAME, messages=[{"role": "user", "content": "明天要考试了"}], stream=True,
        stream_options={"include_usage": True}, **GREEDY))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1, "the reply came in one piece: not streamed"
    assert "".join(pieces) == plain
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")


def test_the_system_text_selects_the_style(client: OpenAI) -> None:
    user = "iPhone 16 又涨价了，要不要买"
    default = ask(client, user)  # no system message: the server's STYLE (温柔)
    gentle = ask(client, user, STYLE_SYSTEMS["温柔"])
    snarky = ask(client, user, STYLE_SYSTEMS["毒舌"])
    assert default == gentle
    assert snarky != gentle  # a different system text is a different prompt (greedy, same seed)


def test_eight_concurrent_requests_are_all_answered(client: OpenAI) -> None:
    users = [f"第{i}个问题：周末去哪儿玩？" for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda user: ask(client, user, max_tokens=8), users))
    assert len(replies) == 8 and all(replies)


def post_raw(base_url: str, data: bytes | object, path: str = "/chat/completions", method: str = "POST",
             **headers: str) -> tuple[int, dict]:
    """Raw HTTP, for what the client cannot send (no key at all; a body without a length: an iterable)."""
    request = urllib.request.Request(f"{base_url}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def test_bad_requests_get_a_4xx_with_a_message_and_the_server_stays_up(client: OpenAI, cpu_server) -> None:
    user = [{"role": "user", "content": "你好"}]
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="gpt-4o", messages=user, max_tokens=4)
    with pytest.raises(openai.BadRequestError, match="non-empty list"):
        client.chat.completions.create(model=SERVED_MODEL_NAME, messages=[], max_tokens=4)
    with pytest.raises(openai.BadRequestError, match="maximum context length"):
        client.chat.completions.create(model=SERVED_MODEL_NAME, max_tokens=4,
                                       messages=[{"role": "user", "content": "你好" * 40_000}])
    status, body = post_raw(cpu_server.base_url, b'{"model": "style-tune", "messages": [')
    assert status == 400 and "not valid JSON" in body["error"]["message"]
    assert ask(client, "还在吗？", max_tokens=4)  # still answering


def test_make_serve_with_a_key_stops_cleanly(fresh_tiny_model_dir: Path, tmp_path: Path) -> None:
    """`make serve API_KEY=...`: the official client with the key is answered, with a wrong one gets
    OpenAI's 401 (no key repeated), a request without any key too (raw HTTP); /health stays open; a body
    over 1 MiB gets a 413, with or without a declared length; the server answers after each; the key is
    nowhere in its log; `make` stops it cleanly (no process left, port freed)."""
    secret = "sk-style-tune-test-0123456789"
    server = serve_model(fresh_tiny_model_dir, mode="label", log=tmp_path / "server.log", api_key=secret)
    with server:
        pid, port, url = server.process.pid, server.port, server.base_url
        keyed = OpenAI(base_url=url, api_key=secret, max_retries=0)
        assert ask(keyed, "你好", max_tokens=4)
        for wrong in ("sk-wrong", secret + "x", secret[:-1]):
            with pytest.raises(openai.AuthenticationError) as info:
                ask(OpenAI(base_url=url, api_key=wrong, max_retries=0), "你好", max_tokens=4)
            assert info.value.status_code == 401 and info.value.body["code"] == "invalid_api_key"
            assert "Incorrect API key" in info.value.message
            assert wrong not in json.dumps(info.value.body) and secret not in json.dumps(info.value.body)
        hello = json.dumps({"model": SERVED_MODEL_NAME, "messages": [{"role": "user", "content": "你好"}],
                            "max_tokens": 4}).encode()
        for path, method, data in (("/chat/completions", "POST", hello), ("/models", "GET", None)):
            status, body = post_raw(url, data, path, method)
            assert status == 401 and "didn't provide an API key" in body["error"]["message"]
        status, _ = post_raw(url.removesuffix("/v1"), None, "/health", "GET")
        assert status == 200
        big = json.dumps({"model": SERVED_MODEL_NAME, "messages": [
            {"role": "user", "content": "你" * (2**20 // 3 + 10)}]}).encode()
        for data in (big, iter([big[:2**19], big[2**19:]])):  # declared length; chunked, no length
            status, body = post_raw(url, data, Authorization=f"Bearer {secret}")
            assert status == 413 and "over 1048576 bytes" in body["error"]["message"]
        assert ask(keyed, "还在吗？", max_tokens=4)  # still answering
        group = [p for p in os.listdir("/proc") if p.isdigit() and _pgid(int(p)) == pid]
        assert len(group) >= 2, "make and the server it started"
    assert not port_in_use(port)
    assert secret not in (tmp_path / "server.log").read_text(encoding="utf-8", errors="replace")
    time.sleep(0.5)
    assert [p for p in os.listdir("/proc") if p.isdigit() and _pgid(int(p)) == pid] == []  # no orphan


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None
