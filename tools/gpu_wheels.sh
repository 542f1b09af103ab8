#!/usr/bin/env bash
# `make gpu-wheels`: download the wheels of tools/gpu_wheels.txt (Python 3.12, manylinux x86-64, no
# dependencies: each one is named there) into DIR (default .whl, ignored by git) for
# `tools/gpu_acceptance.sh part1|part2 OUT --device-stack` on a lent GPU machine without a package
# index, where a call carries at most 64 MiB with the working tree. Fails, in one line, when DIR holds
# a wheel the list does not name (two versions of a package stop the install there) or more than
# GPU_WHEELS_LIMIT_MIB (60) MiB in all.
#
#   tools/gpu_wheels.sh [DIR]        PYTHON= the interpreter whose pip downloads (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.whl}
list=tools/gpu_wheels.txt
limit_mib=${GPU_WHEELS_LIMIT_MIB:-60}
python=${PYTHON:-python3}

mapfile -t pins < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$list" | grep -v '^$')
mkdir -p "$dir"
# The lent machine: CPython 3.12 on x86-64 Linux (pip matches each manylinux tag exactly).
"$python" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d "$dir" "${pins[@]}"

normalize() { tr 'A-Z' 'a-z' | sed -E 's/[-_.]+/_/g'; }  # a wheel file name spells a project name so
expected=()
for pin in "${pins[@]}"; do expected+=("$(normalize <<<"${pin%%==*}")-${pin#*==}-"); done
strays=()
shopt -s nullglob
for wheel in "$dir"/*.whl; do
  name=$(basename "$wheel")
  stem=$(normalize <<<"${name%%-*}")-$(cut -d- -f2 <<<"$name")-
  [[ " ${expected[*]} " == *" $stem "* ]] || strays+=("$name")
done
if ((${#strays[@]})); then
  echo "gpu-wheels: $dir holds wheels that $list does not name (two versions of one package stop the install): ${strays[*]}; remove them" >&2
  exit 1
fi
bytes=$(du -sb "$dir" | cut -f1)
mib=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
if ((bytes > limit_mib * 1048576)); then
  echo "gpu-wheels: $dir is $mib MiB, over the $limit_mib MiB a device call can carry beside the working tree; shorten $list" >&2
  exit 1
fi
echo "gpu-wheels: ${#pins[@]} wheels, $mib MiB in $dir (limit $limit_mib MiB); carry it and run tools/gpu_acceptance.sh part1 OUT --device-stack there"
