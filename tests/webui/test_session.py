"""The rating session's pieces, in process (no server, no browser): which prompts a session holds, which
pair of models each prompt goes to, the order drawn per prompt, the resume point read from the verdict
file, the logins and the refusal to listen beyond loopback without one, and what the page config names in
blind and non-blind mode (stand-in endpoints: only their names, URLs and model names are read)."""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from style_tune.core.prompts import STYLE_SYSTEMS, STYLES, system_text
from style_tune.eval.verdicts import record, shown_order
from style_tune.webui.app import (
    Endpoint,
    build_page,
    check_exposure,
    judged,
    pair_plan,
    read_logins,
    session_items,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

ENDPOINTS = {"base": SimpleNamespace(model="base-model-x", base_url="http://127.0.0.1:1111/v1"),
             "tuned": SimpleNamespace(model="tuned-model-y", base_url="http://127.0.0.1:2222/v1")}


def split_file(tmp_path: Path, rows: list[tuple[str, str]]) -> Path:
    path = tmp_path / "test.json"
    path.write_text(json.dumps([{"conversation": [{"system": system, "input": prompt, "output": "."}]}
                                for prompt, system in rows], ensure_ascii=False), encoding="utf-8")
    return path


def test_a_session_takes_n_prompts_per_style_in_turns(tmp_path: Path) -> None:
    rows = [(f"p{i}", STYLE_SYSTEMS[style]) for i in range(4) for style in ("毒舌", "温柔")]
    items = session_items(split_file(tmp_path, rows), "controllable", 3)
    assert items == [{"prompt": f"p{i}", "style": style} for i in range(3) for style in ("温柔", "毒舌")]
    label = session_items(split_file(tmp_path, [("q1", system_text("label")), ("q1", system_text("label")),
                                                ("q2", system_text("label"))]), "label", 5)
    assert label == [{"prompt": "q1", "style": None}, {"prompt": "q2", "style": None}]
    assert session_items(tmp_path / "missing.json", "label", 5) == []


def test_the_order_is_drawn_per_prompt_and_the_same_on_a_reload() -> None:
    items = [{"prompt": f"p{i}", "style": "温柔"} for i in range(200)]
    orders = [shown_order(7, item["prompt"], item["style"]) for item in items]
    assert orders == [shown_order(7, item["prompt"], item["style"]) for item in items]  # a reload: the same
    tuned_first = sum(order == ("tuned", "base") for order in orders)
    assert 70 < tuned_first < 130 and set(orders) == {("tuned", "base"), ("base", "tuned")}
    assert orders != [shown_order(8, item["prompt"], item["style"]) for item in items]  # another seed


def test_the_verdict_file_is_the_session_state(tmp_path: Path) -> None:
    verdicts = tmp_path / "v.jsonl"

    def line(prompt: str, seed: int, rater: str | None, judge: str | None = None) -> dict:
        return record(verdict="A", prompt=prompt, style="温柔", system=STYLE_SYSTEMS["温柔"],
                      replies={"A": "a", "B": "b"}, endpoints={"A": {"name": "base"}, "B": {"name": "tuned"}},
                      settings={}, seed=seed, rater=rater, judge=judge)

    lines = [line("p1", 7, None), line("p2", 7, "ann"), line("p3", 8, None),
             line("p4", 7, None, judge="qwen-max")]  # the pairwise judge's verdict is no rater's
    verdicts.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
                        + "not json\n" + json.dumps({"seed": 7, "prompt": "p5", "style": "温柔"}) + "\n",
                        encoding="utf-8")
    assert judged(verdicts, 7, "") == {("p1", "温柔")}
    assert judged(verdicts, 7, "ann") == {("p2", "温柔")}
    assert judged(verdicts, 8, "") == {("p3", "温柔")}
    assert judged(tmp_path / "none.jsonl", 7, "") == set()


def test_blind_config_names_no_endpoint_and_demo_mode_does(tmp_path: Path) -> None:
    items = [{"prompt": "p1", "style": "温柔"}]
    for blind in (True, False):
        page = build_page(ENDPOINTS, "controllable", items, tmp_path / "v.jsonl", blind=blind, seed=0)
        config = json.dumps(page.get_config_file(), ensure_ascii=False, default=repr)
        secrets = ("127.0.0.1:1111", "127.0.0.1:2222", "base-model-x", "tuned-model-y")
        if blind:
            assert not [s for s in secrets if s in config] and "tuned" not in config
        else:
            assert all(s in config for s in secrets)


def test_every_pair_is_asked_equally_often_and_about_each_style_alike() -> None:
    for names, per_style in ((["m1", "m2", "m3"], 6), (["m1", "m2", "m3", "m4"], 6), (["m1", "m2", "m3"], 7),
                             (["base", "sft", "dpo", "orpo"], 20)):  # 40 prompts, 6 pairs: 7 or 6 each
        items = [{"prompt": f"p{i}", "style": style} for i in range(per_style) for style in STYLES]
        plan = pair_plan(items, names, seed=3)
        pairs = list(itertools.combinations(names, 2))
        assert set(plan) == set(pairs)  # each pair keeps the names' order within it (A/B is drawn apart)
        for style in STYLES:
            counts = Counter(pair for pair, item in zip(plan, items, strict=True) if item["style"] == style)
            assert max(counts.values()) - min(counts.values()) <= (0 if per_style % len(pairs) == 0 else 1)
            assert sum(counts.values()) == per_style
        overall = Counter(plan)  # and in all: each style goes on where the one before stopped
        assert max(overall.values()) - min(overall.values()) <= 1, overall
        assert plan == pair_plan(items, names, seed=3)  # a reload, another rater: the same plan
        assert plan != pair_plan(items, names, seed=4) or len(pairs) == 1
    # two models: always that pair, so the order is the one drawn before there were more
    items = [{"prompt": f"p{i}", "style": None} for i in range(5)]
    assert pair_plan(items, ["base", "tuned"], seed=9) == [("base", "tuned")] * 5


def test_logins_come_from_a_file_and_the_environment_and_are_never_shown(tmp_path: Path, capsys) -> None:
    logins = tmp_path / "raters.txt"
    logins.write_text("# raters\nann:pw-ann\n\n  bob:p:w:b  \n", encoding="utf-8")
    assert read_logins(logins, "cy:pw-cy") == [("cy", "pw-cy"), ("ann", "pw-ann"), ("bob", "p:w:b")]
    assert read_logins(None, "") == []
    bad_file = tmp_path / "bad.txt"
    for text, inline, problem in (
            (None, "ann:secret-1 bob", "WEBUI_AUTH: a login is user:password"),
            (None, ":secret-1", "WEBUI_AUTH: a login is user:password"),
            (None, "ann:secret-1 ann:secret-2", "WEBUI_AUTH: user 'ann' is given twice"),
            ("carol:secret one\n", "", "bad.txt:1: a login is user:password"),
            ("# nobody\n", "", "holds no login"),
            ("", "", "No such file")):
        bad_file.unlink(missing_ok=True)
        if text:
            bad_file.write_text(text, encoding="utf-8")
        with pytest.raises(SystemExit):
            read_logins(None if text is None else bad_file, inline)
        error = capsys.readouterr().err
        assert error.startswith("webui: error: ") and error.count("\n") == 1 and problem in error, error
        assert "secret" not in error


def test_only_loopback_goes_without_a_login(capsys) -> None:
    for host in ("127.0.0.1", "localhost", "::1"):
        check_exposure(host, [])
    check_exposure("0.0.0.0", [("ann", "pw")])
    for host in ("0.0.0.0", "192.168.1.5", "::"):
        with pytest.raises(SystemExit):
            check_exposure(host, [])
        assert f"listening on {host} without a login" in capsys.readouterr().err


def test_make_webui_refuses_any_other_address_without_a_login_in_one_line() -> None:
    """Before any server starts (the model directories do not even exist): one line, and make's exit 2;
    a bad login stops it the same way, without showing the password."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS", "WEBUI_AUTH"))}
    models = ["WEBUI_BASE=/nonexistent/a", "WEBUI_TUNED=/nonexistent/b", "WEBUI_HOST=0.0.0.0"]
    for extra, problem in (([], "listening on 0.0.0.0 without a login"),
                           (["WEBUI_AUTH=ann"], "WEBUI_AUTH: a login is user:password")):
        proc = subprocess.run(["make", "-s", "webui", *models, *extra], cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("webui: error:")]
        assert proc.returncode == 2 and len(errors) == 1 and problem in errors[0], proc.stderr
        assert "starting" not in proc.stdout and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "style_tune.webui.app", "--host", "0.0.0.0", "--base-model",
                           "/nonexistent/a"], cwd=REPO_ROOT, env={**env, "WEBUI_AUTH": "ann:pw bob:"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "bob" not in proc.stderr, proc.stderr


def test_a_blind_page_over_three_models_names_none_of_them(tmp_path: Path) -> None:
    endpoints = {**ENDPOINTS, "third": SimpleNamespace(model="third-model-z", base_url="http://127.0.0.1:3333/v1")}
    items = [{"prompt": f"p{i}", "style": style} for i in range(3) for style in STYLES]
    for login in (False, True):
        page = build_page(endpoints, "controllable", items, tmp_path / "v.jsonl", seed=0, login=login)
        config = json.dumps(page.get_config_file(), ensure_ascii=False, default=repr)
        secrets = ("1111", "2222", "3333", "base-model-x", "tuned-model-y", "third-model-z", "tuned", "third")
        assert not [s for s in secrets if s in config]
        assert "3 models take part" in config
    with pytest.raises(ValueError, match="two or more endpoints"):
        build_page({"base": ENDPOINTS["base"]}, "label", items, tmp_path / "v.jsonl")


def test_a_failing_endpoint_names_no_model_or_address_in_the_page(capsys: pytest.CaptureFixture[str]) -> None:
    """The reply box of a model whose server fails says so without its address or name (that would unblind
    the pair); the terminal gets both. A real openai client against a port nothing listens on."""
    import queue

    endpoint = refused("secret-sft")
    url = endpoint.base_url
    out: queue.Queue = queue.Queue()
    endpoint.stream([{"role": "user", "content": "你好"}], 0.0, 8, out)
    (name, shown), done = out.get_nowait(), out.get_nowait()
    assert name == "secret-sft" and done == ("secret-sft", None)
    assert "no reply" in shown and not [s for s in ("secret", "127.0.0.1", url) if s in shown], shown
    assert "secret-sft" in capsys.readouterr().err


def refused(name: str) -> Endpoint:
    """An endpoint whose server refuses every connection (a free port, closed again): a real openai client,
    failing. (Endpoint's __init__ would ask the server for its models first.)"""
    from openai import OpenAI

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    endpoint = Endpoint.__new__(Endpoint)
    endpoint.name, endpoint.base_url, endpoint.model = name, url, f"{name}-model"
    endpoint.client = OpenAI(base_url=url, api_key="none", max_retries=0, timeout=10)
    return endpoint


def test_an_edited_prompt_is_the_raters_own_and_a_verdict_waits_for_both_replies(tmp_path: Path) -> None:
    """A session prompt the rater edits is sent as typed, recorded as typed, with a pair drawn from it (not
    the plan's, which keeps the balance); the session's prompt stays to be judged. The verdict buttons
    refuse until both replies have ended."""
    import gradio as gr

    names = ["m1", "m2", "m3"]
    items = [{"prompt": f"p{i}", "style": style} for i in range(2) for style in STYLES]
    verdicts = tmp_path / "v.jsonl"
    page = build_page({n: refused(n) for n in names}, "controllable", items, verdicts, seed=1)
    handlers = {f.fn.__name__: f.fn for f in page.fns.values() if f.fn is not None}  # buttons: clicked

    def judge(state: dict, verdict: str) -> tuple:
        return handlers["clicked"](state, "", None, verdict=verdict)

    states = [out[2] for out in handlers["answer"]("p0 改过了", 0.0, 8, {"index": 0})]
    assert [st["done"] for st in states][-1] is True and not states[0]["done"]
    last = states[-1]
    assert last["item"] == {"prompt": "p0 改过了", "style": STYLES[0]} and last["index"] == 0
    assert last["messages"][1]["content"] == "p0 改过了"
    with pytest.raises(gr.Error, match="wait for both replies"):
        judge(states[0], "tie")
    reveal, state, progress, prompt, *_ = judge(last, "tie")
    (line,) = verdicts.read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["prompt"] == "p0 改过了" and state == {"index": 0} and prompt == "p0"
    states = [out[2] for out in handlers["answer"]("p0", 0.0, 8, {"index": 0})]  # as the session asks it
    planned = pair_plan(items, names, seed=1)[0]
    assert states[-1]["shown"] in {planned, planned[::-1]}
    _, state, _, prompt, *_ = judge(states[-1], "both bad")
    assert state == {"index": 1} and prompt == "p0" and items[1]["prompt"] == "p0"
