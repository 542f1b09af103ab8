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
