"""`make merge`: base model + LoRA adapter -> one merged model directory, ready to serve.

    python tools/merge_adapter.py BASE ADAPTER OUT [--device cpu|cuda|auto] [--force]

Runs XTuner's own merge (`xtuner convert merge`, safetensors output). It saves the base model's
tokenizer with it, whose chat template (Qwen2.5's own) renders exactly the prompt XTuner's
qwen_chat template trained on, because every training row carries its system text. OUT is written
to a temporary directory and renamed when complete; a finished merge is replaced only with --force.
XTuner loads the base with trust_remote_code=True: merge only models you trust.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from style_tune.steps import atomic_dir, fail, run  # noqa: E402

STEP = "merge"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Merge a LoRA adapter into its base model.")
    parser.add_argument("base", type=Path)
    parser.add_argument("adapter", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--device", default=None, choices=("cpu", "cuda", "auto"))
    parser.add_argument("--force", action="store_true", help="replace an existing merged model")
    args = parser.parse_args(argv)

    if not (args.base / "config.json").is_file():
        fail(STEP, f"base model {args.base} has no config.json; run `make download` (or `make tiny-model`)")
    if not (args.adapter / "adapter_config.json").is_file():
        fail(STEP, f"adapter {args.adapter} has no adapter_config.json; run `make convert`")
    with atomic_dir(args.out, force=args.force, step=STEP) as tmp:
        cmd = [sys.executable, "-m", "xtuner.tools.model_converters.merge", str(args.base), str(args.adapter)]
        cmd += [str(tmp), "--safe-serialization"]
        if args.device:
            cmd += ["--device", args.device]
        run(STEP, cmd)
        for name in ("config.json", "tokenizer_config.json"):
            if not (tmp / name).is_file():
                fail(STEP, f"XTuner's merge wrote no {name}")
    print(f"{STEP}: merged model written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
