"""The worker process: loads one backend once and answers the pytest process's requests.

    python -m perf.worker [--control=HOST:PORT]   (started by perf/launcher.py, never by hand;
                                                   N ranks: torchrun or DeepSpeed's launcher)

Rank 0 reads requests as JSON lines on stdin and writes replies as JSON lines on the original
stdout, which is moved aside first so that whatever the libraries print (to fd 1 too) lands in
stderr instead; with --control (several nodes), both go over a TCP connection back to pytest.
The other ranks follow rank 0's requests (broadcast) and reply nothing.
A reply is {"ok": true, "result": ...} or {"ok": false, "kind": "oom"|"unavailable"|"error",
"error": "...", "traceback": "..."}.
"""
import ctypes
import importlib
import json
import os
import signal
import sys
import time
import traceback

from perf import cputime, protocol
from perf.backends import BackendUnavailable
from perf.launcher import PIN_ENV, PROGRESS


def announce(text: str) -> None:
    """A line for the user: pytest prints it while it waits for this worker (perf.handle)."""
    sys.stderr.write(PROGRESS + text + "\n")
    sys.stderr.flush()


def _op_cache_per_virtualenv() -> None:
    """DeepSpeed JIT-compiles its ops into TORCH_EXTENSIONS_DIR (default ~/.cache/torch_extensions).
    Two virtualenvs sharing it rebuild each other's build of an op every run (their DeepSpeed
    sources sit at other paths); in a virtualenv, the ops go into it instead."""
    if "TORCH_EXTENSIONS_DIR" not in os.environ and sys.prefix != sys.base_prefix:
        os.environ["TORCH_EXTENSIONS_DIR"] = os.path.join(sys.prefix, "torch_extensions")


def _collapse_repeated_log_records() -> None:
    """A library logging the same line at every forward (bitsandbytes' "MatMul8bitLt: inputs will
    be cast ..." 9,660 times in one cell) buried the worker log: each distinct message of a logger
    is shown once, then again with its count at the 10th, 100th, 1000th... time."""
    import logging
    from collections import Counter
    seen = Counter()
    call_handlers = logging.Logger.callHandlers

    def once(self, record):
        key = (record.name, record.levelno, record.getMessage())
        seen[key] += 1
        n = seen[key]
        if n > 1:
            if str(n).strip("0") != "1":
                return
            record.msg, record.args = f"{key[2]} [the same message {n} times so far; repeats not shown]", ()
        call_handlers(self, record)

    logging.Logger.callHandlers = once


def _die_with_parent() -> None:
    # Linux: if pytest dies without stopping us (SIGKILL, crash), the kernel kills the worker.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def rank_cpus(cpus: list[int], local_rank: int, local_ranks: int) -> list[int]:
    """This rank's share of --cpus: equal consecutive slices, the remainder unused, as DeepSpeed's
    --bind_cores_to_rank deals cores; with fewer CPUs than ranks (which DeepSpeed refuses), one
    CPU each, in turn."""
    per = len(cpus) // local_ranks
    return cpus[local_rank * per:(local_rank + 1) * per] if per else [cpus[local_rank % len(cpus)]]


def _pin() -> None:
    """--cpus: this process onto its share of those CPUs before torch starts any thread (a thread
    keeps the affinity it was created with; the ones created later inherit this one)."""
    cpus = os.environ.get(PIN_ENV)
    if cpus:
        # The ranks on this host: torchrun says LOCAL_WORLD_SIZE, DeepSpeed's launcher LOCAL_SIZE.
        local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("LOCAL_SIZE") or "1")
        os.sched_setaffinity(0, rank_cpus(sorted(int(c) for c in cpus.split(",")),
                                          int(os.environ.get("LOCAL_RANK", "0")), local_ranks))


def _cpus_of_every_thread() -> list[int]:
    """The CPUs the kernel lets any thread of this process run on (after a load: torch's too)."""
    cpus = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            cpus |= os.sched_getaffinity(int(tid))
        except ProcessLookupError:  # the thread has ended since
            pass
    return sorted(cpus)


def _is_oom(exc: BaseException) -> bool:
    import torch
    return isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or "out of memory" in str(exc).lower()


class Session:
    """The loaded backend and the measurements the pytest process asks for."""

    def __init__(self):
        self.adapter = None

    def load(self, adapter: str, model: str, options: dict) -> dict:
        if self.adapter is not None:
            raise RuntimeError("this worker has already loaded a backend; one load per worker")
        log = os.environ.get("PERF_LOAD_LOG")  # lets tests count loads across processes
        if log:
            with open(log, "a") as f:
                f.write(json.dumps({"adapter": adapter, "pid": os.getpid(),
                                    "cpus": sorted(os.sched_getaffinity(0))}) + "\n")
        module, _, name = adapter.partition(":")
        cls = getattr(importlib.import_module(module), name)
        start = time.perf_counter()
        self.adapter = cls(options)
        info = self.adapter.load(model) or {}
        info["load_s"] = time.perf_counter() - start
        info["pid"] = os.getpid()
        if os.environ.get(PIN_ENV):  # what the kernel has for this rank, and torch's thread count
            import torch
            info.update(cpus=_cpus_of_every_thread(), torch_threads=torch.get_num_threads())
        info["versions"] = versions()
        info.setdefault("device", str(self.adapter.input_device))
        info["weight_bytes"] = self.adapter.weight_bytes()
        return info

    def _encode(self, prompts):
        enc = self.adapter.tokenizer(list(prompts), return_tensors="pt", padding=True)
        return {k: v.to(self.adapter.input_device) for k, v in enc.items()}

    def _generate(self, prompts, new_tokens: int, **kwargs):
        inputs = self._encode(prompts)
        # min_new_tokens: every row makes exactly new_tokens, so the token count is fixed.
        out = self.adapter.generate(inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                    do_sample=False, **kwargs)
        return inputs, out

    def cycle(self, batch_size: int, new_tokens: int) -> dict:
        """One timed call of the seed protocol: tokenize + generate + decode, between syncs; with
        the host CPU time it took and the host's load meanwhile (perf.cputime), over all ranks."""
        prompts = protocol.batch_prompts(batch_size)
        probe_before = protocol.host_probe_ms()
        self.adapter.synchronize()
        with cputime.CycleClock() as clock:
            start = time.perf_counter()
            inputs, out = self._generate(prompts, new_tokens)
            self.adapter.tokenizer.batch_decode(out, skip_special_tokens=True)
            self.adapter.synchronize()
            seconds = time.perf_counter() - start
        # As transformers-bloom-inference counts: output length - padded input length, per row.
        tokens = (out.shape[1] - inputs["input_ids"].shape[1]) * out.shape[0]
        return {"seconds": seconds, "new_tokens": tokens * self.adapter.streams,
                "host_probe_ms": (probe_before + protocol.host_probe_ms()) / 2,
                **cputime.combine(_gather(clock.figures()))}

    def first_token(self, batch_size: int) -> dict:
        """Time to first token: the same call with one new token (prefill + one decode step)."""
        return {"seconds": self.cycle(batch_size, 1)["seconds"]}

    def profiled_cycle(self, batch_size: int, new_tokens: int, count: str | None = None) -> dict:
        """One generate of the seed protocol's batch under torch.profiler (perf.profiling): GPU
        kernels per step; with `count`, the host's work too ("python": its calls; "dispatch": aten
        operators, syncs and copies); the slowest rank's figures, and each rank's."""
        from perf import profiling
        prompts = protocol.batch_prompts(batch_size)

        def generate(stopping_criteria) -> int:
            inputs, out = self._generate(prompts, new_tokens, stopping_criteria=stopping_criteria)
            return (out.shape[1] - inputs["input_ids"].shape[1]) * out.shape[0] * self.adapter.streams

        self.adapter.synchronize()
        ranks = _gather(profiling.profiled_generate(generate, self.adapter.cuda, count))
        slowest = max(ranks, key=lambda r: r["decode"]["kernel_ms"] if r["activity"] == "cuda" else r["generate_seconds"])
        return {**slowest, "per_rank": [_rank_summary(r) for r in ranks]} if len(ranks) > 1 else slowest

    def memory_bandwidth(self) -> dict:
        return {"gb_per_s": self.adapter.memory_bandwidth()}

    def reset_peak_memory(self) -> None:
        self.adapter.reset_peak_memory()

    def peak_memory(self) -> dict:
        return self.adapter.peak_memory()

    def greedy(self, prompts: list, new_tokens: int) -> dict:
        """Greedy token ids (new tokens only) with raw-logit sanity, for correctness tests."""
        import torch
        inputs, out = self._generate(prompts, new_tokens, output_logits=True, return_dict_in_generate=True)
        start = inputs["input_ids"].shape[1]
        logits = torch.stack(out.logits, dim=1)
        return {
            "tokens": out.sequences[:, start:].tolist(),
            "texts": self.adapter.tokenizer.batch_decode(out.sequences[:, start:], skip_special_tokens=True),
            "logits_finite": bool(torch.isfinite(logits.float()).all()),
        }

    def score(self, texts: list, path: str) -> dict:
        """Teacher-forced log-probabilities on fixed text, saved to `path` (too big for a pipe)."""
        import torch
        inputs = self._encode(texts)
        with torch.no_grad():
            logits = self.adapter.forward(inputs)
        mask = inputs["attention_mask"].bool().cpu()
        logprobs = torch.log_softmax(logits.float().cpu(), dim=-1)[mask]
        # Every rank computes (ZeRO gathers weights collectively); only rank 0, which replies,
        # writes: ranks writing the same file could leave pytest reading a truncated one.
        if int(os.environ.get("RANK", "0")) == 0:
            torch.save(logprobs, path)
        return {"positions": int(mask.sum())}


def _gather(mine: dict) -> list[dict]:
    """Every rank's `mine`, in rank order (each rank calls this at the same point of a request)."""
    import torch.distributed as dist
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [mine]
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    return everyone


def _rank_summary(profiled: dict) -> dict:
    if profiled["activity"] == "cuda":
        return {"decode_kernel_ms": profiled["decode"]["kernel_ms"], "prefill_kernel_ms": profiled["prefill"]["kernel_ms"],
                "decode_launches": profiled["decode"]["launches"]}
    return {"generate_seconds": profiled["generate_seconds"]}


def versions() -> dict:
    import platform
    from importlib import metadata
    found = {"python": platform.python_version()}
    for name in ("torch", "transformers", "accelerate", "deepspeed", "bitsandbytes"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def classify(exc: BaseException) -> str:
    if isinstance(exc, BackendUnavailable):
        return "unavailable"
    return "oom" if _is_oom(exc) else "error"


def _requests(rank: int, world: int, source):
    """Rank 0 reads the requests; with several ranks (torchrun), it broadcasts each one and the
    other ranks follow it, so that every rank runs the same operation (collectives line up)."""
    if world > 1:
        import torch.distributed as dist
    while True:
        line = source.readline() if rank == 0 else None
        if world > 1:
            box = [line]
            dist.broadcast_object_list(box, src=0)
            line = box[0]
        if not line:
            return
        request = json.loads(line)
        if request["op"] == "exit":
            return
        yield request


def _init_ranks() -> tuple[int, int]:
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        import torch
        import torch.distributed as dist
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        # Requests travel over gloo; DeepSpeed's collectives take NCCL on GPUs.
        dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
    return rank, world


def _channel(rank: int):
    """Rank 0's (requests, replies): pytest's pipes, or, with --control=HOST:PORT (several nodes,
    perf/launcher.py), a TCP connection back to pytest."""
    if rank != 0:
        return None, None
    control = next((arg.partition("=")[2] for arg in sys.argv[1:] if arg.startswith("--control=")), None)
    if control is None:
        return sys.stdin, os.fdopen(os.dup(1), "w", buffering=1)
    import socket
    host, _, port = control.rpartition(":")
    connection = socket.create_connection((host, int(port)), timeout=60)
    connection.settimeout(None)
    return connection.makefile("r"), connection.makefile("w")  # main() flushes each reply


def main() -> None:
    _die_with_parent()
    _op_cache_per_virtualenv()
    _pin()
    rank, world = _init_ranks()
    requests, replies = _channel(rank)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _collapse_repeated_log_records()
    session = Session()
    for request in _requests(rank, world, requests):
        op = request.pop("op")
        try:
            reply = {"ok": True, "result": getattr(session, op)(**request)}
        except Exception as exc:  # every failure goes back to pytest, which decides
            reply = {"ok": False, "kind": classify(exc), "error": f"{type(exc).__name__}: {exc}",
                     "traceback": traceback.format_exc()}
            if reply["kind"] == "oom" and session.adapter is not None:
                session.adapter.release_memory()
        if replies is not None:
            replies.write(json.dumps(reply) + "\n")
            replies.flush()  # a socket's text file does not flush at the newline


if __name__ == "__main__":
    main()
