#!/bin/bash
# A baseline matrix over several device calls (the `device` tool; one call <= 10 minutes):
# processes P1 and P2 record, P3 is the same code judged against P1 pooled with P2.
# Usage there: BUDGET=540 bash scripts/device_matrix.sh JOB...   JOB = PHASE:BACKEND[@SIZES], e.g. P1:ds_fp16
# or P1:ds_fp16@128,256 (batch sizes other than $BS: their own files, their own entries in the store).
# Each job is one pytest process (-k "test_ms_per_token and BACKEND", $BS on $MODEL) writing
# $RUNS/PHASE-BACKEND[@SIZES].json and .log (G: G<G_N>-BACKEND...); a job already done (its results file there, or carried in
# $CARRIED from an earlier machine with the same GPU, with a finished cell for each of its batch sizes) is skipped, one that would not fit in what is left of BUDGET
# (seconds: EST_START, plus EST_<backend> for each of its batch sizes) is not started. Everything in $RUNS is tarred into $OUT at the end.
# P3:BACKEND[@SIZES] first records P1-BACKEND[@SIZES].json (else P1-BACKEND.json) and pools P2's into /tmp/store (--force:
# the same code, a shared host) and runs with --require-baseline against it; F:BACKEND and
# G:BACKEND the same at bs 1 and 8 (or @SIZES), with 10% more Python work a step (F) or one more GEMM of
# G_N x G_N a step (G). What a GEMM costs is cuBLAS's choice of kernel, not N^3: on the H200 (7b1, bs 1
# and 8) 2200 added 0.04 ms a step (+0.6-0.7%), 2800 0.06 ms (+1.0-1.2%), both an sm90 nvjet kernel, and
# 3300 0.37 ms (+5.7-7.0%), an sm80 cutlass one (docs/notes/2026-12-06-h200-host-work.md).
# Wheels: ../shared/offline-gpu/fetch-wheels.sh into .whl (carry: [".whl"]); bitsandbytes' 43 MB wheel
# fits the 64 MiB a call carries once trimmed to its CUDA 13 libraries (7 MB), in .whl/main:
#   zip -d bitsandbytes-0.50.2-*.whl 'bitsandbytes/libbitsandbytes_cuda1[12]*' \
#       'bitsandbytes/libbitsandbytes_rocm*' 'bitsandbytes/libbitsandbytes_xpu*'
set -uo pipefail
S=$(date +%s); BUDGET=${BUDGET:-540}
MODEL=${MODEL:-synthetic:bloom-7b1}; BS=${BS:-1,8,32}
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr -cs 'A-Za-z0-9\n' '-')
sub=  # another model than BLOOM-7b1: its own runs folder, carried folder and tarball, e.g. synthetic-bloom-560m
[ "$MODEL" != synthetic:bloom-7b1 ] && sub=$(echo "$MODEL" | tr -cs 'A-Za-z0-9.\n' '-')
R=${RUNS:-/tmp/runs${sub:+-$sub}}; mkdir -p "$R" /tmp/nobase  # P1, P2 judge against an empty store: every cell NEW
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$R/gpu.txt"
CARRIED=${CARRIED:-tests/data/gpu-matrix/$gpu${sub:+/$sub}}  # results of earlier calls, on a GPU of this kind only
# A job's seconds on a warm H100: a process's start and load, then each batch size. From jobs of bs 1, 8, 32
# (2026-12-06: accel_bf16 80-95 s, ds_fp16 83-107, ds_int8 149, accel_int8 229-262; ds_int8 bs=32 alone 87)
# and of one size (2026-12-07: zero_bf16 238-250 s: ZeRO-3's 180-240 ms a step makes three sizes longer than
# a call, so run it one size a job, P1:zero_bf16@1; bs=128 alone: accel_bf16 44-68 s, ds_fp16 50-87, ds_int8
# 73-116, accel_int8 91-92, zero_bf16 bs=32 alone 161). A fresh machine adds 50-70 s for building the
# checkpoint and compiling DeepSpeed's kernels. BLOOM-560m at bs 1, 8, 32, 128 (2026-12-07): accel_bf16 66-78 s,
# ds_fp16 67-75, ds_int8 117-136, accel_int8 206-227, zero_bf16 bs=1 alone 145-174. Each can be set from outside.
: "${EST_START:=40}" "${EST_accel_bf16:=20}" "${EST_ds_fp16:=25}" "${EST_ds_int8:=45}" "${EST_accel_int8:=75}" "${EST_zero_bf16:=220}"
for v in EST_START EST_accel_bf16 EST_ds_fp16 EST_ds_int8 EST_accel_int8 EST_zero_bf16; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "device_matrix.sh: $v=${!v}: give whole seconds, e.g. $v=260" >&2; exit 2; }
done
cp -n "$CARRIED"/*.json "$R"/ 2>/dev/null
source .whl/install.sh .whl || exit 1
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
left() { echo $(( BUDGET - $(date +%s) + S )); }
finished() {  # results file $1 holds a finished timed cell for each of the batch sizes $2
  python3 -c 'import json, sys
done = {t["batch_size"] for t in json.load(open(sys.argv[1]))["tests"] if t.get("outcome") is not None}
sys.exit(not set(map(int, sys.argv[2].split(","))) <= done)' "$1" "$2" 2>/dev/null
}
for job in "$@"; do
  phase=${job%%:*}; cell=${job#*:}; b=${cell%%@*}; name=$phase-$cell
  [ "$phase" = G ] && name=G${G_N:-2800}-$cell  # each GEMM size its own file
  sizes=$BS; [ "$cell" != "$b" ] && sizes=${cell#*@}
  case $phase in F|G) [ "$cell" = "$b" ] && sizes=1,8;; esac
  if [ -s "$R/$name.json" ]; then  # a call's time limit can stop a job mid-cell: that file is kept, not reused
    finished "$R/$name.json" "$sizes" && { echo "== $name: done before"; continue; }
    echo "== $name: unfinished before (kept as $name.unfinished.json)"; mv "$R/$name.json" "$R/$name.unfinished.json"
  fi
  commas=${sizes//[^,]/}; est=EST_$b; est=$(( EST_START + ${!est:-70} * (${#commas} + 1) ))  # a start, then each size
  [ "$(left)" -lt "$est" ] && { echo "== $name: not started ($(left) s left, needs about $est)"; continue; }
  args=(--baselines /tmp/nobase); inject=
  if [ "$phase" != P1 ] && [ "$phase" != P2 ]; then
    rec=$cell; [ -s "$R/P1-$cell.json" ] || rec=$b  # P3:ds_int8@32 may be judged against P1/P2-ds_int8 (bs 1,8,32)
    if [ ! -e "$R/store-$rec" ]; then
      python3 -m perf.record --baselines /tmp/store --force "$R/P1-$rec.json" >> "$R/$name.log" 2>&1 &&
      python3 -m perf.record --baselines /tmp/store --force --pool "$R/P2-$rec.json" >> "$R/$name.log" 2>&1 &&
      touch "$R/store-$rec" || { echo "== $name: recording P1/P2 failed"; tail -3 "$R/$name.log"; continue; }
    fi
    args=(--baselines /tmp/store --require-baseline)
  fi
  case $phase in  # F, G: injected from outside the suite (scripts/inject/sitecustomize.py), bs 1 and 8
    F) inject=python-work:0.10;;
    G) inject=gpu-matmul:${G_N:-2800};;
  esac
  t0=$(date +%s)
  PERF_INJECT=$inject PYTHONPATH=${inject:+$PWD/scripts/inject:}$PYTHONPATH \
  timeout -s INT "$(left)" python3 -m pytest perf -p no:cacheprovider --benchmark-disable --model "$MODEL" \
      --batch-sizes "$sizes" -k "test_ms_per_token and $b" --results "$R/$name.json" "${args[@]}" >> "$R/$name.log" 2>&1
  echo "== $name rc=$? in $(( $(date +%s) - t0 )) s (at $(( $(date +%s) - S )) s)"
  grep -E "passed|failed|error|REGRESSION|IMPROVEMENT|NO CHANGE|INCONCLUSIVE" "$R/$name.log" | tail -5 | cut -c1-300
done
tar czf "$OUT/runs${sub:+-$sub}.tgz" -C "$R" .
