"""The dialogue styles, defined once in a data file (``style_data/styles.json``). Standard library only.

    from style_tune.core.styles import load_styles

    styles = load_styles()            # the shipped file, or $STYLE_TUNE_STYLES
    styles["温柔"].system             # the controllable-mode system text
    styles["毒舌"].rules["forbidden"]   # that style's validation rules, defaults filled in

Per style the file holds its label (the CSV's ``style`` column), an ASCII slug (file names, ``STYLE=``),
the controllable-mode system text, what `make gen-data` sends (``generation``: prompt, few-shot
examples, sampling settings) and its validation rules (``validation``); ``defaults`` holds the
generation settings and rules every style starts from, and the bounds for input prompts. JSON, so
that every env's Python (3.10 has no tomllib) reads it without a package. docs/gen-data.md
documents every field.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from style_tune import REPO_ROOT

#: The shipped styles; ``STYLE_TUNE_STYLES=FILE`` points every step at another file.
STYLES_FILE = REPO_ROOT / "style_data" / "styles.json"
STYLES_ENV = "STYLE_TUNE_STYLES"

#: Judge modes: reject a reply the judge reads as another style ("other"), also one it reads as
#: neither style ("strict"), or do not ask the judge ("off").
JUDGE_MODES = ("other", "strict", "off")
_SLUG = re.compile(r"^[a-z][a-z0-9_-]*$")

#: Every validation rule, with the type its value must have (None: the check is off).
RULE_TYPES: dict[str, tuple[type, ...]] = {
    "min_chars": (int,), "max_chars": (int,), "min_cjk_share": (int, float), "reject_cut_off": (bool,),
    "refusals": (list,), "leak_min_chars": (int,), "sanity": (bool,), "near_duplicate": (int, float),
    "judge": (str,), "forbidden": (list,), "required_any": (list,),
}
GENERATION_TYPES: dict[str, tuple[type, ...]] = {
    "temperature": (int, float), "top_p": (int, float), "max_tokens": (int,),
}
PROMPT_TYPES: dict[str, tuple[type, ...]] = {"min_chars": (int,), "max_chars": (int,)}


class StylesError(ValueError):
    """The styles file is missing, not JSON, or a field is wrong: the message names file and field."""


@dataclass(frozen=True)
class Style:
    """One style: see the module docstring."""

    label: str
    slug: str
    system: str
    prompt: str
    examples: tuple[tuple[str, str], ...]
    settings: dict[str, Any]
    rules: dict[str, Any]


@dataclass(frozen=True)
class StyleSet:
    """The styles of one file, in file order, and the bounds for input prompts."""

    path: Path
    styles: dict[str, Style]
    prompt_bounds: dict[str, int | None]

    def __getitem__(self, label: str) -> Style:
        return self.styles[label]

    def __iter__(self) -> Iterator[Style]:
        return iter(self.styles.values())

    def __len__(self) -> int:
        return len(self.styles)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.styles)

    def resolve(self, name: str) -> str:
        """A style label from its label or its slug (``gentle`` -> ``温柔``)."""
        name = name.strip()
        for style in self:
            if name == style.label or name.lower() == style.slug:
                return style.label
        known = ", ".join(f"{style.label} ({style.slug})" for style in self)
        raise StylesError(f"unknown style {name!r}; {self.path} defines {known}")


def styles_path(path: str | Path | None = None) -> Path:
    """The styles file to read: ``path``, else $STYLE_TUNE_STYLES, else the shipped one."""
    return Path(path or os.environ.get(STYLES_ENV) or STYLES_FILE)


def _check_fields(where: str, value: Any, types: dict[str, tuple[type, ...]]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise StylesError(f"{where}: must be a JSON object")
    unknown = sorted(set(value) - set(types))
    if unknown:
        raise StylesError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(types)}")
    for key, item in value.items():
        allowed = types[key]
        bad_type = isinstance(item, bool) and bool not in allowed
        if item is not None and (bad_type or not isinstance(item, allowed)):
            names = " or ".join(t.__name__ for t in allowed)
            shown = json.dumps(item, ensure_ascii=False)
            raise StylesError(f"{where}.{key}: must be {names} or null, got {shown}")
        if isinstance(item, list) and not all(isinstance(x, str) and x.strip() for x in item):
            raise StylesError(f"{where}.{key}: must be a list of non-empty strings")
    return dict(value)


def _text(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise StylesError(f"{where}: missing or not a non-empty string")
    return value.strip()


def parse_styles(data: Any, path: Path) -> StyleSet:
    """Check the parsed JSON and build the :class:`StyleSet`; :class:`StylesError` names the field."""
    if not isinstance(data, dict):
        raise StylesError(f"{path}: must hold a JSON object with 'defaults' and 'styles'")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise StylesError(f"{path}: defaults: must be a JSON object")
    bounds = _check_fields(f"{path}: defaults.prompts", defaults.get("prompts", {}), PROMPT_TYPES)
    base_settings = _check_fields(f"{path}: defaults.generation", defaults.get("generation", {}),
                                  GENERATION_TYPES)
    base_rules = _check_fields(f"{path}: defaults.validation", defaults.get("validation", {}), RULE_TYPES)
    entries = data.get("styles")
    if not isinstance(entries, list) or not entries:
        raise StylesError(f"{path}: styles: must be a non-empty list of style objects")
    styles: dict[str, Style] = {}
    for i, entry in enumerate(entries):
        where = f"{path}: styles[{i}]"
        if not isinstance(entry, dict):
            raise StylesError(f"{where}: must be a JSON object")
        label = _text(f"{where}.label", entry.get("label"))
        slug = _text(f"{where}.slug", entry.get("slug"))
        if not _SLUG.match(slug):
            raise StylesError(f"{where}.slug: {slug!r} must be lower-case ASCII (a-z, 0-9, _ or -)")
        if label in styles or any(slug == other.slug for other in styles.values()):
            raise StylesError(f"{where}: label {label!r} or slug {slug!r} is used by an earlier style")
        generation = entry.get("generation")
        if not isinstance(generation, dict):
            raise StylesError(f"{where}.generation: must be a JSON object (prompt, examples, settings)")
        prompt = _text(f"{where}.generation.prompt", generation.get("prompt"))
        examples = []
        raw_examples = generation.get("examples", [])
        if not isinstance(raw_examples, list):
            raise StylesError(f"{where}.generation.examples: must be a list of {{user, assistant}} objects")
        for j, example in enumerate(raw_examples):
            at = f"{where}.generation.examples[{j}]"
            if not isinstance(example, dict):
                raise StylesError(f"{at}: must be an object with user and assistant")
            examples.append((_text(f"{at}.user", example.get("user")),
                             _text(f"{at}.assistant", example.get("assistant"))))
        settings = {k: v for k, v in generation.items() if k not in ("prompt", "examples")}
        settings = {**base_settings, **_check_fields(f"{where}.generation", settings, GENERATION_TYPES)}
        own_rules = _check_fields(f"{where}.validation", entry.get("validation", {}), RULE_TYPES)
        rules = {**base_rules, **own_rules}
        if rules.get("judge") not in (None, *JUDGE_MODES):
            raise StylesError(f"{where}.validation.judge: {rules['judge']!r} is not one of "
                              f"{', '.join(JUDGE_MODES)}")
        styles[label] = Style(label=label, slug=slug, system=_text(f"{where}.system", entry.get("system")),
                              prompt=prompt, examples=tuple(examples), settings=settings, rules=rules)
    return StyleSet(path=path, styles=styles, prompt_bounds=bounds)


def load_styles(path: str | Path | None = None) -> StyleSet:
    """Read and check a styles file (see :func:`styles_path`); :class:`StylesError` on any problem."""
    path = styles_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StylesError(f"{path}: no such styles file (STYLE_TUNE_STYLES= names another)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise StylesError(f"{path}: cannot read: {err}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise StylesError(f"{path}:{err.lineno}: column {err.colno}: not valid JSON: {err.msg}") from None
    return parse_styles(data, path)
