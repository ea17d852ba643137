"""The kinds of evidence the suite takes, as data: one entry per kind, and everything else (the
record's and the baseline entry's `samples`, the baseline schema, the verdict's evidence map, the
side-by-side pairing, the tables) is derived from this table by name.

A kind says:
- key: where its samples live, `samples[key]`, in a results record and in a baseline entry;
- label: what verdicts and tables call it;
- source and read: which worker replies hold it (each timed `cycle`, each `first_token`, each
  `profiled_cycle`) and how one value is read from one reply (None: that reply has none);
- role: TIMING (wall and host time: judged as measured and per unit of host speed, void on a
  busy host, deciding only on a host shown steady), WORK (what the code asked the machine to do:
  the GPU's kernels, the Python calls, the operators dispatched, the syncs and copies; exact or
  host-independent, so it decides wherever it is measured), WAIT (time the worker spent neither
  on a CPU nor waiting for one: sleeping or blocked; decides on a host that was not busy), LOAD
  (how busy the host was), PROBE (the host's own speed), MEMORY (a veto: OOM, or peak memory past
  its threshold), INFO (kept and shown, not judged);
- compare: how perf.verdicts compares the two sides' samples ("timing", "interval", "count",
  "kernels", "shift", "memory"; None: not compared), and threshold: the entry field that holds its
  threshold; breakdown: for a count, the reply's field that holds it by name ({name: [count,
  own ms]}), kept in records and entries (the most frequent names) so that a change names what
  appeared, vanished or changed count, and what it costs;
- decides: whether a decided comparison of this WORK kind decides the cell (else it is reported,
  and keeps the cell from NO CHANGE);
- paired: whether a side-by-side cell pairs it cycle by cycle (perf.ab);
- words: how the detail sentence names it; show: the table that shows it, if any.

Adding a kind is one entry here and, where the worker does not reply it yet, its measurement.
"""
import re
import statistics
from dataclasses import dataclass, field
from typing import Callable

TIMING, WORK, WAIT, LOAD, PROBE, MEMORY, INFO = "timing", "work", "wait", "load", "probe", "memory", "info"
# Which replies hold a kind: each timed cycle, each first token, each profiled cycle, the profiled
# cycle that counted the host's work (perf.profiling), or the run as a whole.
CYCLE, FIRST_TOKEN, PROFILED, COUNTED, RUN = "cycle", "first_token", "profiled", "counted", "run"
BREAKDOWN_NAMES = 100  # the most frequent names of a breakdown kept in records and entries,
BREAKDOWN_COSTLIEST = 30  # and the names of the largest share of the time (a loop called once a step)
# The same code made the same counts in every cell of five processes on the H100, but one: accel_bf16
# at bs=8 made 4 calls of set.add and 1 of hasattr more in 2 of them (5 in 493,500 a cycle).
# Counts within this share of each other are the same work.
COUNT_BAND = 1e-4


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
    breakdown: str | None = None
    per: str = "token"  # a count's unit: per new token, or per generate step
    relative_to: str | None = None  # a "shift" comparison's reference: the other side's median of this kind


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


def canonical(name: str) -> str:
    """A function's name as every process spells it: cProfile names some callables with their
    address ("<function _ParameterMeta.__instancecheck__ at 0x7f1dce389f80>"), which differs per
    process."""
    return re.sub(r" at 0x[0-9a-f]+", "", name)


def units(reply: dict, per: str) -> int:
    """How many tokens, or generate steps, a counted cycle made."""
    return reply["new_tokens"] if per == "token" else reply["steps"]


def _count(field: str, per: str = "token"):
    """The total of a counted cycle's breakdown, per token or per step (None: not counted there)."""
    def read(reply: dict) -> float | None:
        parts = reply.get(field)
        return None if parts is None else sum(p[0] for p in parts.values()) / units(reply, per)
    return read


def _off_cpu(reply: dict) -> float | None:
    """ms per token the main thread was neither on a CPU nor waiting for one: it slept or blocked."""
    if reply.get("main_cpu_s") is None or reply.get("run_queue_wait_s") is None:
        return None
    return 1000 * max(0.0, reply["seconds"] - reply["main_cpu_s"] - reply["run_queue_wait_s"]) / reply["new_tokens"]


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
    # Judged by what they add to the step: a change of 5% in a 0.0015 ms memset is noise to the GPU.
    Kind("memcpy_ms_per_step", "memcpy time", WORK, PROFILED, _gpu("decode", "memcpy_ms"),
         words="memcpy time per decode step", subject="memcpy", unit="ms/step", compare="shift",
         threshold="gpu_threshold", relative_to="gpu_decode_ms_per_step", decides=False, non_negative=True),
    Kind("memset_ms_per_step", "memset time", WORK, PROFILED, _gpu("decode", "memset_ms"),
         words="memset time per decode step", subject="memset", unit="ms/step", compare="shift",
         threshold="gpu_threshold", relative_to="gpu_decode_ms_per_step", decides=False, non_negative=True),
    # Judged through the kernel tables (perf.verdicts.compare_kernels): every kernel's launches.
    Kind("launches_per_step", "kernels", WORK, PROFILED, _gpu("decode", "launches"), compare="kernels",
         legacy_labels=("kernels",)),
    # From the counted cycle: the host's work, exact and named (perf.profiling).
    Kind("python_calls_per_token", "Python calls", WORK, COUNTED, _count("python"), words="Python calls per token",
         compare="count", threshold="work_threshold", breakdown="python", non_negative=True),
    Kind("aten_ops_per_token", "aten ops", WORK, COUNTED, _count("aten"), words="aten operators per token",
         compare="count", threshold="work_threshold", breakdown="aten", non_negative=True,
         legacy_labels=("aten ops",)),
    Kind("syncs_per_step", "syncs", WORK, COUNTED, _count("syncs", "step"), words="synchronizations per step",
         compare="count", threshold="work_threshold", breakdown="syncs", per="step", non_negative=True),
    Kind("allocs_per_step", "device allocations", WORK, COUNTED, _count("allocs", "step"),
         words="device memory allocations and frees per step", compare="count", threshold="work_threshold",
         breakdown="allocs", per="step", non_negative=True),
    Kind("copies_per_step", "copies", WORK, COUNTED, _count("copies", "step"), words="host-device copies per step",
         compare="count", threshold="work_threshold", breakdown="copies", per="step", non_negative=True),
    # What the worker's main thread (the decode loop) ran on a CPU, per token (the slowest rank's).
    Kind("main_cpu_ms_per_token", "host time", TIMING, CYCLE, _per_token("main_cpu_s"),
         words="host time per token", compare="timing", threshold="threshold", paired=True, non_negative=True,
         legacy_labels=("host time",), show=Show("host CPU ms per token (worker's main thread)")),
    Kind("process_cpu_ms_per_token", "process CPU time", INFO, CYCLE, _per_token("process_cpu_s"), non_negative=True),
    Kind("off_cpu_ms_per_token", "off-CPU time", WAIT, CYCLE, _off_cpu, words="off-CPU time per token",
         subject="off-CPU", unit="ms/token", compare="shift", threshold="threshold", relative_to="ms_per_token",
         non_negative=True),
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
    profiled = replies.get(PROFILED) or []
    replies = {**replies, PROFILED: [r for r in profiled if not r.get("counted")],
               COUNTED: [r for r in profiled if r.get("counted")]}
    samples = {}
    for kind in SAMPLED:
        values = [kind.read(reply) for reply in replies.get(kind.source) or []]
        if kind.source == COUNTED:  # the counted cycles that counted this kind
            values = [v for v in values if v is not None]
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
    counted: dict | None = None  # the counted cycle's breakdowns (breakdowns_from)
    runs: int = 1  # the processes its samples come from

    def has(self, key: str) -> bool:
        return bool(self.samples.get(key))

    def median(self, key: str) -> float:
        return statistics.median(self.samples[key])


def side_of_record(record: dict) -> Side:
    profile = record.get("profile") or {}
    return Side(samples=record.get("samples") or {}, kernels=profile.get("kernels"),
                peak_memory_mb=(record.get("peak_memory") or {}).get("per_device_mb"),
                oom=record.get("outcome") == "oom", cpus=record.get("worker_cpus"), counted=profile.get("counted"))


def side_of_entry(entry: dict) -> Side:
    return Side(samples=entry.get("samples") or {}, kernels=entry.get("kernels"),
                peak_memory_mb=entry.get("peak_memory_mb"), oom=entry["outcome"] == "oom",
                counted=entry.get("counted"), runs=(entry.get("provenance") or {}).get("runs") or 1,
                cpus=entry.get("worker_cpus"))


def breakdowns_from(replies: list[dict]) -> dict:
    """What the counted cycles' replies say of the work by name, as records and entries keep it:
    {"tokens", "steps", "breakdowns": {kind key: {name: [count in the cycle, share]}}}, the share
    being the name's own time over its cycle's whole generate (what it costs). The
    BREAKDOWN_NAMES most frequent names of each kind are kept, and the BREAKDOWN_COSTLIEST of the
    largest share."""
    out = {}
    for reply in replies:
        for kind in SAMPLED:
            parts = reply.get(kind.breakdown) if kind.breakdown else None
            if parts is not None and kind.key not in out:
                frequent = sorted(parts, key=lambda name: (-parts[name][0], name))[:BREAKDOWN_NAMES]
                costly = sorted(parts, key=lambda name: (-parts[name][1], name))[:BREAKDOWN_COSTLIEST]
                generate_ms = 1000 * reply["generate_seconds"]
                out[kind.key] = {name: [parts[name][0], parts[name][1] / generate_ms]
                                 for name in dict.fromkeys(frequent + costly)}
    return {"tokens": replies[0]["new_tokens"], "steps": replies[0]["steps"], "breakdowns": out}


# -- files written before this table ---------------------------------------------------------------
def upgrade_record(record: dict) -> dict:
    """A results record of schema <= 2 in today's shape: its `<key>_samples` (top level, or under
    `profile`) moved into `samples[key]`, its evidence map keyed by kind instead of label, and a
    side-by-side record's base side likewise."""
    if isinstance(record.get("samples"), dict):
        if (record.get("profile") or {}).get("counted"):
            record = {**record, "profile": {**record["profile"], "counted": canonical_counts(record["profile"]["counted"])}}
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


def canonical_counts(counted: dict | None) -> dict | None:
    """A counted cycle's breakdowns with canonical names (records written before names were made
    canonical: the H100 runs of 2026-12-06), names that then coincide added up."""
    if not counted:
        return counted
    breakdowns = {}
    for key, parts in counted["breakdowns"].items():
        merged: dict = {}
        for name, (count, share) in parts.items():
            was = merged.get(canonical(name), [0, 0.0])
            merged[canonical(name)] = [was[0] + count, (was[1] or 0.0) + (share or 0.0)]
        breakdowns[key] = merged
    return {**counted, "breakdowns": breakdowns}
