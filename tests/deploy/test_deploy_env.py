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


def test_pipeline_takes_what_the_lmdeploy_eval_model_passes() -> None:
    """style_tune/eval/turbomind.py (eval-select BACKEND=lmdeploy, InternLM2) calls
    lmdeploy.pipeline(path, backend_config=, log_level=, max_log_len=, trust_remote_code=True) and
    keeps only the engine settings the config classes have: this lmdeploy takes them."""
    import inspect

    from lmdeploy import PytorchEngineConfig, TurbomindEngineConfig, pipeline

    params = inspect.signature(pipeline).parameters
    assert {"backend_config", "log_level", "max_log_len", "trust_remote_code"} <= set(params)
    for config in (TurbomindEngineConfig, PytorchEngineConfig):
        assert all(hasattr(config, key) for key in ("session_len", "max_batch_size", "tp"))
