"""COMPARE=, the one way to name the models a comparison takes (style_tune/core/compare.py), and how the
Makefile hands it to the page and to eval-style: make demo's models by bare name, the BASE/TUNED shorthand."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from style_tune.core.compare import Candidate, format_compare, parse_compare

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_a_spec_names_directories_and_apis() -> None:
    spec = "base=models/a sft=/abs/b gpt=https://api.example.com/v1#gpt-4o lm=http://gpu:23333/v1/"
    found = parse_compare(spec)
    assert found == [Candidate("base", "models/a"), Candidate("sft", "/abs/b"),
                     Candidate("gpt", "https://api.example.com/v1", "gpt-4o"),
                     Candidate("lm", "http://gpu:23333/v1")]
    assert [c.is_api for c in found] == [False, False, True, True]
    assert parse_compare(format_compare(found)) == found
    assert parse_compare("  a=x\n b=y ") == [Candidate("a", "x"), Candidate("b", "y")]


@pytest.mark.parametrize(("spec", "problem"), [
    ("base=models/a", "names 1 model(s): a comparison needs two or more"),
    ("", "names 0 model(s)"),
    ("base=models/a base=models/b", "the name 'base' is given twice"),
    ("base sft=models/b", "'base' names no model: write NAME=DIR or NAME=URL/v1[#MODEL] (a bare name is one "
                          "of make demo's models"),
    ("foo= sft=models/b", "'foo=' names no model"),
    ("a/b=models/a sft=models/b", "the name 'a/b' must be letters"),
    ("-x=models/a sft=models/b", "the name '-x' must be letters"),
    ("a=http://host:1/chat#m b=models/b", "an OpenAI-compatible URL ends in /v1"),
])
def test_a_bad_spec_says_which_word_and_what_to_write(spec: str, problem: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_compare(spec)
    assert problem in str(err.value)


def make_n(*args: str) -> str:
    proc = subprocess.run(["make", "-n", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "MAKEFLAGS": ""})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def option(recipe: str, name: str) -> str:
    """The value of option NAME in the one command of RECIPE (make -n's output) that has it."""
    commands = [shlex.split(line) for line in recipe.replace("\\\n", " ").splitlines() if name in line]
    words = next(words for words in commands if name in words)
    return words[words.index(name) + 1]


def test_make_passes_one_spec_with_make_demos_models_by_name() -> None:
    """Bare names are make demo's models (this MODE and seed); NAME=... goes through as written; both the page
    and eval-style get the same spec. Without COMPARE: base and tuned, as before."""
    args = ("MODE=controllable", "DEMO_SEED=1", "COMPARE=base sft dpo orpo gpt=https://h/v1#m x=/m/x")
    want = ("base=models/tiny-qwen2.5-demo-base-seed1 sft=models/tiny-qwen2.5-demo-controllable-seed1-merged "
            "dpo=models/tiny-qwen2.5-demo-controllable-seed1-dpo-merged "
            "orpo=models/tiny-qwen2.5-demo-controllable-seed1-orpo-merged gpt=https://h/v1#m x=/m/x")
    webui = make_n("webui", *args)
    assert option(webui, "--compare") == want and "--base-model" not in webui
    style = make_n("eval-style", *args)
    assert option(style, "--compare") == want
    assert [c.name for c in parse_compare(want)] == ["base", "sft", "dpo", "orpo", "gpt", "x"]
    # the two-model shorthand
    assert option(make_n("eval-style", "BASE=/m/b", "TUNED=/m/t"), "--compare") == "base=/m/b tuned=/m/t"
    page = make_n("webui", "WEBUI_BASE=/m/b", "TUNED_API=http://h/v1")
    assert "--compare" not in page and option(page, "--base-model") == "/m/b"
    assert option(page, "--tuned-api") == "http://h/v1"
    assert option(make_n("webui", "WEBUI_AUTH_FILE=/etc/raters"), "--auth-file") == "/etc/raters"


def test_what_a_bad_spec_says_in_full() -> None:
    def said(spec: str) -> str:
        with pytest.raises(ValueError) as err:
            parse_compare(spec)
        return str(err.value)

    assert said("base sft=m") == ("'base' names no model: write NAME=DIR or NAME=URL/v1[#MODEL] (a bare name "
                                  "is one of make demo's models: base, sft, dpo, orpo, through make)")
    assert said("foo= sft=m") == "'foo=' names no model: write NAME=DIR or NAME=URL/v1[#MODEL]"
    assert said("-x=m sft=m") == ("'-x=m': the name '-x' must be letters, digits, _ . - (a letter or digit "
                                  "first)")
    assert said("a=m") == ("'a=m' names 1 model(s): a comparison needs two or more (NAME=DIR or "
                           "NAME=URL/v1[#MODEL], separated by spaces)")
    assert said("a=http://h/v1X b=m") == ("'a=http://h/v1X': an OpenAI-compatible URL ends in /v1 "
                                          "(http://host:port/v1)")
    # a directory may hold "=": only the first one names
    assert parse_compare("a=/data/run=2 b=m") == [Candidate("a", "/data/run=2"), Candidate("b", "m")]
