#!/usr/bin/env bash
# The recipe on one NVIDIA GPU, in two parts of <= 5 minutes each on an H100/H200: the steps a user runs,
# through the Makefile, on Qwen2.5-1.5B-Instruct's real shapes with random weights (no download).
#
#   tools/gpu_acceptance.sh part1|part2 [OUT] [--device-stack] [--dry-run]
#
# part1  train the default config and the article's 8-bit config ITERS (5) iterations each on rows that
#        fill the config's max_length, so every step is the config's worst case (batch x max_length:
#        32 x 256 and 20 x 256), with a loss line per iteration and the peak GPU memory (torch's
#        max_memory_allocated, as mmengine logs it, and nvidia-smi) against the article's 24 GB
#        training budget; convert and merge the default run; one `make chat` turn capped at a few
#        tokens; one `make serve` request from the openai client.
# part2  `make eval-style` on 5 prompts (part1's merged model against the base; the base twice where
#        part1 has not run on this machine); `make train DEEPSPEED=deepspeed_zero2` on the same rows;
#        `make split prefs MODE=controllable` and 2 iterations of the DPO config from part1's merged model.
#
# OUT (default outputs/gpu_acceptance/PART) gets summary.md (a row per step: exit code, seconds; the
# versions; the peak memory; the losses; the end of each failed step's log) and logs.tar.gz (every
# step's log). Models, data and work dirs go to GPU_ACCEPTANCE_WORK (default
# outputs/gpu_acceptance/work), which part2 reads part1's merged model from. A failed step does not
# stop the steps that do not need it; the exit code is 1 when a step failed.
#
# Where: a machine with an NVIDIA GPU and the environments (`make setup`). --device-stack: a lent
# machine without a package index (Python 3.12 with its own torch): run `make gpu-wheels` where PyPI
# is reachable and carry .whl/; this then builds .envs/dev and .envs/train there as
# --system-site-packages venvs over that Python (DEVICE_PYTHON, default python3) with the carried
# wheels (tools/gpu_wheels.txt), so every step runs with that machine's torch. What cannot be carried
# is printed and each step that needs it is skipped, with the reason, in the output and summary.md.
# --dry-run: print every step's command (and what --device-stack skips), run nothing, write nothing.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd) || exit 2

usage() { sed -n '2,/^set -uo/p' "$0" | sed -e '/^set -uo/d' -e 's/^# \{0,1\}//'; }
bad_usage() { echo "gpu_acceptance: $1 (usage: tools/gpu_acceptance.sh part1|part2 [OUT] [--device-stack] [--dry-run])" >&2; exit 2; }

part='' out='' device_stack=0 dry_run=0
for arg in "$@"; do
  case $arg in
    -h | --help) usage; exit 0 ;;
    --device-stack) device_stack=1 ;;
    --dry-run) dry_run=1 ;;
    -*) bad_usage "unknown option $arg" ;;
    part1 | part2) [[ -z $part ]] || bad_usage "one part a run"; part=$arg ;;
    *) [[ -n $part && -z $out ]] || bad_usage "unexpected argument $arg"; out=$arg ;;
  esac
done
[[ -n $part ]] || bad_usage "say which part: part1 or part2"
# OUT and GPU_ACCEPTANCE_WORK as given, relative to where the script was started; the steps run from the checkout
[[ -z $out || $out == /* ]] || out=$PWD/$out
work=${GPU_ACCEPTANCE_WORK:-$repo/outputs/gpu_acceptance/work}
[[ $work == /* ]] || work=$PWD/$work
cd "$repo" || exit 2

iters=${ITERS:-5}
[[ $iters =~ ^[1-9][0-9]*$ ]] || bad_usage "ITERS=$iters is not a positive number"
out=${out:-outputs/gpu_acceptance/$part}
logs=$work/logs-$part
model=models/qwen2.5-1.5b-random  # make bench's BENCH_FULL_MODEL: reused when there
default_cfg=xtuner_configs/qwen2_5_1_5b_instruct_lora_bf16_style_e3.py
int8_cfg=xtuner_configs/qwen2_5_1_5b_instruct_lora_int8_style_e3.py
dpo_cfg=xtuner_configs/qwen2_5_1_5b_instruct_lora_bf16_dpo_style.py
dpo_iters=2
prefs=data/controllable/prefs.jsonl  # what `make split prefs MODE=controllable` writes
split_dir=data/label  # what `make split` writes (MODE=label)
long_rows=$work/long_rows.json
adapter=$work/adapter
merged=$work/merged
budget_mib=24576  # the article's 24 GB training card
# ITERS iterations of the epoch-based configs, a checkpoint and a style score at the end, a loss line every
# iteration; the style score (the configs' val_cfg, StyleValLoop: the long-rows step checks it) on 4
# validation prompts of the label split (VAL_DATA: the long rows have no val.json beside them), 8 tokens a reply.
fast="--cfg-options train_cfg.max_epochs=None train_cfg.max_iters=$iters default_hooks.checkpoint.interval=$iters \
train_cfg.val_interval=$iters default_hooks.logger.interval=1 val_dataloader.dataset.limit=4 val_cfg.max_new_tokens=8"
# The DPO config: epoch-based too; its style score on 2 prompts of the controllable split (in both styles).
dpo_fast="--cfg-options train_cfg.max_epochs=None train_cfg.max_iters=$dpo_iters \
default_hooks.checkpoint.interval=$dpo_iters train_cfg.val_interval=$dpo_iters default_hooks.logger.interval=1 \
val_dataloader.dataset.limit=2 val_cfg.max_new_tokens=8"
# lmdeploy chat has no max-new-tokens option and asks for 4,096; the session length caps prompt + reply.
# The label-mode prompt (system text, the question) is 35 tokens: at most 13 new ones.
chat_session_len=48
chat_question='你好，今天过得怎么样？'
serve_max_tokens=8
serve_ready_s=240

# What a --device-stack machine cannot run, and why (tools/gpu_wheels.txt says the same).
declare -A skip_reason=()
if ((device_stack)); then
  skip_reason[train-int8]="bitsandbytes 0.45.0 (the 8-bit config's LLM.int8): its kernels are built for CUDA <= 12.6 \
(this machine's torch is CUDA 13) and its wheel is 66 MiB, over what a call carries"
  lmdeploy_reason="lmdeploy 0.18.0 (TurboMind): built for CUDA 12 (libcudart.so.12; this machine is CUDA 13), \
a 102 MiB wheel, plus a CUDA 12 torch (GBs): not carried"
  skip_reason[chat]=$lmdeploy_reason
  skip_reason[serve]=$lmdeploy_reason
  skip_reason[eval-style]="the eval env (OpenCompass 0.5.4): it imports ~40 packages at start-up, among them sdists \
only (jieba 19 MB, rouge-score, timeout-decorator), and pins numpy < 2 (17 MB): over the 60 MiB carried"
  skip_reason[train-deepspeed]="deepspeed 0.16.2: PyPI has only its sdist, which needs a build against torch \
(this machine has no index for its build)"
fi

if ((dry_run)); then
  echo "[gpu-acceptance] dry run of $part: the steps, nothing run; OUT would be $out"
else
  mkdir -p "$out" "$logs" || exit 2
  out=$(cd "$out" && pwd) logs=$(cd "$logs" && pwd)
  rm -f "$logs"/*.log "$logs"/*.smi
fi
summary=$out/summary.md
rows=() notes=()
failed=0 skipped=0
declare -A rc_of=() config_of=() shape_of=() iters_of=()
train_runs=()

row() { rows+=("| $1 | $2 | $3 | $4 |"); }

show() {  # a command as one line: VAR="a b" quoted, the inline Python programs by name
  local arg line=''
  for arg in "$@"; do
    if [[ $arg == "$long_rows_py" ]]; then arg='"$long_rows_py"'
    elif [[ $arg == *[[:space:]]* && $arg =~ ^[A-Z_]+= ]]; then arg="${arg%%=*}=\"${arg#*=}\""
    elif [[ $arg == *[[:space:]]* ]]; then arg="\"$arg\""
    fi
    line+="$arg "
  done
  printf '%s' "${line% }"
}

step() {  # step NAME LIMIT_S COMMAND...: run it (at most LIMIT_S seconds; a shell function: its own limits), log it, add its row
  local name=$1 limit=$2 start rc
  shift 2
  if [[ -n ${skip_reason[$name]:-} ]]; then
    echo "[gpu-acceptance] $name: SKIPPED on this machine: ${skip_reason[$name]}"
    row "$name" skipped - "${skip_reason[$name]}"
    skipped=$((skipped + 1)) rc_of[$name]=skipped
    return 3
  fi
  echo "[gpu-acceptance] $name: $(show "$@")"
  if ((dry_run)); then
    [[ $(type -t "$1") == function ]] && "$@"
    rc_of[$name]=0
    return 0
  fi
  start=$(date +%s)
  if [[ $(type -t "$1") == function ]]; then
    "$@" >"$logs/$name.log" 2>&1
  else
    timeout -k 10 "$limit" "$@" >"$logs/$name.log" 2>&1
  fi
  rc=$?
  row "$name" "$rc$( ((rc == 124)) && echo " (timed out)")" "$(($(date +%s) - start))" "\`$(show "$@")\`"
  rc_of[$name]=$rc
  ((rc == 0)) || { failed=$((failed + 1)); echo "[gpu-acceptance] $name failed ($rc): $logs/$name.log"; }
  return "$rc"
}

ok() {  # ok STEP...: every STEP ran and passed
  local s
  for s in "$@"; do [[ ${rc_of[$s]:-} == 0 ]] || return 1; done
}

blocked() {  # blocked NAME NEEDS...: the row of a step not run because a step it needs did not pass
  local name=$1 s
  shift
  for s in "$@"; do
    ok "$s" && continue
    if [[ -n ${skip_reason[$name]:-} ]]; then step "$name" 0 true; return; fi
    echo "[gpu-acceptance] $name: not run ($s: ${rc_of[$s]:-not run})"
    row "$name" "not run" - "needs $s, which did not pass"
    failed=$((failed + 1)) rc_of[$name]=blocked
    return
  done
}

train_step() {  # train_step NAME CONFIG WORK_DIR [MAKE VARIABLES...]: make train on the long rows; GPU memory sampled
  local name=$1 cfg=$2 dir=$3 smi='' rc
  shift 3
  config_of[$name]=$cfg
  train_runs+=("$name")
  if ((!dry_run)) && [[ -z ${skip_reason[$name]:-} ]]; then
    rm -rf "$dir"  # a fresh run: no resume from an earlier one
    if command -v nvidia-smi >/dev/null; then
      nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 250 >"$logs/$name.smi" 2>&1 &
      smi=$!
    fi
  fi
  step "$name" 420 make train CONFIG="$cfg" MODEL="$model" DATA="$long_rows" WORK_DIR="$dir" TRAIN_ARGS="$fast" \
    VAL_DATA="$split_dir/val.json" "$@"
  rc=$?
  [[ -z $smi ]] || { kill "$smi" 2>/dev/null; wait "$smi" 2>/dev/null; }
  return "$rc"
}

chat_turn() {  # one scripted `make chat` turn: the question, the empty line that sends it, then exit
  if ((dry_run)); then
    echo "    printf '$chat_question\\n\\nexit\\n\\n' | make chat MODEL=$merged MODE=label CHAT_ARGS=\"--session-len $chat_session_len\""
    return 0
  fi
  printf '%s\n\nexit\n\n' "$chat_question" |
    timeout -k 10 300 make chat MODEL="$merged" MODE=label CHAT_ARGS="--session-len $chat_session_len"
}

# `make serve` through the shared helper (style_tune/deploy/serving.py: its wait ends when the server
# answers, or at once when the server process exits, or after serve_ready_s), started with an API key
# (make serve API_KEY=...: lmdeploy's --api-keys), one request from the official openai client with the
# key and one without, then the server's whole process group is stopped.
serve_py='
import os
import sys
from pathlib import Path

import openai
from openai import OpenAI

from style_tune.deploy.serving import SERVED_MODEL_NAME, serve_model

model, log, ready_s, max_tokens = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
key = "sk-gpu-check-" + os.urandom(8).hex()
with serve_model(model, mode="label", ready_timeout=ready_s, log=log, api_key=key) as server:
    print(f"make serve: ready after {server.startup_s:.0f} s at {server.base_url}", flush=True)
    try:
        OpenAI(base_url=server.base_url, api_key="sk-wrong", max_retries=0).models.list()
        print("a wrong key: answered (NOT refused)")
    except openai.AuthenticationError as err:
        print("a wrong key:", type(err).__name__, err.status_code)
    client = OpenAI(base_url=server.base_url, api_key=key, timeout=120, max_retries=0)
    reply = client.chat.completions.create(model=SERVED_MODEL_NAME, max_tokens=max_tokens,
                                           messages=[{"role": "user", "content": "你好"}])
    choice = reply.choices[0]
    print(f"reply: {choice.message.content!r} (finish_reason {choice.finish_reason})", flush=True)
    try:
        client.chat.completions.create(model="not-" + SERVED_MODEL_NAME, max_tokens=1,
                                       messages=[{"role": "user", "content": "hi"}])
        print("another model name: answered")
    except Exception as err:  # lmdeploy answers another model name with 404
        print("another model name:", type(err).__name__, getattr(err, "status_code", ""))
'

serve_request() {
  if ((dry_run)); then
    echo "    .envs/deploy/bin/python -c \"\$serve_py\": serve_model($merged, mode=label, ready_timeout=$serve_ready_s) -> make serve MODEL=$merged MODE=label; one request, max_tokens=$serve_max_tokens"
    return 0
  fi
  timeout -k 20 360 .envs/deploy/bin/python -c "$serve_py" "$merged" "$logs/serve-server.log" "$serve_ready_s" "$serve_max_tokens"
}

# Rows as long as the configs' max_length, so every batch is batch x max_length (each config's worst case).
long_rows_py='
import json
import sys

from mmengine.config import Config
from transformers import AutoTokenizer

src, dst, model, iters, *configs = sys.argv[1:]
tokenizer = AutoTokenizer.from_pretrained(model)
shapes = {}
for path in configs:
    cfg = Config.fromfile(path)
    loop = str(cfg.val_cfg["type"])
    assert "StyleValLoop" in loop, f"{path}: val_cfg is {loop}, not the style score StyleValLoop: fix the script"
    shapes[path] = (cfg.train_dataloader.batch_size, cfg.train_dataloader.dataset.max_length)
max_length = max(length for _, length in shapes.values())
count = max(batch for batch, _ in shapes.values()) * int(iters)
rows = json.load(open(src, encoding="utf-8"))
out = []
for row in (rows * (count // len(rows) + 1))[:count]:
    turn = dict(row["conversation"][0])
    text = turn["output"]
    while len(tokenizer(text)["input_ids"]) < max_length:  # the reply alone fills max_length
        text += "\n" + turn["output"]
    out.append({"conversation": [{**turn, "output": text}]})
with open(dst, "w", encoding="utf-8") as f:
    json.dump(out, f, ensure_ascii=False)
shortest = min(len(tokenizer(r["conversation"][0]["output"])["input_ids"]) for r in out)
for path, (batch, length) in shapes.items():
    print(f"shape {path} {batch} {length}")
print(f"{dst}: {count} rows; the shortest reply alone is {shortest} tokens >= max_length {max_length}, "
      "so every row is cut to max_length and every batch is batch x max_length")
'

device_stack_setup() {  # the --device-stack venvs: .envs/dev and .envs/train over this machine's Python and torch
  local py=${DEVICE_PYTHON:-python3} env site parent wheels
  wheels=$(ls .whl/*.whl 2>/dev/null | wc -l)
  if ((dry_run)); then
    echo "    $py -m venv --system-site-packages --without-pip .envs/dev .envs/train; $wheels wheels from .whl/ into" \
      ".envs/train (python3 -m pip install --no-index --no-deps --target ...); stamps .envs/{dev,train}/.installed"
    return 0
  fi
  ((wheels > 0)) || { echo "no wheels in .whl/: run \`make gpu-wheels\` where PyPI is reachable and carry .whl"; return 1; }
  for env in dev train; do
    if [[ -e .envs/$env && ! -e .envs/$env/.device-stack ]]; then
      echo ".envs/$env exists and was not made by --device-stack: left alone; run without --device-stack"
      return 1
    fi
  done
  parent=$("$py" -c 'import site; print(site.getsitepackages()[0])') || return 1
  for env in dev train; do
    rm -rf ".envs/$env"
    "$py" -m venv --system-site-packages --without-pip ".envs/$env" || return 1
    site=$(".envs/$env/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))') || return 1
    # A venv made from a venv (/opt/torch/.venv) sees the base interpreter's packages, not that venv's:
    # add them after its own, so the carried wheels come first. And the checkout, as `make setup` does.
    printf 'import site; site.addsitedir(%s)\n' "'$parent'" >"$site/zz_device_site_packages.pth"
    printf '%s\n' "$PWD" >"$site/style_tune_checkout.pth"
  done
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl || return 1
  .envs/train/bin/python -c '
import importlib.metadata as md
import datasets, mmengine, peft, torch, transformers, xtuner
print("train venv:", ", ".join(f"{n} {md.version(n)}" for n in
      ("torch", "transformers", "xtuner", "mmengine", "peft", "datasets", "tokenizers")), f"(CUDA {torch.version.cuda})")
assert torch.cuda.is_available(), "torch sees no GPU"
' || return 1
  touch .envs/dev/.device-stack .envs/train/.device-stack
  touch .envs/dev/.installed && touch .envs/train/.installed  # after the locks: make sees them up to date
}

versions() {  # a line per env: the versions the steps ran with
  local env py
  echo "- GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -1)"
  for env in train eval deploy eval-lmdeploy; do
    py=.envs/$env/bin/python
    [[ -x $py ]] || { echo "- $env env: not built"; continue; }
    echo "- $env env$([[ -e .envs/$env/.device-stack ]] && echo " (--device-stack venv)"): $($py - 2>&1 <<'PY' | tail -1
import importlib.metadata as md, platform, torch
names = ("torch", "transformers", "xtuner", "mmengine", "peft", "datasets", "deepspeed", "bitsandbytes", "lmdeploy",
         "opencompass")
found = [f"{n} {md.version(n)}" for n in names if any(True for _ in md.distributions(name=n))]
print(f"Python {platform.python_version()},", ", ".join(found),
      f"(CUDA {torch.version.cuda}, GPU visible: {torch.cuda.is_available()})")
PY
)"
  done
}

memory_and_losses() {  # per train step: shape, peak memory against the budget, losses
  local name log smi shape alloc used verdict losses count
  echo
  echo "## Peak GPU memory (budget: the article's 24 GB card, $budget_mib MiB)"
  echo
  echo "| run | config | batch x max_length | peak allocated (torch, MiB) | peak used (nvidia-smi, MiB) | verdict |"
  echo "|---|---|---|---|---|---|"
  for name in "${train_runs[@]}"; do
    [[ ${rc_of[$name]:-} =~ ^[0-9]+$ ]] || continue
    log=$logs/$name.log smi=$logs/$name.smi
    shape=${shape_of[$name]:-$(awk -v c="${config_of[$name]}" '$1 == "shape" && $2 == c { print $3 " x " $4 }' \
      "$logs/long-rows.log" 2>/dev/null)}
    alloc=$(grep -F 'Iter(train)' "$log" 2>/dev/null | grep -oE 'memory: [0-9]+' | awk '{ if ($2 > m) m = $2 } END { print m + 0 }')
    used=$(grep -E '^[0-9]+$' "$smi" 2>/dev/null | sort -n | tail -1)
    verdict=$(awk -v a="$alloc" -v u="${used:-0}" -v b="$budget_mib" 'BEGIN {
      p = (u > a) ? u : a; if (p == 0) print "not measured"; else if (p <= b) printf "within (%.0f%%)", 100 * p / b; else print "OVER" }')
    echo "| $name | \`${config_of[$name]##*/}\` | ${shape:-?} | $alloc | ${used:-not sampled} | $verdict |"
  done
  echo
  echo "Peak allocated: the largest \`memory\` of mmengine's iteration lines (torch.cuda.max_memory_allocated since"
  echo "the previous line; the first one covers the model load and the chat hook's samples). Peak used:"
  echo "nvidia-smi's memory.used, sampled every 250 ms: torch's reserved memory plus the CUDA context."
  echo
  echo "## Losses (one line per iteration: default_hooks.logger.interval=1, $iters iterations)"
  echo
  for name in "${train_runs[@]}"; do
    [[ ${rc_of[$name]:-} =~ ^[0-9]+$ ]] || continue
    losses=$(grep -F 'Iter(train)' "$logs/$name.log" 2>/dev/null | grep -oE ' loss: [^ ]+' | awk '{ printf "%s%s", (NR > 1 ? " " : ""), $2 }')
    count=$(wc -w <<<"$losses")
    echo "- $name: ${losses:-none}$( ((count == ${iters_of[$name]:-$iters})) ||
      echo " ($count loss lines for ${iters_of[$name]:-$iters} iterations)")"
  done
}

write_summary() {
  local name
  {
    echo "# GPU acceptance run, $part"
    echo
    echo "- date: $(date -u +%FT%TZ); commit: $(git rev-parse --short HEAD 2>/dev/null || echo '? (no git here)')$(
      git rev-parse -q HEAD >/dev/null 2>&1 && ! git diff --quiet HEAD -- 2>/dev/null && echo ' (with local changes)')"
    echo "- iterations a training run: $iters; steps failed: $failed; skipped on this machine: $skipped"
    if ((device_stack)); then
      echo "- --device-stack: .envs/dev and .envs/train are venvs over this machine's Python and torch with the wheels of"
      echo "  tools/gpu_wheels.txt. Cannot run on this machine, so skipped wherever this part has them:"
      for name in train-int8 chat serve eval-style train-deepspeed; do echo "  - $name: ${skip_reason[$name]}"; done
    fi
    versions
    ((${#notes[@]} == 0)) || printf '%s\n' "${notes[@]/#/- }"
    echo
    echo "| step | exit | seconds | command |"
    echo "|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    ((${#train_runs[@]} == 0)) || memory_and_losses
    for name in "${!rc_of[@]}"; do
      [[ ${rc_of[$name]} =~ ^[1-9][0-9]*$ && -f $logs/$name.log ]] || continue
      echo
      echo "## $name failed (exit ${rc_of[$name]}): the end of its log"
      echo
      echo '```'
      tail -n 25 "$logs/$name.log"
      echo '```'
    done
  } >"$summary"
}

# ---------------------------------------------------------------- the steps
if ((!dry_run)); then
  command -v make >/dev/null || { echo "gpu_acceptance: this machine has no GNU make" >&2; exit 2; }
fi
if ((device_stack)); then
  for name in train-int8 chat serve eval-style train-deepspeed; do
    echo "[gpu-acceptance] cannot run on this machine: $name: ${skip_reason[$name]}"
  done
  step device-stack 300 device_stack_setup
fi

prepare() {  # the random-weight model, the split, the long rows: what both parts start from
  step random-model 600 .envs/train/bin/python -m style_tune.train.tiny_model "$model" --size full
  step split 120 make split
  if ok random-model split; then
    step long-rows 300 .envs/train/bin/python -c "$long_rows_py" "$split_dir/train.json" "$long_rows" "$model" "$iters" \
      "$default_cfg" "$int8_cfg"
  else
    blocked long-rows random-model split
  fi
}

if ((device_stack)) && ! ok device-stack; then
  notes+=("the --device-stack venvs could not be built: nothing else ran (see the device-stack log)")
else
  # (part2 with both of its steps skipped here needs no model, split or rows)
  [[ $part == part2 && -n ${skip_reason[eval-style]:-} && -n ${skip_reason[train-deepspeed]:-} ]] || prepare
  if [[ $part == part1 ]]; then
    for name in train-default train-int8; do
      if ok long-rows; then
        if [[ $name == train-default ]]; then
          train_step train-default "$default_cfg" "$work/work-default"
        else
          train_step train-int8 "$int8_cfg" "$work/work-int8"
        fi
      else
        blocked "$name" long-rows
      fi
    done
    if ok train-default; then
      step convert 300 make convert CONFIG="$default_cfg" MODEL="$model" WORK_DIR="$work/work-default" ADAPTER="$adapter" FORCE=1
    else
      blocked convert train-default
    fi
    if ok convert; then
      step merge 300 make merge MODEL="$model" ADAPTER="$adapter" MERGED="$merged" FORCE=1
    else
      blocked merge convert
    fi
    if ok merge; then
      step chat 0 chat_turn
      step serve 0 serve_request
    else
      blocked chat merge
      blocked serve merge
    fi
  else
    tuned=$merged train_work=$work/work-default
    if ((!dry_run)) && [[ ! -f $merged/config.json ]]; then
      tuned=$model
      notes+=("no merged model from part1 in $work on this machine: eval-style compares the random base with itself")
    fi
    if ok random-model split; then
      step eval-style 420 make eval-style BASE="$model" TUNED="$tuned" MODE=label EVAL_LIMIT=5 EVAL_DEVICE=cuda \
        STYLE_DIR="$work/style_eval" TRAIN_WORK_DIR="$train_work"
    else
      blocked eval-style random-model split
    fi
    if ok long-rows; then
      train_step train-deepspeed "$default_cfg" "$work/work-deepspeed" DEEPSPEED=deepspeed_zero2
    else
      blocked train-deepspeed long-rows
    fi
    # DPO from the model eval-style tuned (part1's merged model, else the random base) on the shipped pairs
    step prefs 120 make split prefs MODE=controllable
    if ok prefs; then
      shape_of[train-dpo]="16 pairs (32 sequences) x <= 256" iters_of[train-dpo]=$dpo_iters
      train_step train-dpo "$dpo_cfg" "$work/work-dpo" MODEL="$tuned" DATA="$prefs" TRAIN_ARGS="$dpo_fast" \
        VAL_DATA="${prefs%/*}/val.json"
    else
      blocked train-dpo prefs
    fi
  fi
fi

if ((dry_run)); then
  echo "[gpu-acceptance] dry run: nothing was run; summary: $summary, logs: $out/logs.tar.gz"
  exit 0
fi
write_summary
tar -czf "$out/logs.tar.gz" -C "$logs" . 2>/dev/null
cat "$summary"
echo "[gpu-acceptance] $part: $failed failed, $skipped skipped; $summary, logs: $out/logs.tar.gz"
exit $((failed > 0))
