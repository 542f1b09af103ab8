"""The eval env's smallest step of `make check-envs` (`make eval-style` on 2 prompts, the tiny model as base
and tuned), here rather than in `make test`'s `check-envs SMOKE=untested`: tests/env_steps.py."""

from __future__ import annotations

from pathlib import Path

from env_steps import run_env_step


def test_the_eval_envs_step_of_check_envs_runs(tmp_path: Path, tiny_model_dir: Path) -> None:
    run_env_step("eval", tmp_path, tiny=tiny_model_dir, split=True)
    assert (tmp_path / "style_eval" / "report.md").is_file()
