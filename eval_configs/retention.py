# Retention (`make eval-retention`): did style tuning cost the base's general ability? The base and each
# tuned model on eval-select's FewCLUE datasets (bustm, ocnli_fc: OpenCompass's own configs and prompts,
# taken from select_models.py), each tuned model asked in its training format and with no system text
# (style_tune/eval/retention.py says which entries a model gets, and how the report reads the run).
# Settings, from the environment (the Makefile sets them; paths absolute or relative to the repository):
#   RETENTION_BASE      the base model directory (default: the recipe's base model)
#   RETENTION_TUNED     "NAME=DIR[:MODE] ...": merged models
#   RETENTION_MODE      the mode of an entry without :MODE (label | controllable)
#   RETENTION_BACKEND   hf (transformers; cpu or cuda) | lmdeploy (TurboMind, CUDA GPU, merged models)
#   RETENTION_DEVICE    cuda (default) | cpu: fp32 on the CPU, no GPU asked for (hf)
#   RETENTION_MARGIN, RETENTION_SEED, RETENTION_ROUNDS   the non-inferiority margin (accuracy points)
#                       and the paired bootstrap's seed and resamples: kept in the dumped config, so the
#                       report uses what was stated before the run
#   RETENTION_MAX_OUT_LEN, RETENTION_BATCH_SIZE   override the stock Qwen2.5 configs' values
# Values from style_tune are read with __import__ at load time (see eval_style.py's header for why).
from mmengine.config import read_base

with read_base():
    # OpenCompass's stock Qwen2.5-1.5B-Instruct model configs: each entry starts from the backend's one
    from opencompass.configs.models.qwen2_5.hf_qwen2_5_1_5b_instruct import models as hf_stock
    from opencompass.configs.models.qwen2_5.lmdeploy_qwen2_5_1_5b_instruct import models as lmdeploy_stock

    # eval-select's datasets (the article's FewCLUE prompts) and task layout, unchanged
    from .select_models import datasets, eval, infer

_os = __import__("os")
_env = _os.environ
_defaults = __import__("style_tune.core.defaults", fromlist=["_"])  # style_tune/core/defaults.py
_retention = __import__("style_tune.eval.retention", fromlist=["_"])
_prompts = __import__("style_tune.core.prompts", fromlist=["_"])
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))

_base = _os.path.join(_root, _env.get("RETENTION_BASE", _defaults.BASE_MODEL))
_tuned = [
    _retention.Tuned(t.name, _os.path.join(_root, t.path), t.mode)
    for t in _retention.parse_tuned(_env.get("RETENTION_TUNED", ""),
                                    _env.get("RETENTION_MODE", _defaults.MODE))
]
_entries = _retention.entries(_base, _tuned)
_backend = _env.get("RETENTION_BACKEND", "hf")
_on_cpu = _env.get("RETENTION_DEVICE", "cuda") == "cpu"

# What the report needs, dumped with the config into the run folder: the margin is the one stated
# before the run, whatever MARGIN= says when the report is written.
retention = dict(
    margin=_retention.parse_margin(_env.get("RETENTION_MARGIN", str(_defaults.RETENTION_MARGIN))),
    seed=int(_env.get("RETENTION_SEED", _defaults.SEED)),
    rounds=int(_env.get("RETENTION_ROUNDS", _defaults.RETENTION_ROUNDS)),
    backend=_backend,
    entries=[__import__("dataclasses").asdict(e) for e in _entries],
)

models = []
for _entry in _entries:
    _model = dict((hf_stock if _backend == "hf" else lmdeploy_stock)[0])
    # The entry's system text, as the first message of every prompt (none: the chat template's default),
    # then the dataset's prompt as the user message, unchanged: OPENCOMPASS_META_TEMPLATE's round (the
    # stock template would append "\n" to it).
    _meta = dict(_prompts.OPENCOMPASS_META_TEMPLATE)
    if _entry.system is not None:
        _meta["begin"] = dict(role="SYSTEM", api_role="SYSTEM", prompt=_entry.system)
    _model.update(abbr=_entry.abbr, path=_entry.path, meta_template=_meta)
    if _backend == "hf":
        # OpenCompass's HF model trusts remote code unless told not to; these models need none (Qwen2).
        # Decoding is greedy (it sets generation_config.do_sample=False; lmdeploy's config: top_k=1).
        _model.update(tokenizer_kwargs=dict(trust_remote_code=False),
                      model_kwargs=dict(trust_remote_code=False))
        if _on_cpu:
            _model.update(run_cfg=dict(num_gpus=0), model_kwargs=dict(
                device_map="cpu", torch_dtype="torch.float32", trust_remote_code=False))
    if _env.get("RETENTION_MAX_OUT_LEN"):
        _model["max_out_len"] = int(_env["RETENTION_MAX_OUT_LEN"])
        if _backend == "lmdeploy":
            _model["gen_config"] = dict(_model["gen_config"],
                                        max_new_tokens=int(_env["RETENTION_MAX_OUT_LEN"]))
    if _env.get("RETENTION_BATCH_SIZE"):
        _model["batch_size"] = int(_env["RETENTION_BATCH_SIZE"])
    models.append(_model)

# The summary: OpenCompass's accuracy table, one column per entry (the report adds the paired view).
del hf_stock, lmdeploy_stock
del _os, _env, _defaults, _retention, _prompts, _root, _base, _tuned, _entries, _backend, _on_cpu, _entry
del _model, _meta
