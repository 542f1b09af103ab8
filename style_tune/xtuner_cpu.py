"""The one piece of XTuner that CPU-only runs (the tiny-model demo and tests) need replaced.

Imported by xtuner_configs/qwen2_5_tiny_lora_style_cpu.py only; needs the train env (xtuner).
"""

from __future__ import annotations

from xtuner.model import SupervisedFinetune


class CPUSupervisedFinetune(SupervisedFinetune):
    """XTuner's ``SupervisedFinetune`` without its attention-implementation dispatch.

    Before loading the model, XTuner picks flash/SDPA attention and a dtype by calling
    ``torch.<device>.is_bf16_supported()``; ``torch.cpu`` has no such function, so on a CPU-only
    machine training stops with ``AttributeError``. Here the config's own ``attn_implementation``
    and ``torch_dtype`` are kept as they are. Everything else is XTuner's code.
    """

    @staticmethod
    def _prepare_for_flash_attn(cfg, llm_cfg):
        return cfg
