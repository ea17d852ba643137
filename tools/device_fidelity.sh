#!/bin/bash
# Fidelity on a host whose speed drifts (the lent H200's CPU moved 1.8x within seconds): for
# accel_bf16 and ds_fp16 (or $BACKENDS, space-separated), tools/fidelity.py --interleave alternates
# the article's own loop with the suite's own worker, cycle by cycle, on the same model, so that
# both see the same drift.
# Usage on the GPU machine: bash tools/device_fidelity.sh MODEL [BATCH_SIZES] [CYCLES] [fidelity.py flags]
#   e.g. bash tools/device_fidelity.sh synthetic:bloom-7b1 1,8 10
#        bash tools/device_fidelity.sh synthetic:bloom-7b1 8 30 --control   (A/A: two suite workers)
#        BACKENDS=ds_fp16 bash tools/device_fidelity.sh synthetic:bloom-7b1 1,8 30 --cpus 4
# Leaves under $OUT: fidelity.jsonl (one line per backend and batch size), fidelity.log.
# Exit 1 unless every backend and batch size was measured and its verdict is WITHIN 5% (the whole
# host-adjusted paired interval of the ratio inside; tools/fidelity.py). On the lent H200, 30
# pairs gave host-adjusted intervals 10-22% wide; at the spread of the best cells, two identical
# loops come out WITHIN about 70% of the time with 100 pairs (README, "Roofline and fidelity").
set -uo pipefail
model=${1:?usage: device_fidelity.sh MODEL [BATCH_SIZES] [CYCLES] [fidelity.py flags]}; sizes=${2:-1,8}; cycles=${3:-10}
shift $(( $# < 3 ? $# : 3 ))
out=${OUT:-/tmp/out}; mkdir -p "$out"
source .whl/install.sh .whl || exit 1
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
path=$(python3 -c "import sys; from perf import settings, synthetic; m = sys.argv[1]
print(synthetic.ensure(m, 900) if m.startswith('synthetic:') else settings.resolve_model(m)[0])" "$model") || exit 1
: > "$out/fidelity.jsonl"
backends=${BACKENDS:-accel_bf16 ds_fp16}
for backend in $backends; do
  pythonpath=${PYTHONPATH:-}; [ "$backend" = ds_fp16 ] && pythonpath=$PERF_T4_PYTHONPATH
  PYTHONPATH=$pythonpath python3 tools/fidelity.py --backend "$backend" --model "$path" --batch-sizes "$sizes" \
      --cycles "$cycles" --interleave "$@" | grep '^{"backend"' >> "$out/fidelity.jsonl"
done 2>&1 | tee "$out/fidelity.log"
cat "$out/fidelity.jsonl"
python3 -c "import json, sys; v = [json.loads(line)['verdict'] for line in open(sys.argv[1])]
sys.exit(len(v) != int(sys.argv[3]) * len(sys.argv[2].split(',')) or any(x != 'WITHIN' for x in v))" \
  "$out/fidelity.jsonl" "$sizes" "$(wc -w <<< "$backends")"
