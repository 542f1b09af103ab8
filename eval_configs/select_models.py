# Model selection (`make eval-select`), the article's run: Qwen2.5-1.5B-Instruct against
# internlm2_5-1_8b-chat on FewCLUE bustm and ocnli_fc (generative, zero-shot), HuggingFace backend:
#   python run.py --models hf_qwen2_5_1_5b_instruct hf_internlm2_5_1_8b_chat \
#       --datasets FewCLUE_bustm_gen FewCLUE_ocnli_fc_gen --debug
# OpenCompass's own dataset and model configs, with the models read from the local models folder
# (`make download`) instead of the HuggingFace hub. Settings, from the environment:
#   SELECT_QWEN, SELECT_INTERNLM   model directories (defaults models/Qwen2.5-1.5B-Instruct,
#                                  models/internlm2_5-1_8b-chat; absolute or relative to the repository)
#   SELECT_DEVICE                  cuda (default) | cpu: fp32 on the CPU, no GPU asked for
#   SELECT_MAX_OUT_LEN, SELECT_BATCH_SIZE   override the stock configs' values (4096/2048 and 8)
# The FewCLUE files are read from $COMPASS_DATA_CACHE/data/FewCLUE/ (docs/evaluation.md).
from mmengine.config import read_base

with read_base():
    from opencompass.configs.datasets.FewCLUE_bustm.FewCLUE_bustm_gen import bustm_datasets
    from opencompass.configs.datasets.FewCLUE_ocnli_fc.FewCLUE_ocnli_fc_gen import ocnli_fc_datasets
    from opencompass.configs.models.hf_internlm.hf_internlm2_5_1_8b_chat import models as internlm_models
    from opencompass.configs.models.qwen2_5.hf_qwen2_5_1_5b_instruct import models as qwen_models

    # one inference task and one evaluation task per model, all four datasets in each
    from ._runners import eval, infer

_os = __import__("os")
_env = _os.environ
_defaults = __import__("style_tune.core.defaults", fromlist=["_"])  # style_tune/core/defaults.py
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))

datasets = [*bustm_datasets, *ocnli_fc_datasets]

models = [*qwen_models, *internlm_models]
for _model, _path in zip(models, (_env.get("SELECT_QWEN", _defaults.BASE_MODEL),
                                  _env.get("SELECT_INTERNLM", _defaults.RIVAL_MODEL)), strict=True):
    _model["path"] = _os.path.join(_root, _path)
    if _env.get("SELECT_DEVICE", "cuda") == "cpu":
        _model["run_cfg"] = dict(num_gpus=0)
        _model["model_kwargs"] = dict(device_map="cpu", torch_dtype="torch.float32")
    if _env.get("SELECT_MAX_OUT_LEN"):
        _model["max_out_len"] = int(_env["SELECT_MAX_OUT_LEN"])
    if _env.get("SELECT_BATCH_SIZE"):
        _model["batch_size"] = int(_env["SELECT_BATCH_SIZE"])
del _os, _env, _defaults, _model, _path
