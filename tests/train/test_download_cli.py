"""tools/download_model.sh calls the `modelscope` command in its current form (modelscope-hub 0.5).

Parsed by the installed modelscope-hub's own parser and argument normalisation (no network): the form
the script uses draws no deprecation warning; the old `--model ... --local_dir` form does.
"""

from __future__ import annotations

import re
import shlex
import warnings
from pathlib import Path

import pytest
from modelscope_hub.cli.compat import normalize_download_args
from modelscope_hub.cli.main import _build_parser

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_ID, DIR = "Qwen/Qwen2.5-1.5B-Instruct", "/tmp/models/x"


def script_download_args() -> list[str]:
    """The arguments tools/download_model.sh gives `modelscope`, with its variables filled in."""
    script = (REPO_ROOT / "tools/download_model.sh").read_text()
    line = re.search(r'^"\$modelscope" (download [^#\n]*)', script, re.M)
    assert line, "no modelscope download line in tools/download_model.sh"
    return [a.replace("$model_id", MODEL_ID).replace("$tmp", DIR) for a in shlex.split(line[1])]


def parse(argv: list[str]) -> tuple[object, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        args = normalize_download_args(_build_parser().parse_args(argv))
    return args, [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]


def test_the_script_uses_the_current_form() -> None:
    args, deprecated = parse(script_download_args())
    assert deprecated == []
    assert (args.repo_id, args.local_dir, args.repo_type) == (MODEL_ID, DIR, "model")


@pytest.mark.parametrize("old", [["--model", MODEL_ID, "--local_dir", DIR]])
def test_the_old_form_is_deprecated(old: list[str]) -> None:
    args, deprecated = parse(["download", *old])
    assert (args.repo_id, args.local_dir) == (MODEL_ID, DIR)
    assert any("'--model' is deprecated" in m for m in deprecated)
    assert any("'--local_dir' is deprecated" in m for m in deprecated)
