"""The pytest side of one loaded backend: its worker, how its load went, and what it hit.

A load that fails or a worker that dies makes every later test of that backend fail with the
same message (its error and stderr tail); a backend that cannot run here skips them with the
reason; an OOM at one batch size marks the larger ones OOM without running them.
"""
import pytest

from perf.backends import BackendSpec
from perf.launcher import RemoteError, Worker, WorkerFailed
from perf.settings import Settings


class BackendHandle:
    def __init__(self, spec: BackendSpec, settings: Settings, log_dir):
        self.spec = spec
        self.info: dict = {}
        self.unavailable: str | None = None  # why this backend cannot run here
        self.failure: str | None = None  # why its tests fail
        self.oom_at: int | None = None  # smallest batch size that ran out of memory
        self.greedy: dict | None = None  # the greedy generation both greedy tests check
        self.worker: Worker | None = None
        env = settings.env_for(spec.id)
        try:
            self.worker = Worker(spec.id, env.python, list(env.pythonpath), settings.worker_timeout, log_dir,
                                 world_size=settings.world_size_for(spec), hostfile=settings.hostfile,
                                 cpus=settings.cpus)
            self.info = self.worker.call("load", adapter=spec.adapter, model=settings.model,
                                         options={"max_memory": settings.max_memory})
            self.info["launch"] = self.worker.command  # how its ranks were started (torchrun, DeepSpeed)
        except RemoteError as exc:
            if exc.kind == "unavailable":
                self.unavailable = exc.error.partition(": ")[2]
            else:
                self.failure = (f"{spec.id}: load failed: {exc.error}\n{exc.traceback}"
                                f"--- worker stderr (tail) ---\n{self.worker.stderr_tail()}")
        except WorkerFailed as exc:
            self.failure = str(exc)

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

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()


def fail_remote(exc: RemoteError):
    pytest.fail(f"{exc.error}\n{exc.traceback}", pytrace=False)
