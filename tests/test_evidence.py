"""Verdicts on host-independent evidence: GPU kernel time and launches per step, host CPU time
and host load per cycle, aten operators per token. Records and entries here are built by hand
(they stand for what perf.figures and perf.baselines make of real cycles), except the H200 runs
of tests/data/h200-7b1-evidence, judged against the committed baseline."""
import json
import math
import time

import pytest

from perf import baselines, cputime, evidence, figures, profiling, report, verdicts
from perf.verdicts import CHANGED, INCONCLUSIVE, NO_CHANGE, REGRESSION
from tests.conftest import REPO

PROTOCOL = {"new_tokens": 100, "world_size": 1}
KERNELS = {"decode": {"gemm": {"launches_per_step": 30.0, "ms_per_step": 4.0},
                      "softmax": {"launches_per_step": 30.0, "ms_per_step": 1.0}},
           "prefill": {"gemm": {"launches_per_step": 30.0, "ms_per_step": 9.0}}}


def _cell(wall=20.0, cpu=None, gpu=5.0, kernels=KERNELS, wait=0.0, others=0.0, ops=None, cycles=5, spread=0.01,
          probe=6.0, off_cpu=None, probe_spread=0.001):
    """Samples of one side: wall and host time per token, the host probe, GPU ms per decode step (2
    profiled cycles), run-queue wait share and other processes' CPUs, time off the CPU; `spread`
    relative, alternating (the probe's `probe_spread`: a steady host by default)."""
    vary = lambda x, n, spread=spread: [x * (1 + spread * (i % 3 - 1)) for i in range(n)]  # noqa: E731
    samples = {"ms_per_token": vary(wall, cycles), "main_cpu_ms_per_token": vary(wall if cpu is None else cpu, cycles),
               "run_queue_wait": [wait] * cycles, "other_cpus": [others] * cycles,
               "host_probe_ms": vary(probe, cycles, probe_spread)}
    if off_cpu is not None:
        samples["off_cpu_ms_per_token"] = vary(off_cpu, cycles)
    profiled, profile = {}, {}
    if gpu is not None:
        profiled, profile = {"gpu_decode_ms_per_step": [gpu, gpu * 1.0002]}, {"kernels": kernels}
    if ops is not None:  # one counted cycle of 100 tokens whose time is all aten::mm's
        profiled = {"aten_ops_per_token": [ops]}
        profile = {"counted": {"tokens": 100, "steps": 100, "breakdowns": {
            "aten_ops_per_token": {"aten::mm": [round(ops * 100), 1.0]}}}}
    return samples, profiled, profile


def record(**kw) -> dict:
    samples, profiled, profile = _cell(**kw)
    return {"outcome": "passed", "worker_cpus": 2, "peak_memory": {"per_device_mb": [100.0]}, "profile": profile,
            "samples": {**samples, **profiled}}


def entry(runs=2, **kw) -> dict:
    """A pooled baseline entry: `runs` processes of 5 cycles and 2 profiled cycles each."""
    samples, profiled, profile = _cell(cycles=5 * runs, **kw)
    samples.update({key: values * runs for key, values in profiled.items()})
    return {"outcome": "ok", "ms_per_token": kw.get("wall", 20.0), "samples": samples, "threshold": 0.05,
            "gpu_threshold": 0.02, "peak_memory_mb": [100.0], "kernels": profile.get("kernels"),
            "counted": profile.get("counted"), "provenance": {"kind": "measured", "runs": runs}, "protocol": PROTOCOL}


def judge(new, base):
    return verdicts.judge(base, new, PROTOCOL)


def test_every_kind_of_evidence_agreeing_is_no_change():
    verdict = judge(record(), entry())
    assert verdict.kind == NO_CHANGE and verdict.decided_by == "all evidence"
    assert set(verdict.evidence) == {"ms_per_token", "main_cpu_ms_per_token", "gpu_decode_ms_per_step",
                                     "launches_per_step", "peak_memory_mb"}
    assert "every kind of evidence agrees: GPU work unchanged (5 ms/step" in verdict.detail


def test_more_gpu_kernel_time_is_a_regression_whatever_wall_time_says_and_names_the_kernel():
    slower = {**KERNELS, "decode": {**KERNELS["decode"], "gemm": {"launches_per_step": 30.0, "ms_per_step": 4.2}}}
    verdict = judge(record(gpu=5.2, kernels=slower, wall=20.0, spread=0.3), entry())
    assert verdict.kind == REGRESSION and verdict.decided_by == "GPU kernel time"
    assert verdict.evidence["ms_per_token"].kind == INCONCLUSIVE  # wall time alone decides nothing here
    assert "GPU kernel time per decode step +4.0%" in verdict.detail
    assert "grew: gemm +0.200 ms/step (+5%)" in verdict.detail


def test_a_kernel_that_appears_is_named_and_is_not_no_change():
    more = {**KERNELS, "decode": {**KERNELS["decode"], "extra_spin": {"launches_per_step": 1.0, "ms_per_step": 0.01}}}
    verdict = judge(record(kernels=more), entry())
    assert verdict.evidence["launches_per_step"].kind == CHANGED and verdict.kind == INCONCLUSIVE
    assert "kernels changed: decode: +extra_spin (1/step)" in verdict.evidence["launches_per_step"].detail
    gone = verdicts.compare_kernels(entry()["kernels"], more)
    assert "decode: -extra_spin (was 1/step)" in gone.detail


def test_one_launch_in_a_cycle_is_the_same_count_and_one_per_step_is_not():
    nearly = json.loads(json.dumps(KERNELS))
    nearly["decode"]["gemm"]["launches_per_step"] += 0.004  # less than one launch in 100 steps
    assert verdicts.compare_kernels(nearly, KERNELS).kind == NO_CHANGE
    nearly["decode"]["gemm"]["launches_per_step"] = 31.0
    assert "decode: gemm 30 -> 31/step" in verdicts.compare_kernels(nearly, KERNELS).detail


def test_gpu_work_unchanged_and_host_time_and_wall_up_on_a_quiet_host_is_a_host_side_regression():
    verdict = judge(record(wall=26.0, cpu=26.0), entry())
    assert verdict.kind == REGRESSION and verdict.decided_by == "host time"
    assert verdict.detail.startswith("GPU work unchanged (5 ms/step")
    assert "host time per token +30.0%" in verdict.detail


def test_wall_up_while_host_time_is_not_is_not_a_regression():
    verdict = judge(record(wall=26.0, cpu=20.0), entry())
    assert verdict.kind == INCONCLUSIVE and "wall and host time disagree" in verdict.detail


@pytest.mark.parametrize("side", ["this run", "the baseline"])
def test_a_busy_host_makes_a_wall_clock_change_inconclusive_and_says_so(side):
    busy = dict(wait=0.4, others=1.9)
    new, base = (record(wall=40.0, cpu=40.0, **busy), entry()) if side == "this run" else \
        (record(wall=40.0, cpu=40.0), entry(**busy))
    verdict = judge(new, base)
    assert verdict.kind == INCONCLUSIVE
    assert f"host busy ({side}: the worker's main thread waited for a CPU 40% of the time and other " \
           "processes used 1.90 of its 2 CPUs)" in verdict.detail
    assert "GPU work unchanged" in verdict.detail


def test_a_busy_host_does_not_hide_a_gpu_regression():
    verdict = judge(record(gpu=5.5, wall=40.0, cpu=40.0, wait=0.4), entry())
    assert verdict.kind == REGRESSION and verdict.decided_by == "GPU kernel time"


def test_busy_is_judged_on_the_mean_over_the_cycles():
    assert verdicts.host_busy({"run_queue_wait": [0.49, 0.0, 0.01]}, 2)  # one cycle of three disturbed
    assert verdicts.host_busy({"run_queue_wait": [0.01] * 5, "other_cpus": [0.1] * 5}, 2) is None
    assert verdicts.host_busy({"other_cpus": [0.3] * 5}, 2)  # 15% of 2 CPUs


def test_on_a_cpu_machine_the_aten_operator_count_is_the_work_evidence():
    same = judge(record(gpu=None, ops=756.85), entry(gpu=None, ops=756.85))
    assert same.kind == NO_CHANGE and "756.85 aten operators per token on both sides" in same.detail
    doubled = judge(record(gpu=None, ops=756.85, wall=40.0, cpu=40.0), entry(gpu=None, ops=756.85))
    assert doubled.kind == REGRESSION and doubled.decided_by == "host time"
    assert doubled.detail.startswith("work unchanged: 756.85 aten operators per token on both sides")
    more = judge(record(gpu=None, ops=800.0), entry(gpu=None, ops=756.85))
    assert more.kind == REGRESSION and more.decided_by == "aten ops"
    assert more.detail.startswith("work grew: 800 aten operators per token, baseline 756.85; aten::mm +43.15/token; "
                                  "estimated cost +5.4% of the counted cycle's time (threshold 5%)")


def test_an_old_baseline_entry_is_judged_on_what_it_has_and_says_so():
    old = {"outcome": "ok", "ms_per_token": 20.0, "samples": {"ms_per_token": [20.0, 20.1, 19.9, 20.05, 19.95]},
           "threshold": 0.05, "provenance": {"kind": "measured", "runs": 2}, "protocol": PROTOCOL}
    verdict = judge(record(), old)
    assert verdict.kind == INCONCLUSIVE and set(verdict.evidence) == {"ms_per_token"}
    assert "judged on wall time and the host probe alone: the baseline entry has no host CPU or GPU evidence" \
        in verdict.detail
    # Timing between separate processes decides only on a host shown steady, NO CHANGE included:
    # not without its probe.
    assert "host timing not reproducible here (no host probe on one side)" in verdict.detail
    slower = judge(record(wall=30.0, cpu=30.0), old)
    assert slower.kind == INCONCLUSIVE and "host timing not reproducible here (no host probe on one side)" in slower.detail


def test_the_gpu_interval_from_few_cycles_is_the_range_of_all_ratios_at_its_confidence():
    verdict = verdicts.compare_gpu([5.0, 5.001], [4.99, 5.0, 5.002, 5.003], 0.02)
    assert verdict.kind == NO_CHANGE and "(2 vs 4 profiled cycles, 87% interval, threshold 2%)" in verdict.detail
    assert verdict.low == pytest.approx(5.0 / 5.003 - 1) and verdict.high == pytest.approx(5.001 / 4.99 - 1)


def test_pooling_refuses_runs_with_other_kernels_and_takes_runs_with_more_evidence():
    old = entry()
    other = entry(kernels={**KERNELS, "decode": {"gemm": {"launches_per_step": 31.0, "ms_per_step": 4.0}}})
    assert baselines.pooled(old, other) == (None, "their GPU kernels differ")
    bare = entry()  # recorded before the suite took host and GPU evidence: pools on what both have
    bare["samples"], bare["kernels"] = {"ms_per_token": bare["samples"]["ms_per_token"]}, None
    both, note = baselines.pooled(bare, old)
    assert both["samples"]["gpu_decode_ms_per_step"] == old["samples"]["gpu_decode_ms_per_step"]
    assert both["kernels"] == old["kernels"] and "the earlier 2 run(s) lack gpu_decode_ms_per_step, main_cpu_ms_per_token" in note


def test_a_schema_1_file_is_read_and_an_update_writes_schema_2(tmp_path):
    path = tmp_path / "p" / "m.json"
    path.parent.mkdir()
    old = {"outcome": "ok", "ms_per_token": 20.0, "samples": {"ms_per_token": [20.0]}, "threshold": 0.05,
           "provenance": {"kind": "measured"}, "protocol": PROTOCOL}
    path.write_text(json.dumps({"schema": 1, "profile": "p", "model": "m", "entries": {"a": {"bs1": old}}}))
    assert baselines.load(path)["schema"] == 1
    baselines.update(path, "p", "m", {"b": {"bs1": entry()}})
    data = baselines.load(path)
    assert data["schema"] == 2 and data["entries"]["a"]["bs1"] == old


# -- the worker's side, with test doubles for what only a GPU or several ranks produce --------------
class Event:
    """Stands for a kineto event of a CUDA-only trace (torch.autograd._KinetoEvent)."""

    def __init__(self, name, start, ms, device="cuda"):
        import torch
        self._name, self._start, self._ns = name, start, int(ms * 1e6)
        self._device = torch.autograd.DeviceType.CUDA if device == "cuda" else torch.autograd.DeviceType.CPU

    def name(self):
        return self._name

    def start_ns(self):
        return self._start

    def duration_ns(self):
        return self._ns

    def device_type(self):
        return self._device


def test_a_cuda_trace_splits_at_the_step_markers_into_prefill_and_decode():
    marker = "void at::cuda::(anonymous namespace)::spin_kernel(long)"
    names = ["prefill_gemm", "Memcpy HtoD (Pageable -> Device)", marker,
             "gemm", "Memset (Device)", marker, "gemm", marker, "cudaLaunchKernel"]
    events = [Event(n, i, 1.0, device="cpu" if n == "cudaLaunchKernel" else "cuda") for i, n in enumerate(names)]
    summary = profiling.summarize_cuda(list(reversed(events)))  # ordered by start on the device
    assert summary["decode_steps"] == 2
    assert summary["prefill"] == {"kernel_ms": 1.0, "memcpy_ms": 1.0, "memset_ms": 0.0, "launches": 1,
                                  "kernels": {"prefill_gemm": (1, 1.0)}}
    assert summary["decode"]["kernels"] == {"gemm": (2, 2.0)} and summary["decode"]["memset_ms"] == 1.0
    with pytest.raises(RuntimeError, match="no spin_kernel step marker"):
        profiling.summarize_cuda([Event("gemm", 0, 1.0)])


def test_profiled_cycles_become_per_step_samples_and_a_kernel_table():
    cycle = {"activity": "cuda", "decode_steps": 99, "seconds": 3.0, "new_tokens": 100,
             "prefill": {"kernel_ms": 9.0, "memcpy_ms": 0.1, "memset_ms": 0.0, "launches": 30,
                         "kernels": {"gemm": (30, 9.0)}},
             "decode": {"kernel_ms": 495.0, "memcpy_ms": 0.99, "memset_ms": 0.0, "launches": 2970,
                        "kernels": {"gemm": (2970, 495.0)}}}
    samples = evidence.samples_from({evidence.PROFILED: [cycle, cycle]})
    assert samples["gpu_decode_ms_per_step"] == [5.0, 5.0]
    assert samples["launches_per_step"] == [30.0, 30.0] and samples["gpu_prefill_ms"] == [9.0, 9.0]
    assert figures.profile_summary([cycle, cycle])["kernels"]["decode"]["gemm"] == {"launches_per_step": 30.0,
                                                                                   "ms_per_step": 5.0}
    counted = {"activity": "cpu", "counted": True, "new_tokens": 100, "steps": 100, "generate_seconds": 1.0,
               "aten": {"aten::mm": [75000, 300.0], "aten::add": [685, 10.0]}, "python": {"f": [200, 10.0]}}
    cpu = evidence.samples_from({evidence.PROFILED: [counted]})
    assert cpu == {"aten_ops_per_token": [756.85], "python_calls_per_token": [2.0]}
    assert evidence.breakdowns_from([counted])["breakdowns"]["aten_ops_per_token"] == {"aten::mm": [75000, 0.3],
                                                                                    "aten::add": [685, 0.01]}


def test_host_cpu_figures_over_ranks_take_the_slowest_and_count_other_processes_per_host():
    rank = lambda host, cpu, busy: {"host": host, "main_cpu_s": cpu, "process_cpu_s": cpu, "run_queue_wait_s": 0.0,  # noqa: E731
                                    "host_busy_s": busy, "steal_s": 0.1, "cpus": 4}
    combined = cputime.combine([rank("a", 1.0, 4.0), rank("a", 1.5, 2.9), rank("b", 0.5, 0.5)])
    assert combined["main_cpu_s"] == 1.5 and len(combined["per_rank"]) == 3
    # per host: busy + steal - its ranks' CPU time - the ticks' rounding (2 x 4 CPUs x 10 ms)
    rounding = 8 * cputime.TICK_S
    assert combined["other_cpu_s"] == pytest.approx((4.0 + 0.1 - 2.5 - rounding) + (0.5 + 0.1 - 0.5 - rounding))
    assert cputime.combine([rank("a", 1.0, 0.95)])["other_cpu_s"] == 0.0  # within the rounding: none


def test_a_cycle_clock_sees_its_own_cpu_time_and_run_queue_wait():
    with cputime.CycleClock() as clock:
        until = time.thread_time() + 0.2  # 0.2 s on a CPU, however long a busy host takes to give it
        while time.thread_time() < until:
            pass
    figures_ = clock.figures()
    assert figures_["main_cpu_s"] == pytest.approx(0.2, abs=0.05) and figures_["process_cpu_s"] >= figures_["main_cpu_s"] - 0.01
    assert figures_["run_queue_wait_s"] is not None and figures_["run_queue_wait_s"] >= 0
    assert figures_["host_busy_s"] is not None and figures_["cpus"] >= 1


# -- real runs on one H200 (2026-12-02), against the committed baseline ---------------------------
H200 = REPO / "tests" / "data" / "h200-7b1-evidence"


def _h200_cells(name: str) -> dict:
    run = report.read_run([H200 / f"{name}.json"])
    base, _ = report.base_side(run, str(REPO / "baselines"))
    return {(r["backend"], r["batch_size"]): r for r in report.judged(run, base) if r.get("verdict")}


def test_on_the_h200_the_same_code_decides_nothing_false_and_its_gpu_work_is_unchanged():
    cells = _h200_cells("same-code")
    assert len(cells) == 4 and not {r["verdict"] for r in cells.values()} & {"REGRESSION", "IMPROVEMENT"}
    assert {r["evidence"]["gpu_decode_ms_per_step"]["kind"] for r in cells.values()} == {NO_CHANGE}
    assert {r["evidence"]["launches_per_step"]["kind"] for r in cells.values()} == {NO_CHANGE}


def test_on_the_h200_one_more_gemm_per_step_is_a_regression_in_every_cell_naming_it():
    cells = _h200_cells("gpu-slowdown")
    assert len(cells) == 4 and {r["verdict"] for r in cells.values()} == {REGRESSION}
    for rec in cells.values():
        assert rec["decided_by"] == "GPU kernel time" and "grew: nvjet_sm90_" in rec["verdict_detail"]
        assert rec["evidence"]["gpu_decode_ms_per_step"]["low"] > 0.02


def test_on_the_h200_ten_percent_more_host_work_is_never_no_change_and_the_gpu_work_did_not_change():
    cells = _h200_cells("host-slowdown")
    assert len(cells) == 4 and NO_CHANGE not in {r["verdict"] for r in cells.values()}
    assert all("GPU work unchanged" in r["verdict_detail"] for r in cells.values())


def test_a_pooled_entry_of_1000_samples_is_judged_exactly_and_many_on_both_sides_approximately():
    """(Its speed: docs/verdicts.md, measured apart from the tests.)"""
    base = [10 * math.exp(0.02 * math.sin(i)) for i in range(1000)]
    verdict = verdicts.compare_samples([10.0, 10.1, 9.9, 10.05, 9.95], base, 0.05)
    assert verdict.kind == NO_CHANGE and "approximation" not in verdict.detail
    big = verdicts.compare_samples(base[:600], base, 0.05)  # past the exact budget: the normal approximation
    assert big.kind == NO_CHANGE and "normal approximation" in big.detail


def test_a_time_that_is_zero_on_a_side_is_compared_without_a_ratio():
    """A GPU time per step can be 0 (no memset in a step): no log to take, so it is compared as a count."""
    kind = verdicts.KINDS["gpu_decode_ms_per_step"]
    zero, some = evidence.Side({kind.key: [0.0, 0.0]}), evidence.Side({kind.key: [0.002, 0.002]})
    thresholds = {"gpu_threshold": 0.02}
    assert verdicts.compare_kind(kind, zero, zero, thresholds).kind == NO_CHANGE
    assert verdicts.compare_kind(kind, some, zero, thresholds).kind == CHANGED


def test_memcpy_and_memset_time_per_step_are_evidence_that_reports_without_deciding():
    """Judged by what they add to the GPU's step: a tiny memset 50% longer is noise (on the H100 the
    same code's memset, 0.0016 ms a step, moved +5% [-2%, +13%] side by side); a copy adding 2% of
    the step is named, and keeps the cell from NO CHANGE, while kernel time decides."""
    base, new = entry(), record()
    base["samples"].update(memcpy_ms_per_step=[0.0446] * 4, memset_ms_per_step=[0.00145] * 4)
    new["samples"].update(memcpy_ms_per_step=[0.0446, 0.0447], memset_ms_per_step=[0.0022, 0.0022])
    same = judge(new, base)
    assert same.kind == NO_CHANGE and same.evidence["memset_ms_per_step"].kind == NO_CHANGE
    assert "memcpy unchanged (0.0446 ms/step" in same.detail and "memset unchanged" in same.detail
    new["samples"]["memcpy_ms_per_step"] = [0.2446, 0.2446]
    copied = judge(new, base)
    assert copied.evidence["memcpy_ms_per_step"].kind == REGRESSION and copied.kind == INCONCLUSIVE
    assert "memcpy regression (0.245 ms/step +4.0%" in copied.detail


# -- the host's work and its timing (issue 26's rules), on hand-built records ----------------------
def _counted(calls: dict) -> dict:
    """A counted cycle of 100 tokens: {name: (calls in the cycle, share of its time)}."""
    return {"tokens": 100, "steps": 100, "breakdowns": {"python_calls_per_token": {n: list(v) for n, v in calls.items()}}}


def _with_calls(side: dict, calls: dict) -> dict:
    side["samples"]["python_calls_per_token"] = [sum(c for c, _ in calls.values()) / 100]
    (side.setdefault("profile", {}) if "outcome" in side and "provenance" not in side else side)["counted"] = _counted(calls)
    return side


STEP_CALLS = {"generate": (100, 0.01), "forward": (3000, 0.6), "LogitsProcessorList.__call__": (100, 0.02)}


def test_a_count_that_changes_names_what_changed_and_a_cheap_change_is_reported_not_failed():
    base = _with_calls(entry(), STEP_CALLS)
    one_more = _with_calls(record(), {**STEP_CALLS, "LogitsProcessorList.__call__": (200, 0.04)})
    verdict = judge(one_more, base)
    assert verdict.kind == NO_CHANGE and verdict.evidence["python_calls_per_token"].kind == NO_CHANGE
    assert "work changed within the threshold: 33 Python calls per token, baseline 32; " \
           "LogitsProcessorList.__call__ +1/token; estimated cost +2.0%" in verdict.detail
    costly = _with_calls(record(), {**STEP_CALLS, "forward": (3300, 0.66)})
    verdict = judge(costly, base)
    assert verdict.kind == REGRESSION and verdict.decided_by == "Python calls"
    assert "forward +3/token; estimated cost +6.0%" in verdict.detail
    fewer = _with_calls(record(), {"generate": (100, 0.01), "forward": (3000, 0.6)})
    assert "LogitsProcessorList.__call__ -1/token (gone)" in judge(fewer, base).detail


def test_a_sleep_on_a_quiet_host_is_a_regression_that_says_waited():
    base = entry(off_cpu=0.1)
    slept = record(wall=40.0, cpu=20.0, off_cpu=20.1)  # wall 2x, CPU time flat
    verdict = judge(slept, base)
    assert verdict.kind == REGRESSION and verdict.decided_by == "off-CPU time"
    assert verdict.detail.startswith("waited: off-CPU +20 [")
    busy = judge(record(wall=40.0, cpu=20.0, off_cpu=20.1, wait=0.3), base)
    assert busy.kind == INCONCLUSIVE and "host busy" in busy.detail  # on a busy host waiting is not judged


def test_a_sleep_that_is_also_a_call_says_waited_first_and_names_within_the_band_do_not_decide():
    """The CPU VM's host-sleep:1.0 runs (2026-12-06): one time.sleep per generate, +0.25 of 3767
    Python calls a token (within the band), half the counted cycle's time; and a busy host's
    same-code run whose breakdowns differed at their edge with equal totals."""
    calls = {"forward": (376_744, 0.5)}
    base = _with_calls(entry(gpu=None, off_cpu=0.1), calls)
    slept = _with_calls(record(gpu=None, wall=40.0, cpu=20.0, off_cpu=20.1),
                        {**calls, "<built-in method time.sleep>": (25, 0.5)})
    verdict = judge(slept, base)
    assert verdict.kind == REGRESSION and verdict.decided_by == "off-CPU time"
    assert verdict.detail.startswith("waited: off-CPU +20 [")
    edge = _with_calls(record(gpu=None, off_cpu=0.1), {"forward": (376_738, 0.4), "torch.tanh": (6, 0.1)})
    assert judge(edge, base).evidence["python_calls_per_token"].kind == NO_CHANGE  # equal totals


def test_a_slower_host_with_the_same_work_is_never_a_regression():
    base = _with_calls(entry(gpu=None, off_cpu=0.1), STEP_CALLS)
    for factor in (1.3, 1.6, 2.0):  # the same calls, the CPU that much slower; the probe sees it
        slower = _with_calls(record(gpu=None, wall=20.0 * factor, cpu=20.0 * factor, probe=6.0 * factor, off_cpu=0.1),
                             STEP_CALLS)
        verdict = judge(slower, base)
        assert verdict.kind == INCONCLUSIVE and verdict.detail.startswith("work unchanged; host timing not reproducible here")


def test_a_steady_host_lets_timing_decide_and_a_baseline_of_one_process_does_not():
    base = _with_calls(entry(), STEP_CALLS)
    slower = _with_calls(record(wall=26.0, cpu=26.0), STEP_CALLS)  # same work, 30% slower, host steady
    assert judge(slower, base).kind == REGRESSION and judge(slower, base).decided_by == "host time"
    one = {**base, "provenance": {"kind": "measured", "runs": 1}}
    assert "host timing not reproducible here (the baseline is one process" in judge(slower, one).detail


def test_an_entry_without_the_counts_is_judged_on_what_it_has_and_says_so():
    counted = _with_calls(record(), STEP_CALLS)
    verdict = judge(counted, entry())
    assert "python_calls_per_token" not in verdict.evidence
    assert "the baseline entry has no Python calls evidence, so these were not judged (re-record it with " \
           "--update-baselines)" in verdict.detail


def test_pooling_takes_the_same_counts_whatever_names_made_the_top_of_a_breakdown():
    old = _with_calls(entry(), STEP_CALLS)
    edge = _with_calls(entry(wall=20.2), {**STEP_CALLS, "rare": (1, 0.0)})  # a name at the breakdown's edge
    edge["samples"]["python_calls_per_token"] = old["samples"]["python_calls_per_token"]
    assert baselines.pooled(old, edge)[0]["provenance"]["runs"] == 3
    more = _with_calls(entry(wall=20.2), {**STEP_CALLS, "forward": (3300, 0.66)})
    assert baselines.pooled(old, more) == (None, "their counted host work differs")
    cheap = _with_calls(entry(wall=20.2), {**STEP_CALLS, "LogitsProcessorList.__call__": (101, 0.0201)})
    assert baselines.pooled(old, cheap)[0]["provenance"]["runs"] == 3  # +1 call in 3201: beyond the band, costs nothing


def test_a_count_that_is_zero_in_the_baseline_is_judged_and_one_that_appears_is_named():
    """A warm allocator makes no device allocation in a step (the H100's entries: 0 per step, an
    empty breakdown): that 0 is evidence, and allocations that start in the head are work."""
    def with_allocs(side, calls: dict):
        side["samples"]["allocs_per_step"] = [sum(c for c, _ in calls.values()) / 100]
        counted = side.get("counted") or side["profile"]["counted"]
        counted["breakdowns"]["allocs_per_step"] = {name: list(v) for name, v in calls.items()}
        return side
    base = with_allocs(_with_calls(entry(), STEP_CALLS), {})
    same = with_allocs(_with_calls(record(), STEP_CALLS), {})
    assert judge(same, base).evidence["allocs_per_step"].kind == NO_CHANGE
    churn = with_allocs(_with_calls(record(), STEP_CALLS), {"cudaMalloc": (200, 0.2)})
    verdict = judge(churn, base)
    assert verdict.evidence["allocs_per_step"].kind == REGRESSION and "cudaMalloc +2/step (new)" in verdict.detail
