"""Change points over the nights of a history: where a cell's evidence moved, and by how much.

Per cell (backend, batch size) and per kind of evidence:
- exact counts (aten operators per token, kernel launches per step): the same code dispatches the
  same, so every night whose count differs from the night before is a change point, reported
  exactly, with what changed (the kernels whose launches changed);
- measured times and memory: `ruptures` (its Pelt search, least-squares cost) over the nights, each
  night the median of its samples in log (one disturbed cycle does not move it), with a penalty of
  PENALTY * sigma^2 * log(nights), sigma the noise of a night's median (`noise`), so one constant
  serves every kind and cell (docs/history.md; docs/notes/2026-12-06-history-change-points.md
  compares it with Otava's and MongoDB's E-Divisive on our data). Each change point's size is the
  Hodges-Lehmann shift of the samples of the nights after it against those before it (back to the
  previous change point, on to the next), with its exact Moses interval (perf.stats); one whose
  interval holds no change is not reported. Steps the same way a few nights apart are one drift.
- wall and host time only on nights whose host was not busy (the suite's own rule), and a change
  stands only if it is found again per unit of host speed (each cycle over its host probe), as a
  verdict does.

A change is a regression when it went up (slower, more work, more memory). It is decided when a
WORK kind (GPU kernel time, counts) or peak memory moved, or wall and host time both moved the
same way at the same night; wall time alone never decides.
"""
import datetime
import math
import re
import statistics
from dataclasses import dataclass

import numpy as np
import ruptures

from perf import baselines, evidence, stats, verdicts
from perf.history import History, HistoryError, samples_of

# Penalty per change point, in units of the noise (sigma^2) times log(nights): no change point in
# 200 null histories of 60 nights resampled from 21 real processes (docs/notes/2026-12-06-history-change-points.md).
PENALTY = 8.0
MIN_NIGHTS = 2  # a segment holds at least this many nights
DRIFT_GAP = 7  # steps the same way at most this many nights (a week) apart are one drift

TIMING = evidence.TIMING


@dataclass(frozen=True)
class Kind:
    """A kind of evidence as the history treats it: perf.evidence's entry, and whether its
    changes are exact (counts) and decide."""
    key: str
    label: str
    role: str
    unit: str
    exact: bool = False
    decides: bool = True


def _unit(kind: evidence.Kind) -> str:
    """ms_per_token -> ms/token, aten_ops_per_token -> ops/token, peak_memory_mb -> MiB."""
    if kind.unit:
        return kind.unit
    what, per, of = kind.key.rpartition("_per_")
    if per:
        return f"{what.rsplit('_', 1)[-1]}/{of}"
    return "MiB" if kind.key.endswith("_mb") else ""


# Every kind of evidence the suite judges (perf.evidence), a new one included with no change here.
KINDS = tuple(Kind(k.key, k.label, k.role, _unit(k), exact=k.compare in ("count", "kernels"),
                   decides=k.decides) for k in evidence.KINDS.values() if k.role not in (evidence.LOAD, evidence.PROBE, evidence.INFO))
PROBE = evidence.of_role(evidence.PROBE)[0].key


def night_values(kind: Kind, record: dict) -> list[float]:
    """The night's samples of `kind` in a ms/token record; a kind measured once a run (peak
    memory) gives its one figure."""
    values = samples_of(record).get(kind.key)
    if values:
        return [v for v in values if v > 0]
    table = evidence.KINDS[kind.key]
    figure = table.show.figure(record) if table.source == evidence.RUN and table.show and table.show.figure else None
    return [figure] if figure else []


def busy_reason(record: dict) -> str | None:
    return verdicts.host_busy(samples_of(record), record.get("worker_cpus"))


@dataclass
class Change:
    """One change point: the cell, the evidence, the last night before and the first after."""
    profile: str
    model: str
    backend: str
    batch_size: int
    kind: Kind
    before: int  # night index: the last night of the old level
    after: int  # the first night of the new level
    change: float  # relative: new / old - 1
    low: float | None = None  # its interval (None for an exact count)
    high: float | None = None
    confidence: float | None = None
    old: float | None = None  # exact counts: the value before and after; else the medians
    new: float | None = None
    detail: str = ""  # what changed (kernels), or why it is not decided
    decided: bool = False

    @property
    def regression(self) -> bool:
        return self.change > 0

    @property
    def cell(self) -> str:
        return f"{self.backend} bs={self.batch_size}"

    def size(self) -> str:
        if self.low is None:
            return f"{_exact(self.old)} -> {_exact(self.new)} {self.kind.unit} ({self.change:+.1%}, exact)"
        interval = f"[{self.low:+.1%}, {self.high:+.1%}]" if math.isfinite(self.low) and math.isfinite(self.high) \
            else "[interval unbounded]"
        return (f"{self.old:.4g} -> {self.new:.4g} {self.kind.unit}: {self.change:+.1%} {interval} "
                f"({self.confidence:.0%} interval)")


def _exact(count: float) -> str:
    """A count per step or token as measured (870.0101, 92.6025), without float noise."""
    return f"{count:.4f}".rstrip("0").rstrip(".")


# -- finding them ----------------------------------------------------------------------------------
def noise(nights: list[list[float]]) -> float:
    """The spread of a night's median in log between nights that did not change: from the
    differences of successive nights (robust: a change is one difference among many), and never
    less than what the nights' own samples allow (the median absolute deviation within a night
    over the square root of its samples)."""
    medians = np.array([np.median(np.log(s)) for s in nights])
    between = np.median(np.abs(np.diff(medians) - np.median(np.diff(medians)))) / 0.6745 / math.sqrt(2)
    within = np.median([np.median(np.abs(np.log(s) - np.median(np.log(s)))) / 0.6745 / math.sqrt(len(s))
                        for s in nights])
    return float(max(between, within, 1e-6))


def detect(nights: list[list[float]]) -> list[int]:
    """Indices (into `nights`) where a new level starts, from each night's samples (positive)."""
    n = len(nights)
    if n < 2 * MIN_NIGHTS:
        return []
    medians = np.array([[np.median(np.log(s))] for s in nights])
    search = ruptures.Pelt(model="l2", min_size=MIN_NIGHTS, jump=1).fit(medians)
    return [int(i) for i in search.predict(pen=PENALTY * noise(nights) ** 2 * math.log(n))[:-1]]


def _interval(nights: list[list[float]], start: int, cut: int, end: int, last: int | None = None):
    """(change, low, high, confidence) of the nights [last, end) against [start, cut), in log
    (last: where a drift that began at `cut` ended; default `cut`)."""
    before = [v for s in nights[start:cut] for v in s]
    after = [v for s in nights[cut if last is None else last:end] for v in s]
    iv = stats.hodges_lehmann(after, before)
    return math.expm1(iv.estimate), math.expm1(iv.low), math.expm1(iv.high), iv.confidence


def _series(history: History, cell: tuple, kind: Kind, per_host_speed: bool = False):
    """(night indices, samples per night) of one cell's kind; for TIMING kinds the busy nights left out."""
    index, values = [], []
    for night in history.nights:
        record = night.cells.get(cell)
        if record is None:
            continue
        got = night_values(kind, record)
        if kind.role == TIMING:
            if busy_reason(record):
                continue
            if per_host_speed:
                probe = samples_of(record).get(PROBE) or []
                if len(probe) != len(got):
                    continue
                got = [v / p for v, p in zip(got, probe)]
        if got:
            index.append(night.index)
            values.append(got)
    return index, values


def _exact_changes(history: History, cell: tuple, kind: Kind) -> list[Change]:
    """Every night whose count differs from the night before's (beyond the band the same code
    varies by). A count with a breakdown on both nights names what changed and is judged as a
    verdict judges it, by its estimated cost against the work threshold: a cheap change is none, a
    costly one decides; without breakdowns (older results) a change is reported, not decided, as
    the verdicts treat an entry without them."""
    index, values = _series(history, cell, kind)
    table = evidence.KINDS[kind.key]
    out = []
    for i in range(1, len(index)):
        old, new = (statistics.median(values[j]) for j in (i - 1, i))
        if abs(new - old) < baselines.LAUNCH_TOLERANCE or math.isclose(new, old, rel_tol=evidence.COUNT_BAND):
            continue  # the same count: per-step means are floats, and the same code varies within the band
        records = [history.nights[index[j]].cells[cell] for j in (i - 1, i)]
        detail, decided = f"{_exact(new - old) if new < old else '+' + _exact(new - old)} {kind.unit}", False
        if table.compare == "kernels":
            kernels = [(r.get("profile") or {}).get("kernels") for r in records]
            if all(kernels):
                detail = verdicts.compare_kernels(kernels[1], kernels[0]).detail.partition("kernels changed: ")[2] or detail
            decided = kind.decides
        else:
            sides = [evidence.side_of_record(r) for r in records]
            verdict = verdicts.compare_work(table, sides[1], sides[0], baselines.DEFAULT_WORK_THRESHOLD)
            if verdict.kind == verdicts.NO_CHANGE:
                continue  # named, and too cheap to matter (under the work threshold): no change, as a verdict says
            named = verdict.detail.partition("; ")[2]
            detail = f"{detail}; {named}" if named else detail
            decided = kind.decides and verdict.kind in verdicts.DECIDED
        out.append(Change(history.profile, history.model, cell[0], cell[1], kind, index[i - 1], index[i],
                          new / old - 1, old=old, new=new, detail=detail, decided=decided))
    return out


def _groups(values: list[list[float]], cuts: list[int]) -> list[tuple[int, int]]:
    """The cuts as (first, last) of runs of steps the same way, each at most DRIFT_GAP nights after
    the one before: a slow drift is found as a staircase of small steps, and is reported as one."""
    bounds = [0, *cuts, len(values)]
    up = [statistics.median(v for s in values[c:bounds[k + 2]] for v in s)
          > statistics.median(v for s in values[bounds[k]:c] for v in s) for k, c in enumerate(cuts)]
    groups = []
    for k, cut in enumerate(cuts):
        if groups and cut - groups[-1][1] <= DRIFT_GAP and up[k] == up[k - 1]:
            groups[-1] = (groups[-1][0], cut)
        else:
            groups.append((cut, cut))
    return groups


def _confirmed(values: list[list[float]], groups: list[tuple[int, int]]):
    """The groups whose samples on either side confirm them (the interval of the shift holds no
    change), each with (change, low, high, confidence); an unconfirmed one is taken out, the
    smallest first, and its neighbours sized again without it."""
    while True:
        bounds = [0, *[g[0] for g in groups], len(values)]
        ends = [0, *[g[1] for g in groups], len(values)]
        sized = [_interval(values, ends[k], first, bounds[k + 2], last) for k, (first, last) in enumerate(groups)]
        weak = [k for k, (_, low, high, _) in enumerate(sized) if low <= 0 <= high]
        if not weak:
            return groups, sized
        groups = [g for k, g in enumerate(groups) if k != min(weak, key=lambda k: abs(sized[k][0]))]


def _measured_changes(history: History, cell: tuple, kind: Kind) -> list[Change]:
    index, values = _series(history, cell, kind)
    cuts = detect(values)
    groups = _groups(values, cuts)
    if kind.role == TIMING and cuts:
        speed_index, speed_values = _series(history, cell, kind, per_host_speed=True)
        if speed_index == index:  # a probe for every cycle: the change must show per unit of host speed too
            speed = _groups(speed_values, detect(speed_values))
            groups = [g for g in groups if any(s0 - 1 <= g[1] and g[0] <= s1 + 1 for s0, s1 in speed)]
    out = []
    groups, sized = _confirmed(values, groups)
    bounds = [0, *[g[0] for g in groups], len(values)]
    ends = [0, *[g[1] for g in groups], len(values)]
    for k, ((first, last), (change, low, high, confidence)) in enumerate(zip(groups, sized)):
        start, end = ends[k], bounds[k + 2]  # the level before the first step, the level after the last
        old = statistics.median(v for s in values[start:first] for v in s)
        new = statistics.median(v for s in values[last:end] for v in s)
        detail = ""
        if last > first:
            detail = f"a drift: {cuts.index(last) - cuts.index(first) + 1} steps the same way over nights " \
                     f"{index[first - 1] + 1}-{index[last] + 1}"
        if kind.key == "gpu_decode_ms_per_step":
            kernels = [(history.nights[index[j]].cells[cell].get("profile") or {}).get("kernels")
                       for j in (first - 1, last)]
            if all(kernels):
                grew = verdicts.kernels_that_grew(kernels[1], kernels[0])
                if grew:
                    detail += ("; " if detail else "") + f"grew: {grew}"
        out.append(Change(history.profile, history.model, cell[0], cell[1], kind, index[first - 1], index[last],
                          change, low, high, confidence, old, new, detail, decided=kind.role != TIMING and kind.decides))
    return out


def _decide_timing(changes: list[Change]) -> None:
    """Wall and host time that moved the same way over the same nights (a drift's may differ by a
    night or two) decide together; either alone does not."""
    timing = [c for c in changes if c.kind.role == TIMING]
    for c in timing:
        partner = [o for o in timing if o.kind.key != c.kind.key and o.regression == c.regression
                   and o.before - 1 <= c.after and c.before <= o.after + 1]
        if partner:
            c.decided = True
        else:
            other = "host time" if c.kind.key == "ms_per_token" else "wall time"
            c.detail = (c.detail + "; " if c.detail else "") + f"not decided: {other} did not move with it"


def changes(history: History) -> list[Change]:
    """Every change point of every cell and kind of one history, oldest first."""
    found = []
    for cell in history.cells():
        cell_changes = []
        for kind in KINDS:
            cell_changes += (_exact_changes if kind.exact else _measured_changes)(history, cell, kind)
        _decide_timing(cell_changes)
        found += cell_changes
    return sorted(found, key=lambda c: (c.after, c.backend, c.batch_size, c.kind.key))


# -- listing them ----------------------------------------------------------------------------------
def _key(c: Change, history: History) -> tuple:
    return c.profile, c.model, c.backend, c.batch_size, c.kind.key, history.nights[c.after].started


def listed(histories: list[History], since: str | None = None, new_only: bool = False) -> list[Change]:
    """The change points of every history, newest first; `since`: a date (YYYY-MM-DD) or a commit
    (prefix): only those whose new level starts after it; `new_only`: only those the newest night
    of its history brought (found with it, not without it)."""
    if since and _is_date(since):
        try:
            datetime.date.fromisoformat(since)
        except ValueError:
            raise HistoryError(f"--since {since}: no such date; give one as YYYY-MM-DD, e.g. 2026-12-01, "
                               "or a commit of a night") from None
    out = []
    for h in histories:
        found = changes(h)
        if new_only:
            without = History(h.profile, h.model, h.nights[:-1])
            before = {_key(c, h) for c in changes(without)}
            found = [c for c in found if _key(c, h) not in before]
        if since:
            start = _since_night(h, since)
            if start is None:
                continue
            found = [c for c in found if c.after >= start]
        out += [(h, c) for c in found]
    if since and not _is_date(since) and not any(_since_night(h, since) is not None for h in histories):
        raise HistoryError(f"--since {since}: no night of the history has a commit starting so "
                           "(give a date YYYY-MM-DD or a commit of a night)")
    out.sort(key=lambda hc: (hc[0].nights[hc[1].after].started, hc[1].decided), reverse=True)
    return [c for _, c in out]


def _is_date(text: str) -> bool:
    """Shaped as a date (YYYY-MM-DD); whether it is one, listed() checks."""
    return bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", text))


def _since_night(history: History, since: str) -> int | None:
    """The first night after `since`: a date, or the night of a commit (None: not in this history)."""
    if _is_date(since):
        return next((n.index for n in history.nights if n.started[:10] >= since), len(history.nights))
    night = next((n for n in reversed(history.nights) if n.commit and n.commit.startswith(since.lower())), None)
    return None if night is None else night.index + 1


def render(found: list[Change], histories: list[History], markdown: bool = False) -> str:
    """The change points as text (one block each) or a markdown table, newest first."""
    by_name = {(h.profile, h.model): h for h in histories}
    summary = ", ".join(f"{h.profile}/{h.model}: {len(h.nights)} nights" for h in histories) or "empty"
    head = f"{len(found)} change point{'s' if len(found) != 1 else ''} ({summary})"
    lines = ["### Change points in the nightly history", "", head, ""] if markdown else [head]
    if markdown and found:
        lines += ["| | cell | evidence | change | last night before | first night after | also moved |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
    for c in found:
        h = by_name[(c.profile, c.model)]
        before, after = h.nights[c.before], h.nights[c.after]
        also = ", ".join(f"{o.kind.label} {o.change:+.1%}" for o in found
                         if o is not c and (o.profile, o.model, o.backend, o.batch_size, o.after)
                         == (c.profile, c.model, c.backend, c.batch_size, c.after))
        what = "REGRESSION" if c.regression else "improvement"
        what += "" if c.decided else " (not decided)"
        if markdown:
            mark = ("🔴 " if c.decided else "🟡 ") + what if c.regression else "🟢 " + what
            detail = f"<br>{c.detail}" if c.detail else ""
            lines.append(f"| {mark} | {c.profile}/{c.model} {c.cell} | {c.kind.label} | {c.size()}{detail} | "
                         f"#{before.index + 1} {before.label} | #{after.index + 1} {after.label} | {also or '-'} |")
        else:
            lines.append(f"{what}: {c.profile}/{c.model} {c.cell}, {c.kind.label} {c.size()}")
            lines.append(f"  between night {before.index + 1} ({before.label}) and night {after.index + 1} "
                         f"({after.label})" + (f"; commits {before.commit[:10]}..{after.commit[:10]}"
                                                 if before.commit and after.commit and before.commit != after.commit else ""))
            if also:
                lines.append(f"  also moved at that night: {also}")
            if c.detail:
                lines.append(f"  {c.detail}")
    return "\n".join(lines) + "\n"
