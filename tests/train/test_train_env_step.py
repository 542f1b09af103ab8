"""The train env's smallest step of `make check-envs` (the tiny model built, `make split`, `make train` one
iteration), here rather than in `make test`'s `check-envs SMOKE=untested`: tests/env_steps.py."""

from __future__ import annotations

from pathlib import Path

from env_steps import run_env_step


def test_the_train_envs_step_of_check_envs_runs(tmp_path: Path) -> None:
    run_env_step("train", tmp_path)
    assert (tmp_path / "work" / "iter_1.pth").is_file()
