"""The values of the suite's options, parsed and checked: plain Python, no pytest, so that the
plugin (perf.settings, which turns OptionError into pytest.UsageError) and the console tools
(which print it and exit 2) give the same message for the same mistake.
"""
import argparse
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path


class OptionError(ValueError):
    """Bad input found before anything runs: a flag's value, a file or folder it names, a config
    key, an environment variable. The message names it and says how to fix it."""


class ToolParser(argparse.ArgumentParser):
    """The console tools' parser: a bad command line is one line on stderr (`prog: message`) and
    exit status 2, as every other bad input of theirs; --help shows the usage."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message}\n")

    def fail(self, message) -> int:
        """Bad input found after parsing (a file, a disk): the same one line; the status to return."""
        print(f"{self.prog}: {message}", file=sys.stderr)
        return 2


# The longest file name most file systems take (ext4, xfs, tmpfs: 255 bytes); a profile or model
# name becomes a folder or file name of the baseline store.
NAME_MAX = 255


def count(option: str, text: str) -> int:
    """A whole number >= 0."""
    if not text.strip().isdecimal():
        raise OptionError(f"{option} {text!r}: expected a whole number >= 0, e.g. {option} 2 (0 turns it off)")
    return int(text)


def positive(option: str, text: str, kind=int):
    """A positive whole number (kind=int) or a positive finite number (kind=float)."""
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value <= 0:
        what = "finite number" if kind is float else "whole number"
        raise OptionError(f"{option} {text!r}: expected a positive {what}, e.g. {option} 5")
    return value


HARDWARE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def parse_hardware(text: str | None) -> str | None:
    """--hardware names one folder of the store: a plain name, never a path, short enough for a
    file name."""
    if text is None:
        return None
    if not HARDWARE_NAME.match(text):
        raise OptionError(f"--hardware {text!r}: a hardware profile is one plain name (letters, digits, "
                          "'.', '_', '+', '-'; not a path), e.g. --hardware 8xA100-80GB")
    if len(text.encode()) > NAME_MAX:
        raise OptionError(f"--hardware '{text[:20]}...': {len(text.encode())} characters, longer than a folder "
                          f"name can be ({NAME_MAX}); give a short name, e.g. --hardware 8xA100-80GB")
    return text


def parse_batch_sizes(text: str) -> list[int]:
    sizes = []
    for part in text.split(","):
        try:
            size = int(part)
        except ValueError:
            size = 0
        if size <= 0:
            raise OptionError(f"--batch-sizes {text!r}: {part.strip()!r} is not a positive integer; "
                              f"give a comma-separated list such as --batch-sizes 1,8,32")
        sizes.append(size)
    return sorted(set(sizes))


def parse_cpus(text: str, hostfile) -> tuple[int, ...]:
    """--cpus 4,5 -> (4, 5): CPUs this host has and lets this process use."""
    from perf.launcher import cpu_set
    try:
        cpus = cpu_set(text)
    except ValueError as exc:
        raise OptionError(str(exc)) from None
    if hostfile is not None and hostfile.multi_node:
        raise OptionError(f"--cpus pins processes on this host only, and --hostfile {hostfile.path} "
                          "starts ranks on other hosts; leave out one of them")
    return cpus


MEMORY_SIZE = re.compile(r"^\d+(\.\d+)?(KiB|MiB|GiB|KB|MB|GB)$")  # what accelerate reads as bytes


def parse_max_memory(text: str) -> dict:
    """--max-memory 0=70GiB,cpu=200GiB -> {0: "70GiB", "cpu": "200GiB"}: accelerate's max_memory
    (GPU indices as ints, as accelerate wants them; sizes left for accelerate to convert)."""
    expected = ("give DEVICE=SIZE,... such as --max-memory 0=70GiB,1=70GiB,cpu=200GiB (DEVICE: a GPU "
                "index, cpu or disk; SIZE: bytes, or a number with KiB, MiB, GiB, KB, MB or GB)")
    spec: dict = {}
    for part in text.split(","):
        device, _, size = (s.strip() for s in part.partition("="))
        key = int(device) if device.isdecimal() else device
        known_device = isinstance(key, int) or key in ("cpu", "disk")
        if not known_device or not (size.isdecimal() or MEMORY_SIZE.match(size)):
            raise OptionError(f"--max-memory {text!r}: {part.strip()!r} is not DEVICE=SIZE; {expected}")
        if key in spec:
            raise OptionError(f"--max-memory {text!r}: device {key!r} is given twice; {expected}")
        spec[key] = int(size) if size.isdecimal() else size  # accelerate takes bytes as an int only
    return spec


HOSTFILE_LINE = re.compile(r"^(\S+)\s+slots=(\d+)$")


@dataclass(frozen=True)
class Hostfile:
    """A DeepSpeed hostfile: its absolute path (workers start in the repository) and {host: slots}
    in file order; DeepSpeed puts node rank 0, and so rank 0, on the first host."""
    path: Path
    hosts: dict

    @property
    def multi_node(self) -> bool:
        return len(self.hosts) > 1


def read_hostfile(text: str) -> Hostfile:
    """'HOST slots=N' per line; blank lines and # comments skipped."""
    path = Path(text).expanduser().resolve()
    form = "expected 'HOST slots=N' lines (DeepSpeed's hostfile format), N > 0, each host once"
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise OptionError(f"--hostfile {text!r}: cannot read {path}: {exc}") from None
    hosts: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = HOSTFILE_LINE.match(line)
        if not match or int(match[2]) == 0 or match[1] in hosts:
            raise OptionError(f"--hostfile {text!r}: line {number} of {path} is {line!r}; {form}")
        hosts[match[1]] = int(match[2])
    if not hosts:
        raise OptionError(f"--hostfile {text!r}: {path} lists no host; {form}")
    return Hostfile(path, hosts)


def world_size_and_hostfile(world_size: str | None, hostfile: str | None) -> tuple[int | None, Hostfile | None]:
    """--world-size and --hostfile: with a hostfile the ranks are its slots, and --world-size, if
    given, must agree."""
    ranks = positive("--world-size", world_size) if world_size else None
    if hostfile is None:
        return ranks, None
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        # DeepSpeed's runner ignores it when given a hostfile and hands the ranks GPUs 0..N-1.
        raise OptionError(
            f"--hostfile {hostfile!r} with CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r}: "
            "DeepSpeed's launcher would ignore the GPU set and use GPUs 0..N-1; unset it (and do not "
            "combine --hostfile with pytest -n), or start the ranks with torchrun: --world-size N")
    parsed = read_hostfile(hostfile)
    slots = sum(parsed.hosts.values())
    if ranks not in (None, slots):
        raise OptionError(f"--world-size {ranks} but --hostfile {hostfile!r} has {slots} slots; "
                          "the ranks are the hostfile's slots: drop --world-size or make them agree")
    return slots, parsed


UPDATE_MODES = ("yes", "force", "pool", "force-pool")


def update_mode(value: str | None) -> str | None:
    if value not in (None, *UPDATE_MODES):
        raise OptionError(f"--update-baselines {value!r}: the values it takes are 'force', 'pool' and "
                          "'force-pool'; write --update-baselines after the test path, or --update-baselines=pool")
    return value


def executable(option: str, python: str) -> str:
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        raise OptionError(f"{option} {python!r}: not an executable; give an interpreter, e.g. "
                          f"{option} /opt/venv/bin/python")
    return python
