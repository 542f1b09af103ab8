"""`make webui` in a real browser: Debian's chromium (/usr/bin/chromium) driven by Playwright.

Two models: the page starts its own CPU server (`python -m style_tune.deploy.chat serve`, the default when
no BASE_API/TUNED_API is given) for the tiny model built from the current code in this session, named
base and tuned (one directory: one server), in controllable mode: a blind rating session of 2 held-out
prompts per style. The browser finds the first prompt ready to send and nothing that names a model (page,
element ids, the config the browser gets), sends it, watches both replies stream in as A and B, gives a
verdict by key, sees the reveal right after it, gives the next one by button (the seed makes the two
prompts' orders differ), and after a reload continues at the third prompt. The verdict file holds both
records, each with the mapping the page used and the replies as the page showed them.

Three models, behind a login (`--auth-file`): COMPARE names two of them by the tiny model's directory
(one server the page starts) and the third by the URL of `make serve` on the same model (``#style-tune``).
A rater logs in through Gradio's login form and judges a whole session of 3 prompts per style: every pair
asked twice, once per style; before each verdict nothing in the page names a model, after it the reveal
names both; each record holds the pair, its A/B order (drawn from the seed), the URLs and the logged-in
rater. Another login starts at prompt 1 (a session per rater).
``WEBUI_SCREENSHOT=PATH`` saves a screenshot of the page there.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from style_tune.core.prompts import STYLE_SYSTEMS
from style_tune.deploy.serving import free_port, port_in_use

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
MAX_TOKENS = 24
PROMPTS = ["今天都没来道早安作业一大堆啊写死了", "周末下雨，哪儿也去不了"]
#: The session's items: the 2 prompts per style, the styles taking turns (style_tune/webui/app.py).
ITEMS = [{"prompt": p, "style": s} for p in PROMPTS for s in ("温柔", "毒舌")]


def order_of(seed: int, item: dict) -> tuple[str, str]:
    """Which model the page shows as A and which as B for this prompt (style_tune/eval/verdicts.py)."""
    from style_tune.eval.verdicts import shown_order

    return shown_order(seed, item["prompt"], item["style"])


def differing_seed() -> int:
    """A seed under which the first two prompts are shown in different orders (both mappings tested)."""
    return next(seed for seed in range(100) if order_of(seed, ITEMS[0]) != order_of(seed, ITEMS[1]))


def split_file(path: Path, prompts: list[str]) -> Path:
    rows = [{"conversation": [{"system": STYLE_SYSTEMS[style], "input": p, "output": "..."}]}
            for p in prompts for style in ("温柔", "毒舌")]
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


@contextlib.contextmanager
def running_page(tmp: Path, *args: str, env: dict[str, str] | None = None):
    """style_tune.webui.app with ARGS on a free port until the block ends; yields (url, its log)."""
    port = free_port()
    log = tmp / "webui.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "style_tune.webui.app", "--mode", "controllable", "--port", str(port),
             "--logs", str(tmp), *args],
            cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + 240
        while b"webui: http://" not in log.read_bytes() or not port_in_use(port):  # printed, then listening
            assert proc.poll() is None, f"webui exited {proc.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"webui did not start:\n{log.read_text()}"
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}", log
    finally:
        proc.terminate()  # the page stops the servers it started (its ExitStack)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            pytest.fail(f"webui did not stop within 60 s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def webui(fresh_tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """style_tune.webui.app on a free port, the tiny model as both base and tuned; yields (url, verdicts,
    the local servers' URLs)."""
    tmp = tmp_path_factory.mktemp("webui")
    verdicts = tmp / "verdicts.jsonl"
    model = str(fresh_tiny_model_dir)
    with running_page(tmp, "--base-model", model, "--tuned-model", model, "--test",
                      str(split_file(tmp / "test.json", PROMPTS)), "--verdicts", str(verdicts), "--n", "2",
                      "--seed", str(differing_seed())) as (url, log):
        servers = re.findall(r"http://127\.0\.0\.1:\d+/v1", log.read_text(encoding="utf-8"))
        yield url, verdicts, servers


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("no chromium: apt-get install -y chromium (.ci/run does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


def reply_text(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} textarea").input_value()


def as_shown(text: str) -> str:
    """A text as a browser textarea holds it (HTML normalizes CR and CRLF to LF)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def wait_for_text(page, elem_id: str, words: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while words not in (text := page.locator(f"#{elem_id}").inner_text()):
        assert time.monotonic() < deadline, f"#{elem_id} never said {words!r}: {text!r}"
        time.sleep(0.05)
    return text


def wait_for_message(page, prompt: str) -> None:
    page.wait_for_function("p => document.querySelector('#message textarea').value === p", arg=prompt)


def send_and_wait(page) -> tuple[str, str]:
    """Send the prompt; wait for both replies, checking they grew while they came in (streamed)."""
    max_tokens = page.locator("#max-tokens input[type=number]")
    max_tokens.fill(str(MAX_TOKENS))  # short: fast on a busy 2-core machine (the tiny model never stops)
    max_tokens.press("Enter")
    page.locator("#send").click()
    lengths: set[tuple[int, int]] = set()
    deadline = time.monotonic() + 120
    while "done in" not in page.locator("#answer-status").inner_text():
        assert time.monotonic() < deadline, "the replies did not finish within 120 s"
        lengths.add((len(reply_text(page, "reply-a")), len(reply_text(page, "reply-b"))))
        time.sleep(0.05)
    a, b = reply_text(page, "reply-a"), reply_text(page, "reply-b")
    assert a and b, "both replies appear"
    assert len({x for x, _ in lengths if x}) > 1 or len({y for _, y in lengths if y}) > 1, \
        f"the replies did not grow while they came in (not streamed): {sorted(lengths)}"
    return a, b


def assert_nothing_names_a_model(page, url: str, servers: list[str], names: tuple[str, ...] = ("tuned",)
                                 ) -> None:
    """Neither the page, its element ids nor the config the browser gets (with the page's login cookie, if
    any) names an endpoint: its name, URL, port or model name."""
    response = page.request.get(f"{url}/config")
    assert response.ok, response.status
    config = response.text()
    html = page.content()
    ids = page.eval_on_selector_all("[id]", "nodes => nodes.map(n => n.id).join(' ')")
    for received in (html, config, ids, page.locator("body").inner_text()):
        for secret in (*servers, *(s.removesuffix("/v1").rsplit(":", 1)[1] for s in servers), *names,
                       "style-tune"):
            assert secret not in received, f"{secret!r} shows before the verdict"


def test_a_blind_session_reveals_after_each_verdict_and_resumes(webui, browser) -> None:
    url, verdicts, servers = webui
    seed = differing_seed()
    assert len(servers) == 1  # base and tuned are one directory: one server
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url, wait_until="load")
    page.locator("#send").wait_for(state="visible", timeout=60_000)
    # the session opens on its first prompt, ready to send, and names no model
    wait_for_text(page, "progress", "Prompt 1 of 4")
    assert "温柔" in page.locator("#progress").inner_text()
    wait_for_message(page, ITEMS[0]["prompt"])
    assert_nothing_names_a_model(page, url, servers)

    shown = []
    for n, (item, how) in enumerate(zip(ITEMS[:2], ("key", "button"), strict=True)):
        a, b = send_and_wait(page)
        assert_nothing_names_a_model(page, url, servers)
        if os.environ.get("WEBUI_SCREENSHOT") and n == 0:
            page.screenshot(path=os.environ["WEBUI_SCREENSHOT"], full_page=True)
        if how == "key":
            page.locator("#progress").click()  # focus off the text fields: the keys are the verdicts
            page.keyboard.press("a")
        else:
            page.locator("#verdict-B").click()
        reveal = wait_for_text(page, "reveal", "Recorded")
        order = order_of(seed, item)
        assert f"A was {order[0]} (" in reveal and f"B was {order[1]} (" in reveal
        assert f"Prompt {n + 2} of 4" in wait_for_text(page, "progress", f"Prompt {n + 2} of 4")
        shown.append((order, a, b))
    assert shown[0][0] != shown[1][0], "the seed was picked so that the two orders differ"

    records = [json.loads(line) for line in verdicts.read_text(encoding="utf-8").splitlines()]
    assert [r["verdict"] for r in records] == ["A", "B"]
    for record, item, (order, a, b) in zip(records, ITEMS[:2], shown, strict=True):
        assert (record["prompt"], record["style"]) == (item["prompt"], item["style"])
        assert record["system"] == STYLE_SYSTEMS[item["style"]]
        assert [record["endpoints"][side]["name"] for side in ("A", "B")] == list(order)
        assert [record["endpoints"][side]["api"] for side in ("A", "B")] == servers * 2
        assert (as_shown(record["replies"]["A"]), as_shown(record["replies"]["B"])) == (a, b)
        assert record["settings"]["max_tokens"] == MAX_TOKENS and record["blind"] is True
        assert record["seed"] == seed and record["rater"] is None and record["time"]

    page.reload(wait_until="load")  # the verdict file is the state: the session goes on at prompt 3
    wait_for_text(page, "progress", "Prompt 3 of 4")
    wait_for_message(page, ITEMS[2]["prompt"])
    page.close()


#: The three-model session: 3 prompts per style, two models by directory and one by URL, two raters.
PROMPTS3 = [*PROMPTS, "明天要考试了，好紧张"]
ITEMS3 = [{"prompt": p, "style": s} for p in PROMPTS3 for s in ("温柔", "毒舌")]
NAMES = ("kestrel", "osprey", "harrier")  # words no page text holds: finding one means it was leaked
LOGINS = {"ann": "pw-ann-4711", "bob": "pw-bob-0815"}
SEED3 = 5
KEYS = {"a": "A", "b": "B", "t": "tie", "x": "both bad"}


@pytest.fixture(scope="module")
def webui_three(fresh_tiny_model_dir: Path, cpu_server, tmp_path_factory: pytest.TempPathFactory):
    """The page over three models behind a login: yields (url, verdicts, {name: URL}, the page's log)."""
    tmp = tmp_path_factory.mktemp("webui3")
    verdicts = tmp / "verdicts.jsonl"
    logins = tmp / "raters.txt"
    logins.write_text("# the raters\n" + "".join(f"{u}:{p}\n" for u, p in LOGINS.items()), encoding="utf-8")
    compare = (f"kestrel={fresh_tiny_model_dir} osprey={fresh_tiny_model_dir} "
               f"harrier={cpu_server.base_url}#style-tune")
    with running_page(tmp, "--compare", compare, "--test", str(split_file(tmp / "test.json", PROMPTS3)),
                      "--verdicts", str(verdicts), "--n", "3", "--seed", str(SEED3),
                      "--auth-file", str(logins)) as (url, log):
        local = re.findall(r"http://127\.0\.0\.1:\d+/v1", log.read_text(encoding="utf-8"))
        assert len(local) == 1, "kestrel and osprey are one directory: one server"
        yield url, verdicts, {"kestrel": local[0], "osprey": local[0], "harrier": cpu_server.base_url}, log


def log_in(browser, url: str, user: str):
    """A fresh browser context logged in as USER through Gradio's login form: (context, page)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(url, wait_until="load")
    page.locator("input[type=text]").first.fill(user)
    page.locator("input[type=password]").fill(LOGINS[user])
    page.get_by_role("button", name="Login").click()
    page.locator("#send").wait_for(state="visible", timeout=60_000)
    return context, page


def test_three_models_behind_a_login_each_pair_equally_often(webui_three, browser) -> None:
    import urllib.error
    import urllib.request

    from style_tune.eval.verdicts import shown_order

    url, verdicts, apis, log = webui_three
    with pytest.raises(urllib.error.HTTPError) as refused:  # nothing without a login
        urllib.request.urlopen(f"{url}/config", timeout=30)
    assert refused.value.code == 401
    context, page = log_in(browser, url, "ann")
    wait_for_text(page, "progress", "Prompt 1 of 6")
    assert not page.locator("#rater").is_visible()  # the rater is the login

    servers = sorted(set(apis.values()))
    seen = []
    for n, (item, key) in enumerate(zip(ITEMS3, "abtxab", strict=True)):
        wait_for_message(page, item["prompt"])
        a, b = send_and_wait(page)
        assert_nothing_names_a_model(page, url, servers, NAMES)
        page.locator("#progress").click()  # focus off the text fields: the keys are the verdicts
        page.keyboard.press(key)
        reveal = wait_for_text(page, "reveal", "Recorded")
        shown = re.search(r"A was (\w+) \(.*; B was (\w+) \(", reveal).groups()
        assert set(shown) <= set(NAMES) and shown[0] != shown[1], reveal
        seen.append((shown, key, a, b))
        wait_for_text(page, "progress", f"Prompt {n + 2} of 6" if n < 5 else "All 6 prompts judged")
    context.close()

    records = [json.loads(line) for line in verdicts.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 6
    for record, item, (shown, key, a, b) in zip(records, ITEMS3, seen, strict=True):
        assert (record["prompt"], record["style"], record["verdict"]) == (item["prompt"], item["style"],
                                                                         KEYS[key])
        assert tuple(record["endpoints"][side]["name"] for side in ("A", "B")) == shown
        pair = tuple(sorted(shown, key=NAMES.index))  # the pair, in COMPARE's order; A/B drawn from the seed
        assert shown == shown_order(SEED3, item["prompt"], item["style"], names=pair)
        for side in ("A", "B"):
            endpoint = record["endpoints"][side]
            assert endpoint["api"] == apis[endpoint["name"]] and endpoint["model"] == "style-tune"
        assert (as_shown(record["replies"]["A"]), as_shown(record["replies"]["B"])) == (a, b)
        assert record["rater"] == "ann" and record["seed"] == SEED3 and record["blind"] is True
    # every pair twice, once per style
    asked = Counter((frozenset(shown), item["style"]) for (shown, *_), item in zip(seen, ITEMS3, strict=True))
    assert asked == Counter({(frozenset(p), s): 1 for p in itertools.combinations(NAMES, 2)
                             for s in ("温柔", "毒舌")})
    assert not [p for p in LOGINS.values() if p in log.read_text(encoding="utf-8")], "a password was logged"

    context, page = log_in(browser, url, "bob")  # another rater: a session of their own
    wait_for_text(page, "progress", "Prompt 1 of 6")
    wait_for_message(page, ITEMS3[0]["prompt"])
    context.close()
