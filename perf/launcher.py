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
import socket
import subprocess
import time
from pathlib import Path

from perf.guard import shm_buffers

# The folder holding the `perf` package. In a checkout (or an editable install) it goes on the
# workers' PYTHONPATH, behind the backend's own entries; an installed package is found by the
# interpreter itself (a site-packages folder on PYTHONPATH would shadow a backend's own packages).
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
IN_CHECKOUT = (PACKAGE_ROOT / "pyproject.toml").is_file()
GUARD = str(Path(__file__).with_name("guard.py"))
STDERR_TAIL = 3000  # characters of a dead worker's stderr quoted in the failure


class WorkerFailed(Exception):
    """The worker crashed, hung or could not start; the message carries its stderr tail."""


class RemoteError(Exception):
    """The worker answered, with an error raised by the backend (kind: oom/unavailable/error)."""

    def __init__(self, kind: str, error: str, traceback: str):
        super().__init__(error)
        self.kind, self.error, self.traceback = kind, error, traceback


def launch_command(python: str, world_size: int = 1, hostfile=None, control: str | None = None) -> list[str]:
    """One rank: the worker itself. N ranks on this node: torchrun, or DeepSpeed's launcher given a
    hostfile (perf.options.Hostfile). On one host rank 0 answers pytest on the inherited pipes;
    with several, DeepSpeed starts every node through pdsh, which carries no stdin, so rank 0
    connects back to `control` (HOST:PORT, passed as a worker argument: pdsh exports only some
    environment variables)."""
    if world_size == 1:  # the worker dies with pytest by itself (perf.worker)
        return [python, "-u", "-m", "perf.worker"]
    # By its path: a --base checkout's workers run that checkout's perf, which may have no guard.
    return [python, GUARD, *_ranks_command(python, world_size, hostfile, control)]


def _ranks_command(python: str, world_size: int, hostfile, control: str | None) -> list[str]:
    if hostfile is not None:
        # No ssh check (a one-host hostfile needs no ssh; several need it working anyway); the
        # slots are the ranks, so no --num_gpus; the worker takes no --local_rank argument.
        # Rank 0 runs on the first host, so the ranks meet there (on a port found free here:
        # with pytest on another host than the first, it may be taken there, and the job fails).
        master = next(iter(hostfile.hosts)) if hostfile.multi_node else "127.0.0.1"
        command = [python, "-u", "-m", "deepspeed.launcher.runner", f"--hostfile={hostfile.path}", "--no_ssh_check",
                   f"--master_addr={master}", f"--master_port={free_port()}", "--no_local_rank",
                   "--module", "perf.worker"]
        return command + ([f"--control={control}"] if control else [])
    return [python, "-u", "-m", "torch.distributed.run", f"--nproc-per-node={world_size}",
            "--master-addr=127.0.0.1", f"--master-port={free_port()}", "-m", "perf.worker"]


def control_host() -> str:
    """The name the ranks of other nodes reach this one by (PERF_CONTROL_HOST overrides it)."""
    return os.environ.get("PERF_CONTROL_HOST") or socket.gethostname()


PIN_ENV = "PERF_CPUS"  # --cpus, as the workers read it
PROGRESS = "perf-progress: "  # a line a worker writes on stderr for the user to see (perf.worker.announce)
RANK_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")  # torch.distributed's env://


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def single_rank_env() -> dict[str, str]:
    """What a launcher sets for one rank alone on this host, for torch.distributed's rendezvous."""
    return dict(zip(RANK_ENV, ("0", "0", "1", "127.0.0.1", str(free_port()))))


def cpu_set(text: str) -> tuple[int, ...]:
    """--cpus '4,5' -> (4, 5), CPUs this process may run on (Linux); ValueError saying what is wrong."""
    try:
        cpus = tuple(sorted({int(part) for part in text.split(",")}))
    except ValueError:
        raise ValueError(f"--cpus {text!r}: expected comma-separated CPU numbers, e.g. --cpus 4 or --cpus 4,5") from None
    if not hasattr(os, "sched_getaffinity"):
        raise ValueError("--cpus needs Linux (os.sched_setaffinity); leave it out here")
    allowed = os.sched_getaffinity(0)
    if not set(cpus) <= allowed:
        raise ValueError(f"--cpus {text}: CPU(s) {sorted(set(cpus) - allowed)} not available here; "
                         f"this process may run on {sorted(allowed)}")
    return cpus


# What a worker's environment has unless the caller's says otherwise: never wait on the hub; no
# tokenizers thread pool (it warns, and turns itself off, in a process that forks after using it).
WORKER_ENV_DEFAULTS = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


class Worker:
    def __init__(self, name: str, python: str, pythonpath: list[str], timeout: float, log_dir: Path,
                 env: dict | None = None, world_size: int = 1, hostfile=None, cpus=None, source: Path | None = None):
        """`source`: a checkout whose `perf` the worker runs (pytest --base); default this package."""
        self.name = name
        self.timeout = timeout
        self.log_path = Path(log_dir) / f"{name}.worker.log"
        environ = dict(os.environ if env is None else env)
        # The backend's own packages first (transformers 4.43.4 for ds_fp16), then `perf`, then the rest.
        own = [str(source)] if source is not None else [str(PACKAGE_ROOT)] if IN_CHECKOUT else []
        paths = [*pythonpath, *own, *([environ["PYTHONPATH"]] if environ.get("PYTHONPATH") else [])]
        # The worker runs in its log folder: a relative entry (an empty one is the working directory)
        # means this process's folder, not that one.
        environ["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for entry in paths for p in entry.split(os.pathsep))
        for key, value in WORKER_ENV_DEFAULTS.items():
            environ.setdefault(key, value)
        environ.pop(PIN_ENV, None)
        if cpus:  # every rank pins itself to its share before its first thread (perf/worker.py)
            environ[PIN_ENV] = ",".join(map(str, cpus))
            if world_size == 1:  # one rank takes them all, whatever launcher pytest itself ran under
                for key in ("LOCAL_RANK", "LOCAL_WORLD_SIZE", "LOCAL_SIZE"):
                    environ.pop(key, None)
        if world_size > 1 and hostfile is None:
            # The ranks per node, as DeepSpeed's launcher sets it and torchrun does not: without
            # it DeepSpeed's CPU all-reduce (inference_all_reduce over shared memory) never maps
            # its buffers and segfaults.
            environ["LOCAL_SIZE"] = str(world_size)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w+b")
        # Several nodes: rank 0 connects back here (pdsh carries no stdin), and what the launcher
        # and pdsh print goes to the log.
        self._server = socket.create_server(("", 0)) if world_size > 1 and hostfile and hostfile.multi_node else None
        self._conn = None
        control = f"{control_host()}:{self._server.getsockname()[1]}" if self._server else None
        self.command = launch_command(python, world_size, hostfile, control)
        try:
            self.proc = self._start(environ)
        except OSError as exc:
            self._log.close()
            raise WorkerFailed(f"{name}: cannot start worker with {python!r}: {exc}") from exc
        self._buffer = b""
        self.world_size = world_size
        self.dead: str | None = None  # why this worker can no longer answer

    def _start(self, environ: dict) -> subprocess.Popen:
        """The worker's process, in a session of its own so that kill() reaches all it starts."""
        # `python -m` puts its working directory first on sys.path: the log folder holds no package.
        return subprocess.Popen(self.command, stdin=subprocess.DEVNULL if self._server else subprocess.PIPE,
                                stdout=self._log if self._server else subprocess.PIPE,
                                stderr=self._log, env=environ, cwd=self.log_path.parent, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def call(self, op: str, timeout: float | None = None, on_wait=None, **args):
        """The worker's reply to `op`; `on_wait()` is called about once a second meanwhile."""
        if self.dead:
            raise WorkerFailed(self.dead)
        if self._server and not self._conn:
            self._accept(op, self.timeout if timeout is None else timeout)
        try:
            self._send((json.dumps({"op": op, **args}) + "\n").encode())
        except OSError:  # a broken pipe, or rank 0's connection reset
            self._fail(f"{self.name}: worker died before {op!r}")
        line = self._read_line(op, self.timeout if timeout is None else timeout, on_wait)
        while not line.startswith(b"{"):  # torchrun and DeepSpeed's launcher print on stdout too: not a reply
            line = self._read_line(op, self.timeout if timeout is None else timeout, on_wait)
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

    def _send(self, data: bytes) -> None:
        if self._conn:
            self._conn.sendall(data)
        else:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def _accept(self, op: str, timeout: float) -> None:
        """Wait for rank 0 to connect, as long as the launcher runs and the deadline allows."""
        deadline = time.monotonic() + timeout
        while not select.select([self._server], [], [], 1.0)[0]:
            if self.proc.poll() is not None:
                self._fail(f"{self.name}: the launcher exited (code {self.proc.returncode}) before rank 0 connected")
            if time.monotonic() > deadline:
                self._fail(f"{self.name}: rank 0 did not connect within {timeout:g} s (--worker-timeout) "
                           f"before {op!r}; worker killed")
        self._conn, _ = self._server.accept()

    def _read_line(self, op: str, timeout: float, on_wait=None) -> bytes:
        deadline = time.monotonic() + timeout
        fd = self._conn.fileno() if self._conn else self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                self._fail(f"{self.name}: no answer to {op!r} within {timeout:g} s "
                           f"(--worker-timeout); worker killed")
            ready, _, _ = select.select([fd], [], [], min(left, 1.0) if on_wait else left)
            if on_wait:
                on_wait()
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    try:  # over several nodes the launcher may outlive rank 0 a while
                        code = self.proc.wait(30 if self._conn else None)
                        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
                    except subprocess.TimeoutExpired:
                        how = "rank 0 closed its connection"
                    # Several ranks: the launcher ends the job when one dies, and may do so
                    # before rank 0 has sent its error (_fail_if_exiting), so say the same.
                    who = "a rank died" if self.world_size > 1 else "worker died"
                    self._fail(f"{self.name}: {who} during {op!r} ({how})")
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
        # Over several nodes, SIGTERM first: DeepSpeed's runner then has pdsh kill the ranks on
        # every node, which no signal from here reaches.
        if self._server and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        # The whole group, even when the worker itself has exited: what it started goes too.
        # torchrun puts each rank in a session of its own; the ranks die with it (PDEATHSIG).
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        for buffer in shm_buffers(self.command):
            buffer.unlink(missing_ok=True)

    def stop(self, grace: float = 10.0) -> None:
        """Ask the worker to exit; kill its whole process group if it does not in time."""
        if self.proc.poll() is None and not self.dead and (self._conn or not self._server):
            try:
                self._send(b'{"op": "exit"}\n')
                if not self._conn:
                    self.proc.stdin.close()
                self.proc.wait(grace)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()  # also reaps anything left in the worker's process group
        for stream in (self.proc.stdin, self.proc.stdout, self._conn, self._server):
            if stream and not getattr(stream, "closed", False):
                stream.close()
        self._log.close()
