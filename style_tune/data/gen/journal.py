"""gen-data's requests and their journal: what a run asks, and the answers it has so far (resume).

One request per (prompt, style, sample): the style's generation prompt as the system message, its
few-shot examples as earlier turns, then the prompt; its sampling settings and a seed derived from
--seed. Each is keyed by a hash of everything its answer depends on (model, messages, settings, seed).

Every answer is appended to ``OUT.journal.jsonl`` the moment it arrives, keyed so. A rerun (after
Ctrl-C, SIGKILL, a crash or failed rows) reads the journal and asks only what has no answer there; a
line cut short by a kill is dropped.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from style_tune.core.styles import Style, StyleSet
from style_tune.data.gen import InputError


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
    requests: list[Request] = []
    for user in prompts:
        for label in labels:
            style = styles[label]
            for sample in range(samples):
                body = {"model": model, "messages": style_messages(style, user),
                        **{k: v for k, v in style.settings.items() if v is not None}}
                body["seed"] = int(_digest([seed, body, sample])[:8], 16) & 0x7FFFFFFF
                requests.append(Request(len(requests), user, label, sample, body, _digest(body)))
    return requests


def _answers(lines: Iterable[bytes]) -> tuple[dict[str, dict], int]:
    """The answers by key (later lines win), and how many lines could not be read."""
    answers: dict[str, dict] = {}
    unreadable = 0
    for line in lines:
        try:
            entry = json.loads(line)
            answers[entry["key"]] = entry
        except (ValueError, KeyError, TypeError):
            unreadable += 1
    return answers, unreadable


def read_journal(path: Path) -> dict[str, dict]:
    """The answers in a journal, by key; unreadable lines skipped (:meth:`Journal.open` counts them)."""
    return _answers(path.read_bytes().splitlines())[0]


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
        answers, unreadable = _answers(data[:end].splitlines())
        self.unreadable += unreadable
        return answers

    def append(self, entry: dict) -> None:
        assert self.fd is not None
        os.write(self.fd, (json.dumps(entry, ensure_ascii=False) + "\n").encode())

    def close(self) -> None:
        if self.fd is not None:
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = None

