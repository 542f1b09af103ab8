"""Shared fixtures: the tiny stand-in model, whose real Qwen2.5 tokenizer the chat-format tests use.

This environment cannot build it (tools/build_tiny_model.py needs the train toolchain): the fixture
reuses models/tiny-qwen2.5 (`make tiny-model`) or builds it with the train environment's Python.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import chat_cases  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        return chat_cases.tiny_model_path(tmp_path_factory.mktemp("tiny_model"))
    except RuntimeError as err:
        pytest.fail(str(err))
