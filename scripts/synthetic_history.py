"""A long nightly history made from real runs, with known changes, to check what perf-history finds.

    python scripts/synthetic_history.py RESULTS... --out DIR [--nights 60] [--step-at 40 --step 0.15]
                                        [--drift-from 10 --drift-to 25 --drift 0.01] [--seed 1]

Night i (1-based) is a whole real run (one of RESULTS, drawn at random with replacement: its
cycles, its host probe and load, its counts, as that process measured them), dated one day after
night i-1 and given its own made-up commit. Then its times (wall and host CPU ms/token, GPU kernel
ms per step) are multiplied by 1 + drift for every night of the drift that has begun by night i
(nights drift-from..drift-to, each 1% more than the one before), and by 1 + step from night
step-at on. Counts, probes and load are left as measured: the code got slower, the host did not.
Each night is written as DIR/night-NN.json, a results file like any other; add them with
`perf-history add DIR/*.json`.
"""
import argparse
import copy
import hashlib
import json
import random
import sys
from datetime import datetime, timedelta
from pathlib import Path

# The samples that scale with the code's speed (schema 1-2 names: `<kind>_samples`, or under profile).
TIMES = ("ms_per_token", "main_cpu_ms_per_token", "process_cpu_ms_per_token", "gpu_decode_ms_per_step")


def factor(night: int, step_at: int | None, step: float, drift_from: int | None, drift_to: int | None,
           drift: float) -> float:
    """How much slower night `night` (1-based) is than night 1."""
    f = 1.0
    if drift_from is not None:
        f *= (1 + drift) ** max(0, min(night, drift_to) - drift_from + 1)
    if step_at is not None and night >= step_at:
        f *= 1 + step
    return f


def slowed(run: dict, f: float) -> dict:
    run = copy.deepcopy(run)
    for rec in run["tests"]:
        holders = [rec, rec.get("profile") or {}, rec.get("samples") or {}]
        for holder in holders:
            for key in TIMES:
                for name in (f"{key}_samples", key) if holder is not rec.get("samples") else (key,):
                    if isinstance(holder.get(name), list):
                        holder[name] = [v * f for v in holder[name]]
        if isinstance(rec.get("ms_per_token"), float):
            rec["ms_per_token"] *= f
    return run


def nights(sources: list[dict], count: int, seed: int = 1, **change) -> list[dict]:
    """`count` nights drawn from `sources` (results files' JSON), changed as `factor` says."""
    rng = random.Random(seed)
    start = datetime(2026, 10, 1, 2, 0)
    out = []
    for i in range(1, count + 1):
        run = slowed(rng.choice(sources), factor(i, **change))
        run["started"] = (start + timedelta(days=i - 1)).isoformat(timespec="seconds") + "+00:00"
        run["fingerprint"] = {**run["fingerprint"], "git_dirty": False,
                              "git_commit": hashlib.sha1(f"synthetic night {i}".encode()).hexdigest()}
        out.append(run)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", type=Path, help="real results files to draw the nights from")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--nights", type=int, default=60)
    ap.add_argument("--step-at", type=int, default=40)
    ap.add_argument("--step", type=float, default=0.15)
    ap.add_argument("--drift-from", type=int, default=10)
    ap.add_argument("--drift-to", type=int, default=25)
    ap.add_argument("--drift", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    sources = [json.loads(p.read_text()) for p in args.results]
    args.out.mkdir(parents=True, exist_ok=True)
    made = nights(sources, args.nights, args.seed, step_at=args.step_at, step=args.step,
                  drift_from=args.drift_from, drift_to=args.drift_to, drift=args.drift)
    for i, run in enumerate(made, 1):
        (args.out / f"night-{i:02d}.json").write_text(json.dumps(run, indent=1) + "\n")
    print(f"{len(made)} nights in {args.out}: drift {args.drift:+.0%}/night over nights {args.drift_from}-"
          f"{args.drift_to}, step {args.step:+.0%} from night {args.step_at}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
