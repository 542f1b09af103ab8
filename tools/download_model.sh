#!/usr/bin/env bash
# `make download`: one model from modelscope into a local directory, with the train env's modelscope.
#   tools/download_model.sh MODEL_ID DIR        e.g. Qwen/Qwen2.5-1.5B-Instruct models/Qwen2.5-1.5B-Instruct
# A complete local copy (config, tokenizer and weights present) is not downloaded again. The files
# land in a temporary directory first, which is renamed when modelscope succeeded.
set -euo pipefail
model_id=$1
dir=${2%/}
root=$(cd "$(dirname "$0")/.." && pwd)
modelscope=$root/.envs/train/bin/modelscope
timeout_s=${DOWNLOAD_PROBE_TIMEOUT:-20}

complete() {
  [[ -f $1/config.json && -f $1/tokenizer_config.json ]] && compgen -G "$1/*.safetensors" >/dev/null
}
if complete "$dir"; then
  echo "download: $dir is complete; not downloading $model_id again"
  exit 0
fi
# modelscope lists the repository over the network before anything else; offline it retries for a
# long while. Probe with a short timeout so an offline machine gets a clear answer in seconds.
if ! timeout "$timeout_s" "$root/.envs/train/bin/python" - "$model_id" <<'PY' >/dev/null 2>&1; then
import sys
from modelscope.hub.api import HubApi
HubApi().get_model_files(sys.argv[1])
PY
  echo "download: error: cannot reach modelscope to fetch $model_id (offline?)." >&2
  echo "download: copy the model files into $dir by hand, or run \`make download\` where modelscope.cn is reachable;" >&2
  echo "download: \`make demo\` needs no download (it builds a tiny stand-in model)." >&2
  exit 1
fi
mkdir -p "$(dirname "$dir")"
tmp=$(mktemp -d "$(dirname "$dir")/.$(basename "$dir").tmp-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$modelscope" download "$model_id" --local-dir "$tmp"  # modelscope-hub 0.5: --model/--local_dir are deprecated
complete "$tmp" || { echo "download: error: $model_id downloaded incompletely into $tmp" >&2; exit 1; }
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
echo "download: $model_id -> $dir"
