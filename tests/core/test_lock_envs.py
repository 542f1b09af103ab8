"""style_tune/dev/lock_envs.py's CUDA coherence check on lock files (no resolver, no network).

The resolver side (every env resolves, locks are fresh) is `make check-envs`, which `make test` runs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures" / "locks"
lock_envs = importlib.import_module("style_tune.dev.lock_envs")


def lock(*entries: tuple[str, str | tuple[str, ...]]) -> str:
    """uv-style lock text from (name==version, via) pairs."""
    lines = []
    for pin, via in entries:
        lines.append(pin)
        via = (via,) if isinstance(via, str) else via
        lines += [f"    # via {via[0]}"] if len(via) == 1 else ["    # via", *(f"    #   {v}" for v in via)]
    return "\n".join(lines) + "\n"


def test_the_old_deploy_pins_mix_cuda_12_and_13() -> None:
    """Finding 1: lmdeploy 0.18.0 with its own pins (this repository before the fix) resolved to torch
    2.12.1 on CUDA 13 while lmdeploy's TurboMind needs CUDA 12."""
    problems = lock_envs.cuda_problems((FIXTURES / "deploy-cuda-eaf28d8.txt").read_text())
    assert any(p.startswith("mixes CUDA majors: CUDA 12: ") and "CUDA 13: " in p for p in problems), problems
    assert "lmdeploy needs CUDA 12 wheels but torch is CUDA 13" in problems


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "requirements" / "lock").glob("py*/*.txt")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_locks_are_coherent(path: Path) -> None:
    assert lock_envs.cuda_problems(path.read_text()) == []


def test_cuda_torch_locks_are_cuda_12() -> None:
    for path in (REPO_ROOT / "requirements" / "lock").glob("py*/*-cuda.txt"):
        pins = lock_envs.parse_lock(path.read_text())
        majors = {lock_envs.cuda_major(p) for p in pins} - {None}
        if any(p.name == "torch" for p in pins):
            assert majors == {12}, (path, majors)


def test_cpu_torch_builds_have_no_cuda_wheels() -> None:
    for env in ("eval", "deploy"):
        for path in (REPO_ROOT / "requirements" / "lock").glob(f"py*/{env}-cpu.txt"):
            names = [p.name for p in lock_envs.parse_lock(path.read_text())]
            assert "torch" in names
            assert not [n for n in names if n.startswith(("nvidia-", "cuda-")) or n == "triton"], path


def test_a_compiled_extension_on_another_major_is_named() -> None:
    text = lock(
        ("torch==2.9.0", "-r requirements/x.txt"),
        ("nvidia-cuda-runtime==13.0.96", "torch"),
        ("someext==1.0", "-r requirements/x.txt"),
        ("nvidia-cublas-cu12==12.8.4.1", "someext"),
    )
    problems = lock_envs.cuda_problems(text)
    assert "someext needs CUDA 12 wheels but torch is CUDA 13" in problems


def test_bitsandbytes_kernels_must_cover_torchs_cuda() -> None:
    good = lock(("torch==2.5.1", "-r r.txt"), ("nvidia-cuda-runtime-cu12==12.4.127", "torch"),
                ("bitsandbytes==0.45.0", "-r r.txt"))
    bad = good.replace("12.4.127", "12.8.90")
    assert lock_envs.cuda_problems(good) == []
    assert lock_envs.cuda_problems(bad) == [
        "bitsandbytes==0.45.0 has kernels for CUDA 11.7-12.6 only, torch brings CUDA 12.8.90"]


def test_build_tags_count_as_cuda_majors() -> None:
    text = lock(("torch==2.5.1+cu121", "-r r.txt"), ("torchvision==0.20.1+cu124", "-r r.txt"))
    assert lock_envs.cuda_problems(text) == []
    text = lock(("torch==2.5.1+cu121", "-r r.txt"), ("torchvision==0.20.1+cu118", "-r r.txt"))
    assert any(p.startswith("mixes CUDA majors: CUDA 11: torchvision") for p in lock_envs.cuda_problems(text))


def test_resolver_errors_become_one_line() -> None:
    err = ("error: No solution found when resolving dependencies\n"  # uv 0.13.8's layout
           "  cause: Because lmdeploy==0.18.0 depends on triton>=3.4.0 and torch==2.5.1 depends on\n"
           "         triton==3.1.0, we can conclude that your requirements are unsatisfiable.\n")
    line = lock_envs.one_line(err)
    assert "\n" not in line
    assert line.startswith("Because lmdeploy==0.18.0 depends on triton>=3.4.0 and torch==2.5.1")
