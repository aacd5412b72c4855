#!/usr/bin/env bash
# GPU throughput check with an OpenFlamingo-9B-shaped model (random weights, bf16, no downloads).
# On a GPU machine:  benchmarks/gpu_check.sh [--output gpu.json]
# Scaled down on CPU: benchmarks/gpu_check.sh --small
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
exec "$PY" benchmarks/gpu_check.py "$@"
