"""Each env's smallest step of `make check-envs` (style_tune/dev/lock_envs.py: SMOKE), run by the env's suite.

`make test` runs `make check-envs SMOKE=untested`, which runs the steps of the envs that have no suite
(eval-lmdeploy, mutation) and leaves the others to their suite: each suite has one test that calls this
with the session's tiny model, so the step's own code runs (a step that breaks fails its suite) without
building the model again. The train env's step builds its own model and split: the others read them.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from style_tune import REPO_ROOT
from style_tune.dev.lock_envs import run_smoke


def run_env_step(env: str, scratch: Path, *, tiny: Path | None = None, split: bool = False,
                 in_process: bool = False) -> None:
    """Run ENV's smoke steps in SCRATCH (the guard's {tmp}): TINY as {tmp}/tiny, `make split` (label mode)
    into {tmp}/split when SPLIT, as the train env's step leaves them; in_process: see run_smoke."""
    if tiny is not None:
        (scratch / "tiny").symlink_to(tiny, target_is_directory=True)
    if split:
        split_dir = scratch / "split"
        made = subprocess.run(["make", "-s", "split", "MODE=label", f"SPLIT_DIR={split_dir}"], cwd=REPO_ROOT,
                              capture_output=True, text=True, env={**os.environ, "MAKEFLAGS": ""})
        assert made.returncode == 0, made.stderr
    problem = run_smoke(env, scratch, in_process=in_process)
    assert problem is None, problem
