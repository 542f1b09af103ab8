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

# The controllable data (__import__: see the main config's note on lazy imports): its training split
# ($STYLE_TUNE_DATA, else data/controllable/train.json) and the validation split beside it, whose prompts
# the style score asks once per style of style_data/styles.json, with that style's system text from
# style_tune.core.prompts, as the split's rows carry it.
data_files = __import__("style_tune.core.defaults", fromlist=["_"]).config_train_data("controllable")
train_dataloader.dataset.dataset.data_files = dict(train=data_files)
val_data_files = __import__("style_tune.core.defaults", fromlist=["_"]).config_val_data(data_files)
val_dataloader.dataset.path = val_data_files
val_evaluator.judge_data = __import__("style_tune.core.defaults", fromlist=["_"]).judge_data(val_data_files)
