# qwen2_5_tiny_lora_style_cpu.py on the controllable-mode data (`make split MODE=controllable`), as
# qwen2_5_1_5b_instruct_lora_int8_controllable_style_e3.py is the main recipe on it: the same CPU
# overrides, and the chat hook asks its questions once per style. `make demo MODE=controllable` runs it.
#   STYLE_TUNE_MODEL=models/demo-base-controllable STYLE_TUNE_DATA=data/controllable/train.json \
#     xtuner train xtuner_configs/qwen2_5_tiny_lora_controllable_style_cpu.py
from mmengine.config import read_base

with read_base():
    from .qwen2_5_tiny_lora_style_cpu import *

data_files = __import__("os").environ.get(
    "STYLE_TUNE_DATA", __import__("style_tune.core.defaults", fromlist=["_"]).train_data("controllable")
)
train_dataloader.dataset.dataset.data_files = dict(train=data_files)

# (__import__: see the main config's note on lazy imports; the style instructions come from
# style_tune.core.prompts, as the split tool's do)
SYSTEM_GENTLE = __import__("style_tune.core.prompts", fromlist=["STYLE_SYSTEMS"]).STYLE_SYSTEMS["温柔"]
SYSTEM_SNARKY = __import__("style_tune.core.prompts", fromlist=["STYLE_SYSTEMS"]).STYLE_SYSTEMS["毒舌"]
custom_hooks[1].system = SYSTEM_GENTLE
custom_hooks.insert(2, dict(custom_hooks[1], system=SYSTEM_SNARKY))
