"""Side by side: `pytest perf --base DIR` runs every cell on the base checkout and on this one
(the head) in the same session, their cycles interleaved in a shuffled, balanced order, and
judges the head against the base on paired evidence, sampling until the answer is clear.

Pairs taken side by side in time share the host's drift, which separate runs count as noise: on
the H200 the same code moved -34% to +58% between processes, while interleaved pairs of BLOOM-7b1
ds_fp16 bs=8 gave an A/A ratio of 0.998 [0.972, 1.025] over 100 pairs. As google/tachometer does,
a cell takes pairs until every interval is clear of the threshold (or within it), or until it is
narrower than the threshold itself (a change near the threshold still ends, as INCONCLUSIVE "at the
threshold"), or until its budget of pairs or seconds is spent; as Chromium's Pinpoint does, each
round's order is drawn at random, and every two rounds run each order once.

Both sides are loaded once per backend. When the base does not fit beside the head (it ran out of
memory loading), or with `--ab-loads alternate`, the sides take turns: one is loaded, runs a block
of cycles, and is stopped before the other loads; the pairs are then a block's cycles in order.
A base older than the head may lack what the head measures (host CPU time, profiled cycles): the
cell is then judged on what both have, and says what was not available on which side.
"""
import math
import random
import time
import zlib
from dataclasses import replace

from perf import baselines, evidence, figures, stats, verdicts
from perf.launcher import RemoteError
from perf.verdicts import DECIDED, INCONCLUSIVE, NO_CHANGE, Verdict

MIN_PAIRS = 6  # the fewest for a 95% signed-rank interval


class Sides:
    """The head's handle and the base's, both loaded, or one at a time (alternating loads)."""

    def __init__(self, head, open_base, alternate: bool):
        self.head, self._open_base = head, open_base
        self.alternate = alternate
        self.base = None if alternate else open_base()
        if self.base is not None and self.base.failure and "out of memory" in self.base.failure.lower():
            self.base.close()  # no room beside the head: take turns
            self.base, self.alternate = None, True
        self.reason = ("the base did not fit beside the head" if self.alternate and not alternate else
                       "--ab-loads alternate" if alternate else None)
        self.loads = {"base": 0 if self.alternate else 1, "head": 1}

    def handle(self, side: str):
        """The side's handle, loaded: when alternating, the other side is stopped first."""
        if not self.alternate:
            return self.base if side == "base" else self.head
        if side == "head" and self.base is not None:
            self.base.close()
            self.base = None
        elif side == "base" and self.head.loaded:
            self.head.unload()
        if side == "base" and self.base is None:
            self.base = self._open_base()
            self.loads["base"] += 1
        elif side == "head" and not self.head.loaded:
            self.head.reload()
            self.loads["head"] += 1
        return self.base if side == "base" else self.head

    def loaded(self, side: str) -> bool:
        return self.base is not None if side == "base" else self.head.loaded

    def close(self) -> None:
        if self.base is not None:
            self.base.close()


def rounds(rng: random.Random, alternate: bool, block: int):
    """Each round's order of sides: every two rounds run base-head once and head-base once, in a
    random order. Alternating loads, a round is a block of cycles on one side, then on the other."""
    while True:
        pair = [("base", "head"), ("head", "base")]
        rng.shuffle(pair)
        for order in pair:
            yield [side for side in order for _ in range(block if alternate else 1)]


def run_cell(sides: Sides, batch_size: int, settings, threshold: float, seed_text: str) -> tuple[dict, Verdict]:
    """Pairs of cycles until decided, then the profiled cycles: the head's figures with the base's
    (as a record's fields), and the paired verdict."""
    new_tokens = settings.new_tokens
    rng = random.Random(zlib.crc32(seed_text.encode()))
    cycles = {"base": [], "head": []}
    warm = set()
    order, start, verdict, stopped = [], time.monotonic(), None, "budget"
    block = settings.cycles

    def cycle(side: str) -> dict:
        handle = sides.handle(side)
        if side not in warm or sides.alternate and order and order[-1] != side:
            handle.call("cycle", batch_size=batch_size, new_tokens=new_tokens)  # warm-up, after each load
            warm.add(side)
        return handle.call("cycle", batch_size=batch_size, new_tokens=new_tokens)

    for side in ("base", "head"):
        if sides.loaded(side):
            sides.handle(side).call("reset_peak_memory")
    for round_ in rounds(rng, sides.alternate, block):
        for side in round_:
            cycles[side].append(cycle(side))
            order.append(side)
        pairs = min(len(cycles["base"]), len(cycles["head"]))
        if pairs >= MIN_PAIRS:
            verdict, settled = judge_pairs(cycles, threshold)
            if settled:
                stopped = settled
                break
        if pairs >= settings.ab_max_pairs or time.monotonic() - start > settings.ab_max_seconds:
            break
    pairs = min(len(cycles["base"]), len(cycles["head"]))
    # Alternating, the side loaded now goes first, so that the other is loaded once more, not twice.
    now = [side for side in ("head", "base") if sides.loaded(side)] + [side for side in ("head", "base")
                                                                        if not sides.loaded(side)]
    memory, ttft, info = {}, {}, {}
    profiled, unavailable = {"base": [], "head": []}, []
    for side in now:
        handle = sides.handle(side)
        memory[side] = handle.call("peak_memory")  # alternating: the peak of this side's last load
        ttft[side] = [handle.call("first_token", batch_size=batch_size)]
        info[side] = handle.info
        try:
            profiled[side] = handle.profiled_cycles(batch_size, new_tokens, settings.profile_cycles)
        except RemoteError as exc:
            if "profiled_cycle" not in exc.error:
                raise
            unavailable.append(f"profiled cycles (GPU kernels, aten operators): not in the {side}'s worker")
    if unavailable:
        profiled = {"base": [], "head": []}
    head = figures.speed_figures(cycles["head"][:pairs], ttft["head"], memory["head"], profiled["head"],
                                 info["head"], None, new_tokens)
    base = figures.speed_figures(cycles["base"][:pairs], ttft["base"], memory["base"], profiled["base"],
                                 info["base"], None, new_tokens)
    for side, mine, other in (("base", base, head), ("head", head, base)):  # timed evidence one worker lacks
        unavailable += [f"{kind.label}: not in the {side}'s worker" for kind in evidence.SAMPLED
                        if kind.source == evidence.CYCLE and kind.compare
                        and kind.key in other["samples"] and kind.key not in mine["samples"]]
    verdict = judge(head, base, cycles, pairs, threshold, unavailable)
    seconds = time.monotonic() - start
    return {**head, "ab": {
        "pairs": pairs, "seconds": round(seconds, 1), "stopped": stopped if pairs >= MIN_PAIRS else "budget",
        "order": "".join(side[0] for side in order), "loads": "alternate" if sides.alternate else "together",
        "load_count": dict(sides.loads), "loads_reason": sides.reason, "unavailable": sorted(set(unavailable)),
        "threshold": threshold,
        "base": {k: base.get(k) for k in ("ms_per_token", "samples", "profile", "peak_memory", "ttft_ms")}}}, verdict


def _ratios(cycles: dict, kind) -> list[float]:
    """head / base of a kind of evidence, pair by pair (empty if a side lacks it)."""
    ratios = []
    for head, base in zip(cycles["head"], cycles["base"]):
        ours, theirs = kind.read(head), kind.read(base)
        if ours is None or theirs is None:
            return []
        if ours > 0 and theirs > 0:
            ratios.append(ours / theirs)
    return ratios


def paired(ratios: list[float], threshold: float, what: str) -> Verdict:
    interval = stats.paired_shift(ratios)
    kind = verdicts.kind_of(interval, threshold)
    if kind == NO_CHANGE and interval.low < -math.log1p(threshold):
        kind = INCONCLUSIVE  # side by side, no change means within the threshold both ways
    return Verdict(kind, math.expm1(interval.estimate), math.expm1(interval.low), math.expm1(interval.high),
                   f"({len(ratios)} {what} pairs, {interval.confidence:.0%} interval, threshold {threshold:.0%})")


PAIRED = [kind for kind in evidence.KINDS.values() if kind.paired]  # wall first


def judge_pairs(cycles: dict, threshold: float) -> tuple[dict, str | None]:
    """The paired intervals of the paired kinds (wall, host time) so far, and why sampling may stop
    (or None)."""
    evidence_ = {}
    for kind in PAIRED:
        ratios = _ratios(cycles, kind)
        if ratios or kind.key == "ms_per_token":
            evidence_[kind.key] = replace(paired(ratios, threshold, "cycle"), label=kind.label)
    if all(v.kind in DECIDED + (NO_CHANGE,) for v in evidence_.values()):
        return evidence_, "decided"
    if all(v.low is not None and -1 < v.low and math.isfinite(v.high)  # unbounded below 6 pairs: not precise
           and math.log1p(v.high) - math.log1p(v.low) < math.log1p(threshold) for v in evidence_.values()):
        return evidence_, "precise"  # narrower than the threshold: near it, and more pairs will not move it
    return evidence_, None


def judge(head: dict, base: dict, cycles: dict, pairs: int, threshold: float, unavailable: list[str]) -> Verdict:
    """The cell, from the paired evidence and the work both sides did (perf.verdicts.combine's
    rules; no busy-host rule: both sides shared the host, pair by pair)."""
    trimmed = {side: cycles[side][:pairs] for side in cycles}
    if pairs >= 2:
        evidence_, _ = judge_pairs(trimmed, threshold)
    else:
        evidence_ = {"ms_per_token": Verdict(INCONCLUSIVE, detail="no pair", label=evidence.KINDS["ms_per_token"].label)}
    if pairs < MIN_PAIRS:
        evidence_ = {key: replace(v, kind=INCONCLUSIVE, detail=f"{v.detail}; too few pairs for an interval")
                     for key, v in evidence_.items()}
    ours, theirs = evidence.side_of_record(head), evidence.side_of_record(base)
    thresholds = {**baselines.default_thresholds(), "threshold": threshold}
    for role in (evidence.WORK, evidence.WAIT):
        evidence_.update(verdicts.evidence_of(role, ours, theirs, thresholds))
    cell = verdicts.combine(evidence_, [], ours, theirs, verdicts.AGAINST_BASE)
    detail = cell.detail + "".join(f"; {note}" for note in unavailable)
    return replace(cell, detail=detail)


def default_threshold(fingerprint: dict) -> float:
    """As baseline entries get theirs: 5% with a GPU, 30% on a CPU machine."""
    return baselines.DEFAULT_THRESHOLD if fingerprint.get("device_count") else baselines.CPU_THRESHOLD


def summary_line(rec: dict) -> str:
    ab = rec.get("ab") or {}
    return f"{ab.get('pairs', 0)} pairs, {ab.get('seconds', 0):g} s ({ab.get('stopped')})"

