"""The kinds of evidence the suite takes, as data: one entry per kind, and everything else (the
record's and the baseline entry's `samples`, the baseline schema, the verdict's evidence map, the
side-by-side pairing, the tables) is derived from this table by name.

A kind says:
- key: where its samples live, `samples[key]`, in a results record and in a baseline entry;
- label: what verdicts and tables call it;
- source and read: which worker replies hold it (each timed `cycle`, each `first_token`, each
  `profiled_cycle`) and how one value is read from one reply (None: that reply has none);
- role: TIMING (wall and host time: judged as measured and per unit of host speed, void on a
  busy host), WORK (what the code asked the machine to do: the GPU's kernels, the operators
  dispatched; host-independent), LOAD (how busy the host was), PROBE (the host's own speed),
  MEMORY (a veto: OOM, or peak memory past its threshold), INFO (kept and shown, not judged);
- compare: how perf.verdicts compares the two sides' samples ("timing", "interval", "count",
  "kernels", "memory"; None: not compared), and threshold: the entry field that holds its threshold;
- decides: whether a decided comparison of this WORK kind decides the cell (else it is reported,
  and keeps the cell from NO CHANGE);
- paired: whether a side-by-side cell pairs it cycle by cycle (perf.ab);
- words: how the detail sentence names it; show: the table that shows it, if any.

Adding a kind is one entry here and, where the worker does not reply it yet, its measurement.
"""
import statistics
from dataclasses import dataclass, field
from typing import Callable

TIMING, WORK, LOAD, PROBE, MEMORY, INFO = "timing", "work", "load", "probe", "memory", "info"
CYCLE, FIRST_TOKEN, PROFILED, RUN = "cycle", "first_token", "profiled", "run"


@dataclass(frozen=True)
class Show:
    """A table of the run: backend rows, batch-size columns, one figure per cell."""
    title: str
    fmt: Callable[[object], str] = "{:.2f}".format
    figure: Callable[[dict], object] | None = None  # record -> value; default: the median of its samples
    report_only: bool = False  # in the markdown report, not the terminal summary


@dataclass(frozen=True)
class Kind:
    key: str
    label: str
    role: str
    source: str
    read: Callable[[dict], float | None] = field(repr=False)
    words: str = ""
    subject: str = ""  # a WORK kind's subject in the sentence of the work done ("GPU work unchanged (...)")
    unit: str = ""
    compare: str | None = None
    threshold: str | None = None
    decides: bool = True
    paired: bool = False
    non_negative: bool = False  # may be 0 (CPU time, shares of time); else positive
    legacy_labels: tuple[str, ...] = ()  # what results files of schema <= 2 called its verdict
    show: Show | None = None
    busy: Callable[[float, int | None], str | None] | None = None  # LOAD: why a mean this high is a busy host


# A busy host: the main thread waited for a CPU this share of the cycle, or other processes used
# this share of the CPUs the worker may run on (means over the cycles: docs/verdicts.md).
BUSY_WAIT = 0.05
BUSY_OTHERS = 0.10


def _waited(mean: float, cpus: int | None) -> str | None:
    return f"the worker's main thread waited for a CPU {mean:.0%} of the time" if mean > BUSY_WAIT else None


def _others(mean: float, cpus: int | None) -> str | None:
    return f"other processes used {mean:.2f} of its {cpus} CPUs" if cpus and mean > BUSY_OTHERS * cpus else None


def _per_token(seconds_key: str):
    def read(reply: dict) -> float | None:
        value = reply.get(seconds_key)
        return None if value is None else 1000 * value / reply["new_tokens"]
    return read


def _share(seconds_key: str):
    """Seconds of `seconds_key` per second of the cycle: a share of the time, or a number of CPUs."""
    def read(reply: dict) -> float | None:
        value = reply.get(seconds_key)
        return None if value is None else max(0.0, value) / reply["seconds"]
    return read


def _gpu(phase: str, what: str, per_step: bool = True):
    def read(reply: dict) -> float | None:
        if reply.get("activity") != "cuda":
            return None
        value = reply[phase][what]
        return value / reply["decode_steps"] if per_step else value
    return read


def _aten_ops(reply: dict) -> float | None:
    return reply["aten_ops"] / reply["new_tokens"] if reply.get("activity") == "cpu" else None


def median_of(key: str):
    """A record's figure for a kind of evidence: the median of its samples (None without)."""
    def figure(record: dict):
        values = (record.get("samples") or {}).get(key)
        return statistics.median(values) if values else None
    return figure


def _gpu_and_busy(record: dict):
    """GPU kernel ms per decode step and the GPU's busy share of the decode step's wall time."""
    ms = median_of("gpu_decode_ms_per_step")(record)
    return None if ms is None else (ms, record.get("gpu_busy"))


def _fmt_gpu(value) -> str:
    ms, busy = value
    return f"{ms:.3g}" + (f" ({busy:.0%})" if busy is not None else "")


def _peak_memory(record: dict):
    memory = (record.get("peak_memory") or {}).get("per_device_mb")
    return max(memory) if memory else None


KINDS: dict[str, Kind] = {kind.key: kind for kind in (
    # The headline: the article's figure, per timed cycle.
    Kind("ms_per_token", "wall", TIMING, CYCLE, _per_token("seconds"), words="wall", compare="timing",
         threshold="threshold", paired=True, legacy_labels=("wall",),
         show=Show("ms/token", figure=lambda r: r.get("ms_per_token"))),
    # From the profiled cycles (perf.profiling), on a GPU:
    Kind("gpu_decode_ms_per_step", "GPU kernel time", WORK, PROFILED, _gpu("decode", "kernel_ms"),
         words="GPU kernel time per decode step", subject="GPU work", unit="ms/step", compare="interval",
         threshold="gpu_threshold", legacy_labels=("GPU kernel time",),
         show=Show("GPU kernel ms per decode step (GPU busy share of the step)", _fmt_gpu, _gpu_and_busy)),
    Kind("gpu_prefill_ms", "GPU prefill kernel time", INFO, PROFILED, _gpu("prefill", "kernel_ms", per_step=False)),
    # Copies and fills the device ran per decode step, beside the kernels: reported, not deciding.
    Kind("memcpy_ms_per_step", "memcpy time", WORK, PROFILED, _gpu("decode", "memcpy_ms"),
         words="memcpy time per decode step", subject="memcpy", unit="ms/step", compare="interval",
         threshold="gpu_threshold", decides=False, non_negative=True),
    Kind("memset_ms_per_step", "memset time", WORK, PROFILED, _gpu("decode", "memset_ms"),
         words="memset time per decode step", subject="memset", unit="ms/step", compare="interval",
         threshold="gpu_threshold", decides=False, non_negative=True),
    # Judged through the kernel tables (perf.verdicts.compare_kernels): every kernel's launches.
    Kind("launches_per_step", "kernels", WORK, PROFILED, _gpu("decode", "launches"), compare="kernels",
         legacy_labels=("kernels",)),
    # On a CPU: the aten operators the code dispatched.
    Kind("aten_ops_per_token", "aten ops", WORK, PROFILED, _aten_ops, words="aten operators per token",
         compare="count", legacy_labels=("aten ops",)),
    # What the worker's main thread (the decode loop) ran on a CPU, per token (the slowest rank's).
    Kind("main_cpu_ms_per_token", "host time", TIMING, CYCLE, _per_token("main_cpu_s"),
         words="host time per token", compare="timing", threshold="threshold", paired=True, non_negative=True,
         legacy_labels=("host time",), show=Show("host CPU ms per token (worker's main thread)")),
    Kind("process_cpu_ms_per_token", "process CPU time", INFO, CYCLE, _per_token("process_cpu_s"), non_negative=True),
    Kind("ttft_ms", "time to first token", INFO, FIRST_TOKEN, lambda reply: 1000 * reply["seconds"],
         show=Show("Time to first token, ms", "{:.1f}".format, lambda r: r.get("ttft_ms"), report_only=True)),
    Kind("host_probe_ms", "host probe", PROBE, CYCLE, lambda reply: reply.get("host_probe_ms")),
    Kind("run_queue_wait", "run-queue wait", LOAD, CYCLE, _share("run_queue_wait_s"), non_negative=True, busy=_waited),
    Kind("other_cpus", "other processes' CPUs", LOAD, CYCLE, _share("other_cpu_s"), non_negative=True, busy=_others),
    # Not per cycle: the run's peak, per device; OOM is judged here too.
    Kind("peak_memory_mb", "peak memory", MEMORY, RUN, lambda reply: None, compare="memory",
         threshold="memory_threshold",
         show=Show("Peak memory, MiB (max over devices)", "{:.0f}".format, _peak_memory, report_only=True)),
)}

SAMPLED = tuple(k for k in KINDS.values() if k.source != RUN)  # the kinds kept as samples[key]
BY_LEGACY_LABEL = {label: kind.key for kind in KINDS.values() for label in kind.legacy_labels}


def of_role(role: str) -> list[Kind]:
    return [k for k in KINDS.values() if k.role == role]


def samples_from(replies: dict[str, list[dict]]) -> dict[str, list[float]]:
    """{key: one value per reply} from the worker's replies by source ({"cycle": [...], ...}), for
    every kind all of whose replies hold it; a kind without a value in some reply is left out."""
    samples = {}
    for kind in SAMPLED:
        got = replies.get(kind.source) or []
        values = [kind.read(reply) for reply in got]
        if values and all(v is not None for v in values):
            samples[kind.key] = values
    return samples


# -- one side of a comparison -----------------------------------------------------------------------
@dataclass
class Side:
    """What one side of a comparison measured (a run's record, a baseline entry, a side-by-side
    base), in one shape: the samples by key, the kernel tables, the peak memory, whether it ran out
    of memory, and how many CPUs its worker could run on."""
    samples: dict[str, list[float]]
    kernels: dict | None = None
    peak_memory_mb: list[float] | None = None
    oom: bool = False
    cpus: int | None = None

    def has(self, key: str) -> bool:
        return bool(self.samples.get(key))

    def median(self, key: str) -> float:
        return statistics.median(self.samples[key])


def side_of_record(record: dict) -> Side:
    return Side(samples=record.get("samples") or {}, kernels=(record.get("profile") or {}).get("kernels"),
                peak_memory_mb=(record.get("peak_memory") or {}).get("per_device_mb"),
                oom=record.get("outcome") == "oom", cpus=record.get("worker_cpus"))


def side_of_entry(entry: dict) -> Side:
    return Side(samples=entry.get("samples") or {}, kernels=entry.get("kernels"),
                peak_memory_mb=entry.get("peak_memory_mb"), oom=entry["outcome"] == "oom")


# -- files written before this table ---------------------------------------------------------------
def upgrade_record(record: dict) -> dict:
    """A results record of schema <= 2 in today's shape: its `<key>_samples` (top level, or under
    `profile`) moved into `samples[key]`, its evidence map keyed by kind instead of label, and a
    side-by-side record's base side likewise."""
    if isinstance(record.get("samples"), dict):
        return record
    record = dict(record)
    profile = dict(record.get("profile") or {})
    samples = {}
    for holder in (record, profile):
        for name in [n for n in holder if n.endswith("_samples")]:
            values = holder.pop(name)
            if values:
                samples[name.removesuffix("_samples")] = values
    if record.get("profile") is not None:
        record["profile"] = profile
    record["samples"] = samples
    if isinstance(record.get("evidence"), dict):
        record["evidence"] = {BY_LEGACY_LABEL.get(name, name): {"label": name, **v} if isinstance(v, dict) else v
                              for name, v in record["evidence"].items()}
    if isinstance((record.get("ab") or {}).get("base"), dict):
        record["ab"] = {**record["ab"], "base": upgrade_record(record["ab"]["base"])}
    return record
