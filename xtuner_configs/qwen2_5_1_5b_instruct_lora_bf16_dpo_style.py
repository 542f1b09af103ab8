# DPO (XTuner's) on the style pairs, after the controllable SFT: for a request in one style, that style's
# reply is chosen and the other style's reply rejected (`make prefs`). bf16 LoRA, as
# qwen2_5_1_5b_instruct_lora_bf16_style_e3.py. It starts from the *merged* SFT model: with LoRA, XTuner's
# reference model is the start model with the adapter switched off, so the reference is the SFT model.
#   make split prefs MODE=controllable
#   make train convert merge CONFIG=xtuner_configs/qwen2_5_1_5b_instruct_lora_int8_controllable_style_e3.py \
#     DATA=data/controllable/train.json                                  # the SFT model to start from
#   make train convert merge CONFIG=xtuner_configs/qwen2_5_1_5b_instruct_lora_bf16_dpo_style.py \
#     MODEL=models/qwen2_5_1_5b_instruct_lora_int8_controllable_style_e3-merged \
#     DATA=data/controllable/prefs.jsonl
#   # or directly: xtuner train xtuner_configs/qwen2_5_1_5b_instruct_lora_bf16_dpo_style.py
#   # (STYLE_TUNE_MODEL, else the merged SFT model above; STYLE_TUNE_DATA, else data/controllable/prefs.jsonl)
# Memory: the policy and the reference share one set of weights (the adapter switched off); a step holds
# the activations of 2 sequences per pair, as the SFT config's batch of 32 conversations does for 16
# pairs, plus the reference's forward without gradients (docs/preference.md: the estimate).
from mmengine.config import read_base
from mmengine.dataset import DefaultSampler
from xtuner.dataset.collate_fns.preference_collate_fn import preference_collate_fn
from xtuner.dataset.preference_dataset import build_preference_dataset

from style_tune.train.preference import StyleDPO

with read_base():
    from .qwen2_5_1_5b_instruct_lora_bf16_style_e3 import *

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
# The merged SFT model (policy start and reference) and the pairs (style_tune/core/defaults.py).
pretrained_model_name_or_path = __import__("style_tune.core.defaults", fromlist=["_"]).config_sft_model()
data_files = __import__("style_tune.core.defaults", fromlist=["_"]).config_prefs_data()
# sigmoid: the DPO paper's loss. ipo averages log-probabilities per token (no pull to shorter or
# longer replies) at the cost of a loss scale to tune; hinge ignores pairs already ranked by the margin.
dpo_loss_type = "sigmoid"
# How far the policy may move from the reference: higher keeps it nearer the SFT model (less drift in
# content, a smaller style shift); 0.1 is the paper's and XTuner's default.
loss_beta = 0.1
label_smoothing = 0.0  # > 0 trusts the pairs less (conservative DPO); ours are clean by construction
max_length = 256  # as the SFT config: replies are short
# 16 pairs a step = 32 sequences, the SFT config's 32 conversations.
batch_size = 16
# LoRA learning rate: XTuner's full-weight DPO uses 5e-7; LoRA moves fewer weights and takes more.
# Higher: a faster style shift, and the replies drift from the SFT model's (content, fluency) sooner.
lr = 5e-6
max_epochs = 1  # 736 pairs of the shipped data: 46 steps; more epochs mostly widen the margin on them
# A style score at every save (style_tune/train/style_score.py), about ten a run: 46 steps, a save every 5
# gives 10 (5, 10, ..., 45 and the last, 46). The prompts: the validation split beside the pairs (`make
# prefs` writes them into the controllable split), asked once per style; the judge learns from its train.json.
save_steps = 5
val_data_files = __import__("style_tune.core.defaults", fromlist=["_"]).config_val_data(data_files)

#######################################################################
#                      PART 2  Model & Tokenizer                      #
#######################################################################
tokenizer.pretrained_model_name_or_path = pretrained_model_name_or_path
model = dict(
    type=StyleDPO,  # XTuner's DPO with the id-0 loss-mask fix (style_tune/train/preference.py)
    loss_type=dpo_loss_type,
    beta=loss_beta,
    label_smoothing=label_smoothing,
    use_varlen_attn=use_varlen_attn,
    llm=dict(model.llm, pretrained_model_name_or_path=pretrained_model_name_or_path),
    lora=model.lora,
)

#######################################################################
#                      PART 3  Dataset & Dataloader                   #
#######################################################################
# Rows {prompt, chosen, rejected} rendered by the model's own chat template (the SFT text; tested).
train_dataset = dict(
    type=build_preference_dataset,
    dataset=dict(type=load_dataset, path="json", data_files=dict(train=data_files)),
    tokenizer=tokenizer,
    max_length=max_length,
    dataset_map_fn=None,  # `make prefs` writes XTuner's row format
    is_dpo=True,
    is_reward=False,
    reward_token_id=-1,
    num_proc=4,  # XTuner's default starts 32 tokenizer processes
    use_varlen_attn=use_varlen_attn,  # off: packed pairs need flash-attn
    max_packed_length=max_length * 2,
    shuffle_before_pack=True,
)
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=dataloader_num_workers,
    dataset=train_dataset,
    sampler=dict(type=DefaultSampler, shuffle=True),
    collate_fn=dict(type=preference_collate_fn, use_varlen_attn=use_varlen_attn),
)
# the style score's prompts: the validation split beside the pairs, with the start model's tokenizer
val_dataloader.dataset.path = val_data_files
val_dataloader.dataset.tokenizer = tokenizer

#######################################################################
#                    PART 4  Scheduler & Optimizer                    #
#######################################################################
optim_wrapper.optimizer.lr = lr
param_scheduler[0].end = warmup_ratio * max_epochs
param_scheduler[1].begin = warmup_ratio * max_epochs
param_scheduler[1].end = max_epochs
train_cfg = dict(type=TrainLoop, max_epochs=max_epochs, val_interval=save_steps)
val_evaluator.judge_data = __import__("style_tune.core.defaults", fromlist=["_"]).judge_data(val_data_files)

#######################################################################
#                           PART 5  Runtime                           #
#######################################################################
custom_hooks[0].tokenizer = tokenizer  # the start model's
default_hooks.checkpoint.interval = save_steps
