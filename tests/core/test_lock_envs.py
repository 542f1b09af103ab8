"""style_tune/dev/lock_envs.py: the CUDA coherence check on lock files, the one-Python rule, and the
guard's import check failing on a broken lock (installed from uv's cache, as tools/setup_env.sh does).

The resolver side (every env resolves from PyPI, locks are fresh) is `make check-envs`, which `make test`
runs first; each env's smallest step runs there too (envs without a suite) or in its suite
(SUITE/test_ENV_env_step.py).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
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


def test_torch_locks_are_cuda_12() -> None:
    """One lock per env for CPU and GPU machines: every torch in them is a CUDA 12 build."""
    locks = sorted((REPO_ROOT / "requirements" / "lock").glob("py*/*.txt"))
    with_torch = 0
    for path in locks:
        pins = lock_envs.parse_lock(path.read_text())
        majors = {lock_envs.cuda_major(p) for p in pins} - {None}
        if any(p.name == "torch" for p in pins):
            with_torch += 1
            assert majors == {12}, (path, majors)
            assert not [p for p in pins if p.name == "torch" and "+" in p.version], path  # PyPI's own build
    assert with_torch == 4  # train, eval, eval-lmdeploy, deploy


def test_one_lock_per_env_for_the_one_python() -> None:
    """Offered = tested: one Python (3.11), a lock per env in ENVS, and make setup builds each of them."""
    locks = sorted(p.relative_to(REPO_ROOT / "requirements" / "lock")
                   for p in (REPO_ROOT / "requirements" / "lock").rglob("*.txt"))
    assert [str(p) for p in locks] == sorted(f"py3.11/{env}.txt" for env in lock_envs.ENVS)
    makefile = (REPO_ROOT / "Makefile").read_text()
    setup_envs = re.search(r"^SETUP_ENVS := (.+)$", makefile, re.M)[1].split()
    assert sorted([*setup_envs, "mutation"]) == sorted(lock_envs.ENVS)
    assert 'requires-python = ">=3.11,<3.12"' in (REPO_ROOT / "pyproject.toml").read_text()
    assert "py_version=3.11" in (REPO_ROOT / "tools" / "setup_env.sh").read_text()


@pytest.mark.parametrize("env", sorted(lock_envs.ENVS))
def test_built_envs_run_python_3_11(env: str) -> None:
    """Each env `make test` built (it builds all before tests/core runs) is the Python CI tests."""
    cfg = REPO_ROOT / ".envs" / env / "pyvenv.cfg"
    if not cfg.exists():
        pytest.skip(f".envs/{env} is not built (make env-{env})")
    version = re.search(r"^version(?:_info)? = (\S+)$", cfg.read_text(), re.M)[1]
    assert version.startswith("3.11."), (env, version)


def test_the_import_list_names_only_modules_of_the_project_or_its_locks() -> None:
    for env, spec in lock_envs.ENVS.items():
        assert spec.imports, env
        project = [m for m in spec.imports if m.startswith(("style_tune.", "benchmarks."))]
        assert project, f"{env}: no project module in its import list"
        for module in project:
            path = REPO_ROOT / Path(*module.split("."))
            assert path.with_suffix(".py").exists() or (path / "__init__.py").exists(), (env, module)


def test_the_guard_fails_on_the_old_eval_cuda_lock(tmp_path: Path) -> None:
    """Finding 1: the eval lock before the fix pinned datasets 2.14.4 beside pyarrow 25. Installed as a
    user's `make setup` installs a lock, the env imports nothing of OpenCompass and is left unstamped."""
    env_dir = tmp_path / "eval"
    proc = subprocess.run(["tools/setup_env.sh", "eval"], cwd=REPO_ROOT, capture_output=True, text=True,
                          env={**os.environ, "LOCK": str(FIXTURES / "eval-cuda-ad80818.txt"),
                               "ENV_DIR": str(env_dir),
                               "UV_COMPILE_BYTECODE": "0"},  # uv's knob: bytecode is not what is tested
                          timeout=600)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    assert ("check-envs: eval: import datasets: AttributeError: module 'pyarrow' has no attribute "
            "'PyExtensionType'") in lines, proc.stderr
    assert lines[-1] == "setup: error: " + str(env_dir) + " does not import what it needs (above); " \
        "it is left unstamped"
    assert not (env_dir / ".installed").exists() and "ready" not in proc.stdout


def test_a_stale_lock_names_the_pins_that_differ() -> None:
    old = lock(("torch==2.13.0+cpu", "-r r.txt"), ("numpy==1.26.4", "torch"))
    new = lock(("torch==2.5.1", "-r r.txt"), ("numpy==1.26.4", "torch"), ("triton==3.1.0", "torch"))
    assert lock_envs.pin_changes(old, new) == "torch 2.13.0+cpu -> 2.5.1; triton (none) -> 3.1.0"


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


def test_imports_are_checked_again_only_after_a_change(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """check-envs repeats an env's import check only when a module of the project is newer than the
    env's stamp (setup writes it right after its own import check)."""
    for folder in ("style_tune", "benchmarks"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "m.py").write_text("")
    (tmp_path / ".envs" / "eval").mkdir(parents=True)
    stamp = tmp_path / ".envs" / "eval" / ".installed"
    monkeypatch.setattr(lock_envs, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(lock_envs, "ENVS_DIR", tmp_path / ".envs")
    assert not lock_envs.imports_checked_since_last_change("eval")  # not built
    stamp.touch()
    os.utime(stamp, (2_000_000_000, 2_000_000_000))
    assert lock_envs.imports_checked_since_last_change("eval")
    os.utime(tmp_path / "benchmarks" / "m.py", (2_000_000_001, 2_000_000_001))  # edited after the build
    assert not lock_envs.imports_checked_since_last_change("eval")


def test_every_envs_smallest_step_runs_in_make_test() -> None:
    """`make test` runs `check-envs SMOKE=untested`, which leaves an env that has a suite to it: that suite
    must run the env's SMOKE steps (tests/env_steps.py), or a step could break with CI green."""
    recipe = re.search(r"^test:.*\n((?:\t.*\n)+)", (REPO_ROOT / "Makefile").read_text(encoding="utf-8"), re.M)
    assert recipe and "check-envs SMOKE=untested" in recipe.group(1)
    for env, spec in lock_envs.ENVS.items():
        if spec.suite is None:
            continue
        assert f"-m pytest {spec.suite}" in recipe.group(1), env
        test = REPO_ROOT / spec.suite / f"test_{env}_env_step.py"
        assert test.is_file() and f'run_env_step("{env}"' in test.read_text(encoding="utf-8"), env
