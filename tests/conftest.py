"""Shared fixtures: the tiny stand-in model, whose real Qwen2.5 tokenizer the chat-format tests use.

The eval and deploy envs cannot build it (tools/build_tiny_model.py needs the train toolchain): this
fixture builds it once per session, from the current code, with the train env's Python (never the
leftover models/tiny-qwen2.5 of an earlier `make tiny-model`). tests/train/conftest.py overrides it
with a build in its own interpreter.
"""

from __future__ import annotations

from pathlib import Path

import chat_cases
import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        return chat_cases.tiny_model_path(tmp_path_factory.mktemp("tiny_model"))
    except RuntimeError as err:
        pytest.fail(str(err))
