"""`make webui` in a real browser: Debian's chromium (/usr/bin/chromium) driven by Playwright.

The page starts its own CPU servers (`python -m style_tune.deploy.chat serve`, the default when no
BASE_API/TUNED_API is given) for the tiny model built from the current code in this session, in
controllable mode (the style picker shows). The browser picks a held-out prompt, sends it, watches
both replies stream in, records a verdict and finds it in the JSONL file, with both replies as the
page showed them.
``WEBUI_SCREENSHOT=PATH`` saves a screenshot of the page there (docs/webui.png was made so).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from style_tune.core.prompts import STYLE_SYSTEMS
from style_tune.deploy.serving import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
MAX_TOKENS = 24
PROMPTS = ["今天都没来道早安作业一大堆啊写死了", "周末下雨，哪儿也去不了"]


@pytest.fixture(scope="module")
def webui(fresh_tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """style_tune.webui.app on a free port, the tiny model as both base and tuned; yields (url, verdicts)."""
    tmp = tmp_path_factory.mktemp("webui")
    test_json = tmp / "test.json"
    rows = [{"conversation": [{"system": STYLE_SYSTEMS["毒舌"], "input": p, "output": "..."}]}
            for p in PROMPTS]
    test_json.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    verdicts = tmp / "verdicts.jsonl"
    port = free_port()
    log = tmp / "webui.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "style_tune.webui.app", "--mode", "controllable",
             "--base-model", str(fresh_tiny_model_dir), "--tuned-model", str(fresh_tiny_model_dir),
             "--test", str(test_json), "--verdicts", str(verdicts), "--port", str(port),
             "--logs", str(tmp)],
            cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while b"webui: http://" not in log.read_bytes():
            assert proc.poll() is None, f"webui exited {proc.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"webui did not start:\n{log.read_text()}"
            time.sleep(0.5)
        yield url, verdicts
    finally:
        proc.terminate()  # the page stops the servers it started (its ExitStack)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            pytest.fail(f"webui did not stop within 60 s:\n{log.read_text()}")


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


def test_pick_send_stream_and_record_a_verdict(webui, browser) -> None:
    url, verdicts = webui
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url, wait_until="load")
    page.locator("#send").wait_for(state="visible", timeout=60_000)
    assert page.locator("#style").is_visible()  # controllable mode: the style picker shows
    page.get_by_label("毒舌").check()

    # pick a held-out prompt from the dropdown: it fills the message box
    page.locator("#held-out input").click()
    page.get_by_role("option", name=PROMPTS[1]).click()
    page.wait_for_function("p => document.querySelector('#message textarea').value === p", arg=PROMPTS[1])

    # a short reply keeps the test fast on a busy 2-core machine (the tiny model never stops by itself)
    max_tokens = page.locator("#max-tokens input[type=number]")
    max_tokens.fill(str(MAX_TOKENS))
    max_tokens.press("Enter")
    page.locator("#send").click()
    lengths: set[tuple[int, int]] = set()
    deadline = time.monotonic() + 120
    while "done in" not in page.locator("#answer-status").inner_text():
        assert time.monotonic() < deadline, "the replies did not finish within 120 s"
        lengths.add((len(reply_text(page, "base-reply")), len(reply_text(page, "tuned-reply"))))
        time.sleep(0.05)
    base, tuned = reply_text(page, "base-reply"), reply_text(page, "tuned-reply")
    assert base and tuned, "both replies appear"
    assert len({b for b, _ in lengths if b}) > 1 or len({t for _, t in lengths if t}) > 1, \
        f"the replies did not grow while they came in (not streamed): {sorted(lengths)}"
    if os.environ.get("WEBUI_SCREENSHOT"):
        page.screenshot(path=os.environ["WEBUI_SCREENSHOT"], full_page=True)

    page.locator("#verdict-tuned-better").click()
    page.wait_for_function("() => document.querySelector('#verdict-status').innerText.includes('Recorded')")
    records = [json.loads(line) for line in verdicts.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 1
    record = records[0]
    assert record["verdict"] == "tuned better"
    assert record["prompt"] == PROMPTS[1] and record["system"] == STYLE_SYSTEMS["毒舌"]
    assert (as_shown(record["base_reply"]), as_shown(record["tuned_reply"])) == (base, tuned)
    assert record["max_tokens"] == MAX_TOKENS and record["temperature"] >= 0
    assert record["tuned"]["model"] == "style-tune"
