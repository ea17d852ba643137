"""One generate cycle under torch.profiler or cProfile, inside a worker: the evidence that does not
follow the host's speed. A profiled cycle (on a GPU): every kernel's device time and launches,
memcpy and memset apart, split into the prefill (the first step) and the decode steps.

Two short counted cycles (COUNT_TOKENS new tokens) count the host's work, exactly, by name: the
first the Python function calls generate makes, C functions included (cProfile, which also gives
each function's own time: what a change in its calls costs); the second the aten operators
dispatched (CPU activity) and, on a GPU, what the host asks of the device beside kernel launches:
synchronizations, memory allocations and host-device copies, from CUDA runtime events. The same
code makes the same calls; a busy or slower host does not change them. The counts need no long
cycle, and kineto's processing of a full cycle's operator events cost more than the cycle itself.

Steps are told apart by a marker: a StoppingCriteria, which generate calls once per new token
after that step's work, launches one tiny kernel (torch.cuda._sleep, named `spin_kernel`). Kernels
ordered by their start on the device before the first marker are the prefill's, those between two
markers one decode step's; the markers themselves are not counted.
"""
import contextlib
import cProfile
import os
import sys
import time

from perf.evidence import canonical

MARKER = "spin_kernel"  # the kernel of torch.cuda._sleep
COUNT_TOKENS = 16  # new tokens per row of a counted cycle (the run's --new-tokens if fewer)
# The CUDA runtime calls that make the host wait for the device (the synchronous cudaMemcpy too).
SYNC_CALLS = ("cudaDeviceSynchronize", "cudaStreamSynchronize", "cudaEventSynchronize", "cudaStreamWaitEvent",
              "cudaMemcpy", "cudaMemcpy2D", "cudaMemcpyFromSymbol", "cudaMemcpyToSymbol")
# The CUDA runtime calls that take or give back device memory: once torch's caching allocator is
# warm, none in a step; allocator churn (a cache flushed every step) shows here.
ALLOC_CALLS = ("cudaMalloc", "cudaFree", "cudaMallocAsync", "cudaFreeAsync", "cudaHostAlloc", "cudaFreeHost")


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


def profiled_generate(generate, cuda: bool, count: str | None = None) -> dict:
    """Run `generate(stopping_criteria)` (one cycle) under the profiler and summarize its events:
    the GPU's kernels; or, a counted cycle, the host's work: count="python" its Python calls, with
    nothing else on the host side (kineto's CPU events would weigh on every operator and make a
    function's share of the cycle mean little); count="dispatch" the aten operators, and on a GPU
    the syncs, allocations and copies (CPU activity, and CUDA's for the runtime calls)."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    from transformers import StoppingCriteriaList
    marker = step_marker(cuda)
    activities = ([ProfilerActivity.CUDA] if cuda and count != "python" else []) + \
        ([ProfilerActivity.CPU] if count == "dispatch" else [])
    calls = cProfile.Profile(builtins=True) if count == "python" else None
    start = time.perf_counter()
    with profile(activities=activities, record_shapes=False, with_stack=False, profile_memory=False) \
            if activities else contextlib.nullcontext() as prof:
        if calls is not None:
            calls.enable()
        try:
            new_tokens = generate(StoppingCriteriaList([marker]))
        finally:
            if calls is not None:
                calls.disable()
        if cuda:
            torch.cuda.synchronize()
    generate_seconds = time.perf_counter() - start
    events = prof.profiler.kineto_results.events() if activities else []
    if count is None:
        summary = summarize_cuda(events)
    elif count == "python":
        summary = {"activity": "count", "counted": True, "python": python_calls(calls)}
    else:
        summary = {"activity": "count", "counted": True, **summarize_cpu(events), **(host_device(events) if cuda else {})}
    # seconds: with kineto's processing of the events (the profiled cycle's cost); generate_seconds:
    # the generate alone, what a counted function's own time is a share of.
    summary.update(new_tokens=new_tokens, steps=marker.calls, seconds=time.perf_counter() - start,
                   generate_seconds=generate_seconds)
    return summary


def _source(filename: str) -> str:
    """A function's file as it reads on every machine: relative to the import root it was found
    under (site-packages, a --target folder, the checkout), so that a base checkout and the head,
    or two machines, name the same function alike."""
    roots = sorted((os.path.join(os.path.abspath(p or os.curdir), "") for p in sys.path), key=len, reverse=True)
    return next((filename[len(root):] for root in roots if filename.startswith(root)), os.path.basename(filename))


def python_calls(calls: "cProfile.Profile") -> dict:
    """{name: [calls, own ms]} of every function called (Python and C), from cProfile: a Python
    function named `file:qualified name`, a C function as cProfile names it."""
    out: dict = {}
    for entry in calls.getstats():
        code = entry.code
        name = canonical(code) if isinstance(code, str) else \
            f"{_source(code.co_filename)}:{getattr(code, 'co_qualname', code.co_name)}"
        if "_lsprof.Profiler" in name:
            continue  # the counter's own disable()
        count, ms = out.get(name, (0, 0.0))
        out[name] = [count + entry.callcount, ms + 1000 * entry.inlinetime]
    return out


def summarize_cpu(events) -> dict:
    """The aten operators dispatched (nested ones included: the same code dispatches the same), by
    name with their count and own CPU time (less what they dispatched)."""
    import torch
    ops = [e for e in events if e.device_type() == torch.autograd.DeviceType.CPU and e.name().startswith("aten::")]
    by_name: dict = {}
    for name, ms in _own_times(ops):
        count, total = by_name.get(name, (0, 0.0))
        by_name[name] = [count + 1, total + ms]
    return {"aten": by_name}


def _own_times(ops) -> list[tuple[str, float]]:
    """(name, ms) of each operator less the operators it ran inside it (on the same thread)."""
    own = []
    open_ops: dict = {}  # thread -> stack of [end_ns, index]
    for i, e in enumerate(sorted(ops, key=lambda e: (e.start_ns(), -e.duration_ns()))):
        stack = open_ops.setdefault(e.start_thread_id(), [])
        while stack and stack[-1][0] <= e.start_ns():
            stack.pop()
        own.append([e.name(), e.duration_ns() / 1e6])
        if stack:
            own[stack[-1][1]][1] -= e.duration_ns() / 1e6
        stack.append([e.start_ns() + e.duration_ns(), len(own) - 1])
    return [(name, max(ms, 0.0)) for name, ms in own]


def host_device(events) -> dict:
    """What the host asked of the device beside kernel launches: the CUDA runtime calls that wait
    for it, and those that take or free device memory ({name: [calls, ms]}), and the copies the
    device ran ({direction: [copies, ms]}). (Their
    bytes are not in the events' metadata on torch 2.11: every copy read 0 bytes on the H100.)"""
    import torch
    syncs: dict = {}
    allocs: dict = {}
    copies: dict = {}
    for e in events:
        name = e.name()
        on_host = e.device_type() == torch.autograd.DeviceType.CPU
        if on_host and (name in SYNC_CALLS or name in ALLOC_CALLS):
            calls = syncs if name in SYNC_CALLS else allocs
            count, ms = calls.get(name, (0, 0.0))
            calls[name] = [count + 1, ms + e.duration_ns() / 1e6]
        elif e.device_type() == torch.autograd.DeviceType.CUDA and name.startswith("Memcpy"):
            direction = name.split(" (")[0]  # "Memcpy HtoD (Pageable -> Device)" -> "Memcpy HtoD"
            count, ms = copies.get(direction, (0, 0.0))
            copies[direction] = [count + 1, ms + e.duration_ns() / 1e6]
    return {"syncs": syncs, "allocs": allocs, "copies": copies}


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
