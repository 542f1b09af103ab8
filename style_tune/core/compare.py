"""The models a comparison names, one syntax for every step that compares models (standard library only):
the blind page (`make webui COMPARE=...`) and the style evaluation whose replies the pairwise judge reads
(`make eval-style COMPARE=...`, then `make judge-pairs`).

    COMPARE="NAME=WHERE NAME=WHERE ..."        two or more, separated by spaces, names distinct

WHERE is either
- a model directory (it holds config.json): the page starts the CPU server for it; eval-style loads it
  with transformers, as it loads BASE and TUNED;
- an OpenAI-compatible base URL ending in ``/v1``, optionally followed by ``#MODEL``, the model to ask
  there (default: the first model the endpoint lists), e.g. ``api=http://gpu-box:23333/v1#style-tune``;
  the key comes from OPENAI_API_KEY.

A NAME is a letter or digit, then letters, digits, ``_``, ``.`` or ``-`` (it names a folder of the
OpenCompass run and a column of the report). The Makefile turns a bare name of `make demo`'s models
(``base``, ``sft``, ``dpo``, ``orpo``: ``COMPARE="base sft dpo orpo"``) into ``NAME=DIR`` first; without
COMPARE, ``base=BASE tuned=TUNED`` (the two-model shorthand: BASE_API/TUNED_API, WEBUI_BASE/WEBUI_TUNED
for the page).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: What a name may be: it becomes a folder name (OpenCompass's predictions/NAME/) and a table column.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
#: The bare names the Makefile resolves (make demo's models; see the Makefile's DEMO_MODEL_*).
DEMO_NAMES = ("base", "sft", "dpo", "orpo")
URL_SCHEMES = ("http://", "https://")


@dataclass(frozen=True)
class Candidate:
    """One compared model: its NAME, WHERE it is (a directory or a URL) and, for a URL, the MODEL asked."""

    name: str
    where: str
    model: str = ""

    @property
    def is_api(self) -> bool:
        return self.where.startswith(URL_SCHEMES)

    def __str__(self) -> str:
        return f"{self.name}={self.where}" + (f"#{self.model}" if self.model else "")


def parse_compare(spec: str) -> list[Candidate]:
    """The candidates of a COMPARE spec, in its order; ValueError saying which word is wrong and how."""
    found: list[Candidate] = []
    for word in spec.split():
        name, eq, where = word.partition("=")
        if not eq or not where:
            bare = (f" (a bare name is one of make demo's models: {', '.join(DEMO_NAMES)}, through make)"
                    if not eq else "")
            raise ValueError(f"{word!r} names no model: write NAME=DIR or NAME=URL/v1[#MODEL]{bare}")
        if not NAME.fullmatch(name):
            raise ValueError(f"{word!r}: the name {name!r} must be letters, digits, _ . - (a letter or "
                             "digit first)")
        model = ""
        if where.startswith(URL_SCHEMES):
            where, _, model = where.partition("#")
            if not where.rstrip("/").endswith("/v1"):
                raise ValueError(f"{word!r}: an OpenAI-compatible URL ends in /v1 (http://host:port/v1)")
            where = where.rstrip("/")
        if any(c.name == name for c in found):
            raise ValueError(f"{word!r}: the name {name!r} is given twice; each model needs its own name")
        found.append(Candidate(name, where, model))
    if len(found) < 2:
        raise ValueError(f"{spec.strip()!r} names {len(found)} model(s): a comparison needs two or more "
                         "(NAME=DIR or NAME=URL/v1[#MODEL], separated by spaces)")
    return found


def format_compare(candidates: list[Candidate]) -> str:
    """The spec that :func:`parse_compare` reads back as CANDIDATES."""
    return " ".join(map(str, candidates))
