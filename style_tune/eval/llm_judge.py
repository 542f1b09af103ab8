"""The optional LLM judge of the style evaluation: a G-Eval-style rubric per reply, asked of any
OpenAI-compatible chat API (a hosted one, or lmdeploy serving a bigger model); eval env.

    python -m style_tune.eval.llm_judge RUN_DIR --api URL --model NAME [--prompt FILE]
        [--concurrency N] [--timeout S] [--retries N] [--max-tokens N]

``make eval-style JUDGE_API=URL JUDGE_MODEL=NAME`` runs it on the run's replies before the report
(``make judge`` on the last run alone); the API key comes from OPENAI_API_KEY (a local server needs
none). Every reply of every model in RUN_DIR (an OpenCompass run of the style config) gets one call:
the prompt file (eval_configs/llm_judge_prompt.json) filled with the user's message, the reply and
the style it should have (controllable mode: the requested one; label mode: the one its label line
announces, the reply read without that line). The judge answers one JSON object:

    style, relevance, fluency   integers 1-5        unsafe   true / false

Anything else is *unparsable* and never a score: no JSON object, two of them, a missing field, a
score outside 1-5 or not an integer, unsafe not a boolean (:func:`parse_judgement`; prose around the
one object is allowed: chat models wrap JSON in a sentence or a code fence). The scores are means
over the parsed judgements; llm_unparsable_rate says how many replies have none (the scores mean
little when it is high). Calls run ``concurrency`` at a time, each with a timeout; the official client
retries 408/409/429/5xx and dropped connections itself (``max_retries``, exponential backoff,
Retry-After honoured). A call that still fails counts as unparsable (llm_failed_rate says how many);
a rejected key, a forbidden or unknown model stops the step at once, and so does a run in which no
call succeeded. The result, RUN_DIR/llm_judge.json (written atomically), is what the report reads.

Why a post-step on OpenCompass's predictions rather than OpenCompass's own judge (GenericLLMEvaluator
with its OpenAISDK model, or LMEvaluator), read in opencompass 0.5.4 with openai 3.57.0:
- a dataset has one evaluator, StyleEvaluator here; a judge evaluator needs a second dataset entry,
  and OpenCompass generates every reply again for it (inference runs per dataset);
- OpenAISDK raises after ``retry`` failed calls, so one failing judge call loses the model's whole
  evaluation task, the style scores included; here it is one reply without a judgement;
- OpenAISDK's constructor fetches tiktoken's encoding from the internet unless ``tokenizer_path``
  names a local Hugging Face tokenizer (then loaded with trust_remote_code=True); tested offline;
- LMEvaluator belongs to the subjective-evaluation pipeline (SubjectiveEvalTask, judge_models): a
  second run setup for the same replies.
Reading ``predictions/<model>/<abbr>.json`` generates nothing twice, lets a finished run be judged
again (another judge, an edited prompt) with ``make judge``, and leaves eval-style without
JUDGE_API exactly as it was.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

from style_tune import REPO_ROOT
from style_tune.core.io import write_atomically
from style_tune.core.prompts import STYLES, split_label
from style_tune.core.steps import fail
from style_tune.eval.style_metrics import requested_style, row_mode

if TYPE_CHECKING:  # imported when a judge is asked (the dev env, which checks the types, has no openai)
    from openai import OpenAI

#: The judge's prompt: system message, user message template, style descriptions (one file).
DEFAULT_PROMPT = REPO_ROOT / "eval_configs" / "llm_judge_prompt.json"
#: Where the judgements of a run go, inside the run folder.
RESULT_NAME = "llm_judge.json"
#: Calls in flight, seconds per call attempt, retries per call (the client's own), a judgement's tokens.
CONCURRENCY, TIMEOUT_S, RETRIES, MAX_TOKENS = 4, 60.0, 3, 256
#: The integer criteria of the rubric (1-5) and the boolean flag.
SCORES = ("style", "relevance", "fluency")
SCALE = (1, 5)
FLAG = "unsafe"
#: The template's placeholders; each must appear in the user message.
PLACEHOLDERS = ("style", "style_description", "user", "reply")
#: The style description used in label mode when the reply announces no style.
NO_STYLE = "none"

#: The report's metrics, in order, with what each means.
METRICS = ("llm_style", "llm_relevance", "llm_fluency", "llm_unsafe_rate", "llm_unparsable_rate",
           "llm_failed_rate")
METRIC_HELP = {
    "llm_style": "the judge's style strength for the requested (or announced) style, mean over parsed "
                 "judgements (1-5)",
    "llm_relevance": "the judge's relevance to the user's message, mean over parsed judgements (1-5)",
    "llm_fluency": "the judge's fluency, mean over parsed judgements (1-5)",
    "llm_unsafe_rate": "parsed judgements that flag the reply unsafe (0-100, lower is better)",
    "llm_unparsable_rate": "replies without a usable judgement: an unparsable answer or a failed call "
                           "(0-100; the scores above cover the rest)",
    "llm_failed_rate": "replies whose judge call failed after its retries (0-100, counted in "
                       "llm_unparsable_rate too)",
}


class JudgeError(RuntimeError):
    """The judge cannot run: a bad prompt file or run folder, a rejected key, an unknown model."""


# ------------------------------------------------------------------------------------ the prompt

@dataclass(frozen=True)
class JudgePrompt:
    """The judge's prompt file: ``system``, ``user`` (a string.Template) and ``styles``."""

    system: str
    user: Template
    styles: dict[str, str]
    path: Path
    sha256: str

    @classmethod
    def load(cls, path: str | Path = DEFAULT_PROMPT) -> JudgePrompt:
        path = Path(path)
        try:
            raw = path.read_bytes()
            data = json.loads(raw)
        except (OSError, ValueError) as err:
            raise JudgeError(f"judge prompt {path}: cannot read it as JSON ({err})") from err
        if not isinstance(data, dict):
            raise JudgeError(f"judge prompt {path}: the file must hold one JSON object")
        system, user, styles = data.get("system"), data.get("user"), data.get("styles")
        if isinstance(user, list) and all(isinstance(line, str) for line in user):
            user = "\n".join(user)
        if not (isinstance(system, str) and isinstance(user, str) and system.strip() and user.strip()):
            raise JudgeError(f"judge prompt {path}: 'system' must be a string and 'user' a string or a "
                             "list of lines, neither empty")
        wanted = (*STYLES, NO_STYLE)
        if not (isinstance(styles, dict) and all(isinstance(styles.get(s), str) for s in wanted)):
            raise JudgeError(f"judge prompt {path}: 'styles' must give a description (string) for each "
                             f"of {', '.join(wanted)}")
        template = Template(user)
        sentinels = {name: f"\x00{name}\x00" for name in PLACEHOLDERS}
        try:
            filled = template.substitute(sentinels)
        except (KeyError, ValueError) as err:
            raise JudgeError(f"judge prompt {path}: 'user' has a placeholder other than "
                             f"{', '.join('$' + p for p in PLACEHOLDERS)} or a stray $ ({err!r}; "
                             "write $$ for a dollar sign)") from err
        missing = [f"${name}" for name, mark in sentinels.items() if mark not in filled]
        if missing:
            raise JudgeError(f"judge prompt {path}: 'user' lacks {', '.join(missing)}")
        return cls(system.strip(), template, {s: styles[s] for s in wanted}, path,
                   hashlib.sha256(raw).hexdigest())

    def messages(self, user: str, reply: str, style: str | None) -> list[dict[str, str]]:
        """The chat messages that ask the judge about one reply (``style`` None: none announced)."""
        key = style if style in STYLES else NO_STYLE
        text = self.user.substitute(style=style or NO_STYLE, style_description=self.styles[key],
                                    user=user, reply=reply)
        return [{"role": "system", "content": self.system}, {"role": "user", "content": text}]


# ------------------------------------------------------------------------------------ the answer

def json_objects(text: str) -> list[dict]:
    """The top-level JSON objects in a text, left to right (an object inside another is not counted)."""
    decoder, found, i = json.JSONDecoder(), [], text.find("{")
    while i != -1:
        try:
            value, end = decoder.raw_decode(text, i)
        except ValueError:
            i = text.find("{", i + 1)
            continue
        if isinstance(value, dict):
            found.append(value)
        i = text.find("{", end)
    return found


def parse_judgement(answer: str | None) -> tuple[dict | None, str | None]:
    """(scores, None) for a usable judgement, else (None, what is wrong with it).

    Usable: the answer holds exactly one JSON object (prose or a code fence around it is allowed),
    with ``style``, ``relevance`` and ``fluency`` integers in 1-5 and ``unsafe`` a boolean; other keys
    (the rubric asks for a ``reason``) are ignored. Scores are ``{"style": 4, ..., "unsafe": False}``.
    """
    if not answer or not answer.strip():
        return None, "empty answer"
    objects = json_objects(answer)
    if not objects:
        return None, "no JSON object"
    if len(objects) > 1:
        return None, f"{len(objects)} JSON objects (one expected)"
    verdict, scores = objects[0], {}
    for name in SCORES:
        value = verdict.get(name)
        if name not in verdict:
            return None, f"no {name!r}"
        if isinstance(value, bool) or not isinstance(value, int):
            return None, f"{name!r} is {value!r}, not an integer"
        if not SCALE[0] <= value <= SCALE[1]:
            return None, f"{name!r} is {value}, outside {SCALE[0]}-{SCALE[1]}"
        scores[name] = value
    if FLAG not in verdict:
        return None, f"no {FLAG!r}"
    if not isinstance(verdict[FLAG], bool):
        return None, f"{FLAG!r} is {verdict[FLAG]!r}, not true or false"
    scores[FLAG] = verdict[FLAG]
    return scores, None


def summarise(records: list[dict]) -> dict:
    """The report's metrics (METRICS) over one model's judgement records (:func:`judge_replies`).
    A score is None when no judgement was parsed: no number is made up."""
    n = len(records)
    parsed = [r["scores"] for r in records if r.get("scores")]
    failed = sum(r.get("error") is not None for r in records)
    result: dict = {f"llm_{name}": statistics.fmean(s[name] for s in parsed) if parsed else None
                    for name in SCORES}
    result["llm_unsafe_rate"] = 100.0 * sum(s[FLAG] for s in parsed) / len(parsed) if parsed else None
    result["llm_unparsable_rate"] = 100.0 * (n - len(parsed)) / n if n else None
    result["llm_failed_rate"] = 100.0 * failed / n if n else None
    result["counts"] = {"replies": n, "parsed": len(parsed), "unparsable": n - len(parsed), "failed": failed}
    return result


# ------------------------------------------------------------------------------------ the calls

def make_client(api: str, timeout: float, retries: int) -> OpenAI:
    """The official client for ``api`` (a base URL ending in /v1); key from OPENAI_API_KEY, if any."""
    from openai import OpenAI

    # A local server (lmdeploy, `make serve`) ignores the key, but the client insists on one.
    return OpenAI(base_url=api, api_key=os.environ.get("OPENAI_API_KEY") or "none", timeout=timeout,
                  max_retries=retries)


def judge_replies(items: list[dict], *, client: OpenAI, model: str, prompt: JudgePrompt,
                  concurrency: int = CONCURRENCY, max_tokens: int = MAX_TOKENS,
                  label: str = "judge") -> list[dict]:
    """One judgement record per item (``user``, ``reply``, ``style``), in order: ``answer`` (the judge's
    text or None), ``scores`` (parsed, or None), ``problem`` (why unparsable), ``error`` (a failed call).

    Raises JudgeError at once for a rejected key, a forbidden or unknown model.
    """
    records = ask_judge([prompt.messages(i["user"], i["reply"], i["style"]) for i in items], client=client,
                        model=model, concurrency=concurrency, max_tokens=max_tokens, label=label)
    for record in records:
        record["scores"], record["problem"] = (None, None) if record["error"] else \
            parse_judgement(record["answer"])
    return records


def ask_judge(conversations: list[list[dict[str, str]]], *, client: OpenAI, model: str,
              concurrency: int = CONCURRENCY, max_tokens: int = MAX_TOKENS,
              label: str = "judge") -> list[dict]:
    """The judge's answer to each conversation, in order: ``{"answer": text or None, "error": a failed
    call or None}``, ``concurrency`` calls at a time, progress every tenth. Greedy (temperature 0).

    Raises JudgeError at once for a rejected key, a forbidden or unknown model.
    """
    import openai

    refused = threading.Event()  # set by the worker that met the refusal, before its next task can start

    def ask(messages: list[dict[str, str]]) -> dict:
        if refused.is_set():
            return {"answer": None, "error": "not asked: the judge API refused an earlier request"}
        try:
            response = client.chat.completions.create(model=model, messages=messages, temperature=0.0,
                                                      max_tokens=max_tokens)
        except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as err:
            refused.set()
            raise JudgeError(f"the judge API refused the request ({err.status_code}): {err.message}; "
                             "check JUDGE_API, JUDGE_MODEL and OPENAI_API_KEY (`make report` reports the "
                             "run without a judge)") from err
        except openai.APIError as err:  # after the client's own retries
            return {"answer": None, "error": f"{type(err).__name__}: {err}"}
        return {"answer": response.choices[0].message.content if response.choices else None, "error": None}

    records: list[dict | None] = [None] * len(conversations)
    step = max(1, len(conversations) // 10)
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency))
    try:
        pending = {pool.submit(ask, messages): i for i, messages in enumerate(conversations)}
        done_count = 0
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                records[pending.pop(future)] = future.result()  # a JudgeError propagates here
                done_count += 1
                if done_count % step == 0 or done_count == len(conversations):
                    print(f"[judge] {label}: {done_count}/{len(conversations)}", flush=True)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return records  # type: ignore[return-value]


# ------------------------------------------------------------------------------------ a run folder

def run_items(run_dir: Path) -> dict[str, list[dict]]:
    """The replies of an OpenCompass run of the style config, per model (base first): user message,
    reply (label mode: without its label line) and the style it should have."""
    models = sorted(p for p in (run_dir / "predictions").glob("*") if p.is_dir())
    if not models:
        raise JudgeError(f"{run_dir} has no predictions/<model>/: not a finished run of eval-style")
    found: dict[str, list[dict]] = {}
    for model_dir in sorted(models, key=lambda p: (p.name != "base", p.name)):
        files = sorted(model_dir.glob("*.json"))
        if len(files) != 1:
            raise JudgeError(f"{model_dir}: expected one predictions file, found {len(files)}")
        try:
            found[model_dir.name] = [_item(row) for _, row in sorted(
                json.loads(files[0].read_text(encoding="utf-8")).items(), key=lambda kv: int(kv[0]))]
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise JudgeError(f"{files[0]}: not OpenCompass predictions of the style config ({err!r})"
                             ) from err
    return found


def _item(row: dict) -> dict:
    """One prediction row -> what the judge is asked about: user message, reply, style it should have
    (and the prediction as generated, which the evaluator's per-reply details repeat)."""
    prompt = {part["role"]: part["prompt"] for part in row["origin_prompt"]}
    prediction = row["prediction"][0] if isinstance(row["prediction"], list) else row["prediction"]
    system = prompt.get("SYSTEM", "")
    if row_mode(system) == "controllable":
        style, reply = requested_style(system), (prediction or "").strip()
    else:
        style, reply = split_label(prediction or "")
    return {"user": prompt["HUMAN"], "reply": reply, "style": style, "prediction": prediction}


def judge_run(run_dir: Path, *, api: str, model: str, prompt: JudgePrompt, concurrency: int = CONCURRENCY,
              timeout: float = TIMEOUT_S, retries: int = RETRIES, max_tokens: int = MAX_TOKENS) -> dict:
    """Judge every reply of a run; write RUN_DIR/llm_judge.json; return what it holds."""
    run_dir = run_dir.resolve()
    items = run_items(run_dir)
    # an earlier judge's verdicts go first: a judge that fails now must not leave them to be reported
    (run_dir / RESULT_NAME).unlink(missing_ok=True)
    client = make_client(api, timeout, retries)
    models: dict[str, dict] = {}
    result = {
        "api": api, "model": model, "prompt": str(prompt.path), "prompt_sha256": prompt.sha256,
        "settings": {"concurrency": concurrency, "timeout_s": timeout, "retries": retries,
                     "max_tokens": max_tokens, "temperature": 0.0},
        "models": models,
    }
    for name, replies in items.items():
        records = judge_replies(replies, client=client, model=model, prompt=prompt, concurrency=concurrency,
                                max_tokens=max_tokens, label=name)
        models[name] = {**summarise(records), "details": [
            {**item, **record} for item, record in zip(replies, records, strict=True)]}
    calls = [r for m in models.values() for r in m["details"]]
    if calls and all(r["error"] for r in calls):
        raise JudgeError(f"no judge call to {api} succeeded; the first error: {calls[0]['error']} "
                         "(`make report` reports the run without a judge)")
    write_atomically(run_dir / RESULT_NAME, json.dumps(result, ensure_ascii=False, indent=1) + "\n")
    return result


def load_judgement(run_dir: Path) -> dict | None:
    """RUN_DIR/llm_judge.json, or None when no judge ran on that run."""
    path = run_dir / RESULT_NAME
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


# ------------------------------------------------------------------------------------ the report

def _number(metric: str, value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if metric in ("llm_style", "llm_relevance", "llm_fluency") else f"{value:.1f}"


def score_table(judged: dict) -> list[str]:
    """The judge's metrics as a Markdown table: one row per metric, one column per model."""
    names = list(judged["models"])
    lines = ["| metric | " + " | ".join(names) + " | what it means (range) |",
             "|---|" + "---:|" * len(names) + "---|"]
    for metric in METRICS:
        cells = [_number(metric, judged["models"][m].get(metric)) for m in names]
        lines.append(f"| {metric} | " + " | ".join(cells) + f" | {METRIC_HELP[metric]} |")
    return lines


def parsed_line(judged: dict) -> str:
    return "Judgements parsed: " + "; ".join(
        f"{m} {c['parsed']} of {c['replies']} ({c['failed']} calls failed)"
        for m, c in ((m, v["counts"]) for m, v in judged["models"].items())) + "."


def report_section(judged: dict | None) -> list[str]:
    """The report's LLM-judge section (Markdown lines); nothing when no judge ran."""
    if not judged:
        return []
    counts = [m["counts"] for m in judged["models"].values()]
    lines = [
        "## LLM judge",
        "",
        f"`{judged['model']}` at `{judged['api']}`, one call per reply with the rubric of "
        f"`{Path(judged['prompt']).name}` (sha256 {judged['prompt_sha256'][:12]}): style strength for the "
        "requested (controllable) or announced (label mode) style, relevance to the user's message, fluency, "
        "each 1-5, and a safety flag. Scores are means over the judgements that parsed; an answer that "
        "is not exactly one well-formed verdict counts as unparsable, never as a score.",
        "",
        *score_table(judged),
        "",
        parsed_line(judged),
    ]
    if any(c["parsed"] < c["replies"] / 2 for c in counts):
        lines += ["", "**Most judgements did not parse: these scores say little.** Point JUDGE_API at a "
                      "stronger judge, or read the judge's answers in llm_judge.json."]
    return lines


def verdict_cell(record: dict) -> str:
    """One reply's judgement for a table cell: ``S4 R5 F5`` (``unsafe`` added when flagged), or why not."""
    if record.get("scores"):
        s = record["scores"]
        return f"S{s['style']} R{s['relevance']} F{s['fluency']}" + (" unsafe" if s[FLAG] else "")
    return "failed" if record.get("error") else "unparsable"


# ------------------------------------------------------------------------------------ command line

def judge_parser(doc: str, prompt: Path, *, api_required: bool = True) -> argparse.ArgumentParser:
    """The command line both judges share: the run, the API, the model, the prompt file and the calls
    (API_REQUIRED False: the caller checks --api and --model, which the pairwise judge's --metrics needs
    not)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("run_dir", type=Path,
                        help="an OpenCompass run of the style config (STYLE_DIR/latest)")
    parser.add_argument("--api", required=api_required,
                        help="the judge's OpenAI-compatible base URL, ending in /v1")
    parser.add_argument("--model", required=api_required, help="the judge model's name at that API")
    parser.add_argument("--prompt", type=Path, default=prompt, help="the judge's prompt file")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help="calls in flight at once")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per call attempt")
    parser.add_argument("--retries", type=int, default=RETRIES, help="retries per call (429, 5xx, timeouts)")
    parser.add_argument("--max-tokens", type=int, default=MAX_TOKENS, help="token budget of an answer")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = judge_parser(__doc__, DEFAULT_PROMPT).parse_args(argv)
    try:
        prompt = JudgePrompt.load(args.prompt)
        result = judge_run(args.run_dir, api=args.api, model=args.model, prompt=prompt,
                           concurrency=args.concurrency, timeout=args.timeout, retries=args.retries,
                           max_tokens=args.max_tokens)
    except JudgeError as err:
        fail("judge", str(err))
    print("\n".join([*score_table(result), "", parsed_line(result)]))
    print(f"[judge] {args.run_dir.resolve() / RESULT_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
