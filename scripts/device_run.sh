#!/bin/bash
# Run the suite on a lent GPU machine (the `device` tool) and leave the results under $OUT.
# Usage there: bash scripts/device_run.sh NAME [pytest perf arguments...]
# Expects the wheels of shared/offline-gpu in .whl (deepspeed, bitsandbytes, transformers 4.43.4).
set -uo pipefail
name=${1:?usage: device_run.sh NAME [pytest args]}; shift
out=${OUT:-/tmp/out}; mkdir -p "$out"
source .whl/install.sh .whl || exit 1
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -m pytest perf -p no:cacheprovider --results "$out/$name.json" \
    --benchmark-json "$out/$name-benchmark.json" "$@"; } 2>&1 | tee "$out/$name.log"
