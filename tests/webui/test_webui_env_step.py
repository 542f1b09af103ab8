"""The webui env's smallest step of `make check-envs` (the rating page built against a live CPU server), in
this process, here rather than in `make test`'s `check-envs SMOKE=untested`: tests/env_steps.py."""

from __future__ import annotations

from pathlib import Path

from env_steps import run_env_step


def test_the_webui_envs_step_of_check_envs_runs(tmp_path: Path, tiny_model_dir: Path) -> None:
    run_env_step("webui", tmp_path, tiny=tiny_model_dir, split=True, in_process=True)
