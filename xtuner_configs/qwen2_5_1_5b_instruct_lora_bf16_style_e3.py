# Variant of qwen2_5_1_5b_instruct_qlora_style_e3.py: plain bf16 LoRA with samples packed into
# 2048-token sequences, for cards with >= 24 GB and bf16 (Ampere or newer). Trades: the full bf16 base
# weights in memory (~3 GB) for no quantisation overhead and no padding; without flash-attn's varlen
# attention (use_varlen_attn) packed conversations can attend to their neighbours.
#   xtuner train xtuner_configs/qwen2_5_1_5b_instruct_lora_bf16_packed_style_e3.py
from mmengine.config import read_base

with read_base():
    from .qwen2_5_1_5b_instruct_qlora_style_e3 import *

model.llm.torch_dtype = torch.bfloat16
model.llm.pop("quantization_config")

# ~30 chit-chat conversations per packed sequence: about the seed's 20 padded samples per step.
max_length = 2048
pack_to_max_length = True
batch_size = 1
# (the parsed base config holds copies: set the values where they are used)
train_dataloader.dataset.max_length = max_length
train_dataloader.dataset.pack_to_max_length = pack_to_max_length
train_dataloader.batch_size = batch_size

optim_wrapper.dtype = "bfloat16"
optim_wrapper.pop("loss_scale")
