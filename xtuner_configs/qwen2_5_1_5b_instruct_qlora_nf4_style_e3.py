# Variant of qwen2_5_1_5b_instruct_lora_int8_style_e3.py: true 4-bit NF4 QLoRA (the QLoRA paper's
# quantisation). Trades: about half the base-weight memory of the article's 8-bit load, for extra
# dequantisation work each step.
#   xtuner train xtuner_configs/qwen2_5_1_5b_instruct_qlora_nf4_style_e3.py    (or: make train CONFIG=...)
from mmengine.config import read_base

with read_base():
    from .qwen2_5_1_5b_instruct_lora_int8_style_e3 import *

model.llm.quantization_config.load_in_4bit = True
model.llm.quantization_config.load_in_8bit = False
