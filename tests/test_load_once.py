"""The guarantee the fixtures give: each backend loads once per session, in its own worker,
and the worker is gone after the session. Real backends, embedded model."""
from collections import Counter

from tests.conftest import pid_alive


def test_each_backend_loads_once_per_session_and_its_worker_is_gone(run_perf):
    run = run_perf("-k", "accel_bf16 or zero_bf16")
    # Per backend: 3 correctness tests + ms/token at bs1 and bs2.
    run.result.assert_outcomes(passed=10)
    loads = run.loads()
    assert Counter(load["adapter"] for load in loads) == {
        "perf.adapters:Reference": 1, "perf.adapters:AccelerateBf16": 1, "perf.adapters:DeepSpeedZeroBf16": 1}
    assert not [load for load in loads if pid_alive(load["pid"])]


def test_results_file_holds_samples_figures_outcomes_and_fingerprint(run_perf):
    run = run_perf("-k", "accel_bf16", "--cycles", "3")
    run.result.assert_outcomes(passed=5)
    results = run.results
    fp = results["fingerprint"]
    assert fp["devices"] and fp["cpu"] and fp["cpu_count"] >= 1 and fp["git_commit"]
    assert set(fp["versions"]) >= {"python", "torch", "transformers", "accelerate", "deepspeed", "bitsandbytes"}
    assert results["model"] == "tiny-bloom" and results["protocol"]["new_tokens"] == 5
    speed = run.tests(test="test_ms_per_token", backend="accel_bf16")
    assert [t["batch_size"] for t in speed] == [1, 2]
    for t in speed:
        assert t["outcome"] == "passed" and t["dtype"] == "bf16" and t["model"] == "tiny-bloom"
        assert len(t["samples"]["ms_per_token"]) == 3 and len(t["cycle_seconds"]) == 3
        assert t["new_tokens_per_cycle"] == [5 * t["batch_size"]] * 3
        assert t["ttft_ms"] > 0 and t["peak_memory"]["per_device_mb"][0] > 0
    greedy = run.tests(test="test_greedy_matches_reference", backend="accel_bf16")[0]
    assert greedy["outcome"] == "passed" and len(greedy["first_divergence"]) == 8
    # The terminal summary: the article-shaped table.
    run.result.stdout.fnmatch_lines(["*perf results*", "backend*bs=1*bs=2*correctness",
                                     "accel_bf16 *ok"])
