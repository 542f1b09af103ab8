#!/usr/bin/env bash
# The recipe on one NVIDIA GPU, end to end and short (meant for <= 8 minutes on an H100/H200 once the
# environments exist): every step a user runs, through the Makefile, on the real Qwen2.5-1.5B-Instruct
# shapes with random weights (style_tune/train/tiny_model.py --size full; no download), then a summary.
#
#   make setup TORCH=cuda            # once, where the package index is reachable
#   tools/gpu_acceptance.sh [OUT]    # OUT defaults to outputs/gpu_acceptance; ITERS=5 iterations a run
#
# Steps: train the default config and the article's 8-bit config a few iterations; train the default config with
# DEEPSPEED=deepspeed_zero2; convert + merge the default run; one scripted `make chat` turn; `make serve`
# answering one request from the official openai client; `make eval-style` on 5 prompts. Each step's
# output goes to OUT/<step>.log; OUT/summary.md gets one row per step (exit code, seconds) and the
# versions the envs hold. A failed step does not stop the ones that do not depend on it.
# Where the package index is out of reach (a lent machine that takes 64 MiB of files a call) the
# CUDA 12 envs cannot be carried (torch and its nvidia-*-cu12 wheels are GBs): only a nearest set
# (that machine's own torch, with the pure-Python pins carried as wheels into venvs made with
# --system-site-packages and stamped .installed-cuda) can run this there, and its summary lists the
# versions it ran with.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-outputs/gpu_acceptance}
iters=${ITERS:-5}
port=${SERVER_PORT:-23333}
mkdir -p "$out"
out=$(cd "$out" && pwd)
summary=$out/summary.md
model=models/qwen2.5-1.5b-random
default_cfg=xtuner_configs/qwen2_5_1_5b_instruct_lora_bf16_packed_style_e3.py
int8_cfg=xtuner_configs/qwen2_5_1_5b_instruct_lora_int8_style_e3.py
merged=$out/merged
# A few iterations of an epoch-based config; the sample-generation hook generates only a few tokens.
fast="--cfg-options train_cfg.max_epochs=None train_cfg.max_iters=$iters default_hooks.checkpoint.interval=$iters \
custom_hooks.1.max_new_tokens=8"
export TORCH=cuda

{
  echo "# GPU acceptance run"
  echo
  echo "- date: $(date -u +%FT%TZ); commit: $(git rev-parse --short HEAD 2>/dev/null || echo ?)"
  echo "- GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -1)"
  for env in train eval deploy eval-lmdeploy; do
    py=.envs/$env/bin/python
    [[ -x $py ]] || { echo "- $env env: not built"; continue; }
    echo "- $env env: $($py - 2>&1 <<'PY' | tail -1
import importlib.metadata as md, torch
names = ("torch", "transformers", "xtuner", "deepspeed", "bitsandbytes", "lmdeploy", "opencompass")
found = [f"{n} {md.version(n)}" for n in names if any(True for _ in md.distributions(name=n))]
print(", ".join(found), f"(CUDA {torch.version.cuda}, GPU visible: {torch.cuda.is_available()})")
PY
)"
  done
  echo
  echo "| step | exit | seconds | command |"
  echo "|---|---|---|---|"
} >"$summary"

failed=0
step() {  # step NAME COMMAND...: run it, log it, add its row
  local name=$1 start rc
  shift
  echo "[gpu-acceptance] $name: $*"
  start=$(date +%s)
  "$@" >"$out/$name.log" 2>&1
  rc=$?
  echo "| $name | $rc | $(($(date +%s) - start)) | \`$*\` |" >>"$summary"
  ((rc == 0)) || { failed=$((failed + 1)); echo "[gpu-acceptance] $name failed ($rc): $out/$name.log"; }
  return $rc
}

chat_turn() {  # one scripted turn of `make chat`: a question, an empty line to send it, then exit
  printf '你好，今天过得怎么样？\n\nexit\n\n' | timeout 300 make chat MODEL="$merged" MODE=label
}

serve_request() {  # `make serve` in the background; one chat completion from the openai client
  setsid make serve MODEL="$merged" MODE=label SERVER_PORT="$port" >"$out/serve-server.log" 2>&1 &
  local server=$! rc
  .envs/deploy/bin/python - "$port" <<'PY'
import sys, time
from openai import OpenAI
client = OpenAI(base_url=f"http://127.0.0.1:{sys.argv[1]}/v1", api_key="none")
for _ in range(240):  # the engine loads for a while
    try:
        client.models.list()
        break
    except Exception:
        time.sleep(1)
reply = client.chat.completions.create(model="style-tune", max_tokens=32,
                                       messages=[{"role": "user", "content": "你好"}])
print("reply:", reply.choices[0].message.content)
try:
    client.chat.completions.create(model="not-style-tune", messages=[{"role": "user", "content": "hi"}])
    print("another model name was answered")
except Exception as err:  # lmdeploy 0.18 answers other model names with 404
    print("another model name:", type(err).__name__, getattr(err, "status_code", ""))
PY
  rc=$?
  kill -- "-$server" 2>/dev/null  # its own process group: make, style_tune/deploy/chat.py, lmdeploy
  wait "$server" 2>/dev/null
  return $rc
}

step random-model bash -c "[[ -f $model/config.json ]] || .envs/train/bin/python -m style_tune.train.tiny_model $model --size full"
step split make split
step train-default make train CONFIG=$default_cfg MODEL=$model WORK_DIR="$out/work-default" TRAIN_ARGS="$fast"
step train-int8 make train CONFIG=$int8_cfg MODEL=$model WORK_DIR="$out/work-int8" TRAIN_ARGS="$fast"
step train-deepspeed make train CONFIG=$default_cfg MODEL=$model WORK_DIR="$out/work-deepspeed" \
  DEEPSPEED=deepspeed_zero2 TRAIN_ARGS="$fast"
step convert make convert CONFIG=$default_cfg MODEL=$model WORK_DIR="$out/work-default" ADAPTER="$out/adapter" FORCE=1 &&
  step merge make merge MODEL=$model ADAPTER="$out/adapter" MERGED="$merged" FORCE=1 &&
  { step chat chat_turn; step serve serve_request; }
step eval-style make eval-style BASE=$model TUNED="$merged" MODE=label EVAL_LIMIT=5 EVAL_DEVICE=cuda \
  STYLE_DIR="$out/style_eval" TRAIN_WORK_DIR="$out/work-default"

{
  echo
  echo "Losses (XTuner's logs): default $(grep -ho 'loss: [0-9.]*' "$out"/train-default.log | tr '\n' ' ')"
  echo "int8 $(grep -ho 'loss: [0-9.]*' "$out"/train-int8.log | tr '\n' ' ')"
  echo
  echo "Steps failed: $failed"
} >>"$summary"
cat "$summary"
exit $((failed > 0))
