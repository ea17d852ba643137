"""Baseline files: `baselines/<hardware profile>/<model>.json`, one per profile and model.

    {"schema": 1, "profile": "1xH200", "model": "tiny-bloom",
     "entries": {"accel_bf16": {"bs1": ENTRY, ...}, ...}}

ENTRY: outcome ("ok" | "oom"), ms_per_token (null when oom), ttft_ms, peak_memory_mb (per
device), samples {"ms_per_token": [...], "ttft_ms": [...], "host_probe_ms": [...]} (empty for
published figures; host_probe_ms: perf.protocol.host_probe_ms around each cycle),
threshold (relative, default 0.05), memory_threshold (default 0.10), provenance
({"kind": "measured", "date", "commit", "versions"} or {"kind": "published", "source"}), and
protocol {"new_tokens", "cycles", "prompts", "int8_method", "world_size", "max_memory", "cpus"} (cpus:
the CPUs --cpus pinned the worker to; absent or null: unpinned).

Updates lock the file, re-read it, keep what this run did not measure, never replace a published
entry unless forced, append every replaced entry to `<model>.history.jsonl`, and replace the file
atomically. Pooling (`--update-baselines=pool`) adds this run's samples to the entry's instead of
replacing them, so that the baseline spans several processes (provenance "runs" counts them); an
entry that cannot take them (an OOM, another protocol or versions) is kept as it is.
"""
import fcntl
import json
import os
import re
import statistics
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from perf.verdicts import (IMPROVEMENT, NEW, NO_CHANGE, REFUSED, REGRESSION, Verdict,
                           compare_to_value, compare_with_host)

SCHEMA = 1
DEFAULT_THRESHOLD = 0.05
# Measured on the project's 2-core CPU VM (tests/data/aa-cpu-accel_bf16.json: 21 processes):
# medians move 10-40% between processes; across all 840 ordered A/A pairs, 5% gave 112 false
# REGRESSIONs, 25% gave 4, 30% none. Entries recorded on a machine without GPUs get this one.
CPU_THRESHOLD = 0.30
# Without a GPU the peak is the process's RSS, which moved 10.5% between two fresh runs of the
# same code (ds_int8, 418 -> 462 MB): 10% is for device allocators, not for RSS.
CPU_MEMORY_THRESHOLD = 0.30
DEFAULT_MEMORY_THRESHOLD = 0.10
PROMPTS_ID = "transformers-bloom-inference (8 prompts)"
SPEED_TEST = "test_ms_per_token"  # the timed test, whose records become entries
ENTRY_FIELDS = ("outcome", "ms_per_token", "samples", "threshold", "provenance", "protocol")
PROTOCOL_FIELDS = ("new_tokens", "world_size")


class BaselineError(Exception):
    """A baseline file that cannot be used; the message names the file, entry and field."""


def hardware_profile(fingerprint: dict) -> str:
    """`8xA100-SXM4-80GB`, `1xH200`, or `cpu-<cpu name>-<cores>c` for a machine without GPUs."""
    if fingerprint["device_count"]:
        names = {d.removeprefix("NVIDIA ").replace(" ", "-") for d in fingerprint["devices"]}
        return f"{fingerprint['device_count']}x{'+'.join(sorted(names))}"
    cpu = re.sub(r"[^a-z0-9]+", "-", fingerprint["cpu"].lower()).strip("-")
    return f"cpu-{cpu}-{fingerprint['cpu_count']}c"


def baseline_path(store: Path, profile: str, model: str) -> Path:
    return Path(store) / profile / f"{model}.json"


def entry_key(batch_size: int) -> str:
    return f"bs{batch_size}"


def load(path: Path) -> dict | None:
    """The validated file, or None when there is none yet."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise BaselineError(f"{path}: not valid JSON ({exc}); fix or remove the file") from None
    validate(data, path)
    return data


def validate(data, path: Path) -> None:
    def fail(where, what):
        raise BaselineError(f"{path}: {where}: {what}")
    if not isinstance(data, dict):
        fail("top level", "expected an object with schema, profile, model, entries")
    if data.get("schema") != SCHEMA:
        fail("field 'schema'", f"unknown schema version {data.get('schema')!r}; this suite reads {SCHEMA}")
    if not isinstance(data.get("entries"), dict):
        fail("field 'entries'", "missing or not an object")
    for backend, sizes in data["entries"].items():
        for key, entry in sizes.items():
            where = f"entry {backend}/{key}"
            if not re.fullmatch(r"bs\d+", key):
                fail(where, "keys under a backend are batch sizes such as 'bs8'")
            for name in ENTRY_FIELDS:
                if name not in entry:
                    fail(where, f"missing field {name!r}")
            if entry["outcome"] not in ("ok", "oom"):
                fail(where, f"field 'outcome' is {entry['outcome']!r}; expected 'ok' or 'oom'")
            if entry["outcome"] == "ok" and not isinstance(entry["ms_per_token"], (int, float)):
                fail(where, "field 'ms_per_token' must be a number when outcome is 'ok'")
            if "kind" not in entry["provenance"]:
                fail(where, "field 'provenance' has no 'kind' (measured or published)")
            for name in PROTOCOL_FIELDS:
                if name not in entry["protocol"]:
                    fail(where, f"field 'protocol' misses {name!r}")


def protocol_of(settings, info: dict) -> dict:
    return {"new_tokens": settings.new_tokens, "cycles": settings.cycles, "prompts": PROMPTS_ID,
            "int8_method": info.get("int8_method"), "world_size": info.get("world_size", 1),
            # A memory cap moves layers (to the CPU, to disk): not comparable with an uncapped run.
            "max_memory": info.get("max_memory"),
            # The host CPU paces small batches, and pinning changes which CPU: not comparable.
            # The set asked for (ranks take a share each), as two runs asking the same share alike.
            "cpus": list(settings.cpus) if settings.cpus else None}


def protocol_differences(base: dict, protocol: dict) -> list[str]:
    """What makes a run not comparable with an entry. Fields the entry predates are not held
    against it, except "cpus": an entry without it ran unpinned."""
    keys = [k for k in ("new_tokens", "world_size", "int8_method", "max_memory") if k in base] + ["cpus"]
    shown = lambda k, v: "unpinned" if k == "cpus" and v is None else repr(v)  # noqa: E731
    return [f"{k} {shown(k, protocol.get(k))} here, {shown(k, base.get(k))} in the baseline"
            for k in keys if base.get(k) != protocol.get(k)]


def judge(entry: dict | None, record: dict, protocol: dict) -> Verdict:
    """The verdict for one measured ms/token test (record: perf.results record) vs its entry."""
    if entry is None:
        return Verdict(NEW, detail="no baseline entry; record one with --update-baselines")
    differs = protocol_differences(entry["protocol"], protocol)
    if differs:
        return Verdict(REFUSED, detail="not comparable: " + "; ".join(differs))
    now_oom = record["outcome"] == "oom"
    if now_oom or entry["outcome"] == "oom":
        if now_oom and entry["outcome"] == "oom":
            return Verdict(NO_CHANGE, detail="out of memory, as in the baseline")
        if now_oom:
            return Verdict(REGRESSION, detail="out of memory; the baseline ran at this batch size")
        return Verdict(IMPROVEMENT, detail="runs; the baseline ran out of memory (update the baseline)")
    threshold = entry.get("threshold", DEFAULT_THRESHOLD)
    base_samples = entry["samples"].get("ms_per_token") or []
    if base_samples:
        speed = compare_with_host(record["ms_per_token_samples"], base_samples, record.get("host_probe_ms_samples"),
                                  entry["samples"].get("host_probe_ms"), threshold)
    else:
        speed = compare_to_value(record["ms_per_token_samples"], entry["ms_per_token"], threshold)
    speed = replace(speed, detail=speed.detail + _advice(speed.kind, entry, bool(base_samples)))
    memory = _memory_regression(entry, record)
    if memory and speed.kind != REGRESSION:
        return Verdict(REGRESSION, speed.change, speed.low, speed.high, memory)
    return speed


def _advice(kind: str, entry: dict, has_samples: bool) -> str:
    """What to do about a decision. A baseline of one run: its interval covers the cycles' spread,
    not the processes' (on the H200 one run gave the next 3 false IMPROVEMENTs in 17 cells; README,
    the 560m runs). A published entry: --update-baselines keeps it unless forced."""
    one_run = has_samples and entry["provenance"].get("runs", 1) == 1
    notes = []
    if one_run and kind in (REGRESSION, IMPROVEMENT):
        notes.append("the baseline is one process, and this interval leaves out how much processes differ: "
                     "run the baseline's code again to confirm")
    if kind == IMPROVEMENT:
        notes.append("a published baseline: replace it with --update-baselines=force if this run should be the baseline"
                     if entry["provenance"]["kind"] == "published" else
                     "if it holds, update the baseline" if one_run else "update the baseline")
    return "".join("; " + note for note in notes)


def _memory_regression(entry: dict, record: dict) -> str | None:
    base, now = entry.get("peak_memory_mb"), (record.get("peak_memory") or {}).get("per_device_mb")
    if not base or not now:
        return None
    limit = entry.get("memory_threshold", DEFAULT_MEMORY_THRESHOLD)
    if max(now) > max(base) * (1 + limit):
        return f"peak memory {max(now):.0f} MB > baseline {max(base):.0f} MB + {limit:.0%}"
    return None


def entry_from(record: dict, protocol: dict, fingerprint: dict, date: str | None = None) -> dict:
    """The baseline entry for one measured record; `date`: when it was measured (default: now)."""
    oom = record["outcome"] == "oom"
    return {
        "outcome": "oom" if oom else "ok",
        "ms_per_token": None if oom else record["ms_per_token"],
        "ttft_ms": None if oom else record.get("ttft_ms"),
        "peak_memory_mb": None if oom else record["peak_memory"]["per_device_mb"],
        "samples": {} if oom else {"ms_per_token": record["ms_per_token_samples"],
                                   "ttft_ms": record["ttft_ms_samples"],
                                   "host_probe_ms": record.get("host_probe_ms_samples", [])},
        "threshold": DEFAULT_THRESHOLD if fingerprint.get("device_count") else CPU_THRESHOLD,
        "memory_threshold": DEFAULT_MEMORY_THRESHOLD if fingerprint.get("device_count") else CPU_MEMORY_THRESHOLD,
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


SAMPLE_KINDS = ("ms_per_token", "ttft_ms", "host_probe_ms")


def pooled(old: dict, new: dict) -> tuple[dict | None, str]:
    """`new` with `old`'s samples before its own: one more process in the baseline. Between
    processes on the lent H200 medians moved by -34% to +58%, far more than within one, so a
    baseline of one process judges the next against that process's luck. Returns (None, why)
    when the two cannot be pooled (the caller keeps `old`)."""
    differs = protocol_differences(old["protocol"], new["protocol"])
    why = ("one of them ran out of memory" if "oom" in (old["outcome"], new["outcome"])
           else "not comparable: " + "; ".join(differs) if differs
           else "their versions differ" if old["provenance"].get("versions") != new["provenance"].get("versions")
           else "one has host probes, the other not"
           if bool(old["samples"].get("host_probe_ms")) != bool(new["samples"].get("host_probe_ms")) else "")
    if why:
        return None, why
    samples = {k: old["samples"].get(k, []) + new["samples"].get(k, []) for k in SAMPLE_KINDS}
    first = old["provenance"].get("first_date", old["provenance"].get("date"))
    return {**new, "ms_per_token": statistics.median(samples["ms_per_token"]),
            "ttft_ms": statistics.median(samples["ttft_ms"]) if samples["ttft_ms"] else new["ttft_ms"],
            "samples": samples,
            # thresholds are kept: a profile's may have been edited by hand
            "threshold": old.get("threshold", new["threshold"]),
            "memory_threshold": old.get("memory_threshold", new["memory_threshold"]),
            "provenance": {**new["provenance"], "runs": old["provenance"].get("runs", 1) + 1,
                           "first_date": first}}, ""


def already_pooled(old: dict, new: dict) -> bool:
    """Whether `new`'s ms/token samples appear, in order, in `old`'s (the same run pooled twice)."""
    seq, part = old["samples"].get("ms_per_token") or [], new["samples"].get("ms_per_token") or []
    return bool(part) and any(seq[i:i + len(part)] == part for i in range(len(seq) - len(part) + 1))


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two pytest processes updating at once take turns
        yield


def update(path: Path, profile: str, model: str, entries: dict, mode: str = "yes") -> list[str]:
    """Merge {backend: {bsN: entry}} into the file; returns what was kept, replaced or pooled, to
    report. mode: "yes" replaces measured entries, "force" published ones too, "pool" adds to them."""
    force = mode == "force"
    notes = []
    with _locked(path):
        data = load(path) or {"schema": SCHEMA, "profile": profile, "model": model, "entries": {}}
        history = []
        for backend, sizes in entries.items():
            for key, entry in sizes.items():
                old = data["entries"].get(backend, {}).get(key)
                if old is not None and old["provenance"]["kind"] == "published" and not force:
                    notes.append(f"kept published {backend}/{key} (replace it with --update-baselines=force)")
                    continue
                done = "replaced" if old else "added"
                if old is not None and mode == "pool":
                    if already_pooled(old, entry):
                        notes.append(f"kept {backend}/{key}: these samples are already in it")
                        continue
                    entry, why = pooled(old, entry)
                    if entry is None:  # nothing is overwritten by a run that does not belong with it
                        notes.append(f"kept {backend}/{key}, not pooled: {why} (replace it with --update-baselines)")
                        continue
                    done = f"pooled (runs: {entry['provenance']['runs']})"
                if old is not None:
                    history.append({"replaced": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                    "backend": backend, "entry_key": key, "entry": old})
                data["entries"].setdefault(backend, {})[key] = entry
                notes.append(f"{done} {backend}/{key}")
        if history:
            with open(path.with_name(f"{model}.history.jsonl"), "a") as f:
                f.writelines(json.dumps(h) + "\n" for h in history)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        os.replace(tmp, path)
    return notes
