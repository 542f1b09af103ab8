"""Build a stand-in for Qwen2.5-1.5B-Instruct offline: real architecture and tokenizer, random weights.

    python tools/build_tiny_model.py OUT_DIR [--size tiny|full] [--seed 0] [--force]

The output directory has the same files a modelscope download of Qwen/Qwen2.5-1.5B-Instruct has
(config.json, generation_config.json, model.safetensors, tokenizer.json, tokenizer_config.json,
vocab.json, merges.txt), so every tool of the recipe loads it by path exactly like the real model.

- Model: ``Qwen2ForCausalLM`` built from the real model's config.json (tools/qwen2_5_1_5b_instruct/);
  ``--size tiny`` shrinks only the widths and depth (the vocabulary stays full size), ``--size full``
  keeps the real shapes (for memory/compute benchmarks). Weights are seeded, so the output is
  deterministic.
- Tokenizer: the real Qwen2.5 byte-level BPE, rebuilt from ``qwen.tiktoken`` (151,643 ranks) that the
  PyPI package dashscope ships, plus Qwen2.5's 22 added tokens (151643 ``<|endoftext|>`` ...),
  its NFC normalizer and split regex, and its chat template.

The output is written to a temporary directory beside OUT_DIR and renamed when complete; an existing
OUT_DIR is kept unless --force is given.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from style_tune.steps import atomic_dir  # noqa: E402

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


def qwen_tiktoken_path() -> Path:
    """Where the dashscope package keeps qwen.tiktoken (found without importing dashscope)."""
    spec = importlib.util.find_spec("dashscope")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("build_tiny_model: the dashscope package is not installed (run `make setup`).")
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise SystemExit(f"build_tiny_model: {path} is missing; reinstall dashscope (`make setup`)")
    return path


def build_tokenizer():
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


def build_model(size: str, seed: int):
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    values = json.loads((SPEC_DIR / "config.json").read_text(encoding="utf-8"))
    if size == "tiny":
        values.update(TINY_SHAPES, torch_dtype="float32")
    config = Qwen2Config(**values)
    torch.manual_seed(seed)
    dtype = torch.float32 if size == "tiny" else torch.bfloat16
    model = Qwen2ForCausalLM(config).to(dtype)
    model.generation_config = GenerationConfig.from_pretrained(SPEC_DIR)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--size", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="replace an existing OUT_DIR")
    args = parser.parse_args(argv)

    out: Path = args.out_dir
    if out.exists() and not args.force:
        print(f"build_tiny_model: {out} exists; nothing to do (use --force to rebuild).")
        return 0
    with atomic_dir(out, force=True, step="build_tiny_model") as tmp:
        build_tokenizer().save_pretrained(tmp)
        model = build_model(args.size, args.seed)
        model.save_pretrained(tmp, safe_serialization=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"build_tiny_model: wrote {out} ({args.size}, {n_params / 1e6:.1f} M parameters, seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
