#!/usr/bin/env bash
# Build one toolchain's virtual environment from its lock file (called by `make setup`).
#   tools/setup_env.sh ENV            e.g. tools/setup_env.sh train
# It installs requirements/lock/py3.11/ENV.txt, every package at its locked version with --no-deps:
# the set `make check-envs` resolved, installed and ran in CI. One lock per env for CPU and GPU
# machines (a CUDA torch runs on a CPU). The locks come from the pin files (requirements/ENV.txt, ...;
# the list is style_tune/dev/lock_envs.py's ENVS): after editing one, `make lock`.
# Every env is Python 3.11, the one Python CI installs and tests: uv takes the machine's python3.11 or,
# where there is none, downloads a standalone 3.11 build (behind a firewall: UV_PYTHON_INSTALL_MIRROR).
# uv itself (the dev lock's version) is bootstrapped once into .envs/.uv with PYTHON's pip (any Python 3);
# it reads no pip configuration: packages come from PyPI (or UV_DEFAULT_INDEX), installed from uv's
# cache, hard-linked (seconds for a rebuilt env).
# The env is ready only when its stamp .envs/ENV/.installed exists, written after the import check
# (`python -m style_tune.dev.lock_envs imports ENV` in the new env): an interrupted or broken build
# leaves no stamp, and the next run starts it again from scratch.
#   LOCK=FILE ENV_DIR=DIR tools/setup_env.sh ENV    another lock into another directory (the guard's test)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
py_version=3.11

env_name=${1:?usage: tools/setup_env.sh ENV}
env_dir=${ENV_DIR:-$root/.envs/$env_name}
lock=${LOCK:-$root/requirements/lock/py$py_version/$env_name.txt}
if [[ ! -f $lock ]]; then
  echo "setup: error: no ${lock#"$root"/}: environments are style_tune/dev/lock_envs.py's ENVS" >&2
  exit 2
fi

uv=$root/.envs/.uv/bin/uv
uv_pin=$(grep -m1 -E '^uv==' "$root/requirements/lock/py$py_version/dev.txt")
if [[ ! -x $uv ]] || [[ "uv==$("$uv" --version | cut -d' ' -f2)" != "$uv_pin" ]]; then
  echo "[setup] bootstrapping $uv_pin into .envs/.uv with $python's pip ..."
  if ! "$python" -m pip --version >/dev/null 2>&1; then
    echo "setup: error: PYTHON=$python cannot run pip; uv is bootstrapped with any Python 3 that has pip: make setup PYTHON=/path/to/python3" >&2
    exit 2
  fi
  rm -rf "$root/.envs/.uv"
  "$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target "$root/.envs/.uv.tmp" "$uv_pin"
  mv "$root/.envs/.uv.tmp" "$root/.envs/.uv"
fi

rm -rf "$env_dir"
echo "[setup] building ${env_dir#"$root"/} (Python $py_version) from ${lock#"$root"/} ..."
start=$(date +%s)
"$uv" venv --quiet --python "$py_version" "$env_dir"
# Bytecode compiled at install for the envs whose steps and suites start many processes (train, eval,
# deploy; uv's own UV_COMPILE_BYTECODE overrides it either way): Python compiles every module it imports
# that has no .pyc, and where it may not write one (PYTHONDONTWRITEBYTECODE=1, as on the CI machine; a
# read-only env) it does so in every process. Measured on the 2-core machine: importing transformers'
# AutoModel 14.3 s -> 5.5 s, peft 17.1 -> 7.3 s. Cold, compiling cost train 36 s, eval 10 s, deploy 21 s,
# eval-lmdeploy 55 s and webui 12 s (those two start few processes: not compiled). docs/environments.md.
case $env_name in train|eval|deploy) compile=1 ;; *) compile=0 ;; esac
export UV_COMPILE_BYTECODE=${UV_COMPILE_BYTECODE:-$compile}
"$uv" pip install --quiet --python "$env_dir/bin/python" --no-deps -r "$lock"
# The project itself (style_tune and its subpackages), the ecosystem's way: an editable install of
# pyproject.toml without dependencies (the env's packages are the lock's).
"$uv" pip install --quiet --python "$env_dir/bin/python" --no-deps -e "$root"
# A setup that prints "ready" works: the env imports its toolchain's packages and the project's modules.
# (The packages' import-time chatter is kept out of the way; a failure prints one line per import.)
if ! imports=$(cd "$root" && "$env_dir/bin/python" -m style_tune.dev.lock_envs imports "$env_name" 2>&1); then
  grep '^check-envs: ' <<<"$imports" >&2 || echo "$imports" >&2
  echo "setup: error: ${env_dir#"$root"/} does not import what it needs (above); it is left unstamped" >&2
  exit 1
fi
touch "$env_dir/.installed"
echo "[setup] ${env_dir#"$root"/} ready in $(( $(date +%s) - start )) s ($(du -sh "$env_dir" | cut -f1))"
