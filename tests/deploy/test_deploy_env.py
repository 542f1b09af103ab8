"""The deploy environment holds lmdeploy (its chat-template code, on any machine)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import pytest


def test_lmdeploy_version_and_chat_template_code() -> None:
    from lmdeploy.model import MODELS, ChatTemplateConfig

    assert version("lmdeploy") == "0.18.0"
    assert MODELS.module_dict, "lmdeploy's chat template registry is empty"
    assert callable(ChatTemplateConfig.from_json)


def test_not_mixed_with_the_train_toolchain() -> None:
    with pytest.raises(PackageNotFoundError):
        version("xtuner")
    assert int(version("transformers").split(".")[0]) >= 4
