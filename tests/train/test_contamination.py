"""The default recipe trains each conversation exactly as if it were alone (no cross-contamination).

A training batch of `make train`'s default CONFIG, built by mmengine's Runner from the config as
`xtuner train` builds it (dataset, sampler, collate function), goes through the tiny stand-in model
(the CPU config's model, as `make bench` runs the variants on a CPU). Every conversation's per-token
loss inside the batch must equal its loss computed alone. The former default (XTuner's packing to
2048 tokens without varlen attention: benchmarks/bench_train.py's "bf16_packed" variant) fails the same
check: there, conversations attend to the ones packed before them. And the price of no packing, padding,
counted over a whole epoch of each config's dataloader: length-grouped batches pad less than random ones.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path

import torch

from benchmarks.bench_train import CPU_CONFIG, VARIANTS

REPO_ROOT = Path(__file__).resolve().parents[2]
# fp32 on the CPU: equal up to summation order inside the attention/matmul kernels (measured 3e-6)
TOLERANCE = 1e-4


def default_config() -> str:
    """The CONFIG `make train` uses when none is given (the Makefile is its one place)."""
    return re.search(r"^CONFIG \?= (\S+)$", (REPO_ROOT / "Makefile").read_text(), re.M).group(1)


@contextmanager
def config_env(model_dir: Path, data: Path):
    """The configs' paths in the environment for the block, then the environment as it was.

    Not pytest's monkeypatch: datasets 3.2's map(num_proc > 1) replaces os.environ with a copy, so
    monkeypatch's undo would clean the old object and leave these set for the tests that follow.
    """
    values = {"STYLE_TUNE_MODEL": str(model_dir), "STYLE_TUNE_DATA": str(data)}
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def first_batch_losses(config: str, overrides: dict, model_dir: Path, data: Path) -> list[dict]:
    """Per conversation of the config's first training batch: its token losses in the batch and alone."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    from xtuner.registry import BUILDER

    with config_env(model_dir, data):
        cfg = Config.fromfile(str(REPO_ROOT / config))
        cfg.merge_from_dict(overrides)
        batch = next(iter(Runner.build_dataloader(cfg.train_dataloader, seed=42)))["data"]
        cpu = Config.fromfile(str(CPU_CONFIG))
    llm = BUILDER.build(cpu.model).llm.eval()  # LoRA B starts at zero: the tiny base model's losses
    tokenizer = BUILDER.build(cpu.tokenizer)
    im_start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    system = tokenizer.encode("system")[0]

    def token_losses(ids, labels, **kwargs):
        with torch.no_grad():
            logits = llm(input_ids=ids, **kwargs).logits.float()
        return torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), labels[:, 1:], reduction="none", ignore_index=-100
        )

    ids, labels = batch["input_ids"], batch["labels"]
    in_batch = token_losses(
        ids, labels, **{k: batch[k] for k in ("attention_mask", "position_ids") if batch.get(k) is not None}
    )
    found = []
    for row in range(ids.shape[0]):
        # Conversations start at "<|im_start|>system": every training row carries its system text.
        starts = [i for i in range(ids.shape[1] - 1) if ids[row, i] == im_start and ids[row, i + 1] == system]
        last = int((labels[row] != -100).nonzero().max()) + 1
        for start, end in zip(starts, [*starts[1:], last], strict=True):
            trained = labels[row, start + 1 : end] != -100
            if not trained.any():  # a conversation cut off by the end of a pack before its reply
                continue
            alone = token_losses(ids[row : row + 1, start:end], labels[row : row + 1, start:end])[0]
            in_row = in_batch[row, start : end - 1][trained]
            found.append(dict(row=row, start=start, alone=alone[trained], in_batch=in_row))
    return found


def worst_difference(conversations: list[dict]) -> float:
    return max(float((c["alone"] - c["in_batch"]).abs().max()) for c in conversations)


def test_default_config_trains_every_conversation_as_if_alone(tiny_model_dir: Path, split_dir: Path) -> None:
    data = split_dir / "train.json"
    conversations = first_batch_losses(default_config(), {}, tiny_model_dir, data)
    rows = {c["row"] for c in conversations}
    assert len(conversations) == len(rows) > 1, "one conversation per row, several rows per batch"
    assert all(c["start"] == 0 for c in conversations)
    assert all(len(c["alone"]) > 0 for c in conversations)
    assert worst_difference(conversations) <= TOLERANCE


def test_the_former_packed_default_fails_the_same_check(tiny_model_dir: Path, split_dir: Path) -> None:
    config, _, packed = VARIANTS["bf16_packed"]
    data = split_dir / "train.json"
    conversations = first_batch_losses(f"xtuner_configs/{config}", packed, tiny_model_dir, data)
    assert len(conversations) > 10, "a 2048-token pack holds many conversations"
    assert worst_difference(conversations) > 100 * TOLERANCE
    # Every conversation after the pack's first sees the ones before it.
    later = [c for c in conversations if c["start"] > 0]
    assert all(float((c["alone"] - c["in_batch"]).abs().max()) > TOLERANCE for c in later[:5])


def epoch_pad_share(config: str, model_dir: Path, data: Path) -> float:
    """The share of padded positions over every batch of one epoch of CONFIG's training dataloader."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    from benchmarks.bench_train import batch_counts

    with config_env(model_dir, data):
        cfg = Config.fromfile(str(REPO_ROOT / config))
        loader = Runner.build_dataloader(cfg.train_dataloader, seed=42)
        counts = [batch_counts(batch["data"]) for batch in loader]
    tokens, positions = (sum(column) for column in zip(*counts, strict=True))
    return 1 - tokens / positions


def test_length_grouped_batches_pad_less_than_the_articles_random_ones(tiny_model_dir: Path,
                                                                       split_dir: Path) -> None:
    """Why the default groups rows by length, over a whole epoch (not one batch): XTuner's
    LengthGroupedSampler (32 a batch) against the article's random batches of 20 (the int8 config)."""
    data = split_dir / "train.json"
    grouped = epoch_pad_share(default_config(), tiny_model_dir, data)
    random_batches = epoch_pad_share(f"xtuner_configs/{VARIANTS['int8'][0]}", tiny_model_dir, data)
    print(f"pad share over an epoch: length-grouped 32 {grouped:.1%}, random 20 {random_batches:.1%}")
    assert 0 < grouped < random_batches / 2
    # the figures benchmarks/README.md states
    stated = (REPO_ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    assert f"pad {grouped:.1%} of their tokens" in stated and f"against {random_batches:.1%})" in stated
