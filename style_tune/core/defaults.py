"""Every default shared by the Makefile, the steps and the configs: one place (standard library only).

The Makefile reads them from ``.envs/defaults.mk``, which it writes from this module
(``python -m style_tune.core.defaults`` prints them as make variables, ``DEFAULT_<NAME> := value``);
the steps import them; the configs read them at load time.

Environment variables are used only where mmengine's config loading forces them: an XTuner or
OpenCompass config is a Python file that ``xtuner train`` / ``opencompass`` load themselves, so the
only way to hand it a path without editing it is the environment (a path such as the base model is
used in several places of the config, which one ``--cfg-options`` key cannot reach; and XTuner loads
its configs in lazy-import mode, so they read the environment with ``__import__("os")``). The
Makefile sets them; direct users of a config may too:

    STYLE_TUNE_MODEL, STYLE_TUNE_DATA   xtuner_configs/*.py: base model dir, training split (JSON)
    STYLE_TUNE_VAL_DATA                 xtuner_configs/*.py: the split the style score at every save asks
                                        (default: val.json beside the training file)
    STYLE_TUNE_VIS                      xtuner_configs/*.py: extra visualizer backends (`tensorboard`);
                                        mmengine's local scalars.json is always kept
    STYLE_EVAL_MODELS, STYLE_EVAL_BASE, STYLE_EVAL_TUNED, STYLE_EVAL_DATA_DIR, STYLE_EVAL_MODE,
    STYLE_EVAL_LIMIT, STYLE_EVAL_SEED, STYLE_EVAL_MAX_OUT_LEN, STYLE_EVAL_DEVICE, STYLE_EVAL_BATCH_SIZE
                                        eval_configs/eval_style.py (its header says what each is)
    SELECT_QWEN, SELECT_INTERNLM, SELECT_DEVICE, SELECT_MAX_OUT_LEN, SELECT_BATCH_SIZE
                                        eval_configs/select_models*.py
    RETENTION_BASE, RETENTION_TUNED, RETENTION_MODE, RETENTION_BACKEND, RETENTION_DEVICE,
    RETENTION_MARGIN, RETENTION_SEED, RETENTION_ROUNDS, RETENTION_MAX_OUT_LEN, RETENTION_BATCH_SIZE
                                        eval_configs/retention.py
Each unset one takes the default below. Paths are relative to the repository root.
"""

from __future__ import annotations

import os

#: The model the recipe fine-tunes (`make download` puts it here).
BASE_MODEL = "models/Qwen2.5-1.5B-Instruct"
#: The article's rival in the model selection (`make eval-select`).
RIVAL_MODEL = "models/internlm2_5-1_8b-chat"
#: The offline stand-in model (`make tiny-model`).
TINY_MODEL = "models/tiny-qwen2.5"
#: The data format (style_tune.core.prompts.MODES) and the random seed of the split and evaluation.
MODE = "label"
SEED = 42
#: Token budget of an evaluated reply (greedy decoding; stops at <|im_end|>): the data's replies are
#: at most ~75 characters, so 96 tokens leave room, and a reply that uses them all is a runaway.
EVAL_MAX_OUT_LEN = 96
#: Pretraining steps of the demo's stand-in base (`make demo-base`, batches of 16 exchanges: 2
#: conversations of 8; built once). Chosen on the stand-in that read single exchanges (tuned style score
#: snarky, controllable mode, per pretraining seed 0/1/2): 500 steps 74 (seed 0; the base still garbles),
#: 700 steps 83/72/65, 1000 steps 78/85/70 (docs/demo.md). Past ~1000 the tuned model falls back to the
#: reply the base memorised for a prompt, whatever style is asked for (2000 steps on the 3-layer
#: stand-in: 73). The conversations stand-in at 1000 steps: snarky 97.8 (`make eval-demo`, seed 0).
DEMO_BASE_STEPS = 1000

#: The ranking of `make verdicts` (style_tune/eval/ranking.py): the anchor model at 1000 when ANCHOR= is
#: not given (the name the web page and the pairwise judge give the base endpoint), and the bootstrap
#: rounds behind its 95 % intervals (1000: the 2.5th and 97.5th percentiles then rest on 25 rounds each;
#: docs/serving.md's example, 2 kinds of rater x 360 verdicts, took 9.8 s of CPU).
RANKING_ANCHOR = "base"
RANKING_ROUNDS = 1000
#: The pairwise metrics judge (`make judge-pairs JUDGE=metrics`): two replies that both count for style
#: whose style margins differ by at most this many points tie. Below it the order is the classifier's
#: noise: style judges trained on bootstrap resamples of the controllable train split keep the full
#: judge's order of two held-out references in >= 95 % of resamples for 96.3 % of the pairs beyond 15
#: points, 94.9 % beyond 12, 86.3 % beyond 5 (benchmarks/metric_judge_ties.md, `make bench-metric-judge`).
METRIC_JUDGE_TIE = 15.0


#: Preference tuning (`make prefs`, the *_dpo_style / *_orpo_style configs): the pairs file in the
#: controllable split, and the model the preference stage starts from, which is also DPO's reference:
#: the merged controllable SFT model (`make train merge` with the controllable SFT config).
PREFS_FILE = "prefs.jsonl"
SFT_MODEL = "models/qwen2_5_1_5b_instruct_lora_int8_controllable_style_e3-merged"

#: `make eval-retention`: the non-inferiority margin in accuracy points, stated before the run (a tuned
#: model kept the base's FewCLUE ability when its paired 95 % interval against the base stays above
#: -MARGIN). 2 points: less than the gap that decided the article's model choice (ocnli_fc-test 60.60
#: vs 58.06, docs/evaluation.md), so a loss inside it would not have changed that choice. ROUNDS: the
#: paired bootstrap's resamples: on 2,000 items the interval's ends moved by at most 0.10 point over 20
#: seeds (benchmarks/bootstrap_coverage.md); more resamples cost time for nothing the verdict can use.
RETENTION_MARGIN = 2.0
RETENTION_ROUNDS = 10_000

#: Smoothing weight of the training loss in `make curves` (style_tune/train/curves.py): TensorBoard's
#: debiased exponential moving average at its slider's default, so the PNG and `VIS=tensorboard` show the
#: same curve; 0 leaves the loss as logged, towards 1 smooths more (and lags more).
CURVES_SMOOTHING = 0.6


def split_dir(mode: str = MODE) -> str:
    """Where `make split` writes a mode's train/val/test.json."""
    return f"data/{mode}"


def train_data(mode: str = MODE) -> str:
    """The training split of a mode."""
    return f"{split_dir(mode)}/train.json"


def config_train_data(mode: str = MODE) -> str:
    """The training split an XTuner config reads: $STYLE_TUNE_DATA (`make train DATA=`), else the mode's."""
    return os.environ.get("STYLE_TUNE_DATA", train_data(mode))


def config_prefs_data() -> str:
    """The pairs a preference config reads: $STYLE_TUNE_DATA (`make train DATA=`), else `make prefs`'s."""
    return os.environ.get("STYLE_TUNE_DATA", f"{split_dir('controllable')}/{PREFS_FILE}")


def config_val_data(train: str) -> str:
    """The validation split a config's style score asks (style_tune/train/style_score.py):
    $STYLE_TUNE_VAL_DATA (`make train VAL_DATA=`), else val.json beside TRAIN, the training file (`make
    split` writes the three files of a split side by side; `make prefs` puts its pairs beside them)."""
    return os.environ.get("STYLE_TUNE_VAL_DATA") or os.path.join(os.path.dirname(train), "val.json")


def judge_data(val: str) -> str:
    """The split the style judge learns from: train.json beside the validation split (as `make eval-style`'s
    judge learns from the train.json beside its test.json)."""
    return os.path.join(os.path.dirname(val), "train.json")


#: Visualizer backends `make train VIS=` / $STYLE_TUNE_VIS may add to mmengine's LocalVisBackend (which
#: writes WORK_DIR/<run>/vis_data/scalars.json, what the reports and curves read: it is always kept).
VIS_BACKENDS = ("tensorboard",)


def config_vis() -> tuple[str, ...]:
    """The extra visualizer backends a config adds: $STYLE_TUNE_VIS, comma- or space-separated names of
    VIS_BACKENDS ("" or "local": none). An unknown name raises ValueError (`make train` says so in one
    line)."""
    names = os.environ.get("STYLE_TUNE_VIS", "").replace(",", " ").split()
    unknown = [name for name in names if name not in (*VIS_BACKENDS, "local")]
    if unknown:
        raise ValueError(f"unknown visualizer backend {', '.join(unknown)} in VIS= (STYLE_TUNE_VIS); "
                         f"known: {', '.join(VIS_BACKENDS)} (the local scalars.json is always written)")
    return tuple(dict.fromkeys(name for name in names if name != "local"))


def config_sft_model() -> str:
    """The model a preference config starts from: $STYLE_TUNE_MODEL (`make train MODEL=`), else SFT_MODEL."""
    return os.environ.get("STYLE_TUNE_MODEL", SFT_MODEL)


#: The values the Makefile takes (as DEFAULT_<NAME>).
MAKE_DEFAULTS = {"BASE_MODEL": BASE_MODEL, "RIVAL_MODEL": RIVAL_MODEL, "TINY_MODEL": TINY_MODEL,
                 "MODE": MODE, "SEED": SEED, "EVAL_MAX_OUT_LEN": EVAL_MAX_OUT_LEN,
                 "DEMO_BASE_STEPS": DEMO_BASE_STEPS, "PREFS_FILE": PREFS_FILE, "SFT_MODEL": SFT_MODEL,
                 "RANKING_ROUNDS": RANKING_ROUNDS, "RETENTION_MARGIN": RETENTION_MARGIN,
                 "RETENTION_ROUNDS": RETENTION_ROUNDS, "CURVES_SMOOTHING": CURVES_SMOOTHING}


if __name__ == "__main__":
    print("# Written by `python -m style_tune.core.defaults` (style_tune/core/defaults.py); do not edit.")
    for name, value in MAKE_DEFAULTS.items():
        print(f"DEFAULT_{name} := {value}")
