# qwen2_5_1_5b_instruct_lora_bf16_orpo_style.py on a CPU: qwen2_5_tiny_lora_dpo_style_cpu.py with
# ORPO's model. `make demo MODE=controllable STAGE=orpo` runs it after the demo's SFT.
from mmengine.config import read_base

from style_tune.train.preference import CPUStyleORPO

with read_base():
    from .qwen2_5_tiny_lora_dpo_style_cpu import *

orpo_beta = 0.1  # as the GPU config
# ORPO learns the chosen replies as SFT does: a rate between DPO's and the demo SFT's 3e-3.
lr = 1e-3
optim_wrapper.optimizer.lr = lr
model = dict(type=CPUStyleORPO, beta=orpo_beta, use_varlen_attn=use_varlen_attn, llm=model.llm,
             lora=model.lora)
