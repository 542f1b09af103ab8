# Model selection with lmdeploy's TurboMind engine (`make eval-select BACKEND=lmdeploy`), the
# article's optional accelerated run:
#   python run.py --models lmdeploy_qwen2_5_1_5b_instruct lmdeploy_internlm2_5_1_8b_chat \
#       --datasets FewCLUE_bustm_gen FewCLUE_ocnli_fc_gen --debug
# The same datasets and local model folders as select_models.py (SELECT_QWEN, SELECT_INTERNLM,
# SELECT_MAX_OUT_LEN, SELECT_BATCH_SIZE). Needs a CUDA GPU and lmdeploy installed in the eval
# environment (docs/evaluation.md); there is no CPU variant. InternLM2's tokenizer is remote code
# (auto_map): its model goes through style_tune/eval/turbomind.py, which lets lmdeploy's
# pipeline trust it (OpenCompass 0.5.4 does not pass trust_remote_code to lmdeploy).
from mmengine.config import read_base

from style_tune.eval.turbomind import TurboMindModelwithChatTemplateRemoteCode

with read_base():
    from opencompass.configs.models.hf_internlm.lmdeploy_internlm2_5_1_8b_chat import (
        models as internlm_models,
    )
    from opencompass.configs.models.qwen2_5.lmdeploy_qwen2_5_1_5b_instruct import models as qwen_models

    # The datasets and the task layout are select_models.py's.
    from .select_models import datasets, eval, infer

_os = __import__("os")
_env = _os.environ
_defaults = __import__("style_tune.core.defaults", fromlist=["_"])  # style_tune/core/defaults.py
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))

internlm_models[0]["type"] = TurboMindModelwithChatTemplateRemoteCode
models = [*qwen_models, *internlm_models]
for _model, _path in zip(models, (_env.get("SELECT_QWEN", _defaults.BASE_MODEL),
                                  _env.get("SELECT_INTERNLM", _defaults.RIVAL_MODEL)), strict=True):
    _model["path"] = _os.path.join(_root, _path)
    if _env.get("SELECT_MAX_OUT_LEN"):
        _model["max_out_len"] = int(_env["SELECT_MAX_OUT_LEN"])
        _model["gen_config"]["max_new_tokens"] = int(_env["SELECT_MAX_OUT_LEN"])
    if _env.get("SELECT_BATCH_SIZE"):
        _model["batch_size"] = int(_env["SELECT_BATCH_SIZE"])
del _os, _env, _defaults, _model, _path
