"""The deploy env's smallest steps of `make check-envs` (lmdeploy renders the chat template and its CLI
parses; the CPU server answers the openai client), in this process, here rather than in `make test`'s
`check-envs SMOKE=untested`: tests/env_steps.py."""

from __future__ import annotations

from pathlib import Path

from env_steps import run_env_step


def test_the_deploy_envs_steps_of_check_envs_run(tmp_path: Path, tiny_model_dir: Path) -> None:
    run_env_step("deploy", tmp_path, tiny=tiny_model_dir, in_process=True)
