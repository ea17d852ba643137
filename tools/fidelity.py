"""The article's own benchmark loop, outside the suite, to check that the suite measures the same.

    python tools/fidelity.py --backend accel_bf16 --model PATH --batch-sizes 1,8 [--cycles 5]
                             [--interleave [--control [here]] [--cpus 4] [--worker-logs DIR]
                              | --compare perf-results.json]

A reproduction of transformers-bloom-inference's `--benchmark` path (bloom-accelerate-inference.py
and bloom-ds-inference.py): load the model the script's way, one warm-up generate, then `cycles`
calls of tokenize + generate + decode between two `torch.cuda.synchronize()`, and ms/token =
elapsed / the sum of new tokens (output length - padded input length per row). Only the loading
and this loop; none of the suite's code but its host probe, taken before and after the loop.

--interleave: also start the suite's own worker for the backend (perf.launcher, as pytest does;
it loads through perf.adapters) and alternate one article cycle with one `cycle` of the suite's
worker, first one then the other, so that both see the same drift in time. The lent H200's CPU speed
drifted 1.8x within seconds, so the same two loops timed a minute apart disagreed by up to 2x
(README, "Roofline and fidelity"). Both models stay loaded (twice the weights in device memory).
Each article cycle is timed on its own: its decode copies the tokens to the host, which waits for
the device, so the per-cycle syncs add nothing to what the article's loop times.
--control (with --interleave): a second suite worker takes the article's place, an A/A pair of
identical loops in two processes: the ratio it gives is what the host alone does.
--control here: the suite's own worker code (perf.worker.Session: its load and its cycle) runs in
this process in the article's place, loaded first as the article's model is, with a worker's
environment defaults (perf.launcher.WORKER_ENV_DEFAULTS): against the worker, the same code in
two processes started differently. On the H200 the article's loop was ~5% faster
than the worker at ds_fp16 bs=8, two workers agreed, and in one process the two cycles' code and
the modules' training flags made no difference (tools/ds_fp16_gap.py); there, in a later session,
this code ran ~5% faster here than in the worker too; in the session after, that was not
reproduced (tools/process_gap.py: 1.043 [0.992, 1.086]), and the article's loop agreed with the
worker within 5% (README, "Roofline and fidelity"). It takes the article's
place rather than joining it as a third side: DeepSpeed-Inference keeps its layer count and its
workspace (the KV cache) in class attributes (DeepSpeedTransformerInference.layer_id, .workspace),
so two kernel-injected models in one process would share them.
--cpus 4 (with --interleave): run this process, and so the suite's workers it starts, on those CPUs
only. On the lent H200 the slowdowns appear to belong to single cores (a process counting on
another core did not see them), so two processes left to the scheduler can sit on cores of
different speed. Pinned to the same set, both sides of every pair run on it (they never run at
once); one CPU makes it the same core, but then the process's own threads share it too. There,
pinned to one CPU (a later session than the unpinned runs), the correlation of a pair's two cycles
was 0.4-0.7 instead of 0.0-0.3, and the standard deviation of the pairs' log ratios 0.12-0.18
instead of 0.23-0.31 (README, "Roofline and fidelity").
Interleaved, each line also says where each side's process spent CPU time over the pairs
("threads": CPU seconds per thread name, and the main thread's involuntary context switches;
Linux), which shows a busy thread that a pinned cycle shares its CPU with.
--compare: the suite's figure for the same backend and batch size from its results file.
Either way the ratio (article / suite, both total time over total new tokens) is printed.
Interleaved, each pair of cycles gives a ratio, and the pairs give an interval, also with the
host's drift taken out by each cycle's host probe (paired_interval): the verdict is WITHIN
--tolerance only when the whole host-adjusted interval is, OUTSIDE when none of it is, else
UNDECIDED; exit 1 unless every batch size is WITHIN. --compare holds the ratio alone to the tolerance.
SIGINT or SIGTERM (a time limit) during the pairs: the batch size's line is printed from the whole
pairs so far, with "interrupted": true, no further batch size runs, and the exit status is 130.
"""
import argparse
import contextlib
import json
import math
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perf.protocol import host_probe_ms  # noqa: E402  (the host's speed, not part of the measurement)
from perf import baselines, settings  # noqa: E402
from perf.launcher import RANK_ENV, cpu_set, single_rank_env  # noqa: E402
from perf.verdicts import paired_shift  # noqa: E402

PROMPTS = ["DeepSpeed is a machine learning framework", "He is working on", "He has a", "He got all",
           "Everyone is happy and I can", "The new movie that got Oscar this year",
           "In the far far distance from our galaxy,", "Peace is the only way"]
# What the `deepspeed` launcher sets for bloom-ds-inference.py, which calls
# deepspeed.init_distributed("nccl") before it loads; set here for one rank, kept from the suite's
# workers, which set their own as under pytest.
LAUNCHER_ENV = RANK_ENV
INTERRUPTED = 130  # the exit status after SIGINT or SIGTERM cut the pairs short (as a shell reports SIGINT)


def load(backend: str, model: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(model, padding_side="left")
    if backend == "accel_bf16":  # bloom-accelerate-inference.py
        net = AutoModelForCausalLM.from_pretrained(model, device_map="auto", torch_dtype=torch.bfloat16)
    elif backend == "ds_fp16":  # bloom-ds-inference.py, one rank
        import deepspeed
        for key, value in single_rank_env().items():
            os.environ.setdefault(key, value)
        deepspeed.init_distributed("nccl")
        net = AutoModelForCausalLM.from_pretrained(model, torch_dtype=torch.float16)
        net = deepspeed.init_inference(net, dtype=torch.float16, tensor_parallel={"tp_size": 1},
                                       replace_with_kernel_inject=True).module
    else:
        sys.exit(f"--backend {backend!r}: this reproduction covers accel_bf16 and ds_fp16")
    return tokenizer, net.eval()


def article_cycle(tokenizer, model, batch_size: int, new_tokens: int):
    """One generate of the article's loop: tokenize + generate + decode; returns the new tokens."""
    import torch
    inputs = [PROMPTS[i % len(PROMPTS)] for i in range(batch_size)]
    tokens = tokenizer(inputs, return_tensors="pt", padding=True).to(next(model.parameters()).device)
    with torch.no_grad():
        outputs = model.generate(**tokens, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
    new = [o.shape[0] - i.shape[0] for i, o in zip(tokens.input_ids, outputs)]
    tokenizer.batch_decode(outputs, skip_special_tokens=True)
    return sum(new)


def _sync():
    import torch
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def benchmark(tokenizer, model, batch_size: int, new_tokens: int, cycles: int) -> tuple[float, float]:
    """The article's loop: (ms/token, host probe ms around it)."""
    article_cycle(tokenizer, model, batch_size, new_tokens)  # warm-up
    probe_before = host_probe_ms()
    _sync()
    start, total = time.time(), 0
    for _ in range(cycles):
        total += article_cycle(tokenizer, model, batch_size, new_tokens)
    _sync()
    return 1000 * (time.time() - start) / total, (probe_before + host_probe_ms()) / 2


def start_suite_worker(backend: str, model: str, log_dir: str, index: int | str = 0, kind=None):
    """The suite's worker for `backend`, loaded as pytest loads it (one rank); `kind`, a subclass
    of perf.launcher.Worker, starts its process otherwise (tools/process_gap.py)."""
    from perf.backends import BACKENDS
    from perf.launcher import RemoteError, Worker, WorkerFailed
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV}
    worker = (kind or Worker)(f"fidelity-{backend}-{index}", sys.executable, [], 1800, Path(log_dir), env=env)
    try:
        worker.call("load", adapter=BACKENDS[backend].adapter, model=model, options={"max_memory": None})
    except (RemoteError, WorkerFailed) as exc:  # the worker's log may go with a temporary folder
        detail = f"{exc.error}\n{exc.traceback}" if isinstance(exc, RemoteError) else str(exc)
        tail = worker.stderr_tail()
        worker.stop()
        sys.exit(f"the suite's {backend} worker failed to load: {detail}\n--- its stderr (tail) ---\n{tail}")
    except BaseException:
        worker.stop()
        raise
    return worker


def timed_article_cycle(tokenizer, model, batch_size: int, new_tokens: int) -> tuple[float, int, float]:
    """One article cycle timed on its own: (seconds, new tokens, host probe ms around it)."""
    probe = host_probe_ms()
    _sync()
    start = time.perf_counter()
    tokens = article_cycle(tokenizer, model, batch_size, new_tokens)
    _sync()
    return time.perf_counter() - start, tokens, (probe + host_probe_ms()) / 2


class InProcess:
    """The suite's worker code run in this process (--control here): a worker's `call`, no pipe."""

    def __init__(self, backend: str, model: str):
        from perf.backends import BACKENDS
        from perf.launcher import WORKER_ENV_DEFAULTS
        from perf.worker import Session
        for key, value in WORKER_ENV_DEFAULTS.items():  # as a worker's: no article side here to keep as it was
            os.environ.setdefault(key, value)
        self.session = Session()
        self.session.load(BACKENDS[backend].adapter, model, {"max_memory": None})

    def call(self, op: str, **args):
        return getattr(self.session, op)(**args)


def timed_suite_cycle(worker, batch_size: int, new_tokens: int) -> tuple[float, int, float]:
    """One `cycle` of a suite worker: (seconds, new tokens, host probe ms), timed in the worker."""
    reply = worker.call("cycle", batch_size=batch_size, new_tokens=new_tokens)
    return reply["seconds"], reply["new_tokens"], reply["host_probe_ms"]


def thread_times(pid: int) -> dict:
    """Where process `pid`'s CPU time has gone so far (Linux /proc): {"threads": {tid: (name, CPU
    seconds)}, "main_involuntary_switches": n}, n counting the times its main thread was taken off
    its CPU for another thread (what a busy thread of either process costs a pinned cycle)."""
    tick, threads = os.sysconf("SC_CLK_TCK"), {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):  # the thread has ended since
            continue
        name = "main" if tid == str(pid) else stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()  # from field 3 (state) on: utime is 14, stime 15
        threads[tid] = (name, (int(fields[11]) + int(fields[12])) / tick)
    status = Path(f"/proc/{pid}/status").read_text()
    return {"threads": threads, "main_involuntary_switches": int(status.split("nonvoluntary_ctxt_switches:")[1].split()[0])}


def time_spent(before: dict, after: dict) -> dict:
    """Between two thread_times: CPU seconds per thread name ("main" for the main thread; only
    names that spent some; a thread that ended in between is left out, one that began counts from
    0) and the main thread's involuntary context switches."""
    seconds = {}
    for tid, (name, total) in after["threads"].items():
        seconds[name] = seconds.get(name, 0.0) + total - before["threads"].get(tid, (name, 0.0))[1]
    return {"cpu_s": {name: round(s, 2) for name, s in sorted(seconds.items()) if round(s, 2)},
            "main_involuntary_switches": after["main_involuntary_switches"] - before["main_involuntary_switches"]}


def interleaved(other, ours, cycles: int, names: tuple[str, str], pids: tuple[int, int] | None = None) -> dict:
    """`other` and `ours` (each times one cycle) alternated (O S, S O, ...) after one warm-up each.
    With the two sides' process ids, also where each process's CPU time went from the first pair
    on (time_spent; when interrupted, this includes the half pair that is dropped)."""
    other()  # a signal here, before a whole pair, ends the run with nothing to judge (main)
    ours()
    before = [thread_times(pid) for pid in pids] if pids else None
    sides = {names[0]: [], names[1]: []}  # (seconds, new tokens, host probe ms) per cycle
    order = ((names[0], other), (names[1], ours))
    interrupted = False
    try:
        for i in range(cycles):
            for name, step in (order if i % 2 == 0 else order[::-1]):
                sides[name].append(step())
    except KeyboardInterrupt:  # a time limit ran out (main): judge the whole pairs taken so far
        if not keep_whole(sides):
            raise
        interrupted = True
    threads = {}
    try:  # nothing here may cost the pairs' line
        threads = {name: time_spent(b, thread_times(pid)) for name, pid, b in zip(names, pids, before)} if pids else {}
    except OSError:  # a side's process has gone
        pass
    except KeyboardInterrupt:  # the time limit, just after the last pair: judge them all, stop after this line
        interrupted = True
    first, second = sides.values()
    return {"ms_per_token": ms_per_token(first), "suite_ms_per_token": ms_per_token(second),
            "ratio": ms_per_token(first) / ms_per_token(second),
            "host_probe_ms": statistics.median(c[2] for c in first),
            "suite_host_probe_ms": statistics.median(c[2] for c in second),
            "new_tokens": [sum(c[1] for c in first), sum(c[1] for c in second)],
            "cycles": sides,  # in order, for a second look
            **judge_pairs(first, second), **({"threads": threads} if threads else {}),
            **({"interrupted": True} if interrupted else {})}


def keep_whole(sides: dict) -> int:
    """Cut every side's cycles to the shortest side's count, dropping a pair (or round) a signal
    left half done; that count."""
    whole = min(map(len, sides.values()))
    for cycles in sides.values():
        del cycles[whole:]
    return whole


def ms_per_token(cycles: list) -> float:
    """Total over total, as the article's loop has it, from (seconds, new tokens, ...) per cycle."""
    return 1000 * sum(c[0] for c in cycles) / sum(c[1] for c in cycles)


def judge_pairs(first: list, second: list) -> dict:
    """The pairs' ratios (first / second, ms/token) and intervals (paired_interval), from cycles
    taken side by side: (seconds, new tokens, host probe ms) each, as in a line's "cycles"."""
    pair_ratios = [(a[0] / a[1]) / (s[0] / s[1]) for a, s in zip(first, second)]
    return {"pair_ratios": [round(r, 4) for r in pair_ratios], "pairs": len(pair_ratios),
            **paired_interval(pair_ratios, [a[2] / s[2] for a, s in zip(first, second)])}


def host_slope(pair_logs: list[float], probe_logs: list[float]) -> float:
    """How much of a pair's log ratio follows its host probes' log ratio: the least-squares slope
    (with an intercept), held to [0, 1]; 0 when the probe ratios never varied. A cycle that is all
    host work would give 1, but noise in the probe (it samples only the cycle's edges) also pulls
    the slope toward 0."""
    if max(probe_logs) == min(probe_logs):
        return 0.0
    mean_x, mean_y = statistics.fmean(probe_logs), statistics.fmean(pair_logs)
    slope = (sum((x - mean_x) * (y - mean_y) for x, y in zip(probe_logs, pair_logs))
             / sum((x - mean_x) ** 2 for x in probe_logs))
    return min(1.0, max(0.0, slope))


def paired_interval(pair_ratios: list[float], probe_ratios: list[float]) -> dict:
    """How sure the pairs make the ratio: its exact paired interval (Wilcoxon signed rank,
    perf.verdicts), and one with the host's drift taken out: each pair's ratio over its probe ratio,
    relative to the pairs' geometric mean probe ratio, to the fitted power (host_slope). Centred so,
    it removes the spread that follows the probe, not a steady probe difference between the two
    processes, which could be a loop's own doing: the estimate stays near the plain one.
    On the lent H200 the probe taken in the cycle's own process followed the cycle's time
    (r = 0.59-0.87 on 7 of 8 sides, 0.23 on one; slopes 0.43-0.73), and taking it out cut the
    standard deviation of the pairs' log ratios by 7-44%. The clamped fit cannot raise that
    standard deviation (slope 0 was open to it), but the rank-based interval can still come out
    wider; and as the slope is fitted on the same pairs, its 95% is nominal, not exact."""
    def estimate_and_bounds(ratios):  # bounds None: fewer than 6 pairs give no 95% interval
        shift, low, high, achieved = paired_shift(ratios)
        bounds = [math.exp(low), math.exp(high)] if math.isfinite(low) else None
        return math.exp(shift), bounds, achieved if bounds else None
    estimate, bounds, achieved = estimate_and_bounds(pair_ratios)
    probe_logs = [math.log(p) for p in probe_ratios]
    slope = host_slope([math.log(r) for r in pair_ratios], probe_logs)
    centre = statistics.fmean(probe_logs)
    per_host, per_host_bounds, _ = estimate_and_bounds(
        [r / math.exp(slope * (x - centre)) for r, x in zip(pair_ratios, probe_logs)])
    return {"paired_ratio": estimate, "interval": bounds, "confidence": achieved, "host_slope": slope,
            "host_adjusted_ratio": per_host, "host_adjusted_interval": per_host_bounds}


def fidelity_verdict(line: dict, tolerance: float) -> str:
    """WITHIN when the whole host-adjusted interval (paired_interval) lies inside the tolerance,
    OUTSIDE when it lies beyond it, UNDECIDED otherwise (more --cycles would narrow it): the
    question is whether the two loops differ, not whether the host did. Without an interval
    (--compare: one figure a side) the ratio alone is held to the tolerance. In log terms, as
    perf.verdicts does: 5% is 1/1.05 to 1.05."""
    limit = math.log1p(tolerance)
    if "interval" not in line:
        return "WITHIN" if abs(math.log(line["ratio"])) <= limit else "OUTSIDE"
    if line["host_adjusted_interval"] is None:
        return "UNDECIDED"
    low, high = (math.log(b) for b in line["host_adjusted_interval"])
    if -limit <= low and high <= limit:
        return "WITHIN"
    return "OUTSIDE" if low > limit or high < -limit else "UNDECIDED"


def checkpoint(text: str, ap: argparse.ArgumentParser) -> str:
    """--model as from_pretrained takes it, after the suite's own checks (perf.settings.resolve_model:
    a BLOOM checkpoint folder or an HF id in the local cache), or a usage error that names it."""
    if text.startswith("synthetic:"):
        ap.error(f"--model {text}: give the folder the suite built for it, e.g. "
                 f"$(python -c \"from perf import synthetic; print(synthetic.ensure('{text}', 900))\")")
    try:
        return settings.resolve_model(text)[0]
    except pytest.UsageError as exc:  # its message names the flag and the fix
        ap.error(str(exc))


def pin(cpus: str, ap: argparse.ArgumentParser) -> None:
    """This process onto `cpus` before anything loads; the workers it starts inherit it."""
    try:
        os.sched_setaffinity(0, cpu_set(cpus))
    except ValueError as exc:
        ap.error(str(exc))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", required=True)
    ap.add_argument("--model", required=True, help="a checkpoint folder (for a synthetic model: the folder the suite built)")
    ap.add_argument("--batch-sizes", default="1", help="comma-separated, timed one after another on one load (default: 1)")
    ap.add_argument("--new-tokens", type=int, default=100)
    ap.add_argument("--cycles", type=int, help="timed cycles (default: 5, the article's; 10 pairs with --interleave)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--compare", help="the suite's results file from the same machine")
    mode.add_argument("--interleave", action="store_true",
                      help="alternate cycles with the suite's own worker, loaded beside this model")
    ap.add_argument("--control", nargs="?", const="worker", choices=["worker", "here"],
                    help="with --interleave: a second suite worker takes the article's place (A/A), "
                         "to see what the host alone does to the ratio; `here`: the suite's worker "
                         "code in this process instead, to tell the process from the code")
    ap.add_argument("--cpus", help="with --interleave: comma-separated CPU numbers to run on, with the suite's workers (Linux)")
    ap.add_argument("--tolerance", type=float, default=0.05)
    ap.add_argument("--worker-logs", help="keep the suite's workers' stderr under this folder "
                                          "(default: removed with a temporary one)")
    args = ap.parse_args(argv)
    args.model = checkpoint(args.model, ap)
    try:
        batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    except ValueError:
        ap.error(f"--batch-sizes {args.batch_sizes!r}: expected comma-separated integers, e.g. 1,8")
    if args.cycles is None:
        args.cycles = 10 if args.interleave else 5
    if args.control and not args.interleave:
        ap.error("--control goes with --interleave (it replaces the article's side of the pairs)")
    if args.interleave and args.cycles < 6:
        ap.error(f"--cycles {args.cycles} with --interleave: a 95% paired interval needs 6 pairs or more")
    suite = {}
    if args.compare:
        results = json.loads(Path(args.compare).read_text())
        suite = {t["batch_size"]: t for t in results["tests"]
                 if t["test"] == baselines.SPEED_TEST and t["backend"] == args.backend and t.get("ms_per_token_article")}
        missing = [b for b in batch_sizes if b not in suite]
        if missing:
            sys.exit(f"{args.compare}: no ms/token of {args.backend} at batch size {missing}")
    if args.cpus is not None and not args.interleave:
        ap.error("--cpus goes with --interleave (it pins both sides of each pair; the --compare figure ran unpinned)")
    if args.worker_logs and not args.interleave:
        ap.error("--worker-logs goes with --interleave (without it no suite worker runs)")
    if args.worker_logs:
        try:  # before the long load
            Path(args.worker_logs).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            ap.error(f"--worker-logs {args.worker_logs}: {exc.strerror}")
    if args.cpus is not None:
        pin(args.cpus, ap)
    try:
        return measure(args, batch_sizes, suite)
    except KeyboardInterrupt:  # loading, warming up, or before a batch size's first whole pair
        print("fidelity.py: interrupted before a whole pair of the batch size it was on; the lines "
              "printed before are all it judged", file=sys.stderr)
        return INTERRUPTED


def measure(args, batch_sizes: list[int], suite: dict) -> int:
    """Load, time each batch size, print a line each: main's exit status."""
    tokenizer, model = (None, None) if args.control else load(args.backend, args.model)
    here = InProcess(args.backend, args.model) if args.control == "here" else None
    workers = []
    if args.worker_logs:  # a folder of its own each run: an earlier run's logs stay
        kept = tempfile.mkdtemp(prefix=f"fidelity-{args.backend}-{time.strftime('%Y%m%d-%H%M%S')}-", dir=args.worker_logs)
        print(f"fidelity.py: the suite's workers' stderr goes to {kept}", file=sys.stderr)
        logs = contextlib.nullcontext(kept)
    else:
        logs = tempfile.TemporaryDirectory(prefix="fidelity-")
    with logs as log_dir:
        try:
            for _ in range(2 if args.control == "worker" else 1 if args.interleave else 0):
                workers.append(start_suite_worker(args.backend, args.model, log_dir, len(workers)))
            outside = 0
            for batch_size in batch_sizes:
                out = {"backend": args.backend, "batch_size": batch_size}
                if args.cpus is not None:
                    out["cpus"] = sorted(os.sched_getaffinity(0))
                if workers:
                    size, tokens = batch_size, args.new_tokens
                    if args.control:
                        other, name = ((lambda: timed_suite_cycle(here or workers[1], size, tokens)),
                                       "in_process" if here else "control")
                    else:
                        other, name = (lambda: timed_article_cycle(tokenizer, model, size, tokens)), "article"
                    ours = lambda: timed_suite_cycle(workers[0], size, tokens)  # noqa: E731
                    pids = ((workers[1].pid if args.control == "worker" else os.getpid(), workers[0].pid)
                            if os.path.isdir("/proc/self/task") else None)  # Linux only
                    out.update(interleaved(other, ours, args.cycles, (name, "suite"), pids))
                else:
                    ms, probe = benchmark(tokenizer, model, batch_size, args.new_tokens, args.cycles)
                    out.update(ms_per_token=ms, host_probe_ms=probe)
                if args.compare:
                    record = suite[batch_size]
                    out.update(suite_ms_per_token=record["ms_per_token_article"],
                               ratio=out["ms_per_token"] / record["ms_per_token_article"])
                    if record.get("host_probe_ms_samples"):  # a ratio far from 1 with the host's as far says "host"
                        out["host_ratio"] = out["host_probe_ms"] / statistics.median(record["host_probe_ms_samples"])
                if "ratio" in out:
                    out["verdict"] = fidelity_verdict(out, args.tolerance)
                    outside += out["verdict"] != "WITHIN"
                print(json.dumps(out), flush=True)
                if out.get("interrupted"):
                    return INTERRUPTED
        finally:
            for worker in workers:
                worker.stop()
    return 1 if outside else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `timeout`'s default signal, handled as SIGINT
    sys.exit(main())
