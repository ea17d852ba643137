"""Verdicts: is this run slower than its baseline, beyond noise, and on which evidence?

Each kind of evidence (perf.evidence, the table) is compared with its own noise model
(docs/verdicts.md says why), by the name of its comparison:

- "timing" (wall ms/token, the headline, and the worker's main-thread CPU time per token): samples
  against samples in log (perf.stats.hodges_lehmann). Where both sides have a host probe per cycle,
  a verdict stands only if the comparison per unit of host speed agrees (compare_with_host).
- "interval" (GPU kernel time per decode step, from the profiled cycles): the Moses interval of the
  shift, at 95% where the cycles allow it, else the range of all ratios at the confidence it has.
  Kernel time does not follow the host: it held within 0.1% between processes and under load.
- "kernels" and "count" (kernel launches and the set of kernels per step, aten operators per
  token): exact, so any change is named.
- "memory": out of memory where the baseline ran, or peak memory past its threshold.

The cell, from the evidence by role (combine): a REGRESSION when a WORK kind that decides is one
(the kernels that grew are named), or when the TIMING kinds all are on a host that was not busy
(the LOAD kinds say how busy); an IMPROVEMENT likewise when nothing regressed; NO CHANGE only when
every kind both sides have says so; INCONCLUSIVE otherwise, saying why. MEMORY vetoes: its
REGRESSION fails the cell whatever the rest says. An entry that lacks some evidence (an older
baseline, a published figure) is judged on what it has, and the verdict says so.
"""
import math
import statistics
from dataclasses import dataclass, field, replace

from perf import baselines, stats
from perf.evidence import (INFO, KINDS, LOAD, MEMORY, PROBE, TIMING, WORK, Side, of_role, side_of_entry,
                           side_of_record)

REGRESSION, IMPROVEMENT, NO_CHANGE, INCONCLUSIVE = "REGRESSION", "IMPROVEMENT", "NO CHANGE", "INCONCLUSIVE"
NEW, REFUSED = "NEW", "REFUSED"
CHANGED = "CHANGED"  # an exact count that differs: evidence only, never a cell's verdict
DECIDED = (REGRESSION, IMPROVEMENT)
@dataclass(frozen=True)
class Verdict:
    kind: str
    change: float | None = None  # new / base - 1 of ms/token (the Hodges-Lehmann shift for samples)
    low: float | None = None  # confidence interval of `change`
    high: float | None = None
    detail: str = ""
    decided_by: str | None = None  # which evidence decided a cell (its label): "GPU kernel time", "host time", ...
    evidence: dict = field(default_factory=dict)  # kind key (perf.evidence) -> Verdict of that evidence alone
    label: str | None = None  # the evidence's label, for a Verdict of one kind of evidence

    def describe(self) -> str:
        if self.change is None:
            return f"{self.kind}: {self.detail}" if self.detail else self.kind
        return f"{self.kind} {format_change(self)} {self.detail}".rstrip()

    def as_json(self) -> dict:
        out = {"kind": self.kind, "change": self.change, "low": self.low, "high": self.high, "detail": self.detail}
        if self.label is not None:
            return {"label": self.label, **out}
        return {**out, "decided_by": self.decided_by,
                "evidence": {key: v.as_json() for key, v in self.evidence.items()}}

    def record_fields(self) -> dict:
        """The verdict as a results record holds it (perf.results)."""
        return {"verdict": self.kind, "verdict_detail": self.describe(), "change": self.change,
                "decided_by": self.decided_by, "evidence": {key: v.as_json() for key, v in self.evidence.items()}}


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
def kind_of(interval: stats.Interval, threshold: float) -> str:
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
    kind = kind_of(interval, threshold)
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
    kind = kind_of(interval, threshold)
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


def _compare_with_zero(new: list[float], base: list[float], what: str) -> Verdict:
    """A time that is 0 in some cycle (a step without a memset): no log, so no interval; 0 on both
    sides is no change, anything else is a change, named."""
    if not any(new) and not any(base):
        return Verdict(NO_CHANGE, detail=f"no {what} on either side")
    return Verdict(CHANGED, detail=f"{statistics.median(new):.3g} {what}, baseline {statistics.median(base):.3g}")


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


def compare_memory(ours: Side, theirs: Side, threshold: float) -> Verdict | None:
    """Out of memory where the baseline ran (or the other way), else the peak over devices."""
    if ours.oom or theirs.oom:
        if ours.oom and theirs.oom:
            return Verdict(NO_CHANGE, detail="out of memory, as in the baseline")
        if ours.oom:
            return Verdict(REGRESSION, detail="out of memory; the baseline ran at this batch size")
        return Verdict(IMPROVEMENT, detail="runs; the baseline ran out of memory (update the baseline)")
    if not ours.peak_memory_mb or not theirs.peak_memory_mb:
        return None
    now, base = max(ours.peak_memory_mb), max(theirs.peak_memory_mb)
    if now > base * (1 + threshold):
        return Verdict(REGRESSION, now / base - 1, detail=f"peak memory {now:.0f} MB > baseline {base:.0f} MB + {threshold:.0%}")
    return Verdict(NO_CHANGE, now / base - 1, detail=f"peak memory {now:.0f} MB, baseline {base:.0f} MB (threshold {threshold:.0%})")


def host_busy(samples: dict, cpus: int | None) -> str | None:
    """Why the host was busy during these cycles (samples: {key: [per cycle]}), or None: each LOAD
    kind's reason, on its mean over the cycles (two disturbed cycles of five can make a false
    change). `cpus`: how many CPUs the worker could run on."""
    reasons = [kind.busy(statistics.mean(samples[kind.key]), cpus) for kind in of_role(LOAD) if samples.get(kind.key)]
    return " and ".join(r for r in reasons if r) or None


# -- each kind of evidence, by the name of its comparison ------------------------------------------
def thresholds_of(entry: dict) -> dict:
    """The entry's threshold fields, with the defaults for entries that predate one."""
    return {"threshold": entry.get("threshold") or baselines.DEFAULT_THRESHOLD,
            "gpu_threshold": entry.get("gpu_threshold") or baselines.DEFAULT_GPU_THRESHOLD,
            "memory_threshold": entry.get("memory_threshold") or baselines.DEFAULT_MEMORY_THRESHOLD}


PROBE_KEY = of_role(PROBE)[0].key


def available(kind, side: Side) -> bool:
    """Whether a side has what `kind` is compared on."""
    return bool(side.kernels) if kind.compare == "kernels" else side.has(kind.key)


def compare_kind(kind, ours: Side, theirs: Side, thresholds: dict) -> Verdict | None:
    """One kind of evidence, this side against the other, or None when one of them lacks it."""
    if kind.compare == "memory":
        verdict = compare_memory(ours, theirs, thresholds[kind.threshold])
    elif not (available(kind, ours) and available(kind, theirs)):
        return None
    elif kind.compare == "timing":
        verdict = compare_with_host(ours.samples[kind.key], theirs.samples[kind.key], ours.samples.get(PROBE_KEY),
                                    theirs.samples.get(PROBE_KEY), thresholds[kind.threshold])
    elif kind.compare == "interval":
        new, base = ours.samples[kind.key], theirs.samples[kind.key]
        verdict = compare_gpu(new, base, thresholds[kind.threshold]) if min(new + base) > 0 else \
            _compare_with_zero(new, base, f"{kind.unit} of {kind.subject}")
    elif kind.compare == "kernels":
        verdict = compare_kernels(ours.kernels, theirs.kernels)
    elif kind.compare == "count":
        verdict = compare_counts(ours.samples[kind.key], theirs.samples[kind.key], kind.words)
    else:
        raise ValueError(f"{kind.key}: unknown comparison {kind.compare!r}")
    return None if verdict is None else replace(verdict, label=kind.label)


def evidence_of(role: str, ours: Side, theirs: Side, thresholds: dict) -> dict:
    """{key: Verdict} of the kinds of a role that both sides have (WORK: what the code asked the
    machine to do)."""
    verdicts = {kind.key: compare_kind(kind, ours, theirs, thresholds) for kind in of_role(role)}
    return {key: v for key, v in verdicts.items() if v is not None}


# -- the cell ---------------------------------------------------------------------------------
def judge(entry: dict | None, record: dict, protocol: dict) -> Verdict:
    """The verdict for one measured ms/token test (record: perf.results record) vs its entry."""
    return judge_side(entry, side_of_record(record), protocol)


def judge_side(entry: dict | None, ours: Side, protocol: dict) -> Verdict:
    if entry is None:
        return Verdict(NEW, detail="no baseline entry; record one with --update-baselines")
    differs = baselines.protocol_differences(entry["protocol"], protocol)
    if differs:
        return Verdict(REFUSED, detail="not comparable: " + "; ".join(differs))
    theirs, thresholds = side_of_entry(entry), thresholds_of(entry)
    memory_kind = of_role(MEMORY)[0]
    memory = compare_kind(memory_kind, ours, theirs, thresholds)
    if ours.oom or theirs.oom:  # out of memory: nothing else was measured
        return replace(memory, decided_by="out of memory", label=None, evidence={memory_kind.key: memory})
    wall_kind = KINDS["ms_per_token"]
    if theirs.has(wall_kind.key):
        speed = _judge_evidence(ours, theirs, thresholds)
    else:  # a published figure: one number, no samples
        speed = replace(compare_to_value(ours.samples[wall_kind.key], entry[wall_kind.key], thresholds["threshold"]),
                        decided_by="wall time")
    speed = replace(speed, detail=speed.detail + _advice(speed.kind, entry, theirs.has(wall_kind.key)))
    if memory is None:
        return speed
    speed = replace(speed, evidence={**speed.evidence, memory_kind.key: memory})
    if memory.kind == REGRESSION and speed.kind != REGRESSION:  # a veto
        return replace(speed, kind=REGRESSION, detail=memory.detail, decided_by=memory_kind.label)
    return speed


def _judge_evidence(ours: Side, theirs: Side, thresholds: dict) -> Verdict:
    """Each kind of evidence both sides have, then the cell from them by role (combine)."""
    evidence = {**evidence_of(TIMING, ours, theirs, thresholds), **evidence_of(WORK, ours, theirs, thresholds)}
    busy = [f"{side}: {why}" for side, why in (("this run", host_busy(ours.samples, ours.cpus)),
                                               ("the baseline", host_busy(theirs.samples, ours.cpus))) if why]
    return combine(evidence, busy, ours, theirs, AGAINST_ENTRY)


# What a cell is judged against, as the detail says it: (its name, what its timing comparison used
# beside wall time, how to give it what it lacks).
AGAINST_ENTRY = ("the baseline entry", "and the host probe ", " (re-record it with --update-baselines)")
AGAINST_BASE = ("the base", "", "")


def combine(evidence: dict, busy: list[str], ours: Side, theirs: Side, against: tuple = AGAINST_ENTRY) -> Verdict:
    """The cell from its evidence ({kind key: Verdict}), by role, as docs/verdicts.md says: a WORK
    kind that decides decides; TIMING decides when its kinds agree on a host that was not busy
    (`busy`: why it was, per side); NO CHANGE when every kind agrees; INCONCLUSIVE otherwise."""
    if busy:  # the intervals stand as measured; what they would decide does not
        evidence = {key: replace(v, kind=INCONCLUSIVE, detail=v.detail.split(";")[0]) if KINDS[key].role == TIMING else v
                    for key, v in evidence.items()}
    timing = [v for key, v in evidence.items() if KINDS[key].role == TIMING]
    wall = evidence["ms_per_token"]
    timing_kind = timing[0].kind if len({v.kind for v in timing}) == 1 else INCONCLUSIVE
    deciding = [(KINDS[key], v) for key, v in evidence.items() if KINDS[key].role == WORK and KINDS[key].decides]
    regressed = next(((kind, v) for kind, v in deciding if v.kind == REGRESSION), None)
    improved = next(((kind, v) for kind, v in deciding if v.kind == IMPROVEMENT), None)
    timing_text = _timing_sentence(evidence, busy) + _missing(evidence, ours, theirs, against)
    cell = lambda kind, text, by: replace(wall, kind=kind, detail=text, decided_by=by, evidence=evidence)  # noqa: E731
    if regressed:
        return cell(REGRESSION, f"{_decision(*regressed, ours, theirs, evidence)}; {timing_text}", regressed[0].label)
    work_text = _work_sentence(evidence, ours)
    if timing_kind == REGRESSION and not busy:
        return cell(REGRESSION, f"{work_text}; {timing_text}", "host time")
    if improved and timing_kind != REGRESSION:
        return cell(IMPROVEMENT, f"{_decision(*improved, ours, theirs, {})}; {timing_text}", improved[0].label)
    if timing_kind == IMPROVEMENT and not busy:
        return cell(IMPROVEMENT, f"{work_text}; {timing_text}", "host time")
    if all(v.kind == NO_CHANGE for v in evidence.values()):
        return cell(NO_CHANGE, f"every kind of evidence agrees: {work_text}; {timing_text}", "all evidence")
    if busy:
        why = "host busy (" + "; ".join(busy) + ")"
    elif len({v.kind for v in timing}) > 1:
        why = "wall and host time disagree"
    else:
        why = "not decided"
    return cell(INCONCLUSIVE, f"{why}: {work_text}; {timing_text}", None)


def _decision(kind, verdict: Verdict, ours: Side, theirs: Side, evidence: dict) -> str:
    """The sentence of a WORK kind that decided the cell, with the kernels that grew and the other
    work that changed."""
    text = f"{kind.words} {format_change(verdict)} {verdict.detail}"
    if kind.compare == "interval":
        grew = kernels_that_grew(ours.kernels, theirs.kernels)
        text += f"; grew: {grew}" if grew else ""
    others = [v.detail for key, v in evidence.items() if key != kind.key and v.kind == CHANGED]
    return "; ".join([text] + others)


def _work_sentence(evidence: dict, ours: Side) -> str:
    """What the GPU (or, on a CPU machine, the dispatcher) did, against the other side: each WORK
    kind's own part."""
    parts = []
    for key, verdict in evidence.items():
        kind = KINDS[key]
        if kind.role != WORK:
            continue
        if kind.compare == "interval":
            state = "unchanged" if verdict.kind == NO_CHANGE else verdict.kind.lower()
            parts.append(f"{kind.subject} {state} ({ours.median(key):.3g} {kind.unit} {format_change(verdict)})")
        elif kind.compare == "count":
            parts.append(("work unchanged: " if verdict.kind == NO_CHANGE else "work changed: ") + verdict.detail)
        else:
            parts.append(verdict.detail)
    return "; ".join(parts) or "no GPU or operator evidence"


def _timing_sentence(evidence: dict, busy: list[str]) -> str:
    timing = [(KINDS[key], v) for key, v in evidence.items() if KINDS[key].role == TIMING]
    if busy:
        return ", ".join(f"{kind.words} {format_change(v)}" for kind, v in timing) + \
            f" not judged {evidence['ms_per_token'].detail}"
    return ", ".join(f"{kind.words} {format_change(v)} {v.kind.lower()}" for kind, v in timing) + \
        f" {evidence['ms_per_token'].detail}"


def _missing(evidence: dict, ours: Side, theirs: Side, against: tuple) -> str:
    """Says so when the cell was judged without evidence the suite takes: the other side (an older
    baseline, an older base) or this run lacks it."""
    name, probe, fix = against
    if not any(KINDS[key].role == TIMING and key != "ms_per_token" for key in evidence):
        if any(theirs.has(k.key) for k in of_role(TIMING) if k.key != "ms_per_token"):
            return "; this run has no host CPU evidence"
        return f"; judged on wall time {probe}alone: {name} has no host CPU or GPU evidence{fix}"
    judged = [k for k in KINDS.values() if k.compare and k.role not in (MEMORY, INFO)]
    lacking = [k.label for k in judged if available(k, ours) and not available(k, theirs)]
    absent = [k.label for k in judged if available(k, theirs) and not available(k, ours)]
    notes = [f"{name} has no {', '.join(lacking)} evidence, so these were not judged{fix}"] if lacking else []
    notes += [f"this run has no {', '.join(absent)} evidence"] if absent else []
    return "".join("; " + note for note in notes)


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


def pool_refusal(old: dict, new: dict) -> str | None:
    """Why a run (as its baseline entry `new`) should not be pooled into `old`: a run judged a
    REGRESSION or INCONCLUSIVE against the entry may not belong with it (other code, a busy host)."""
    if "oom" in (old["outcome"], new["outcome"]) or not old["samples"].get("ms_per_token"):
        return None  # pooling itself refuses these, saying why
    verdict = judge_side(old, side_of_entry(new), new["protocol"])
    if verdict.kind in (REGRESSION, INCONCLUSIVE):
        return f"this run was {verdict.kind} against it" + (f" (wall {format_change(verdict)})" if verdict.change is not None else "")
    return None
