# Variant of qwen2_5_1_5b_instruct_lora_int8_style_e3.py and the default of `make train`: plain bf16 LoRA
# for cards with >= 24 GB and bf16 (Ampere or newer), batches drawn by length. Trades: the bf16 base
# weights in memory (XTuner's LoRA path holds the frozen ones in fp32) for no quantisation overhead.
#   xtuner train xtuner_configs/qwen2_5_1_5b_instruct_lora_bf16_style_e3.py
# Every sample is one conversation, as at inference: no packing. XTuner's packing without flash-attn
# (use_varlen_attn needs it) lets packed conversations attend to each other, with position ids
# running across the pack, and cuts conversations at pack boundaries; the padding it saved is won
# back here by XTuner's LengthGroupedSampler, which batches conversations of similar length
# (benchmarks/README.md: pad share and tokens/s beside the article's settings).
from mmengine.config import read_base
from xtuner.dataset.samplers import LengthGroupedSampler

with read_base():
    from .qwen2_5_1_5b_instruct_lora_int8_style_e3 import *

model.llm.torch_dtype = torch.bfloat16
model.llm.pop("quantization_config")

# 32 conversations a step: ~2,070 tokens, what the former 2048-token packs held (more per step: fewer,
# larger optimizer steps; fewer: more padding-free but slower steps). Length-grouped, ~7% padding
# on the shipped data against ~20% for random batches of 32.
batch_size = 32
# (the parsed base config holds copies: set the values where they are used)
train_dataloader.batch_size = batch_size
train_dataloader.sampler = dict(
    type=LengthGroupedSampler,
    length_property="length",  # the token count XTuner's process_hf_dataset stores per sample
    per_device_batch_size=batch_size * accumulative_counts,
)

optim_wrapper.dtype = "bfloat16"
optim_wrapper.pop("loss_scale")

# A style score at every save, about ten a run: 736 rows / 32 = 23 steps an epoch, 69 in 3 epochs; a save
# every 7 gives 10 (7, 14, ..., 63 and the last, 69).
save_steps = 7
default_hooks.checkpoint.interval = save_steps
train_cfg.val_interval = save_steps
