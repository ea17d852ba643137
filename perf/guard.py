"""Runs a multi-rank launcher (torchrun, DeepSpeed's runner) so that nothing of it outlives pytest.

    python perf/guard.py COMMAND...        (perf/launcher.py starts it, never by hand)

The kernel sends this process SIGTERM when pytest dies, even by SIGKILL (PR_SET_PDEATHSIG); as
when pytest stops the worker with SIGTERM, it passes SIGTERM on to the launcher, which ends its
ranks (over several nodes, through pdsh), waits a little, then kills its whole process group and
removes the ranks' shared-memory buffers on this host (shm_buffers). Otherwise it
waits for the launcher and exits with its status. The launcher inherits stdin, stdout and stderr,
so pytest talks to rank 0 directly. It imports nothing of the package: it runs by its path.
"""
import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

GRACE_S = 10.0


def shm_buffers(command: list[str]) -> list[Path]:
    """DeepSpeed's shared-memory all-reduce buffers of the ranks a launch command starts on this
    host (its CPU backend makes one per rank, 69 MB in /dev/shm, named by user, master address and
    port). DeepSpeed 0.19.8 never unlinks them, not even on a clean exit: left, they hold memory."""
    flags = {}
    for arg in command:
        key, equals, value = arg.partition("=")
        if equals:
            flags[key.lstrip("-").replace("-", "_")] = value
    if "master_port" not in flags:
        return []
    return sorted(Path("/dev/shm").glob(
        f"deepspeed_allreduce_buffer_{os.getuid()}_{flags['master_addr']}_{flags['master_port']}_*"))


def main(command: list[str]) -> int:
    try:  # Linux: SIGTERM here when the parent (pytest) dies
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass
    if os.getppid() == 1:  # pytest died before the line above took effect
        return 1
    launcher = subprocess.Popen(command)

    def stop(signum, frame):
        try:
            launcher.send_signal(signal.SIGTERM)
            launcher.wait(GRACE_S)
        except (OSError, subprocess.TimeoutExpired):
            pass
        for buffer in shm_buffers(command):
            buffer.unlink(missing_ok=True)
        os.killpg(os.getpgid(0), signal.SIGKILL)  # the launcher's group, this process included

    signal.signal(signal.SIGTERM, stop)
    return launcher.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
