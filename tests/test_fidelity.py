"""tools/fidelity.py, the article's own loop, on the embedded model: what it prints and when it
fails. Its ratio to the suite on this noisy 2-core CPU says nothing, so the tolerance is opened
here; the ratio that counts is measured on a GPU (README, "Roofline and fidelity")."""
import json
import math
import os
import statistics
from pathlib import Path

import pytest

from perf.settings import EMBEDDED_MODEL
from tests.conftest import REPO
from tools import fidelity

RESULTS = REPO / "tests" / "data" / "cpu-results.json"  # a CPU run of the suite on the embedded model


def run(capsys, *args):
    code = fidelity.main(["--backend", "accel_bf16", "--model", str(EMBEDDED_MODEL), "--new-tokens", "5",
                          "--cycles", "2", *args])
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_one_line_per_batch_size_with_the_ratio_to_the_suite(capsys, tmp_path):
    results = json.loads(RESULTS.read_text())
    for t in results["tests"]:
        t["host_probe_ms_samples"] = [6.0, 6.0, 6.0, 6.0, 6.0]  # as a run with host probes records
    with_probes = tmp_path / "results.json"
    with_probes.write_text(json.dumps(results))
    code, lines = run(capsys, "--batch-sizes", "1,8", "--compare", str(with_probes), "--tolerance", "1000")
    assert code == 0 and [line["batch_size"] for line in lines] == [1, 8]
    suite = {t["batch_size"]: t["ms_per_token_article"] for t in results["tests"]
             if t["test"] == "test_ms_per_token" and t["backend"] == "accel_bf16"}
    for line in lines:
        assert line["suite_ms_per_token"] == suite[line["batch_size"]]
        assert line["ratio"] == pytest.approx(line["ms_per_token"] / suite[line["batch_size"]])
        assert line["host_ratio"] == pytest.approx(line["host_probe_ms"] / 6.0)


def test_outside_the_tolerance_exits_1(capsys):
    code, lines = run(capsys, "--compare", str(RESULTS), "--tolerance", "0")
    assert code == 1 and lines[0]["ratio"] != 1 and "host_ratio" not in lines[0]  # no probes in that file


def test_a_batch_size_the_suite_did_not_run_is_named_before_any_load(capsys):
    with pytest.raises(SystemExit, match=r"no ms/token of accel_bf16 at batch size \[32\]"):
        run(capsys, "--batch-sizes", "1,32", "--compare", str(RESULTS))


def test_interleave_alternates_with_the_suites_own_worker_and_stops_it(capsys, monkeypatch):
    started = []
    real_start = fidelity.start_suite_worker
    monkeypatch.setattr(fidelity, "start_suite_worker", lambda *a: started.append(real_start(*a)) or started[-1])
    code, lines = run(capsys, "--batch-sizes", "1,2", "--interleave", "--cycles", "6", "--tolerance", "1000")
    assert code == 0 and [line["batch_size"] for line in lines] == [1, 2]
    for line in lines:
        # 6 cycles of 5 new tokens a row on each side: the suite's worker counted what the article's loop did.
        assert line["new_tokens"] == [6 * 5 * line["batch_size"]] * 2
        assert line["ratio"] == pytest.approx(line["ms_per_token"] / line["suite_ms_per_token"])
        assert len(line["pair_ratios"]) == line["pairs"] == 6 and line["suite_host_probe_ms"] > 0
        assert {side: len(cycles) for side, cycles in line["cycles"].items()} == {"article": 6, "suite": 6}
        low, high = line["interval"]  # 6 pairs: the smallest and largest Walsh averages, 97% confidence
        assert low <= line["paired_ratio"] <= high and line["confidence"] == pytest.approx(1 - 2 / 64)
        assert line["host_adjusted_interval"] is not None and line["verdict"] == "WITHIN"
        assert set(line["threads"]) == {"article", "suite"}
    worker, = started
    assert worker.proc.poll() is not None  # stopped: no worker outlives the tool
    with pytest.raises(ProcessLookupError):
        os.kill(worker.pid, 0)


class StopAfter:
    """One side's cycle, (seconds, new tokens, host probe ms); its `calls`-th call (the warm-up
    is the first) is where a time limit's SIGINT lands."""
    def __init__(self, calls: int):
        self.calls, self.made = calls, 0

    def __call__(self, *args):
        self.made += 1
        if self.made == self.calls:
            raise KeyboardInterrupt
        return (1.0 + 0.01 * self.made, 10, 6.0)


def test_thread_times_name_the_main_thread_and_see_another_threads_cpu_time():
    import threading
    done = threading.Event()

    def spin():
        while not done.is_set():
            pass
    spinner = threading.Thread(target=spin)
    before = fidelity.thread_times(os.getpid())
    spinner.start()
    try:
        sum(i * i for i in range(3_000_000))
        after = fidelity.thread_times(os.getpid())
    finally:
        done.set()
        spinner.join()
    spent = fidelity.time_spent(before, after)
    assert spent["cpu_s"]["main"] > 0 and spent["main_involuntary_switches"] >= 0
    assert sum(s for name, s in spent["cpu_s"].items() if name != "main") > 0  # the spinner's, under its OS name


def test_time_spent_goes_thread_by_thread_so_one_that_ends_takes_nothing_off_its_namesakes():
    before = {"threads": {"1": ("main", 10.0), "2": ("pool", 5.0), "3": ("pool", 7.0)}, "main_involuntary_switches": 40}
    after = {"threads": {"1": ("main", 12.5), "3": ("pool", 7.5), "4": ("pool", 0.25)}, "main_involuntary_switches": 52}
    assert fidelity.time_spent(before, after) == {"cpu_s": {"main": 2.5, "pool": 0.75}, "main_involuntary_switches": 12}


@pytest.mark.parametrize("control, first", [(None, "this process"), ("worker", "second worker"), ("here", "this process")])
def test_each_sides_cpu_time_is_read_from_its_own_process(capsys, monkeypatch, control, first):
    started, read = [], []
    real_start = fidelity.start_suite_worker
    monkeypatch.setattr(fidelity, "start_suite_worker", lambda *a: started.append(real_start(*a)) or started[-1])
    monkeypatch.setattr(fidelity, "thread_times", lambda pid: read.append(pid) or
                        {"threads": {str(pid): ("main", float(len(read)))}, "main_involuntary_switches": len(read)})
    code, lines = run(capsys, "--interleave", "--cycles", "6", "--tolerance", "1000",
                      *(["--control", control] if control else []))
    pid_of = {"this process": os.getpid(), "second worker": started[-1].pid}
    assert code == 0 and read == [pid_of[first], started[0].pid] * 2  # before the pairs, then after
    name = {None: "article", "worker": "control", "here": "in_process"}[control]
    assert lines[0]["threads"] == {name: {"cpu_s": {"main": 2.0}, "main_involuntary_switches": 2},
                                   "suite": {"cpu_s": {"main": 2.0}, "main_involuntary_switches": 2}}


def test_an_interrupted_cell_is_judged_from_its_whole_pairs_only():
    # The suite's side is cut on its 8th call: the 7th pair (article first) has one cycle, dropped.
    line = fidelity.interleaved(StopAfter(0), StopAfter(8), 100, ("article", "suite"))
    assert line["interrupted"] and line["pairs"] == 6
    assert {side: len(cycles) for side, cycles in line["cycles"].items()} == {"article": 6, "suite": 6}
    assert line["new_tokens"] == [60, 60] and line["host_adjusted_interval"] is not None


def test_an_interruption_before_any_whole_pair_is_not_swallowed():
    with pytest.raises(KeyboardInterrupt):
        fidelity.interleaved(StopAfter(0), StopAfter(2), 100, ("article", "suite"))


@pytest.fixture
def stopped_workers(monkeypatch):
    """No models: the article's load returns nothing (its cycles are doubles) and each suite worker
    is a stand-in with a pid (this process's: CPU time is read from it) and a stop() that is
    recorded in the list returned."""
    stopped = []

    class Worker:
        pid = os.getpid()

        def stop(self):
            stopped.append(self)
    monkeypatch.setattr(fidelity, "load", lambda *a: (None, None))
    monkeypatch.setattr(fidelity, "start_suite_worker", lambda *a: Worker())
    return stopped


def test_an_interrupted_run_prints_that_cell_stops_its_workers_and_exits_130(capsys, monkeypatch, stopped_workers):
    monkeypatch.setattr(fidelity, "timed_article_cycle", StopAfter(0))
    monkeypatch.setattr(fidelity, "timed_suite_cycle", StopAfter(9))
    code, lines = run(capsys, "--batch-sizes", "1,8", "--interleave", "--cycles", "100")
    line, = lines  # batch size 8 never started
    assert code == fidelity.INTERRUPTED == 130 and line["batch_size"] == 1 and line["interrupted"]
    assert line["pairs"] == 7 and "verdict" in line and len(stopped_workers) == 1


def test_an_interruption_in_the_warm_up_prints_nothing_stops_the_workers_and_exits_130(capsys, monkeypatch, stopped_workers):
    monkeypatch.setattr(fidelity, "timed_article_cycle", StopAfter(1))  # its warm-up
    monkeypatch.setattr(fidelity, "timed_suite_cycle", StopAfter(0))
    code = fidelity.main(["--backend", "accel_bf16", "--model", str(EMBEDDED_MODEL), "--batch-sizes", "1,8",
                          "--interleave", "--cycles", "100"])
    printed = capsys.readouterr()
    assert code == 130 and printed.out == "" and len(stopped_workers) == 1
    assert "interrupted before a whole pair" in printed.err


# Pair ratios (article / suite, ms/token) from the interleaved run on the lent H200, BLOOM-7b1
# (docs/results/synthetic-bloom-7b1-1xH200-fidelity-interleaved.jsonl).
H200_DS_FP16_BS8 = [1.5131, 1.1699, 1.0206, 1.2245, 1.2988, 1.3986, 1.0883, 1.1776, 0.9931, 1.0157]
H200_ACCEL_BF16_BS1 = [0.6392, 1.3687, 0.9496, 1.056, 1.2093, 0.946, 1.0417, 1.0052, 1.0405, 1.2285]


@pytest.mark.parametrize("pairs, probes, verdict", [
    (H200_DS_FP16_BS8, [1.0] * 10, "OUTSIDE"),  # interval [1.054, 1.309]: the article's loop was slower
    (H200_ACCEL_BF16_BS1, [1.0] * 10, "UNDECIDED"),  # [0.886, 1.193]: 10 pairs on that host cannot say
    ([1.01, 0.99, 1.02, 0.98, 1.0, 1.01, 0.99, 1.0], [1.3] * 8, "WITHIN"),  # a steady 1.3x host gap leaves the raw verdict
    ([1.2, 1.21, 1.19, 1.2, 1.22, 1.18], [1.0] * 6, "OUTSIDE"),
    ([1.2, 1.21, 1.19, 1.2, 1.22], [1.0] * 5, "UNDECIDED"),  # 5 pairs: no 95% interval
])
def test_the_verdict_needs_the_whole_paired_interval_on_one_side_of_the_tolerance(pairs, probes, verdict):
    line = {"ratio": statistics.median(pairs), **fidelity.paired_interval(pairs, probes)}
    assert fidelity.fidelity_verdict(line, 0.05) == verdict
    if line["interval"]:
        low, high = line["interval"]
        assert low <= line["paired_ratio"] <= high
        # a steady host gap says nothing of how a cycle follows the host: nothing is taken out
        assert line["host_slope"] == 0 and line["host_adjusted_ratio"] == pytest.approx(line["paired_ratio"])


def test_the_host_slope_is_fitted_and_held_between_0_and_1():
    probes = [0.7, 1.4, 1.0, 0.8, 1.25, 1.1, 0.9, 1.3, 0.75, 1.05]
    noise = [1.01, 0.99, 1.02, 0.98, 1.0, 1.01, 0.99, 1.0, 1.02, 0.98]
    half = [1.03 * p ** 0.5 * n for p, n in zip(probes, noise)]  # loops 3% apart, cycles half host work
    line = fidelity.paired_interval(half, probes)
    assert line["host_slope"] == pytest.approx(0.5, abs=0.05)
    assert line["host_adjusted_ratio"] == pytest.approx(1.03 * statistics.geometric_mean(probes) ** 0.5, abs=0.01)
    low, high = line["host_adjusted_interval"]
    assert high - low < (line["interval"][1] - line["interval"][0]) / 3  # the host's share taken out
    assert fidelity.paired_interval([p ** 2 for p in probes], probes)["host_slope"] == 1.0
    assert fidelity.paired_interval([1 / p for p in probes], probes)["host_slope"] == 0.0
    assert fidelity.paired_interval(half[:7], [1.1] * 7)["host_slope"] == 0.0  # no variation, however the mean rounds


def test_a_steady_probe_gap_between_the_processes_is_not_taken_out():
    # The article's process probed 20% slower throughout, and its cycles were slower with it: that
    # gap could be the loop's own doing, so it stays in the estimate; only the spread goes.
    drift = [0.7, 1.4, 1.0, 0.8, 1.25, 1.1, 0.9, 1.3, 0.75, 1.05]
    probes = [1.2 * d for d in drift]
    line = fidelity.paired_interval([p ** 0.6 for p in probes], probes)
    assert line["host_slope"] == pytest.approx(0.6)
    assert line["host_adjusted_ratio"] == pytest.approx(statistics.geometric_mean(probes) ** 0.6)
    assert line["host_adjusted_ratio"] == pytest.approx(line["paired_ratio"], rel=0.03)
    low, high = line["host_adjusted_interval"]
    assert high / low < 1.001  # the drift, all of the spread, is gone


def test_the_verdict_is_taken_with_the_host_taken_out():
    probes = [0.7, 1.4, 1.0, 0.8, 1.25, 1.1, 0.9, 1.3, 0.75, 1.05]
    line = fidelity.paired_interval([1.01 * p ** 0.6 for p in probes], probes)
    assert line["interval"][0] < 1 / 1.05 and line["interval"][1] > 1.05  # plain: the host's spread
    assert fidelity.fidelity_verdict({"ratio": 1.0, **line}, 0.05) == "WITHIN"


# Every cycle of 30 interleaved pairs a cell on the lent H200, BLOOM-7b1 (README, "Roofline and fidelity").
H200_30_PAIRS = REPO / "docs" / "results" / "synthetic-bloom-7b1-1xH200-fidelity-30pairs.jsonl"


def test_the_h200_30_pair_figures_as_quoted_come_from_the_recorded_cycles():
    quoted = {("accel_bf16", 1): (0.54, [0.918, 1.026]), ("accel_bf16", 8): (0.43, [0.892, 1.114]),
              ("ds_fp16", 1): (0.53, [1.003, 1.107]), ("ds_fp16", 8): (0.73, [1.030, 1.165])}
    for record in map(json.loads, H200_30_PAIRS.read_text().splitlines()):
        line = fidelity.judge_pairs(record["cycles"]["article"], record["cycles"]["suite"])
        slope, interval = quoted[record["backend"], record["batch_size"]]
        assert round(line["host_slope"], 2) == slope and [round(b, 3) for b in line["host_adjusted_interval"]] == interval
        assert fidelity.fidelity_verdict({"ratio": record["ratio"], **line}, 0.05) == "UNDECIDED"


# Every cycle of 50 interleaved pairs a cell, both processes pinned to one CPU, on the lent H200;
# the fifth line is accel_bf16 bs=1 again, from a later call (README, "Roofline and fidelity").
H200_PINNED = REPO / "docs" / "results" / "synthetic-bloom-7b1-1xH200-fidelity-pinned.jsonl"


def test_the_h200_pinned_figures_as_quoted_come_from_the_recorded_cycles():
    records = [json.loads(line) for line in H200_PINNED.read_text().splitlines()]
    rows = [(r["cycles"]["article"], r["cycles"]["suite"]) for r in records]
    rows.append((rows[0][0] + rows[4][0], rows[0][1] + rows[4][1]))  # "both calls": 100 pairs
    quoted = [(0.49, [0.997, 1.051], "UNDECIDED"), (0.27, [0.979, 1.035], "WITHIN"),
              (0.42, [0.956, 1.030], "WITHIN"), (0.42, [0.923, 0.993], "UNDECIDED"),
              (0.48, [0.966, 1.035], "WITHIN"), (0.49, [0.994, 1.035], "WITHIN")]
    assert [r["cpus"] for r in records] == [[4]] * 5
    paired = [[1.000, 1.060], [0.976, 1.034], [0.954, 1.036], [0.928, 0.993], [0.961, 1.035], [0.994, 1.038]]
    for (article, suite), (slope, interval, verdict), plain in zip(rows, quoted, paired, strict=True):
        line = fidelity.judge_pairs(article, suite)
        assert round(line["host_slope"], 2) == slope and [round(b, 3) for b in line["host_adjusted_interval"]] == interval
        assert [round(b, 3) for b in line["interval"]] == plain
        assert fidelity.fidelity_verdict({"ratio": 1.0, **line}, 0.05) == verdict


# ds_fp16 bs=8 again in a later session, pinned to CPU 4: the article against the suite (114 pairs),
# then two suite workers (A/A, 100 pairs), each cut by its time limit (README, "Roofline and fidelity").
H200_PINNED_DS_FP16_BS8 = REPO / "docs" / "results" / "synthetic-bloom-7b1-1xH200-fidelity-pinned-ds_fp16-bs8.jsonl"


def test_the_h200_pinned_ds_fp16_bs8_repeat_and_control_as_quoted():
    article, control = map(json.loads, H200_PINNED_DS_FP16_BS8.read_text().splitlines())
    quoted = [(article, ["article", "suite"], 114, 0.939, 0.940, [0.910, 0.969], 0.51, 0.950, [0.923, 0.976], "UNDECIDED"),
              (control, ["control", "suite"], 100, 0.997, 1.001, [0.967, 1.031], 0.33, 0.998, [0.972, 1.025], "WITHIN")]
    for record, sides, pairs, totals, paired, plain, slope, adjusted, adjusted_interval, verdict in quoted:
        line = fidelity.judge_pairs(*record["cycles"].values())
        assert list(record["cycles"]) == sides and line["pairs"] == pairs and record["interrupted"]
        assert round(record["ratio"], 3) == totals and round(line["paired_ratio"], 3) == paired
        assert [round(b, 3) for b in line["interval"]] == plain and round(line["host_slope"], 2) == slope
        assert round(line["host_adjusted_ratio"], 3) == adjusted
        assert [round(b, 3) for b in line["host_adjusted_interval"]] == adjusted_interval
        assert fidelity.fidelity_verdict({"ratio": 1.0, **line}, 0.05) == verdict == record["verdict"]


def test_ds_fp16_bs8_interval_on_the_h200_as_quoted():
    line = fidelity.paired_interval(H200_DS_FP16_BS8, [1.0] * 10)
    assert [round(b, 3) for b in line["interval"]] == [1.054, 1.309] and line["confidence"] == pytest.approx(0.951, abs=1e-3)


def test_control_pairs_two_suite_workers_and_stops_both(capsys, monkeypatch):
    started = []
    real_start = fidelity.start_suite_worker
    monkeypatch.setattr(fidelity, "start_suite_worker", lambda *a: started.append(real_start(*a)) or started[-1])
    monkeypatch.setattr(fidelity, "load", lambda *a: pytest.fail("--control loads no article model"))
    code, lines = run(capsys, "--interleave", "--control", "--cycles", "6", "--tolerance", "1000")
    line, = lines
    assert code == 0 and line["new_tokens"] == [6 * 5, 6 * 5] and line["pairs"] == 6
    assert list(line["cycles"]) == ["control", "suite"] and line["verdict"] == "WITHIN"
    assert len(started) == 2 and len({w.pid for w in started}) == 2  # two processes, two loads
    for worker in started:
        assert worker.proc.poll() is not None
        with pytest.raises(ProcessLookupError):
            os.kill(worker.pid, 0)


def test_control_here_pairs_the_suites_code_in_this_process_with_one_worker(capsys, monkeypatch):
    from perf import worker as worker_module
    started, cycles_here = [], []
    real_start, real_cycle = fidelity.start_suite_worker, worker_module.Session.cycle
    monkeypatch.setattr(fidelity, "start_suite_worker", lambda *a: started.append(real_start(*a)) or started[-1])
    monkeypatch.setattr(fidelity, "load", lambda *a: pytest.fail("--control here loads no article model"))
    monkeypatch.setattr(worker_module.Session, "cycle", lambda self, **kw: cycles_here.append(kw) or real_cycle(self, **kw))
    code, lines = run(capsys, "--interleave", "--control", "here", "--cycles", "6", "--tolerance", "1000")
    line, = lines
    assert code == 0 and list(line["cycles"]) == ["in_process", "suite"] and line["pairs"] == 6
    assert len(started) == 1 and started[0].proc.poll() is not None  # one worker, stopped
    assert len(cycles_here) == 7  # warm-up and 6 timed cycles of the worker's own code, in this process


def test_worker_logs_keeps_each_runs_worker_stderr_in_a_folder_of_its_own(capsys, tmp_path):
    said = []
    for _ in range(2):
        code = fidelity.main(["--backend", "accel_bf16", "--model", str(EMBEDDED_MODEL), "--new-tokens", "5",
                              "--interleave", "--cycles", "6", "--tolerance", "1000", "--worker-logs", str(tmp_path / "logs")])
        assert code == 0
        said.append(capsys.readouterr().err)
    runs = sorted((tmp_path / "logs").iterdir(), key=lambda r: r.stat().st_mtime)
    assert len(runs) == 2 and all(r.name.startswith("fidelity-accel_bf16-20") for r in runs)
    assert all((r / "fidelity-accel_bf16-0.worker.log").stat().st_size > 0 for r in runs)
    assert [f"the suite's workers' stderr goes to {r}" in err for r, err in zip(runs, said)] == [True, True]


def test_worker_logs_without_interleave_is_refused(capsys):
    with pytest.raises(SystemExit):
        run(capsys, "--worker-logs", "logs")
    assert "--worker-logs goes with --interleave" in capsys.readouterr().err


def test_a_worker_logs_path_that_cannot_be_a_folder_is_named_before_any_load(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(fidelity, "load", lambda *a: pytest.fail("loaded before checking --worker-logs"))
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit):
        run(capsys, "--interleave", "--cycles", "6", "--worker-logs", str(tmp_path / "file" / "logs"))
    assert f"--worker-logs {tmp_path / 'file' / 'logs'}: Not a directory" in capsys.readouterr().err


def test_control_without_interleave_is_refused(capsys):
    with pytest.raises(SystemExit):
        run(capsys, "--control")
    assert "--control goes with --interleave" in capsys.readouterr().err


def test_interleave_with_too_few_pairs_for_an_interval_is_refused_before_any_load(capsys):
    with pytest.raises(SystemExit):
        run(capsys, "--interleave", "--cycles", "5")
    assert "--cycles 5 with --interleave: a 95% paired interval needs 6 pairs or more" in capsys.readouterr().err


def test_interleave_and_compare_are_exclusive(capsys):
    with pytest.raises(SystemExit):
        run(capsys, "--interleave", "--compare", str(RESULTS))
    assert "not allowed with argument" in capsys.readouterr().err


def test_a_suite_worker_that_fails_to_load_is_reported_with_its_traceback_and_stderr(capsys, monkeypatch):
    import dataclasses

    from perf import backends
    crashing = dataclasses.replace(backends.BACKENDS["accel_bf16"], adapter="tests.doubles:CrashOnLoad")
    monkeypatch.setitem(backends.BACKENDS, "accel_bf16", crashing)
    with pytest.raises(SystemExit) as exited:
        run(capsys, "--interleave", "--cycles", "6")
    message = str(exited.value.code)
    assert message.startswith("the suite's accel_bf16 worker failed to load: RuntimeError: double: load exploded")
    assert "Traceback" in message and "double: this line must reach the failure report" in message


def test_cpus_pins_this_process_and_the_suites_workers_it_starts(capsys, monkeypatch):
    allowed = os.sched_getaffinity(0)
    cpu = max(allowed)
    seen = []
    real_start = fidelity.start_suite_worker

    def start_and_look(*args):
        worker = real_start(*args)  # loaded by now: nothing in the load moved it
        seen.append(os.sched_getaffinity(worker.pid))
        return worker
    monkeypatch.setattr(fidelity, "start_suite_worker", start_and_look)
    try:  # --control: both sides are workers, so this pytest process starts no torch threads while pinned
        code, lines = run(capsys, "--interleave", "--control", "--cycles", "6", "--tolerance", "1000", "--cpus", str(cpu))
    finally:
        os.sched_setaffinity(0, allowed)  # main() ran in this process: give pytest its CPUs back
    assert code == 0 and lines[0]["cpus"] == [cpu] and seen == [{cpu}, {cpu}]


@pytest.mark.parametrize("cpus, mode, message", [
    ("a,b", "--interleave", "expected comma-separated CPU numbers"),
    ("100000", "--interleave", r"CPU\(s\) \[100000\] not available here"),
    ("0", None, "--cpus goes with --interleave"),
])
def test_bad_cpus_are_named_before_any_load(capsys, monkeypatch, cpus, mode, message):
    import re
    monkeypatch.setattr(fidelity, "load", lambda *a: pytest.fail("loaded before checking --cpus"))
    with pytest.raises(SystemExit):
        run(capsys, *([mode] if mode else []), "--cycles", "6", "--cpus", cpus)
    assert re.search(message, capsys.readouterr().err)


def test_the_suites_worker_does_not_inherit_the_articles_rank_and_port(capsys, monkeypatch, tmp_path):
    # The article's ds_fp16 process sets these, as the `deepspeed` launcher would; a worker that
    # inherited MASTER_PORT would try to open the same rendezvous port.
    for key in fidelity.LAUNCHER_ENV:
        monkeypatch.setenv(key, "12345")
    worker = fidelity.start_suite_worker("accel_bf16", str(EMBEDDED_MODEL), str(tmp_path))
    try:
        raw = Path(f"/proc/{worker.pid}/environ").read_bytes().decode()
        environ = dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)
    finally:
        worker.stop()
    assert not set(fidelity.LAUNCHER_ENV) & set(environ) and environ["TOKENIZERS_PARALLELISM"] == "false"


def test_the_cpu_thread_figures_as_quoted_come_from_the_recorded_runs():
    # Four runs on an earlier session's development VM (2 cores), pinned to CPU 1: the tokenizers
    # library's pool on in the article's process (its default), twice, then off (README,
    # "Roofline and fidelity").
    runs = [json.loads(line) for line in (REPO / "docs" / "results" / "tiny-bloom-cpu-fidelity-threads.jsonl").read_text().splitlines()]
    switches = [(r["tokenizers_parallelism"], r["threads"]["article"]["main_involuntary_switches"],
                 r["threads"]["suite"]["main_involuntary_switches"]) for r in runs]
    assert switches == [(None, 316, 50), (None, 328, 44), ("false", 32, 49), ("false", 36, 46)]
    assert [round(r["host_adjusted_ratio"], 3) for r in runs] == [0.996, 1.012, 1.008, 1.009]


def test_the_h200_pinned_ds_fp16_bs8_pairs_on_the_embedded_model_as_quoted():
    # The pairing of H200_PINNED_DS_FP16_BS8 (7b1) on the embedded model, cut by its time limit
    # (README, "Roofline and fidelity").
    record = json.loads((REPO / "docs" / "results" / "tiny-bloom-1xH200-fidelity-pinned-ds_fp16-bs8.jsonl").read_text())
    line = fidelity.judge_pairs(*record["cycles"].values())
    assert list(record["cycles"]) == ["article", "suite"] and line["pairs"] == 73 and record["interrupted"]
    assert [round(record[k], 3) for k in ("ms_per_token", "suite_ms_per_token")] == [0.456, 0.455]
    assert round(line["paired_ratio"], 3) == 1.000 and [round(b, 3) for b in line["interval"]] == [0.986, 1.012]
    assert round(line["host_adjusted_ratio"], 3) == 1.003 and round(line["host_slope"], 2) == 0.33
    assert [round(b, 3) for b in line["host_adjusted_interval"]] == [0.989, 1.015]
    assert fidelity.fidelity_verdict({"ratio": 1.0, **line}, 0.05) == "WITHIN" == record["verdict"]
    article, suite = record["threads"]["article"], record["threads"]["suite"]
    assert (article["cpu_s"]["main"], suite["cpu_s"]["main"]) == (28.25, 28.64)
    assert max(s for side in (article, suite) for name, s in side["cpu_s"].items() if name != "main") <= 0.03
    assert (article["main_involuntary_switches"], suite["main_involuntary_switches"]) == (3063, 1341)
    log_ms = [[math.log(seconds / tokens) for seconds, tokens, _ in record["cycles"][side]] for side in ("article", "suite")]
    assert round(statistics.correlation(*log_ms), 2) == 0.74
