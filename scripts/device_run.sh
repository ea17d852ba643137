#!/bin/bash
# Run the suite on a lent GPU machine (the `device` tool); results and log go to $RUNS (default
# /tmp/runs), which a command tars into $OUT at its end (only 8 files come back from $OUT).
# Usage there: bash scripts/device_run.sh NAME [pytest perf arguments...]
#   with PERF_INJECT=... the run takes scripts/inject/sitecustomize.py's slowdown (its docstring).
# Expects the wheels of ../shared/offline-gpu in .whl (deepspeed, bitsandbytes, transformers 4.43.4).
set -uo pipefail
name=${1:?usage: device_run.sh NAME [pytest args]}; shift
runs=${RUNS:-/tmp/runs}; mkdir -p "$runs"
source .whl/install.sh .whl || exit 1
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
[ -n "${PERF_INJECT:-}" ] && export PYTHONPATH="$PWD/scripts/inject:$PYTHONPATH"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; echo "PERF_INJECT=${PERF_INJECT:-}"
python3 -m pytest perf -p no:cacheprovider --benchmark-disable --results "$runs/$name.json" "$@"; } 2>&1 | tee "$runs/$name.log"
