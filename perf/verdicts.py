"""Verdicts: is this run slower than its baseline, beyond noise, and on which evidence?

Each kind of evidence is judged with its own noise model (docs/verdicts.md says why):

- wall ms/token, the headline, and the worker's main-thread CPU time per token ("host time"):
  samples against samples in log (perf.stats.hodges_lehmann). Where both sides have a host probe
  per cycle, a verdict stands only if the comparison per unit of host speed agrees
  (compare_with_host). On a busy host (the worker waited for a CPU, or other processes used its
  CPUs: host_busy) both are INCONCLUSIVE, never a REGRESSION.
- GPU kernel time per decode step, from the profiled cycles: the Moses interval of the shift,
  at 95% where the cycles allow it, else the range of all ratios at the confidence it has.
  Kernel time does not follow the host: it held within 0.1% between processes and under load.
- kernel launches and the set of kernels per step, aten operators per token (CPU machines):
  exact counts, so any change is named.

The cell is a REGRESSION when the GPU kernel time is one (the kernels that grew are named), or,
where the host-side evidence agrees (wall and host time both) on a host that was not busy; NO
CHANGE needs every kind of evidence both sides have to say so; an entry that lacks some (an older
baseline, a published figure) is judged on what it has, and the verdict says so.
"""
import math
import statistics
from dataclasses import dataclass, field, replace

from perf import baselines, stats

REGRESSION, IMPROVEMENT, NO_CHANGE, INCONCLUSIVE = "REGRESSION", "IMPROVEMENT", "NO CHANGE", "INCONCLUSIVE"
NEW, REFUSED = "NEW", "REFUSED"
CHANGED = "CHANGED"  # an exact count that differs: evidence only, never a cell's verdict
DECIDED = (REGRESSION, IMPROVEMENT)
# A busy host: the main thread waited for a CPU this share of the cycle, or other processes used
# this share of the CPUs the worker may run on (on average over the cycles).
BUSY_WAIT = 0.05
BUSY_OTHERS = 0.10


@dataclass(frozen=True)
class Verdict:
    kind: str
    change: float | None = None  # new / base - 1 of ms/token (the Hodges-Lehmann shift for samples)
    low: float | None = None  # confidence interval of `change`
    high: float | None = None
    detail: str = ""
    decided_by: str | None = None  # which evidence decided a cell: "GPU kernel time", "host time", ...
    evidence: dict = field(default_factory=dict)  # name -> Verdict of that evidence alone

    def describe(self) -> str:
        if self.change is None:
            return f"{self.kind}: {self.detail}" if self.detail else self.kind
        return f"{self.kind} {format_change(self)} {self.detail}".rstrip()

    def as_json(self) -> dict:
        return {"kind": self.kind, "change": self.change, "low": self.low, "high": self.high,
                "detail": self.detail, "decided_by": self.decided_by,
                "evidence": {name: v.as_json() for name, v in self.evidence.items()}}


def format_change(v: Verdict) -> str:
    text = f"{v.change:+.1%}"
    if v.low is not None:
        text += f" [{v.low:+.1%}, {v.high:+.1%}]" if math.isfinite(v.low) and math.isfinite(v.high) \
            else " [interval unbounded]"
    return text


def count(kinds) -> dict:
    """{verdict kind: how many} of the verdict kinds given."""
    counts: dict = {}
    for kind in kinds:
        counts[kind] = counts.get(kind, 0) + 1
    return counts


# -- one kind of evidence -----------------------------------------------------------------------
def _kind_of(interval: stats.Interval, threshold: float) -> str:
    limit = math.log1p(threshold)
    if interval.low > limit:
        return REGRESSION
    if interval.high < -limit:
        return IMPROVEMENT
    # NO CHANGE: not slower beyond the threshold (a possible speed-up that the interval cannot
    # confirm is no regression either).
    return NO_CHANGE if interval.high < limit else INCONCLUSIVE


def _interval_text(interval: stats.Interval, m: int, n: int, what: str, threshold: float) -> str:
    how = "" if interval.exact else ", normal approximation"
    return f"({m} vs {n} {what}, {interval.confidence:.0%} interval{how}, threshold {threshold:.0%})"


def compare_samples(new: list[float], base: list[float], threshold: float) -> Verdict:
    interval = stats.hodges_lehmann(new, base)
    kind = _kind_of(interval, threshold)
    detail = _interval_text(interval, len(new), len(base), "samples", threshold)
    if kind == INCONCLUSIVE:
        detail += "; more cycles (--cycles) or repeated runs would decide it"
    return Verdict(kind, math.expm1(interval.estimate), math.expm1(interval.low), math.expm1(interval.high), detail)


def compare_to_value(new: list[float], value: float, tolerance: float) -> Verdict:
    change = statistics.median(new) / value - 1
    kind = REGRESSION if change > tolerance else IMPROVEMENT if change < -tolerance else NO_CHANGE
    return Verdict(kind, change, detail=f"(against one published figure, tolerance {tolerance:.0%}; "
                                        "no spread available)")


def _usable_probe(probe, samples) -> bool:
    return bool(probe) and len(probe) == len(samples) and all(math.isfinite(p) and p > 0 for p in probe)


def compare_with_host(new: list[float], base: list[float], new_probe: list[float] | None,
                      base_probe: list[float] | None, threshold: float) -> Verdict:
    """compare_samples, then the same comparison with each cycle's figure divided by the host
    probe taken around that cycle: its time in units of the host CPU's own speed. Decoding at small
    and middle batch sizes is bound by the host CPU, whose speed drifted 1.8x within a minute on
    the lent H200; there, in one process, cycle times followed the probe with slope 0.82-0.89 in
    log-log and correlation 0.78-0.90. The raw verdict holds if no part of a cycle waits on the
    host, the normalized one if all of it does; the truth lies between. So a REGRESSION or
    IMPROVEMENT stands only if the normalized comparison finds it too, and a NO CHANGE only if
    that comparison finds no change; otherwise INCONCLUSIVE, saying why. Without a usable probe
    per cycle on both sides (baselines older than the probe), the raw verdict stands."""
    verdict = compare_samples(new, base, threshold)
    if not (_usable_probe(new_probe, new) and _usable_probe(base_probe, base)):
        return verdict
    normalized = compare_samples([m / p for m, p in zip(new, new_probe)],
                                 [m / p for m, p in zip(base, base_probe)], threshold)
    if not ((verdict.kind in DECIDED and normalized.kind != verdict.kind)
            or (verdict.kind == NO_CHANGE and normalized.kind in DECIDED)):
        return verdict
    host = math.expm1(stats.hodges_lehmann(new_probe, base_probe).estimate)
    # verdict.detail is the samples and threshold only: advice is added to INCONCLUSIVE alone.
    return replace(verdict, kind=INCONCLUSIVE, detail=(
        f"{verdict.detail}; {verdict.kind} as measured, but {normalized.kind} {format_change(normalized)} "
        f"per unit of host speed: the host CPU itself ran {host:+.1%} against the baseline's (host probe); "
        "rerun on a quieter host"))


def compare_gpu(new: list[float], base: list[float], threshold: float) -> Verdict:
    """GPU kernel time per decode step, one sample per profiled cycle. The Moses interval at 95%
    needs 4 vs 4 cycles; with fewer, the range of all new/base ratios (rank 1), whose confidence
    1 - 2/C(m+n, m) the detail gives (2 vs 4 cycles: 87%)."""
    c, achieved, exact = stats.moses_rank(len(new), len(base))
    if c == 0:
        c, achieved = 1, 1 - 2 / math.comb(len(new) + len(base), len(new))
    diffs = sorted(math.log(x) - math.log(y) for x in new for y in base)
    interval = stats.Interval(statistics.median(diffs), diffs[c - 1], diffs[-c], achieved, exact)
    kind = _kind_of(interval, threshold)
    return Verdict(kind, math.expm1(interval.estimate), math.expm1(interval.low), math.expm1(interval.high),
                   _interval_text(interval, len(new), len(base), "profiled cycles", threshold))


def short_kernel_name(name: str, width: int = 60) -> str:
    """A kernel's demangled name without its return type and arguments, shortened for a table."""
    name = name.removeprefix("void ").replace("(anonymous namespace)::", "")
    depth, cut = 0, len(name)
    for i, ch in enumerate(name):  # the argument list: the first '(' outside template brackets
        depth += ch == "<"
        depth -= ch == ">"
        if ch == "(" and depth == 0:
            cut = i
            break
    name = name[:cut]
    return name if len(name) <= width else name[:width - 1] + "…"


def compare_kernels(new: dict, base: dict) -> Verdict:
    """The kernels per step ({"decode"|"prefill": {name: {"launches_per_step", "ms_per_step"}}}):
    exact launch counts, so one more launch per step is seen; the detail names every kernel that
    appeared, vanished or changed its count."""
    changes = []
    new_counts, base_counts = baselines.kernel_launches(new), baselines.kernel_launches(base)
    for phase in ("decode", "prefill"):
        ours, theirs = new_counts[phase], base_counts[phase]
        for name in sorted(set(ours) | set(theirs), key=lambda k: -max(ours.get(k, 0), theirs.get(k, 0))):
            a, b = theirs.get(name), ours.get(name)
            short = short_kernel_name(name)
            if a is None:
                changes.append(f"{phase}: +{short} ({b:.3g}/step)")
            elif b is None:
                changes.append(f"{phase}: -{short} (was {a:.3g}/step)")
            elif abs(a - b) >= baselines.LAUNCH_TOLERANCE:
                changes.append(f"{phase}: {short} {a:.3g} -> {b:.3g}/step")
    launches = sum(new_counts["decode"].values())
    if not changes:
        return Verdict(NO_CHANGE, detail=f"{launches:.2f} kernel launches per decode step, the same kernels")
    return Verdict(CHANGED, detail=f"{launches:.2f} launches per decode step (baseline "
                                   f"{sum(base_counts['decode'].values()):.2f}); kernels changed: " + "; ".join(changes[:8])
                                   + (f"; and {len(changes) - 8} more" if len(changes) > 8 else ""))


def compare_counts(new: list[float], base: list[float], what: str) -> Verdict:
    """An exact count per token (aten operators dispatched): the same code dispatches the same."""
    a, b = statistics.median(base), statistics.median(new)
    if round(a, 2) == round(b, 2):
        return Verdict(NO_CHANGE, detail=f"{b:g} {what} on both sides")
    return Verdict(CHANGED, b / a - 1, detail=f"{b:g} {what}, baseline {a:g}")


def kernels_that_grew(new: dict, base: dict, top: int = 3) -> str:
    """The decode kernels whose time per step grew the most, as 'name +0.150 ms/step (+4%)'."""
    ours, theirs = (new or {}).get("decode", {}), (base or {}).get("decode", {})
    grew = sorted(((ours[k]["ms_per_step"] - theirs.get(k, {}).get("ms_per_step", 0.0), k) for k in ours),
                  reverse=True)
    parts = []
    for delta, name in grew[:top]:
        if delta <= 0 or delta < grew[0][0] / 4:  # the kernels that made the change, not the noise
            break
        was = theirs.get(name, {}).get("ms_per_step")
        parts.append(f"{short_kernel_name(name)} +{delta:.3f} ms/step" + (f" ({delta / was:+.0%})" if was else " (new)"))
    return ", ".join(parts)


def host_busy(samples: dict, cpus: int | None) -> str | None:
    """Why the host was busy during these cycles (samples: {kind: [per cycle]}), or None. Means
    over the cycles: two disturbed cycles of five can make a false change. `cpus`: how many CPUs
    the worker could run on (other_cpus is in CPUs)."""
    wait = samples.get("run_queue_wait") or []
    others = samples.get("other_cpus") or []
    reasons = []
    if wait and statistics.mean(wait) > BUSY_WAIT:
        reasons.append(f"the worker's main thread waited for a CPU {statistics.mean(wait):.0%} of the time")
    if others and cpus and statistics.mean(others) > BUSY_OTHERS * cpus:
        reasons.append(f"other processes used {statistics.mean(others):.2f} of its {cpus} CPUs")
    return " and ".join(reasons) or None


# -- the cell ---------------------------------------------------------------------------------
def _samples_of(record: dict) -> dict:
    profile = record.get("profile") or {}
    return {kind: record.get(f"{kind}_samples") or profile.get(f"{kind}_samples") or []
            for kind in baselines.SAMPLE_KINDS}


def judge(entry: dict | None, record: dict, protocol: dict) -> Verdict:
    """The verdict for one measured ms/token test (record: perf.results record) vs its entry."""
    if entry is None:
        return Verdict(NEW, detail="no baseline entry; record one with --update-baselines")
    differs = baselines.protocol_differences(entry["protocol"], protocol)
    if differs:
        return Verdict(REFUSED, detail="not comparable: " + "; ".join(differs))
    now_oom = record["outcome"] == "oom"
    if now_oom or entry["outcome"] == "oom":
        if now_oom and entry["outcome"] == "oom":
            return Verdict(NO_CHANGE, detail="out of memory, as in the baseline", decided_by="out of memory")
        if now_oom:
            return Verdict(REGRESSION, detail="out of memory; the baseline ran at this batch size",
                           decided_by="out of memory")
        return Verdict(IMPROVEMENT, detail="runs; the baseline ran out of memory (update the baseline)",
                       decided_by="out of memory")
    threshold = entry.get("threshold", baselines.DEFAULT_THRESHOLD)
    ours, theirs = _samples_of(record), entry["samples"]
    if theirs.get("ms_per_token"):
        speed = _judge_evidence(entry, record, ours, theirs, threshold)
    else:
        speed = replace(compare_to_value(ours["ms_per_token"], entry["ms_per_token"], threshold), decided_by="wall time")
    speed = replace(speed, detail=speed.detail + _advice(speed.kind, entry, bool(theirs.get("ms_per_token"))))
    memory = _memory_regression(entry, record)
    if memory and speed.kind != REGRESSION:
        return replace(speed, kind=REGRESSION, detail=memory, decided_by="peak memory")
    return speed


def work_evidence(ours: dict, theirs: dict, our_kernels: dict | None, their_kernels: dict | None,
                  gpu_threshold: float) -> dict:
    """The evidence of the work itself, from the profiled cycles, where both sides have it: GPU
    kernel time per decode step (samples per profiled cycle), the kernels, aten operators."""
    evidence = {}
    if ours.get("gpu_decode_ms_per_step") and theirs.get("gpu_decode_ms_per_step"):
        evidence["GPU kernel time"] = compare_gpu(ours["gpu_decode_ms_per_step"], theirs["gpu_decode_ms_per_step"],
                                                  gpu_threshold)
    if our_kernels and their_kernels:
        evidence["kernels"] = compare_kernels(our_kernels, their_kernels)
    if ours.get("aten_ops_per_token") and theirs.get("aten_ops_per_token"):
        evidence["aten ops"] = compare_counts(ours["aten_ops_per_token"], theirs["aten_ops_per_token"],
                                              "aten operators per token")
    return evidence


def _judge_evidence(entry: dict, record: dict, ours: dict, theirs: dict, threshold: float) -> Verdict:
    """Each kind of evidence both sides have, then the cell from them (module docstring)."""
    both = lambda kind: bool(ours.get(kind)) and bool(theirs.get(kind))  # noqa: E731
    probes = (ours.get("host_probe_ms"), theirs.get("host_probe_ms"))
    evidence = {"wall": compare_with_host(ours["ms_per_token"], theirs["ms_per_token"], *probes, threshold)}
    if both("main_cpu_ms_per_token"):
        evidence["host time"] = compare_with_host(ours["main_cpu_ms_per_token"], theirs["main_cpu_ms_per_token"],
                                                  *probes, threshold)
    evidence.update(work_evidence(ours, theirs, (record.get("profile") or {}).get("kernels"), entry.get("kernels"),
                                  entry.get("gpu_threshold") or baselines.DEFAULT_GPU_THRESHOLD))
    cpus = record.get("worker_cpus")
    busy = [f"{side}: {why}" for side, why in (("this run", host_busy(ours, cpus)),
                                               ("the baseline", host_busy(theirs, cpus))) if why]
    if busy:  # the intervals stand as measured; what they would decide does not
        for name in ("wall", "host time"):
            if name in evidence:
                evidence[name] = replace(evidence[name], kind=INCONCLUSIVE, detail=evidence[name].detail.split(";")[0])
    wall = evidence["wall"]
    return replace(_combine(evidence, busy, record, entry), change=wall.change, low=wall.low, high=wall.high,
                   evidence=evidence)


def _combine(evidence: dict, busy: list[str], record: dict, entry: dict, against: str = "the baseline entry") -> Verdict:
    gpu, kernels = evidence.get("GPU kernel time"), evidence.get("kernels")
    ops = evidence.get("aten ops")
    wall, host = evidence["wall"], evidence.get("host time")
    host_side = [v for v in (wall, host) if v is not None]
    host_kind = host_side[0].kind if len({v.kind for v in host_side}) == 1 else INCONCLUSIVE
    work = _work_sentence(gpu, kernels, ops, record)
    if busy:
        timing = f"wall {format_change(wall)}" + (f", host time per token {format_change(host)}" if host else "") + \
            f" not judged {wall.detail}"
    else:
        timing = f"wall {format_change(wall)} {wall.kind.lower()}" + (
            f", host time per token {format_change(host)} {host.kind.lower()}" if host else "") + f" {wall.detail}"
    timing += _missing(evidence, entry, against)
    if gpu is not None and gpu.kind == REGRESSION:
        grew = kernels_that_grew((record.get("profile") or {}).get("kernels"), entry.get("kernels"))
        detail = f"GPU kernel time per decode step {format_change(gpu)} {gpu.detail}" + (
            f"; grew: {grew}" if grew else "") + (f"; {kernels.detail}" if kernels and kernels.kind == CHANGED else "")
        return Verdict(REGRESSION, detail=f"{detail}; {timing}", decided_by="GPU kernel time")
    if host_kind == REGRESSION and not busy:
        return Verdict(REGRESSION, detail=f"{work}; {timing}", decided_by="host time")
    if gpu is not None and gpu.kind == IMPROVEMENT and host_kind != REGRESSION:
        return Verdict(IMPROVEMENT, detail=f"GPU kernel time per decode step {format_change(gpu)} {gpu.detail}; "
                                           f"{timing}", decided_by="GPU kernel time")
    if host_kind == IMPROVEMENT and not busy and (gpu is None or gpu.kind != REGRESSION):
        return Verdict(IMPROVEMENT, detail=f"{work}; {timing}", decided_by="host time")
    if all(v.kind == NO_CHANGE for v in evidence.values()):
        return Verdict(NO_CHANGE, detail=f"every kind of evidence agrees: {work}; {timing}", decided_by="all evidence")
    if busy:
        why = "host busy (" + "; ".join(busy) + ")"
    elif len({v.kind for v in host_side}) > 1:
        why = "wall and host time disagree"
    else:
        why = "not decided"
    return Verdict(INCONCLUSIVE, detail=f"{why}: {work}; {timing}")


def _work_sentence(gpu: Verdict | None, kernels: Verdict | None, ops: Verdict | None, record: dict) -> str:
    """What the GPU (or, on a CPU machine, the dispatcher) did, against the baseline."""
    parts = []
    if gpu is not None:
        ms = statistics.median(_samples_of(record)["gpu_decode_ms_per_step"])
        state = "unchanged" if gpu.kind == NO_CHANGE else gpu.kind.lower()
        parts.append(f"GPU work {state} ({ms:.3g} ms/step {format_change(gpu)}")
        parts[-1] += f", {kernels.detail})" if kernels is not None else ")"
    elif kernels is not None:
        parts.append(f"kernels: {kernels.detail}")
    if ops is not None:
        parts.append(("work unchanged: " if ops.kind == NO_CHANGE else "work changed: ") + ops.detail)
    return "; ".join(parts) or "no GPU or operator evidence"


def _missing(evidence: dict, entry: dict, against: str) -> str:
    """Says so when the cell was judged without evidence the suite can take (an older baseline)."""
    if "host time" in evidence:
        return ""
    if entry["samples"].get("main_cpu_ms_per_token"):
        return "; this run has no host CPU evidence"
    how = "and the host probe " if against == "the baseline entry" else ""
    return (f"; judged on wall time {how}alone: {against} has no host CPU or GPU evidence"
            + (" (re-record it with --update-baselines)" if against == "the baseline entry" else ""))


def _advice(kind: str, entry: dict, has_samples: bool) -> str:
    """What to do about a decision. A baseline of one run: its interval covers the cycles' spread,
    not the processes' (on the H200 one run gave the next 3 false IMPROVEMENTs in 17 cells;
    docs/verdicts.md). A published entry: --update-baselines keeps it unless forced."""
    one_run = has_samples and entry["provenance"].get("runs", 1) == 1
    notes = []
    if one_run and kind in DECIDED:
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
    limit = entry.get("memory_threshold", baselines.DEFAULT_MEMORY_THRESHOLD)
    if max(now) > max(base) * (1 + limit):
        return f"peak memory {max(now):.0f} MB > baseline {max(base):.0f} MB + {limit:.0%}"
    return None


def pool_refusal(old: dict, new: dict) -> str | None:
    """Why a run (as its baseline entry `new`) should not be pooled into `old`: a run judged a
    REGRESSION or INCONCLUSIVE against the entry may not belong with it (other code, a busy host)."""
    if "oom" in (old["outcome"], new["outcome"]) or not old["samples"].get("ms_per_token"):
        return None  # pooling itself refuses these, saying why
    record = {"outcome": "passed", "peak_memory": {"per_device_mb": new.get("peak_memory_mb") or []},
              "profile": {"kernels": new.get("kernels")},
              **{f"{kind}_samples": values for kind, values in new["samples"].items()}}
    verdict = judge(old, record, new["protocol"])
    if verdict.kind in (REGRESSION, INCONCLUSIVE):
        return f"this run was {verdict.kind} against it" + (f" (wall {format_change(verdict)})" if verdict.change is not None else "")
    return None
