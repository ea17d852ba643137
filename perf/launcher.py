"""Starting and stopping backend workers: the one place that knows how a worker process is run.

One rank is a plain subprocess of the configured interpreter. The worker runs in a new process
session, so stopping it (or timing it out) kills everything it started; the worker also asks the
kernel to kill it if pytest dies first. Replies are read with a deadline: a hung worker is killed
after `timeout` seconds, and its death is reported with the tail of its stderr.
"""
import json
import os
import select
import signal
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STDERR_TAIL = 3000  # characters of a dead worker's stderr quoted in the failure


class WorkerFailed(Exception):
    """The worker crashed, hung or could not start; the message carries its stderr tail."""


class RemoteError(Exception):
    """The worker answered, with an error raised by the backend (kind: oom/unavailable/error)."""

    def __init__(self, kind: str, error: str, traceback: str):
        super().__init__(error)
        self.kind, self.error, self.traceback = kind, error, traceback


def launch_command(python: str, world_size: int = 1, hostfile: Path | None = None) -> list[str]:
    """One rank: the worker itself. N ranks on this node: torchrun, or DeepSpeed's launcher given a
    hostfile (of one host: perf/settings.py). Rank 0 answers pytest on the inherited pipes."""
    if world_size == 1:
        return [python, "-u", "-m", "perf.worker"]
    if hostfile is not None:
        # DeepSpeed's runner starts a one-host hostfile here, without ssh (so no ssh check);
        # the slots are the ranks, so no --num_gpus; the worker takes no --local_rank argument.
        return [python, "-u", "-m", "deepspeed.launcher.runner", f"--hostfile={hostfile}", "--no_ssh_check",
                "--master_addr=127.0.0.1", f"--master_port={free_port()}", "--no_local_rank",
                "--module", "perf.worker"]
    return [python, "-u", "-m", "torch.distributed.run", f"--nproc-per-node={world_size}",
            "--master-addr=127.0.0.1", f"--master-port={free_port()}", "-m", "perf.worker"]


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Worker:
    def __init__(self, name: str, python: str, pythonpath: list[str], timeout: float, log_dir: Path,
                 env: dict | None = None, world_size: int = 1, hostfile: Path | None = None):
        self.name = name
        self.timeout = timeout
        self.log_path = Path(log_dir) / f"{name}.worker.log"
        environ = dict(os.environ if env is None else env)
        # The repository first (for `perf`), then the backend's own packages, then the rest.
        paths = [str(REPO), *pythonpath]
        if environ.get("PYTHONPATH"):
            paths.append(environ["PYTHONPATH"])
        environ["PYTHONPATH"] = os.pathsep.join(paths)
        environ.setdefault("HF_HUB_OFFLINE", "1")
        environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w+b")
        self.command = launch_command(python, world_size, hostfile)
        try:
            self.proc = subprocess.Popen(self.command, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=self._log, env=environ,
                                         cwd=REPO, start_new_session=True)
        except OSError as exc:
            self._log.close()
            raise WorkerFailed(f"{name}: cannot start worker with {python!r}: {exc}") from exc
        self._buffer = b""
        self.world_size = world_size
        self.dead: str | None = None  # why this worker can no longer answer

    @property
    def pid(self) -> int:
        return self.proc.pid

    def call(self, op: str, timeout: float | None = None, **args):
        if self.dead:
            raise WorkerFailed(self.dead)
        try:
            self.proc.stdin.write((json.dumps({"op": op, **args}) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            self._fail(f"{self.name}: worker died before {op!r}")
        line = self._read_line(op, self.timeout if timeout is None else timeout)
        while not line.startswith(b"{"):  # torchrun and DeepSpeed's launcher print on stdout too: not a reply
            line = self._read_line(op, self.timeout if timeout is None else timeout)
        reply = json.loads(line)
        if not reply["ok"]:
            if self.world_size > 1:
                self._fail_if_exiting(op, reply["error"])
            raise RemoteError(reply["kind"], reply["error"], reply["traceback"])
        return reply["result"]

    def _fail_if_exiting(self, op: str, error: str, grace: float = 10.0) -> None:
        """Rank 0's error may be the echo of another rank's death (a collective whose peer is
        gone); torchrun then ends the job. That is a crash of the backend, not of the request."""
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            return
        self._fail(f"{self.name}: a rank died during {op!r}; rank 0 saw: {error}")

    def _read_line(self, op: str, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                self._fail(f"{self.name}: no answer to {op!r} within {timeout:g} s "
                           f"(--worker-timeout); worker killed")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    code = self.proc.wait()
                    how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
                    self._fail(f"{self.name}: worker died during {op!r} ({how})")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _fail(self, why: str):
        self.kill()
        self.dead = f"{why}\n--- worker stderr (tail, {self.log_path}) ---\n{self.stderr_tail()}"
        raise WorkerFailed(self.dead)

    def stderr_tail(self) -> str:
        self._log.flush()
        self._log.seek(0, os.SEEK_END)
        size = self._log.tell()
        self._log.seek(max(0, size - STDERR_TAIL))
        return self._log.read().decode(errors="replace")

    def kill(self) -> None:
        # The whole group, even when the worker itself has exited: what it started goes too.
        # torchrun puts each rank in a session of its own; the ranks die with it (PDEATHSIG).
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()

    def stop(self, grace: float = 10.0) -> None:
        """Ask the worker to exit; kill its whole process group if it does not in time."""
        if self.proc.poll() is None and not self.dead:
            try:
                self.proc.stdin.write(b'{"op": "exit"}\n')
                self.proc.stdin.close()
                self.proc.wait(grace)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                pass
        self.kill()  # also reaps anything left in the worker's process group
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream and not stream.closed:
                stream.close()
        self._log.close()
