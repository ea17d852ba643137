"""Verdicts: is this run slower than its baseline, beyond noise, and on which evidence?

Each kind of evidence (perf.evidence, the table) is compared with its own noise model
(docs/verdicts.md says why), by the name of its comparison:

- "timing" (wall ms/token, the headline, and the worker's main-thread CPU time per token): samples
  against samples in log (perf.stats.hodges_lehmann). Where both sides have a host probe per cycle,
  a verdict stands only if the comparison per unit of host speed agrees (compare_with_host).
- "interval" (GPU kernel time per decode step, from the profiled cycles): the Moses interval of the
  shift, at 95% where the cycles allow it, else the range of all ratios at the confidence it has.
  Kernel time does not follow the host: it held within 0.1% between processes and under load.
- "kernels" (kernel launches and the set of kernels per step): exact, so any change is named.
- "count" (the host's work from the counted cycles: Python calls, aten operators, syncs,
  allocations, copies): exact within COUNT_BAND; a change names what changed and decides by its
  estimated cost against `work_threshold` (compare_work).
- "shift" (off-CPU time per token, memcpy and memset per step: times that may be 0): the shift in
  its own unit against the threshold's share of a reference time (compare_shift).
- "memory": out of memory where the baseline ran, or peak memory past its threshold.

The cell, from the evidence by role (combine): a REGRESSION when a WORK kind that decides is one
(the kernels or functions that grew are named), when the WAIT kind is on a host that was not busy
("waited"), or when the TIMING kinds all are on a host that was neither busy (the LOAD kinds say
how busy) nor unsteady (host_unsteady: a baseline of one process, or a host probe that moved past
half the threshold over LOOP_OVER_PROBE); an IMPROVEMENT likewise when nothing regressed; NO CHANGE only when
every kind both sides have says so, the TIMING kinds on such a host too; INCONCLUSIVE otherwise, saying why. MEMORY vetoes: its
REGRESSION fails the cell whatever the rest says. An entry that lacks some evidence (an older
baseline, a published figure) is judged on what it has, and the verdict says so.
"""
import math
import statistics
from dataclasses import dataclass, field, replace

from perf import baselines, stats
from perf.evidence import (BREAKDOWN_COSTLIEST, BREAKDOWN_NAMES, COUNT_BAND, INFO, KINDS, LOAD, MEMORY, PROBE, TIMING, WAIT, WORK, Side, of_role,
                           side_of_entry, side_of_record)

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
    if v.change is None:  # nothing to estimate from (a side by side stopped before its first pair)
        return "no estimate"
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
    interval = _interval_of_few(sorted(math.log(x) - math.log(y) for x in new for y in base), len(new), len(base))
    kind = kind_of(interval, threshold)
    return Verdict(kind, math.expm1(interval.estimate), math.expm1(interval.low), math.expm1(interval.high),
                   _interval_text(interval, len(new), len(base), "profiled cycles", threshold))


def _interval_of_few(diffs: list[float], m: int, n: int) -> stats.Interval:
    """The Moses interval of sorted pairwise differences at 95% where m vs n samples allow it (4 vs
    4), else their whole range, at the confidence 1 - 2/C(m+n, m) it has (2 vs 4: 87%)."""
    c, achieved, exact = stats.moses_rank(m, n)
    if c == 0:
        c, achieved = 1, 1 - 2 / math.comb(m + n, m)
    return stats.Interval(statistics.median(diffs), diffs[c - 1], diffs[-c], achieved, exact)


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


def compare_work(kind, ours: Side, theirs: Side, threshold: float) -> Verdict:
    """An exact count of the host's work (Python calls, aten operators, syncs, copies) per token or
    step: the same code makes the same calls. A change names what appeared, vanished or changed
    count (from both sides' breakdowns), and decides by what it costs: each name's own time in its
    counted cycle, as a share of that cycle's time, times its change in count. A cheap change is
    reported, not decided; one without breakdowns on both sides (an older entry) is a change only."""
    new, base = statistics.median(ours.samples[kind.key]), statistics.median(theirs.samples[kind.key])
    # Within the band whatever the names say: with the totals equal, a name on one side only is a
    # breakdown's edge (the 30 costliest move with the host), not work (on the CPU VM, a busy
    # host's costly-looking torch.tanh and softmax, "+9.3%", at 476.922 calls a token on both sides).
    if math.isclose(new, base, rel_tol=COUNT_BAND, abs_tol=1e-9):
        band = "" if new == base else f" (within the {COUNT_BAND:.2%} the same code varies by: baseline {base:.6g})"
        return Verdict(NO_CHANGE, detail=f"{new:.6g} {kind.words} on both sides{band}")
    named, cost = _named_changes(kind, ours.counted, theirs.counted)
    detail = f"{new:.6g} {kind.words}, baseline {base:.6g}"
    if named:
        detail += "; " + ", ".join(named[:6]) + (f" and {len(named) - 6} more" if len(named) > 6 else "")
    if cost is None:
        return Verdict(CHANGED, new / base - 1 if base else None, detail=detail)
    kind_ = REGRESSION if cost >= threshold else IMPROVEMENT if cost <= -threshold else NO_CHANGE
    return Verdict(kind_, cost, detail=f"{detail}; estimated cost {cost:+.1%} of the counted cycle's time "
                                       f"(threshold {threshold:.0%})")


def _named_changes(kind, ours: dict | None, theirs: dict | None) -> tuple[list[str], float | None]:
    """What changed by name between two counted cycles' breakdowns of `kind`, most costly first, and
    the estimated cost (a share of the cycle's time; None without both breakdowns). A name kept on
    one side only counts as appeared (or vanished) where the other side's list would have kept it."""
    mine = ((ours or {}).get("breakdowns") or {}).get(kind.key)
    other = ((theirs or {}).get("breakdowns") or {}).get(kind.key)
    if mine is None or other is None:
        return [], None
    per = ours["tokens"] if kind.per == "token" else ours["steps"]
    unit = "/token" if kind.per == "token" else "/step"
    def kept(parts: dict, part: list) -> bool:
        """Whether `parts` would hold a name of this count and share, had its side had it: its list
        is complete, or the name is as frequent or as costly as the least it kept."""
        counts = sorted((v[0] for v in parts.values()), reverse=True)
        shares = sorted((v[1] or 0.0 for v in parts.values()), reverse=True)
        return len(parts) < BREAKDOWN_NAMES or part[0] > counts[min(len(counts), BREAKDOWN_NAMES) - 1] or \
            (part[1] or 0.0) > shares[min(len(shares), BREAKDOWN_COSTLIEST) - 1]

    changes, cost = [], 0.0
    for name in set(mine) | set(other):
        a, b = other.get(name), mine.get(name)
        if a and b:
            delta, side, note = b[0] - a[0], (b if b[0] > a[0] else a), ""
        elif b and kept(other, b):
            delta, side, note = b[0], b, " (new)"
        elif a and kept(mine, a):
            delta, side, note = -a[0], a, " (gone)"
        else:
            continue
        if delta == 0:
            continue
        share = delta * side[1] / side[0] if side[0] else 0.0
        cost += share
        changes.append((abs(share), abs(delta), f"{short_name(name)} {delta / per:+.4g}{unit}{note}"))
    changes.sort(reverse=True)
    return [text for *_, text in changes], cost


def short_name(name: str, width: int = 70) -> str:
    """A function's or operator's name, shortened for a sentence."""
    return name if len(name) <= width else name[:width - 1] + "…"


def compare_shift(kind, new: list[float], base: list[float], reference: list[float], threshold: float) -> Verdict:
    """A time that may be 0 on a side (off the CPU, per token; memcpy or memset, per step): its
    shift in its own unit, with the Moses interval, against `threshold` of the other side's median
    of `reference` (wall time per token; GPU kernel time per step): what it adds to the whole."""
    interval = _interval_of_few(sorted(x - y for x in new for y in base), len(new), len(base))
    whole = statistics.median(reference)
    limit = threshold * whole
    kind_ = REGRESSION if interval.low > limit else IMPROVEMENT if interval.high < -limit else \
        NO_CHANGE if interval.high < limit else INCONCLUSIVE
    share = lambda x: x / whole if math.isfinite(x) else None  # noqa: E731
    bounds = f" [{interval.low:+.3g}, {interval.high:+.3g}]" if math.isfinite(interval.low) else ""
    return Verdict(kind_, share(interval.estimate), share(interval.low), share(interval.high),
                   detail=f"{kind.subject} {interval.estimate:+.3g}{bounds} {kind.unit} ({len(new)} vs {len(base)} "
                          f"samples, {interval.confidence:.0%} interval, threshold {threshold:.0%} of the baseline's "
                          f"{whole:.3g} {kind.unit})")


def _compare_with_zero(new: list[float], base: list[float], what: str) -> Verdict:
    """A time that is 0 in some cycle: no log, so no interval; 0 on both sides is no change,
    anything else is a change, named."""
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
    return {name: entry.get(name) or default for name, default in baselines.default_thresholds().items()}


PROBE_KEY = of_role(PROBE)[0].key


def available(kind, side: Side) -> bool:
    """Whether a side has what `kind` is compared on (a count: with its breakdown, so that what
    changed can be named and costed; entries from before counted cycles have totals only)."""
    if kind.compare == "kernels":
        return bool(side.kernels)
    if kind.compare == "count":
        # present, if empty: a warm allocator makes no allocation in a step, and that 0 is the baseline
        return side.has(kind.key) and kind.key in ((side.counted or {}).get("breakdowns") or {})
    return side.has(kind.key)


def _counted_alike(ours: Side, theirs: Side) -> bool:
    """Counts compare only between counted cycles of as many steps (perf.profiling.COUNT_TOKENS)."""
    return ours.counted["steps"] == theirs.counted["steps"]


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
        if not _counted_alike(ours, theirs):
            return None
        verdict = compare_work(kind, ours, theirs, thresholds[kind.threshold])
    elif kind.compare == "shift":
        if not theirs.has(kind.relative_to):
            return None
        verdict = compare_shift(kind, ours.samples[kind.key], theirs.samples[kind.key],
                                theirs.samples[kind.relative_to], thresholds[kind.threshold])
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
    evidence = {key: v for role in (TIMING, WORK, WAIT) for key, v in evidence_of(role, ours, theirs, thresholds).items()}
    busy = [f"{side}: {why}" for side, why in (("this run", host_busy(ours.samples, ours.cpus)),
                                               ("the baseline", host_busy(theirs.samples, theirs.cpus or ours.cpus))) if why]
    return combine(evidence, busy, ours, theirs, AGAINST_ENTRY, host_unsteady(ours, theirs, thresholds["threshold"]))


# How much further than the host probe the decode loop moved with the host's speed, at most, as
# measured: a fresh clone's `make perf` on the 2-core Intel Xeon VM (2026-12-06, same code against
# a baseline recorded quiet hours before): probe +9.7% to +15.4%, wall +34% to +59% (ds_int8 bs=8:
# +9.7% and +55.7%, 5.7x); on the H100 +78% and +104%.
LOOP_OVER_PROBE = 6.0


def host_unsteady(ours: Side, theirs: Side, threshold: float) -> str | None:
    """Why wall and host CPU time between separate processes are not evidence of a code change
    here, or None where they are: the host's speed (the probe around every cycle) held over this
    run and a baseline of two processes or more within what cannot pass for half the threshold,
    given that the decode loop moves up to LOOP_OVER_PROBE times as far as the probe (on the lent
    machines the probe also jumped 2x between stretches: docs/verdicts.md)."""
    if theirs.runs < 2:
        return "the baseline is one process (pool a second with --update-baselines=pool)"
    probes = [ours.samples.get(PROBE_KEY), theirs.samples.get(PROBE_KEY)]
    if not all(probes):
        return "no host probe on one side"
    spread = max(probes[0] + probes[1]) / min(probes[0] + probes[1]) - 1
    steady = threshold / 2 / LOOP_OVER_PROBE
    if spread > steady:
        return (f"the host probe ranged {spread:.0%} over this run and the baseline's {theirs.runs} processes; "
                f"timing decides within {steady:.1%}")
    return None


# What a cell is judged against, as the detail says it: (its name, what its timing comparison used
# beside wall time, how to give it what it lacks).
AGAINST_ENTRY = ("the baseline entry", "and the host probe ", " (re-record it with --update-baselines)")
AGAINST_BASE = ("the base", "", "")


def combine(evidence: dict, busy: list[str], ours: Side, theirs: Side, against: tuple = AGAINST_ENTRY,
            unsteady: str | None = None) -> Verdict:
    """The cell from its evidence ({kind key: Verdict}), by role, as docs/verdicts.md says: a WORK
    kind that decides decides, and WAIT does on a host that was not busy (`busy`: why it was, per
    side); TIMING decides when its kinds agree on a host that was neither busy nor unsteady
    (`unsteady`: why its timing does not reproduce); NO CHANGE when every kind agrees, there too; INCONCLUSIVE
    otherwise, saying why."""
    if busy:  # the intervals stand as measured; what they would decide does not
        evidence = {key: replace(v, kind=INCONCLUSIVE, detail=v.detail.split(";")[0])
                    if KINDS[key].role in (TIMING, WAIT) else v for key, v in evidence.items()}
    timing = [v for key, v in evidence.items() if KINDS[key].role == TIMING]
    wall = evidence["ms_per_token"]
    timing_kind = timing[0].kind if len({v.kind for v in timing}) == 1 else INCONCLUSIVE
    timing_decides = not busy and not unsteady
    # Waiting first: a sleep or a blocking call also shows as a costly call in the counts, and
    # "waited" says what it was.
    deciding = sorted(((KINDS[key], v) for key, v in evidence.items()
                       if KINDS[key].role == WAIT or KINDS[key].role == WORK and KINDS[key].decides),
                      key=lambda kv: kv[0].role != WAIT)
    regressed = next(((kind, v) for kind, v in deciding if v.kind == REGRESSION), None)
    improved = next(((kind, v) for kind, v in deciding if v.kind == IMPROVEMENT), None)
    timing_text = _timing_sentence(evidence, busy) + _missing(evidence, ours, theirs, against)
    cell = lambda kind, text, by: replace(wall, kind=kind, detail=text, decided_by=by, evidence=evidence)  # noqa: E731
    if regressed:
        return cell(REGRESSION, f"{_decision(*regressed, ours, theirs, evidence)}; {timing_text}", regressed[0].label)
    work_text = _work_sentence(evidence, ours)
    if timing_kind == REGRESSION and timing_decides:
        return cell(REGRESSION, f"{work_text}; {timing_text}", "host time")
    if improved and timing_kind != REGRESSION:
        return cell(IMPROVEMENT, f"{_decision(*improved, ours, theirs, {})}; {timing_text}", improved[0].label)
    if timing_kind == IMPROVEMENT and timing_decides:
        return cell(IMPROVEMENT, f"{work_text}; {timing_text}", "host time")
    if all(v.kind == NO_CHANGE for v in evidence.values()) and timing_decides:  # unsteady: timing says nothing
        return cell(NO_CHANGE, f"every kind of evidence agrees: {work_text}; {timing_text}", "all evidence")
    work = [v for key, v in evidence.items() if KINDS[key].role == WORK]
    work_unchanged = bool(work) and all(v.kind == NO_CHANGE for key, v in evidence.items()
                                        if KINDS[key].role in (WORK, WAIT))
    if busy:
        why = "host busy (" + "; ".join(busy) + ")"
    elif unsteady and (work_unchanged or timing_kind != INCONCLUSIVE):  # timing said something it cannot back
        why = ("work unchanged; " if work_unchanged else "") + f"host timing not reproducible here ({unsteady})"
    elif len({v.kind for v in timing}) > 1:
        why = "wall and host time disagree"
    else:
        why = "not decided"
    return cell(INCONCLUSIVE, f"{why}: {work_text}; {timing_text}", None)


def _decision(kind, verdict: Verdict, ours: Side, theirs: Side, evidence: dict) -> str:
    """The sentence of the kind that decided the cell: a count's named changes and cost, the time
    waited, or an interval with the kernels that grew; then the other work that changed."""
    if kind.compare == "count":
        text = f"work {'grew' if verdict.kind == REGRESSION else 'shrank'}: {verdict.detail}"
    elif kind.role == WAIT:
        text = f"{'waited' if verdict.kind == REGRESSION else 'waited less'}: {verdict.detail}"
    else:
        text = f"{kind.words} {format_change(verdict)} {verdict.detail}"
        grew = kernels_that_grew(ours.kernels, theirs.kernels)
        text += f"; grew: {grew}" if grew else ""
    others = [v.detail for key, v in evidence.items()
              if key != kind.key and KINDS[key].role == WORK and (v.kind == CHANGED or v.kind in DECIDED)]
    return "; ".join([text] + others)


def _work_sentence(evidence: dict, ours: Side) -> str:
    """What the GPU, the dispatcher and the host's Python did, against the other side, and any
    waiting: each kind's own part."""
    parts = []
    kernels_changed = getattr(evidence.get("launches_per_step"), "kind", None) == CHANGED
    for key, verdict in evidence.items():
        kind = KINDS[key]
        if kind.role == WAIT and verdict.kind in DECIDED:
            parts.append(f"waited: {verdict.kind.lower()} {verdict.detail}")
        if kind.role != WORK:
            continue
        if kind.compare in ("interval", "shift"):
            # a new kernel under the GPU threshold: its time is there, only too small to decide
            within = kernels_changed and key == "gpu_decode_ms_per_step"
            state = verdict.kind.lower() if verdict.kind != NO_CHANGE else \
                "changed within the threshold" if within else "unchanged"
            parts.append(f"{kind.subject} {state} ({ours.median(key):.3g} {kind.unit} {format_change(verdict)})")
        elif kind.compare == "count":
            state = "unchanged" if verdict.kind == NO_CHANGE and verdict.change is None else \
                "changed within the threshold" if verdict.kind == NO_CHANGE else "changed"
            parts.append(f"work {state}: {verdict.detail}")
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
    if any(k.compare == "count" and available(k, ours) and available(k, theirs) for k in judged) \
            and not _counted_alike(ours, theirs):
        notes.append(f"the host's work was counted over {ours.counted['steps']} steps here and "
                     f"{theirs.counted['steps']} in {name}, so it was not compared{fix}")
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


def busy_refusal(entry: dict) -> str | None:
    """Why a measured entry should not be recorded as a baseline: its host was busy (every run
    judged against it later would be INCONCLUSIVE, "host busy (the baseline)", or worse)."""
    if entry["outcome"] == "oom":
        return None
    return host_busy(entry["samples"], entry.get("worker_cpus"))


def pool_refusal(old: dict, new: dict) -> str | None:
    """Why a run (as its baseline entry `new`) should not be pooled into `old`: a run judged a
    REGRESSION or IMPROVEMENT against the entry, or whose work differs from the entry's (the GPU's,
    the host's counts, its waiting), is other code. A run whose timing alone was not decided pools:
    the process-to-process spread of timing is what pooling is for."""
    if "oom" in (old["outcome"], new["outcome"]) or not old["samples"].get("ms_per_token"):
        return None  # pooling itself refuses these, saying why
    verdict = judge_side(old, side_of_entry(new), new["protocol"])
    if verdict.kind in DECIDED:
        return f"this run was {verdict.kind} against it" + (f" (wall {format_change(verdict)})" if verdict.change is not None else "")
    differs = [v.label for key, v in verdict.evidence.items()
               if KINDS[key].role == WORK and v.kind != NO_CHANGE or KINDS[key].role == WAIT and v.kind in DECIDED]
    if differs:
        return f"its work differs from the entry's ({', '.join(differs)})"
    return None
