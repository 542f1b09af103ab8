# style-tune: fine-tune Qwen2.5-1.5B-Instruct to chat in a chosen style (温柔 / 毒舌) with XTuner.
#
#   make demo        offline, CPU only: the whole recipe on a tiny stand-in model (start here)
#   make test        build what the tests need, run them all
#   make download split train convert merge chat      the real recipe on a GPU
#
# Every step is a target; every path is a variable (make train MODEL=... DATA=...). `make help`.

SHELL := /bin/bash
.SECONDEXPANSION:
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

# Bootstraps uv (tools/setup_env.sh; any Python 3 with pip) and writes .envs/defaults.mk. Every env,
# and every step, runs Python 3.11 (the one CI tests): uv picks or fetches it.
PYTHON ?= python3
# Where models run: cuda on a machine with an NVIDIA GPU, else cpu (the envs are the same on both).
DEVICE ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo cuda || echo cpu)

ENVS := .envs
TRAIN_PY := $(ENVS)/train/bin/python
EVAL_PY := $(ENVS)/eval/bin/python
DEPLOY_PY := $(ENVS)/deploy/bin/python
DEV_PY := $(ENVS)/dev/bin/python
WEBUI_PY := $(ENVS)/webui/bin/python
MUTATION_PY := $(ENVS)/mutation/bin/python

# The defaults shared with the steps and configs (style_tune/core/defaults.py) as DEFAULT_* variables,
# rewritten when that file changes (make remakes an included makefile first, then reads it).
DEFAULTS_MK := $(ENVS)/defaults.mk
$(DEFAULTS_MK): style_tune/core/defaults.py
	@mkdir -p $(@D) && $(PYTHON) -m style_tune.core.defaults > $@.$$$$.tmp && mv $@.$$$$.tmp $@
include $(DEFAULTS_MK)

# Models
MODELS ?= models
BASE_MODEL ?= $(MODELS)/$(notdir $(DEFAULT_BASE_MODEL))
TINY_MODEL ?= $(MODELS)/$(notdir $(DEFAULT_TINY_MODEL))

# Data (style_tune/data/split.py)
CSV ?= style_data/style_chat_data.csv
MODE ?= $(DEFAULT_MODE)
SEED ?= $(DEFAULT_SEED)
SPLIT_DIR ?= data/$(MODE)

# Training (xtuner_configs/)
# bf16 LoRA, length-grouped batches, one conversation per sample (benchmarks/README.md); the
# article-faithful 8-bit recipe is CONFIG=xtuner_configs/qwen2_5_1_5b_instruct_lora_int8_style_e3.py.
CONFIG ?= xtuner_configs/qwen2_5_1_5b_instruct_lora_bf16_style_e3.py
MODEL ?= $(BASE_MODEL)
DATA ?= $(SPLIT_DIR)/train.json
WORK_DIR ?= work_dirs/$(basename $(notdir $(CONFIG)))
DEEPSPEED ?=
# The split the style score at every save asks (xtuner_configs/ PART 1): default val.json beside DATA.
VAL_DATA ?=
# VIS=tensorboard: TensorBoard event files beside mmengine's scalars.json (which is always written);
# open them with .envs/train/bin/tensorboard --logdir $(WORK_DIR) --host 127.0.0.1 (docs/recipe.md).
VIS ?=
# convert: ITER=N converts iter_N.pth, ITER=best the best checkpoint by the style score (style_scores.jsonl
# says which and why); default the newest.
ITER ?=
ADAPTER ?= $(WORK_DIR)/adapter
MERGED ?= $(MODELS)/$(basename $(notdir $(CONFIG)))-merged
FORCE ?=
# more `xtuner train` arguments, e.g. TRAIN_ARGS="--cfg-options train_cfg.max_iters=10"
TRAIN_ARGS ?=

# The demo: the same steps on a small stand-in base, with the CPU overrides of one config per MODE.
# The stand-in (style_tune/train/demo_base.py, built once and cached like tiny-model): the tiny Qwen2 with
# the real tokenizer cut to the data's tokens, pretrained on the train split's unlabelled text (each
# prompt with one of its replies: the other is left for the fine-tune to write in the style asked for),
# in conversations whose replies keep one style, so the base carries a style through a context.
DEMO_CONFIG := xtuner_configs/qwen2_5_tiny_lora$(if $(filter controllable,$(MODE)),_controllable)_style_cpu.py
# DEMO_SEED=N: the stand-in's pretraining seed N and the fine-tune's seed 42+N, each seed in paths of its
# own (the figures in README are the mean and range over seeds 0, 1, 2: make demo-seeds).
DEMO_SEED ?= 0
DEMO_SUFFIX = $(if $(filter-out 0,$(DEMO_SEED)),-seed$(DEMO_SEED))
DEMO_BASE ?= $(MODELS)/tiny-qwen2.5-demo-base$(DEMO_SUFFIX)
# pretraining steps (batches of 16 exchanges; built once; why this many: style_tune/core/defaults.py)
DEMO_BASE_STEPS ?= $(DEFAULT_DEMO_BASE_STEPS)
DEMO_WORK_DIR = work_dirs/demo-$(MODE)$(DEMO_SUFFIX)
DEMO_MERGED = $(MODELS)/tiny-qwen2.5-demo-$(MODE)$(DEMO_SUFFIX)-merged
# The demo's fine-tune: the CPU config (batches of 8) with a longer schedule and a higher LoRA learning
# rate (the stand-in is small); XTuner's own --cfg-options. Measured on the 3-layer stand-in
# (controllable mode, robust style score gentle/snarky): 400 iterations 89/65, 800 93/76, 1200 89/78:
# past 800 the time grows (0.2-0.3 s an iteration at load 3, 0.8 s at load 6-7), the score does not.
# lr 0.003: 0.006 first raises the loss (80 at 600 iterations, diverges at 1000), 0.01 diverges.
# Dropout: 0.1 (the config's) gave 93/76 on the 5-layer single-exchange stand-in, 0.0 91/78: the same
# within noise.
DEMO_ITERS ?= 800
# A checkpoint and a style score every DEMO_SAVE_STEPS iterations: 10 points over the 800 (each one a
# validation of every val prompt in every style: its share of the time, docs/recipe.md).
DEMO_SAVE_STEPS ?= 80
DEMO_TRAIN_ARGS ?= --cfg-options train_cfg.max_iters=$(DEMO_ITERS) param_scheduler.1.end=$(DEMO_ITERS) \
	model.lora.lora_dropout=0.0 optim_wrapper.optimizer.lr=0.003 randomness.seed=$(shell echo $$((42 + $(DEMO_SEED)))) \
	default_hooks.checkpoint.interval=$(DEMO_SAVE_STEPS) train_cfg.val_interval=$(DEMO_SAVE_STEPS)
# STAGE=dpo|orpo (MODE=controllable): after the SFT, `make prefs` and DPO or ORPO from the merged SFT model
# (xtuner_configs/qwen2_5_tiny_lora_{dpo,orpo}_style_cpu.py); STAGE=sft, the control: more SFT instead.
# Each stage gets about the same wall time: iterations measured on the 2-core machine (one torch thread,
# s per iteration, 8 sequences a step: DPO 0.35 (4 pairs and the reference's forward), ORPO 0.29, SFT 0.26):
# about 70 s of training each (docs/preference.md).
STAGE ?=
DEMO_STAGE_CONFIG = xtuner_configs/qwen2_5_tiny_lora_$(if $(filter sft,$(STAGE)),controllable,$(STAGE))_style_cpu.py
DEMO_STAGE_WORK_DIR = $(DEMO_WORK_DIR)-$(STAGE)
demo_stage_merged = $(MODELS)/tiny-qwen2.5-demo-$(MODE)$(DEMO_SUFFIX)-$(1)-merged
DEMO_STAGE_MERGED = $(call demo_stage_merged,$(STAGE))
DEMO_STAGE_ITERS_dpo := 200
DEMO_STAGE_ITERS_orpo := 240
DEMO_STAGE_ITERS_sft := 270
DEMO_STAGE_ITERS ?= $(DEMO_STAGE_ITERS_$(STAGE))
DEMO_STAGE_ARGS ?= --cfg-options train_cfg.max_iters=$(DEMO_STAGE_ITERS) param_scheduler.1.end=$(DEMO_STAGE_ITERS) \
	randomness.seed=$(shell echo $$((42 + $(DEMO_SEED)))) $(if $(filter sft,$(STAGE)),model.lora.lora_dropout=0.0)
# What the demo's runs can pin across x86 machines (docs/demo.md#reproducing-the-figures): MKL's and ATen's
# AVX2 code paths, also on CPUs with AVX-512 (kernels of other widths sum in another order).
DEMO_ENV := MKL_CBWR=AVX2 ATEN_CPU_CAPABILITY=avx2
# torch threads for the demo's CPU steps: 1 is several times faster than 2 on a machine other jobs
# share (OpenMP threads that wait for a core spin); DEMO_THREADS=2 on an idle 2-core machine.
DEMO_THREADS ?= 1

# Nothing at run time may reach a model hub: everything the recipe loads is local.
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: help setup env-train env-eval env-deploy env-dev env-webui test lint download tiny-model split data-card \
	train curves convert merge demo demo-base clean-demo bench chat-templates metric-table chat serve chat-cpu

help:  ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

# ---------------------------------------------------------------- environments
# One venv per toolchain: XTuner, OpenCompass and lmdeploy pin conflicting versions. Each is installed
# from its lock, requirements/lock/py3.11/ENV.txt (the same on CPU and GPU machines), checked by
# importing what it holds, and rebuilt when the lock changes; see tools/setup_env.sh.
SETUP_ENVS := dev train eval eval-lmdeploy deploy webui
setup: $(addprefix env-,$(SETUP_ENVS))  ## build all environments (Python 3.11; docs/environments.md)

.PHONY: $(addprefix env-,$(SETUP_ENVS) mutation)
$(foreach env,$(SETUP_ENVS) mutation,$(eval env-$(env): $(ENVS)/$(env)/.installed))

# The dev env first: the others need the uv it brings.
$(ENVS)/%/.installed: requirements/lock/py3.11/%.txt tools/setup_env.sh | $$(if $$(filter-out dev,$$*),$(ENVS)/dev/.installed)
	PYTHON=$(PYTHON) tools/setup_env.sh $*

# After editing a file in requirements/: re-resolve the locks (by uv; an existing lock is the
# preference, so only what the edit needs changes). Narrow it with LOCK_ARGS="--env deploy".
LOCK_ARGS ?=
.PHONY: lock check-envs
lock: env-dev  ## re-resolve requirements/lock/ after a pin file changed (style_tune/dev/lock_envs.py)
	$(DEV_PY) -m style_tune.dev.lock_envs lock $(LOCK_ARGS)

# SMOKE=untested: only the smallest steps of envs `make test` runs no suite in (each suite runs its env's in
# SUITE/test_ENV_env_step.py); SMOKE=none: resolve, import.
SMOKE ?= all
check-envs: $(addprefix env-,$(SETUP_ENVS) mutation)  ## every env's lock resolves from PyPI and is fresh; each env imports and runs its smallest step
	$(DEV_PY) -m style_tune.dev.lock_envs check --smoke $(SMOKE) $(LOCK_ARGS)

# ---------------------------------------------------------------- checks
# Every env, then check-envs without the smallest steps of the envs whose suite runs right after (each
# suite runs its env's step in SUITE/test_ENV_env_step.py, with the session's tiny model), then each
# part of tests/ in its toolchain's env, the mutation gate after the standard-library tests it mutates against.
test:  ## run the whole test suite, each part in its toolchain's env, and the mutation gate
	$(MAKE) setup env-mutation
	$(MAKE) check-envs SMOKE=untested
	$(DEV_PY) -m pytest tests/core
	$(MAKE) mutation-gate
	$(TRAIN_PY) -m pytest tests/train
	$(EVAL_PY) -m pytest tests/eval
	$(DEPLOY_PY) -m pytest tests/deploy
	$(WEBUI_PY) -m pytest tests/webui

# ruff, then mypy over style_tune/ and benchmarks/ ([tool.mypy] in pyproject.toml; docs/testing.md#type-checking).
# `make test` runs it (tests/core/test_dev_env_step.py: the dev env's step of check-envs).
lint: env-dev  ## ruff, then the type checker (mypy)
	$(ENVS)/dev/bin/ruff check .
	$(ENVS)/dev/bin/mypy

# ---------------------------------------------------------------- the recipe
download: env-train  ## download the base model (and internlm2.5 for eval-select) from modelscope
	tools/download_model.sh Qwen/Qwen2.5-1.5B-Instruct $(BASE_MODEL)
	tools/download_model.sh Shanghai_AI_Laboratory/internlm2_5-1_8b-chat $(SELECT_INTERNLM)

tiny-model: env-train  ## build the offline stand-in model (real architecture and tokenizer, random weights)
	$(TRAIN_PY) -m style_tune.train.tiny_model $(TINY_MODEL)

split: env-dev  ## CSV -> data/$(MODE)/{train,val,test}.json, grouped by prompt, 80/10/10
	$(DEV_PY) -m style_tune.data.split $(CSV) --out-dir $(SPLIT_DIR) --mode $(MODE) --seed $(SEED)

data-card: env-dev  ## regenerate the statistics in style_data/README.md from the data
	$(DEV_PY) -m style_tune.data.card

train: env-train  ## train CONFIG on DATA from MODEL into WORK_DIR, a style score at every save (resumes an interrupted run; VIS=tensorboard), then its curves
	STYLE_TUNE_MODEL=$(MODEL) STYLE_TUNE_DATA=$(DATA) STYLE_TUNE_VAL_DATA=$(VAL_DATA) STYLE_TUNE_VIS=$(VIS) \
		PATH=$(CURDIR)/$(ENVS)/train/bin:$$PATH \
		$(TRAIN_PY) -m style_tune.train.train $(CONFIG) --work-dir $(WORK_DIR) $(if $(DEEPSPEED),--deepspeed $(DEEPSPEED)) \
		$(if $(TRAIN_ARGS),-- $(TRAIN_ARGS))
	$(CURVES) --after-train

# The run's logged series by iteration (style_tune/train/curves.py; docs/recipe.md#training-curves): loss
# (logged and smoothed), learning rate, gradient norm, time, tokens/s and memory where logged, the style
# scores; PNGs and curves.csv in CURVES_DIR. CURVES_SMOOTHING: TensorBoard's weight, in [0, 1).
CURVES_DIR ?= $(WORK_DIR)/curves
CURVES_SMOOTHING ?= $(DEFAULT_CURVES_SMOOTHING)
CURVES = $(TRAIN_PY) -m style_tune.train.curves '$(WORK_DIR)' --out '$(CURVES_DIR)' --smoothing $(CURVES_SMOOTHING)
curves: env-train  ## WORK_DIR's logged loss, lr, grad norm, style scores... by iteration -> CURVES_DIR (PNGs, curves.csv)
	$(CURVES)

# README's figure (docs/recipe.md#training-curves): `make curves`' style_scores figure of the controllable
# demo's run (`make demo MODE=controllable`, DEMO_SEED=0), drawn from its logs committed in FIGURES_DATA
# (scalars.json, style_scores.jsonl): FIGURES_DATA/curves/style_scores.png and curves.csv, smoothed with the
# default weight (not CURVES_SMOOTHING): the committed figure is checked against what this target makes
# (tests/train/test_curves.py). `make figures-data` copies a new demo run's logs there, then draws.
FIGURES_DATA ?= docs/figures/demo-controllable
FIGURES_OUT ?= $(FIGURES_DATA)/curves
FIGURES_RUN ?= work_dirs/demo-controllable
.PHONY: figures figures-data
figures: env-train  ## README's figure: the controllable demo's loss and style scores by iteration, the kept checkpoint marked, from its logs in FIGURES_DATA
	$(TRAIN_PY) -m style_tune.train.curves '$(FIGURES_DATA)' --out '$(FIGURES_OUT)' --only style_scores

figures-data:  ## FIGURES_RUN's logs (scalars.json, style_scores.jsonl of `make demo MODE=controllable`) -> FIGURES_DATA, then make figures
	@[[ -f '$(FIGURES_RUN)/style_scores.jsonl' ]] || { echo "figures-data: error: no $(FIGURES_RUN)/style_scores.jsonl:" \
		"run \`make demo MODE=controllable\` first, or give FIGURES_RUN= a work dir scored at its saves" >&2; exit 2; }
	rm -rf '$(FIGURES_DATA).tmp' && mkdir -p '$(FIGURES_DATA).tmp'
	cd '$(FIGURES_RUN)' && cp --parents style_scores.jsonl */vis_data/scalars.json '$(abspath $(FIGURES_DATA)).tmp/'
	rm -rf '$(FIGURES_DATA)' && mv '$(FIGURES_DATA).tmp' '$(FIGURES_DATA)'
	@$(MAKE) figures

convert: env-train  ## newest (or ITER=N, or ITER=best: the best by the style score) checkpoint in WORK_DIR -> HF adapter ADAPTER
	STYLE_TUNE_MODEL=$(MODEL) STYLE_TUNE_DATA=$(DATA) \
		$(TRAIN_PY) -m style_tune.train.convert $(CONFIG) --work-dir $(WORK_DIR) --out $(ADAPTER) \
		$(if $(ITER),--iter $(ITER)) $(if $(FORCE),--force)

merge: env-train  ## MODEL + ADAPTER -> MERGED (refuses to overwrite without FORCE=1)
	$(TRAIN_PY) -m style_tune.train.merge $(MODEL) $(ADAPTER) $(MERGED) $(if $(FORCE),--force)

# Preference pairs for the *_dpo_style / *_orpo_style configs (style_tune/data/prefs.py): per training
# prompt and style, that style's reply chosen and the other's rejected, with that style's system text.
# PREFS_VERDICTS="FILE ...": add the blind comparison's decisive verdicts (make webui) as pairs.
PREFS ?= $(SPLIT_DIR)/$(DEFAULT_PREFS_FILE)
PREFS_VERDICTS ?=
.PHONY: prefs
prefs: MODE = controllable
prefs: env-dev  ## SPLIT_DIR/train.json (controllable) -> preference pairs PREFS for DPO / ORPO
	$(DEV_PY) -m style_tune.data.prefs --split-dir '$(SPLIT_DIR)' --out '$(PREFS)' \
		$(if $(PREFS_VERDICTS),--verdicts $(PREFS_VERDICTS))

# ---------------------------------------------------------------- chat with the merged model
# The prompt format the model was trained on (style_tune/core/prompts.py): MODE= the format it was trained
# in; STYLE= (controllable mode) the style whose system text to send: 温柔|毒舌 or gentle|snarky.
# MODEL defaults to the merged model here. lmdeploy (chat, serve) needs a CUDA GPU; chat-cpu does not.
STYLE ?=
# Loopback by default; any other address needs a key (API_KEY=, or API_KEY_FILE= with one key a line;
# clients send it as OPENAI_API_KEY): docs/serving.md#security. API_KEY reaches the step in its environment.
SERVER_HOST ?= 127.0.0.1
SERVER_PORT ?= 23333
API_KEY ?=
export API_KEY
API_KEY_FILE ?=
CHAT_MAX_NEW_TOKENS ?= 512
# more arguments for `lmdeploy chat|serve api_server` or `xtuner chat`, e.g. CHAT_ARGS="--temperature 0"
CHAT_ARGS ?=
chat serve chat-cpu: MODEL = $(MERGED)
CHAT_OPTS = '$(MODEL)' --mode '$(MODE)' $(if $(STYLE),--style '$(STYLE)')
SERVE_OPTS = $(CHAT_OPTS) --host '$(SERVER_HOST)' $(if $(API_KEY_FILE),--api-key-file '$(API_KEY_FILE)')

metric-table: env-dev  ## regenerate README.md's metric table from the metric definitions (style_tune/eval/style_metrics.py)
	$(DEV_PY) -m style_tune.eval.metric_table

chat-templates: env-dev  ## regenerate the lmdeploy templates style_data/chat_template*.json from style_tune/core/prompts.py
	$(DEV_PY) -m style_tune.data.chat_templates

chat: env-dev  ## lmdeploy chat on MODEL (default: MERGED) with its training template (MODE=, STYLE=); CUDA GPU
	@$(DEV_PY) -m style_tune.deploy.chat chat $(CHAT_OPTS) --check
	@$(MAKE) -s env-deploy
	@$(DEV_PY) -m style_tune.deploy.chat chat $(CHAT_OPTS) $(if $(CHAT_ARGS),-- $(CHAT_ARGS))

serve: env-dev  ## OpenAI-compatible server (model style-tune) on SERVER_HOST:SERVER_PORT, same prompt: lmdeploy on a CUDA GPU, else the CPU server
	@$(DEV_PY) -m style_tune.deploy.chat serve $(SERVE_OPTS) --check
	@$(MAKE) -s env-deploy
	@$(DEV_PY) -m style_tune.deploy.chat serve $(SERVE_OPTS) --port '$(SERVER_PORT)' $(if $(CHAT_ARGS),-- $(CHAT_ARGS))

chat-cpu: env-dev  ## XTuner's chat (transformers, CPU) on MODEL, same template and system text: slow but real
	@$(DEV_PY) -m style_tune.deploy.chat chat-cpu $(CHAT_OPTS) --check
	@$(MAKE) -s env-train
	@$(DEV_PY) -m style_tune.deploy.chat chat-cpu $(CHAT_OPTS) --max-new-tokens '$(CHAT_MAX_NEW_TOKENS)' \
		$(if $(CHAT_ARGS),-- $(CHAT_ARGS))

# (the label split is only the stand-in's pretraining text: a cached stand-in needs none)
demo-base: env-train  ## the demo's stand-in base DEMO_BASE: tiny Qwen2, the data's vocabulary, pretrained on unlabelled train text (cached)
	@[[ -f data/label/train.json || ( -e $(DEMO_BASE) && -z '$(FORCE)' ) ]] || $(MAKE) split MODE=label SPLIT_DIR=data/label
	$(DEMO_ENV) OMP_NUM_THREADS=$(DEMO_THREADS) $(TRAIN_PY) -m style_tune.train.demo_base $(DEMO_BASE) \
		--data data/label/train.json --steps $(DEMO_BASE_STEPS) --seed $(DEMO_SEED) $(if $(FORCE),--force)

demo: env-train  ## offline CPU demo (MODE=label|controllable [STAGE=dpo|orpo|sft]): stand-in base -> split -> train -> convert -> merge -> replies
	@$(MAKE) demo-base
	$(DEMO_ENV) $(TRAIN_PY) -m style_tune.train.demo --mode $(MODE) --config $(DEMO_CONFIG) --base $(DEMO_BASE) \
		--work-dir $(DEMO_WORK_DIR) --merged $(DEMO_MERGED) --split-dir $(SPLIT_DIR) --threads $(DEMO_THREADS) \
		$(if $(STAGE),--stage '$(STAGE)' --stage-config $(DEMO_STAGE_CONFIG) --stage-work-dir $(DEMO_STAGE_WORK_DIR) \
		--stage-merged $(DEMO_STAGE_MERGED) --stage-args '$(DEMO_STAGE_ARGS)') -- $(DEMO_TRAIN_ARGS)

clean-demo:  ## remove what `make demo` wrote (all modes, seeds and stages; the stand-in bases too)
	rm -rf $(MODELS)/tiny-qwen2.5-demo-base* $(MODELS)/tiny-qwen2.5-demo-*-merged work_dirs/demo-* data/label \
		data/controllable

# ---------------------------------------------------------------- benchmark
# Training throughput and memory of the recipe variants (benchmarks/bench_train.py): on a GPU the real
# Qwen2.5-1.5B-Instruct shapes with random weights, on a CPU the tiny model through the same code.
BENCH_FULL_MODEL := $(MODELS)/qwen2.5-1.5b-random
BENCH_MODEL ?= $(if $(filter cuda,$(DEVICE)),$(BENCH_FULL_MODEL),$(TINY_MODEL))
BENCH_STEPS ?= $(if $(filter cuda,$(DEVICE)),10,3)
BENCH_WARMUP ?= $(if $(filter cuda,$(DEVICE)),3,1)
BENCH_ARGS ?=

bench: env-train  ## tokens/s, pad share, memory and MFU of the recipe variants -> benchmarks/
	@[ -d $(BENCH_MODEL) ] || $(TRAIN_PY) -m style_tune.train.tiny_model $(BENCH_MODEL) \
		$(if $(filter $(BENCH_FULL_MODEL),$(BENCH_MODEL)),--size full)
	@[ -f $(SPLIT_DIR)/train.json ] || $(MAKE) split
	$(TRAIN_PY) -m benchmarks.bench_train --model $(BENCH_MODEL) --data $(SPLIT_DIR)/train.json \
		--steps $(BENCH_STEPS) --warmup $(BENCH_WARMUP) $(BENCH_ARGS)

# make gpu-wheels: what a lent GPU machine without a package index (Python 3.12, its own torch) lacks
# for the train path, as wheels (tools/gpu_wheels.txt, the train lock's versions) -> .whl/ (ignored),
# checked to fit a call (<= 60 MiB). There: tools/gpu_acceptance.sh part1 OUT --device-stack.
.PHONY: gpu-wheels
gpu-wheels:  ## wheels for tools/gpu_acceptance.sh --device-stack on a GPU machine without an index -> .whl/ (<= 60 MiB)
	PYTHON=$(PYTHON) tools/gpu_wheels.sh .whl

# ---------------------------------------------------------------- evaluation (OpenCompass, eval env)
# eval-select: the article's model selection, Qwen2.5-1.5B-Instruct vs internlm2_5-1_8b-chat on FewCLUE
# bustm + ocnli_fc (eval_configs/select_models*.py). eval-style: the base model vs the tuned model on
# the held-out split, scored by style_tune/eval/evaluator.py, then a Markdown report (style_tune/eval/report.py).
# Each OpenCompass run goes to DIR/<timestamp>/ (DIR/latest points at the last one); DIR/summary.md is
# OpenCompass's table. Paths may be relative to the repository root.
.PHONY: eval-select fewclue-data eval-retention eval-style judge judge-pairs report eval-demo score-replies
EVAL_DEVICE ?= $(DEVICE)
# more OpenCompass arguments. --debug (the article's) runs its tasks inside its own process, ~10 s of
# imports less per task; OC_ARGS= runs each task in a process of its own, two at a time.
OC_ARGS ?= --debug
OC_PY = $(EVAL_PY)
OPENCOMPASS = $(OC_PY) -m style_tune.eval.run_opencompass

# eval-select: BACKEND=hf (transformers; EVAL_DEVICE=cpu works) or lmdeploy (CUDA GPU, lmdeploy installed).
BACKEND ?= hf
SELECT_CONFIG ?= eval_configs/select_models$(if $(filter lmdeploy,$(BACKEND)),_lmdeploy).py
SELECT_QWEN ?= $(BASE_MODEL)
SELECT_INTERNLM ?= $(MODELS)/$(notdir $(DEFAULT_RIVAL_MODEL))
# override the stock configs' max_out_len (4096 / 2048) and batch size (8 / 16)
SELECT_MAX_OUT_LEN ?=
SELECT_BATCH_SIZE ?=
SELECT_DIR ?= outputs/eval_select
# OpenCompass reads $(FEWCLUE_CACHE)/data/FewCLUE/{bustm,ocnli}/ (or ~/.cache/opencompass/data/FewCLUE/)
FEWCLUE_CACHE ?= $(or $(COMPASS_DATA_CACHE),$(CURDIR))

# eval-style: BASE and TUNED models, SPLIT_DIR/{train,test}.json in MODE's format.
BASE ?= $(BASE_MODEL)
TUNED ?= $(MERGED)
# COMPARE="NAME=DIR|URL/v1[#MODEL] ...": two or more models by name, for eval-style (then judge-pairs: every
# pair) and webui (style_tune/core/compare.py, docs/serving.md#naming-the-models). A bare name of make demo's
# models (this MODE and DEMO_SEED) stands for its directory: COMPARE="base sft dpo orpo". Unset: base=BASE
# tuned=TUNED (the page: base=BASE_API or WEBUI_BASE, tuned=TUNED_API or WEBUI_TUNED).
COMPARE ?=
DEMO_MODEL_base = $(DEMO_BASE)
DEMO_MODEL_sft = $(DEMO_MERGED)
DEMO_MODEL_dpo = $(call demo_stage_merged,dpo)
DEMO_MODEL_orpo = $(call demo_stage_merged,orpo)
compare_spec = $(foreach w,$(1),$(if $(findstring =,$(w)),$(w),$(w)=$(DEMO_MODEL_$(w))))
COMPARE_SPEC = $(call compare_spec,$(COMPARE))
# the XTuner work dir whose curves (loss, style score at each save, kept checkpoint) go into the report
TRAIN_WORK_DIR ?= $(WORK_DIR)
EVAL_LIMIT ?= 0
EVAL_MAX_OUT_LEN ?= $(DEFAULT_EVAL_MAX_OUT_LEN)
EVAL_BATCH_SIZE ?=
EVAL_SAMPLES ?= 10
STYLE_DIR ?= outputs/style_eval
# The optional LLM judge (style_tune/eval/llm_judge.py, docs/evaluation-judge.md): JUDGE_API= an
# OpenAI-compatible base URL ending in /v1 (hosted, or lmdeploy serving a bigger model), JUDGE_MODEL= the
# judge's model name there; the key comes from OPENAI_API_KEY. Unset: eval-style runs no judge.
# Optional, defaults in the step itself: JUDGE_PROMPT= (the prompt file), JUDGE_CONCURRENCY= (calls in
# flight), JUDGE_TIMEOUT= (seconds per attempt), JUDGE_RETRIES= (per call: 429/5xx/timeouts, the openai
# client's backoff), JUDGE_MAX_TOKENS= (a judgement's token budget).
JUDGE_API ?=
JUDGE_MODEL ?=
JUDGE_CALL_OPTS = $(if $(JUDGE_CONCURRENCY),--concurrency '$(JUDGE_CONCURRENCY)') \
	$(if $(JUDGE_TIMEOUT),--timeout '$(JUDGE_TIMEOUT)') $(if $(JUDGE_RETRIES),--retries '$(JUDGE_RETRIES)') \
	$(if $(JUDGE_MAX_TOKENS),--max-tokens '$(JUDGE_MAX_TOKENS)')
JUDGE_OPTS = $(if $(JUDGE_PROMPT),--prompt '$(JUDGE_PROMPT)') $(JUDGE_CALL_OPTS)
# make judge-pairs: the pairwise judge (style_tune/eval/pairwise_judge.py) on the same run, its own prompt
# file (PAIRS_PROMPT=, default eval_configs/pairwise_judge_prompt.json); records for make verdicts.
# JUDGE=metrics: no LLM (none runs on a CPU): a deterministic judge on the run's own style metrics, its
# records labelled "style-metrics (deterministic)" (docs/evaluation-judge.md#a-judge-without-an-llm-judgemetrics).
PAIRS_PROMPT ?=
JUDGE ?=

fewclue-data: env-eval  ## download FewCLUE for eval-select into FEWCLUE_CACHE/data/FewCLUE (OpenCompass's own download; network)
	$(EVAL_PY) -m style_tune.eval.fewclue '$(abspath $(FEWCLUE_CACHE))'

# An offline stand-in for internlm2_5-1_8b-chat (InternLM2's remote modeling code copied from the
# installed xtuner, random weights, a Qwen2.5 tokenizer): `make eval-select` on the CPU with
# SELECT_QWEN=$(TINY_MODEL) SELECT_INTERNLM=$(TINY_INTERNLM) FEWCLUE_CACHE=tests/eval/fixtures/fewclue EVAL_DEVICE=cpu
TINY_INTERNLM ?= $(MODELS)/tiny-internlm2
.PHONY: tiny-internlm
tiny-internlm: env-train  ## the offline stand-in for internlm2.5 (eval-select's rival): InternLM2 remote code, random weights
	$(TRAIN_PY) -m style_tune.train.tiny_model $(TINY_INTERNLM) --arch internlm2

# BACKEND=lmdeploy runs in the eval-lmdeploy env (its engine needs a CUDA GPU: requirements/eval-lmdeploy.txt).
eval-select: OC_PY = $(if $(filter lmdeploy,$(BACKEND)),$(ENVS)/eval-lmdeploy/bin/python,$(EVAL_PY))
eval-select: $(if $(filter lmdeploy,$(BACKEND)),env-eval-lmdeploy,env-eval)  ## the article's model selection: Qwen2.5-1.5B-Instruct vs internlm2.5-1.8b-chat on FewCLUE (BACKEND=hf|lmdeploy)
	COMPASS_DATA_CACHE='$(abspath $(FEWCLUE_CACHE))' SELECT_QWEN='$(abspath $(SELECT_QWEN))' \
		SELECT_INTERNLM='$(abspath $(SELECT_INTERNLM))' SELECT_DEVICE='$(EVAL_DEVICE)' \
		SELECT_MAX_OUT_LEN='$(SELECT_MAX_OUT_LEN)' SELECT_BATCH_SIZE='$(SELECT_BATCH_SIZE)' \
		$(OPENCOMPASS) $(SELECT_CONFIG) --work-dir $(SELECT_DIR) --step eval-select \
		--fewclue-cache '$(FEWCLUE_CACHE)' --model '$(SELECT_QWEN)' --model '$(SELECT_INTERNLM)' \
		--model-hint 'make download (or SELECT_QWEN=/SELECT_INTERNLM=)' -- $(OC_ARGS)

# eval-retention: what tuning cost on eval-select's FewCLUE tasks (eval_configs/retention.py,
# style_tune/eval/retention.py, docs/evaluation.md#retention-make-eval-retention). BASE and each tuned
# model of TUNED="NAME=DIR[:MODE] ..." (merged models; one without :MODE is in MODE's format; a bare DIR,
# as eval-style's TUNED, is named tuned), each asked in its training format and with no system text;
# BACKEND=hf|lmdeploy, EVAL_DEVICE, FEWCLUE_CACHE as eval-select.
# The report: accuracy, the paired 95 % interval of the difference to the base (bootstrap over items,
# RETENTION_ROUNDS resamples from SEED), unparseable answers apart, and the verdict against MARGIN
# (accuracy points, stated before the run: kept in the run's config).
MARGIN ?= $(DEFAULT_RETENTION_MARGIN)
RETENTION_ROUNDS ?= $(DEFAULT_RETENTION_ROUNDS)
# override the stock Qwen2.5 configs' max_out_len (4096) and batch size (8 hf / 16 lmdeploy)
RETENTION_MAX_OUT_LEN ?=
RETENTION_BATCH_SIZE ?=
RETENTION_DIR ?= outputs/eval_retention
RETENTION_TUNED = $(foreach w,$(TUNED),$(if $(findstring =,$(w)),$(w),tuned=$(w)))
eval-retention: OC_PY = $(if $(filter lmdeploy,$(BACKEND)),$(ENVS)/eval-lmdeploy/bin/python,$(EVAL_PY))
eval-retention: $(if $(filter lmdeploy,$(BACKEND)),env-eval-lmdeploy,env-eval)  ## FewCLUE accuracy of BASE vs each of TUNED="NAME=DIR[:MODE] ..." in its formats: paired intervals, unparseable apart, MARGIN= verdicts
	@$(OC_PY) -m style_tune.eval.retention plan --base '$(BASE)' --tuned '$(RETENTION_TUNED)' --mode '$(MODE)' \
		--margin '$(MARGIN)' --backend '$(BACKEND)'
	COMPASS_DATA_CACHE='$(abspath $(FEWCLUE_CACHE))' RETENTION_BASE='$(abspath $(BASE))' \
		RETENTION_TUNED='$(RETENTION_TUNED)' RETENTION_MODE='$(MODE)' RETENTION_BACKEND='$(BACKEND)' \
		RETENTION_DEVICE='$(EVAL_DEVICE)' RETENTION_MARGIN='$(MARGIN)' RETENTION_SEED='$(SEED)' \
		RETENTION_ROUNDS='$(RETENTION_ROUNDS)' RETENTION_MAX_OUT_LEN='$(RETENTION_MAX_OUT_LEN)' \
		RETENTION_BATCH_SIZE='$(RETENTION_BATCH_SIZE)' \
		$(OPENCOMPASS) eval_configs/retention.py --work-dir $(RETENTION_DIR) --step eval-retention \
		--fewclue-cache '$(FEWCLUE_CACHE)' -- $(OC_ARGS)
	$(OC_PY) -m style_tune.eval.retention report $(RETENTION_DIR)/latest --out $(RETENTION_DIR)/report.md \
		--json $(RETENTION_DIR)/report.json

.PHONY: bench-bootstrap
bench-bootstrap: env-eval  ## coverage of eval-retention's paired interval by simulation -> benchmarks/bootstrap_coverage.{md,json}
	$(EVAL_PY) -m benchmarks.bootstrap_coverage

eval-style: env-eval  ## OpenCompass: BASE vs TUNED model (or COMPARE=) on SPLIT_DIR/test.json (style, content, fluency), [make judge,] then `make report`
	@[[ -z '$(JUDGE_API)' || -n '$(JUDGE_MODEL)' ]] || { echo "eval-style: JUDGE_API= needs JUDGE_MODEL=NAME" >&2; exit 2; }
	STYLE_EVAL_DATA_DIR='$(abspath $(SPLIT_DIR))' STYLE_EVAL_MODE='$(MODE)' STYLE_EVAL_LIMIT='$(EVAL_LIMIT)' \
		STYLE_EVAL_SEED='$(SEED)' STYLE_EVAL_MAX_OUT_LEN='$(EVAL_MAX_OUT_LEN)' STYLE_EVAL_DEVICE='$(EVAL_DEVICE)' \
		$(if $(EVAL_BATCH_SIZE),STYLE_EVAL_BATCH_SIZE='$(EVAL_BATCH_SIZE)') \
		$(OPENCOMPASS) eval_configs/eval_style.py --work-dir $(STYLE_DIR) --step eval-style \
		--compare '$(or $(strip $(COMPARE_SPEC)),base=$(BASE) tuned=$(TUNED))' --split-dir '$(SPLIT_DIR)' --mode '$(MODE)' \
		--model-hint 'make download / make merge, or BASE=/TUNED=/COMPARE= (after make demo: make eval-demo)' -- $(OC_ARGS)
	@$(if $(JUDGE_API),$(MAKE) judge)
	@$(MAKE) report

judge: env-eval  ## LLM judge (JUDGE_API=, JUDGE_MODEL=) on the replies of STYLE_DIR's last eval-style run; then `make report`
	@[[ -n '$(JUDGE_API)' && -n '$(JUDGE_MODEL)' ]] || { \
		echo "judge: give JUDGE_API=URL (ending in /v1) and JUDGE_MODEL=NAME; the key comes from OPENAI_API_KEY" >&2; exit 2; }
	$(EVAL_PY) -m style_tune.eval.llm_judge $(STYLE_DIR)/latest --api '$(JUDGE_API)' --model '$(JUDGE_MODEL)' \
		$(JUDGE_OPTS)

judge-pairs: env-eval  ## pairwise judge, LLM (JUDGE_API=, JUDGE_MODEL=) or JUDGE=metrics: every pair of models of STYLE_DIR's last run, each prompt, both orders -> make verdicts
	@[[ -z '$(JUDGE)' || '$(JUDGE)' == metrics ]] || { \
		echo "judge-pairs: JUDGE=$(JUDGE): give JUDGE=metrics (the style metrics' judge), or no JUDGE and JUDGE_API=, JUDGE_MODEL=" >&2; exit 2; }
	@[[ '$(JUDGE)' == metrics || ( -n '$(JUDGE_API)' && -n '$(JUDGE_MODEL)' ) ]] || { \
		echo "judge-pairs: give JUDGE_API=URL (ending in /v1) and JUDGE_MODEL=NAME (the key comes from OPENAI_API_KEY), or JUDGE=metrics" >&2; exit 2; }
	$(EVAL_PY) -m style_tune.eval.pairwise_judge $(STYLE_DIR)/latest --seed '$(SEED)' \
		$(if $(filter metrics,$(JUDGE)),--metrics,--api '$(JUDGE_API)' --model '$(JUDGE_MODEL)' \
		$(if $(PAIRS_PROMPT),--prompt '$(PAIRS_PROMPT)') $(JUDGE_CALL_OPTS))

report: env-eval  ## STYLE_DIR/report.md from the last eval-style run: table and its bars, TRAIN_WORK_DIR's curves and kept checkpoint, replies side by side, VERDICTS' counts (and ranking, its figure)
	$(EVAL_PY) -m style_tune.eval.report $(STYLE_DIR)/latest --out $(STYLE_DIR)/report.md \
		--train-work-dir $(TRAIN_WORK_DIR) --samples $(EVAL_SAMPLES) --seed $(SEED) --verdicts '$(VERDICTS)' \
		$(if $(ANCHOR),--anchor '$(ANCHOR)') --rounds '$(RANKING_ROUNDS)' --smoothing '$(CURVES_SMOOTHING)'

# score-replies: replies from anywhere (an API, another framework), one JSON object a line: "user", "style"
# (温柔|毒舌|gentle|snarky) or "system" (the system text sent), "reply", optional "finish_reason". Scored by
# the evaluator's own function (style_tune/eval/score_replies.py); judge and references: DATA_ROOT/<mode>/.
REPLIES ?=
DATA_ROOT ?= data
SCORES ?=
score-replies: env-eval  ## score REPLIES=FILE.jsonl (user, style|system, reply) as eval-style does; prints the metric table (SCORES=out.json)
	@$(EVAL_PY) -m style_tune.eval.score_replies '$(REPLIES)' --data-dir '$(DATA_ROOT)' $(if $(SCORES),--out '$(SCORES)')

eval-demo:  ## eval-style + report on `make demo`'s models (same MODE, DEMO_SEED; STAGE=: the SFT model vs the stage's), on the CPU
	$(DEMO_ENV) OMP_NUM_THREADS=$(DEMO_THREADS) $(MAKE) eval-style MODE=$(MODE) SPLIT_DIR=data/$(MODE) EVAL_DEVICE=cpu \
		$(if $(STAGE),BASE=$(DEMO_MERGED) TUNED=$(DEMO_STAGE_MERGED) TRAIN_WORK_DIR=$(DEMO_STAGE_WORK_DIR), \
		BASE=$(DEMO_BASE) TUNED=$(DEMO_MERGED) TRAIN_WORK_DIR=$(DEMO_WORK_DIR)) \
		STYLE_DIR=outputs/style_eval_demo-$(MODE)$(DEMO_SUFFIX)$(if $(STAGE),-$(STAGE))

# make leaderboard: make demo's models side by side, in one command (docs/demo.md#the-leaderboard-make-leaderboard).
# eval-style of LEADERBOARD_MODELS (COMPARE words: make demo's by bare name, or NAME=DIR; one named base) on
# LEADERBOARD_SPLIT, every pair judged by JUDGE=metrics (on a CPU no LLM can judge), make eval-retention of
# the same models on LEADERBOARD_FEWCLUE (default: the shipped 8-item fixture, so no verdict) with replies of
# at most LEADERBOARD_MAX_OUT_LEN tokens (one letter is the answer), then what README's leaderboard is made
# from copied to LEADERBOARD_DIR (committed) and the README block redrawn (make leaderboard-readme).
# MODE controllable: the DPO and ORPO stages exist only there. Runs in LEADERBOARD_RUNS.
.PHONY: leaderboard leaderboard-readme bench-metric-judge
LEADERBOARD_MODELS ?= base sft dpo orpo
LEADERBOARD_SPLIT ?= data/$(MODE)
LEADERBOARD_FEWCLUE ?= tests/eval/fixtures/fewclue
LEADERBOARD_MAX_OUT_LEN ?= 32
LEADERBOARD_DIR ?= docs/leaderboard
LEADERBOARD_RUNS ?= outputs/leaderboard
LEADERBOARD_README ?= README.md
LEADERBOARD_SPEC = $(call compare_spec,$(LEADERBOARD_MODELS))
LEADERBOARD_BASE = $(patsubst base=%,%,$(filter base=%,$(LEADERBOARD_SPEC)))

leaderboard: MODE = controllable
leaderboard: env-eval  ## make demo's four controllable models (LEADERBOARD_MODELS=) ranked by the style-metrics judge, + FewCLUE retention -> LEADERBOARD_DIR, README
	@[[ -n '$(LEADERBOARD_BASE)' ]] || { \
		echo "leaderboard: LEADERBOARD_MODELS='$(LEADERBOARD_MODELS)' names no model base (the ranking's anchor, retention's reference)" >&2; exit 2; }
	@start=$$(date +%s) && export $(DEMO_ENV) OMP_NUM_THREADS=$(DEMO_THREADS) && \
	$(MAKE) eval-style MODE=$(MODE) SPLIT_DIR='$(LEADERBOARD_SPLIT)' EVAL_DEVICE=cpu COMPARE='$(LEADERBOARD_SPEC)' \
		STYLE_DIR='$(LEADERBOARD_RUNS)/style' TRAIN_WORK_DIR='$(DEMO_WORK_DIR)' && \
	$(MAKE) judge-pairs JUDGE=metrics STYLE_DIR='$(LEADERBOARD_RUNS)/style' && \
	$(MAKE) eval-retention MODE=$(MODE) BASE='$(LEADERBOARD_BASE)' TUNED='$(filter-out base=%,$(LEADERBOARD_SPEC))' \
		FEWCLUE_CACHE='$(LEADERBOARD_FEWCLUE)' EVAL_DEVICE=cpu RETENTION_MAX_OUT_LEN='$(LEADERBOARD_MAX_OUT_LEN)' \
		RETENTION_DIR='$(LEADERBOARD_RUNS)/retention' && \
	$(EVAL_PY) -m style_tune.eval.leaderboard collect '$(LEADERBOARD_RUNS)/style/latest' '$(LEADERBOARD_RUNS)/retention' \
		--dir '$(LEADERBOARD_DIR)' --started $$start --fewclue '$(LEADERBOARD_FEWCLUE)' \
		--command 'make leaderboard$(if $(strip $(MAKEOVERRIDES)), $(MAKEOVERRIDES))' && \
	$(MAKE) leaderboard-readme

leaderboard-readme: env-eval  ## README's leaderboard (table, figure) and LEADERBOARD_DIR/verdicts.md, from LEADERBOARD_DIR's committed data
	$(EVAL_PY) -m style_tune.eval.leaderboard readme --dir '$(LEADERBOARD_DIR)' --readme '$(LEADERBOARD_README)' \
		--seed '$(SEED)' --rounds '$(RANKING_ROUNDS)'

bench-metric-judge: env-eval  ## the metrics judge's tie tolerance: margins under style judges of resampled data -> benchmarks/metric_judge_ties.{md,json}
	@[ -f data/controllable/train.json ] || $(MAKE) split MODE=controllable SPLIT_DIR=data/controllable
	$(EVAL_PY) -m benchmarks.metric_judge_ties

# ---------------------------------------------------------------- web page and serving benchmark
# make webui: a blind rating session, base vs tuned or COMPARE="..." (two or more models, each pair asked
# equally often; style_tune/webui/app.py, Gradio, webui env): N held-out prompts per style, replies as A and
# B in an order drawn per prompt from SEED, revealed after each verdict (BLIND=0: named, for demos).
# BASE_API=/TUNED_API= any OpenAI-compatible .../v1 URL (lmdeploy on a GPU, `make serve` on a CPU, a hosted
# API); without them the page starts the CPU server for WEBUI_BASE/WEBUI_TUNED (default: `make demo`'s
# models) and stops it on exit. make verdicts counts them. Several raters: WEBUI_HOST=0.0.0.0 needs logins,
# WEBUI_AUTH_FILE=FILE (one user:password a line) and/or WEBUI_AUTH="user:password ..." (from the
# environment, never on a command line); each verdict records the logged-in rater.
.PHONY: webui verdicts bench-serve
BASE_API ?=
TUNED_API ?=
WEBUI_BASE ?= $(DEMO_BASE)
WEBUI_TUNED ?= $(DEMO_MERGED)
WEBUI_HOST ?= 127.0.0.1
WEBUI_PORT ?= 7860
WEBUI_TEST ?= $(SPLIT_DIR)/test.json
VERDICTS ?= outputs/webui/verdicts.jsonl
# make verdicts' ranking (style_tune/eval/ranking.py; when three models are connected): ANCHOR= the model
# at 1000 (default: the one named base), RANKING_ROUNDS= bootstrap rounds of its intervals (seeded by SEED),
# VERDICTS_OUT= also write the Markdown there (its figure beside it, NAME_ranking.png), RANKING_FIGURE=
# the figure's path instead.
ANCHOR ?=
RANKING_ROUNDS ?= $(DEFAULT_RANKING_ROUNDS)
VERDICTS_OUT ?=
RANKING_FIGURE ?=
RANKING_OPTS = $(if $(ANCHOR),--anchor '$(ANCHOR)') --seed '$(SEED)' --rounds '$(RANKING_ROUNDS)'
N ?= 20
BLIND ?= 1
WEBUI_AUTH_FILE ?=

webui: env-webui env-deploy  ## blind rating page: base vs tuned (or COMPARE=) as A/B, streaming, verdicts to VERDICTS (N=, BLIND=0, WEBUI_PORT=, WEBUI_AUTH_FILE=)
	$(WEBUI_PY) -m style_tune.webui.app --mode '$(MODE)' $(if $(COMPARE),--compare '$(COMPARE_SPEC)', \
		--base-model '$(WEBUI_BASE)' --tuned-model '$(WEBUI_TUNED)' \
		$(if $(BASE_API),--base-api '$(BASE_API)') $(if $(TUNED_API),--tuned-api '$(TUNED_API)')) \
		--test '$(WEBUI_TEST)' --verdicts '$(VERDICTS)' --host '$(WEBUI_HOST)' --port '$(WEBUI_PORT)' \
		--n '$(N)' --seed '$(SEED)' $(if $(filter 0,$(BLIND)),--no-blind) $(if $(WEBUI_AUTH_FILE),--auth-file '$(WEBUI_AUTH_FILE)')

verdicts: env-eval  ## count the verdicts in VERDICTS (one file or several): win rates, position bias; 3+ models: Bradley–Terry ranking (ANCHOR=)
	$(EVAL_PY) -m style_tune.eval.verdicts $(VERDICTS) $(RANKING_OPTS) \
		$(if $(VERDICTS_OUT),--out '$(VERDICTS_OUT)') $(if $(RANKING_FIGURE),--figure '$(RANKING_FIGURE)')

# make bench-serve: the CPU server vs transformers `generate` in one process, 1 and 8 clients, on the
# tiny model (built if missing): tokens/s and time to first token -> benchmarks/serve_bench_cpu.{json,md};
# BENCH_SERVE_ARGS=--soak: 500 requests, a tenth of them bad -> benchmarks/serve_soak_cpu.{json,md}
BENCH_SERVE_MODEL ?= $(TINY_MODEL)
BENCH_SERVE_ARGS ?=
bench-serve: env-deploy  ## CPU serving: tokens/s and time to first token, 1 and 8 clients, vs in-process generate
	@[ -d $(BENCH_SERVE_MODEL) ] || $(MAKE) tiny-model TINY_MODEL=$(BENCH_SERVE_MODEL)
	$(DEPLOY_PY) -m benchmarks.bench_serve --model $(BENCH_SERVE_MODEL) $(BENCH_SERVE_ARGS)

# ---------------------------------------------------------------- mutation testing
# mutmut (requirements/mutation.txt, its own env) over the logic modules listed in pyproject.toml's
# [tool.mutmut], each mutant against the in-process tests that reach its function (style_tune/dev/mutation.py,
# docs/testing.md#mutation-testing-make-mutation). make mutation: every mutant; prints `mutation: killed K
# of M` and each module's score; writes mutation/survivors.md and mutation/record.json; exit 1 when a
# survivor is not explained in mutation/README.md or a module kills under 90 %. make mutation-gate (in make
# test): a fixed tenth of each function's mutants and every mutant of what changed since record.json.
.PHONY: mutation mutation-gate
mutation: env-mutation  ## mutation testing of the logic modules (every mutant) -> mutation/
	$(MUTATION_PY) -m style_tune.dev.mutation
mutation-gate: env-mutation  ## make test's mutation testing: a fixed sample and what changed since make mutation
	$(MUTATION_PY) -m style_tune.dev.mutation --gate

# ---------------------------------------------------------------- data generation (eval env)
# make gen-data: style replies for your own prompts from any OpenAI-compatible API (`make serve` / lmdeploy
# on a GPU, or a hosted API; key from OPENAI_API_KEY), validated, resumable (style_tune/data/generate.py,
# docs/gen-data.md). PROMPTS: one prompt a line, or .csv/.jsonl with column PROMPT_COLUMN. OUT: user,style,
# assistant (for `make split CSV=$(OUT)`), rejected rows with their reason beside it (.rejected.csv), the
# journal a rerun resumes from (.journal.jsonl). Styles, prompts and rules: style_data/styles.json.
.PHONY: gen-data bench-gen-data
PROMPTS ?=
OUT ?= data/generated.csv
API_BASE ?= http://127.0.0.1:$(SERVER_PORT)/v1
# the served model's name (default: the only one GET /v1/models lists)
GEN_MODEL ?=
# styles to ask, comma-separated labels or slugs (default: all in the styles file)
STYLES ?=
SAMPLES ?= 1
CONCURRENCY ?= 8
PROMPT_COLUMN ?= user
# more arguments, e.g. GEN_ARGS="--timeout 60 --max-retries 8 --judge-data my.csv"
GEN_ARGS ?=
gen-data: env-eval  ## PROMPTS=FILE -> OUT (user,style,assistant) + rejected rows, through API_BASE (GEN_MODEL=, STYLES=, SAMPLES=, CONCURRENCY=)
	@$(EVAL_PY) -m style_tune.data.generate '$(PROMPTS)' --out '$(OUT)' --api-base '$(API_BASE)' \
		$(if $(GEN_MODEL),--model '$(GEN_MODEL)') $(if $(STYLES),--styles '$(STYLES)') --samples '$(SAMPLES)' \
		--concurrency '$(CONCURRENCY)' --column '$(PROMPT_COLUMN)' --seed '$(SEED)' $(GEN_ARGS)

# make bench-gen-data: rows/s of gen-data's client at CONCURRENCY=1 and 8 against `make serve`'s CPU server on
# the tiny model (built if missing) -> benchmarks/gen_data_bench_cpu.{json,md}
bench-gen-data: env-eval env-deploy  ## gen-data rows/s at CONCURRENCY=1 and 8 against the CPU server (tiny model)
	@[ -d $(TINY_MODEL) ] || $(MAKE) tiny-model
	$(EVAL_PY) -m benchmarks.bench_gen_data --model $(TINY_MODEL)

# ---------------------------------------------------------------- the demo over seeds
# make demo-seeds: make demo + eval-demo for each DEMO_SEED of DEMO_SEEDS, both formats, and the stages
# STAGE=sft|dpo|orpo of the controllable one; the mean and range of every figure ->
# benchmarks/demo_seeds_cpu.{md,json} (benchmarks/demo_seeds.py). About 40 min on 2 cores.
.PHONY: demo-seeds
DEMO_SEEDS ?= 0 1 2
DEMO_SEEDS_ARGS ?= --jobs 3
demo-seeds: env-train env-eval  ## the demo's figures as mean and range over DEMO_SEEDS (both formats, SFT vs DPO / ORPO)
	$(TRAIN_PY) -m benchmarks.demo_seeds --seeds $(DEMO_SEEDS) $(DEMO_SEEDS_ARGS)
