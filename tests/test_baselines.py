"""Baseline files: profiles, the shipped article tables, updates, bad files, and verdicts in
real sessions."""
import json
import multiprocessing
from pathlib import Path

import pytest

from perf import baselines
from perf.verdicts import IMPROVEMENT, INCONCLUSIVE, NEW, NO_CHANGE, REFUSED, REGRESSION
from tests.conftest import ARTICLE, REPO, article_tables
DOUBLES = ["-p", "tests.doubles"]


def test_hardware_profiles():
    gpu = {"device_count": 8, "devices": ["NVIDIA A100-SXM4-80GB"] * 8}
    assert baselines.hardware_profile(gpu) == "8xA100-SXM4-80GB"
    assert baselines.hardware_profile({"device_count": 1, "devices": ["NVIDIA H200"]}) == "1xH200"
    cpu = {"device_count": 0, "devices": ["cpu"], "cpu": "AMD EPYC", "cpu_count": 2}
    assert baselines.hardware_profile(cpu) == "cpu-amd-epyc-2c"


@pytest.mark.skipif(not ARTICLE.exists(), reason=f"the seed article is not beside the checkout ({ARTICLE})")
def test_shipped_published_baselines_are_the_articles_tables_exactly():
    names = {"accelerate bf16": "accel_bf16", "accelerate int8": "accel_int8", "ds-inference fp16": "ds_fp16",
             "ds-inference int8": "ds_int8", "ds-zero bf16": "zero_bf16"}
    tables = article_tables()
    assert len(tables) == 2
    for table, profile in zip(tables, ["8xA100-80GB", "4xA100-80GB"]):
        data = baselines.load(REPO / "baselines" / profile / "bigscience--bloom.json")
        for row, cells in table["rows"].items():
            entries = data["entries"][names[row]]
            shipped = [entries[f"bs{size}"]["provenance"]["as_published"]
                       for size in table["sizes"] if f"bs{size}" in entries]
            assert shipped == cells, row
            for size, cell in zip(table["sizes"], cells):
                entry = entries[f"bs{size}"]
                assert (entry["outcome"], entry["ms_per_token"]) == (("oom", None) if cell == "OOM" else ("ok", float(cell)))


def _entry(ms=10.0, samples=None, kind="measured", outcome="ok", **protocol):
    return {"outcome": outcome, "ms_per_token": ms, "samples": {"ms_per_token": samples or []},
            "threshold": 0.05, "peak_memory_mb": [100.0], "provenance": {"kind": kind},
            "protocol": {"new_tokens": 100, "world_size": 1, "int8_method": None, **protocol}}


def _record(samples, outcome="passed", memory=100.0):
    return {"outcome": outcome, "ms_per_token_samples": samples, "peak_memory": {"per_device_mb": [memory]}}


PROTOCOL = {"new_tokens": 100, "world_size": 1, "int8_method": None}


def test_judge_cases():
    base = [10.0, 10.1, 9.9, 10.05, 9.95]
    assert baselines.judge(None, _record(base), PROTOCOL).kind == NEW
    assert baselines.judge(_entry(samples=base), _record(base), PROTOCOL).kind == NO_CHANGE
    assert baselines.judge(_entry(samples=base), _record([x * 1.25 for x in base]), PROTOCOL).kind == REGRESSION
    memory = baselines.judge(_entry(samples=base), _record(base, memory=120.0), PROTOCOL)
    assert memory.kind == REGRESSION and "peak memory 120 MB > baseline 100 MB + 10%" in memory.detail
    refused = baselines.judge(_entry(samples=base, new_tokens=20), _record(base), PROTOCOL)
    assert refused.kind == REFUSED and "new_tokens 100 here, 20 in the baseline" in refused.detail
    capped = baselines.judge(_entry(samples=base, max_memory=None), _record(base), {**PROTOCOL, "max_memory": {"0": "10GiB"}})
    assert capped.kind == REFUSED and "max_memory {'0': '10GiB'} here, None in the baseline" in capped.detail
    assert baselines.judge(_entry(samples=base), _record(base), {**PROTOCOL, "max_memory": None}).kind == NO_CHANGE
    assert baselines.judge(_entry(), _record([], outcome="oom"), PROTOCOL).kind == REGRESSION
    assert baselines.judge(_entry(outcome="oom", ms=None), _record(base), PROTOCOL).kind == IMPROVEMENT
    assert baselines.judge(_entry(outcome="oom", ms=None), _record([], outcome="oom"), PROTOCOL).kind == NO_CHANGE
    published = baselines.judge(_entry(ms=10.0, kind="published"), _record([11.0] * 5), PROTOCOL)
    assert published.kind == REGRESSION and "no spread available" in published.detail


def test_update_keeps_unmeasured_and_published_entries_and_keeps_history(tmp_path):
    path = tmp_path / "p" / "m.json"
    baselines.update(path, "p", "m", {"a": {"bs1": _entry(1.0), "bs8": _entry(8.0, kind="published")},
                                      "b": {"bs1": _entry(3.0)}}, force=False)
    notes = baselines.update(path, "p", "m", {"a": {"bs1": _entry(1.5), "bs8": _entry(9.0)}}, force=False)
    assert notes == ["replaced a/bs1", "kept published a/bs8 (replace it with --update-baselines=force)"]
    data = baselines.load(path)
    assert data["entries"]["a"]["bs1"]["ms_per_token"] == 1.5  # replaced
    assert data["entries"]["a"]["bs8"]["ms_per_token"] == 8.0  # published, kept
    assert data["entries"]["b"]["bs1"]["ms_per_token"] == 3.0  # not measured, kept
    history = [json.loads(line) for line in (tmp_path / "p" / "m.history.jsonl").read_text().splitlines()]
    assert [(h["backend"], h["entry_key"], h["entry"]["ms_per_token"]) for h in history] == [("a", "bs1", 1.0)]
    baselines.update(path, "p", "m", {"a": {"bs8": _entry(9.0)}}, force=True)
    assert baselines.load(path)["entries"]["a"]["bs8"]["ms_per_token"] == 9.0
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.history.jsonl", "m.json", "m.json.lock"]


def _hammer(path: str, backend: str) -> None:
    for i in range(30):
        baselines.update(Path(path), "p", "m", {backend: {f"bs{i}": _entry(float(i))}}, force=False)


def test_concurrent_updates_do_not_corrupt_the_file(tmp_path):
    path = tmp_path / "m.json"
    procs = [multiprocessing.get_context("fork").Process(target=_hammer, args=(str(path), b)) for b in "xy"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    data = baselines.load(path)
    assert {b: len(e) for b, e in data["entries"].items()} == {"x": 30, "y": 30}


@pytest.mark.parametrize("content, message", [
    ("{not json", "*bad/cpu-x/tiny-bloom.json: not valid JSON*"),
    ('{"schema": 7, "entries": {}}', "*bad/cpu-x/tiny-bloom.json: field 'schema': unknown schema version 7*"),
    ('{"schema": 1, "entries": {"accel_bf16": {"bs1": {"outcome": "ok"}}}}',
     "*bad/cpu-x/tiny-bloom.json: entry accel_bf16/bs1: missing field 'ms_per_token'*"),
])
def test_a_bad_baseline_file_stops_the_run_before_any_load_and_is_not_rewritten(run_perf, tmp_path, content, message):
    path = tmp_path / "bad" / "cpu-x" / "tiny-bloom.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    run = run_perf("--baselines", str(tmp_path / "bad"), "--hardware", "cpu-x", "--update-baselines", "-k", "accel_bf16")
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    run.result.stdout.fnmatch_lines([message])
    assert run.loads() == [] and path.read_text() == content


def test_a_25_percent_slowdown_is_a_regression_of_that_backend_only_and_not_when_the_host_slowed(
        run_perf, tmp_path, monkeypatch):
    store, args = tmp_path / "store", ["--baselines", str(tmp_path / "store"), "--hardware", "cpu-test",
                                       "--cycles", "5", "--new-tokens", "5",
                                       "-k", "ms_per_token and (double_steady or double_slowed or double_host_slowed)"]
    first = run_perf(*DOUBLES, *args, "--update-baselines")
    first.result.assert_outcomes(passed=6)
    # Recorded on this CPU, the entries got the CPU threshold (30%); the doubles' timing is as
    # steady as a quiet GPU's, so give them the GPU default, as one would edit a quiet profile's.
    path = store / "cpu-test" / "tiny-bloom.json"
    data = json.loads(path.read_text())
    assert {e["threshold"] for sizes in data["entries"].values() for e in sizes.values()} == {baselines.CPU_THRESHOLD}
    for sizes in data["entries"].values():
        for entry in sizes.values():
            entry["threshold"] = baselines.DEFAULT_THRESHOLD
    path.write_text(json.dumps(data))
    monkeypatch.setenv("PERF_DOUBLE_SLOWDOWN", "0.25")
    monkeypatch.setenv("PERF_DOUBLE_HOST_SLOWDOWN", "0.25")
    second = run_perf(*DOUBLES, *args)
    verdicts = {(t["backend"], t["batch_size"]): t["verdict"] for t in second.tests()}
    assert verdicts[("double_slowed", 1)] == verdicts[("double_slowed", 2)] == REGRESSION
    assert REGRESSION not in (verdicts[("double_steady", 1)], verdicts[("double_steady", 2)])
    # The same 25% with the host probe 25% slower too: the host may explain it, so no REGRESSION.
    assert verdicts[("double_host_slowed", 1)] == verdicts[("double_host_slowed", 2)] == INCONCLUSIVE
    second.result.stdout.fnmatch_lines(["*verdicts against*cpu-test/tiny-bloom.json*",
                                        "*double_slowed bs=1: REGRESSION +2*",
                                        "*double_host_slowed bs=1: INCONCLUSIVE +2*the host CPU itself ran +25.0%*"])
    assert second.result.ret == pytest.ExitCode.TESTS_FAILED
    assert json.loads((store / "cpu-test" / "tiny-bloom.json").read_text())["entries"].keys() == {
        "double_steady", "double_slowed", "double_host_slowed"}
