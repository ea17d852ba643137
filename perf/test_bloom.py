"""The suite: correctness against the fp32 reference, then ms/token per batch size.

Test ids carry the backend id and batch size: `pytest perf -k ds_int8`, `-k bs8`.
"""
import math

import pytest

from perf import ab, protocol
from perf.correctness import THRESHOLDS, greedy_agreement, logits_agreement
from perf.figures import speed_figures
from perf.handle import fail_remote
from perf.launcher import RemoteError


def _greedy(backend, settings) -> dict:
    if backend.greedy is None:  # one generate serves the greedy and the sanity test
        try:
            backend.greedy = backend.call("greedy", prompts=list(protocol.PROMPTS), new_tokens=settings.new_tokens)
        except RemoteError as exc:
            fail_remote(exc)
    return backend.greedy


def test_generation_is_sane(backend, perf_settings, perf_record):
    out = _greedy(backend, perf_settings)
    perf_record["texts"] = out["texts"]
    assert out["logits_finite"], "NaN or inf in the logits"
    assert [len(t) for t in out["tokens"]] == [perf_settings.new_tokens] * len(protocol.PROMPTS)
    assert all(isinstance(text, str) for text in out["texts"])
    if not perf_settings.random_weights:  # random ids mostly lie outside the tokenizer's vocabulary
        assert all(text.strip() for text in out["texts"]), f"empty decoded text: {out['texts']}"


def test_greedy_matches_reference(backend, reference, perf_settings, perf_record):
    if perf_settings.random_weights:
        pytest.skip("random weights: greedy text is compared on the embedded model; logits are compared here")
    out = _greedy(backend, perf_settings)
    agreement = greedy_agreement(reference.greedy["tokens"], out["tokens"])
    perf_record.update(agreement)
    need = THRESHOLDS[backend.spec.dtype].min_greedy_match
    assert agreement["match"] >= need, (
        f"greedy tokens diverge from the fp32 reference too early: first divergence per prompt "
        f"{agreement['first_divergence']} of {perf_settings.new_tokens} (mean fraction "
        f"{agreement['match']:.2f} < {need} for {backend.spec.dtype})")


def test_logits_match_reference(backend, reference, perf_settings, perf_record, tmp_path):
    import torch
    path = tmp_path / "logprobs.pt"
    try:
        backend.call("score", texts=list(protocol.SCORING_TEXTS), path=str(path))
    except RemoteError as exc:
        fail_remote(exc)
    figures = logits_agreement(torch.load(reference.logprobs_path), torch.load(path))
    perf_record.update(figures)
    limits = THRESHOLDS[backend.spec.dtype]
    # Random weights give near-flat distributions whose argmax is a near-tie: KL decides there.
    min_top1 = 0.0 if perf_settings.random_weights else limits.min_top1
    assert figures["top1"] >= min_top1 and figures["kl"] <= limits.max_kl, (
        f"teacher-forced logits differ from the fp32 reference: top-1 agreement "
        f"{figures['top1']:.3f} (need >= {min_top1}), KL {figures['kl']:.4f} "
        f"(need <= {limits.max_kl}) for {backend.spec.dtype}")


def _run_rounds(benchmark, target, rounds: int, warmup: int) -> None:
    if benchmark.disabled:  # --benchmark-disable, or pytest-xdist: time without it
        for _ in range(warmup + rounds):
            target()
    else:
        benchmark.pedantic(target, rounds=rounds, warmup_rounds=warmup, iterations=1)


def _memory_bandwidth(backend, perf_run) -> float | None:
    """The device's copy bandwidth, measured once per run: the roofline's ceiling."""
    if perf_run.run.memory_bandwidth is None and backend.info.get("weight_bytes"):
        try:
            perf_run.run.memory_bandwidth = backend.call("memory_bandwidth")["gb_per_s"]
        except RemoteError:  # no room for the copy next to this model: no ceiling this time
            pass
    return perf_run.run.memory_bandwidth


def _oom(backend, perf_run, record, reason: str):
    """OOM is an outcome: compared with the baseline like a value (ok -> oom is a regression)."""
    record.update(outcome="oom", reason=reason)
    perf_run.assert_verdict(perf_run.judge(backend, record))
    pytest.skip(reason)


def _side_by_side(backend, batch_size, perf_settings, perf_run, perf_record) -> None:
    """--base: this cell's cycles interleaved with the base checkout's, judged pair by pair (perf.ab)."""
    sides = getattr(backend, "sides", None)
    base = sides.base if sides is not None and not sides.alternate else None
    if base is not None:
        base.require()  # the base cannot run here, or failed to load: say so, as for the head
    threshold = perf_settings.ab_threshold or ab.default_threshold(perf_run.run.fingerprint)
    try:
        fields, verdict = ab.run_cell(sides, batch_size, perf_settings, threshold, perf_record["nodeid"])
    except RemoteError as exc:
        if exc.kind != "oom":
            fail_remote(exc)
        backend.oom_at = batch_size
        perf_record.update(outcome="oom", reason=f"out of memory at bs={batch_size}: {exc.error[:200]}")
        pytest.skip(perf_record["reason"])
    perf_record.update(fields)
    assert all(math.isfinite(x) and x > 0 for x in perf_record["samples"]["ms_per_token"])
    perf_run.assert_verdict(perf_run.judge(backend, perf_record, ab_verdict=verdict))


def test_ms_per_token(backend, batch_size, benchmark, perf_settings, perf_run, perf_record):
    backend.require()
    if backend.oom_at is not None and batch_size > backend.oom_at:
        _oom(backend, perf_run, perf_record, f"not run: out of memory at bs={backend.oom_at} already")
    if perf_settings.base is not None:
        return _side_by_side(backend, batch_size, perf_settings, perf_run, perf_record)
    cycles = []
    new_tokens = perf_settings.new_tokens

    def one_cycle():
        cycles.append(backend.call("cycle", batch_size=batch_size, new_tokens=new_tokens))

    try:
        backend.call("reset_peak_memory")
        _run_rounds(benchmark, one_cycle, perf_settings.cycles, protocol.WARMUP_CYCLES)
        memory = backend.call("peak_memory")
        ttft = [backend.call("first_token", batch_size=batch_size) for _ in range(perf_settings.cycles)]
        # After the timed cycles, never among them: a profiled cycle runs 30-60% longer.
        profiled = backend.profiled_cycles(batch_size, new_tokens, perf_settings.profile_cycles)
    except RemoteError as exc:
        if exc.kind != "oom":
            fail_remote(exc)
        backend.oom_at = batch_size
        _oom(backend, perf_run, perf_record, f"out of memory at bs={batch_size}: {exc.error[:200]}")

    timed = cycles[protocol.WARMUP_CYCLES:]
    figures = speed_figures(timed, ttft, memory, profiled, backend.info, _memory_bandwidth(backend, perf_run), new_tokens)
    perf_record.update(figures)
    benchmark.extra_info.update({k: v for k, v in figures.items() if k != "profile"})
    expected = batch_size * new_tokens
    assert all(c["new_tokens"] % expected == 0 and c["new_tokens"] for c in timed), (
        f"a cycle made {[c['new_tokens'] for c in timed]} new tokens; expected {expected} per stream")
    assert all(math.isfinite(x) and x > 0 for x in figures["samples"]["ms_per_token"])
    perf_run.assert_verdict(perf_run.judge(backend, perf_record))
