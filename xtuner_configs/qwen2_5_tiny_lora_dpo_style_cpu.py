# qwen2_5_1_5b_instruct_lora_bf16_dpo_style.py on a CPU with the demo's merged SFT model, as
# qwen2_5_tiny_lora_style_cpu.py is the SFT recipe on a CPU: the same CPU overrides (fp32, no bf16 probe,
# no mixed precision, gloo under torchrun), a small batch and a fixed number of iterations.
# `make demo MODE=controllable STAGE=dpo` runs it after the demo's SFT.
#   STYLE_TUNE_MODEL=models/tiny-qwen2.5-demo-controllable-merged \
#     STYLE_TUNE_DATA=data/controllable/prefs.jsonl \
#     xtuner train xtuner_configs/qwen2_5_tiny_lora_dpo_style_cpu.py
from mmengine.config import read_base

from style_tune.train.preference import CPUStyleDPO

# The SFT CPU config's CPU runner and iteration-based schedule (200 iterations, 10 of warm-up), by name.
with read_base():
    from .qwen2_5_1_5b_instruct_lora_bf16_dpo_style import *
    from .qwen2_5_tiny_lora_style_cpu import (  # noqa: F401  (read_base makes them this config's)
        model_wrapper_cfg,
        optim_wrapper,
        param_scheduler,
        runner_type,
        train_cfg,
    )

model.type = CPUStyleDPO
model.llm.torch_dtype = torch.float32
model.llm.attn_implementation = "sdpa"

# 4 pairs a step (8 sequences, the SFT CPU config's batch); one tokenizer process.
batch_size = 4
train_dataloader.batch_size = batch_size
train_dataset.num_proc = 1
# lr measured on the stand-in (seed 0, 200 iterations): 1e-3 gave style accuracy 97.8, 3e-4 100
lr = 3e-4
optim_wrapper.optimizer.lr = lr

# A style score at every save: 10 of the 200 iterations, as the SFT CPU config.
save_steps = 20
default_hooks.checkpoint.interval = save_steps
train_cfg.val_interval = save_steps
default_hooks.logger.interval = 10
val_dataloader.batch_size = 16  # as the SFT CPU config
