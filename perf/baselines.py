"""Baseline files: `baselines/<hardware profile>/<model>.json`, one per profile and model.

    {"schema": 2, "profile": "1xH200", "model": "tiny-bloom",
     "entries": {"accel_bf16": {"bs1": ENTRY, ...}, ...}}

ENTRY (the pydantic models below are the exact schema, and `load` checks every file with them):
outcome ("ok" | "oom"), ms_per_token (null when oom), ttft_ms, peak_memory_mb (per device),
samples (one list per kind of evidence, by the keys of perf.evidence: per timed cycle, or per
profiled cycle; empty for published figures),
kernels (the GPU kernels of the profiled cycles: {"decode"|"prefill": {name: {"launches_per_step",
"ms_per_step"}}}), threshold (relative, for wall and host CPU time; default 0.05, 0.30 on CPU
machines), gpu_threshold (for GPU kernel time, default 0.02), memory_threshold (default 0.10),
provenance ({"kind": "measured", "date", "commit", "versions", "runs", "first_date"} or
{"kind": "published", "source", "as_published"}), and protocol {"new_tokens", "cycles",
"prompts", "int8_method", "world_size", "max_memory", "cpus", "profile_cycles", "model"} (cpus: the CPUs
--cpus pinned the worker to; absent or null: unpinned; model: which model it measured,
perf.models.model_identity, absent in entries recorded before it was kept). worker_cpus: how many
CPUs the worker could run on (its host load is a share of them).

Schema 1 files (before the host CPU and GPU evidence) are read as they are: their entries lack
those samples, and verdicts say they judged on what the entry has. Updates write schema 2.

Updates lock the file, re-read it, keep what this run did not measure, never replace a published
entry unless forced, append every replaced entry to `<model>.history.jsonl`, and replace the file
atomically (perf.files). Pooling (`--update-baselines=pool`) adds this run's samples to the
entry's instead of replacing them, so that the baseline spans several processes (provenance
"runs" counts them); an entry that cannot take them (an OOM, another protocol, other versions,
other kernels) is kept as it is.
"""
import json
import re
import statistics
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, model_validator

from perf import evidence, files, models
from perf.protocol import SPEED_TEST
from perf.schema import Model, ModelIdentity, NonNegative, Positive, Samples

SCHEMA = 2
READABLE_SCHEMAS = (1, 2)
DEFAULT_THRESHOLD = 0.05
# Measured on the project's 2-core CPU VM (tests/data/aa-cpu-accel_bf16.json: 21 processes):
# medians move 10-40% between processes; across all 840 ordered A/A pairs, 5% gave 112 false
# REGRESSIONs, 25% gave 4, 30% none. Entries recorded on a machine without GPUs get this one.
CPU_THRESHOLD = 0.30
# Kernel time per decode step held within 0.1% between processes and under host load on the H200,
# and within 0.4% across processes and two H100 machines (docs/verdicts.md, "The GPU threshold"):
# 1% leaves room for that, and sees one added kernel of a percent or two.
DEFAULT_GPU_THRESHOLD = 0.01
# Without a GPU the peak is the process's RSS, which moved 10.5% between two fresh runs of the
# same code (ds_int8, 418 -> 462 MB): 10% is for device allocators, not for RSS.
CPU_MEMORY_THRESHOLD = 0.30
DEFAULT_MEMORY_THRESHOLD = 0.10
# The host's work is counted exactly; what a change in it decides is its estimated cost, a share of
# the counted cycle's time: the same on every machine, since the host's noise is not in it.
DEFAULT_WORK_THRESHOLD = 0.05
PROMPTS_ID = "transformers-bloom-inference (8 prompts)"


def default_thresholds(gpu: bool = True) -> dict:
    """An entry's threshold fields and their defaults: the GPU's, or the CPU's wider ones. Entries
    that predate a field are judged with its GPU default."""
    return {"threshold": DEFAULT_THRESHOLD if gpu else CPU_THRESHOLD, "gpu_threshold": DEFAULT_GPU_THRESHOLD,
            "work_threshold": DEFAULT_WORK_THRESHOLD,
            "memory_threshold": DEFAULT_MEMORY_THRESHOLD if gpu else CPU_MEMORY_THRESHOLD}


class BaselineError(Exception):
    """A baseline file that cannot be used; the message names the file, entry and field."""


# -- the schema ----------------------------------------------------------------------------
Fraction = Annotated[float, Field(gt=0, lt=10, allow_inf_nan=False, strict=True)]


class Kernel(Model):
    launches_per_step: NonNegative
    ms_per_step: NonNegative


class Kernels(Model):
    decode: dict[str, Kernel] = {}
    prefill: dict[str, Kernel] = {}


class Counted(Model):
    tokens: Annotated[int, Field(gt=0, strict=True)]
    steps: Annotated[int, Field(gt=0, strict=True)]
    breakdowns: dict[str, dict[str, list[NonNegative | None]]]


class Provenance(Model):
    kind: Literal["measured", "published"]
    runs: Annotated[int, Field(ge=1, strict=True)] | None = None


class Protocol(Model):
    model: ModelIdentity | None = None
    new_tokens: Annotated[int, Field(gt=0, strict=True)]
    world_size: Annotated[int, Field(gt=0, strict=True)]
    cycles: Annotated[int, Field(gt=0, strict=True)] | None = None
    cpus: list[Annotated[int, Field(ge=0, strict=True)]] | None = None


class Entry(Model):
    outcome: Literal["ok", "oom"]
    ms_per_token: Positive | None
    ttft_ms: Positive | None = None
    peak_memory_mb: list[NonNegative] | None = None
    samples: Samples
    threshold: Fraction
    gpu_threshold: Fraction | None = None
    work_threshold: Fraction | None = None
    memory_threshold: Fraction | None = None
    provenance: Provenance
    protocol: Protocol
    kernels: Kernels | None = None
    counted: Counted | None = None

    @model_validator(mode="after")
    def _figure_when_ok(self):
        if self.outcome == "ok" and self.ms_per_token is None:
            raise ValueError("ms_per_token must be a number when outcome is 'ok'")
        return self


class BaselineFile(Model):
    schema_: int = Field(alias="schema")
    profile: str
    model: str
    entries: dict[Annotated[str, Field(min_length=1)], dict[Annotated[str, Field(pattern=r"^bs[1-9]\d*$")], Entry]]


def validate(data, path: Path) -> None:
    """BaselineError naming the file, entry and field of the first problems found."""
    if not isinstance(data, dict):
        raise BaselineError(f"{path}: top level: expected an object with schema, profile, model, entries")
    if "tests" in data and "entries" not in data:
        raise BaselineError(f"{path}: a results file of this suite, not a baseline file (give a file of the "
                            "baseline store, baselines/<profile>/<model>.json; perf-record-baselines makes "
                            "entries from results)")
    if data.get("schema") not in READABLE_SCHEMAS:
        raise BaselineError(f"{path}: field 'schema': unknown schema version {data.get('schema')!r}; "
                            f"this suite reads {', '.join(map(str, READABLE_SCHEMAS))}")
    if not isinstance(data.get("entries"), dict):
        raise BaselineError(f"{path}: field 'entries': missing or not an object")
    try:
        BaselineFile.model_validate(data)
    except ValidationError as exc:
        raise BaselineError(f"{path}: " + "; ".join(_where(e) for e in exc.errors()[:3])) from None


def _where(error: dict) -> str:
    """One pydantic error as 'entry accel_bf16/bs1: field samples.ms_per_token[2]: ... (got -2.0)'."""
    loc = list(error["loc"])
    where = []
    if loc[:1] == ["entries"]:
        if len(loc) >= 3:
            where.append(f"entry {loc[1]}/{loc[2]}")
            loc = loc[3:]
        else:
            where.append(f"entries {'/'.join(map(str, loc[1:]))}".rstrip())
            loc = []
    field = ""
    for part in loc:
        field += f"[{part}]" if isinstance(part, int) else f".{part}" if field else str(part)
    if error["type"] == "missing":
        return ": ".join(where + [f"missing field {field!r}"])
    if field:
        where.append(f"field {field!r}")
    if error["type"] == "string_pattern_mismatch":
        message = "keys under a backend are batch sizes such as 'bs8'"
    else:
        message = files.validation_message(error)
    return ": ".join(where + [message])


# -- where entries live ----------------------------------------------------------------------
# Device names as torch reports them -> the name the profile uses, where one card has several
# names: the article's "8x80GB A100" tables are committed as 8xA100-80GB.
DEVICE_ALIASES = {"A100-SXM4-80GB": "A100-80GB", "A100-80GB-PCIe": "A100-80GB"}


def hardware_profile(fingerprint: dict) -> str:
    """`8xA100-80GB`, `1xH200`, or `cpu-<cpu name>-<cores>c` for a machine without GPUs."""
    if fingerprint["device_count"]:
        names = {DEVICE_ALIASES.get(name, name) for name in
                 (d.removeprefix("NVIDIA ").replace(" ", "-") for d in fingerprint["devices"])}
        return f"{fingerprint['device_count']}x{'+'.join(sorted(names))}"
    cpu = re.sub(r"[^a-z0-9]+", "-", fingerprint["cpu"].lower()).strip("-")
    return f"cpu-{cpu}-{fingerprint['cpu_count']}c"


def baseline_path(store: Path, profile: str, model: str) -> Path:
    return Path(store) / profile / f"{model}.json"


def entry_key(batch_size: int) -> str:
    return f"bs{batch_size}"


def load(path: Path) -> dict | None:
    """The validated file, or None when there is none yet."""
    path = Path(path)
    if not path.exists():
        return None
    data = files.read_json(path, BaselineError, "the baseline file")
    validate(data, path)
    return data


# -- the protocol a figure was measured under -------------------------------------------------
def protocol_of(settings, info: dict) -> dict:
    return {"new_tokens": settings.new_tokens, "cycles": settings.cycles, "prompts": PROMPTS_ID,
            "int8_method": info.get("int8_method"), "world_size": info.get("world_size", 1),
            # A memory cap moves layers (to the CPU, to disk): not comparable with an uncapped run.
            "max_memory": info.get("max_memory"),
            # The host CPU paces small batches, and pinning changes which CPU: not comparable.
            # The set asked for (ranks take a share each), as two runs asking the same share alike.
            "cpus": list(settings.cpus) if settings.cpus else None,
            "profile_cycles": settings.profile_cycles,
            # Which model (perf.models.model_identity): another one under the same name is not comparable.
            "model": settings.model_identity}


def protocol_differences(base: dict, protocol: dict) -> list[str]:
    """What makes a run not comparable with an entry. Fields the entry predates are not held
    against it, except "cpus": an entry without it ran unpinned. The cycle counts may differ."""
    keys = [k for k in ("new_tokens", "world_size", "int8_method", "max_memory") if k in base] + ["cpus"]
    shown = lambda k, v: "unpinned" if k == "cpus" and v is None else repr(v)  # noqa: E731
    differs = [f"{k} {shown(k, protocol.get(k))} here, {shown(k, base.get(k))} in the baseline"
               for k in keys if base.get(k) != protocol.get(k)]
    ours, theirs = protocol.get("model"), base.get("model")
    if ours and theirs and not models.same_model(ours, theirs):
        differs.insert(0, f"another model: {models.describe(ours)} here, {models.describe(theirs)} in the baseline")
    return differs


# -- entries from records ---------------------------------------------------------------------
def entry_from(record: dict, protocol: dict, fingerprint: dict, date: str | None = None) -> dict:
    """The baseline entry for one measured record; `date`: when it was measured (default: now)."""
    oom = record["outcome"] == "oom"
    gpu = bool(fingerprint.get("device_count"))
    profile = record.get("profile") or {}
    kernels, counted = profile.get("kernels"), profile.get("counted")
    return {
        "outcome": "oom" if oom else "ok",
        "ms_per_token": None if oom else record["ms_per_token"],
        "ttft_ms": None if oom else record.get("ttft_ms"),
        "peak_memory_mb": None if oom else record["peak_memory"]["per_device_mb"],
        "samples": {} if oom else {kind.key: list(record["samples"].get(kind.key) or []) for kind in evidence.SAMPLED},
        "kernels": None if oom or not kernels else kernels,
        "counted": None if oom or not counted else counted,
        **default_thresholds(gpu),
        # How many CPUs the worker could run on: what its host load (other_cpus) is a share of.
        "worker_cpus": None if oom else record.get("worker_cpus"),
        "provenance": {"kind": "measured", "date": date or datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       "commit": fingerprint.get("git_commit"), "versions": record.get("versions")},
        "protocol": protocol,
    }


def entries_from(records, fingerprint: dict, profile: str, date: str | None = None) -> dict:
    """{profile: {backend: {bsN: entry}}} for the measured ms/token records (or OOM) among
    `records` (perf.results records, as in a results file)."""
    by_profile: dict = {}
    for rec in records:
        if rec["test"] == SPEED_TEST and "protocol" in rec and \
                (rec.get("ms_per_token") is not None or rec["outcome"] == "oom"):
            fp = {**fingerprint, "device_count": rec.get("device_count", fingerprint["device_count"])}
            by_profile.setdefault(rec.get("hardware_profile") or profile, {}).setdefault(
                rec["backend"], {})[entry_key(rec["batch_size"])] = entry_from(rec, rec["protocol"], fp, date)
    return by_profile


# -- pooling ----------------------------------------------------------------------------------
# Two launch counts per step are the same count if they differ by less than half a launch in a
# cycle of 100 steps: the counts are exact (measured identical between processes on the H200),
# the per-step means are floats.
LAUNCH_TOLERANCE = 0.005


def kernel_launches(kernels: dict | None) -> dict:
    """{phase: {kernel: launches per step}}."""
    return {phase: {name: k["launches_per_step"] for name, k in (kernels or {}).get(phase, {}).items()}
            for phase in ("decode", "prefill")}


def same_launches(a: dict | None, b: dict | None) -> bool:
    """Whether two kernel tables launch the same kernels the same number of times per step."""
    ours, theirs = kernel_launches(a), kernel_launches(b)
    return all(set(ours[p]) == set(theirs[p]) and all(abs(ours[p][k] - theirs[p][k]) < LAUNCH_TOLERANCE
                                                      for k in ours[p]) for p in ours)


def same_counts(old: dict, new: dict) -> bool:
    """Whether two entries' counted cycles did the same work: as many steps, and each count the
    same within the band the same code varies by (which names made the top of a breakdown may
    differ at its edge, and their times do), or changed by names that cost less than the work
    threshold, as a verdict would judge it (on the H100 the first process of a fresh machine made
    67 calls more in 88,934 at accel_bf16 bs=32, a 0.07% that costs nothing: the same code)."""
    from perf import verdicts  # verdicts imports this module
    if old["counted"]["steps"] != new["counted"]["steps"]:
        return False
    ours, theirs = evidence.side_of_entry(new), evidence.side_of_entry(old)
    threshold = verdicts.thresholds_of(old)["work_threshold"]
    return all(verdicts.compare_work(kind, ours, theirs, threshold).kind == verdicts.NO_CHANGE
               for kind in evidence.SAMPLED if kind.breakdown and old["samples"].get(kind.key) and new["samples"].get(kind.key))


def pooled(old: dict, new: dict) -> tuple[dict | None, str]:
    """`new` with `old`'s samples before its own: one more process in the baseline. Between
    processes on the lent H200 medians moved by -34% to +58%, far more than within one, so a
    baseline of one process judges the next against that process's luck. Returns (None, why)
    when the two cannot be pooled (the caller keeps `old`), else (the pooled entry, a note: which
    kinds of evidence the earlier runs lack, or this one; "" when none).

    A kind of evidence one side lacks (recorded before the suite took it, or with fewer profiled
    cycles) does not block pooling: each kind pools what the runs that have it measured, and
    provenance.runs_of counts those runs where they are fewer than `runs`."""
    differs = protocol_differences(old["protocol"], new["protocol"])
    why = ("one of them ran out of memory" if "oom" in (old["outcome"], new["outcome"])
           else "not comparable: " + "; ".join(differs) if differs
           else "their versions differ" if old["provenance"].get("versions") != new["provenance"].get("versions")
           else "their GPU kernels differ" if old.get("kernels") and new.get("kernels")
           and not same_launches(old["kernels"], new["kernels"])
           else "their counted host work differs" if old.get("counted") and new.get("counted")
           and not same_counts(old, new)
           else "")
    if why:
        return None, why
    runs = old["provenance"].get("runs", 1)
    runs_of = dict(old["provenance"].get("runs_of") or {})
    samples, earlier_lack, this_lacks = {}, [], []
    for kind in evidence.SAMPLED:
        before, now = old["samples"].get(kind.key) or [], new["samples"].get(kind.key) or []
        samples[kind.key] = before + now
        if now and not before:
            earlier_lack.append(kind.key)
            runs_of[kind.key] = 1
        elif now and kind.key in runs_of:
            runs_of[kind.key] += 1
        elif before and not now:
            this_lacks.append(kind.key)
            runs_of.setdefault(kind.key, runs)
    first = old["provenance"].get("first_date", old["provenance"].get("date"))
    provenance = {**new["provenance"], "runs": runs + 1, "first_date": first}
    if runs_of:
        provenance["runs_of"] = runs_of
    note = "; ".join(([f"the earlier {runs} run(s) lack {', '.join(earlier_lack)}: these samples are this run's"]
                      if earlier_lack else []) + ([f"this run lacks {', '.join(this_lacks)}"] if this_lacks else []))
    return {**new, "ms_per_token": statistics.median(samples["ms_per_token"]),
            "ttft_ms": statistics.median(samples["ttft_ms"]) if samples["ttft_ms"] else new.get("ttft_ms"),
            "samples": samples, "kernels": new.get("kernels") or old.get("kernels"),
            "counted": new.get("counted") or old.get("counted"),
            # thresholds are kept: a profile's may have been edited by hand
            **{name: old.get(name, new.get(name)) for name in default_thresholds()
               if old.get(name, new.get(name)) is not None},
            "provenance": provenance}, note


def already_pooled(old: dict, new: dict) -> bool:
    """Whether `new`'s ms/token samples appear, in order, in `old`'s (the same run pooled twice)."""
    seq, part = old["samples"].get("ms_per_token") or [], new["samples"].get("ms_per_token") or []
    return bool(part) and any(seq[i:i + len(part)] == part for i in range(len(seq) - len(part) + 1))


# -- updates ----------------------------------------------------------------------------------
NOT_RECORDED = "not recorded"  # how update's notes start for an entry it refused to write


def update(path: Path, profile: str, model: str, entries: dict, mode: str = "yes", refuse=None,
           busy=None) -> list[str]:
    """Merge {backend: {bsN: entry}} into the file; returns what was kept, replaced or pooled, to
    report. mode: "yes" replaces measured entries, "force" published ones too, "pool" adds to them
    unless `refuse(old, new)` gives a reason not to (perf.verdicts.pool_refusal: the run was a
    REGRESSION or IMPROVEMENT against the entry, or its work differs), "force-pool" adds to them anyway. An entry
    for which `busy(entry)` gives a reason (perf.verdicts.busy_refusal: the host was busy while it
    was measured) is not written unless the mode is a forced one.
    A write that fails (a full disk) leaves the file and its history as they were, and raises OSError."""
    force = mode == "force"
    notes = []
    with files.locked(path):
        data = load(path) or {"schema": SCHEMA, "profile": profile, "model": model, "entries": {}}
        history, changed = [], False
        for backend, sizes in entries.items():
            for key, entry in sizes.items():
                old = data["entries"].get(backend, {}).get(key)
                why = busy(entry) if busy else None
                if why and not mode.startswith("force"):
                    notes.append(f"{NOT_RECORDED}: {backend}/{key}, measured on a busy host ({why}); "
                                 + ("the entry is kept as it was; " if old else "")
                                 + "measure again on a quiet host, or record it anyway with --update-baselines="
                                 + ("force-pool" if "pool" in mode else "force")
                                 + " (perf-record-baselines --force)")
                    continue
                if why:
                    notes.append(f"{backend}/{key} measured on a busy host ({why}), recorded as forced")
                if old is not None and old["provenance"]["kind"] == "published" and not force:
                    notes.append(f"kept published {backend}/{key} (replace it with --update-baselines=force)")
                    continue
                done = "replaced" if old else "added"
                if old is not None and mode in ("pool", "force-pool"):
                    if already_pooled(old, entry):
                        notes.append(f"kept {backend}/{key}: these samples are already in it")
                        continue
                    why = refuse(old, entry) if refuse and mode == "pool" else None
                    if why:
                        notes.append(f"kept {backend}/{key}, not pooled: {why}; pool it anyway with "
                                     "pytest's --update-baselines=force-pool, or perf-record-baselines --pool --force")
                        continue
                    entry, why = pooled(old, entry)
                    if entry is None:  # nothing is overwritten by a run that does not belong with it
                        notes.append(f"kept {backend}/{key}, not pooled: {why} (replace it with --update-baselines)")
                        continue
                    done = f"pooled (runs: {entry['provenance']['runs']}{'; ' + why if why else ''})"
                ours, theirs = (entry.get("protocol") or {}).get("model"), (old or {}).get("protocol", {}).get("model")
                other = f" (it measured another model, {models.describe(theirs)}; this run measured " \
                        f"{models.describe(ours)}; the old entry is in the history)" \
                    if ours and theirs and not models.same_model(ours, theirs) else ""
                if old is not None:
                    history.append({"replaced": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                    "backend": backend, "entry_key": key, "entry": old})
                data["entries"].setdefault(backend, {})[key] = entry
                changed = True
                notes.append(f"{done} {backend}/{key}{other}")
        if not changed:
            return notes  # the file (or its absence) stays as it was
        data["schema"] = SCHEMA
        text = json.dumps(data, indent=1, allow_nan=False) + "\n"
        history_file = path.with_name(f"{model}.history.jsonl")
        appended = files.append_lines(history_file, [json.dumps(h, allow_nan=False) for h in history])
        if appended.repaired:
            notes.append(appended.repaired)
        try:
            files.write_atomically(path, text)
        except OSError:
            appended.undo()  # the history must not record a replacement that did not happen
            raise
    return notes
