"""Shared fixtures: the tiny stand-in model, whose real Qwen2.5 tokenizer the chat-format tests use.

The eval and deploy envs cannot build it (style_tune/train/tiny_model.py needs the train toolchain): this
fixture builds it once per session, from the current code, with the train env's Python (never the
leftover models/tiny-qwen2.5 of an earlier `make tiny-model`). tests/train/conftest.py overrides it
with a build in its own interpreter.
"""

from __future__ import annotations

from pathlib import Path

import chat_cases
import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(fresh_tiny_model_dir: Path) -> Path:
    """The tiny model of this session: built from the current code, never a leftover in models/."""
    return fresh_tiny_model_dir


@pytest.fixture(scope="session")
def fresh_tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model built from the current code in this session (never a leftover in models/)."""
    try:
        return chat_cases.tiny_model_path(tmp_path_factory.mktemp("fresh_tiny_model"))
    except RuntimeError as err:
        pytest.fail(str(err))


@pytest.fixture(scope="session")
def cpu_server(fresh_tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """`make serve` on the fresh tiny model (controllable mode, default style 温柔) on a free port:
    a live OpenAI-compatible server (``.base_url``, model ``style-tune``) for the whole session,
    stopped (process group, port freed) at its end. See style_tune.deploy.serving.serve_model."""
    from style_tune.deploy.serving import ServerError, serve_model

    server = serve_model(fresh_tiny_model_dir, mode="controllable", style="温柔",
                         log=tmp_path_factory.mktemp("cpu_server") / "server.log")
    try:
        server.start()
    except ServerError as err:
        pytest.fail(str(err))
    yield server
    server.stop()
