"""Why was the article's loop ~5% faster than the suite's worker for ds_fp16 at bs=8 (pinned, H200)?

    python tools/ds_fp16_gap.py --model PATH [--batch-size 8] [--seconds 300] [--cpu 4]

A 2x2x2 factorial in one process, on one model loaded the suite's way (perf.worker.Session,
perf.adapters.DeepSpeedInferenceFp16): each round runs all eight combinations, in an order rotated
from round to round, of
  cycle: the article's (tools/fidelity.py timed_article_cycle) or the suite's (Session.cycle);
  mode:  the modules' training flags as the suite's load leaves them (.eval() before
         init_inference, so the injected blocks are new modules in training mode) or after
         model.eval() (the article calls it after init_inference);
  tokenizers: TOKENIZERS_PARALLELISM=false (the suite's workers) or true (the article's process
         leaves it unset, which the library treats as on).
The A/A control (two suite workers) agreed within 2.8%, so the gap is in what differs between
the two processes; these are the differences that reading the code found. Loaded unpinned, then
every thread pinned to --cpu. Prints one JSON line per cycle, then each factor's paired effect
(paired_effects).
"""
import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perf.launcher import single_rank_env  # noqa: E402
from perf.verdicts import paired_shift  # noqa: E402
from tools.fidelity import timed_article_cycle  # noqa: E402

FACTORS = ("suite_cycle", "eval", "tok_parallel")


def pin_all_threads(cpu: int) -> None:
    """As the suite's pinned workers run (perf/worker.py pins before torch starts a thread): one
    intra-op thread, since torch sized its pool for every CPU when it loaded unpinned."""
    import torch
    torch.set_num_threads(1)
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), {cpu})
        except ProcessLookupError:
            pass


def paired_effects(rows: list[dict]) -> dict:
    """Each factor's effect from the cycles of one round that differ in that factor alone: the ratio
    of ms/token at its first level to its second (article / suite cycle, flags as loaded / eval'd,
    tokenizers off / on), 4 pairs a round, as perf.verdicts.paired_shift judges pairs."""
    cells = {(r["round"], *(r[f] for f in FACTORS)): r["ms_per_token"] for r in rows}
    out = {}
    for i, factor in enumerate(FACTORS):
        ratios = []
        for key, ms in cells.items():
            other = list(key)
            other[1 + i] = 1
            if key[1 + i] == 0 and tuple(other) in cells:
                ratios.append(ms / cells[tuple(other)])
        shift, low, high, _ = paired_shift(ratios)
        out[factor] = {"ratio": math.exp(shift), "interval": [math.exp(low), math.exp(high)], "pairs": len(ratios)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--cpu", type=int, default=4)
    ap.add_argument("--adapter", default="perf.adapters:DeepSpeedInferenceFp16", help="another to try this on CPU")
    args = ap.parse_args()
    for key, value in single_rank_env().items():
        os.environ.setdefault(key, value)
    lines = os.fdopen(os.dup(1), "w", buffering=1)  # stdout for JSON lines alone: what the
    os.dup2(2, 1)                                     # libraries print (DeepSpeed's workspace
    sys.stdout = sys.stderr                           # banner) goes to stderr, as in the worker
    from perf.worker import Session
    session = Session()
    info = session.load(args.adapter, args.model, {"max_memory": None})
    model, tokenizer = session.adapter.model, session.adapter.tokenizer
    as_loaded = {m: m.training for m in model.modules()}
    print(json.dumps({"load": {k: info.get(k) for k in ("load_s", "kernel_injected_blocks", "versions")},
                      "modules": len(as_loaded), "training_as_loaded": sum(as_loaded.values()),
                      "tokenizers_env": os.environ.get("TOKENIZERS_PARALLELISM")}), file=lines)
    pin_all_threads(args.cpu)

    def run(combo: tuple[int, int, int]) -> dict:
        suite_cycle, eval_mode, tok_parallel = combo
        if eval_mode:
            model.eval()
        else:
            for module, training in as_loaded.items():
                module.training = training
        os.environ["TOKENIZERS_PARALLELISM"] = "true" if tok_parallel else "false"
        if suite_cycle:
            reply = session.cycle(args.batch_size, args.new_tokens)
            seconds, tokens, probe = reply["seconds"], reply["new_tokens"], reply["host_probe_ms"]
        else:
            seconds, tokens, probe = timed_article_cycle(tokenizer, model, args.batch_size, args.new_tokens)
        return dict(zip(FACTORS, combo), seconds=seconds, new_tokens=tokens, host_probe_ms=probe,
                    ms_per_token=1000 * seconds / tokens)

    combos = [(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)]
    for combo in combos:  # warm-up, untimed
        run(combo)
    rows, deadline, k = [], time.monotonic() + args.seconds, 0
    while time.monotonic() < deadline:
        order = combos[k % 8:] + combos[:k % 8]
        if (k // 8) % 2:
            order.reverse()
        for combo in order:
            row = run(combo)
            row["round"] = k
            rows.append(row)
            print(json.dumps(row), file=lines)
        k += 1
    print(json.dumps({"rounds": k, "cycles": len(rows), "effects": paired_effects(rows)}), file=lines)


if __name__ == "__main__":
    main()
