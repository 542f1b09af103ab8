#!/usr/bin/env bash
# The recipe on one NVIDIA GPU, in two parts of <= 5 minutes each: style_tune/dev/gpu_acceptance.py (--help)
# decides the steps, runs them and writes the report. A launcher only: it starts the module with the
# machine's Python (DEVICE_PYTHON, default python3; >= 3.10, standard library only), since a --device-stack
# machine has no env until the module builds them; OUT stays relative to where it was started.
#
#   tools/gpu_acceptance.sh part1|part2 [OUT] [--device-stack] [--dry-run]
repo=$(cd "$(dirname "$0")/.." && pwd) || exit 2
PYTHONPATH=$repo${PYTHONPATH:+:$PYTHONPATH} exec "${DEVICE_PYTHON:-python3}" -m style_tune.dev.gpu_acceptance "$@"
