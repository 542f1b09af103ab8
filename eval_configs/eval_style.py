# Style evaluation (`make eval-style`): the base model and the tuned (merged) model, or any two or more
# named models (COMPARE=), answer every held-out prompt of test.json; style_tune.eval.evaluator scores
# the replies (style, content, fluency); `make judge-pairs` then compares every pair of them.
# Run from the repository root (the Makefile does; it also writes the report):
#   STYLE_EVAL_BASE=models/Qwen2.5-1.5B-Instruct STYLE_EVAL_TUNED=models/<config>-merged \
#     .envs/eval/bin/python -m opencompass.cli.main eval_configs/eval_style.py -w outputs/style_eval
# Settings, from the environment (paths absolute or relative to the repository root; unset: the
# defaults in style_tune/core/defaults.py):
#   STYLE_EVAL_MODELS                   the models, a COMPARE spec (style_tune/core/compare.py): NAME=DIR
#                                       (transformers, as below) or NAME=URL/v1#MODEL (OpenCompass's
#                                       OpenAISDK, greedy; key from OPENAI_API_KEY, which must be set);
#                                       make passes it (style_tune/eval/run_opencompass.py: directories
#                                       made absolute, each API's MODEL filled in). Unset: the two below
#   STYLE_EVAL_BASE, STYLE_EVAL_TUNED   model directories (defaults: models/Qwen2.5-1.5B-Instruct and
#                                       the merge of make train's default config), named base and tuned
#   STYLE_EVAL_DATA_DIR                 the split: train.json (the style judge), test.json (the prompts)
#   STYLE_EVAL_MODE                     label | controllable: the format the split and the model use
#   STYLE_EVAL_LIMIT                    evaluate this many prompts (drawn with STYLE_EVAL_SEED); 0 = all
#   STYLE_EVAL_MAX_OUT_LEN              token budget of a reply (greedy decoding, stops at <|im_end|>)
#   STYLE_EVAL_DEVICE                   cpu | cuda;  STYLE_EVAL_BATCH_SIZE
# Each prompt is the data row's own system text (a system message, first) and its user input,
# rendered by the model's chat template: the prompt the model was trained on.
# Configs are evaluated lazily (mmengine): an imported name other than a class is a lazy object here
# and does not survive the config dump OpenCompass makes, so values from style_tune (defaults, meta
# template, metric list) are read with __import__ at load time.
from mmengine.config import read_base
from opencompass.models import HuggingFacewithChatTemplate, OpenAISDK
from opencompass.openicl.icl_inferencer import GenInferencer
from opencompass.openicl.icl_prompt_template import PromptTemplate
from opencompass.openicl.icl_retriever import ZeroRetriever

from style_tune.eval.evaluator import StyleEvaluator, StyleReplyDataset

with read_base():
    # one inference task and one evaluation task per model (all datasets together), two at a time
    from ._runners import eval, infer

# OpenCompass's task processes rebuild the dataset and evaluator from the dumped config, by name: this
# import registers them there (style_tune is installed in the eval env: tools/setup_env.sh).
custom_imports = dict(imports=["style_tune.eval.evaluator"], allow_failed_imports=False)

_os = __import__("os")
_env = _os.environ
_defaults = __import__("style_tune.core.defaults", fromlist=["_"])  # style_tune/core/defaults.py
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
base_path = _os.path.join(_root, _env.get("STYLE_EVAL_BASE", _defaults.BASE_MODEL))
tuned_path = _os.path.join(
    _root, _env.get("STYLE_EVAL_TUNED", "models/qwen2_5_1_5b_instruct_lora_bf16_style_e3-merged"))
data_dir = _os.path.join(_root, _env.get("STYLE_EVAL_DATA_DIR", _defaults.split_dir()))
mode = _env.get("STYLE_EVAL_MODE", _defaults.MODE)
limit = int(_env.get("STYLE_EVAL_LIMIT", "0"))
sample_seed = int(_env.get("STYLE_EVAL_SEED", _defaults.SEED))
max_out_len = int(_env.get("STYLE_EVAL_MAX_OUT_LEN", _defaults.EVAL_MAX_OUT_LEN))
on_gpu = _env.get("STYLE_EVAL_DEVICE", "cuda") == "cuda"
batch_size = int(_env.get("STYLE_EVAL_BATCH_SIZE", "16" if on_gpu else "8"))
# (name, directory or URL, the API's model, whether it is an API), in the spec's order
compared = [(c.name, c.where if c.is_api else _os.path.join(_root, c.where), c.model, c.is_api)
            for c in __import__("style_tune.core.compare", fromlist=["_"]).parse_compare(
                _env["STYLE_EVAL_MODELS"])] if _env.get("STYLE_EVAL_MODELS") else [
    ("base", base_path, "", False), ("tuned", tuned_path, "", False)]
# the tokenizer that counts reply tokens (runaway replies; an API model's prompt length): the first
# model directory's (None when every model is an API: no runaway count)
tokenizer_path = next((where for _, where, _, api in compared if not api), None)
del _os, _env, _defaults

# ------------------------------------------------------------------------------------ dataset
style_reader_cfg = dict(input_columns=["system", "input"], output_column="references", test_split="train")

style_infer_cfg = dict(
    prompt_template=dict(
        type=PromptTemplate,
        template=dict(
            begin=[dict(role="SYSTEM", fallback_role="HUMAN", prompt="{system}")],
            round=[dict(role="HUMAN", prompt="{input}"), dict(role="BOT", prompt="")],
        ),
    ),
    retriever=dict(type=ZeroRetriever),
    # the token budget is the dataset's, so the evaluator knows it (runaway replies)
    inferencer=dict(type=GenInferencer, max_out_len=max_out_len),
)

style_eval_cfg = dict(
    evaluator=dict(
        type=StyleEvaluator,
        train_path=f"{data_dir}/train.json",
        mode=mode,
        max_out_len=max_out_len,
        tokenizer_path=tokenizer_path,
        seed=0,
    ),
)

datasets = [
    dict(
        abbr=f"style-{mode}",
        type=StyleReplyDataset,
        path=f"{data_dir}/test.json",
        mode=mode,
        limit=limit,
        seed=sample_seed,
        reader_cfg=style_reader_cfg,
        infer_cfg=style_infer_cfg,
        eval_cfg=style_eval_cfg,
    )
]

# ------------------------------------------------------------------------------------ models
# The meta template keeps the dataset's SYSTEM item a real system message (OpenCompass's default one
# would make it a user message): style_tune.core.prompts.OPENCOMPASS_META_TEMPLATE.
_meta_template = __import__("style_tune.core.prompts", fromlist=["_"]).OPENCOMPASS_META_TEMPLATE
# An API model (NAME=URL/v1#MODEL) is asked through OpenCompass's OpenAISDK with the same messages, greedy
# (temperature 0); OpenAISDK reads the key from OPENAI_API_KEY (key="ENV": never written into the dumped
# config) and loads tokenizer_path with trust_remote_code=True, so it gets a model directory of this
# comparison (a Qwen tokenizer: no remote code to run). Two requests a second, retried twice.
models = [
    dict(
        type=HuggingFacewithChatTemplate,
        abbr=name,
        path=where,
        meta_template=_meta_template,
        model_kwargs=dict(device_map="auto", torch_dtype="torch.bfloat16") if on_gpu
        else dict(device_map="cpu", torch_dtype="torch.float32"),
        generation_kwargs=dict(do_sample=False),
        max_seq_len=1024,
        max_out_len=max_out_len,
        batch_size=batch_size,
        run_cfg=dict(num_gpus=1 if on_gpu else 0),
    ) if not api else dict(
        type=OpenAISDK,
        abbr=name,
        path=model,
        openai_api_base=where,
        key="ENV",
        tokenizer_path=tokenizer_path,
        meta_template=_meta_template,
        temperature=0.0,
        query_per_second=2,
        retry=2,
        max_seq_len=1024,
        max_out_len=max_out_len,
        batch_size=batch_size,
        run_cfg=dict(num_gpus=0),
    )
    for name, where, model, api in compared
]

# The summary table: one row per metric of the mode (style_tune.eval.style_metrics.METRICS), one column
# per model.
summarizer = dict(dataset_abbrs=[
    [f"style-{mode}", metric]
    for metric in __import__("style_tune.eval.style_metrics", fromlist=["_"]).METRICS[mode]
])
