"""The eval environment holds OpenCompass with the pins it needs, apart from the train toolchain."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import pytest


def test_opencompass_imports_with_its_pins() -> None:
    import opencompass
    from opencompass.models import HuggingFacewithChatTemplate  # the HF backend the eval configs use

    assert version("opencompass") == "0.5.4"
    assert HuggingFacewithChatTemplate is not None
    assert opencompass.__file__
    assert int(version("numpy").split(".")[0]) < 2
    assert int(version("datasets").split(".")[0]) < 4
    assert int(version("transformers").split(".")[0]) < 5


def test_mmengine_comes_from_mmengine_lite_only() -> None:
    """mmengine-lite and mmengine ship the same `mmengine/` package: one venv must hold one."""
    assert version("mmengine-lite")
    with pytest.raises(PackageNotFoundError):
        version("mmengine")
    with pytest.raises(PackageNotFoundError):
        version("xtuner")


def test_shared_prompt_module_is_importable() -> None:
    from style_tune.core.prompts import QWEN_DEFAULT_SYSTEM, STYLES

    assert STYLES == ("温柔", "毒舌")
    assert QWEN_DEFAULT_SYSTEM.startswith("You are Qwen")
