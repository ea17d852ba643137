"""The pytest side of one loaded backend: its worker, how its load went, and what it hit.

A load that fails or a worker that dies makes every later test of that backend fail with the
same message (its error and stderr tail); a backend that cannot run here skips them with the
reason; an OOM at one batch size marks the larger ones OOM without running them.
"""
import time
from pathlib import Path

import pytest

from perf import profiling
from perf.backends import BackendSpec
from perf.launcher import PROGRESS, RemoteError, Worker, WorkerFailed
from perf.settings import Settings


class BackendHandle:
    def __init__(self, spec: BackendSpec, settings: Settings, log_dir, progress=None, side: str | None = None):
        """Start the backend's worker and load it; `progress(text)` hears when the load starts and
        ends, and what the worker announces meanwhile (a DeepSpeed op being built). `side`: "base"
        or "head" in a side-by-side run (perf.ab): the base runs the --base checkout's code, each
        side under its --base-python / --head-python if given."""
        self.spec, self.settings, self.log_dir, self.side = spec, settings, log_dir, side
        self.name = f"{spec.id}.{side}" if side else spec.id
        self.progress = progress or (lambda text: None)
        self.oom_at: int | None = None  # smallest batch size that ran out of memory
        self.greedy: dict | None = None  # the greedy generation both greedy tests check
        self.worker: Worker | None = None
        self._open()

    @property
    def loaded(self) -> bool:
        return self.worker is not None

    def _open(self) -> None:
        spec, settings, say = self.spec, self.settings, self.progress
        self.info: dict = {}
        self.unavailable: str | None = None  # why this backend cannot run here
        self.failure: str | None = None  # why its tests fail
        env = settings.env_for(spec.id)
        python = {"base": settings.base_python, "head": settings.head_python}.get(self.side) or env.python
        start = time.monotonic()
        try:
            self.worker = Worker(self.name, python, list(env.pythonpath), settings.worker_timeout, self.log_dir,
                                 world_size=settings.world_size_for(spec), hostfile=settings.hostfile,
                                 cpus=settings.cpus, source=settings.base if self.side == "base" else None)
            say(f"{self.name}: loading {settings.model_name} (worker log {self.worker.log_path})")
            watcher = LogWatcher(self.worker.log_path, lambda line: say(f"{self.name}: {line}"))
            self.info = self.worker.call("load", adapter=spec.adapter, model=settings.model,
                                         options={"max_memory": settings.max_memory}, on_wait=watcher)
            watcher()
            self.info["launch"] = self.worker.command  # how its ranks were started (torchrun, DeepSpeed)
            say(f"{self.name}: ready in {time.monotonic() - start:.1f} s")
        except RemoteError as exc:
            if exc.kind == "unavailable":
                self.unavailable = exc.error.partition(": ")[2]
                say(f"{self.name}: cannot run here: {self.unavailable}")
            else:
                self.failure = (f"{self.name}: load failed: {exc.error}\n{exc.traceback}"
                                f"--- worker stderr (tail) ---\n{self.worker.stderr_tail()}")
                say(f"{self.name}: load failed after {time.monotonic() - start:.1f} s: {exc.error}")
        except WorkerFailed as exc:
            self.failure = str(exc)
            say(f"{self.name}: load failed after {time.monotonic() - start:.1f} s: {self.failure.splitlines()[0]}")

    def unload(self) -> None:
        """Stop the worker, freeing its memory (side-by-side runs that take turns); reload() again."""
        self.close()
        self.worker = None

    def reload(self) -> None:
        self._open()

    def require(self) -> None:
        """Skip or fail the calling test if this backend cannot answer."""
        if self.unavailable:
            pytest.skip(f"{self.spec.id}: {self.unavailable}")
        if self.failure:
            pytest.fail(self.failure, pytrace=False)

    def call(self, op: str, **args):
        """Ask the worker; a dead worker fails this and every later test of the backend.
        RemoteError (the backend raised, the worker lives on) goes to the caller."""
        self.require()
        try:
            return self.worker.call(op, **args)
        except WorkerFailed as exc:
            self.failure = str(exc)
            pytest.fail(self.failure, pytrace=False)

    def profiled_cycles(self, batch_size: int, new_tokens: int, cycles: int) -> list[dict]:
        """The cell's profiled cycles (perf.profiling): two short counted cycles of the host's work
        (its Python calls; its operators, syncs, allocations and copies), then on a GPU `cycles`
        cycles of its kernels; none with `cycles` 0. A worker from before counting (a side-by-side
        base) is asked for plain profiled cycles."""
        if cycles == 0:
            return []
        short = min(new_tokens, profiling.COUNT_TOKENS)
        try:
            counted = [self.call("profiled_cycle", batch_size=batch_size, new_tokens=short, count=count)
                       for count in ("python", "dispatch")]
        except RemoteError as exc:
            if "unexpected keyword argument 'count'" not in exc.error:
                raise
            counted = []
        gpu = self.info.get("device", "").startswith("cuda") or not counted
        return counted + [self.call("profiled_cycle", batch_size=batch_size, new_tokens=new_tokens)
                          for _ in range(cycles if gpu else 0)]

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()


def fail_remote(exc: RemoteError):
    pytest.fail(f"{exc.error}\n{exc.traceback}", pytrace=False)


class LogWatcher:
    """Calls `say(text)` for each new PROGRESS line of a worker's log, each time it is called."""

    def __init__(self, path: Path, say):
        self.path, self.say, self.offset = Path(path), say, 0

    def __call__(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1  # whole lines only; the rest is read next time
        self.offset += end
        for line in data[:end].decode(errors="replace").splitlines():
            if line.startswith(PROGRESS):
                self.say(line[len(PROGRESS):])
