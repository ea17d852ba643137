"""Does the suite's worker run its own code slower than another process does, and why?

    python tools/process_gap.py --model PATH [--backend ds_fp16] [--batch-size 8]
                                [--rounds 1000] [--arms here,worker,worker2,no_session,parent_env,plain]
                                [--cpus 4] [--worker-logs DIR] [--seed 0]

On the H200, pinned to one CPU, `tools/fidelity.py --control here` ran the suite's worker code
(perf.worker.Session: its load and its cycle) 4.7% faster in fidelity.py's process than in a
worker (ds_fp16, bs=8, synthetic:bloom-7b1: 0.953 [0.939, 0.967]), while two workers agreed
(0.998). In the session after, on a fresh machine, this tool did not reproduce it: `here` against
`worker` gave 1.043 [0.992, 1.086] host-adjusted (44 rounds), and `plain` and `worker2` were
within 2.1% of `worker` (README, "Roofline and fidelity").
Every arm here runs that same code on the same model; all but `here` are workers loaded
as pytest loads one (tools/fidelity.py start_suite_worker: they inherit this process's pinning),
each different in what it names:
  here        this process, as fidelity.py's (InProcess)
  worker      as pytest starts it (perf.launcher.Worker): every other arm is compared with it
  worker2     the same again: how far two such processes differ on their own
  no_session  in this process's session and process group (no start_new_session, and so no
              scheduler autogroup of its own); it ignores SIGINT and SIGTERM, which would
              otherwise reach it from `timeout` with this process
  parent_env  this process's environment as it is (parent_env): without the repository that
              perf.launcher prepends to PYTHONPATH (`-m perf.worker` finds it in its working
              directory)
  plain       both at once: in this process's session, with its environment
(Its interpreter flags are no difference: a worker runs `python -u`, and tools/device_fidelity.sh
ran fidelity.py with PYTHONUNBUFFERED=1.) If `plain` runs as fast as `here`, the launch is the
cause and the arms between say which part of it; if as slow as `worker`, it is something else a
worker is: a child on pipes, loaded after the first (the arms load in the order given, so
`--arms worker,here,...` puts `here` second).
Each round times one cycle of every arm, in an order shuffled from round to round (seeded) and
never starting with the arm that ended the round before (a cycle that repeated the process that
ran last was 2-3% faster). Prints a JSON line per arm other than `worker` with its ratio to it,
pair by pair within rounds (fidelity.judge_pairs: plain and host-adjusted 95% intervals), then one
line with every cycle, the rounds' orders, each arm's process (pid, session, process group, CPUs,
command line, ignored signals, and the size of its environment, which moves where its stack
starts), and each worker's exit status after it was asked to exit. SIGINT or SIGTERM (`timeout`)
stops it after the whole rounds so far, which are judged; exit status 130 then. On the lent GPU
machine (the wheels of shared/offline-gpu in .whl):
    source .whl/install.sh .whl && export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 &&
    m=$(python3 -c "from perf import synthetic; print(synthetic.ensure('synthetic:bloom-7b1', 900))") &&
    PYTHONPATH=$PERF_T4_PYTHONPATH timeout -s INT 520 python3 tools/process_gap.py --model $m --cpus 4 \
        --arms here,worker,plain,worker2 --worker-logs $OUT/logs > $OUT/process-gap.jsonl 2> $OUT/process-gap.log
(the 2026-11-30 run; every arm loads a model, so four fit a 520 s call with 44 rounds of 7b1)
"""
import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from perf.launcher import PIN_ENV, REPO as WORKER_CWD, WORKER_ENV_DEFAULTS, Worker  # noqa: E402
from perf.backends import BACKENDS  # noqa: E402
from tools.fidelity import (INTERRUPTED, LAUNCHER_ENV, InProcess, checkpoint, judge_pairs,  # noqa: E402
                            keep_whole, ms_per_token, pin, start_suite_worker, timed_suite_cycle)


def parent_env() -> dict:
    """This process's environment as it is, less what perf.launcher.Worker takes out of it too (the
    rank variables, and PERF_CPUS: the workers here inherit this process's pinning)."""
    return {k: v for k, v in os.environ.items() if k not in (*LAUNCHER_ENV, PIN_ENV)}


# Run before the worker's own command, replacing itself with it (exec keeps an ignored signal
# ignored, and Python leaves it so): no preexec_fn, which is unsafe once this process has threads.
IGNORE_STOP_SIGNALS = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                       "signal.signal(signal.SIGTERM, signal.SIG_IGN); os.execv(sys.argv[1], sys.argv[1:])")


class NoSession(Worker):
    """A worker in this process's session and process group. It ignores SIGINT and SIGTERM, which
    the others, in sessions of their own, never get: `timeout` signals its whole group, and this
    process then ends the rounds and stops every worker itself. One rank (pipes)."""

    def _start(self, environ: dict) -> subprocess.Popen:
        command = [sys.executable, "-c", IGNORE_STOP_SIGNALS, *self.command]
        return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                env=environ, cwd=WORKER_CWD)

    def kill(self) -> None:
        """SIGKILL to the worker itself: it leads no process group, and ignores the other signals."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class ParentEnv(Worker):
    """A worker with this process's environment (parent_env)."""

    def _start(self, environ: dict) -> subprocess.Popen:
        return super()._start(parent_env())


class Plain(ParentEnv, NoSession):
    """A worker in this process's session and with its environment: both differences at once
    (ParentEnv's environment, handed on to NoSession's start)."""


ARMS = {"here": None, "worker": Worker, "worker2": Worker, "no_session": NoSession, "parent_env": ParentEnv,
        "plain": Plain}
REFERENCE = "worker"


def process_facts(pid: int) -> dict:
    """What the arms are meant to differ in, as the kernel has it for process `pid` (Linux)."""
    proc = Path(f"/proc/{pid}")
    ignored = int((proc / "status").read_text().split("SigIgn:")[1].split()[0], 16)  # a bit per signal
    return {"pid": pid, "session": os.getsid(pid), "process_group": os.getpgid(pid),
            "cpus": sorted(os.sched_getaffinity(pid)),
            "ignored_signals": [sig.name for sig in (signal.SIGINT, signal.SIGTERM) if ignored >> (sig - 1) & 1],
            "cmdline": (proc / "cmdline").read_bytes().decode().rstrip("\0").split("\0"),
            "environ_bytes": len((proc / "environ").read_bytes())}


def orders(arms: list[str], rounds: int, seed: int):
    """Each round's order: shuffled, never starting with the arm that ended the round before. Drawn
    again rather than mended, so that every allowed order is as likely (swapping that arm to the end
    kept it last in half the rounds: with few rounds the arms' positions then balance slowly)."""
    rng, last = random.Random(seed), None
    for _ in range(rounds):
        order = list(arms)
        rng.shuffle(order)
        while order[0] == last:
            rng.shuffle(order)
        last = order[-1]
        yield order


def run_rounds(sides: dict, batch_size: int, new_tokens: int, rounds: int, seed: int) -> dict:
    """One warm-up cycle per arm, then the rounds: {"cycles": {arm: [(seconds, new tokens, host
    probe ms), ...]}, "orders": [...], "interrupted": bool}, whole rounds only."""
    for side in sides.values():
        timed_suite_cycle(side, batch_size, new_tokens)
    print(f"process_gap.py: {len(sides)} arms loaded and warmed up; the rounds begin", file=sys.stderr, flush=True)
    cycles, taken, interrupted = {arm: [] for arm in sides}, [], False
    try:
        for order in orders(list(sides), rounds, seed):
            taken.append(order)
            for arm in order:
                cycles[arm].append(timed_suite_cycle(sides[arm], batch_size, new_tokens))
    except KeyboardInterrupt:
        interrupted = True
        whole = keep_whole(cycles)
        if not whole:
            raise
        del taken[whole:]
    return {"cycles": cycles, "orders": taken, "interrupted": interrupted}


def compare(cycles: dict) -> list[dict]:
    """Each arm against `worker`, pair by pair within rounds."""
    reference = cycles[REFERENCE]
    return [{"arm": arm, "against": REFERENCE, "ms_per_token": ms_per_token(arm_cycles),
             "worker_ms_per_token": ms_per_token(reference),
             **judge_pairs(arm_cycles, reference)}
            for arm, arm_cycles in cycles.items() if arm != REFERENCE]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a checkpoint folder (for a synthetic model: the folder the suite built)")
    ap.add_argument("--backend", default="ds_fp16", choices=sorted(BACKENDS))
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=1000, help="at most (a time limit's signal ends them sooner)")
    ap.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, {REFERENCE!r} among them (default: all)")
    ap.add_argument("--cpus", help="comma-separated CPU numbers to run every arm on (Linux)")
    ap.add_argument("--worker-logs", help="keep the workers' stderr in a new folder under this one")
    ap.add_argument("--seed", type=int, default=0, help="of the rounds' orders")
    args = ap.parse_args(argv)
    args.model = checkpoint(args.model, ap)
    arms = args.arms.split(",")
    if unknown := [a for a in arms if a not in ARMS]:
        ap.error(f"--arms: unknown {unknown}; choose from {', '.join(ARMS)}")
    if REFERENCE not in arms or len(set(arms)) < 2 or len(set(arms)) != len(arms):
        ap.error(f"--arms {args.arms}: each arm once, {REFERENCE!r} and at least one other")
    try:
        return measure(args, arms, ap, lines_out())
    except KeyboardInterrupt:  # building kernels, loading, a warm-up, or the first round
        print("process_gap.py: interrupted before a whole round; nothing to judge", file=sys.stderr)
        return INTERRUPTED


def lines_out():
    """Where the JSON lines go: this process's stdout as it was. File descriptor 1 goes to stderr from
    here on, so that what a library writes there lands in the log, not among the lines (on the H200,
    DeepSpeed's kernels wrote their workspace banner to stdout from the `here` arm)."""
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr  # Python's own prints too, in order with the rest of the log
    return out


def measure(args, arms: list[str], ap: argparse.ArgumentParser, out) -> int:
    """Load the arms, time the rounds, print the lines to `out`: main's exit status."""
    if args.backend == "ds_fp16":  # DeepSpeed compiles its kernels on first use: on every core, not the pinned one
        subprocess.run([sys.executable, "-c", "from deepspeed.ops.op_builder import InferenceBuilder; InferenceBuilder().load()"],
                       check=True, stdout=sys.stderr)
    if args.cpus is not None:
        pin(args.cpus, ap)
    for key, value in WORKER_ENV_DEFAULTS.items():  # as a worker's, so that parent_env differs in nothing else
        os.environ.setdefault(key, value)
    if args.worker_logs:
        Path(args.worker_logs).mkdir(parents=True, exist_ok=True)
        logs = contextlib.nullcontext(tempfile.mkdtemp(prefix="process-gap-", dir=args.worker_logs))
    else:
        logs = tempfile.TemporaryDirectory(prefix="process-gap-")
    sides = {}
    with logs as log_dir:
        try:
            for arm in arms:  # `here` first when named first, as fidelity.py loads it
                sides[arm] = (InProcess(args.backend, args.model) if arm == "here"
                              else start_suite_worker(args.backend, args.model, log_dir, arm, ARMS[arm]))
            facts = {arm: process_facts(os.getpid() if arm == "here" else side.pid) for arm, side in sides.items()}
            result = run_rounds(sides, args.batch_size, args.new_tokens, args.rounds, args.seed)
        finally:
            for side in sides.values():
                if isinstance(side, Worker):
                    side.stop()
    exits = {arm: side.proc.returncode for arm, side in sides.items() if isinstance(side, Worker)}
    head = {"backend": args.backend, "batch_size": args.batch_size, "rounds": len(result["orders"])}
    for line in compare(result["cycles"]):
        print(json.dumps({**head, **line}), file=out, flush=True)
    print(json.dumps({**head, "processes": facts, "worker_exit_codes": exits, **result}), file=out, flush=True)
    return INTERRUPTED if result["interrupted"] else 0


def interrupt_once(signum, frame):
    """A time limit's SIGINT or SIGTERM as KeyboardInterrupt, once: `timeout` sends it to its child
    and then to its whole group, and a second one would cut short the judging of the first."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGINT, interrupt_once)
    signal.signal(signal.SIGTERM, interrupt_once)
    sys.exit(main())
