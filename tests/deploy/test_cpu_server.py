"""`make serve` without a GPU (style_tune.deploy.cpu_server: transformers generate, batched, behind an
OpenAI layer), asked with the official `openai` client, on the tiny model built from the current code in
this session.

- The prompt the engine renders is the training prompt, for every shared case (tests/chat_cases.py),
  label and controllable mode, with and without a client system message: the server's own checks and
  chat-template call give the reference token ids.
- A live server (`make serve`, controllable mode, STYLE=温柔; the ``cpu_server`` fixture): plain and
  streamed completions, 8 concurrent requests, the system text choosing the style, and bad requests
  (unknown model, malformed JSON, empty messages, over-long input) each answered with a 4xx and a
  message while the server stays up; `make` stops it cleanly (no process left, port freed).
- Concurrent requests share a batch and each gets what it asked for: the reply it gets alone, its own
  max_tokens.
- A server started with a key (`make serve API_KEY=...`): 401 without it or with a wrong one, 413 for
  a body over the limit.
- A server with small limits (`make serve CHAT_ARGS="--max-batch 2 --max-waiting 1 --timeout 8"`): a burst
  gets 503s with Retry-After, a request past its timeout a 504 (streamed: an error event), a client that
  disconnects stops its generation (the server's CPU time stops), one that never reads stalls nobody; the
  server answers after each.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
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
from style_tune.deploy.cpu_server import RequestError, check_request, render
from style_tune.deploy.serving import SERVED_MODEL_NAME, find_process, port_in_use, process_group, serve_model

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Greedy, short: replies are deterministic, and the tiny model writes random tokens up to the limit.
GREEDY = dict(temperature=0, max_tokens=12, seed=0)


# --- the prompt: rendered by the server's own code, in process ----------------------------------------


@pytest.fixture(scope="module")
def served_tokenizer(fresh_tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(fresh_tiny_model_dir)  # what the server loads


@pytest.mark.parametrize("with_system", [True, False], ids=["client-system", "default-system"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_the_engine_renders_the_training_prompt(case: Case, with_system: bool, served_tokenizer) -> None:
    for k in range(1, len(case.turns) + 1):
        body = {"model": SERVED_MODEL_NAME, "messages": case.prompt_messages(k, with_system=with_system)}
        request = check_request(body, default_system=system_text(case.mode, case.style))
        ids = render(served_tokenizer, request["messages"])  # what the server hands generate
        assert ids == served_tokenizer(case.prompt(k), add_special_tokens=False)["input_ids"]
        assert served_tokenizer.decode(ids) == case.prompt(k)


def test_without_the_layer_a_controllable_prompt_would_be_wrong(served_tokenizer) -> None:
    case = next(case for case in CASES if case.mode == "controllable")
    bare = served_tokenizer.decode(render(served_tokenizer, case.prompt_messages(1, with_system=False)))
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


def health(server) -> dict:
    with urllib.request.urlopen(server.base_url.removesuffix("/v1") + "/health", timeout=10) as response:
        return json.load(response)


def test_concurrent_requests_share_a_batch_and_keep_their_own_settings(client: OpenAI, cpu_server) -> None:
    users = [f"第{i}个问题：周末去哪儿玩？" for i in range(8)]
    lengths = [4 + 2 * i for i in range(8)]

    def completion(user_and_length: tuple[str, int]):
        user, n = user_and_length
        return client.chat.completions.create(model=SERVED_MODEL_NAME, max_tokens=n, temperature=0, seed=0,
                                              messages=[{"role": "user", "content": user}])

    alone = [completion(pair) for pair in zip(users, lengths, strict=True)]
    before = health(cpu_server)
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(completion, zip(users, lengths, strict=True)))
    after = health(cpu_server)
    assert after["rows"] - before["rows"] == 8
    assert after["batches"] - before["batches"] <= 2, "8 requests sent at once were not batched"
    for one, batched, n in zip(alone, together, lengths, strict=True):
        assert batched.choices[0].message.content == one.choices[0].message.content  # greedy: same reply
        assert batched.usage.completion_tokens == one.usage.completion_tokens <= n
        if batched.choices[0].finish_reason == "length":
            assert batched.usage.completion_tokens == n


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
        assert len(process_group(pid)) >= 2, "make and the server it started"
    assert not port_in_use(port)
    assert secret not in (tmp_path / "server.log").read_text(encoding="utf-8", errors="replace")
    time.sleep(0.5)
    assert process_group(pid) == []  # no orphan


# --- a server with small limits -------------------------------------------------------------------

LIMITS = "--max-batch 2 --max-waiting 1 --timeout 8"
#: More tokens than the tiny model writes in the timeout (and within its context): it runs until stopped.
ENDLESS = 30_000


@pytest.fixture(scope="module")
def limited_server(fresh_tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    server = serve_model(fresh_tiny_model_dir, mode="label", make_args=[f"CHAT_ARGS={LIMITS}"],
                         log=tmp_path_factory.mktemp("limited_server") / "server.log")
    with server:
        yield server


def request_body(max_tokens: int, stream: bool = False) -> bytes:
    return json.dumps({"model": SERVED_MODEL_NAME, "messages": [{"role": "user", "content": "讲个长故事"}],
                       "max_tokens": max_tokens, "temperature": 0, "stream": stream}).encode()


def server_cpu_s(server) -> float:
    """CPU seconds the server process (the Python child of `make serve`) has used."""
    pid = find_process(server.process.pid, b"style_tune.deploy.cpu_server")
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def still_answers(server) -> None:
    client = OpenAI(base_url=server.base_url, api_key="none", max_retries=0, timeout=60)
    reply = client.chat.completions.create(model=SERVED_MODEL_NAME, max_tokens=4,
                                           messages=[{"role": "user", "content": "还在吗？"}])
    assert reply.choices[0].message.content


def test_a_burst_beyond_the_limits_gets_503_with_retry_after(limited_server) -> None:
    def send(_: int) -> tuple[int, dict, str | None]:
        request = urllib.request.Request(f"{limited_server.base_url}/chat/completions", data=request_body(16),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.load(response), None
        except urllib.error.HTTPError as err:
            return err.code, json.load(err), err.headers.get("Retry-After")

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(send, range(8)))
    statuses = sorted(status for status, _, _ in results)
    assert statuses.count(200) >= 3 and statuses.count(503) >= 1, statuses  # 2 running + 1 waiting
    assert set(statuses) == {200, 503}
    for status, body, retry_after in results:
        if status == 503:
            assert retry_after is not None and int(retry_after) >= 1
            assert body["error"]["type"] == "server_busy" and "retry after" in body["error"]["message"]
        else:
            assert body["usage"]["completion_tokens"] > 0
    # the official client waits Retry-After and retries: with enough retries, a burst is answered
    retrying = OpenAI(base_url=limited_server.base_url, api_key="none", timeout=60, max_retries=10)
    with ThreadPoolExecutor(5) as pool:
        replies = list(pool.map(lambda _: retrying.chat.completions.create(
            model=SERVED_MODEL_NAME, messages=[{"role": "user", "content": "你好"}], max_tokens=16),
            range(5)))
    assert all(reply.choices[0].message.content for reply in replies)
    still_answers(limited_server)


def test_a_request_past_its_timeout_gets_504(limited_server) -> None:
    """Plain (504) and streamed (an error event after the 200) at once: the 2 places of the server."""
    streamed = OpenAI(base_url=limited_server.base_url, api_key="none", max_retries=0, timeout=60)

    def stream() -> None:
        for _ in streamed.chat.completions.create(model=SERVED_MODEL_NAME, max_tokens=ENDLESS, stream=True,
                                                  messages=[{"role": "user", "content": "讲个长故事"}]):
            pass

    before, start = health(limited_server).get("timed_out", 0), time.monotonic()
    with ThreadPoolExecutor(1) as pool:
        streaming = pool.submit(stream)
        status, body = post_raw(limited_server.base_url, request_body(ENDLESS))
        with pytest.raises(openai.APIError, match="timeout"):
            streaming.result()
    assert status == 504 and body["error"]["type"] == "timeout_error"
    assert "timeout (8 s)" in body["error"]["message"]
    assert 7.5 < time.monotonic() - start < 40
    assert health(limited_server).get("timed_out", 0) == before + 2
    still_answers(limited_server)


def test_a_client_that_disconnects_stops_its_generation(limited_server) -> None:
    before = health(limited_server)
    connection = http.client.HTTPConnection("127.0.0.1", limited_server.port, timeout=30)
    connection.request("POST", "/v1/chat/completions", body=request_body(ENDLESS, stream=True),
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200 and response.readline().startswith(b"data: ")
    cpu, wall = server_cpu_s(limited_server), time.monotonic()
    time.sleep(1.0)
    generating = (server_cpu_s(limited_server) - cpu) / (time.monotonic() - wall)
    connection.close()  # gone mid-stream
    deadline = time.monotonic() + 3
    while health(limited_server)["running"] and time.monotonic() < deadline:
        time.sleep(0.05)
    after = health(limited_server)
    assert after["running"] == 0 and after["cancelled"] == before.get("cancelled", 0) + 1
    assert after.get("timed_out", 0) == before.get("timed_out", 0)  # stopped by the disconnect
    cpu, wall = server_cpu_s(limited_server), time.monotonic()
    time.sleep(1.0)
    idle = (server_cpu_s(limited_server) - cpu) / (time.monotonic() - wall)
    print(f"server CPU while generating: {generating:.2f} s/s; after the client left: {idle:.2f} s/s")
    assert generating > 0.5 and idle < 0.1
    still_answers(limited_server)


def test_a_client_that_never_reads_stalls_nobody(limited_server) -> None:
    rows = health(limited_server).get("rows", 0)
    silent = socket.create_connection(("127.0.0.1", limited_server.port))
    silent.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    body = request_body(300, stream=True)
    silent.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    try:
        deadline = time.monotonic() + 20  # its generation ends although nobody reads it
        while time.monotonic() < deadline:
            load = health(limited_server)
            if load.get("rows", 0) > rows and not load["running"]:
                break
            time.sleep(0.1)
        assert load.get("rows", 0) > rows and load["running"] == 0 and load["waiting"] == 0
        still_answers(limited_server)
    finally:
        silent.close()
    still_answers(limited_server)


def test_the_soak_benchmark_counts_every_answer(fresh_tiny_model_dir: Path, tmp_path: Path) -> None:
    """`make bench-serve BENCH_SERVE_ARGS=--soak`, short: every good request answered, every bad one its
    4xx, the server's memory and the latencies reported (committed figures: benchmarks/serve_soak_cpu.md)."""
    from benchmarks import bench_serve

    out = tmp_path / "soak"
    assert bench_serve.main(["--model", str(fresh_tiny_model_dir), "--soak", "--requests", "30",
                             "--concurrency", "4", "--max-tokens", "4", "--out", str(out)]) == 0
    soak = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))["soak"]
    assert soak["unexpected"] == 0 and soak["statuses"]["good"] == {"200": 27}
    assert soak["statuses"]["malformed JSON"] == {"400": 1}
    assert soak["statuses"]["body over 1 MiB"] == {"413": 1}
    assert soak["statuses"]["wrong key"] == {"401": 1}
    assert soak["rss_kib_end"] > 0 and 0 < soak["latency_p50_s"] <= soak["latency_p95_s"]
    assert soak["tokens"] > 0 and soak["server"]["rows"] >= 27
    assert "| wrong key | 1 × 401 |" in out.with_suffix(".md").read_text(encoding="utf-8")
