"""One generate cycle under torch.profiler, inside a worker: the evidence that does not follow the
host's speed. On a GPU (CUDA activity only, to keep the profiler's own cost low): every kernel's
device time and launches, memcpy and memset apart, split into the prefill (the first step) and
the decode steps. On a CPU: the aten operators dispatched, per token.

Steps are told apart by a marker: a StoppingCriteria, which generate calls once per new token
after that step's work, launches one tiny kernel (torch.cuda._sleep, named `spin_kernel`). Kernels
ordered by their start on the device before the first marker are the prefill's, those between two
markers one decode step's; the markers themselves are not counted.
"""
import time

MARKER = "spin_kernel"  # the kernel of torch.cuda._sleep


def step_marker(cuda: bool):
    """A StoppingCriteria that never stops generation and, on CUDA, marks the end of each step."""
    import torch
    from transformers import StoppingCriteria

    class StepMarker(StoppingCriteria):
        calls = 0
        _never: dict = {}

        def __call__(self, input_ids, scores, **kwargs):
            StepMarker.calls += 1
            if cuda:
                torch.cuda._sleep(0)
            key = (input_ids.shape[0], input_ids.device)
            if key not in self._never:  # one tensor per shape: no fill kernel inside a step
                self._never[key] = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
            return self._never[key]

    return StepMarker()


def profiled_generate(generate, cuda: bool) -> dict:
    """Run `generate(stopping_criteria)` (one cycle) under the profiler and summarize its events."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    from transformers import StoppingCriteriaList
    marker = step_marker(cuda)
    activity = ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU
    start = time.perf_counter()
    with profile(activities=[activity], record_shapes=False, with_stack=False, profile_memory=False) as prof:
        new_tokens = generate(StoppingCriteriaList([marker]))
        if cuda:
            torch.cuda.synchronize()
    events = prof.profiler.kineto_results.events()
    summary = summarize_cuda(events) if cuda else summarize_cpu(events)
    summary.update(new_tokens=new_tokens, steps=marker.calls, seconds=time.perf_counter() - start)
    return summary


def summarize_cpu(events) -> dict:
    """The aten operators dispatched (nested ones included: the same code dispatches the same)."""
    return {"activity": "cpu", "aten_ops": sum(1 for e in events if e.name().startswith("aten::"))}


def _kind(name: str) -> str:
    if name.startswith("Memcpy"):
        return "memcpy"
    if name.startswith("Memset"):
        return "memset"
    return "kernel"


def summarize_cuda(events) -> dict:
    """Kernel, memcpy and memset time and launches of the prefill and of all decode steps together,
    with each kernel's (launches, ms) per phase; decode_steps: the decode steps seen."""
    import torch
    device = [e for e in events if e.device_type() == torch.autograd.DeviceType.CUDA]
    device.sort(key=lambda e: e.start_ns())
    markers = [i for i, e in enumerate(device) if MARKER in e.name()]
    if not markers:
        raise RuntimeError(f"no {MARKER} step marker among {len(device)} CUDA events: cannot split the steps")
    phases = {"prefill": _phase(), "decode": _phase()}
    marks = set(markers)
    for i, e in enumerate(device):
        if i in marks or i > markers[-1]:
            continue  # the markers, and what follows the last step (nothing of generate's)
        phase = phases["prefill" if i < markers[0] else "decode"]
        name, ms = e.name(), e.duration_ns() / 1e6
        kind = _kind(name)
        phase[f"{kind}_ms"] += ms
        if kind == "kernel":
            phase["launches"] += 1
            launches, total = phase["kernels"].get(name, (0, 0.0))
            phase["kernels"][name] = (launches + 1, total + ms)
    return {"activity": "cuda", "decode_steps": len(markers) - 1, **phases}


def _phase() -> dict:
    return {"kernel_ms": 0.0, "memcpy_ms": 0.0, "memset_ms": 0.0, "launches": 0, "kernels": {}}
