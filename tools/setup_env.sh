#!/usr/bin/env bash
# Build one toolchain's virtual environment from its pin files (called by `make setup`).
#   tools/setup_env.sh ENV TORCH     e.g. tools/setup_env.sh train cpu
# Pins, one place per environment:
#   requirements/torch/ENV-TORCH.txt  torch build for this machine (cpu or cuda), if the env needs torch
#   requirements/ENV.txt              the toolchain and its pinned dependencies
#   requirements/ENV-nodeps.txt       packages installed with --no-deps (their deps are in ENV.txt)
#   requirements/test.txt             pytest, in every env
# The env is ready only when its stamp .envs/ENV/.installed-TORCH exists: an interrupted build leaves
# no stamp, and the next run starts it again from scratch.
set -euo pipefail
env_name=$1
torch=$2
root=$(cd "$(dirname "$0")/.." && pwd)
env_dir=$root/.envs/$env_name
req=$root/requirements
python=${PYTHON:-python3}

rm -rf "$env_dir"
echo "[setup] building .envs/$env_name (torch: $torch) ..."
start=$(date +%s)
"$python" -m venv "$env_dir"
pip=("$env_dir/bin/python" -m pip install --quiet --disable-pip-version-check)
# This machine's pip config names optional local indexes; hide pip's notes about absent ones.
exec 2> >(grep -v "^WARNING: Location 'file:" >&2)
args=(-r "$req/test.txt")
[[ -f $req/torch/$env_name-$torch.txt ]] && args+=(-r "$req/torch/$env_name-$torch.txt")
# lmdeploy pins a CUDA torch and has no CPU engine: on CPU machines its toolchain file is installed
# without dependencies, beside what requirements/torch/deploy-cpu.txt lists (see there).
if [[ $env_name == deploy && $torch == cpu ]]; then
  "${pip[@]}" "${args[@]}"
  args=(--no-deps)
fi
args+=(-r "$req/$env_name.txt")
"${pip[@]}" "${args[@]}"
if [[ -f $req/$env_name-nodeps.txt ]]; then
  "${pip[@]}" --no-deps -r "$req/$env_name-nodeps.txt"
fi
# The project's own package (style_tune: the shared prompt definitions), importable from the env.
"$env_dir/bin/python" - "$root" <<'PY'
import sys, sysconfig, pathlib
site = pathlib.Path(sysconfig.get_paths()["purelib"])
(site / "style_tune_repo.pth").write_text(sys.argv[1] + "\n")
PY
touch "$env_dir/.installed-$torch"
echo "[setup] .envs/$env_name ready in $(( $(date +%s) - start )) s ($(du -sh "$env_dir" | cut -f1))"
