# Variant of qwen2_5_1_5b_instruct_lora_int8_style_e3.py on the controllable-mode data
# (`make split MODE=controllable`): the system message names the style and the reply is the text
# alone, so at inference the user picks the style. Trades: no style announced in the reply, and the
# model relies on the system text at inference (style_data/chat_template_controllable_*.json).
#   make split MODE=controllable
#   make train CONFIG=xtuner_configs/qwen2_5_1_5b_instruct_lora_int8_controllable_style_e3.py \
#     DATA=data/controllable/train.json
from mmengine.config import read_base

with read_base():
    from .qwen2_5_1_5b_instruct_lora_int8_style_e3 import *

data_files = __import__("os").environ.get(
    "STYLE_TUNE_DATA", __import__("style_tune.core.defaults", fromlist=["_"]).train_data("controllable")
)
train_dataloader.dataset.dataset.data_files = dict(train=data_files)

# Chat with the evaluation prompts in each style (__import__: see the main config's note on lazy
# imports; the style instructions come from style_tune.core.prompts, as the split tool's do).
SYSTEM_GENTLE = __import__("style_tune.core.prompts", fromlist=["STYLE_SYSTEMS"]).STYLE_SYSTEMS["温柔"]
SYSTEM_SNARKY = __import__("style_tune.core.prompts", fromlist=["STYLE_SYSTEMS"]).STYLE_SYSTEMS["毒舌"]
custom_hooks[1].system = SYSTEM_GENTLE
custom_hooks.insert(2, dict(custom_hooks[1], system=SYSTEM_SNARKY))
