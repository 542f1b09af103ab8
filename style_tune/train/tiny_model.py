"""Build a stand-in for Qwen2.5-1.5B-Instruct offline: real architecture and tokenizer, random weights.

    python -m style_tune.train.tiny_model OUT_DIR [--size tiny|full] [--dtype D] [--seed 0] [--force]
    python -m style_tune.train.tiny_model OUT_DIR --arch internlm2     # the eval-select rival's stand-in

The output directory has the same files a modelscope download of Qwen/Qwen2.5-1.5B-Instruct has
(config.json, generation_config.json, model.safetensors, tokenizer.json, tokenizer_config.json,
vocab.json, merges.txt), so every tool of the recipe loads it by path exactly like the real model.

- Model: ``Qwen2ForCausalLM`` built from the real model's config.json (qwen2_5_1_5b_instruct/, beside
  this module);
  ``--size tiny`` shrinks only the widths and depth (the vocabulary stays full size), ``--size full``
  keeps the real shapes (for memory/compute benchmarks). Weights are seeded, so the output is
  deterministic. The weights are saved in float32 (tiny) or bfloat16 (full, the real model's dtype)
  unless ``--dtype`` says otherwise: a bfloat16 tiny model has the real model's dtype for the tests
  that depend on it (the merge keeps it), and the same weights as the float32 one, rounded.
- Tokenizer: the real Qwen2.5 byte-level BPE, rebuilt from ``qwen.tiktoken`` (151,643 ranks) that the
  PyPI package dashscope ships, plus Qwen2.5's 22 added tokens (151643 ``<|endoftext|>`` ...),
  its NFC normalizer and split regex, and its chat template.

``--arch internlm2`` builds a tiny stand-in for internlm2_5-1_8b-chat, the model `make eval-select`
compares with: ``InternLM2ForCausalLM`` loaded the way the real model is, through remote code named
by ``auto_map`` in its config.json (``trust_remote_code``). That code, modeling_internlm2.py and
configuration_internlm2.py, is copied from the installed xtuner package (xtuner/_lite/modelings/
internlm2/), which ships InternLM2's Hugging Face modeling code. No installed package ships
InternLM2's tokenizer (tokenization_internlm2.py, a sentencepiece ``InternLM2Tokenizer``): the
stand-in carries the Qwen2.5 tokenizer above with a ChatML chat template (InternLM2's turn format,
without its ``<s>``), so the real tokenizer and its template are not what it verifies.

The output is written to a temporary directory beside OUT_DIR and renamed when complete; an existing
OUT_DIR is kept unless --force is given.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING

from style_tune.core.io import atomic_dir, sweep_temporaries
from style_tune.core.steps import main_of

if TYPE_CHECKING:  # imported when used (the dev env, which checks the types, has no transformers)
    from transformers import PreTrainedModel, Qwen2ForCausalLM, Qwen2TokenizerFast

STEP = "build_tiny_model"

SPEC_DIR = Path(__file__).resolve().parent / "qwen2_5_1_5b_instruct"

#: Qwen2's pre-tokenizer split regex (its tokenizer.json), different from tiktoken's cl100k one.
QWEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

#: Qwen2.5's added tokens in id order from 151643; True = special (skipped when decoding).
ADDED_TOKENS: list[tuple[str, bool]] = [
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
]
FIRST_ADDED_ID = 151643

#: InternLM2's remote code in the xtuner wheel, and the auto_map that makes transformers load it.
INTERNLM2_CODE = ("configuration_internlm2.py", "modeling_internlm2.py")
INTERNLM2_AUTO_MAP = {
    "AutoConfig": "configuration_internlm2.InternLM2Config",
    "AutoModel": "modeling_internlm2.InternLM2ForCausalLM",
    "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM",
}
#: The InternLM2 stand-in: tiny widths; grouped-query attention, no biases and dynamic NTK rope
#: scaling as internlm2.5 uses; the vocabulary is the stand-in tokenizer's.
INTERNLM2_TINY = dict(
    architectures=["InternLM2ForCausalLM"],
    model_type="internlm2",
    auto_map=INTERNLM2_AUTO_MAP,
    hidden_size=64,
    intermediate_size=176,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    hidden_act="silu",
    bias=False,
    max_position_embeddings=32768,
    rope_theta=1000000,
    rope_scaling={"type": "dynamic", "factor": 2.0},
    rms_norm_eps=1e-5,
    initializer_range=0.2,
    tie_word_embeddings=False,
    attn_implementation="eager",
    torch_dtype="float32",
)
#: InternLM2's chat turns (ChatML), no default system message.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']"
    " + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% endif %}"
)

#: The stand-in's shapes: small enough to train on 2 CPU cores, same architecture and vocabulary.
TINY_SHAPES = dict(
    hidden_size=64,
    intermediate_size=176,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_window_layers=2,
    # Qwen's 0.02 gives a 64-wide random model output logits so flat (norm-capped near ln(vocab))
    # that LoRA can hardly lower the loss; a wider init gives the frozen embeddings some contrast.
    initializer_range=0.2,
)


def installed_package_dir(name: str) -> Path:
    """Where an installed package lives (found without importing it)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{STEP}: the {name} package is not installed (run `make setup`).")
    return Path(next(iter(spec.submodule_search_locations)))


def qwen_tiktoken_path() -> Path:
    """Where the dashscope package keeps qwen.tiktoken (found without importing dashscope)."""
    path = installed_package_dir("dashscope") / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise SystemExit(f"{STEP}: {path} is missing; reinstall dashscope (`make setup`)")
    return path


def build_tokenizer() -> Qwen2TokenizerFast:
    """The Qwen2.5 tokenizer as a transformers Qwen2TokenizerFast."""
    from tokenizers import AddedToken, normalizers
    from transformers import Qwen2TokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    backend = TikTokenConverter(
        vocab_file=str(qwen_tiktoken_path()), pattern=QWEN_PATTERN, additional_special_tokens=[]
    ).converted()
    backend.normalizer = normalizers.NFC()
    for content, special in ADDED_TOKENS:
        token = AddedToken(content, special=special, normalized=False)
        added = backend.add_special_tokens([token]) if special else backend.add_tokens([token])
        assert added == 1, content
    assert backend.token_to_id("<|endoftext|>") == FIRST_ADDED_ID
    assert backend.get_vocab_size() == FIRST_ADDED_ID + len(ADDED_TOKENS)

    spec_tokenizer = json.loads((SPEC_DIR / "tokenizer_config.json").read_text(encoding="utf-8"))
    tokenizer = Qwen2TokenizerFast(
        tokenizer_object=backend,
        eos_token=spec_tokenizer["eos_token"],
        pad_token=spec_tokenizer["pad_token"],
        unk_token=None,
        bos_token=None,
        additional_special_tokens=spec_tokenizer["additional_special_tokens"],
        model_max_length=spec_tokenizer["model_max_length"],
        errors=spec_tokenizer["errors"],
        clean_up_tokenization_spaces=spec_tokenizer["clean_up_tokenization_spaces"],
        split_special_tokens=spec_tokenizer["split_special_tokens"],
    )
    tokenizer.chat_template = (SPEC_DIR / "chat_template.jinja").read_text(encoding="utf-8")
    return tokenizer


def build_model(size: str, seed: int, dtype_name: str | None = None) -> Qwen2ForCausalLM:
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    values = json.loads((SPEC_DIR / "config.json").read_text(encoding="utf-8"))
    dtype_name = dtype_name or ("float32" if size == "tiny" else "bfloat16")
    if size == "tiny":
        values.update(TINY_SHAPES)
    values["torch_dtype"] = dtype_name
    config = Qwen2Config(**values)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).to(getattr(torch, dtype_name))
    model.generation_config = GenerationConfig.from_pretrained(SPEC_DIR)
    return model


def build_internlm2(out: Path, seed: int) -> PreTrainedModel:
    """The InternLM2 stand-in into OUT: remote code, config.json with auto_map, weights, tokenizer."""
    import shutil

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    code_dir = installed_package_dir("xtuner") / "_lite" / "modelings" / "internlm2"
    for name in INTERNLM2_CODE:
        if not (code_dir / name).is_file():
            raise SystemExit(f"{STEP}: {code_dir / name} is missing; reinstall xtuner: make setup")
        shutil.copyfile(code_dir / name, out / name)
    tokenizer = build_tokenizer()
    tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.save_pretrained(out)
    im_end, endoftext = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    values = dict(INTERNLM2_TINY, vocab_size=len(tokenizer), eos_token_id=im_end)
    values.update(bos_token_id=endoftext, pad_token_id=endoftext)
    (out / "config.json").write_text(json.dumps(values, indent=2) + "\n", encoding="utf-8")
    # Loaded the way OpenCompass and transformers load the real model: by auto_map, remote code.
    config = AutoConfig.from_pretrained(out, trust_remote_code=True)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, trust_remote_code=True, torch_dtype=torch.float32)
    model.config.name_or_path = ""  # not the temporary build directory
    model.generation_config = GenerationConfig(
        bos_token_id=endoftext, eos_token_id=[im_end, endoftext], pad_token_id=endoftext
    )
    model.save_pretrained(out, safe_serialization=True)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--arch", choices=("qwen2.5", "internlm2"), default="qwen2.5")
    parser.add_argument("--size", choices=("tiny", "full"), default="tiny", help="qwen2.5 only")
    parser.add_argument(
        "--dtype", choices=("float32", "bfloat16", "float16"), help="default: float32 tiny, bfloat16 full"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="replace an existing OUT_DIR")
    args = parser.parse_args(argv)

    out: Path = args.out_dir
    if out.exists() and not args.force:
        sweep_temporaries(out, STEP)
        print(f"{STEP}: {out} exists; nothing to do (use --force to rebuild).")
        return 0
    with atomic_dir(out, force=True, step=STEP) as tmp:
        if args.arch == "internlm2":
            model = build_internlm2(tmp, args.seed)
        else:
            build_tokenizer().save_pretrained(tmp)
            model = build_model(args.size, args.seed, args.dtype)
            model.save_pretrained(tmp, safe_serialization=True)
    n_params = sum(p.numel() for p in model.parameters())
    what = f"{args.arch} {args.size}, {n_params / 1e6:.1f} M parameters, {model.dtype}, seed {args.seed}"
    print(f"{STEP}: wrote {out} ({what})")
    return 0


if __name__ == "__main__":
    main_of(STEP, main)
