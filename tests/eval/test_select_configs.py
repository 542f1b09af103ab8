"""The lmdeploy variant of the model-selection config (GPU only) parses and mirrors the HF one."""

from __future__ import annotations

from pathlib import Path

from mmengine.config import Config

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_lmdeploy_variant_shares_datasets_and_tasks_with_the_hf_config(monkeypatch) -> None:
    monkeypatch.setenv("SELECT_QWEN", "models/q")
    monkeypatch.setenv("SELECT_BATCH_SIZE", "4")
    hf = Config.fromfile(str(REPO_ROOT / "eval_configs/select_models.py"))
    turbo = Config.fromfile(str(REPO_ROOT / "eval_configs/select_models_lmdeploy.py"))
    assert [d["abbr"] for d in turbo.datasets] == [d["abbr"] for d in hf.datasets]
    assert turbo.infer == hf.infer and turbo.eval == hf.eval
    assert [m["abbr"] for m in turbo.models] == [
        "qwen2.5-1.5b-instruct-turbomind",
        "internlm2_5-1_8b-chat-turbomind",
    ]
    assert turbo.models[0]["path"] == str(REPO_ROOT / "models/q") == hf.models[0]["path"]
    assert all(m["batch_size"] == 4 for m in turbo.models)


def test_lmdeploy_variant_lets_lmdeploy_trust_internlm2s_remote_code(monkeypatch) -> None:
    """InternLM2's tokenizer is remote code: its TurboMind model builds lmdeploy's pipeline with
    trust_remote_code=True (OpenCompass 0.5.4's does not); Qwen2.5 keeps OpenCompass's stock model.
    lmdeploy is not in this env: a stand-in module records the pipeline call (tests/deploy checks
    that the real lmdeploy's pipeline takes these arguments)."""
    import sys
    import types

    from opencompass.models import TurboMindModelwithChatTemplate

    from style_tune.eval.turbomind import TurboMindModelwithChatTemplateRemoteCode

    turbo = Config.fromfile(str(REPO_ROOT / "eval_configs/select_models_lmdeploy.py"))
    qwen, internlm = turbo.models
    assert qwen["type"] is TurboMindModelwithChatTemplate
    assert internlm["type"] is TurboMindModelwithChatTemplateRemoteCode
    assert issubclass(TurboMindModelwithChatTemplateRemoteCode, TurboMindModelwithChatTemplate)

    calls = []

    class EngineConfig:
        session_len = max_batch_size = tp = None  # fields lmdeploy 0.18's configs have

        def __init__(self, **kwargs):
            self.kwargs = kwargs

    fake = types.SimpleNamespace(
        TurbomindEngineConfig=EngineConfig,
        PytorchEngineConfig=EngineConfig,
        pipeline=lambda path, **kwargs: calls.append((path, kwargs)) or "pipe",
    )
    monkeypatch.setitem(sys.modules, "lmdeploy", fake)
    model = TurboMindModelwithChatTemplateRemoteCode.__new__(TurboMindModelwithChatTemplateRemoteCode)
    engine = {**internlm["engine_config"], "not_a_field": 1}
    assert model._build_pipe(internlm["path"], "turbomind", engine) == "pipe"
    (path, kwargs), = calls
    assert path == internlm["path"] and kwargs["trust_remote_code"] is True
    assert kwargs["backend_config"].kwargs == {"session_len": 16384, "max_batch_size": 16, "tp": 1}
