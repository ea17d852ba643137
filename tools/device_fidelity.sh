#!/bin/bash
# Fidelity on a host whose speed drifts (the lent H200's CPU moved 1.8x within seconds): for
# accel_bf16 and ds_fp16 (or $BACKENDS, space-separated), tools/fidelity.py --interleave alternates
# the article's own loop with the suite's own worker, cycle by cycle, on the same model, so that
# both see the same drift. Both sides run on CPU $CPUS (default 4; CPUS= leaves them to the
# scheduler): on the H200, pinned to one core (a later session than the unpinned runs), a pair's
# two cycles correlated at 0.4-0.7 instead of 0.0-0.3 (README, "Roofline and fidelity").
# Usage on the GPU machine: bash tools/device_fidelity.sh MODEL [BATCH_SIZES] [CYCLES] [fidelity.py flags]
#   e.g. bash tools/device_fidelity.sh synthetic:bloom-7b1 1,8 50
#        bash tools/device_fidelity.sh synthetic:bloom-7b1 8 50 --control   (A/A: two suite workers)
#        bash tools/device_fidelity.sh synthetic:bloom-7b1 8 50 --control here   (the worker's code in-process)
#        BACKENDS=ds_fp16 CPUS=4,5 bash tools/device_fidelity.sh synthetic:bloom-7b1 1,8 50
# Leaves under $OUT: fidelity.jsonl (one line per backend and batch size), fidelity.log (what else
# the tools printed, stderr first), worker-logs/ (the suite's workers' stderr). Under `timeout`
# (TERM or INT), the cell being measured is still judged from the whole pairs it has
# ("interrupted": true), and no further backend starts.
# Exit 1 unless every backend and batch size was measured to the end and its verdict is WITHIN 5%
# (the whole host-adjusted paired interval of the ratio inside; tools/fidelity.py).
set -uo pipefail
model=${1:?usage: device_fidelity.sh MODEL [BATCH_SIZES] [CYCLES] [fidelity.py flags]}; sizes=${2:-1,8}; cycles=${3:-10}
shift $(( $# < 3 ? $# : 3 ))
out=${OUT:-/tmp/out}; mkdir -p "$out"
cpus=${CPUS-4}
if [ -n "$cpus" ] && ! python3 -c "import sys; from perf.launcher import cpu_set
try: cpu_set(sys.argv[1])
except ValueError as exc: sys.exit(f'device_fidelity.sh: CPUS={sys.argv[1]} (default 4): {exc}; or CPUS= to leave both sides to the scheduler')" "$cpus"; then
  exit 2
fi
stopped=; trap 'stopped=1' INT TERM  # a time limit's signal: fidelity.py judges the cell it is on; start no other
source .whl/install.sh .whl || exit 1
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
path=$(python3 -c "import sys; from perf import settings, synthetic; m = sys.argv[1]
print(synthetic.ensure(m, 900) if m.startswith('synthetic:') else settings.resolve_model(m)[0])" "$model") || exit 1
: > "$out/fidelity.jsonl"; : > "$out/fidelity.log"
backends=${BACKENDS:-accel_bf16 ds_fp16}
for backend in $backends; do
  [ -n "$stopped" ] && break
  pythonpath=${PYTHONPATH:-}
  if [ "$backend" = ds_fp16 ]; then
    pythonpath=$PERF_T4_PYTHONPATH
    # DeepSpeed compiles its inference kernels on first use: do it on every core, not the pinned one.
    PYTHONPATH=$pythonpath python3 -c "from deepspeed.ops.op_builder import InferenceBuilder; InferenceBuilder().load()" \
        >> "$out/fidelity.log" 2>&1 || echo "device_fidelity.sh: building DeepSpeed's inference kernels failed" >&2
  fi
  [ -n "$stopped" ] && break
  # No pipe: a time limit's signal reaches the whole process group, and a reader killed by it
  # would lose the interrupted cell's line.
  PYTHONPATH=$pythonpath python3 tools/fidelity.py --backend "$backend" --model "$path" --batch-sizes "$sizes" \
      --cycles "$cycles" --interleave ${cpus:+--cpus "$cpus"} --worker-logs "$out/worker-logs" "$@" > "$out/fidelity-$backend.out" 2>> "$out/fidelity.log"
  grep '^{"backend"' "$out/fidelity-$backend.out" >> "$out/fidelity.jsonl"
  grep -v '^{"backend"' "$out/fidelity-$backend.out" >> "$out/fidelity.log"; rm -f "$out/fidelity-$backend.out"
done
[ -n "$stopped" ] && echo "device_fidelity.sh: stopped by a signal; what was measured is below" >&2
tail -n 5 "$out/fidelity.log"
cat "$out/fidelity.jsonl"
[ -n "$stopped" ] && exit 1
python3 -c "import json, sys; lines = [json.loads(line) for line in open(sys.argv[1])]
sys.exit(len(lines) != int(sys.argv[3]) * len(sys.argv[2].split(','))
         or any(x['verdict'] != 'WITHIN' or x.get('interrupted') for x in lines))" \
  "$out/fidelity.jsonl" "$sizes" "$(wc -w <<< "$backends")"
