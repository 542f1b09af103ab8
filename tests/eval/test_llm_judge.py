"""The optional LLM judge (style_tune/eval/llm_judge.py): its parser on hand-written judgements, its
prompt file, and its plumbing against the real CPU server (`make serve` on the tiny model, the
``cpu_server`` fixture) through the official openai client. The tiny model's answers are junk, which
must count as unparsable, never as a score. Faults (429, 5xx, a slow answer, a rejected key) are
injected by a small proxy in front of that server. The report's judge section is tested end to end
in test_eval_make_targets.py (``make judge`` on a real eval-style run)."""

from __future__ import annotations

import json
import re
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from style_tune.core.prompts import STYLE_SYSTEMS
from style_tune.deploy.serving import SERVED_MODEL_NAME
from style_tune.eval.llm_judge import (
    METRICS,
    JudgeError,
    JudgePrompt,
    judge_replies,
    judge_run,
    make_client,
    parse_judgement,
    report_section,
    summarise,
    verdict_cell,
)

GOOD = {"style": 4, "relevance": 5, "fluency": 3, "unsafe": False}

# ---------------------------------------------------------------------------------- the parser

WELL_FORMED = {
    "bare object": ('{"style": 4, "relevance": 5, "fluency": 3, "unsafe": false}', GOOD),
    "with the reason the rubric asks for":
        ('{"reason": "温暖体贴，切题。", "style": 4, "relevance": 5, "fluency": 3, "unsafe": false}', GOOD),
    "in a code fence": ('```json\n{"style": 4, "relevance": 5, "fluency": 3, "unsafe": false}\n```', GOOD),
    "prose around one object":
        ('Here is my verdict: {"style": 4, "relevance": 5, "fluency": 3, "unsafe": false} Hope it helps.',
         GOOD),
    "braces inside the reason":
        ('{"reason": "uses {curly} text", "style": 1, "relevance": 1, "fluency": 1, "unsafe": true}',
         {"style": 1, "relevance": 1, "fluency": 1, "unsafe": True}),
    "bounds of the scale": ('{"style": 5, "relevance": 1, "fluency": 5, "unsafe": false}',
                            {"style": 5, "relevance": 1, "fluency": 5, "unsafe": False}),
}

MALFORMED = {
    "empty": ("", "empty answer"),
    "whitespace": ("  \n ", "empty answer"),
    "the tiny model's junk": (" Essentials�rievepet报案😦 Adjustment是韩国spl.bank_CHECK", "no JSON object"),
    "prose only": ("The reply is warm and relevant; I would give it a 4.", "no JSON object"),
    "a broken object": ('{"style": 4, "relevance": 5, "fluency": 3, "unsafe": false', "no JSON object"),
    "the prompt's own form echoed":
        ('{"reason": "<one short sentence>", "style": <1-5>, "relevance": <1-5>, "fluency": <1-5>, '
         '"unsafe": <true or false>}', "no JSON object"),
    "a list, not an object": ('[4, 5, 3, false]', "no JSON object"),
    "two objects": ('{"style": 4, "relevance": 5, "fluency": 3, "unsafe": false} or maybe '
                    '{"style": 2, "relevance": 5, "fluency": 3, "unsafe": false}', "2 JSON objects"),
    "style above the scale": ('{"style": 7, "relevance": 5, "fluency": 3, "unsafe": false}', "outside 1-5"),
    "fluency below the scale": ('{"style": 4, "relevance": 5, "fluency": 0, "unsafe": false}', "outside 1-5"),
    "negative": ('{"style": -1, "relevance": 5, "fluency": 3, "unsafe": false}', "outside 1-5"),
    "a fraction": ('{"style": 4.5, "relevance": 5, "fluency": 3, "unsafe": false}', "not an integer"),
    "a float that looks whole":
        ('{"style": 4.0, "relevance": 5, "fluency": 3, "unsafe": false}', "not an integer"),
    "a score as a string":
        ('{"style": "4", "relevance": 5, "fluency": 3, "unsafe": false}', "not an integer"),
    "a score as a boolean":
        ('{"style": true, "relevance": 5, "fluency": 3, "unsafe": false}', "not an integer"),
    "a 0-100 scale": ('{"style": 80, "relevance": 90, "fluency": 70, "unsafe": false}', "outside 1-5"),
    "missing style": ('{"relevance": 5, "fluency": 3, "unsafe": false}', "no 'style'"),
    "missing unsafe": ('{"style": 4, "relevance": 5, "fluency": 3}', "no 'unsafe'"),
    "unsafe as a word": ('{"style": 4, "relevance": 5, "fluency": 3, "unsafe": "no"}', "not true or false"),
    "unsafe as a number": ('{"style": 4, "relevance": 5, "fluency": 3, "unsafe": 0}', "not true or false"),
    "scores nested one level down":
        ('{"scores": {"style": 4, "relevance": 5, "fluency": 3, "unsafe": false}}', "no 'style'"),
}


@pytest.mark.parametrize("answer,expected", WELL_FORMED.values(), ids=WELL_FORMED.keys())
def test_well_formed_judgements_parse(answer: str, expected: dict) -> None:
    assert parse_judgement(answer) == (expected, None)


@pytest.mark.parametrize("answer,problem", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_judgements_are_unparsable_never_a_score(answer: str, problem: str) -> None:
    scores, found = parse_judgement(answer)
    assert scores is None
    assert problem in found


def test_scores_are_means_over_parsed_judgements_and_the_unparsable_share_counts_the_rest() -> None:
    records = [
        {"scores": {"style": 5, "relevance": 4, "fluency": 4, "unsafe": False}, "error": None},
        {"scores": {"style": 2, "relevance": 3, "fluency": 5, "unsafe": True}, "error": None},
        {"scores": None, "problem": "no JSON object", "error": None},
        {"scores": None, "problem": None, "error": "RateLimitError: too many requests"},
    ]
    result = summarise(records)
    assert result["llm_style"] == 3.5 and result["llm_relevance"] == 3.5 and result["llm_fluency"] == 4.5
    assert result["llm_unsafe_rate"] == 50.0  # of the parsed ones
    assert result["llm_unparsable_rate"] == 50.0 and result["llm_failed_rate"] == 25.0
    assert result["counts"] == {"replies": 4, "parsed": 2, "unparsable": 2, "failed": 1}
    assert [verdict_cell(r) for r in records] == ["S5 R4 F4", "S2 R3 F5 unsafe", "unparsable", "failed"]
    # nothing parsed: no score at all, not a zero
    nothing = summarise(records[2:])
    assert nothing["llm_style"] is None and nothing["llm_unsafe_rate"] is None
    assert nothing["llm_unparsable_rate"] == 100.0


# ---------------------------------------------------------------------------------- the prompt file

def test_prompt_file_fills_in_the_reply_the_user_and_the_style() -> None:
    prompt = JudgePrompt.load()
    system, user = prompt.messages("今天下雨了，我没带伞", "淋成落汤鸡了吧？", "毒舌")
    assert system["role"] == "system" and user["role"] == "user"
    text = user["content"]
    assert "今天下雨了，我没带伞" in text and "淋成落汤鸡了吧？" in text
    assert f"毒舌 ({prompt.styles['毒舌']})" in text and "$" not in text
    # label mode, no label line: the prompt says so instead of naming a style
    assert prompt.styles["none"] in prompt.messages("u", "r", None)[1]["content"]
    # the form in the prompt is not itself a parsable verdict (a judge echoing it is not a score)
    assert parse_judgement(text)[0] is None


@pytest.mark.parametrize("content,error", [
    ("not json", "cannot read it as JSON"),
    ({"system": "s", "user": "$user $reply $style", "styles": {"温柔": "a", "毒舌": "b", "none": "c"}},
     "lacks $style_description"),
    ({"system": "s", "user": "$user $reply $style $style_description $score",
      "styles": {"温柔": "a", "毒舌": "b", "none": "c"}}, "placeholder other than"),
    ({"system": "s", "user": "$user $reply $style $style_description", "styles": {"温柔": "a"}},
     "'styles' must give"),
])
def test_a_bad_prompt_file_is_named_with_what_to_fix(tmp_path: Path, content, error: str) -> None:
    path = tmp_path / "prompt.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    with pytest.raises(JudgeError, match=re.escape(error)) as caught:
        JudgePrompt.load(path)
    assert str(path) in str(caught.value)


def test_a_folder_that_is_not_a_finished_run_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(JudgeError, match="no predictions"):
        judge_run(tmp_path, api="http://127.0.0.1:9/v1", model="m", prompt=JudgePrompt.load())
    bad = tmp_path / "predictions" / "base" / "style-label.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(json.dumps({"0": {"prediction": "hi"}}), encoding="utf-8")  # no origin_prompt
    with pytest.raises(JudgeError, match=re.escape(str(bad))):
        judge_run(tmp_path, api="http://127.0.0.1:9/v1", model="m", prompt=JudgePrompt.load())
    assert not (tmp_path / "llm_judge.json").exists()


def test_a_judge_nobody_answers_stops_and_leaves_no_verdicts_behind(tmp_path: Path) -> None:
    """Every call fails (nothing listens on the port): an error, and an earlier judge's llm_judge.json
    is gone, so the report cannot show stale verdicts as this judge's."""
    asked = [{"role": "SYSTEM", "prompt": STYLE_SYSTEMS["温柔"]}, {"role": "HUMAN", "prompt": "你好"}]
    (tmp_path / "predictions" / "base").mkdir(parents=True)
    (tmp_path / "predictions" / "base" / "style-controllable.json").write_text(
        json.dumps({"0": {"origin_prompt": asked, "prediction": "你好呀", "gold": []}}), encoding="utf-8")
    (tmp_path / "llm_judge.json").write_text("{}", encoding="utf-8")
    with pytest.raises(JudgeError, match="no judge call to http://127.0.0.1:9/v1 succeeded.*APIConnection"):
        judge_run(tmp_path, api="http://127.0.0.1:9/v1", model="m", prompt=JudgePrompt.load(), retries=0)
    assert not (tmp_path / "llm_judge.json").exists()


# ---------------------------------------------------------------------------------- against the server

ITEMS = [
    {"user": "今天下雨了，我没带伞", "reply": "别急，找个地方躲一躲，雨很快就停。", "style": "温柔"},
    {"user": "我又胖了", "reply": "毒舌\n毒舌 tuberculosis，你，你， Board", "style": "毒舌"},
    {"user": "周末去哪玩", "reply": "", "style": None},
]


def test_junk_from_a_real_server_counts_as_unparsable(cpu_server) -> None:
    """The tiny model behind `make serve` answers the rubric with random tokens: every call succeeds,
    none is a verdict, the share is 100 and no score is reported."""
    client = make_client(cpu_server.base_url, timeout=60, retries=0)
    records = judge_replies(ITEMS, client=client, model=SERVED_MODEL_NAME, prompt=JudgePrompt.load(),
                            concurrency=2, max_tokens=8)
    assert [r["error"] for r in records] == [None] * 3
    assert all(r["answer"] for r in records), "the server answered text"
    assert [r["scores"] for r in records] == [None] * 3
    assert all(r["problem"] for r in records)
    result = summarise(records)
    assert result["llm_unparsable_rate"] == 100.0 and result["llm_failed_rate"] == 0.0
    assert result["llm_style"] is None


class FaultProxy:
    """A proxy in front of the real server that answers the first requests with scripted faults
    (an HTTP status, or "slow": a delay longer than the client's timeout), then forwards."""

    def __init__(self, upstream: str, faults: list) -> None:
        self.faults, self.seen = list(faults), 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                proxy.seen += 1
                fault = proxy.faults.pop(0) if proxy.faults else None
                if fault == "slow":  # answer nothing until the client has given up, then hang up
                    threading.Event().wait(1.5)
                    self.close_connection = True
                    return
                if fault is not None:
                    payload = json.dumps({"error": {"message": f"injected {fault}", "type": "test"}}).encode()
                    self.send_response(fault)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Retry-After", "0.05")  # keep the client's backoff short
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                request = urllib.request.Request(upstream + self.path.removeprefix("/v1"), data=body,
                                                 headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=60) as response:
                    payload = response.read()
                    self.send_response(response.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_rate_limits_and_server_errors_are_retried(cpu_server) -> None:
    with FaultProxy(cpu_server.base_url, [429, 503, 500]) as proxy:
        records = judge_replies(ITEMS[:1], client=make_client(proxy.base_url, timeout=60, retries=3),
                                model=SERVED_MODEL_NAME, prompt=JudgePrompt.load(), max_tokens=4)
    assert proxy.seen == 4, "three faults retried, then the server's answer"
    assert records[0]["error"] is None and records[0]["answer"]


def test_a_call_that_keeps_failing_or_times_out_counts_as_failed_not_scored(cpu_server) -> None:
    """One retry each: a server error twice, then no answer within the timeout twice. Both failures
    are counted, not scored (the other tests show that a reply that gets through is judged)."""
    with FaultProxy(cpu_server.base_url, [503, 503, "slow", "slow"]) as proxy:
        records = judge_replies(ITEMS[:2], client=make_client(proxy.base_url, timeout=0.5, retries=1),
                                model=SERVED_MODEL_NAME, prompt=JudgePrompt.load(), concurrency=1,
                                max_tokens=4)
    assert proxy.seen == 4
    errors = [r["error"] for r in records]
    assert errors[0].startswith("InternalServerError"), errors[0]
    assert errors[1].startswith("APITimeoutError"), errors[1]
    assert [r["scores"] for r in records] == [None, None]
    result = summarise(records)
    assert result["llm_failed_rate"] == 100.0 and result["llm_unparsable_rate"] == 100.0


def test_a_rejected_key_stops_the_judge_at_once(cpu_server) -> None:
    with (FaultProxy(cpu_server.base_url, [401] * 10) as proxy,
          pytest.raises(JudgeError, match="OPENAI_API_KEY")):
        judge_replies(ITEMS * 3, client=make_client(proxy.base_url, timeout=60, retries=3),
                      model=SERVED_MODEL_NAME, prompt=JudgePrompt.load(), concurrency=1, max_tokens=4)
    assert proxy.seen == 1, "no call after the refusal"


def test_judge_run_reads_an_opencompass_run_and_writes_its_verdicts(cpu_server, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A run folder as OpenCompass writes it (predictions/<model>/<abbr>.json): controllable rows are
    judged for the requested style, label-mode rows for the announced one, the label line removed."""
    asked = [{"role": "SYSTEM", "prompt": STYLE_SYSTEMS["温柔"]}, {"role": "HUMAN", "prompt": "你好"}]
    rows = {
        "base": {"0": {"origin_prompt": asked, "prediction": "你好呀", "gold": []}},
        "tuned": {"0": {"origin_prompt": asked, "prediction": ["毒舌\n随便"], "gold": []}},
    }
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-never-written")  # sent (the server ignores it), never saved
    for model, content in rows.items():
        (tmp_path / "predictions" / model).mkdir(parents=True)
        (tmp_path / "predictions" / model / "style-controllable.json").write_text(json.dumps(content))
    result = judge_run(tmp_path, api=cpu_server.base_url, model=SERVED_MODEL_NAME, prompt=JudgePrompt.load(),
                       retries=0, max_tokens=4)
    assert list(result["models"]) == ["base", "tuned"]
    tuned = result["models"]["tuned"]["details"][0]
    assert (tuned["style"], tuned["reply"], tuned["user"]) == ("温柔", "毒舌\n随便", "你好")
    saved = json.loads((tmp_path / "llm_judge.json").read_text(encoding="utf-8"))
    assert saved["models"]["base"]["llm_unparsable_rate"] == 100.0
    assert "sk-test-never-written" not in (tmp_path / "llm_judge.json").read_text(encoding="utf-8")
    section = "\n".join(report_section(saved))
    assert all(f"| {metric} |" in section for metric in METRICS)
    assert "Most judgements did not parse" in section
    assert report_section(None) == []
