# The main recipe on a CPU with the tiny stand-in model (style_tune/train/tiny_model.py): what `make demo`
# and the tests train. Same data, template, LoRA and schedule shape as
# qwen2_5_1_5b_instruct_lora_int8_style_e3.py; only what a CPU cannot do, or a tiny model needs, differs:
# - fp32 weights and no bitsandbytes quantization (its kernels are CUDA-only);
# - OptimWrapper instead of AmpOptimWrapper (mixed precision asserts a GPU);
# - XTuner's attention dispatch asks torch.cpu.is_bf16_supported(), which does not exist: the model
#   type is style_tune.train.xtuner_cpu.CPUSupervisedFinetune, which keeps the config's SDPA attention;
# - torchrun (`make train NPROC_PER_NODE=2`): style_tune.train.xtuner_cpu.CPURunner starts gloo where mmengine
#   asks for a CUDA device, and DDP wraps the CPU model without device_ids;
# - a small batch, a higher learning rate and a fixed number of iterations, so the ~10 M-parameter
#   random model visibly learns the style labels in minutes on 2 cores.
#   STYLE_TUNE_MODEL=models/tiny-qwen2.5 STYLE_TUNE_DATA=data/label/train.json \
#     xtuner train xtuner_configs/qwen2_5_tiny_lora_style_cpu.py
from mmengine.config import read_base
from mmengine.optim import CosineAnnealingLR, LinearLR, OptimWrapper

from style_tune.train.xtuner_cpu import CPURunner, CPUSupervisedFinetune

with read_base():
    from .qwen2_5_1_5b_instruct_lora_int8_style_e3 import *

pretrained_model_name_or_path = __import__("os").environ.get(
    "STYLE_TUNE_MODEL", __import__("style_tune.core.defaults", fromlist=["_"]).TINY_MODEL
)
tokenizer.pretrained_model_name_or_path = pretrained_model_name_or_path
model.llm.pretrained_model_name_or_path = pretrained_model_name_or_path
model.llm.torch_dtype = torch.float32
model.llm.quantization_config = None
model.type = CPUSupervisedFinetune
model.llm.attn_implementation = "sdpa"
runner_type = CPURunner
# mmengine's default wrapper passes device_ids=[LOCAL_RANK], which DDP refuses for a CPU module.
model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False)
train_dataset.tokenizer = tokenizer
train_dataloader.dataset = train_dataset
custom_hooks[0].tokenizer = tokenizer
val_dataloader.dataset.tokenizer = tokenizer

batch_size = 8
train_dataloader.batch_size = batch_size
lr = 2e-3
max_iters = 200
warmup_iters = 10
optim_wrapper = dict(
    type=OptimWrapper,
    optimizer=dict(type=optim_type, lr=lr, betas=betas, weight_decay=weight_decay),
    clip_grad=dict(max_norm=max_norm, error_if_nonfinite=False),
    accumulative_counts=accumulative_counts,
)
param_scheduler = [
    dict(type=LinearLR, start_factor=1e-2, by_epoch=False, begin=0, end=warmup_iters),
    dict(type=CosineAnnealingLR, eta_min=0.0, by_epoch=False, begin=warmup_iters, end=max_iters),
]
# A style score at every save: 10 of the 200 iterations (`make demo` trains longer and saves less often:
# DEMO_SAVE_STEPS in the Makefile).
save_steps = 20
train_cfg = dict(type=TrainLoop, max_iters=max_iters, val_interval=save_steps)
default_hooks.checkpoint.interval = save_steps
default_hooks.logger.interval = 10
# 16 prompts a generate call: on 2 CPU cores a larger batch gains little and pads more.
val_batch_size = 16
val_dataloader.batch_size = val_batch_size
