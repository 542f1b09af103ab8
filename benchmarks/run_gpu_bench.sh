#!/usr/bin/env bash
# How benchmarks/train_bench_cuda.{md,json} were measured: one run on a lent GPU machine that has
# PyTorch but not the train toolchain and no network. The missing packages travel as wheels in .whl/
# (xtuner 0.2.0, mmengine 0.10.6, transformers 4.48.0, peft 0.14.0, datasets 3.2.0, ..., and
# bitsandbytes 0.49.0 reduced to its CUDA 13 kernel: 0.45.0, the train env's pin, has no kernels for
# that machine's CUDA 13 torch). Usage there: bash benchmarks/run_gpu_bench.sh OUT_DIR
set -euo pipefail
out=${1:?usage: run_gpu_bench.sh OUT_DIR}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
cp -r .whl/bitsandbytes .whl/bitsandbytes-0.49.0.dist-info /tmp/site/
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
nvidia-smi -L
python3 -m style_tune.data.split style_data/style_chat_data.csv --out-dir data/label
# Qwen2.5-1.5B-Instruct's real shapes and tokenizer, random bf16 weights: compute and memory of the real model.
python3 -m style_tune.train.tiny_model models/qwen2.5-1.5b-random --size full
python3 -m benchmarks.bench_train --model models/qwen2.5-1.5b-random --data data/label/train.json \
  --steps "${BENCH_STEPS:-10}" --warmup 3 --device cuda --inference-model models/qwen2.5-1.5b-random \
  --out "$out/train_bench_cuda" || echo "bench: some variant failed (see the table)"
