"""Distribution-free statistics for verdicts: shifts in log with exact confidence intervals.

Two samples (new against base): the Hodges-Lehmann estimate of the shift (median of all pairwise
differences) with its exact Moses interval, from the null distribution of the Mann-Whitney U
statistic. Paired samples (side by side in time): the Hodges-Lehmann estimate from the Walsh
averages with its exact Wilcoxon signed-rank interval. docs/verdicts.md says why these.

The null distributions are computed iteratively with exact integers. Past EXACT_BUDGET
operations (many samples on both sides) the normal approximation takes over, and the achieved
confidence it returns says so by being the nominal one (`Interval.exact` is False).
"""
import math
import statistics
from dataclasses import dataclass
from functools import lru_cache

CONFIDENCE = 0.95
# Integer operations an exact null distribution may cost: well under a second in CPython.
EXACT_BUDGET = 4_000_000


@dataclass(frozen=True)
class Interval:
    """A shift in log: estimate, low, high (-inf/inf: no interval at this confidence, too few
    samples), the confidence achieved, and whether it is exact or a normal approximation."""
    estimate: float
    low: float
    high: float
    confidence: float
    exact: bool = True

    def __iter__(self):  # estimate, low, high, confidence = interval
        return iter((self.estimate, self.low, self.high, self.confidence))


@lru_cache(maxsize=256)
def mann_whitney_counts(m: int, n: int) -> tuple[int, ...]:
    """Number of orderings of m + n distinct values giving U = 0..m*n (U counts pairs x > y):
    the coefficients of the Gaussian binomial [m+n choose m]_q, built by the product formula
    prod_{i=1..k} (1 - q^(l+i)) / (1 - q^i) with k = min(m, n), l = max(m, n)."""
    k, l = min(m, n), max(m, n)
    size = m * n + 1
    counts = [0] * size
    counts[0] = 1
    for i in range(1, k + 1):
        # Multiply by (1 - q^(l+i)), then divide by (1 - q^i): each partial product is itself a
        # Gaussian binomial, so every division is exact.
        step = l + i
        for u in range(size - 1, step - 1, -1):
            counts[u] -= counts[u - step]
        for u in range(i, size):
            counts[u] += counts[u - i]
    return tuple(counts)


@lru_cache(maxsize=256)
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


def _interval_rank(counts: tuple[int, ...], confidence: float) -> tuple[int, float]:
    """The rank c of a distribution-free interval from the statistic's null counts: the largest c
    whose lower tail P(statistic < c) stays within (1 - confidence) / 2."""
    total = sum(counts)
    allowed = (1 - confidence) / 2 * total
    c, below = 0, 0
    while c < len(counts) and below + counts[c] <= allowed:
        below += counts[c]
        c += 1
    return c, 1 - 2 * below / total


def _normal_rank(mean: float, sd: float, confidence: float) -> int:
    """The rank c from the normal approximation of the statistic (continuity-corrected)."""
    z = statistics.NormalDist().inv_cdf((1 + confidence) / 2)
    return max(0, math.floor(mean - z * sd + 0.5))


def moses_rank(m: int, n: int, confidence: float = CONFIDENCE) -> tuple[int, float, bool]:
    """(c, achieved confidence, exact): the interval runs from the c-th smallest to the c-th
    largest of the m*n pairwise differences; c = 0 means no interval exists at this confidence."""
    if min(m, n) * (m * n + 1) <= EXACT_BUDGET:
        return (*_interval_rank(mann_whitney_counts(m, n), confidence), True)
    return _normal_rank(m * n / 2, math.sqrt(m * n * (m + n + 1) / 12), confidence), confidence, False


def signed_rank_rank(n: int, confidence: float = CONFIDENCE) -> tuple[int, float, bool]:
    """As moses_rank, over the n(n+1)/2 Walsh averages of n paired differences."""
    if n * n * (n + 1) / 4 <= EXACT_BUDGET:
        return (*_interval_rank(signed_rank_counts(n), confidence), True)
    return _normal_rank(n * (n + 1) / 4, math.sqrt(n * (n + 1) * (2 * n + 1) / 24), confidence), confidence, False


def _estimate_and_interval(values: list[float], c: int, achieved: float, exact: bool) -> Interval:
    """(median, c-th smallest, c-th largest) of sorted `values`; unbounded when c = 0."""
    if c == 0:
        return Interval(statistics.median(values), -math.inf, math.inf, 1.0, exact)
    return Interval(statistics.median(values), values[c - 1], values[len(values) - c], achieved, exact)


def hodges_lehmann(new: list[float], base: list[float], confidence: float = CONFIDENCE) -> Interval:
    """Shift of log(new) against log(base)."""
    diffs = sorted(math.log(x) - math.log(y) for x in new for y in base)
    return _estimate_and_interval(diffs, *moses_rank(len(new), len(base), confidence))


def paired_shift(ratios: list[float], confidence: float = CONFIDENCE) -> Interval:
    """Shift in log of paired measurements, from each pair's ratio. Pairs taken side by side in
    time share the host's slow drift, which a two-sample comparison would count as noise."""
    logs = [math.log(r) for r in ratios]
    walsh = sorted((logs[i] + logs[j]) / 2 for i in range(len(logs)) for j in range(i, len(logs)))
    return _estimate_and_interval(walsh, *signed_rank_rank(len(logs), confidence))
