#!/usr/bin/env bash
# Build one toolchain's virtual environment from its lock file (called by `make setup`).
#   tools/setup_env.sh ENV TORCH     e.g. tools/setup_env.sh train cpu     (PYTHON=python3.12 to choose)
# It installs requirements/lock/py3.X/ENV-TORCH.txt, every package at its locked version with
# --no-deps: the set `make check-envs` resolved and checked in CI. The locks come from the pin files
# (requirements/ENV.txt, requirements/torch/ENV-TORCH.txt, ...; the list is style_tune/dev/lock_envs.py's
# ENVS): after editing one, `make lock`. The dev env is installed with pip and brings uv, which
# installs the others (from its cache, hard-linked: seconds for a rebuilt env).
# The env is ready only when its stamp .envs/ENV/.installed-TORCH exists: an interrupted build leaves
# no stamp, and the next run starts it again from scratch.
#   tools/setup_env.sh --check-python   only the Python check (make runs it before every env target)
set -euo pipefail
python=${PYTHON:-python3}
root=$(cd "$(dirname "$0")/.." && pwd)

# Before any pip work: xtuner 0.2.0 declares Requires-Python < 3.13, and the locks cover 3.10-3.12.
need="the environments need Python 3.10, 3.11 or 3.12 (xtuner 0.2.0: < 3.13): make setup PYTHON=python3.12"
if ! version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); then
  echo "setup: error: cannot run PYTHON=$python; $need" >&2
  exit 2
fi
case $version in
  3.10 | 3.11 | 3.12) ;;
  *) echo "setup: error: PYTHON=$python is Python $version; $need" >&2
     exit 2 ;;
esac
[[ $1 == --check-python ]] && exit 0
env_name=$1
torch=$2
env_dir=$root/.envs/$env_name
lock=$root/requirements/lock/py$version/$env_name-$torch.txt
if [[ ! -f $lock ]]; then
  echo "setup: error: no ${lock#"$root"/}: the $env_name env has no TORCH=$torch build (style_tune/dev/lock_envs.py's ENVS; eval-lmdeploy needs a CUDA GPU)" >&2
  exit 2
fi
uv=$root/.envs/dev/bin/uv
if [[ $env_name != dev && ! -x $uv ]]; then
  echo "setup: error: no $uv: build the dev env first (make env-dev)" >&2
  exit 2
fi

rm -rf "$env_dir"
echo "[setup] building .envs/$env_name (torch: $torch, Python $version) from ${lock#"$root"/} ..."
start=$(date +%s)
"$python" -m venv "$env_dir"
if [[ $env_name == dev ]]; then
  # This machine's pip config names optional local indexes; hide pip's notes about absent ones.
  "$env_dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$lock" \
    2> >(grep -v "^WARNING: Location 'file:" >&2)
else
  # uv reads no pip config: pass on pip's find-links (where a machine keeps wheels such as the CPU torch
  # build; elsewhere TORCH=cpu takes it from PyTorch's CPU index: UV_EXTRA_INDEX_URL, see docs/environments.md).
  links=()
  for dir in ${PIP_FIND_LINKS:-} $("$python" -m pip config get global.find-links 2>/dev/null || true); do
    [[ -d $dir ]] && links+=(--find-links "$dir")
  done
  "$uv" pip install --quiet --python "$env_dir/bin/python" --no-deps "${links[@]}" -r "$lock"
fi
# The project itself (style_tune and its subpackages), the ecosystem's way: an editable install of
# pyproject.toml without dependencies (the env's packages are the lock's).
if [[ $env_name == dev ]]; then
  "$env_dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e "$root" \
    2> >(grep -v "^WARNING: Location 'file:" >&2)
else
  "$uv" pip install --quiet --python "$env_dir/bin/python" --no-deps "${links[@]}" -e "$root"
fi
touch "$env_dir/.installed-$torch"
echo "[setup] .envs/$env_name ready in $(( $(date +%s) - start )) s ($(du -sh "$env_dir" | cut -f1))"
