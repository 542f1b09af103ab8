"""Preference tuning: XTuner's DPO and ORPO on `make prefs`'s pairs (style_tune/train/preference.py).

- The chosen row of a pair is the SFT training text of the same turn (tests/chat_cases.py: the hand-written
  reference every front end is compared with), as text and as token ids, and trains the same tokens,
  plus the "\\n" after <|im_end|> that XTuner's pair tokenizer labels and its SFT encoder does not.
- The DPO loss of a batch equals the sigmoid loss computed here by hand from the policy's and the
  reference's summed log-probabilities; the reference is the start model (loaded here on its own), and a
  target "!" (Qwen's token id 0) counts, which XTuner's own DPO and ORPO drop.
- `make train` on the DPO config: a seeded run with pinned losses, an interrupted run resumes to the
  uninterrupted one, then `make convert merge`; bad inputs stop with one line.
- The GPU configs parse with what they say.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from chat_cases import CASES, Case

from style_tune.core.prompts import STYLE_SYSTEMS, STYLES
from style_tune.core.train_logs import loss_curve
from style_tune.data.prefs import pair

REPO_ROOT = Path(__file__).resolve().parents[2]
DPO_CPU = "xtuner_configs/qwen2_5_tiny_lora_dpo_style_cpu.py"
ORPO_CPU = "xtuner_configs/qwen2_5_tiny_lora_orpo_style_cpu.py"
SFT_CPU = "xtuner_configs/qwen2_5_tiny_lora_controllable_style_cpu.py"
GENTLE, SNARKY = STYLES
IGNORE_INDEX = -100
BANG = "记得带伞哦!"  # "!" is token id 0 of Qwen2.5's vocabulary


def load_config(path: str, model: Path, data: Path):
    from mmengine.config import Config

    old = {key: os.environ.get(key) for key in ("STYLE_TUNE_MODEL", "STYLE_TUNE_DATA")}
    os.environ.update(STYLE_TUNE_MODEL=str(model), STYLE_TUNE_DATA=str(data))
    try:
        return Config.fromfile(str(REPO_ROOT / path))
    finally:
        for key, value in old.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


def write_pairs(path: Path, pairs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs), encoding="utf-8")
    return path


def build_pairs(config_path: str, model: Path, pairs_file: Path) -> list[dict]:
    """The tokenized pairs, by XTuner's own dataset builder from the config."""
    from xtuner.registry import BUILDER

    dataset = BUILDER.build(load_config(config_path, model, pairs_file).train_dataset)
    return [dataset[i] for i in range(len(dataset))]


# ------------------------------------------------------------------ same prompt everywhere

CONTROLLABLE_1TURN = [case for case in CASES if case.mode == "controllable" and len(case.turns) == 1]


@pytest.mark.parametrize("case", CONTROLLABLE_1TURN, ids=[case.id for case in CONTROLLABLE_1TURN])
def test_the_chosen_row_is_the_sft_training_text(case: Case, tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer
    from xtuner.dataset.map_fns import template_map_fn_factory
    from xtuner.dataset.utils import encode_fn

    user = case.turns[0][0]
    rows = write_pairs(tmp_path / "pairs.jsonl", [pair(case.system, user, case.output(1), "别的风格的回复")])
    (tokenized,) = build_pairs(DPO_CPU, tiny_model_dir, rows)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    # the hand-written reference conversation, as text and as ids
    assert tokenizer.decode(tokenized["chosen_ids"]) == case.text()
    assert tokenized["chosen_ids"] == tokenizer(case.text(), add_special_tokens=False)["input_ids"]
    # XTuner's SFT encoding of the same turn, from the controllable SFT config
    sft = load_config(SFT_CPU, tiny_model_dir, tmp_path / "unused.json").train_dataloader.dataset
    example = template_map_fn_factory(template=sft.template_map_fn.template)(copy.deepcopy(case.xtuner_row()))
    encoded = encode_fn(example, tokenizer, max_length=sft.max_length, input_ids_with_output=True)
    assert tokenized["chosen_ids"] == encoded["input_ids"]
    # the same trained tokens (the reply and <|im_end|>), plus the final "\n" only the pair labels
    chosen, sft_labels = tokenized["chosen_labels"], encoded["labels"]
    assert chosen[:-1] == sft_labels[:-1]
    newline = tokenizer("\n", add_special_tokens=False)["input_ids"][0]
    assert (sft_labels[-1], chosen[-1]) == (IGNORE_INDEX, newline)
    # the prompt part is what every front end sends (tests/chat_cases.py)
    prompt_len = chosen.index(next(label for label in chosen if label != IGNORE_INDEX))
    assert tokenizer.decode(tokenized["chosen_ids"][:prompt_len]) == case.prompt(1)


# ------------------------------------------------------------------ the loss, by hand

def summed_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per sequence: the sum of log p(token t+1 | ..t) over every labelled next token."""
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    logps = logits[:, :-1].float().log_softmax(-1).gather(2, targets.clamp(min=0).unsqueeze(2)).squeeze(2)
    return (logps * mask).sum(-1)


@pytest.fixture(scope="module")
def batch(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two pairs, both with a "!" in one reply, collated as XTuner's dataloader does."""
    from xtuner.dataset.collate_fns.preference_collate_fn import preference_collate_fn

    pairs = [pair(STYLE_SYSTEMS[GENTLE], "下雨了", BANG, "天气预报白看了？"),
             pair(STYLE_SYSTEMS[SNARKY], "下雨了", "天气预报白看了？", BANG)]
    path = write_pairs(tmp_path_factory.mktemp("pairs") / "pairs.jsonl", pairs)
    tokenized = build_pairs(DPO_CPU, tiny_model_dir, path)
    assert 0 in tokenized[0]["chosen_labels"] and 0 in tokenized[1]["rejected_labels"], "no id-0 target"
    return {"path": path, "data": preference_collate_fn(tokenized)["data"]}


def build_model(config_path: str, model_dir: Path, pairs: Path, model_type=None):
    """The config's model (LoRA on the start model), its adapter's B matrices drawn at random (seeded) so
    that policy and reference differ; eval mode (no dropout)."""
    from xtuner.registry import BUILDER

    cfg = load_config(config_path, model_dir, pairs)
    if model_type is not None:
        cfg.model.type = model_type
    model = BUILDER.build(cfg.model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.llm.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    return model.eval(), cfg


def stock(cls_name: str):
    """XTuner's own DPO / ORPO class, with only the CPU attention fix."""
    from xtuner.model.dpo import DPO
    from xtuner.model.orpo import ORPO

    from style_tune.train.xtuner_cpu import KeepConfigAttention

    return type(f"Stock{cls_name}", (KeepConfigAttention, {"DPO": DPO, "ORPO": ORPO}[cls_name]), {})


def test_dpo_loss_is_the_sigmoid_loss_of_summed_logps_with_the_start_model_as_reference(
        batch: dict, tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    model, cfg = build_model(DPO_CPU, tiny_model_dir, batch["path"])
    data = batch["data"]
    with torch.no_grad():
        got = model.compute_loss(copy.deepcopy(data))
        inputs = {"input_ids": data["input_ids"], "attention_mask": data["attention_mask"]}
        policy = copy.deepcopy(model.llm).merge_and_unload()  # the adapter folded in: another code path
        reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir, torch_dtype=torch.float32).eval()
        pi = summed_logps(policy(**inputs).logits, data["labels"])
        ref = summed_logps(reference(**inputs).logits, data["labels"])
        # XTuner's reference: the same weights with the adapter switched off, i.e. the start model
        with model.llm.disable_adapter():
            assert torch.allclose(model.llm(**inputs).logits, reference(**inputs).logits, atol=1e-5)
    beta = cfg.model.beta
    logits = (pi[0::2] - pi[1::2]) - (ref[0::2] - ref[1::2])
    expected = -torch.nn.functional.logsigmoid(beta * logits)
    assert got["loss"].shape == expected.shape == (2,)
    assert torch.allclose(got["loss"], expected, atol=1e-5), (got["loss"], expected)
    assert torch.allclose(got["reward_margin"], (beta * logits).mean(), atol=1e-5)
    assert abs(logits).min() > 1e-2, "policy and reference barely differ: the comparison proves little"


def test_xtuner_dpo_drops_the_id_0_target_that_style_dpo_counts(batch: dict, tiny_model_dir: Path) -> None:
    ours, _ = build_model(DPO_CPU, tiny_model_dir, batch["path"])
    theirs, _ = build_model(DPO_CPU, tiny_model_dir, batch["path"], model_type=stock("DPO"))
    theirs.llm.load_state_dict(ours.llm.state_dict())
    with torch.no_grad():
        ours_loss = ours.compute_loss(copy.deepcopy(batch["data"]))["loss"]
        theirs_loss = theirs.compute_loss(copy.deepcopy(batch["data"]))["loss"]
        # XTuner's loss is the same loss with every id-0 target left out of the sums
        data = copy.deepcopy(batch["data"])
        inputs = {"input_ids": data["input_ids"], "attention_mask": data["attention_mask"]}
        without_0 = data["labels"].masked_fill(data["labels"] == 0, IGNORE_INDEX)
        policy = summed_logps(ours.llm(**inputs).logits, without_0)
        with ours.llm.disable_adapter():
            ref = summed_logps(ours.llm(**inputs).logits, without_0)
    dropped = -torch.nn.functional.logsigmoid(0.1 * ((policy[0::2] - policy[1::2]) - (ref[0::2] - ref[1::2])))
    assert torch.allclose(theirs_loss, dropped, atol=1e-5)
    assert (theirs_loss - ours_loss).abs().max() > 1e-3


def test_style_orpo_differs_from_xtuners_only_by_the_id_0_targets(batch: dict, tiny_model_dir: Path,
                                                                   tmp_path: Path) -> None:
    from xtuner.dataset.collate_fns.preference_collate_fn import preference_collate_fn

    ours, _ = build_model(ORPO_CPU, tiny_model_dir, batch["path"])
    theirs, _ = build_model(ORPO_CPU, tiny_model_dir, batch["path"], model_type=stock("ORPO"))
    theirs.llm.load_state_dict(ours.llm.state_dict())
    plain = write_pairs(tmp_path / "plain.jsonl",
                        [pair(STYLE_SYSTEMS[GENTLE], "下雨了", "记得带伞哦", "天气预报白看了？")])
    without_bang = preference_collate_fn(build_pairs(ORPO_CPU, tiny_model_dir, plain))["data"]
    with torch.no_grad():
        same = [m.compute_loss(copy.deepcopy(without_bang))["loss"] for m in (ours, theirs)]
        differ = [m.compute_loss(copy.deepcopy(batch["data"]))["loss"] for m in (ours, theirs)]
    assert torch.allclose(same[0], same[1], atol=1e-6)
    assert abs(differ[0] - differ[1]) > 1e-4


# ------------------------------------------------------------------ make train on the DPO config

# Four short iterations: 2 pairs a step, a checkpoint and a style score every 2, every loss logged
# unsmoothed, full lr from the first step, no LoRA dropout (mmengine's checkpoint does not carry the random
# state); the style score on 2 validation prompts (in both styles), 8 tokens a reply.
FAST = ("--cfg-options train_cfg.max_iters={iters} train_dataloader.batch_size=2 "
        "default_hooks.checkpoint.interval=2 train_cfg.val_interval=2 default_hooks.logger.interval=1 "
        "log_processor.window_size=1 param_scheduler.0.start_factor=1.0 model.lora.lora_dropout=0.0 "
        "val_dataloader.dataset.limit=2 val_cfg.max_new_tokens=8")
ITERS = 4
#: The DPO loss of each iteration of that run (tiny model seed 0 as the start model, `make prefs` of the
#: small CSV's split, seed 42), measured on the 2-core CPU machine with the pinned train env. Re-pin
#: deliberately when the data, the model build or the settings change.
EXPECTED_LOSS = [0.6931, 0.6944, 0.6870, 0.6963]
LOSS_ATOL = 1e-3


def make(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "MAKEFLAGS": ""})


#: The shipped data's first prompts, both replies each: a split of a few dozen prompts keeps each
#: training step's start-up (tokenizing the pairs) and the demo's report (every test prompt) short.
SMALL_PROMPTS = 40


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import csv

    with (REPO_ROOT / "style_data" / "style_chat_data.csv").open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    prompts = list(dict.fromkeys(row["user"] for row in rows))[:SMALL_PROMPTS]
    path = tmp_path_factory.mktemp("csv") / "small.csv"
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["user", "style", "assistant"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(row for row in rows if row["user"] in prompts)
    return path


@pytest.fixture(scope="module")
def prefs_file(small_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    split = tmp_path_factory.mktemp("controllable")
    proc = make("split", "prefs", "MODE=controllable", f"SPLIT_DIR={split}", f"CSV={small_csv}")
    assert proc.returncode == 0, proc.stderr
    return split / "prefs.jsonl"


def train(model: Path, data: Path, work_dir: Path, iters: int, config: str = DPO_CPU
          ) -> subprocess.CompletedProcess[str]:
    return make("train", f"CONFIG={config}", f"MODEL={model}", f"DATA={data}", f"WORK_DIR={work_dir}",
                f"TRAIN_ARGS={FAST.format(iters=iters)}")


@pytest.fixture(scope="module")
def dpo_run(tiny_model_dir: Path, prefs_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work_dir = tmp_path_factory.mktemp("dpo") / "work"
    proc = train(tiny_model_dir, prefs_file, work_dir, ITERS)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return work_dir


def test_seeded_dpo_run_has_the_pinned_loss(dpo_run: Path) -> None:
    losses = [loss for _, loss in loss_curve(dpo_run)]
    assert losses == pytest.approx(EXPECTED_LOSS, abs=LOSS_ATOL), f"measured {[round(x, 4) for x in losses]}"


def test_an_interrupted_dpo_run_resumes_to_the_uninterrupted_one(dpo_run: Path, tiny_model_dir: Path,
                                                                 prefs_file: Path, tmp_path: Path) -> None:
    work_dir = tmp_path / "work"
    assert train(tiny_model_dir, prefs_file, work_dir, 2).returncode == 0
    proc = train(tiny_model_dir, prefs_file, work_dir, ITERS)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "resuming from" in proc.stdout and "iter_2.pth" in proc.stdout
    got, expected = loss_curve(work_dir), loss_curve(dpo_run)
    assert [i for i, _ in got] == [1, 2, 3, 4] == [i for i, _ in expected]
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in expected], abs=1e-5)
    ours = torch.load(work_dir / "iter_4.pth", map_location="cpu", weights_only=False)["state_dict"]
    reference = torch.load(dpo_run / "iter_4.pth", map_location="cpu", weights_only=False)["state_dict"]
    assert sorted(ours) == sorted(reference) and all("lora" in name for name in ours)
    assert max((ours[n] - reference[n]).abs().max().item() for n in ours) <= 1e-6


@pytest.mark.parametrize(("config", "data", "message"), [
    (DPO_CPU, "train.json", "train.json: row 1: not JSON (Expecting value): "
     "qwen2_5_tiny_lora_dpo_style_cpu.py trains on preference pairs, one JSON object a line "
     "(`make prefs` writes them)"),
    (SFT_CPU, "prefs.jsonl", "holds preference pairs, but qwen2_5_tiny_lora_controllable_style_cpu.py is an "
     "SFT config: give DATA= a split (data/<mode>/train.json), or CONFIG= a *_dpo_* / *_orpo_* config"),
    (DPO_CPU, "missing.jsonl", "missing.jsonl not found; run `make prefs`"),
])
def test_bad_inputs_stop_with_one_line(config: str, data: str, message: str, tiny_model_dir: Path,
                                       prefs_file: Path, tmp_path: Path) -> None:
    proc = train(tiny_model_dir, prefs_file.parent / data, tmp_path / "work", 1, config=config)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) <= 2 and message in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "work").exists()


def test_a_missing_start_model_says_to_merge_the_sft_first(prefs_file: Path, tmp_path: Path) -> None:
    proc = train(tmp_path / "no-model", prefs_file, tmp_path / "work", 1)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "the merged SFT model DPO / ORPO start from" in proc.stderr


def test_make_demo_with_a_stage_runs_dpo_from_the_merged_sft_model(tiny_model_dir: Path, small_csv: Path,
                                                                  tmp_path: Path) -> None:
    """`make demo MODE=controllable STAGE=dpo` on the tiny model and a small CSV, a few iterations each,
    every output in tmp_path: the SFT chain, `make prefs`, DPO from the merged SFT model, `make convert`
    and `make merge` of the DPO run (unchanged targets), the report."""
    from transformers import AutoModelForCausalLM

    paths = {name: tmp_path / name for name in ("split", "sft", "sft-merged", "dpo", "dpo-merged")}
    # few iterations (the tiny model's full vocabulary makes a DPO step ~4 s), a short style score
    quick = "val_dataloader.dataset.limit=2 val_cfg.max_new_tokens=8"
    proc = make("demo", "MODE=controllable", "STAGE=dpo", f"CSV={small_csv}", f"DEMO_BASE={tiny_model_dir}",
                f"DEMO_TRAIN_ARGS=--cfg-options train_cfg.max_iters=2 {quick}",
                f"DEMO_STAGE_ARGS=--cfg-options train_cfg.max_iters=2 {quick}",
                f"SPLIT_DIR={paths['split']}", f"DEMO_WORK_DIR={paths['sft']}",
                f"DEMO_MERGED={paths['sft-merged']}", f"DEMO_STAGE_WORK_DIR={paths['dpo']}",
                f"DEMO_STAGE_MERGED={paths['dpo-merged']}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (paths["split"] / "prefs.jsonl").is_file() and (paths["dpo-merged"] / "config.json").is_file()
    # mmengine's dump of what the stage trained: the DPO model, from the merged SFT model, on the pairs
    dump = (paths["dpo"] / Path(DPO_CPU).name).read_text(encoding="utf-8")
    assert "CPUStyleDPO" in dump and str(paths["sft-merged"]) in dump and "prefs.jsonl" in dump
    assert (paths["dpo"] / "iter_2.pth").is_file() and (paths["sft"] / "iter_2.pth").is_file()
    assert f"SFT model:         {paths['sft-merged']}" in proc.stdout
    assert f"merged model:      {paths['dpo-merged']}" in proc.stdout
    start = AutoModelForCausalLM.from_pretrained(paths["sft-merged"]).state_dict()
    tuned = AutoModelForCausalLM.from_pretrained(paths["dpo-merged"]).state_dict()
    assert sorted(start) == sorted(tuned)
    assert max((tuned[name] - start[name]).abs().max().item() for name in start) > 0, "DPO changed nothing"


# ------------------------------------------------------------------ the GPU configs

@pytest.mark.parametrize(("config", "model_type", "knobs"), [
    ("qwen2_5_1_5b_instruct_lora_bf16_dpo_style.py", "StyleDPO", {"beta": 0.1, "loss_type": "sigmoid"}),
    ("qwen2_5_1_5b_instruct_lora_bf16_orpo_style.py", "StyleORPO", {"beta": 0.1}),
])
def test_gpu_configs_parse_with_what_they_say(config: str, model_type: str, knobs: dict) -> None:
    from mmengine.config import Config
    from mmengine.dataset import DefaultSampler
    from xtuner.dataset.preference_dataset import build_preference_dataset

    from style_tune.core import defaults

    cfg = Config.fromfile(str(REPO_ROOT / "xtuner_configs" / config))
    assert cfg.model.type.__name__ == model_type
    assert {key: cfg.model[key] for key in knobs} == knobs
    llm = cfg.model.llm
    assert llm.torch_dtype == torch.bfloat16 and "quantization_config" not in llm
    assert llm.pretrained_model_name_or_path == defaults.SFT_MODEL
    assert cfg.tokenizer.pretrained_model_name_or_path == defaults.SFT_MODEL
    assert cfg.model.lora.r == 64 and cfg.optim_wrapper.dtype == "bfloat16"
    dataset = cfg.train_dataloader.dataset
    assert dataset.type is build_preference_dataset and dataset.is_dpo and not dataset.use_varlen_attn
    assert dataset.dataset.data_files == {"train": f"data/controllable/{defaults.PREFS_FILE}"}
    assert dataset.num_proc == 4 and cfg.train_dataloader.sampler.type is DefaultSampler
    assert cfg.train_dataloader.batch_size == 16 and cfg.train_cfg.max_epochs == 1
    # the style score asks the controllable split's validation prompts, each in every style
    assert cfg.val_dataloader.dataset.path == "data/controllable/val.json"
    assert cfg.val_dataloader.dataset.tokenizer.pretrained_model_name_or_path == defaults.SFT_MODEL
