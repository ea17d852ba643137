"""The suite's options as pytest sees them: declared (add_options) and read into one Settings,
checked before collection and before any model loads. The checks themselves are plain Python
(perf.options, perf.models, perf.backend_envs, perf.outputs), shared with the console tools; here
their OptionError becomes a pytest.UsageError.
"""
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from perf import protocol
from perf.backends import BACKENDS
from perf.backend_envs import BackendEnv, backend_envs, default_python
from perf.models import checkpoint_identity, resolve_model
from perf.options import (Hostfile, OptionError, count, executable, parse_batch_sizes, parse_cpus, parse_hardware,
                          parse_max_memory, positive, update_mode, world_size_and_hostfile)
from perf.outputs import not_an_input, replaces_only_results, store_folder, writable_file

DEFAULT_WORKER_TIMEOUT = 1800.0
AB_MAX_PAIRS, AB_MAX_SECONDS = 30, 300


@dataclass
class Settings:
    model: str  # what from_pretrained gets: a folder or a cached HF id
    model_name: str  # how results and baselines name it
    model_identity: dict | None = field(default=None, kw_only=True)  # perf.models.model_identity; synthetic: once built
    batch_sizes: list[int] | None  # None: the device's default, decided at collection
    new_tokens: int
    cycles: int
    results: Path
    worker_timeout: float
    backend_envs: dict[str, BackendEnv] = field(default_factory=dict)
    baselines_dir: Path = Path("baselines")  # the store; the command line's default is <rootdir>/baselines
    hardware: str | None = None  # the hardware profile; None: derived from the fingerprint
    update_baselines: str | None = None  # None, "yes", "force", "pool" or "force-pool"
    strict_perf: bool = False
    require_baseline: bool = False
    base: Path | None = None  # --base: a checkout to run side by side with this one (perf.ab)
    base_python: str | None = None  # the base side's interpreter (default: each backend's own)
    head_python: str | None = None  # the head side's
    ab_max_pairs: int = AB_MAX_PAIRS
    ab_max_seconds: float = float(AB_MAX_SECONDS)
    ab_loads: str = "together"  # or "alternate": one side loaded at a time
    ab_threshold: float | None = None  # None: 5% with a GPU, 30% without
    world_size: int | None = None  # ranks of multi-rank backends; None: the visible GPUs (or 1)
    hostfile: Hostfile | None = None  # multi-rank backends start with DeepSpeed's launcher
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
    group.addoption("--update-baselines", nargs="?", const="yes", default=None, metavar="force|pool|force-pool",
                    help="write this run's measured entries into the baseline file; "
                         "--update-baselines=force also replaces published entries; "
                         "--update-baselines=pool adds this run's samples to the entries' (a baseline over several "
                         "runs) unless the run was a REGRESSION or IMPROVEMENT against them, or its work differs; "
                         "=force-pool adds them anyway")
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
    group.addoption("--ab-max-pairs", default=None, metavar="N",
                    help=f"with --base: at most this many pairs of cycles per cell (default: {AB_MAX_PAIRS})")
    group.addoption("--ab-max-seconds", default=None, metavar="SECONDS",
                    help=f"with --base: stop taking pairs in a cell after this long (default: {AB_MAX_SECONDS})")
    group.addoption("--ab-threshold", default=None, metavar="FRACTION",
                    help="with --base: the change that matters, e.g. 0.05 (default: 0.05 with a GPU, 0.30 without)")
    group.addoption("--ab-loads", default=None, choices=("together", "alternate"),
                    help="with --base: keep both sides loaded (default), or load one at a time when both do not "
                         "fit (chosen by itself when the base runs out of memory loading)")
    group.addoption("--worker-timeout", default=str(DEFAULT_WORKER_TIMEOUT), metavar="SECONDS",
                    help="kill a backend worker that does not answer one request in this time "
                         f"(default: {DEFAULT_WORKER_TIMEOUT:g})")


def from_config(config) -> Settings:
    """The session's settings; every bad value is a pytest.UsageError naming it and the fix."""
    try:
        return read_settings(config.getoption, Path(config.rootpath))
    except OptionError as exc:
        raise pytest.UsageError(str(exc)) from None


def read_settings(opt, rootpath: Path) -> Settings:
    """Settings from `opt` (pytest's config.getoption), checked; OptionError otherwise."""
    if opt("--base") is not None and opt("--update-baselines") is not None:
        raise OptionError("--base with --update-baselines: a side-by-side run judges head against base and "
                          "records no baseline; leave out one of them")
    model, name = resolve_model(opt("--model"))
    identity = checkpoint_identity(model, opt("--model"))  # what it lacks, said before any backend loads
    sizes = opt("--batch-sizes")
    world_size, hostfile = world_size_and_hostfile(opt("--world-size"), opt("--hostfile"))
    max_memory, cpus = opt("--max-memory"), opt("--cpus")
    settings = Settings(
        model=model, model_name=name, model_identity=identity,
        batch_sizes=parse_batch_sizes(sizes) if sizes is not None else None,
        new_tokens=positive("--new-tokens", opt("--new-tokens")),
        cycles=positive("--cycles", opt("--cycles")),
        results=writable_file("--results", opt("--results")),
        worker_timeout=positive("--worker-timeout", opt("--worker-timeout"), float),
        backend_envs=backend_envs(rootpath / "pyproject.toml", dict(os.environ)),
        baselines_dir=store_folder("--baselines", opt("--baselines")) if opt("--baselines") else rootpath / "baselines",
        hardware=parse_hardware(opt("--hardware")),
        profile_cycles=count("--profile-cycles", opt("--profile-cycles")),
        update_baselines=update_mode(opt("--update-baselines")),
        strict_perf=opt("--strict-perf"),
        require_baseline=opt("--require-baseline"),
        **side_by_side(opt),
        world_size=world_size, hostfile=hostfile,
        max_memory=parse_max_memory(max_memory) if max_memory is not None else None,
        cpus=parse_cpus(cpus, hostfile) if cpus is not None else None,
    )
    results_not_an_input(settings, rootpath)
    return settings


def checked_before_a_run(s: Settings, opt) -> None:
    """What matters only once the suite's tests will run (the plugin loads in every pytest session of
    its environment, where another project's ./perf-results.json is its own)."""
    replaces_only_results("--results", s.results)
    if opt("--baselines") and s.update_baselines is None and not s.baselines_dir.exists():
        raise OptionError(f"--baselines {opt('--baselines')}: no such folder, so no cell would be judged (each one "
                          "NEW); give the baseline store's folder (default: baselines/ in the checkout), or add "
                          "--update-baselines to start a store there")


def results_not_an_input(s: Settings, rootpath: Path) -> None:
    """--results is none of the files the run reads, nor a file of the baseline store."""
    files = {"the --hostfile": s.hostfile and s.hostfile.path, "pyproject.toml (the backends' environments)":
             rootpath / "pyproject.toml", "--base-python": s.base_python, "--head-python": s.head_python}
    files.update({f"backend {backend_id}'s python": env.python for backend_id, env in s.backend_envs.items()})
    model = Path(s.model)
    folders = {"the --model folder": model} if model.is_absolute() and model.is_dir() else {}
    not_an_input("--results", s.results, files, folders, store=s.baselines_dir)


def side_by_side(opt) -> dict:
    """--base and its options, checked: the base is a checkout with the suite's worker in it."""
    base = opt("--base")
    if base is None:
        given = [flag for flag in SIDE_BY_SIDE_ONLY if opt(flag) is not None]
        if given:
            raise OptionError(f"{', '.join(given)} without --base: {'it does' if len(given) == 1 else 'they do'} nothing "
                              "in a run against baselines; give --base DIR (the checkout to compare with) or leave "
                              f"{'it' if len(given) == 1 else 'them'} out")
        return {}
    given = [flag for flag in BASELINES_ONLY if opt(flag)]
    if given:
        raise OptionError(f"{', '.join(given)} with --base: a side-by-side run judges head against base and reads no "
                          f"baseline, so {'it does' if len(given) == 1 else 'they do'} nothing; leave out one of them")
    folder = Path(base).expanduser().resolve()
    if not (folder / "perf" / "worker.py").is_file():
        raise OptionError(f"--base {base!r}: {folder} holds no perf/worker.py; give a checkout of this suite "
                          "(e.g. the PR's base, checked out beside this one)")
    pythons = {flag.lstrip("-").replace("-", "_"): opt(flag) and executable(flag, opt(flag))
               for flag in ("--base-python", "--head-python")}
    threshold = opt("--ab-threshold")
    if threshold is not None:
        threshold = positive("--ab-threshold", threshold, float)
        if threshold >= 1:
            raise OptionError(f"--ab-threshold {threshold}: a fraction, e.g. 0.05 for 5%")
    return {"base": folder, **pythons, "ab_threshold": threshold,
            "ab_max_pairs": positive("--ab-max-pairs", _given(opt, "--ab-max-pairs", str(AB_MAX_PAIRS))),
            "ab_max_seconds": positive("--ab-max-seconds", _given(opt, "--ab-max-seconds", str(AB_MAX_SECONDS)), float),
            "ab_loads": _given(opt, "--ab-loads", "together")}


def _given(opt, flag: str, default: str) -> str:
    """The flag's value, or its default when not given (None: so that a flag given where it does
    nothing can be told from its default)."""
    value = opt(flag)
    return default if value is None else value


# Options that only a side-by-side run reads, and options a side-by-side run leaves unread.
SIDE_BY_SIDE_ONLY = ("--base-python", "--head-python", "--ab-threshold", "--ab-max-pairs", "--ab-max-seconds", "--ab-loads")
BASELINES_ONLY = ("--baselines", "--require-baseline")


# Options that only the timed test (ms/token) reads, with their defaults as pytest gives them.
TIMING_ONLY = {"--batch-sizes": None, "--cycles": str(protocol.CYCLES), "--profile-cycles": str(protocol.PROFILE_CYCLES),
               "--update-baselines": None, "--require-baseline": False, "--strict-perf": False, "--base": None}


def idle_options(opt, timed: bool, specs: list) -> list[str]:
    """What the given options do not do in this run, as selected (-k): timing options without a
    timed test, --max-memory without a backend that takes it, --world-size/--hostfile without a
    backend of several ranks. `timed`: a ms/token test is selected; `specs`: the selected backends."""
    notes = []
    idle = [flag for flag, default in TIMING_ONLY.items() if opt(flag) != default] if not timed else []
    if idle:
        notes.append(f"{', '.join(idle)} {'does' if len(idle) == 1 else 'do'} nothing in this run: no ms/token test "
                     "is selected (-k)")
    if opt("--max-memory") is not None and not any(spec.max_memory for spec in specs):
        takers = ", ".join(spec.id for spec in BACKENDS.values() if spec.max_memory)
        notes.append(f"--max-memory does nothing in this run: only {takers} take it, and none is selected")
    ranks = [flag for flag in ("--world-size", "--hostfile") if opt(flag) is not None]
    if ranks and not any(spec.multi_rank for spec in specs):
        several = ", ".join(spec.id for spec in BACKENDS.values() if spec.multi_rank)
        notes.append(f"{', '.join(ranks)} {'does' if len(ranks) == 1 else 'do'} nothing in this run: only {several} "
                     "run as several ranks, and none is selected")
    return notes
