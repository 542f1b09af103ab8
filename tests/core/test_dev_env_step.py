"""The dev env's smallest step of `make check-envs` (`make lint`), here rather than in `make test`'s
`check-envs SMOKE=untested`: tests/env_steps.py."""

from __future__ import annotations

from pathlib import Path

from env_steps import run_env_step


def test_the_dev_envs_step_of_check_envs_runs(tmp_path: Path) -> None:
    run_env_step("dev", tmp_path)
