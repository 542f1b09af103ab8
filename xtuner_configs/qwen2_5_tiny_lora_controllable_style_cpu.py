# qwen2_5_tiny_lora_style_cpu.py on the controllable-mode data (`make split MODE=controllable`), as
# qwen2_5_1_5b_instruct_lora_int8_controllable_style_e3.py is the main recipe on it: the same CPU
# overrides, and the style score asks the validation prompts once per style. `make demo MODE=controllable`
# runs it.
#   STYLE_TUNE_MODEL=models/demo-base-controllable STYLE_TUNE_DATA=data/controllable/train.json \
#     xtuner train xtuner_configs/qwen2_5_tiny_lora_controllable_style_cpu.py
from mmengine.config import read_base

with read_base():
    from .qwen2_5_tiny_lora_style_cpu import *

# The controllable data (__import__: see the main config's note on lazy imports): its training split
# ($STYLE_TUNE_DATA, else data/controllable/train.json) and the validation split beside it, whose prompts
# the style score asks once per style, as in qwen2_5_1_5b_instruct_lora_int8_controllable_style_e3.py.
data_files = __import__("style_tune.core.defaults", fromlist=["_"]).config_train_data("controllable")
train_dataloader.dataset.dataset.data_files = dict(train=data_files)
val_data_files = __import__("style_tune.core.defaults", fromlist=["_"]).config_val_data(data_files)
val_dataloader.dataset.path = val_data_files
val_evaluator.judge_data = __import__("style_tune.core.defaults", fromlist=["_"]).judge_data(val_data_files)
