"""Command-line options and per-backend environments, checked before any model loads.

Every bad value raises pytest.UsageError naming the option (or file/variable) and the fix.
"""
import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from perf import protocol
from perf.backends import BACKENDS

EMBEDDED_MODEL = Path(__file__).resolve().parent / "assets" / "tiny-bloom"
DEFAULT_WORKER_TIMEOUT = 1800.0
ENV_VAR = re.compile(r"^PERF_BACKEND_(.+)_(PYTHON|PYTHONPATH)$")


@dataclass(frozen=True)
class BackendEnv:
    """Which interpreter and extra PYTHONPATH entries a backend's worker runs with."""
    python: str
    pythonpath: tuple[str, ...] = ()


@dataclass
class Settings:
    model: str  # what from_pretrained gets: a folder or a cached HF id
    model_name: str  # how results and baselines name it
    batch_sizes: list[int] | None  # None: the device's default, decided at collection
    new_tokens: int
    cycles: int
    results: Path
    worker_timeout: float
    backend_envs: dict[str, BackendEnv] = field(default_factory=dict)
    baselines_dir: Path = Path("baselines")  # the store; the command line's default is <rootdir>/baselines
    hardware: str | None = None  # the hardware profile; None: derived from the fingerprint
    update_baselines: str | None = None  # None, "yes", "force" or "pool"
    strict_perf: bool = False
    require_baseline: bool = False
    base: Path | None = None  # --base: a checkout to run side by side with this one (perf.ab)
    base_python: str | None = None  # the base side's interpreter (default: each backend's own)
    head_python: str | None = None  # the head side's
    ab_max_pairs: int = 30
    ab_max_seconds: float = 300.0
    ab_loads: str = "together"  # or "alternate": one side loaded at a time
    ab_threshold: float | None = None  # None: 5% with a GPU, 30% without
    world_size: int | None = None  # ranks of multi-rank backends; None: the visible GPUs (or 1)
    hostfile: "Hostfile | None" = None  # multi-rank backends start with DeepSpeed's launcher
    max_memory: dict | None = None  # accelerate's max_memory for accel_* ({0: "70GiB", "cpu": ...}); None: its default
    cpus: tuple[int, ...] | None = None  # --cpus: the workers' CPUs (ranks take a share each); None: unpinned
    profile_cycles: int = protocol.PROFILE_CYCLES  # profiled cycles after the timed ones (0: none)

    @property
    def random_weights(self) -> bool:
        """A synthetic model (perf/synthetic.py): no meaningful text, near-flat distributions."""
        return self.model_name.startswith("synthetic-")

    def world_size_for(self, spec) -> int:
        if not spec.multi_rank:
            return 1
        if self.world_size is None:
            import torch
            self.world_size = max(1, torch.cuda.device_count())
        return self.world_size

    def env_for(self, backend_id: str) -> BackendEnv:
        return self.backend_envs.get(backend_id) or BackendEnv(default_python())


def default_python() -> str:
    import sys
    return sys.executable


def add_options(parser) -> None:
    group = parser.getgroup("perf", "BLOOM inference performance suite (perf/)")
    group.addoption("--model", default=None, metavar="MODEL",
                    help="a BLOOM checkpoint: a local folder, an HF id already in the local "
                         "cache, or synthetic:bloom-560m|bloom-7b1|bloom-176b[?layers=N] (BLOOM's "
                         "shapes, seeded random weights) (default: the embedded tiny-bloom)")
    group.addoption("--batch-sizes", default=None, metavar="N,N,...",
                    help="batch sizes to time (default: 1,8 on CPU; 1,8,32 on GPU)")
    group.addoption("--new-tokens", default=str(protocol.NEW_TOKENS), metavar="N",
                    help=f"new tokens per generated row (default: {protocol.NEW_TOKENS})")
    group.addoption("--cycles", default=str(protocol.CYCLES), metavar="N",
                    help=f"timed generate calls per batch size, after one warm-up (default: {protocol.CYCLES})")
    group.addoption("--profile-cycles", default=str(protocol.PROFILE_CYCLES), metavar="N",
                    help="cycles run under torch.profiler after the timed ones, for the GPU kernel time, kernel "
                         "launches and (on CPU) aten operators per token; 0 turns them off "
                         f"(default: {protocol.PROFILE_CYCLES})")
    group.addoption("--results", default="perf-results.json", metavar="PATH",
                    help="where to write every sample, figure and outcome (default: perf-results.json)")
    group.addoption("--baselines", default=None, metavar="DIR",
                    help="baseline store: DIR/<hardware profile>/<model>.json (default: baselines/ in pytest's rootdir)")
    group.addoption("--hardware", default=None, metavar="NAME",
                    help="hardware profile naming the baseline file, e.g. 8xA100-80GB "
                         "(default: derived from the devices found, e.g. 1xH200, cpu-amd-epyc-2c)")
    group.addoption("--update-baselines", nargs="?", const="yes", default=None, metavar="force|pool",
                    help="write this run's measured entries into the baseline file; "
                         "--update-baselines=force also replaces published entries; "
                         "--update-baselines=pool adds this run's samples to the entries' (a baseline over several "
                         "runs) unless the run was a REGRESSION or INCONCLUSIVE against them; =force-pool adds them anyway")
    group.addoption("--require-baseline", action="store_true", default=False,
                    help="stop before any load when this hardware profile and model have no baseline file "
                         "(for CI: without it, every cell is NEW and the run passes)")
    group.addoption("--strict-perf", action="store_true", default=False,
                    help="fail INCONCLUSIVE verdicts too (default: only REGRESSION fails)")
    group.addoption("--world-size", default=None, metavar="N",
                    help="ranks for ds_fp16 and zero_bf16, started with torchrun (default: the "
                         "visible GPUs, 1 on CPU; with --hostfile, its slots); accel_* always run "
                         "as one process")
    group.addoption("--hostfile", default=None, metavar="PATH",
                    help="start ds_fp16 and zero_bf16 with DeepSpeed's launcher on the hosts of this "
                         "DeepSpeed hostfile ('HOST slots=N' lines); the ranks are its slots. Several "
                         "hosts go through pdsh, and rank 0 (on the first host) connects back to "
                         "pytest over TCP (README)")
    group.addoption("--max-memory", default=None, metavar="DEVICE=SIZE,...",
                    help="accelerate's max_memory for accel_*, e.g. 0=70GiB,1=70GiB,cpu=200GiB "
                         "(default: accelerate's, the free memory of each device)")
    group.addoption("--cpus", default=None, metavar="CPU,...",
                    help="run every backend's worker on these CPUs only, e.g. 4 or 4,5 (Linux); "
                         "several ranks share them out, a slice each. Small batches are paced by "
                         "the host CPU, so a pinned run is compared only with a baseline pinned to "
                         "the same CPUs")
    group.addoption("--base", default=None, metavar="DIR",
                    help="a checkout (the PR's base) to run side by side with this one: each cell's cycles "
                         "alternate between the two, judged pair by pair until decided (README, side by side)")
    group.addoption("--base-python", default=None, metavar="PATH",
                    help="the interpreter of the base side's workers, e.g. another virtualenv's (default: each "
                         "backend's own, as for the head)")
    group.addoption("--head-python", default=None, metavar="PATH",
                    help="the interpreter of the head side's workers with --base (default: each backend's own)")
    group.addoption("--ab-max-pairs", default="30", metavar="N",
                    help="with --base: at most this many pairs of cycles per cell (default: 30)")
    group.addoption("--ab-max-seconds", default="300", metavar="SECONDS",
                    help="with --base: stop taking pairs in a cell after this long (default: 300)")
    group.addoption("--ab-threshold", default=None, metavar="FRACTION",
                    help="with --base: the change that matters, e.g. 0.05 (default: 0.05 with a GPU, 0.30 without)")
    group.addoption("--ab-loads", default="together", choices=("together", "alternate"),
                    help="with --base: keep both sides loaded (default), or load one at a time when both do not "
                         "fit (chosen by itself when the base runs out of memory loading)")
    group.addoption("--worker-timeout", default=str(DEFAULT_WORKER_TIMEOUT), metavar="SECONDS",
                    help="kill a backend worker that does not answer one request in this time "
                         f"(default: {DEFAULT_WORKER_TIMEOUT:g})")


def _count(option: str, text: str) -> int:
    """A whole number >= 0."""
    if not text.strip().isdecimal():
        raise pytest.UsageError(f"{option} {text!r}: expected a whole number >= 0, e.g. {option} 2 (0 turns it off)")
    return int(text)


HARDWARE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def parse_hardware(text: str | None) -> str | None:
    """--hardware names one folder of the store: a plain name, never a path."""
    if text is not None and not HARDWARE_NAME.match(text):
        raise pytest.UsageError(f"--hardware {text!r}: a hardware profile is one plain name (letters, digits, "
                                "'.', '_', '+', '-'; not a path), e.g. --hardware 8xA100-80GB")
    return text


def _positive(option: str, text: str, kind=int):
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value <= 0:
        what = "finite number" if kind is float else "whole number"
        raise pytest.UsageError(f"{option} {text!r}: expected a positive {what}, e.g. {option} 5")
    return value


def parse_batch_sizes(text: str) -> list[int]:
    sizes = []
    for part in text.split(","):
        try:
            size = int(part)
        except ValueError:
            size = 0
        if size <= 0:
            raise pytest.UsageError(
                f"--batch-sizes {text!r}: {part.strip()!r} is not a positive integer; "
                f"give a comma-separated list such as --batch-sizes 1,8,32")
        sizes.append(size)
    return sorted(set(sizes))


def parse_cpus(text: str, hostfile) -> tuple[int, ...]:
    """--cpus 4,5 -> (4, 5): CPUs this host has and lets this process use."""
    from perf.launcher import cpu_set
    try:
        cpus = cpu_set(text)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    if hostfile is not None and hostfile.multi_node:
        raise pytest.UsageError(f"--cpus pins processes on this host only, and --hostfile {hostfile.path} "
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
            raise pytest.UsageError(f"--max-memory {text!r}: {part.strip()!r} is not DEVICE=SIZE; {expected}")
        if key in spec:
            raise pytest.UsageError(f"--max-memory {text!r}: device {key!r} is given twice; {expected}")
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
        raise pytest.UsageError(f"--hostfile {text!r}: cannot read {path}: {exc}") from None
    hosts: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = HOSTFILE_LINE.match(line)
        if not match or int(match[2]) == 0 or match[1] in hosts:
            raise pytest.UsageError(f"--hostfile {text!r}: line {number} of {path} is {line!r}; {form}")
        hosts[match[1]] = int(match[2])
    if not hosts:
        raise pytest.UsageError(f"--hostfile {text!r}: {path} lists no host; {form}")
    return Hostfile(path, hosts)


def world_size_and_hostfile(world_size: str | None, hostfile: str | None) -> tuple[int | None, Hostfile | None]:
    """--world-size and --hostfile: with a hostfile the ranks are its slots, and --world-size, if
    given, must agree."""
    ranks = _positive("--world-size", world_size) if world_size else None
    if hostfile is None:
        return ranks, None
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        # DeepSpeed's runner ignores it when given a hostfile and hands the ranks GPUs 0..N-1.
        raise pytest.UsageError(
            f"--hostfile {hostfile!r} with CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r}: "
            "DeepSpeed's launcher would ignore the GPU set and use GPUs 0..N-1; unset it (and do not "
            "combine --hostfile with pytest -n), or start the ranks with torchrun: --world-size N")
    parsed = read_hostfile(hostfile)
    slots = sum(parsed.hosts.values())
    if ranks not in (None, slots):
        raise pytest.UsageError(f"--world-size {ranks} but --hostfile {hostfile!r} has {slots} slots; "
                                "the ranks are the hostfile's slots: drop --world-size or make them agree")
    return slots, parsed


def resolve_model(text: str | None) -> tuple[str, str]:
    """(what from_pretrained gets, the model's name), or a UsageError."""
    if text is None:
        return str(EMBEDDED_MODEL), EMBEDDED_MODEL.name
    if text.startswith("synthetic:"):
        from perf import synthetic
        try:
            _, _, name = synthetic.parse(text)
        except ValueError as exc:
            raise pytest.UsageError(f"--model {text!r}: {exc}") from None
        return text, name  # built at the session's first load (perf/conftest.py)
    path = Path(text).expanduser()
    looks_like_path = path.is_absolute() or text.startswith((".", "~")) or path.exists()
    if looks_like_path or text.count("/") > 1:
        if not path.is_dir():
            raise pytest.UsageError(f"--model {text!r}: no such folder; give a folder holding a "
                                    "BLOOM checkpoint (config.json, weights, tokenizer) or a cached HF id")
        config = path / "config.json"
        name = path.resolve().name
    else:
        from huggingface_hub import try_to_load_from_cache
        cached = try_to_load_from_cache(text, "config.json")
        if not isinstance(cached, str):
            raise pytest.UsageError(
                f"--model {text!r}: not in the local Hugging Face cache and this suite never "
                f"downloads; run `hf download {text}` where there is network, or give a local folder")
        config, name = Path(cached), text.replace("/", "--")
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError) as exc:
        raise pytest.UsageError(f"--model {text!r}: cannot read {config}: {exc}") from None
    if not isinstance(data, dict):
        raise pytest.UsageError(f"--model {text!r}: {config} is not a model configuration (a JSON object "
                                "with model_type 'bloom')")
    model_type = data.get("model_type")
    if model_type != "bloom":
        raise pytest.UsageError(f"--model {text!r}: {config} says model_type {model_type!r}; "
                                "this suite runs BLOOM checkpoints (model_type 'bloom')")
    # Absolute: workers run in their log folder.
    return (str(path.resolve()) if looks_like_path else text), name


def backend_envs(pyproject: Path, environ: dict) -> dict[str, BackendEnv]:
    """[tool.perf.backends.<id>] of pyproject.toml, then PERF_BACKEND_<ID>_PYTHON[PATH] variables."""
    raw: dict[str, dict] = {}
    if pyproject.is_file():
        try:
            table = tomllib.loads(pyproject.read_text()).get("tool", {}).get("perf", {}).get("backends", {})
        except tomllib.TOMLDecodeError as exc:
            raise pytest.UsageError(f"{pyproject}: not valid TOML: {exc}") from None
        for backend_id, entry in table.items():
            where = f"{pyproject} [tool.perf.backends.{backend_id}]"
            _check_id(backend_id, where)
            unknown = set(entry) - {"python", "pythonpath"}
            if unknown:
                raise pytest.UsageError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: python, pythonpath")
            raw[backend_id] = dict(entry)
    for name, value in environ.items():
        match = ENV_VAR.match(name)
        if match:
            backend_id = match[1].lower()
            _check_id(backend_id, f"environment variable {name}")
            raw.setdefault(backend_id, {})[match[2].lower()] = value
    envs = {}
    for backend_id, entry in raw.items():
        python = os.path.expandvars(entry.get("python") or default_python())
        if not os.access(python, os.X_OK):
            raise pytest.UsageError(f"backend {backend_id}: python {python!r} is not an executable; "
                                    "fix [tool.perf.backends] in pyproject.toml or PERF_BACKEND_*_PYTHON")
        paths = entry.get("pythonpath") or []
        if isinstance(paths, str):
            paths = paths.split(os.pathsep)
        expanded = tuple(p for p in (os.path.expandvars(p) for p in paths) if p and not p.startswith("$"))
        envs[backend_id] = BackendEnv(python, expanded)
    return envs


def _check_id(backend_id: str, where: str) -> None:
    if backend_id not in BACKENDS:
        raise pytest.UsageError(f"{where}: unknown backend id {backend_id!r}; "
                                f"known ids: {', '.join(BACKENDS)}")


def from_config(config) -> Settings:
    opt = config.getoption
    if opt("--base") is not None and opt("--update-baselines") is not None:
        raise pytest.UsageError("--base with --update-baselines: a side-by-side run judges head against base and "
                                "records no baseline; leave out one of them")
    model, name = resolve_model(opt("--model"))
    sizes = opt("--batch-sizes")
    world_size, hostfile = world_size_and_hostfile(opt("--world-size"), opt("--hostfile"))
    max_memory, cpus = opt("--max-memory"), opt("--cpus")
    return Settings(
        model=model, model_name=name,
        batch_sizes=parse_batch_sizes(sizes) if sizes is not None else None,
        new_tokens=_positive("--new-tokens", opt("--new-tokens")),
        cycles=_positive("--cycles", opt("--cycles")),
        results=writable_file("--results", opt("--results")),
        worker_timeout=_positive("--worker-timeout", opt("--worker-timeout"), float),
        backend_envs=backend_envs(Path(config.rootpath) / "pyproject.toml", dict(os.environ)),
        baselines_dir=Path(opt("--baselines")) if opt("--baselines") else Path(config.rootpath) / "baselines",
        hardware=parse_hardware(opt("--hardware")),
        profile_cycles=_count("--profile-cycles", opt("--profile-cycles")),
        update_baselines=_update_mode(opt("--update-baselines")),
        strict_perf=opt("--strict-perf"),
        require_baseline=opt("--require-baseline"),
        **side_by_side(opt),
        world_size=world_size, hostfile=hostfile,
        max_memory=parse_max_memory(max_memory) if max_memory is not None else None,
        cpus=parse_cpus(cpus, hostfile) if cpus is not None else None,
    )


def side_by_side(opt) -> dict:
    """--base and its options, checked: the base is a checkout with the suite's worker in it."""
    base = opt("--base")
    if base is None:
        given = [flag for flag in ("--base-python", "--head-python", "--ab-threshold") if opt(flag) is not None]
        if given:
            raise pytest.UsageError(f"{', '.join(given)} without --base: give --base DIR (the checkout to compare with)")
        return {}
    folder = Path(base).expanduser().resolve()
    if not (folder / "perf" / "worker.py").is_file():
        raise pytest.UsageError(f"--base {base!r}: {folder} holds no perf/worker.py; give a checkout of this suite "
                                "(e.g. the PR's base, checked out beside this one)")
    pythons = {}
    for flag in ("--base-python", "--head-python"):
        python = opt(flag)
        if python is not None and not (os.path.isfile(python) and os.access(python, os.X_OK)):
            raise pytest.UsageError(f"{flag} {python!r}: not an executable; give an interpreter, e.g. "
                                    f"{flag} /opt/venv/bin/python")
        pythons[flag.lstrip("-").replace("-", "_")] = python
    threshold = opt("--ab-threshold")
    if threshold is not None:
        threshold = _positive("--ab-threshold", threshold, float)
        if threshold >= 1:
            raise pytest.UsageError(f"--ab-threshold {threshold}: a fraction, e.g. 0.05 for 5%")
    return {"base": folder, **pythons, "ab_threshold": threshold,
            "ab_max_pairs": _positive("--ab-max-pairs", opt("--ab-max-pairs")),
            "ab_max_seconds": _positive("--ab-max-seconds", opt("--ab-max-seconds"), float),
            "ab_loads": opt("--ab-loads")}


UPDATE_MODES = ("yes", "force", "pool", "force-pool")


def _update_mode(value: str | None) -> str | None:
    if value not in (None, *UPDATE_MODES):
        raise pytest.UsageError(f"--update-baselines {value!r}: the values it takes are 'force', 'pool' and "
                                "'force-pool'; write --update-baselines after the test path, or --update-baselines=pool")
    return value


def writable_file(option: str, text: str) -> Path:
    """A file the run will write: its folder exists and takes files, and it is not a folder."""
    if not text.strip():
        raise pytest.UsageError(f"{option} {text!r}: give a file path, e.g. {option} perf-results.json")
    path = Path(text).expanduser()
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise pytest.UsageError(f"{option} {text!r}: a folder; give a file path inside it, e.g. {option} {path / 'perf-results.json'}")
    if not folder.is_dir():
        raise pytest.UsageError(f"{option} {text!r}: folder {folder} does not exist; create it or give another path")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise pytest.UsageError(f"{option} {text!r}: cannot write there (permissions, or a read-only file system); "
                                "give a path you can write")
    return path


def check_baseline_store(store: Path, profile: str, model: str) -> None:
    """--update-baselines: the store's profile folder, the file, its lock and its history can be
    written (or made), before any model loads. UsageError naming the path otherwise."""
    folder = Path(store) / profile
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    targets = [folder / f"{model}.json", folder / f"{model}.json.lock", folder / f"{model}.history.jsonl"]
    problem = None
    if existing is not None and not existing.is_dir():
        problem = f"{existing} is a file, where a folder of the store should be"
    elif existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        problem = f"cannot create or write files in {existing}"
    else:
        problem = next((f"{t} cannot be written" for t in targets
                        if t.exists() and (t.is_dir() or not os.access(t, os.W_OK))), None)
    if problem:
        raise pytest.UsageError(f"--update-baselines with --baselines {store}: {problem} (permissions, or a "
                                "read-only file system); give a writable --baselines folder, or leave out "
                                "--update-baselines")
