"""Verdicts: is this run slower than the baseline, beyond noise? (DESIGN.md, "Verdicts")

Samples against samples: in log(ms/token), the Hodges-Lehmann estimate of the shift (median of
all pairwise differences new - base) with its exact Moses confidence interval, which comes from
the null distribution of the Mann-Whitney U statistic. REGRESSION when the whole interval lies
above log(1 + threshold); IMPROVEMENT when it lies below -log(1 + threshold); NO CHANGE when it
lies below +log(1 + threshold) otherwise; INCONCLUSIVE when it straddles the threshold (more
cycles or processes would narrow it). A published figure has no samples: the median is compared
with it at the entry's tolerance, and the verdict says no spread was available.
Where both sides recorded a host probe per cycle, a verdict stands only if the comparison in units
of the host's own speed agrees (compare_with_host): the lent GPU host's CPU speed drifts.
"""
import math
import statistics
from dataclasses import dataclass
from functools import lru_cache

REGRESSION, IMPROVEMENT, NO_CHANGE, INCONCLUSIVE = "REGRESSION", "IMPROVEMENT", "NO CHANGE", "INCONCLUSIVE"
NEW, REFUSED = "NEW", "REFUSED"
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Verdict:
    kind: str
    change: float | None = None  # new / base - 1 (the Hodges-Lehmann shift for samples)
    low: float | None = None  # confidence interval of `change`
    high: float | None = None
    detail: str = ""

    def describe(self) -> str:
        if self.change is None:
            return f"{self.kind}: {self.detail}" if self.detail else self.kind
        text = f"{self.kind} {self.change:+.1%}"
        if self.low is not None:
            text += f" [{self.low:+.1%}, {self.high:+.1%}]" if math.isfinite(self.low) and math.isfinite(self.high) \
                else " [interval unbounded]"
        return f"{text} {self.detail}".rstrip()


@lru_cache(maxsize=None)
def mann_whitney_counts(m: int, n: int) -> tuple[int, ...]:
    """Number of orderings of m + n distinct values giving U = 0..m*n (U counts pairs x > y)."""
    if m == 0 or n == 0:
        return (1,)
    a = mann_whitney_counts(m - 1, n)  # the largest value is an x: it beats all n y's
    b = mann_whitney_counts(m, n - 1)  # the largest value is a y
    counts = [0] * (m * n + 1)
    for u, c in enumerate(a):
        counts[u + n] += c
    for u, c in enumerate(b):
        counts[u] += c
    return tuple(counts)


@lru_cache(maxsize=None)
def signed_rank_counts(n: int) -> tuple[int, ...]:
    """Number of sign patterns of n paired differences giving the Wilcoxon statistic T = 0..n(n+1)/2
    (T sums the ranks of the positive differences)."""
    counts = [1]
    for rank in range(1, n + 1):
        grown = counts + [0] * rank
        for t, c in enumerate(counts):
            grown[t + rank] += c
        counts = grown
    return tuple(counts)


def moses_rank(m: int, n: int, confidence: float = CONFIDENCE) -> tuple[int, float]:
    """(c, achieved confidence): the interval is the c-th smallest to c-th largest of the m*n
    pairwise differences; c = 0 means no interval exists at this confidence (too few samples)."""
    return _interval_rank(mann_whitney_counts(m, n), confidence)


def _interval_rank(counts: tuple[int, ...], confidence: float) -> tuple[int, float]:
    """The rank c of a distribution-free interval from the statistic's null counts: the largest c
    whose lower tail P(statistic < c) stays within (1 - confidence) / 2."""
    total = sum(counts)
    alpha_half = (1 - confidence) / 2
    c, below = 0, 0
    while c < len(counts) and (below + counts[c]) / total <= alpha_half:
        below += counts[c]
        c += 1
    return c, 1 - 2 * below / total


def hodges_lehmann(new: list[float], base: list[float], confidence: float = CONFIDENCE):
    """Shift of log(new) against log(base): (estimate, low, high, achieved confidence)."""
    diffs = sorted(math.log(x) - math.log(y) for x in new for y in base)
    return _estimate_and_interval(diffs, *moses_rank(len(new), len(base), confidence))


def _estimate_and_interval(values: list[float], c: int, achieved: float):
    """(median, c-th smallest, c-th largest, achieved) of sorted `values`; unbounded when c = 0."""
    if c == 0:
        return statistics.median(values), -math.inf, math.inf, 1.0
    return statistics.median(values), values[c - 1], values[len(values) - c], achieved


def paired_shift(ratios: list[float], confidence: float = CONFIDENCE):
    """Shift in log of paired measurements, from each pair's ratio: the Hodges-Lehmann estimate
    (median of the Walsh averages) with its exact Wilcoxon signed-rank interval, as
    (estimate, low, high, achieved confidence). Pairs taken side by side in time share the host's
    slow drift, which a two-sample comparison would count as noise."""
    logs = [math.log(r) for r in ratios]
    walsh = sorted((logs[i] + logs[j]) / 2 for i in range(len(logs)) for j in range(i, len(logs)))
    return _estimate_and_interval(walsh, *_interval_rank(signed_rank_counts(len(logs)), confidence))


def compare_samples(new: list[float], base: list[float], threshold: float) -> Verdict:
    shift, low, high, achieved = hodges_lehmann(new, base)
    limit = math.log1p(threshold)
    if low > limit:
        kind = REGRESSION
    elif high < -limit:
        kind = IMPROVEMENT
    elif high < limit:
        kind = NO_CHANGE
    else:
        kind = INCONCLUSIVE
    detail = f"({len(new)} vs {len(base)} samples, {achieved:.0%} interval, threshold {threshold:.0%})"
    if kind == INCONCLUSIVE:
        detail += "; more cycles (--cycles) or repeated runs would decide it"
    return Verdict(kind, math.expm1(shift), math.expm1(low), math.expm1(high), detail)


def compare_to_value(new: list[float], value: float, tolerance: float) -> Verdict:
    change = statistics.median(new) / value - 1
    kind = REGRESSION if change > tolerance else IMPROVEMENT if change < -tolerance else NO_CHANGE
    return Verdict(kind, change, detail=f"(against one published figure, tolerance {tolerance:.0%}; "
                                        "no spread available)")


def compare_with_host(new: list[float], base: list[float], new_probe: list[float] | None,
                      base_probe: list[float] | None, threshold: float) -> Verdict:
    """compare_samples, then the same comparison with each cycle's ms/token divided by the host
    probe taken around that cycle: its time in units of the host CPU's own speed. Decoding at small
    and middle batch sizes is bound by the host CPU, whose speed drifted 1.8x within a minute on
    the lent H200; there, in one process, cycle times followed the probe with slope 0.82-0.89 in
    log-log and correlation 0.78-0.90 (docs/results/h200-probe-vs-decode.jsonl). The raw verdict
    holds if no part of a cycle waits on the host, the normalized one if all of it does; the truth
    lies between. So a REGRESSION or IMPROVEMENT stands only if the normalized comparison finds it
    too, and a NO CHANGE only if that comparison finds no change; otherwise INCONCLUSIVE, saying
    why. Without a usable probe per cycle on both sides (baselines older than the probe), the raw
    verdict stands."""
    verdict = compare_samples(new, base, threshold)
    usable = lambda probe, samples: bool(probe) and len(probe) == len(samples) and all(  # noqa: E731
        math.isfinite(p) and p > 0 for p in probe)
    if not (usable(new_probe, new) and usable(base_probe, base)):
        return verdict
    normalized = compare_samples([m / p for m, p in zip(new, new_probe)],
                                 [m / p for m, p in zip(base, base_probe)], threshold)
    changes = (REGRESSION, IMPROVEMENT)
    if not ((verdict.kind in changes and normalized.kind != verdict.kind)
            or (verdict.kind == NO_CHANGE and normalized.kind in changes)):
        return verdict
    host = math.expm1(hodges_lehmann(new_probe, base_probe)[0])
    # verdict.detail is the samples and threshold only: advice is added to INCONCLUSIVE alone.
    return Verdict(INCONCLUSIVE, verdict.change, verdict.low, verdict.high,
                   f"{verdict.detail}; {verdict.kind} as measured, but {normalized.kind} "
                   f"{normalized.change:+.1%} [{normalized.low:+.1%}, {normalized.high:+.1%}] per unit of "
                   f"host speed: the host CPU itself ran {host:+.1%} against the baseline's (host probe); "
                   "rerun on a quieter host")
