#!/bin/bash
# Fidelity on a host whose speed drifts (the lent H200's CPU moved 2x within a minute): alternate
# the suite and tools/fidelity.py (the article's own loop) on the same model, ROUNDS times, so that
# each ratio comes with the host probe's ratio and rounds on a steady host can be told apart.
# Usage on the GPU machine: bash tools/device_fidelity.sh MODEL [ROUNDS] [BATCH_SIZES]
#   e.g. bash tools/device_fidelity.sh synthetic:bloom-7b1 3 1,8
# Leaves under $OUT: fid-suite-R.json per round, fidelity.jsonl (one line per backend, batch size
# and round), fidelity.log. Exit 1 when a ratio is outside 5% or none was measured.
set -uo pipefail
model=${1:?usage: device_fidelity.sh MODEL [ROUNDS] [BATCH_SIZES]}; rounds=${2:-3}; sizes=${3:-1,8}
out=${OUT:-/tmp/out}; mkdir -p "$out"
source .whl/install.sh .whl || exit 1
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
path=$(python3 -c "import sys; from perf import settings, synthetic; m = sys.argv[1]
print(synthetic.ensure(m, 900) if m.startswith('synthetic:') else settings.resolve_model(m)[0])" "$model") || exit 1
: > "$out/fidelity.jsonl"
for round in $(seq "$rounds"); do
  python3 -m pytest perf -p no:cacheprovider -q --model "$model" --batch-sizes "$sizes" \
      -k "ms_per_token and (accel_bf16 or ds_fp16)" --results "$out/fid-suite-$round.json"
  for backend in accel_bf16 ds_fp16; do
    pythonpath=${PYTHONPATH:-}; [ "$backend" = ds_fp16 ] && pythonpath=$PERF_T4_PYTHONPATH
    PYTHONPATH=$pythonpath python3 tools/fidelity.py --backend "$backend" --model "$path" --batch-sizes "$sizes" \
        --compare "$out/fid-suite-$round.json" | grep '^{"backend"' | sed "s/^{/{\"round\": $round, /" >> "$out/fidelity.jsonl"
  done
done 2>&1 | tee "$out/fidelity.log"
cat "$out/fidelity.jsonl"
# Exit 1 when a round's ratio is outside 5% (read the host ratios before blaming the suite).
python3 -c "import json, sys; r = [json.loads(line)['ratio'] for line in open(sys.argv[1])]
sys.exit(not r or any(abs(x - 1) > 0.05 for x in r))" "$out/fidelity.jsonl"
