"""Slowdowns injected from outside the suite, to check that its verdicts see them.

    PYTHONPATH=scripts/inject:$PYTHONPATH PERF_INJECT=gpu-matmul:4096 pytest perf ...
    PYTHONPATH=scripts/inject:$PYTHONPATH PERF_INJECT=host-burn:0.10 pytest perf ...

Python imports this file at the start of every process whose path holds it, the suite's workers
(each of them then imports transformers at start; other processes are left alone). It wraps transformers' generate, which every
backend calls:
  gpu-matmul:N    each forward of the model (each generate step) also multiplies two N x N
                  matrices on the GPU: one more kernel per step (N=4096 in bf16: about 0.2 ms on an H200)
  host-burn:F     after each generate, spin the CPU for F times the time generate took (host-side
                  work: Python or launch overhead that a library upgrade might add)
Unset or empty PERF_INJECT: nothing changes.
"""
import os
import time

_SPEC = os.environ.get("PERF_INJECT", "")


def _install() -> None:
    kind, _, value = _SPEC.partition(":")
    if kind not in ("gpu-matmul", "host-burn"):
        raise SystemExit(f"PERF_INJECT={_SPEC!r}: expected gpu-matmul:N or host-burn:F")
    try:  # the process's own transformers (ds_fp16's workers have 4.43.4 first on their path)
        from transformers.generation.utils import GenerationMixin
    except ImportError:  # a process without transformers: nothing to slow down
        return
    _wrap(GenerationMixin, kind, float(value))


def _wrap(mixin, kind: str, value: float) -> None:
    generate = mixin.generate

    def slowed(self, *args, **kwargs):
        if kind == "gpu-matmul" and not getattr(self, "_perf_injected", False):
            import torch
            n = int(value)
            a = torch.randn(n, n, device=self.device, dtype=self.dtype if self.dtype.is_floating_point else torch.float16)

            def one_more_kernel(module, inputs, output) -> None:  # None: the output is kept
                torch.mm(a, a)

            self.register_forward_hook(one_more_kernel)
            self._perf_injected = True
        start = time.perf_counter()
        out = generate(self, *args, **kwargs)
        if kind == "host-burn":
            until = time.perf_counter() + value * (time.perf_counter() - start)
            while time.perf_counter() < until:
                pass
        return out

    mixin.generate = slowed


import sys  # noqa: E402

# Only in the suite's workers (pytest's own process must not import transformers this early).
if _SPEC and "perf.worker" in getattr(sys, "orig_argv", []):
    _install()
