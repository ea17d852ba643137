"""The suite: correctness against the fp32 reference, then ms/token per batch size.

Test ids carry the backend id and batch size: `pytest perf -k ds_int8`, `-k bs8`.
"""
import math
import statistics

import pytest

from perf import protocol
from perf.correctness import THRESHOLDS, greedy_agreement, logits_agreement
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


def roofline(backend, perf_run, cycles: list, ttft: list, new_tokens: int) -> dict:
    """A decode step reads every weight once: weight bytes / time per output token is the
    bandwidth achieved, to hold against the device's (a large copy, measured once per run)."""
    if new_tokens < 2 or not backend.info.get("weight_bytes"):
        return {}
    tpot = (statistics.median(c["seconds"] for c in cycles) - statistics.median(ttft)) / (new_tokens - 1)
    if perf_run.memory_bandwidth is None:
        try:
            perf_run.memory_bandwidth = backend.call("memory_bandwidth")["gb_per_s"]
        except RemoteError:  # no room for the copy next to this model: no ceiling this time
            pass
    achieved = backend.info["weight_bytes"] / tpot / 1e9 if tpot > 0 else None
    ceiling = perf_run.memory_bandwidth
    return {"tpot_ms": 1000 * tpot, "weight_gb": backend.info["weight_bytes"] / 1e9,
            "weight_bandwidth_gb_s": achieved, "device_bandwidth_gb_s": ceiling,
            "bandwidth_fraction": achieved / ceiling if achieved and ceiling else None}


def _oom(backend, perf_run, record, reason: str):
    """OOM is an outcome: compared with the baseline like a value (ok -> oom is a regression)."""
    record.update(outcome="oom", reason=reason)
    perf_run.assert_verdict(perf_run.judge(backend, record))
    pytest.skip(reason)


def test_ms_per_token(backend, batch_size, benchmark, perf_settings, perf_run, perf_record):
    backend.require()
    if backend.oom_at is not None and batch_size > backend.oom_at:
        _oom(backend, perf_run, perf_record, f"not run: out of memory at bs={backend.oom_at} already")
    cycles = []

    def one_cycle():
        cycles.append(backend.call("cycle", batch_size=batch_size, new_tokens=perf_settings.new_tokens))

    try:
        backend.call("reset_peak_memory")
        _run_rounds(benchmark, one_cycle, perf_settings.cycles, protocol.WARMUP_CYCLES)
        memory = backend.call("peak_memory")
        ttft = [backend.call("first_token", batch_size=batch_size)["seconds"] for _ in range(perf_settings.cycles)]
    except RemoteError as exc:
        if exc.kind != "oom":
            fail_remote(exc)
        backend.oom_at = batch_size
        _oom(backend, perf_run, perf_record, f"out of memory at bs={batch_size}: {exc.error[:200]}")

    timed = cycles[protocol.WARMUP_CYCLES:]
    ms = [1000 * c["seconds"] / c["new_tokens"] for c in timed]
    figures = {
        "ms_per_token": statistics.median(ms),
        "ms_per_token_samples": ms,
        # The article's figure: total time of all cycles over all their new tokens.
        "ms_per_token_article": 1000 * sum(c["seconds"] for c in timed) / sum(c["new_tokens"] for c in timed),
        "cycle_seconds": [c["seconds"] for c in timed],
        "host_probe_ms_samples": [c["host_probe_ms"] for c in timed],
        "new_tokens_per_cycle": [c["new_tokens"] for c in timed],
        "ttft_ms": 1000 * statistics.median(ttft),
        "ttft_ms_samples": [1000 * t for t in ttft],
        "peak_memory": memory,
        "load_s": backend.info.get("load_s"),
        **roofline(backend, perf_run, timed, ttft, perf_settings.new_tokens),
    }
    perf_record.update(figures)
    benchmark.extra_info.update(figures)
    expected = batch_size * perf_settings.new_tokens
    assert all(c["new_tokens"] % expected == 0 and c["new_tokens"] for c in timed), (
        f"a cycle made {[c['new_tokens'] for c in timed]} new tokens; expected {expected} per stream")
    assert all(math.isfinite(x) and x > 0 for x in ms)
    perf_run.assert_verdict(perf_run.judge(backend, perf_record))
