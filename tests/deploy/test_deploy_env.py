"""The deploy environment holds lmdeploy (its chat-template code, on any machine)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import pytest


def test_lmdeploy_version_and_template_registry() -> None:
    from lmdeploy.model import MODELS, ChatTemplateConfig

    assert version("lmdeploy") == "0.18.0"
    assert "qwen2d5" in MODELS.module_dict
    assert ChatTemplateConfig(model_name="qwen2d5").chat_template is not None


def test_not_mixed_with_the_train_toolchain() -> None:
    with pytest.raises(PackageNotFoundError):
        version("xtuner")
    assert int(version("transformers").split(".")[0]) >= 4
