"""The GPU check's `serve-request` action (style_tune/dev/gpu_acceptance.py), run here as the check runs it
on a GPU machine, against `make serve` on the CPU (the CPU server; lmdeploy on a GPU): a wrong key is
refused, the key gets a reply, another model name gets a 404."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from style_tune import REPO_ROOT
from style_tune.dev import gpu_acceptance as ga


def test_serve_request_refuses_a_wrong_key_and_answers_the_key(tmp_path: Path, tiny_model_dir: Path) -> None:
    log = tmp_path / "serve-server.log"
    command = [sys.executable, "-m", ga.MODULE, "serve-request", str(tiny_model_dir), str(log), "240", "4"]
    proc = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=360)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("make serve: ready after ")
    assert "a wrong key: AuthenticationError 401" in lines
    replies = [line for line in lines if line.startswith("reply: ")]
    assert len(replies) == 1 and replies[0].endswith("(finish_reason length)"), lines  # 4 tokens: never ends
    assert "another model name: NotFoundError 404" in lines
    assert log.is_file()
