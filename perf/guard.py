"""Runs a multi-rank launcher (torchrun, DeepSpeed's runner) so that nothing of it outlives pytest.

    python -m perf.guard COMMAND...        (perf/launcher.py starts it, never by hand)

The kernel sends this process SIGTERM when pytest dies, even by SIGKILL (PR_SET_PDEATHSIG); as
when pytest stops the worker with SIGTERM, it passes SIGTERM on to the launcher, which ends its
ranks (over several nodes, through pdsh), waits a little, then kills its whole process group and
removes the ranks' shared-memory buffers on this host (perf.launcher.shm_buffers). Otherwise it
waits for the launcher and exits with its status. The launcher inherits stdin, stdout and stderr,
so pytest talks to rank 0 directly.
"""
import ctypes
import os
import signal
import subprocess
import sys

from perf.launcher import shm_buffers

GRACE_S = 10.0


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
