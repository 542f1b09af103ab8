"""`make merge`: base model + LoRA adapter -> one merged model directory, ready to serve.

    python -m style_tune.train.merge BASE ADAPTER OUT [--device cpu|cuda|auto] [--force]

The merge XTuner's `xtuner convert merge` does (peft's `PeftModel.from_pretrained` +
`merge_and_unload`, safetensors output, the base model's tokenizer saved beside it), with one
difference: XTuner loads the base in float16, hard-coded, and so writes a float16 model whatever
the base was; here the base is loaded in the dtype its config.json names (`torch_dtype="auto"`:
bfloat16 for Qwen2.5), and the merged model is checked to carry that dtype. The tokenizer's chat
template (Qwen2.5's own) renders exactly the prompt XTuner's qwen_chat template trained on, because
every training row carries its system text. OUT is written to a temporary directory and renamed
when complete; a finished merge is replaced only with --force. Remote code is trusted only when the
base's config.json names some (`auto_map`); Qwen2.5 has none.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from style_tune.core.io import atomic_dir
from style_tune.core.steps import fail, main_of

STEP = "merge"


def merge(base: Path, adapter: Path, out: Path, device: str) -> str:
    """Merge ADAPTER into BASE (loaded in its own dtype) and save it to OUT; return that dtype."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = json.loads((base / "config.json").read_text(encoding="utf-8"))
    remote = "auto_map" in config  # e.g. InternLM2; transformers-native architectures need none
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(
        base, torch_dtype="auto", low_cpu_mem_usage=True, device_map=device, trust_remote_code=remote
    )
    dtype = model.dtype
    merged = PeftModel.from_pretrained(model, adapter, is_trainable=False).merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True, max_shard_size="2GB")
    AutoTokenizer.from_pretrained(base, trust_remote_code=remote).save_pretrained(out)
    written = json.loads((out / "config.json").read_text(encoding="utf-8")).get("torch_dtype")
    if written != str(dtype).removeprefix("torch."):
        fail(STEP, f"the merged model was saved as {written}, not the base model's {dtype}")
    return written


#: What a merged model holds beside its weights (tokenizer, configs) is small; this much room is kept
#: on top of the weights' size.
SPARE_BYTES = 64 * 2**20


def check_free_space(base: Path, out: Path) -> None:
    """Stop before loading anything if OUT's file system cannot hold a copy of BASE's weights (the merged
    model has the base's shapes and dtype), rather than after minutes with a half-written temporary."""
    needed = sum(path.stat().st_size for pattern in ("*.safetensors", "*.bin") for path in base.glob(pattern))
    needed += SPARE_BYTES
    existing = next(parent for parent in (out.absolute(), *out.absolute().parents) if parent.exists())
    free = shutil.disk_usage(existing).free
    if free < needed:
        fail(STEP, f"{existing} has {free / 2**30:.2f} GiB free; the merged model needs about "
                   f"{needed / 2**30:.2f} GiB (the size of {base}'s weights): free some space, or set "
                   "MERGED= to a disk with room")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Merge a LoRA adapter into its base model.")
    parser.add_argument("base", type=Path)
    parser.add_argument("adapter", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--force", action="store_true", help="replace an existing merged model")
    args = parser.parse_args(argv)

    if not (args.base / "config.json").is_file():
        fail(STEP, f"base model {args.base} has no config.json; run `make download` (or `make tiny-model`)")
    if not (args.adapter / "adapter_config.json").is_file():
        fail(STEP, f"adapter {args.adapter} has no adapter_config.json; run `make convert`")
    check_free_space(args.base, args.out)
    with atomic_dir(args.out, force=args.force, step=STEP) as tmp:
        dtype = merge(args.base, args.adapter, tmp, args.device)
    print(f"{STEP}: merged model ({dtype}, the base model's dtype) written to {args.out}")
    return 0


if __name__ == "__main__":
    main_of(STEP, main)
