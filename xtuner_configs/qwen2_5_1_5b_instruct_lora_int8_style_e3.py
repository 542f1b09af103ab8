# style-tune, the article's recipe: LoRA on an 8-bit (LLM.int8) Qwen2.5-1.5B-Instruct (it says "QLoRA").
# Adapted from XTuner's qwen/qwen1_5/qwen1_5_1_8b_chat/qwen1_5_1_8b_chat_qlora_alpaca_e3.py.
#
# Run it (from the repository root, in the train env: `make setup`, then `. .envs/train/bin/activate`):
#   make download split                         # models/Qwen2.5-1.5B-Instruct, data/label/*.json
#   xtuner train xtuner_configs/qwen2_5_1_5b_instruct_lora_int8_style_e3.py
#   # or, with honest exit codes, resume and multi-GPU flags: make train
# Paths are read from environment variables, so nothing here needs editing:
#   STYLE_TUNE_MODEL  base model directory     (default models/Qwen2.5-1.5B-Instruct; make: MODEL=)
#   STYLE_TUNE_DATA   training split (JSON)     (default data/label/train.json;         make: DATA=)
#   STYLE_TUNE_VAL_DATA the split scored at each save (default val.json beside STYLE_TUNE_DATA; VAL_DATA=)
#   STYLE_TUNE_VIS    extra visualizer backend: tensorboard (scalars.json is always written;  make: VIS=)
# Any other setting: --cfg-options, e.g. `--cfg-options train_dataloader.batch_size=8`.
# Note: XTuner itself calls AutoConfig.from_pretrained(..., trust_remote_code=True) on the model path:
# only point STYLE_TUNE_MODEL at model directories you trust.
import torch
from datasets import load_dataset
from mmengine.dataset import DefaultSampler
from mmengine.hooks import (
    CheckpointHook,
    DistSamplerSeedHook,
    IterTimerHook,
    LoggerHook,
    ParamSchedulerHook,
)
from mmengine.optim import AmpOptimWrapper, CosineAnnealingLR, LinearLR
from mmengine.visualization import LocalVisBackend, TensorboardVisBackend, Visualizer
from peft import LoraConfig
from torch.optim import AdamW
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
from xtuner.dataset import process_hf_dataset
from xtuner.dataset.collate_fns import default_collate_fn
from xtuner.dataset.map_fns import template_map_fn_factory
from xtuner.engine.hooks import DatasetInfoHook, VarlenAttnArgsToMessageHubHook
from xtuner.engine.runner import TrainLoop
from xtuner.model import SupervisedFinetune
from xtuner.parallel.sequence import SequenceParallelSampler
from xtuner.utils import PROMPT_TEMPLATE

from style_tune.train.style_score import (
    StyleScoreHook,
    StyleScoreMetric,
    StyleValLoop,
    StyleValPrompts,
    as_list,
)

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
# Model. (mmengine loads XTuner configs in lazy-import mode, where an `import os` would be lazy too:
# __import__ reads the environment at load time.)
# The defaults: style_tune/core/defaults.py.
pretrained_model_name_or_path = __import__("os").environ.get(
    "STYLE_TUNE_MODEL", __import__("style_tune.core.defaults", fromlist=["_"]).BASE_MODEL
)
use_varlen_attn = False

# Data: XTuner conversation JSON written by `make split` (style_tune/data/split.py). Every row carries
# its system text, so training sees the same prompt that inference front ends build.
# $STYLE_TUNE_DATA, else data/label/train.json (style_tune.core.defaults.config_train_data).
data_files = __import__("style_tune.core.defaults", fromlist=["_"]).config_train_data()
prompt_template = PROMPT_TEMPLATE.qwen_chat
max_length = 256  # the article's: replies are short chit-chat; longer rows are truncated
pack_to_max_length = False  # the article's: one conversation per sample (see the _bf16_lora_packed variant)

# parallel
sequence_parallel_size = 1

# Scheduler & Optimizer
batch_size = 20  # per_device (the article's)
accumulative_counts = 1
accumulative_counts *= sequence_parallel_size
dataloader_num_workers = 0
# The article set max_epochs=10000 and stopped by hand at iter 24,500. The shipped data has ~740
# training rows (37 steps of 20 per epoch): 3 epochs (~110 steps, ~2,200 samples) is enough for a
# style, which the article's chat hook showed by mid-training, while more epochs mostly memorise the
# ~370 training prompts (the article's final loss of 0.07 is memorisation).
max_epochs = 3
optim_type = AdamW
lr = 2e-4
betas = (0.9, 0.999)
weight_decay = 0
max_norm = 1  # grad clip
warmup_ratio = 0.03

# Save, and score every save (style_tune/train/style_score.py): the model answers the validation prompts
# (greedy, batched) and the project's style metrics score the replies: scalars.json (and TensorBoard),
# WORK_DIR/style_scores.jsonl, and the best checkpoint kept beside the newest ones (`make convert
# ITER=best`). How often: the shipped data's 736 training rows make 37 steps of 20 an epoch, 111 in 3
# epochs; a save every 12 steps gives 10 scores (12, 24, ..., 108 and the last, 111). More often: a finer
# curve, each point one more validation (its cost: docs/recipe.md). Variants with other step counts set it;
# from the command line set both: --cfg-options default_hooks.checkpoint.interval=N train_cfg.val_interval=N.
save_steps = 12
save_total_limit = 2  # the newest checkpoints kept (-1: all); the best one is kept besides
# The split scored ($STYLE_TUNE_VAL_DATA, else val.json beside the training file; never the test split,
# which is for the final report); its judge learns from the train.json beside it, as eval-style's does.
val_data_files = __import__("style_tune.core.defaults", fromlist=["_"]).config_val_data(data_files)
# Validation prompts per score, 0 = all (the shipped split: 46, each asked in every style in controllable
# mode): fewer is cheaper and noisier (at 46 prompts one reply moves style_accuracy by 2.2 points).
val_prompts = 0
# Token budget of a reply (greedy; eval-style's): the data's replies fit well within it, and a reply that
# uses it all is a runaway, which counts as not sane. Higher: runaways cost more decode steps; lower:
# long sane replies get cut.
val_max_new_tokens = __import__("style_tune.core.defaults", fromlist=["_"]).EVAL_MAX_OUT_LEN
# Prompts per generate call: 64 answers the shipped label split in one call (the controllable one in two);
# more is faster on a GPU and holds more KV cache (batch x (prompt + budget) tokens: ~0.3 GB at 64).
val_batch_size = 64
# The best checkpoint: the highest style_margin among the checkpoints whose sane_rate (0-100) is at least
# this; ties keep the earlier. Higher: degenerate replies (runaways, repetition, noise) rule a checkpoint
# out sooner, and fewer checkpoints qualify (none: none is kept). The shipped references all pass.
min_sane_rate = 90

#######################################################################
#                      PART 2  Model & Tokenizer                      #
#######################################################################
tokenizer = dict(
    type=AutoTokenizer.from_pretrained,
    pretrained_model_name_or_path=pretrained_model_name_or_path,
    trust_remote_code=False,  # Qwen2 is a transformers-native architecture
    padding_side="right",
)

model = dict(
    type=SupervisedFinetune,
    use_varlen_attn=use_varlen_attn,
    llm=dict(
        type=AutoModelForCausalLM.from_pretrained,
        pretrained_model_name_or_path=pretrained_model_name_or_path,
        trust_remote_code=False,
        torch_dtype=torch.float16,
        # The article's choice: 8-bit LLM.int8 base weights (it calls the recipe QLoRA; the
        # _nf4 variant is the 4-bit QLoRA of the paper).
        quantization_config=dict(
            type=BitsAndBytesConfig,
            load_in_4bit=False,
            load_in_8bit=True,
            llm_int8_threshold=6.0,
            llm_int8_has_fp16_weight=False,
            bnb_4bit_compute_dtype=torch.float16,
            bnb_4bit_use_double_quant=True,
            bnb_4bit_quant_type="nf4",
        ),
    ),
    lora=dict(
        type=LoraConfig,
        r=64,
        lora_alpha=128,
        lora_dropout=0.1,
        bias="none",
        task_type="CAUSAL_LM",
    ),
)

#######################################################################
#                      PART 3  Dataset & Dataloader                   #
#######################################################################
train_dataset = dict(
    type=process_hf_dataset,
    dataset=dict(type=load_dataset, path="json", data_files=dict(train=data_files)),
    tokenizer=tokenizer,
    max_length=max_length,
    dataset_map_fn=None,  # rows are already in XTuner's conversation format
    template_map_fn=dict(type=template_map_fn_factory, template=prompt_template),
    remove_unused_columns=True,
    shuffle_before_pack=True,
    pack_to_max_length=pack_to_max_length,
    use_varlen_attn=use_varlen_attn,
    map_num_proc=4,  # XTuner's default of 32 processes is far more than a few thousand rows need
)

sampler = SequenceParallelSampler if sequence_parallel_size > 1 else DefaultSampler

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=dataloader_num_workers,
    dataset=train_dataset,
    sampler=dict(type=sampler, shuffle=True),
    collate_fn=dict(type=default_collate_fn, use_varlen_attn=use_varlen_attn),
)

# The validation prompts of the style score, in file order (each process answers its share), each rendered
# by style_tune.core.prompts and tokenised as training does it (XTuner's DatasetInfoHook logs the first).
val_dataloader = dict(
    batch_size=val_batch_size,
    num_workers=0,
    dataset=dict(type=StyleValPrompts, path=val_data_files, tokenizer=tokenizer, limit=val_prompts),
    sampler=dict(type=DefaultSampler, shuffle=False),
    collate_fn=dict(type=as_list),
)

#######################################################################
#                    PART 4  Scheduler & Optimizer                    #
#######################################################################
# optimizer
optim_wrapper = dict(
    type=AmpOptimWrapper,
    optimizer=dict(type=optim_type, lr=lr, betas=betas, weight_decay=weight_decay),
    clip_grad=dict(max_norm=max_norm, error_if_nonfinite=False),
    accumulative_counts=accumulative_counts,
    loss_scale="dynamic",
    dtype="float16",
)

# learning policy
# More information: https://github.com/open-mmlab/mmengine/blob/main/docs/en/tutorials/param_scheduler.md  # noqa: E501
param_scheduler = [
    dict(
        type=LinearLR,
        start_factor=1e-5,
        by_epoch=True,
        begin=0,
        end=warmup_ratio * max_epochs,
        convert_to_iter_based=True,
    ),
    dict(
        type=CosineAnnealingLR,
        eta_min=0.0,
        by_epoch=True,
        begin=warmup_ratio * max_epochs,
        end=max_epochs,
        convert_to_iter_based=True,
    ),
]

# train, val, test setting: a style score at every save (val_interval = the checkpoint interval; mmengine
# also validates the last iteration, which CheckpointHook also saves)
train_cfg = dict(type=TrainLoop, max_epochs=max_epochs, val_interval=save_steps)
val_cfg = dict(type=StyleValLoop, max_new_tokens=val_max_new_tokens)
val_evaluator = dict(
    type=StyleScoreMetric,
    judge_data=__import__("style_tune.core.defaults", fromlist=["_"]).judge_data(val_data_files),
    min_sane_rate=min_sane_rate,
)

#######################################################################
#                           PART 5  Runtime                           #
#######################################################################
# The style score's record, log lines and replies (style_scores.jsonl, style_replies/). It replaces XTuner's
# EvaluateChatHook, which sampled ten replies into the log at each save, one at a time, unscored, and drew
# from training's random stream: the score answers every validation prompt greedily and keeps the replies.
custom_hooks = [
    dict(type=DatasetInfoHook, tokenizer=tokenizer),
    dict(type=StyleScoreHook),
]

if use_varlen_attn:
    custom_hooks += [dict(type=VarlenAttnArgsToMessageHubHook)]

# configure default hooks
default_hooks = dict(
    # record the time of every iteration.
    timer=dict(type=IterTimerHook),
    # print log every 10 iterations.
    logger=dict(type=LoggerHook, log_metric_by_epoch=False, interval=10),
    # enable the parameter scheduler.
    param_scheduler=dict(type=ParamSchedulerHook),
    # save checkpoint per `save_steps` (and the last iteration), and keep the best by the style score:
    # style/sane_margin is style_margin where sane_rate >= min_sane_rate, else NaN (never greater), and
    # mmengine keeps the strictly greater one, so a tie keeps the earlier (style_tune/train/style_score.py)
    checkpoint=dict(
        type=CheckpointHook,
        by_epoch=False,
        interval=save_steps,
        max_keep_ckpts=save_total_limit,
        save_best="style/sane_margin",
        rule="greater",
    ),
    # set sampler seed in distributed evrionment.
    sampler_seed=dict(type=DistSamplerSeedHook),
)

# configure environment
env_cfg = dict(
    # whether to enable cudnn benchmark
    cudnn_benchmark=False,
    # set multi process parameters
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    # set distributed parameters
    dist_cfg=dict(backend="nccl"),
)

# set visualizer: mmengine's local backend writes <work_dir>/<run>/vis_data/scalars.json, the loss and
# style scores the demo, the reports and the curves read: always kept. $STYLE_TUNE_VIS=tensorboard
# (make train VIS=tensorboard) adds TensorBoard's event files beside it (docs/recipe.md: how to open them).
vis_backends = [dict(type=LocalVisBackend)]
if "tensorboard" in __import__("style_tune.core.defaults", fromlist=["_"]).config_vis():
    vis_backends = [dict(type=LocalVisBackend), dict(type=TensorboardVisBackend)]
visualizer = dict(type=Visualizer, vis_backends=vis_backends)

# set log level
log_level = "INFO"

# load from which checkpoint
load_from = None

# whether to resume training from the loaded checkpoint
resume = False

# A fixed seed: the same data, split and settings give the same run.
randomness = dict(seed=42, deterministic=False)

# set log processor
log_processor = dict(by_epoch=False)
