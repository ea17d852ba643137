"""Bad input and faults: a clear error that names the file, field or option and the fix, or the
fault survived with nothing lost (issue 20's table, row by row)."""
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from perf import baselines, files, record, report, results, verdicts
from tests.conftest import REPO, pid_alive
from tests.test_evidence import PROTOCOL, entry, record as evidence_record

DOUBLES = ["-p", "tests.doubles"]
ACCEL = ["-k", "accel_bf16 and ms_per_token", "--batch-sizes", "1"]


@contextmanager
def tmpfs(path: Path, options: str):
    """A small file system of our own (read-only, or 64 KiB to fill up): needs mount, as root."""
    path.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _usage(run, message: str):
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR, run.result.stdout.str()[-2000:]
    # Option errors go to stderr; those found once the tests are collected, to stdout.
    pytest.LineMatcher(run.result.stderr.lines + run.result.stdout.lines).fnmatch_lines([message])
    assert run.loads() == []


# -- paths the run will write, checked before any model loads ---------------------------------------
@pytest.mark.parametrize("case, message", [
    ("missing folder", "*--results '*nowhere/x.json': folder *nowhere does not exist; create it or give another path*"),
    ("empty", "*--results '': give a file path, e.g. --results perf-results.json*"),
    ("a folder", "*--results '*': a folder; give a file path inside it*"),
])
def test_a_results_path_that_cannot_be_written_is_a_usage_error(run_perf, tmp_path, case, message):
    target = {"missing folder": str(tmp_path / "nowhere" / "x.json"), "empty": "", "a folder": str(tmp_path)}[case]
    _usage(run_perf(*ACCEL, "--results", target), message)
    assert not list(tmp_path.glob("**/*.tmp"))


def test_a_results_file_on_a_read_only_file_system_is_a_usage_error(run_perf, tmp_path):
    with tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        _usage(run_perf(*ACCEL, "--results", str(ro / "x.json")), "*--results '*x.json': cannot write there*")


def test_a_read_only_baseline_store_with_update_baselines_is_a_usage_error(run_perf, tmp_path):
    with tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        run = run_perf(*ACCEL, "--baselines", str(ro), "--update-baselines")
        _usage(run, "*--update-baselines with --baselines *ro: cannot create or write files in *ro*leave out --update-baselines*")


def test_hardware_is_one_plain_name(run_perf, tmp_path):
    run = run_perf(*ACCEL, "--hardware", "../../etc", "--update-baselines", "--baselines", str(tmp_path / "a" / "b"))
    _usage(run, "*--hardware '../../etc': a hardware profile is one plain name*not a path*")
    assert not (tmp_path / "etc").exists()


@pytest.mark.parametrize("args, message", [
    (["--worker-timeout", "nan"], "*--worker-timeout 'nan': expected a positive finite number*"),
    (["--worker-timeout", "inf"], "*--worker-timeout 'inf': expected a positive finite number*"),
    (["--profile-cycles", "-1"], "*--profile-cycles '-1': expected a whole number >= 0*"),
])
def test_timeouts_and_counts_must_be_finite(run_perf, args, message):
    _usage(run_perf(*ACCEL, *args), message)


def test_a_model_folder_whose_config_is_not_an_object_is_named(run_perf, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("[1, 2, 3]")
    _usage(run_perf(*ACCEL, "--model", str(tmp_path / "m")), "*config.json is not a model configuration*")


# -- baseline and results files, validated at every level -----------------------------------------
def _baseline(tmp_path, entries) -> Path:
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"schema": 2, "profile": "p", "model": "m", "entries": entries}, allow_nan=True))
    return path


GOOD = {"outcome": "ok", "ms_per_token": 10.0, "samples": {"ms_per_token": [10.0]}, "threshold": 0.05,
        "provenance": {"kind": "measured"}, "protocol": PROTOCOL}


@pytest.mark.parametrize("entries, message", [
    ({"accel_bf16": [GOOD]}, "entries accel_bf16: Input should be a valid dictionary"),
    ({"accel_bf16": {"bs1": 5}}, "entry accel_bf16/bs1: Input should be a valid dictionary"),
    ({"accel_bf16": {"bs1": {**GOOD, "protocol": None}}}, "entry accel_bf16/bs1: field 'protocol': Input should be"),
    ({"a": {"bs1": {**GOOD, "ms_per_token": -2.0, "samples": {}}}}, "field 'ms_per_token': Input should be greater than 0"),
    ({"a": {"bs1": {**GOOD, "ms_per_token": 0, "samples": {}}}}, "field 'ms_per_token': Input should be greater than 0"),
    ({"a": {"bs1": {**GOOD, "ms_per_token": float("inf"), "samples": {}}}}, "field 'entries.a.bs1.ms_per_token': Infinity is not a number"),
    ({"a": {"bs1": {**GOOD, "ms_per_token": float("nan")}}}, "field 'entries.a.bs1.ms_per_token': NaN is not a number"),
    ({"a": {"bs1": {**GOOD, "samples": {"ms_per_token": [-1.0]}}}}, "field 'samples.ms_per_token[0]': Input should be greater than 0"),
    ({"a": {"bs1": {**GOOD, "samples": {"ms_per_token": ["10"]}}}}, "field 'samples.ms_per_token[0]': Input should be a valid number"),
    ({"a": {"bs1": {**GOOD, "samples": []}}}, "field 'samples': Input should be a valid dictionary (got [])"),
    ({"a": {"bs0": GOOD}}, "keys under a backend are batch sizes such as 'bs8'"),
])
def test_a_bad_baseline_entry_is_named_by_file_entry_and_field(tmp_path, entries, message):
    path = _baseline(tmp_path, entries)
    with pytest.raises(baselines.BaselineError) as error:
        baselines.load(path)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)


def test_a_folder_or_a_binary_file_where_the_baseline_should_be_is_named(tmp_path):
    (tmp_path / "d.json").mkdir()
    with pytest.raises(baselines.BaselineError, match="a folder, where the baseline file should be"):
        baselines.load(tmp_path / "d.json")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(baselines.BaselineError, match="not a text file"):
        baselines.load(tmp_path / "bin.json")


def test_a_bad_baseline_entry_stops_a_real_run_before_any_load(run_perf, tmp_path):
    path = tmp_path / "store" / "cpu-x" / "tiny-bloom.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"schema": 2, "profile": "cpu-x", "model": "tiny-bloom",
                                "entries": {"accel_bf16": {"bs1": {**GOOD, "ms_per_token": -2.0}}}}))
    run = run_perf(*ACCEL, "--baselines", str(tmp_path / "store"), "--hardware", "cpu-x")
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR and run.loads() == []
    run.result.stdout.fnmatch_lines(["*baseline file unusable:*tiny-bloom.json: entry accel_bf16/bs1: "
                                     "field 'ms_per_token': Input should be greater than 0*"])


@pytest.mark.parametrize("tool", ["report", "record"])
def test_the_tools_name_a_binary_or_invalid_results_file_and_exit_2(tmp_path, capsys, tool):
    binary = tmp_path / "r.json"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff")
    main = report.main if tool == "report" else record.main
    args = [str(binary)] + ([] if tool == "report" else ["--baselines", str(tmp_path / "s")])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "r.json: not a text file, so not a results file of this suite" in err
    data = json.loads((REPO / "tests" / "data" / "cpu-results.json").read_text())
    data["tests"][0]["ms_per_token_samples"] = [-1.0]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    assert main([str(bad)] + args[1:]) == 2
    assert f"bad.json: test {data['tests'][0]['nodeid']}: field ms_per_token_samples.0: Input should be " \
           "greater than 0" in capsys.readouterr().err
    data["tests"][0].pop("ms_per_token_samples")
    data["tests"][0]["samples"] = {"ms_per_token": [-1.0]}  # schema 3
    bad.write_text(json.dumps({**data, "schema": 3}))
    assert main([str(bad)] + args[1:]) == 2
    assert f"bad.json: test {data['tests'][0]['nodeid']}: field samples.ms_per_token.0: Input should be " \
           "greater than 0" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_results_files_are_strict_json():
    assert results.strict_json({"a": [1.0, float("nan")], "b": float("inf")}) == {"a": [1.0, None], "b": None}


# -- writes that fail midway ----------------------------------------------------------------------
def test_a_full_disk_leaves_the_baseline_and_its_history_as_they_were(tmp_path):
    with tmpfs(tmp_path / "full", "size=64k") as disk:
        path = disk / "p" / "m.json"
        baselines.update(path, "p", "m", {"a": {"bs1": entry(runs=1)}})
        baselines.update(path, "p", "m", {"a": {"bs1": entry(runs=1)}})  # one history line
        before = {p.name: p.read_bytes() for p in path.parent.iterdir()}
        (disk / "filler").write_bytes(b"x" * (64 * 1024 - sum(map(len, before.values())) - 4096 * 3))
        big = entry(runs=1)
        big["samples"]["ms_per_token"] = [10.0 + i / 1000 for i in range(2000)]  # larger than what is left
        for _ in range(4):
            with pytest.raises(OSError):
                baselines.update(path, "p", "m", {"a": {"bs1": big}})
        assert {p.name: p.read_bytes() for p in path.parent.iterdir()} == before  # no partial file, no record
        history = (path.parent / "m.history.jsonl").read_text().splitlines()
        assert [json.loads(line)["entry_key"] for line in history] == ["bs1"]


def test_whole_lines_or_none(tmp_path):
    with tmpfs(tmp_path / "full", "size=64k") as disk:
        log = disk / "h.jsonl"
        files.append_lines(log, ["a"])
        (disk / "filler").write_bytes(b"x" * (64 * 1024 - 8192))
        with pytest.raises(OSError):
            files.append_lines(log, ["b" * 20000])
        assert log.read_text() == "a\n"


def test_a_results_file_that_cannot_be_written_midway_is_kept_elsewhere_and_the_run_fails(run_perf, tmp_path):
    with tmpfs(tmp_path / "full", "size=64k") as disk:
        (disk / "filler").write_bytes(b"x" * (64 * 1024 - 4096))
        run = run_perf(*ACCEL, "--results", str(disk / "results.json"))
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED
    run.result.stdout.fnmatch_lines(["*perf: NOT WRITTEN*", "*cannot write --results *results.json: No space left "
                                     "on device; this run's figures are in *perf-results-*.json*"])
    kept = Path(run.result.stdout.str().split("this run's figures are in ")[1].split()[0])
    assert json.loads(kept.read_text())["tests"][0]["outcome"] == "passed"
    kept.unlink()


# -- pooling a run that does not belong ---------------------------------------------------------------
def test_pooling_refuses_a_run_whose_work_differs_unless_forced(tmp_path):
    """A run that did other work (here 10% more GPU kernel time: other code) is not pooled; one whose
    timing alone moved is: the spread between processes is what pooling is for."""
    path = tmp_path / "p" / "m.json"
    baselines.update(path, "p", "m", {"a": {"bs1": entry(runs=1)}})
    other_code = entry(runs=1, gpu=5.5, wall=20.2)
    notes = baselines.update(path, "p", "m", {"a": {"bs1": other_code}}, "pool", refuse=verdicts.pool_refusal)
    assert notes[0].startswith("kept a/bs1, not pooled: this run was REGRESSION against it")
    assert "--update-baselines=force-pool" in notes[0]
    notes = baselines.update(path, "p", "m", {"a": {"bs1": other_code}}, "force-pool", refuse=verdicts.pool_refusal)
    assert notes == ["pooled (runs: 2) a/bs1"]
    slower_host = entry(runs=1, wall=30.0, cpu=30.0)
    assert verdicts.pool_refusal(entry(runs=1), slower_host) is None


# -- processes that die -------------------------------------------------------------------------------
def test_a_worker_crash_records_the_cause_as_the_reason(run_perf):
    run = run_perf(*DOUBLES, "-k", "ms_per_token and double_killed and bs1")
    assert run.tests()[0]["reason"] == "double_killed: worker died during 'cycle' (killed by signal 9)"


def test_an_xdist_worker_killed_midway_keeps_the_records_it_finished(run_perf):
    run = run_perf(*DOUBLES, "-n", "2", "-k", "ms_per_token and double_kills_pytest")
    run.result.assert_outcomes(passed=1, failed=1)  # bs2, which killed its worker, does not run again
    outcomes = {t["batch_size"]: t["outcome"] for t in run.tests()}
    assert outcomes[1] == "passed" and outcomes.get(2) != "passed"
    assert not list(run.results_path.parent.glob(".results.json.gw*.partial"))


SHM = "deepspeed_allreduce_buffer_*"


@pytest.mark.parametrize("launcher", ["torchrun", "deepspeed"])
def test_killing_pytest_leaves_no_rank_launcher_or_shared_memory_behind(tmp_path, launcher):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("localhost slots=2\n")
    ranks = ["--world-size", "2"] if launcher == "torchrun" else ["--hostfile", str(hostfile)]
    load_log = tmp_path / "loads.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "PERF_LOAD_LOG": str(load_log),
           "PATH": f"{REPO / 'tests' / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    shm_before = set(Path("/dev/shm").glob(SHM))
    pytest_proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", str(REPO / "perf"), "-p", "no:cacheprovider", *ranks, "--results",
         str(tmp_path / "r.json"), "--new-tokens", "100", "--cycles", "50", "-k", "ms_per_token and zero_bf16 and bs1"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not (load_log.exists() and len(load_log.read_text().splitlines()) >= 2):
            time.sleep(1)
        time.sleep(5)  # into the cycles
        pids = [json.loads(line)["pid"] for line in load_log.read_text().splitlines()]
        assert len(pids) == 2
        launcher_pids = [int(p) for p in subprocess.run(["pgrep", "-f", "perf/guard.py"], capture_output=True,
                                                         text=True).stdout.split()]
        pytest_proc.kill()
        pytest_proc.wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(map(pid_alive, pids + launcher_pids)):
            time.sleep(0.5)
        assert not [p for p in pids + launcher_pids if pid_alive(p)]
        assert set(Path("/dev/shm").glob(SHM)) <= shm_before
    finally:
        if pytest_proc.poll() is None:
            pytest_proc.kill()
