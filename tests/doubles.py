"""Test doubles: backends that misbehave on purpose, for the suite's fault handling tests.

Loaded into a perf session with `-p tests.doubles`. Each stands for a real failure of a real
backend: a load that raises, a worker killed by the kernel (the OOM killer, a segfault in a
compiled kernel), a hung collective, a CUDA out-of-memory at larger batch sizes, numerics gone wrong. Except for the
one that fails to load, they run the real fp32 transformers model until they misbehave.
"""
import os
import signal
import time

from perf.adapters import DeepSpeedZeroBf16, Reference
from perf.backends import BackendSpec


class CrashOnLoad(Reference):
    def load(self, model):
        import sys
        print("double: this line must reach the failure report", file=sys.stderr, flush=True)
        raise RuntimeError("double: load exploded")


class KilledInGenerate(Reference):
    def generate(self, inputs, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)


class ZeroRank1Killed(DeepSpeedZeroBf16):
    """Real ZeRO-3 over several ranks whose rank 1 is killed mid-generate (a segfault, the OOM
    killer), leaving rank 0 inside a collective."""

    def generate(self, inputs, **kwargs):
        if os.environ.get("RANK") == "1":
            os.kill(os.getpid(), signal.SIGKILL)
        return super().generate(inputs, **kwargs)


class KillsItsPytestFromBatch2(Reference):
    """The pytest process running this backend dies (the OOM killer takes an xdist worker, say)
    at the first generate of 2 rows or more."""

    def generate(self, inputs, **kwargs):
        if inputs["input_ids"].shape[0] >= 2:
            os.kill(os.getppid(), signal.SIGKILL)
            time.sleep(60)  # dies with it (perf.worker)
        return super().generate(inputs, **kwargs)


class HangInGenerate(Reference):
    def generate(self, inputs, **kwargs):
        time.sleep(3600)


class OomFromBatch4(Reference):
    def generate(self, inputs, **kwargs):
        import torch
        if inputs["input_ids"].shape[0] >= 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (double)")
        return super().generate(inputs, **kwargs)


def unit_of_work(loops: int) -> int:
    """One call of fixed Python work: `loops` additions (a loop, not calls)."""
    x = 0
    for _ in range(loops):
        x += 1
    return x


class Paced(Reference):
    """A backend whose every generate does a fixed amount of host work, as a decode loop does: the
    same CALLS calls of unit_of_work, each LOOPS additions; the host probe reads a fixed 6 ms.
    `double_slowed`'s generate makes 1 + PERF_DOUBLE_SLOWDOWN times the calls (the backend got
    slower: more work); `double_host_slowed`'s makes the same calls, each 1 + PERF_DOUBLE_HOST_SLOWDOWN
    times longer, and its probe reads as much slower (the host got slower: the same work, more
    time). This CPU VM's own process-to-process noise (10-40% on the embedded model) would otherwise
    decide the verdicts of a test about the verdict machinery. The real generate runs once per input
    shape (the warm-up) and its output is replayed, so that the work is the same in every cycle."""
    CALLS = 200
    LOOPS = 10_000
    PROBE_MS = 6.0

    def slowdown(self, name: str) -> float:
        return float(os.environ.get(name, "0")) if self.options.get(name) else 0.0

    def load(self, model):
        from perf import protocol
        host = self.slowdown("PERF_DOUBLE_HOST_SLOWDOWN")
        protocol.host_probe_ms = lambda: self.PROBE_MS * (1 + host)  # read by the worker around each cycle
        self.replay = {}  # (input shape, generate arguments) -> the warm-up's output
        return super().load(model)

    def generate(self, inputs, stopping_criteria=None, **kwargs):
        key = (tuple(inputs["input_ids"].shape), repr(sorted(kwargs.items())))
        if key not in self.replay:
            self.replay[key] = super().generate(inputs, **kwargs)
        out = self.replay[key]
        calls = round(self.CALLS * (1 + self.slowdown("PERF_DOUBLE_SLOWDOWN")))
        loops = round(self.LOOPS * (1 + self.slowdown("PERF_DOUBLE_HOST_SLOWDOWN")))
        for _ in range(calls):
            unit_of_work(loops)
        if stopping_criteria is not None:  # a profiled cycle's step marker, once per new token
            for _ in range(out.shape[1] - inputs["input_ids"].shape[1]):
                stopping_criteria(out, None)
        return out


class Slowed(Paced):
    def __init__(self, options):
        super().__init__({**options, "PERF_DOUBLE_SLOWDOWN": True})


class HostSlowed(Paced):
    def __init__(self, options):
        super().__init__({**options, "PERF_DOUBLE_HOST_SLOWDOWN": True})


class BusyHost(Paced):
    """A steady backend on a host busy with other work (another job on a shared machine, a second
    pytest -n worker): while it generates, one spinning process per CPU it may run on."""

    def generate(self, inputs, **kwargs):
        import subprocess
        import sys
        spin = "print('spinning', flush=True)\nwhile True: pass"
        others = [subprocess.Popen([sys.executable, "-c", spin], stdout=subprocess.PIPE, text=True)
                  for _ in os.sched_getaffinity(0)]
        try:
            for other in others:  # all spinning before the work starts
                other.stdout.readline()
            return super().generate(inputs, **kwargs)
        finally:
            for other in others:
                other.kill()
                other.wait()
                other.stdout.close()


class PerturbedWeights(Reference):
    """A backend whose numerics are off (a broken kernel, a bad quantization): weights with 30%
    seeded noise. The correctness tests must catch it."""

    def load(self, model):
        import torch
        info = super().load(model)
        torch.manual_seed(0)
        with torch.no_grad():
            for p in self.model.parameters():
                p.mul_(1 + 0.3 * torch.randn_like(p))
        return info


DOUBLES = {spec.id: spec for spec in (
    BackendSpec("double_crash_on_load", "fp32", "crash on load", "tests.doubles:CrashOnLoad"),
    BackendSpec("double_killed", "fp32", "killed in generate", "tests.doubles:KilledInGenerate"),
    BackendSpec("double_hang", "fp32", "hangs in generate", "tests.doubles:HangInGenerate"),
    BackendSpec("double_kills_pytest", "fp32", "its pytest process killed at bs 2",
                "tests.doubles:KillsItsPytestFromBatch2"),
    BackendSpec("double_oom", "fp32", "OOM from bs 4", "tests.doubles:OomFromBatch4"),
    BackendSpec("double_perturbed", "bf16", "weights off by 30%", "tests.doubles:PerturbedWeights"),
    BackendSpec("double_zero_rank1_killed", "bf16", "ZeRO-3, rank 1 killed in generate",
                "tests.doubles:ZeroRank1Killed", multi_rank=True),
    BackendSpec("double_steady", "fp32", "steady timing", "tests.doubles:Paced"),
    BackendSpec("double_slowed", "fp32", "steady, slowed by PERF_DOUBLE_SLOWDOWN", "tests.doubles:Slowed"),
    BackendSpec("double_host_slowed", "fp32", "steady, on a host slowed by PERF_DOUBLE_HOST_SLOWDOWN",
                "tests.doubles:HostSlowed"),
    BackendSpec("double_busy_host", "fp32", "steady, on a host busy with other processes", "tests.doubles:BusyHost"),
)}


def pytest_perf_backends(backends):
    backends.update(DOUBLES)
