"""OpenCompass's TurboMind chat model, with lmdeploy allowed to run the model's own remote code.

OpenCompass 0.5.4's ``TurboMindModelwithChatTemplate`` loads its tokenizer with
``trust_remote_code=True`` but builds lmdeploy's pipeline without that argument, and lmdeploy's
``pipeline`` (0.18) defaults it to False: a model whose tokenizer lives in remote code named by
``auto_map`` -- internlm2_5-1_8b-chat's ``InternLM2Tokenizer`` -- cannot be loaded. This subclass
passes ``trust_remote_code=True`` to ``lmdeploy.pipeline``; everything else is OpenCompass's.
eval_configs/select_models_lmdeploy.py uses it for InternLM2 only (Qwen2.5 needs no remote code).
Needs the eval env (opencompass) and, when a pipeline is built, lmdeploy and a CUDA GPU.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from opencompass.models import TurboMindModelwithChatTemplate

if TYPE_CHECKING:
    from lmdeploy import Pipeline


class TurboMindModelwithChatTemplateRemoteCode(TurboMindModelwithChatTemplate):
    """``TurboMindModelwithChatTemplate`` whose lmdeploy pipeline trusts the model's remote code."""

    def _build_pipe(self, model_path: str, backend: str, engine_config: dict) -> Pipeline:
        # OpenCompass 0.5.4's _build_pipe, plus trust_remote_code=True (and the log length as lmdeploy's
        # int: OpenCompass passes the variable's text, which lmdeploy's logger would slice with).
        from lmdeploy import PytorchEngineConfig, TurbomindEngineConfig, pipeline

        if backend not in ("pytorch", "turbomind"):
            raise ValueError(f"unsupported backend type: {backend}")
        config_class = TurbomindEngineConfig if backend == "turbomind" else PytorchEngineConfig
        backend_config = config_class(**{k: v for k, v in engine_config.items() if hasattr(config_class, k)})
        return pipeline(
            model_path,
            backend_config=backend_config,
            log_level=os.getenv("LMDEPLOY_LOG_LEVEL", "WARNING"),
            max_log_len=int(os.getenv("LMDEPLOY_MAX_LOG_LEN", "10")),
            trust_remote_code=True,
        )
