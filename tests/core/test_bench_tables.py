"""The committed benchmark results (benchmarks/*.json) and their tables (benchmarks/*.md).

Each table is regenerated from its JSON with the renderer benchmarks/bench_train.py writes it with, and
each figure is checked against its definition: non-pad tokens over the measured time, pad share
over all token positions, MFU's 4·N FLOP per non-pad token. Standard library only.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS = sorted((REPO_ROOT / "benchmarks").glob("train_bench_*.json"))


bench = importlib.import_module("benchmarks.bench_train")  # standard library at import time


def definition_problems(variant: dict) -> list[str]:
    """What in one variant's record contradicts the definitions of its figures."""
    problems = []
    times, tokens = variant.get("step_times"), variant.get("step_tokens")
    positions = variant.get("step_positions")
    if times is not None and tokens is not None:
        if len(times) != variant["steps"] or len(tokens) != variant["steps"]:
            problems.append("one time and one token count per measured step")
        elif variant["tokens_per_s"] != pytest.approx(sum(tokens) / sum(times), rel=1e-9):
            problems.append("tokens_per_s is not the steps' non-pad tokens over their summed time")
    if positions is not None and tokens is not None:
        if any(t > p for t, p in zip(tokens, positions, strict=True)):
            problems.append("more non-pad tokens than token positions")
        if variant["pad_share"] != pytest.approx(1 - sum(tokens) / sum(positions), abs=1e-12):
            problems.append("pad_share is not 1 - non-pad tokens / positions")
    # whatever the record holds: at most the non-pad share of full batches at the fastest step
    positions_per_s = variant["batch_size"] * variant["max_length"] / variant["step_s_min"]
    capacity = (1 - variant["pad_share"]) * positions_per_s
    if variant["tokens_per_s"] > capacity * (1 + 1e-9):
        rate = variant["tokens_per_s"]
        problems.append(f"tokens_per_s {rate:.0f} over the non-pad capacity {capacity:.0f}")
    if variant["batch_size"] > 1 and not variant["packed"] and variant["pad_share"] == 0:
        # rows of short chit-chat, each batch padded to its longest row: some padding must show, even
        # in length-grouped batches (the default's, 1.5% on the CPU run)
        problems.append("no padding in unpacked batches: pad positions counted as tokens?")
    if variant["train_flop_per_s"] != pytest.approx(4 * variant["base_params"] * variant["tokens_per_s"]):
        problems.append("train_flop_per_s is not 4·N per non-pad token")
    if not variant["step_s_min"] <= variant["step_s_median"] <= variant["step_s_max"]:
        problems.append("step time median outside min–max")
    if not 0 <= variant["pad_share"] < 1:
        problems.append("pad share outside [0, 1)")
    return problems


@pytest.mark.parametrize("path", RESULTS, ids=[path.stem for path in RESULTS])
def test_committed_table_is_rendered_from_its_json(path: Path) -> None:
    results = json.loads(path.read_text(encoding="utf-8"))
    table = path.with_suffix(".md")
    assert table.read_text(encoding="utf-8") == bench.render_markdown(results), (
        f"{table.name} is not the rendering of {path.name}: regenerate it with benchmarks/bench_train.py's "
        "render_markdown, never edit it by hand"
    )


@pytest.mark.parametrize("path", RESULTS, ids=[path.stem for path in RESULTS])
def test_committed_figures_match_their_definitions(path: Path) -> None:
    results = json.loads(path.read_text(encoding="utf-8"))
    measured = [variant for variant in results["variants"] if "error" not in variant]
    assert measured
    for variant in measured:
        assert definition_problems(variant) == [], variant["variant"]


def test_the_cpu_result_keeps_its_per_step_figures() -> None:
    results = json.loads((REPO_ROOT / "benchmarks" / "train_bench_cpu.json").read_text(encoding="utf-8"))
    for variant in results["variants"]:
        assert len(variant["step_times"]) == len(variant["step_tokens"]) == variant["steps"]


def test_counting_padding_breaks_the_definition() -> None:
    """The checks above catch a benchmark that counts pad positions as tokens."""
    honest = {
        "variant": "int8", "steps": 2, "batch_size": 2, "max_length": 8, "packed": False,
        "step_times": [0.5, 0.5], "step_tokens": [10, 12], "step_positions": [16, 16],
        "tokens_per_s": 22.0, "pad_share": 1 - 22 / 32, "base_params": 1000,
        "train_flop_per_s": 4 * 1000 * 22.0, "step_s_min": 0.5, "step_s_median": 0.5, "step_s_max": 0.5,
    }
    assert definition_problems(honest) == []
    padded = dict(honest, tokens_per_s=32.0, train_flop_per_s=4 * 1000 * 32.0)
    assert definition_problems(padded) == [
        "tokens_per_s is not the steps' non-pad tokens over their summed time",
        "tokens_per_s 32 over the non-pad capacity 22",
    ]
    # counted consistently everywhere, the padding still cannot hide: the pad share is gone
    everywhere = dict(padded, step_tokens=[16, 16], pad_share=0.0)
    assert definition_problems(everywhere) == [
        "no padding in unpacked batches: pad positions counted as tokens?"
    ]
