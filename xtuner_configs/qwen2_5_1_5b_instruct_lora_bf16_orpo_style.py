# ORPO (XTuner's) on the style pairs: qwen2_5_1_5b_instruct_lora_bf16_dpo_style.py with ORPO's loss, the
# chosen reply's cross-entropy plus an odds-ratio term that lowers the rejected reply's odds against the
# chosen one's. No reference model: no second forward per pair (cheaper than DPO), and nothing holds the
# policy near the SFT model but the cross-entropy on the chosen replies.
#   make prefs
#   make train convert merge CONFIG=xtuner_configs/qwen2_5_1_5b_instruct_lora_bf16_orpo_style.py \
#     MODEL=models/qwen2_5_1_5b_instruct_lora_int8_controllable_style_e3-merged \
#     DATA=data/controllable/prefs.jsonl
from mmengine.config import read_base

from style_tune.train.preference import StyleORPO

with read_base():
    from .qwen2_5_1_5b_instruct_lora_bf16_dpo_style import *

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
# Weight of the odds-ratio term beside the cross-entropy: higher pushes the two styles apart harder;
# lower is closer to plain SFT on the chosen replies. 0.1 is the paper's and XTuner's default.
orpo_beta = 0.1
# ORPO learns the chosen replies too, so it takes an SFT-like rate; XTuner's full-weight ORPO uses 5e-6.
lr = 5e-5

#######################################################################
#                      PART 2  Model & Tokenizer                      #
#######################################################################
model = dict(type=StyleORPO, beta=orpo_beta, use_varlen_attn=use_varlen_attn, llm=model.llm, lora=model.lora)

#######################################################################
#                    PART 4  Scheduler & Optimizer                    #
#######################################################################
optim_wrapper.optimizer.lr = lr
