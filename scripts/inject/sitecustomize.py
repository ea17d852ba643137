"""Slowdowns injected from outside the suite, to check that its verdicts see them.

    PYTHONPATH=$PWD/scripts/inject:$PYTHONPATH PERF_INJECT=gpu-matmul:4096 pytest perf ...
    PYTHONPATH=$PWD/scripts/inject:$PYTHONPATH PERF_INJECT=host-burn:0.10 pytest perf ...
    PYTHONPATH=$PWD/scripts/inject:$PYTHONPATH PERF_INJECT=python-work:0.10 pytest perf ...
    PYTHONPATH=$PWD/scripts/inject:$PYTHONPATH PERF_INJECT=host-sleep:1.0 pytest perf ...
    PYTHONPATH=$PWD/scripts/inject:$PYTHONPATH PERF_INJECT=py-work:200 pytest perf ...

A relative path works too (the suite makes each PYTHONPATH entry absolute for its workers, which
run in their log folder); a path that does not hold this file leaves the run unslowed, silently.

Python imports this file at the start of every process whose path holds it, the suite's workers
(each of them then imports transformers at start; other processes are left alone). It wraps transformers' generate, which every
backend calls:
  gpu-matmul:N    each forward of the model (each generate step) also multiplies two N x N
                  matrices on the GPU: one more kernel per step (N=4096 in bf16: about 0.2 ms on an H200)
  host-burn:F     after each generate, spin the CPU for F times the time generate took (host-side
                  work: Python or launch overhead that a library upgrade might add)
  python-work:F   each forward (each generate step) also makes N calls of a small Python function,
                  `extra_python_work`, N set at the process's second generate (the first is a
                  warm-up, slower) so that they take F times a step's time (what a library upgrade
                  adding Python work to every step does)
  host-sleep:F    after each generate, sleep F times the time generate took (the worker waits: a
                  blocking call, a lock, a sleep)
  py-work:N       each forward (each generate step) also makes N small Python calls, each one tiny
                  operation on a one-element CPU tensor: a fixed amount of Python and dispatcher
                  work per step (5 aten operators a call, no GPU kernel), as a library that adds a
                  per-step check would (the nightly history's CPU runs, docs/notes/2026-12-06-history-change-points.md)
Unset or empty PERF_INJECT: nothing changes.
"""
import os
import sys
import time

_SPEC = os.environ.get("PERF_INJECT", "")


def _install() -> None:
    kind, _, value = _SPEC.partition(":")
    if kind not in ("gpu-matmul", "host-burn", "python-work", "host-sleep", "py-work"):
        raise SystemExit(f"PERF_INJECT={_SPEC!r}: expected gpu-matmul:N, host-burn:F, python-work:F, host-sleep:F "
                         "or py-work:N")
    try:  # the process's own transformers (ds_fp16's workers have 4.43.4 first on their path)
        from transformers.generation.utils import GenerationMixin
    except ImportError:  # a process without transformers: nothing to slow down
        return
    _wrap(GenerationMixin, kind, float(value))


def extra_python_work(x: int) -> int:
    """The unit of injected Python work: one call, a little arithmetic."""
    return x + 1


_CALLS_PER_STEP: list = []  # python-work: N, set once per process
_GENERATES: list = []  # python-work: the generates before N is set


def _calibrate(step_seconds: float, share: float) -> int:
    """How many calls of extra_python_work take `share` of a step of `step_seconds`."""
    start, n = time.perf_counter(), 20000
    for i in range(n):
        extra_python_work(i)
    per_call = (time.perf_counter() - start) / n
    return max(1, round(share * step_seconds / per_call))


def _wrap(mixin, kind: str, value: float) -> None:
    generate = mixin.generate

    def slowed(self, *args, **kwargs):
        if kind == "python-work" and not _CALLS_PER_STEP:
            _GENERATES.append(1)
            if len(_GENERATES) == 1:  # the warm-up: first calls are slower
                return generate(self, *args, **kwargs)
            start = time.perf_counter()
            out = generate(self, *args, **kwargs)  # a step's time, from the second generate
            steps = max(1, kwargs.get("max_new_tokens") or 1)
            _CALLS_PER_STEP.append(_calibrate((time.perf_counter() - start) / steps, value))
            print(f"sitecustomize: python-work:{value}: {_CALLS_PER_STEP[0]} calls of extra_python_work per step",
                  file=sys.stderr, flush=True)

            def more_python_work(module, inputs, output) -> None:
                for i in range(_CALLS_PER_STEP[0]):
                    extra_python_work(i)

            self.register_forward_hook(more_python_work)
            return out
        if kind == "gpu-matmul" and not getattr(self, "_perf_injected", False):
            import torch
            n = int(value)
            a = torch.randn(n, n, device=self.device, dtype=self.dtype if self.dtype.is_floating_point else torch.float16)

            def one_more_kernel(module, inputs, output) -> None:  # None: the output is kept
                torch.mm(a, a)

            self.register_forward_hook(one_more_kernel)
            self._perf_injected = True
        if kind == "py-work" and not getattr(self, "_perf_injected", False):
            import torch
            calls, one = int(value), torch.zeros(1)

            def small_call(x):
                return x.add(0)

            def more_small_calls(module, inputs, output) -> None:  # None: the output is kept
                for _ in range(calls):
                    small_call(one)

            self.register_forward_hook(more_small_calls)
            self._perf_injected = True
        start = time.perf_counter()
        out = generate(self, *args, **kwargs)
        if kind == "host-burn":
            until = time.perf_counter() + value * (time.perf_counter() - start)
            while time.perf_counter() < until:
                pass
        if kind == "host-sleep":
            time.sleep(value * (time.perf_counter() - start))
        return out

    mixin.generate = slowed


# Only in the suite's workers (pytest's own process must not import transformers this early).
if _SPEC and "perf.worker" in getattr(sys, "orig_argv", []):
    _install()
