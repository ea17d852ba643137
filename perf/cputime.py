"""Host CPU accounting around a timed cycle, inside a worker: what the worker itself ran on a CPU,
and what kept it from running (Linux; elsewhere those figures are None).

- main thread CPU time (time.thread_time: the decode loop runs on the worker's main thread) and
  process CPU time (time.process_time: all its threads, torch's intra-op pool included);
- run-queue wait of the main thread (/proc/thread-self/schedstat, nanoseconds): time it was ready
  to run and waited for a CPU, the direct sign of CPUs shared with other work;
- other processes' CPU time on the CPUs the worker may run on (/proc/stat, in clock ticks of
  1/SC_CLK_TCK s), with the hypervisor's steal time counted in: a busy host seen, not guessed.
"""
import os
import socket
import time

TICK_S = 1 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


def _schedstat() -> tuple[int, int] | None:
    """(ns on a CPU, ns waiting on a run queue) of the calling thread."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            on_cpu, waited, _ = f.read().split()
        return int(on_cpu), int(waited)
    except (OSError, ValueError):
        return None


def _cpu_ticks(cpus: set[int]) -> tuple[int, int] | None:
    """(busy ticks, steal ticks) summed over `cpus`, from /proc/stat. Busy: user, nice, system,
    irq and softirq (guest time is inside user); idle and iowait are not."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    busy = steal = 0
    for line in lines:
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        fields = [int(x) for x in rest.split()]
        user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
        busy += user + nice + system + irq + softirq
        steal += fields[7] if len(fields) > 7 else 0
    return busy, steal


class CycleClock:
    """with CycleClock() as clock: ... ; clock.figures() -> this process's share of the cycle."""

    def __enter__(self):
        self.cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
        self._ticks = _cpu_ticks(self.cpus)
        self._sched = _schedstat()
        self._thread, self._process = time.thread_time(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.main_cpu_s = time.thread_time() - self._thread
        self.process_cpu_s = time.process_time() - self._process
        sched, ticks = _schedstat(), _cpu_ticks(self.cpus)
        self.run_queue_wait_s = (sched[1] - self._sched[1]) / 1e9 if sched and self._sched else None
        self.host_busy_s = self.steal_s = None
        if ticks and self._ticks:
            self.host_busy_s = (ticks[0] - self._ticks[0]) * TICK_S
            self.steal_s = (ticks[1] - self._ticks[1]) * TICK_S
        return False

    def figures(self) -> dict:
        """This rank's figures, to be combined over ranks by `combine`."""
        return {"host": socket.gethostname(), "main_cpu_s": self.main_cpu_s, "process_cpu_s": self.process_cpu_s,
                "run_queue_wait_s": self.run_queue_wait_s, "host_busy_s": self.host_busy_s, "steal_s": self.steal_s,
                "cpus": len(self.cpus)}


def combine(ranks: list[dict]) -> dict:
    """One cycle's figures over all ranks: the slowest rank's CPU and wait times (as ms/token is the
    slowest rank's time), and the CPU time other processes used: per host, its busy time and steal
    (read by its first rank) less what all its ranks ran; summed over hosts."""
    first = ranks[0]
    out = {key: max((r[key] for r in ranks if r[key] is not None), default=None)
           for key in ("main_cpu_s", "process_cpu_s", "run_queue_wait_s")}
    other = 0.0
    for host in dict.fromkeys(r["host"] for r in ranks):
        mine = [r for r in ranks if r["host"] == host]
        if mine[0]["host_busy_s"] is None:
            other = None
            break
        # /proc/stat counts whole ticks per CPU: take off what its rounding could add (in a 20 ms
        # cycle on 2 CPUs that is a whole CPU's worth), so that only what others surely used counts.
        rounding = 2 * mine[0]["cpus"] * TICK_S
        other += max(0.0, mine[0]["host_busy_s"] + mine[0]["steal_s"] - sum(r["process_cpu_s"] for r in mine) - rounding)
    out["other_cpu_s"] = other
    out["cpus"] = first["cpus"]
    if len(ranks) > 1:
        out["per_rank"] = [{k: r[k] for k in ("main_cpu_s", "process_cpu_s", "run_queue_wait_s")} for r in ranks]
    return out
