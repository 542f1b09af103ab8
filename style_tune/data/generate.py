"""`make gen-data`: style replies for your own prompts through any OpenAI-compatible API, validated.

    python -m style_tune.data.generate PROMPTS --out OUT.csv [--api-base URL] [--model NAME]
        [--styles 温柔,毒舌] [--samples 1] [--concurrency 8] [--timeout 120] [--max-retries 5]
        [--column user] [--styles-file style_data/styles.json] [--judge-data CSV] [--seed 42]

The key comes from $OPENAI_API_KEY (a local server ignores it). docs/gen-data.md is the user's guide.

Input: PROMPTS holds one prompt per line, or is a CSV (``.csv``) or JSON-lines (``.jsonl``) file with
the prompt in column/field ``--column``. Each prompt is NFKC-normalised, stripped of URLs and ASCII
@handles, its whitespace collapsed; prompts outside the styles file's length bounds, empty ones and
repeats (the split tool's normalisation, so no prompt is asked twice that `make split` would group)
are dropped, with a count per reason.

Asking: one request per (prompt, style, sample): the style's generation prompt as the system message,
its few-shot examples as earlier turns, then the prompt; its sampling settings and a seed derived from
--seed. The official ``openai`` client (async) sends them, at most --concurrency at a time; its own retry
loop retries 408/409/429/5xx replies, timeouts and dropped connections --max-retries times with
exponential backoff, honouring ``Retry-After``. 401/403/404 stop the run (a wrong key, URL or model
fails every row alike).

Resuming: every answer is appended to ``OUT.journal.jsonl`` (OUT with ``.csv`` replaced) the moment it
arrives, keyed by a hash of the request. A rerun (after Ctrl-C, SIGKILL, a crash or failed rows) reads
the journal and asks only what has no answer there; a line cut short by a kill is dropped. Ctrl-C
stops cleanly: in-flight requests are abandoned, nothing else is lost.

Output, when every request has been tried: OUT (``user,style,assistant``, ready for `make split`) and
``OUT.rejected.csv`` (the same columns plus ``reason``), both written atomically; the last line printed
is ``gen-data: requested N, accepted A, rejected R, failed F`` with N = A + R + F (failed: no answer
after the retries; the next run asks them again). Validation (:func:`validate`): length bounds, cut-off
replies, refusals and assistant boilerplate, the style label or the prompt leaking into the reply,
mostly-CJK text, the evaluation's sanity gates, the style's forbidden phrases and markers, the
evaluation's style judge (a reply it reads as another style is rejected with its probability), and
near-duplicates of an earlier accepted reply of the same style (the data check's measure: character-
bigram Jaccard above 0.5).

Exit status: 0 when the run ends (failed rows included: they are counted and asked again next time);
2 on bad input or usage (one line per problem: FILE:LINE: column: what is wrong); 1 when the API
cannot be used (unreachable, key refused, unknown model); 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import difflib
import fcntl
import hashlib
import io
import json
import os
import re
import signal
import sys
import tempfile
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from style_tune import REPO_ROOT
from style_tune.core.io import json_objects, sweep_temporaries, write_files_atomically
from style_tune.core.styles import Style, StylesError, StyleSet, load_styles
from style_tune.data.check import bigrams  # the data check's near-duplicate measure
from style_tune.data.grouping import normalise_prompt  # the split tool's grouping key

STEP = "gen-data"
DEFAULT_API_BASE = "http://127.0.0.1:23333/v1"
DEFAULT_JUDGE_DATA = REPO_ROOT / "style_data" / "style_chat_data.csv"
OUTPUT_COLUMNS = ("user", "style", "assistant")
REJECTED_COLUMNS = (*OUTPUT_COLUMNS, "reason")
#: Statuses that no retry can fix and that every other request would meet too: stop the run.
FATAL_STATUSES = {401: "the API refused the key (set OPENAI_API_KEY)",
                  403: "the API refused access (OPENAI_API_KEY's permissions)",
                  404: "not found (check API_BASE, which ends in /v1, and GEN_MODEL)"}
#: At most this many input problems are printed (the total is always given).
MAX_PRINTED_PROBLEMS = 20
EXIT_OK, EXIT_API, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

_URL = re.compile(r"(?:https?://|www\.)[^\s\u3000-\u303f\uff01-\uff5e]+", re.IGNORECASE)
#: ASCII @handles only: a CJK mention has no end marker in unspaced text (群里@所有人).
_HANDLE = re.compile(r"(?<![A-Za-z0-9_.@])@[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
#: Chinese punctuation that NFKC would turn into ASCII: kept as typed, as the shipped data and users
#: write it (the split tool's grouping key normalises it anyway, so duplicates are still found).
_KEEP_WIDE = re.compile("([，。！？：；（）～、《》“”‘’])")


class InputError(Exception):
    """Bad input or usage: every problem is one line ``FILE:LINE: column: what is wrong``."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__(problems[0] if problems else "bad input")
        self.problems = list(problems)


class FatalAPIError(Exception):
    """The API cannot be used at all (unreachable, key refused, model unknown)."""


# ============================================================================ input prompts

def read_prompts(path: Path, column: str) -> list[tuple[int, str]]:
    """(line, text) of every prompt in the file: lines, a CSV column or a JSON-lines field."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError([f"{path}: no such file (PROMPTS= names the prompts file)"]) from None
    except OSError as err:
        raise InputError([f"{path}: cannot read: {err.strerror or err}"]) from None
    text = data.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        items, problems = _read_csv(path, text, column)
    elif suffix in (".jsonl", ".ndjson"):
        items, problems = _read_jsonl(path, text, column)
    else:
        items = [(n, line) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
        problems = []
    for line, value in items:
        bad = _ESCAPED_BYTE.findall(value)
        if bad:
            shown = " ".join(f"0x{ord(ch) - 0xDC00:02x}" for ch in bad[:4])
            where = "" if suffix not in (".csv", ".jsonl", ".ndjson") else f" {column}:"
            problems.append(f"{path}:{line}:{where} undecodable bytes {shown} (the file must be UTF-8; "
                            "convert it, e.g. iconv -f GBK -t UTF-8)")
    if problems:
        raise InputError(problems)
    if not items:
        raise InputError([f"{path}: no prompts in the file"])
    return items


def _read_csv(path: Path, text: str, column: str) -> tuple[list[tuple[int, str]], list[str]]:
    csv.field_size_limit(2**31 - 1)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    items, problems, start, at = [], [], 1, None
    try:
        for record in reader:
            if record:
                if at is None:
                    names = [name.strip() for name in record]
                    if names.count(column) != 1:
                        found = ", ".join(repr(name) for name in names)
                        what = "no" if column not in names else "more than one"
                        return [], [f"{path}:{start}: header: {what} column {column!r} (found {found}); "
                                    "name the prompt column with PROMPT_COLUMN= (--column)"]
                    at, width = names.index(column), len(names)
                elif len(record) != width:
                    problems.append(f"{path}:{start}: row: has {len(record)} field(s), "
                                    f"the header has {width}")
                elif record[at].strip():
                    items.append((start, record[at]))
            start = reader.line_num + 1
    except csv.Error as err:
        problems.append(f"{path}:{start}: csv: malformed CSV: {err} (an unclosed quote?)")
    if at is None and not problems:
        problems.append(f"{path}:1: header: the file is empty; expected a header row with column {column!r}")
    return items, problems


def _read_jsonl(path: Path, text: str, column: str) -> tuple[list[tuple[int, str]], list[str]]:
    items = []
    rows, problems = json_objects(path, text)
    for number, row in rows:
        if not isinstance(row.get(column), str):
            what = "missing" if column not in row else f"not a string ({type(row[column]).__name__})"
            problems.append(f"{path}:{number}: {column}: {what}; name the prompt field with PROMPT_COLUMN= "
                            "(--column)")
        elif row[column].strip():
            items.append((number, row[column]))
    return items, problems


def clean_prompt(text: str) -> tuple[str, int]:
    """NFKC (Chinese punctuation kept), URLs and ASCII @handles removed, whitespace runs made one space,
    trimmed; and how many URLs and handles were removed."""
    text = "".join(part if _KEEP_WIDE.fullmatch(part) else unicodedata.normalize("NFKC", part)
                   for part in _KEEP_WIDE.split(text))
    text, urls = _URL.subn(" ", text)
    text, handles = _HANDLE.subn(" ", text)
    return " ".join(text.split()), urls + handles


@dataclass
class Prompts:
    """The cleaned prompts in file order, and what was dropped and why."""

    kept: list[str]
    read: int
    stripped: int
    dropped: Counter[str] = field(default_factory=Counter)

    def summary(self, path: Path) -> str:
        parts = [f"{count} {reason}" for reason, count in self.dropped.most_common()]
        dropped = f"; dropped {sum(self.dropped.values())}: {', '.join(parts)}" if parts else ""
        return (f"{STEP}: {path}: {self.read} prompts read, {len(self.kept)} kept "
                f"({self.stripped} had URLs or @handles removed){dropped}")


def clean_prompts(items: Sequence[tuple[int, str]], bounds: dict[str, int | None]) -> Prompts:
    """Clean each prompt, then drop empty, too short / too long and repeated ones (first one kept)."""
    low, high = bounds.get("min_chars"), bounds.get("max_chars")
    prompts = Prompts(kept=[], read=len(items), stripped=0)
    seen: set[str] = set()
    for _, raw in items:
        text, removed = clean_prompt(raw)
        prompts.stripped += removed > 0
        if not text:
            prompts.dropped["empty after cleaning"] += 1
        elif low is not None and len(text) < low:
            prompts.dropped[f"shorter than {low} characters"] += 1
        elif high is not None and len(text) > high:
            prompts.dropped[f"longer than {high} characters"] += 1
        elif (key := normalise_prompt(text)) in seen:
            prompts.dropped["duplicates"] += 1
        else:
            seen.add(key)
            prompts.kept.append(text)
    return prompts


# ============================================================================ requests

@dataclass(frozen=True)
class Request:
    """One chat request: its place in the output order, what it asks, and its journal key."""

    index: int
    user: str
    style: str
    sample: int
    body: dict[str, Any]
    key: str


def style_messages(style: Style, user: str) -> list[dict[str, str]]:
    """The generation prompt as system message, the few-shot examples as turns, then the prompt."""
    messages = [{"role": "system", "content": style.prompt}]
    for example_user, example_reply in style.examples:
        messages += [{"role": "user", "content": example_user},
                     {"role": "assistant", "content": example_reply}]
    return [*messages, {"role": "user", "content": user}]


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


def plan_requests(prompts: Sequence[str], styles: StyleSet, labels: Sequence[str], samples: int,
                  model: str, seed: int) -> list[Request]:
    """Every (prompt, style, sample) request, in output order. The key hashes everything the answer
    depends on (model, messages, sampling settings, seed), so a changed setting is asked afresh."""
    requests = []
    for user in prompts:
        for label in labels:
            style = styles[label]
            for sample in range(samples):
                body = {"model": model, "messages": style_messages(style, user),
                        **{k: v for k, v in style.settings.items() if v is not None}}
                body["seed"] = int(_digest([seed, body, sample])[:8], 16) & 0x7FFFFFFF
                requests.append(Request(len(requests), user, label, sample, body, _digest(body)))
    return requests


# ============================================================================ the journal

def side_path(out: Path, suffix: str) -> Path:
    """OUT with ``.csv`` replaced: ``.rejected.csv``, ``.journal.jsonl``."""
    return out.with_name(out.name[: -len(".csv")] + suffix)


class Journal:
    """Append-only JSON lines, one per answer; locked while a run writes it.

    Each line is written with one ``write`` to a file opened with O_APPEND, so a kill leaves at most
    the last line cut short; :meth:`open` drops such a line before appending.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None
        self.dropped_partial = False
        self.unreadable = 0

    def open(self) -> dict[str, dict]:
        """Lock the journal and return its answers by key (later lines win)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            raise InputError([f"{self.path}: another gen-data run is writing this journal (same OUT); "
                              "wait for it or use another OUT"]) from None
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # a line cut short by a kill: never complete, drop it
            os.truncate(self.path, end)
            self.dropped_partial = True
        answers = {}
        for line in data[:end].splitlines():
            try:
                entry = json.loads(line)
                answers[entry["key"]] = entry
            except (ValueError, KeyError, TypeError):
                self.unreadable += 1
        return answers

    def append(self, entry: dict) -> None:
        assert self.fd is not None
        os.write(self.fd, (json.dumps(entry, ensure_ascii=False) + "\n").encode())

    def close(self) -> None:
        if self.fd is not None:
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = None


# ============================================================================ asking the API

@dataclass
class Tally:
    """What this run's requests did."""

    answered: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # key -> why
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


def make_client(api_base: str, timeout: float, max_retries: int):
    from openai import AsyncOpenAI

    return AsyncOpenAI(base_url=api_base, api_key=os.environ.get("OPENAI_API_KEY") or "none",
                       timeout=timeout, max_retries=max_retries)


async def pick_model(client, model: str | None) -> str:
    """Check that the API answers; the model to ask: ``model``, or the one the server lists."""
    import openai

    try:
        listed = [entry.id async for entry in client.models.list()]
    except openai.APIStatusError as err:
        if err.status_code in (401, 403):
            raise FatalAPIError(f"GET {client.base_url}models: HTTP {err.status_code}: "
                                f"{FATAL_STATUSES[err.status_code]}") from None
        listed = []  # some APIs do not list models; the first request will tell
    except openai.APIConnectionError as err:
        raise FatalAPIError(f"cannot reach {client.base_url} ({err.__cause__ or err}); is the server up "
                            "(make serve, lmdeploy serve api_server) and API_BASE right?") from None
    if model:
        if listed and model not in listed:
            print(f"{STEP}: note: {client.base_url}models does not list {model!r} (it lists "
                  f"{', '.join(listed[:10])}); asking anyway", file=sys.stderr)
        return model
    if len(listed) == 1:
        return listed[0]
    raise FatalAPIError(f"GEN_MODEL= is needed: {client.base_url}models lists "
                        f"{', '.join(listed[:20]) if listed else 'no models'}")


def _failure(err: Exception, timeout: float, max_retries: int) -> str:
    import openai

    attempts = f"{max_retries + 1} attempt(s)"
    if isinstance(err, openai.APITimeoutError):
        return f"timed out after {timeout:g} s, {attempts}"
    if isinstance(err, openai.APIConnectionError):
        return f"connection failed ({type(err.__cause__ or err).__name__}), {attempts}"
    if isinstance(err, openai.APIStatusError):
        message = " ".join(str(getattr(err, "message", err)).split())[:160]
        retried = err.status_code in (408, 409, 429) or err.status_code >= 500  # what the client retries
        return f"HTTP {err.status_code}: {message}" + (f", {attempts}" if retried else "")
    return f"bad answer: {err}"


async def ask_all(requests: Sequence[Request], client, journal: Journal, *, concurrency: int,
                  timeout: float, max_retries: int, progress: bool = True) -> Tally:
    """Ask each request (at most ``concurrency`` at a time), journalling every answer as it arrives."""
    import openai
    from tqdm import tqdm

    tally = Tally()
    queue = list(reversed(requests))
    bar = tqdm(total=len(requests), desc=STEP, unit="row", file=sys.stderr, mininterval=1.0,
               smoothing=0.1, disable=not progress or not requests)

    async def ask(request: Request) -> None:
        try:
            raw = await client.chat.completions.with_raw_response.create(**request.body)
            completion = raw.parse()
            choice = completion.choices[0]
            reply = choice.message.content
            if not isinstance(reply, str):
                raise ValueError("the reply has no text content")
        except openai.APIStatusError as err:
            if err.status_code in FATAL_STATUSES:
                raise FatalAPIError(f"HTTP {err.status_code} from {client.base_url}: "
                                    f"{FATAL_STATUSES[err.status_code]}: {err.message}") from None
            tally.failed[request.key] = _failure(err, timeout, max_retries)
        except (openai.APIConnectionError, ValueError, IndexError, AttributeError) as err:
            tally.failed[request.key] = _failure(err, timeout, max_retries)
        else:
            usage = completion.usage
            prompt_tokens = getattr(usage, "prompt_tokens", 0) or 0
            completion_tokens = getattr(usage, "completion_tokens", 0) or 0
            journal.append({"key": request.key, "user": request.user, "style": request.style,
                            "sample": request.sample, "reply": reply, "finish_reason": choice.finish_reason,
                            "model": completion.model, "prompt_tokens": prompt_tokens,
                            "completion_tokens": completion_tokens, "retries": raw.retries_taken,
                            "time": round(time.time(), 3)})
            tally.answered += 1
            tally.retries += raw.retries_taken
            tally.prompt_tokens += prompt_tokens
            tally.completion_tokens += completion_tokens
        bar.update(1)
        bar.set_postfix_str(f"tokens {tally.prompt_tokens}+{tally.completion_tokens}, "
                            f"retries {tally.retries}, failed {len(tally.failed)}", refresh=False)

    async def worker() -> None:
        while queue:
            await ask(queue.pop())

    workers = [asyncio.ensure_future(worker()) for _ in range(max(1, min(concurrency, len(requests))))]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        bar.close()
    return tally


# ============================================================================ validation

@dataclass(frozen=True)
class Answer:
    """A reply to validate (in output order)."""

    user: str
    style: str
    reply: str
    finish_reason: str | None = "stop"


def _squash(text: str) -> str:
    """For phrase matching: NFKC, lower case, no whitespace or punctuation."""
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch for ch in text if not ch.isspace() and not unicodedata.category(ch).startswith("P"))


def _label_leak(reply: str, labels: Sequence[str]) -> str | None:
    """A style label heading the reply (``温柔：...``, ``【毒舌】``, a label line) or named as a style."""
    text = unicodedata.normalize("NFKC", reply).strip()
    first = text.split("\n", 1)[0].strip()
    for label in labels:
        name = re.escape(label)
        opener = (re.match(rf"^[\[【(「\"'“]\s*{name}\s*[\]】)」\"'”]", first)
                  or re.match(rf"^{name}\s*([:：\-—|]|$)", first))
        if opener or re.search(rf"{re.escape(label)}(风格|模式|语气|版本?)", text) or first == label:
            return label
    return None


def _common_run(a: str, b: str) -> str:
    match = difflib.SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b))
    return a[match.a: match.a + match.size]


def rule_problems(answer: Answer, style: Style, labels: Sequence[str]) -> list[str]:
    """Why one reply breaks its style's rules (every rule but the judge and near-duplicates)."""
    from style_tune.eval.style_metrics import char_length, cjk_share, sanity_problems

    rules = style.rules
    reply = answer.reply.strip()
    if not reply:
        return ["empty: no reply text"]
    problems = []
    if rules.get("reject_cut_off") and answer.finish_reason == "length":
        problems.append("cut off: at max_tokens (finish_reason length)")
    length = char_length(reply)
    if rules.get("min_chars") is not None and length < rules["min_chars"]:
        problems.append(f"too short: {length} < {rules['min_chars']} characters")
    if rules.get("max_chars") is not None and length > rules["max_chars"]:
        problems.append(f"too long: {length} > {rules['max_chars']} characters")
    squashed = _squash(reply)
    for phrase in rules.get("refusals") or ():
        if _squash(phrase) in squashed:
            problems.append(f"refusal or boilerplate: {phrase}")
            break
    leaked = _label_leak(reply, labels)
    if leaked:
        problems.append(f"style label leaks: {leaked}")
    if rules.get("leak_min_chars"):
        normal = unicodedata.normalize("NFKC", reply)
        sources = [("prompt leaks", style.prompt), ("prompt leaks", style.system),
                   *(("copies a few-shot example", reply) for _, reply in style.examples)]
        for what, source in sources:
            run = _common_run(normal, unicodedata.normalize("NFKC", source)).strip()
            if len(run) >= rules["leak_min_chars"]:
                problems.append(f"{what}: {run!r}")
                break
    if rules.get("min_cjk_share") is not None:
        share = cjk_share(reply)
        if share < rules["min_cjk_share"]:
            problems.append(f"not mostly Chinese: CJK share {share:.2f} < {rules['min_cjk_share']}")
    if rules.get("sanity"):
        # the evaluation's gates; script and label lines are the checks above
        problems += [f"sanity: {p}" for p in sanity_problems(reply, answer.user)
                     if p not in ("empty", "script", "label_line")]
    for phrase in rules.get("forbidden") or ():
        if _squash(phrase) in squashed:
            problems.append(f"forbidden phrase: {phrase}")
    markers = rules.get("required_any") or ()
    if markers and not any(_squash(m) in squashed for m in markers):
        problems.append(f"no marker: none of {', '.join(markers)}")
    return problems


def judge_rows(path: Path) -> list[dict[str, str]]:
    """The judge's training rows (``user,style,assistant``, styles of style_tune.core.prompts); every
    style needs replies. :class:`InputError` otherwise (checked before anything is asked)."""
    from style_tune.core.prompts import STYLES

    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows = [row for row in csv.DictReader(handle) if row.get("style") in STYLES]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError([f"{path}: cannot read the judge's data (--judge-data): {err}"]) from None
    missing = sorted(set(STYLES) - {row["style"] for row in rows})
    if missing or not all(row.get("user") and row.get("assistant") for row in rows):
        raise InputError([f"{path}: the style judge needs a user,style,assistant CSV with replies of "
                          f"every style ({', '.join(STYLES)}; none of {', '.join(missing) or '-'}): give "
                          "one with GEN_ARGS=\"--judge-data FILE\", or \"judge\": null in the styles file"])
    return rows


def load_judge(path: Path, seed: int):
    """The evaluation's style judge, trained on a ``user,style,assistant`` CSV (the shipped data).

    StyleJudge.from_split reads the split tool's JSON; the CSV's rows are given to it in that
    format (controllable mode, so the replies are the cells as they are).
    """
    from style_tune.core.prompts import system_text
    from style_tune.eval.style_metrics import StyleJudge

    turns = [{"conversation": [{"system": system_text("controllable", row["style"]), "input": row["user"],
                                "output": row["assistant"]}]} for row in judge_rows(path)]
    with tempfile.TemporaryDirectory() as tmp:
        split = Path(tmp) / "train.json"
        split.write_text(json.dumps(turns, ensure_ascii=False), encoding="utf-8")
        return StyleJudge.from_split(split, seed=seed)


def judge_verdicts(judge, texts: Sequence[str]) -> list[tuple[str | None, float]]:
    """(verdict, its probability) per text: a style, NEITHER, or None when there is nothing to judge."""
    verdicts = judge.predict(list(texts))
    if not texts:
        return []
    probabilities = judge.classifier.predict_proba(judge.vectorizer.transform(list(texts)))
    classes = [str(c) for c in judge.classifier.classes_]
    return [(v, float(row[classes.index(v)]) if v is not None else 0.0)
            for v, row in zip(verdicts, probabilities, strict=True)]


def near_duplicates(texts: Sequence[str], candidates: Sequence[int], threshold: float,
                    chunk: int = 256) -> dict[int, tuple[int, float]]:
    """For each candidate (in order) that is a near-duplicate of an earlier *kept* candidate: (that
    one, similarity). The data check's measure (style data's near-duplicate gate): the Jaccard index
    of the character-bigram sets, a pair above ``threshold``; computed as sparse products."""
    if len(candidates) < 2:
        return {}
    import numpy as np
    from sklearn.feature_extraction.text import CountVectorizer

    sets = CountVectorizer(analyzer=bigrams, binary=True).fit_transform([texts[i] for i in candidates])
    sizes = np.asarray(sets.sum(axis=1)).ravel().astype(np.float64)
    kept = np.zeros(len(candidates), dtype=bool)
    found: dict[int, tuple[int, float]] = {}
    for start in range(0, len(candidates), chunk):
        shared = (sets[start: start + chunk] @ sets.T).toarray().astype(np.float64)
        for offset, row in enumerate(shared):
            i = start + offset
            union = sizes[i] + sizes[:i] - row[:i]
            jaccard = np.divide(row[:i], union, out=np.zeros(i), where=union > 0)
            earlier = np.flatnonzero(kept[:i] & (jaccard > threshold))
            if earlier.size:
                j = int(earlier[np.argmax(jaccard[earlier])])
                found[candidates[i]] = (candidates[j], float(jaccard[j]))
            else:
                kept[i] = True
    return found


def validate(answers: Sequence[Answer], styles: StyleSet, get_judge: Callable[[], Any] | None = None
             ) -> list[list[str]]:
    """The reasons each reply is rejected ([] = accepted), in the order of ``answers``.

    Per-reply rules first; the judge (``get_judge()``, called only when some reply needs it) reads the
    replies that pass them; a reply that passes everything is then compared with the earlier accepted
    ones (near-duplicates keep the first). The judge knows the styles of style_tune.core.prompts; replies of
    any other style are not judged."""
    from style_tune.core.prompts import STYLES as JUDGED_STYLES

    labels = styles.labels
    reasons = [rule_problems(a, styles[a.style], labels) for a in answers]
    asked = [i for i, a in enumerate(answers) if not reasons[i] and a.style in JUDGED_STYLES
             and (styles[a.style].rules.get("judge") or "off") != "off"]
    if asked and get_judge is not None:
        judge = get_judge()
        for i, (verdict, p) in zip(asked, judge_verdicts(judge, [answers[i].reply for i in asked]),
                                   strict=True):
            style = answers[i].style
            if verdict is not None and verdict in labels and verdict != style:
                reasons[i].append(f"judge: reads as {verdict} (p={p:.2f})")
            elif styles[style].rules["judge"] == "strict" and verdict != style:
                shown = "nothing it knows" if verdict is None else f"neither style (p={p:.2f})"
                reasons[i].append(f"judge: {shown}")
    for label in labels:  # like the data check: replies of the same style are compared
        threshold = styles[label].rules.get("near_duplicate")
        candidates = [i for i, a in enumerate(answers) if a.style == label and not reasons[i]]
        if threshold is None:
            continue
        for i, (j, similarity) in near_duplicates([a.reply.strip() for a in answers], candidates,
                                                  threshold).items():
            reasons[i].append(f"near-duplicate: {similarity:.2f} similar to the {answers[j].style} reply to "
                              f"{answers[j].user[:30]!r}")
    return reasons


# ============================================================================ the run

def csv_text(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()


def remove_stale(out: Path, rejected: Path) -> None:
    """An earlier run's outputs (a rerun must not leave them looking current if it is interrupted)
    and the temporaries an interrupted write of them left (said in one line)."""
    for path in (out, rejected):
        path.unlink(missing_ok=True)
        sweep_temporaries(path, STEP)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m style_tune.data.generate ({STEP})",
                                     description="Style replies for your prompts through an "
                                     "OpenAI-compatible API: resumable, validated (docs/gen-data.md).")
    parser.add_argument("prompts", metavar="PROMPTS", help="one prompt a line, or .csv / .jsonl")
    parser.add_argument("--out", type=Path, required=True, help="the output CSV (user,style,assistant)")
    parser.add_argument("--api-base", default=DEFAULT_API_BASE, help=f"default {DEFAULT_API_BASE}")
    parser.add_argument("--model", default="", help="model name (default: the one the server lists)")
    parser.add_argument("--styles", default="", help="styles to ask, comma-separated (default: all)")
    parser.add_argument("--samples", type=int, default=1, help="replies per prompt and style (default 1)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per attempt (default 120)")
    parser.add_argument("--max-retries", type=int, default=5, help="retries per request (default 5)")
    parser.add_argument("--column", default="user", help="the prompt column/field of a CSV/JSONL (user)")
    parser.add_argument("--styles-file", type=Path, help="styles definition (default style_data/styles.json)")
    parser.add_argument("--judge-data", type=Path, default=DEFAULT_JUDGE_DATA,
                        help="user,style,assistant CSV the style judge learns from (default: shipped data)")
    parser.add_argument("--seed", type=int, default=42, help="request seeds and the judge's (default 42)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.prompts:  # make gen-data without PROMPTS=
        parser.exit(EXIT_BAD_INPUT, f"{STEP}: give PROMPTS=FILE (one prompt a line, or .csv/.jsonl "
                                    "with the prompt in column PROMPT_COLUMN=)\n")
    args.prompts = Path(args.prompts)
    for name in ("samples", "concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.timeout <= 0 or args.max_retries < 0:
        parser.error("--timeout must be positive and --max-retries not negative")
    if args.out.suffix.lower() != ".csv":
        parser.error(f"--out (OUT=) must end in .csv, got {args.out}")
    return args


async def run(args: argparse.Namespace, styles: StyleSet, labels: Sequence[str], prompts: Prompts) -> int:
    out, rejected_path = args.out, side_path(args.out, ".rejected.csv")
    journal = Journal(side_path(args.out, ".journal.jsonl"))
    client = make_client(args.api_base, args.timeout, args.max_retries)
    try:
        model = await pick_model(client, args.model)
    except FatalAPIError:
        await client.close()
        raise
    requests = plan_requests(prompts.kept, styles, labels, args.samples, model, args.seed)
    answers = journal.open()
    try:
        remove_stale(out, rejected_path)
        if journal.dropped_partial or journal.unreadable:
            print(f"{STEP}: {journal.path}: dropped {int(journal.dropped_partial)} line cut short by a kill "
                  f"and {journal.unreadable} unreadable line(s); those requests are asked again",
                  file=sys.stderr)
        pending = [r for r in requests if r.key not in answers]
        others = len(answers) - (len(requests) - len(pending))
        if others:
            print(f"{STEP}: {journal.path}: {others} answer(s) to other requests (other prompts, styles or "
                  "settings) are kept there and not used", file=sys.stderr)
        print(f"{STEP}: {len(requests)} requests to {client.base_url} (model {model}, styles "
              f"{','.join(labels)}, {args.samples} sample(s)); {len(requests) - len(pending)} answered in "
              f"{journal.path}, asking {len(pending)}", file=sys.stderr, flush=True)

        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(ask_all(pending, client, journal, concurrency=args.concurrency,
                                             timeout=args.timeout, max_retries=args.max_retries,
                                             progress=not args.no_progress))
        stopped = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda s=sig: (stopped.append(s), task.cancel()))
        try:
            tally = await task
        except asyncio.CancelledError:
            if not stopped:
                raise
            print(f"\n{STEP}: stopped ({signal.Signals(stopped[0]).name}); every answer so far is in "
                  f"{journal.path}: run the same command again to ask the rest", file=sys.stderr)
            return EXIT_INTERRUPTED
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
    finally:
        journal.close()
        await client.close()

    answers = {**answers, **_read_journal(journal.path)}
    return finish(requests, answers, tally, styles, args, out, rejected_path)


def _read_journal(path: Path) -> dict[str, dict]:
    answers = {}
    for line in path.read_bytes().splitlines():
        try:
            entry = json.loads(line)
            answers[entry["key"]] = entry
        except (ValueError, KeyError, TypeError):
            continue
    return answers


def finish(requests: Sequence[Request], answers: dict[str, dict], tally: Tally, styles: StyleSet,
           args: argparse.Namespace, out: Path, rejected_path: Path) -> int:
    """Validate every answered request, write OUT and OUT.rejected.csv atomically, print the counts."""
    answered = [r for r in requests if r.key in answers]
    items = [Answer(r.user, r.style, answers[r.key]["reply"], answers[r.key].get("finish_reason"))
             for r in answered]
    reasons = validate(items, styles, lambda: load_judge(args.judge_data, args.seed))
    accepted = [(a.user, a.style, a.reply.strip()) for a, why in zip(items, reasons, strict=True) if not why]
    rejected = [(a.user, a.style, a.reply.strip(), "; ".join(why))
                for a, why in zip(items, reasons, strict=True) if why]
    write_files_atomically({out: csv_text(OUTPUT_COLUMNS, accepted),
                            rejected_path: csv_text(REJECTED_COLUMNS, rejected)})
    failed = len(requests) - len(answered)
    first_reasons = Counter(why[0].split(":")[0] for why in reasons if why)
    if first_reasons:
        shown = ", ".join(f"{count} {reason}" for reason, count in first_reasons.most_common())
        print(f"{STEP}: rejected (first reason): {shown}; review them in {rejected_path}", file=sys.stderr)
    if tally.failed:
        shown = Counter(tally.failed.values()).most_common(3)
        print(f"{STEP}: failed: " + "; ".join(f"{count} x {why}" for why, count in shown)
              + " (run the same command again to ask them again)", file=sys.stderr)
    print(f"{STEP}: this run: {tally.answered} answered, {tally.retries} retries, tokens "
          f"{tally.prompt_tokens} prompt + {tally.completion_tokens} completion; wrote {out} and "
          f"{rejected_path}", file=sys.stderr)
    sys.stderr.flush()
    print(f"{STEP}: requested {len(requests)}, accepted {len(accepted)}, rejected {len(rejected)}, "
          f"failed {failed}", flush=True)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        styles = load_styles(args.styles_file)
        labels = [styles.resolve(name) for name in args.styles.replace("，", ",").split(",") if name.strip()]
        labels = list(dict.fromkeys(labels)) or list(styles.labels)
        if any((styles[label].rules.get("judge") or "off") != "off" for label in labels):
            if not args.judge_data.is_file():
                raise InputError([f"{args.judge_data}: no such file (--judge-data: the CSV the style judge "
                                  "learns from)"])
            judge_rows(args.judge_data)
        prompts = clean_prompts(read_prompts(args.prompts, args.column), styles.prompt_bounds)
        print(prompts.summary(args.prompts), file=sys.stderr)
        if not prompts.kept:
            raise InputError([f"{args.prompts}: no prompt left after cleaning"])
        return asyncio.run(run(args, styles, labels, prompts))
    except (InputError, StylesError) as err:
        problems = err.problems if isinstance(err, InputError) else [str(err)]
        for problem in problems[:MAX_PRINTED_PROBLEMS]:
            print(f"{STEP}: {problem}", file=sys.stderr)
        if len(problems) > MAX_PRINTED_PROBLEMS:
            print(f"{STEP}: ... and {len(problems) - MAX_PRINTED_PROBLEMS} more problem(s)", file=sys.stderr)
        return EXIT_BAD_INPUT
    except FatalAPIError as err:
        print(f"{STEP}: error: {err}", file=sys.stderr)
        return EXIT_API
    except KeyboardInterrupt:  # outside the asking (which stops by itself): nothing to lose
        print(f"\n{STEP}: stopped; every answer so far is in the journal: run the same command again",
              file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
