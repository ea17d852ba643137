"""Options, selection by test id, and bad input: a usage error that names the option and the
fix, before any model loads."""
import json
import os

import pytest

from perf.backend_envs import backend_envs
from perf.options import OptionError
from tests.conftest import REPO


def _usage_error(run, *args):
    result = run(*args).result
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    return result


@pytest.mark.parametrize("args, message", [
    (["--model", "/no/such/checkpoint"], "*--model '/no/such/checkpoint': no such folder*"),
    (["--model", "not-cached/bloom-xyz"], "*--model 'not-cached/bloom-xyz': *not in the local Hugging Face cache*hf download not-cached/bloom-xyz*"),
    (["--model", "tiny-blom"], "*--model 'tiny-blom': no folder of that name here, and not in the local Hugging Face "
                               "cache*leave --model out for the embedded tiny-bloom*"),
    (["--batch-sizes", "0"], "*--batch-sizes '0': '0' is not a positive integer*--batch-sizes 1,8,32*"),
    (["--batch-sizes", "1,x"], "*--batch-sizes '1,x': 'x' is not a positive integer*"),
    (["--cycles", "0"], "*--cycles '0': expected a positive whole number*"),
    (["--max-memory", "0=70G"], "*--max-memory '0=70G': '0=70G' is not DEVICE=SIZE; give DEVICE=SIZE,... "
                                "such as --max-memory 0=70GiB,1=70GiB,cpu=200GiB*"),
    (["--hostfile", "/no/such/hostfile"], "*--hostfile '/no/such/hostfile': cannot read /no/such/hostfile*"),
    (["--cpus", "4-7"], "*--cpus '4-7': expected comma-separated CPU numbers, e.g. --cpus 4 or --cpus 4,5*"),
    (["--cpus", "100000"], "*--cpus 100000: CPU(s) [[]100000[]] not available here; this process may run on*"),
    (["--model", ""], "*--model '': empty; give a folder holding a BLOOM checkpoint*"),
    (["--model", "synthetic:bloom-999m"], "*--model 'synthetic:bloom-999m': expected synthetic:*"),
    (["--update-baselines=bogus"], "*--update-baselines 'bogus': the values it takes are 'force', 'pool' and 'force-pool'*"),
    (["--base", "/no/such/base"], "*--base '/no/such/base': *"),
])
def test_bad_options_are_usage_errors_before_any_load(run_perf, args, message):
    run = run_perf(*args)
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    run.result.stderr.fnmatch_lines([message])
    assert run.loads() == []


def test_a_bad_hostfile_line_or_a_disagreeing_world_size_is_a_usage_error(run_perf, tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("localhost slots=2\nworker-1 gpus=8\n")
    run = run_perf("--hostfile", str(hostfile))
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    run.result.stderr.fnmatch_lines([f"*--hostfile '{hostfile}': line 2 of {hostfile} is 'worker-1 gpus=8'; "
                                     "expected 'HOST slots=N' lines (DeepSpeed's hostfile format)*"])
    hostfile.write_text("localhost slots=2\n")
    run = run_perf("--hostfile", str(hostfile), "--world-size", "4")
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    run.result.stderr.fnmatch_lines([f"*--world-size 4 but --hostfile '{hostfile}' has 2 slots*"])
    assert run.loads() == []


def test_max_memory_reaches_accelerate_and_the_results(run_perf):
    run = run_perf("-k", "accel_bf16", "--max-memory", "cpu=2GiB")
    run.result.assert_outcomes(passed=5)
    info = run.results["backends"]["accel_bf16"]["info"]
    assert info["max_memory"] == {"cpu": "2GiB"} and info["device_map"] == ["cpu"]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one CPU: pinned and unpinned look alike")
def test_cpus_pins_every_thread_of_the_worker_and_is_recorded(run_perf, monkeypatch):
    # As if pytest itself ran as rank 3 of 4 under some launcher: a one-rank worker still takes all.
    for key, value in (("LOCAL_RANK", "3"), ("LOCAL_WORLD_SIZE", "4"), ("LOCAL_SIZE", "4")):
        monkeypatch.setenv(key, value)
    cpu = max(os.sched_getaffinity(0))
    run = run_perf("-k", "accel_bf16 and ms_per_token", "--batch-sizes", "1", "--cpus", str(cpu))
    run.result.assert_outcomes(passed=1)
    # Read in the worker after its load, over all its threads (torch's included).
    info = run.results["backends"]["accel_bf16"]["info"]
    assert info["cpus"] == [cpu] and info["torch_threads"] == 1
    record, = [t for t in run.results["tests"] if t["test"] == "test_ms_per_token"]
    assert record["protocol"]["cpus"] == [cpu] and run.results["protocol"]["cpus"] == [cpu]


def test_cpus_is_refused_with_ranks_on_other_hosts(run_perf, tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("localhost slots=1\nworker-1 slots=1\n")
    run = run_perf("--hostfile", str(hostfile), "--cpus", str(min(os.sched_getaffinity(0))))
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    run.result.stderr.fnmatch_lines([f"*--cpus pins processes on this host only, and --hostfile {hostfile} starts ranks on other hosts*"])


def test_a_checkpoint_that_is_not_bloom_is_refused(run_perf, tmp_path):
    (tmp_path / "gpt").mkdir()
    (tmp_path / "gpt" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    run = run_perf("--model", str(tmp_path / "gpt"))
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    run.result.stderr.fnmatch_lines(["*says model_type 'gpt2'; this suite runs BLOOM checkpoints*"])


def test_an_unknown_backend_id_in_the_environment_is_refused(run_perf, monkeypatch):
    monkeypatch.setenv("PERF_BACKEND_DS_FP32_PYTHONPATH", "/opt/t4")
    run = run_perf()
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    run.result.stderr.fnmatch_lines(["*environment variable PERF_BACKEND_DS_FP32_PYTHONPATH: unknown backend id 'ds_fp32'; "
                                     "known ids: accel_bf16, accel_int8, ds_fp16, ds_int8, zero_bf16*"])
    assert run.loads() == []


def test_pyproject_backend_table_is_checked(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.perf.backends.ds_fp61]\npythonpath = "/x"\n')
    with pytest.raises(OptionError, match=r"\[tool.perf.backends.ds_fp61\]: unknown backend id 'ds_fp61'"):
        backend_envs(pyproject, {})
    pyproject.write_text('[tool.perf.backends.ds_fp16]\npythonpth = "/x"\n')
    with pytest.raises(OptionError, match=r"unknown key\(s\) \['pythonpth'\]"):
        backend_envs(pyproject, {})
    pyproject.write_text('[tool.perf.backends.ds_fp16]\npythonpath = "$T4:/b:$UNSET_VAR_XYZ"\n')
    env = backend_envs(pyproject, {"PERF_BACKEND_ZERO_BF16_PYTHONPATH": "/z"})
    assert env["ds_fp16"].pythonpath[-1] == "/b" and env["zero_bf16"].pythonpath == ("/z",)


def test_a_relative_pythonpath_is_the_pyprojects_folder_or_the_callers_not_the_workers(tmp_path, monkeypatch):
    """Workers run in their log folder; `PYTHONPATH=plugins pytest perf` (or a pyproject's
    pythonpath = ["vendor"]) must still reach them, as it would any Python process started there."""
    import sys

    from perf.launcher import RemoteError, Worker
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.perf.backends.ds_fp16]\npythonpath = ["vendor", "/abs", "$T4_XYZ"]\n')
    monkeypatch.setenv("T4_XYZ", "/t4")
    env = backend_envs(pyproject, {})
    assert env["ds_fp16"].pythonpath == (str(tmp_path / "vendor"), "/abs", "/t4")

    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "relative_plugin.py").write_text("")
    monkeypatch.chdir(tmp_path)
    worker = Worker("relative", sys.executable, [], 120, tmp_path / "logs",
                    env={**os.environ, "PYTHONPATH": f"plugins{os.pathsep}{REPO}"})
    try:
        with pytest.raises(RemoteError) as found:  # the module is there; the adapter it names is not
            worker.call("load", adapter="relative_plugin:NoSuchAdapter", model="x", options={})
    finally:
        worker.stop()
    assert "has no attribute 'NoSuchAdapter'" in found.value.error, found.value.error


def test_the_shipped_pyproject_config_is_valid():
    assert "ds_fp16" in backend_envs(REPO / "pyproject.toml", {})


@pytest.mark.parametrize("expr, count, must_contain", [
    ("ds_int8", 5, "ds_int8"),
    ("accel", 10, "accel_"),
    ("bs8", 5, "-bs8]"),
])
def test_k_selects_exactly_the_backend_or_batch_size(run_perf, expr, count, must_contain):
    result = run_perf("--collect-only", "-q", "--batch-sizes", "1,8", "-k", expr).result
    ids = [line for line in result.outlines if "::" in line]
    assert len(ids) == count and all(must_contain in line for line in ids), ids
    if expr == "bs8":
        assert all("test_ms_per_token[" in line for line in ids)


def test_test_ids_name_backend_and_batch_size(run_perf):
    ids = [line.split("::")[1] for line in run_perf("--collect-only", "-q", "--batch-sizes", "1,8").result.outlines
           if "::" in line]
    assert "test_ms_per_token[accel_int8-bs8]" in ids and "test_greedy_matches_reference[zero_bf16]" in ids
    assert len(ids) == 5 * (3 + 2)


def test_options_are_listed_in_help_under_one_group(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    result = pytester.runpytest_subprocess("--help", "-p", "perf.plugin")
    text = result.stdout.str()
    group = text[text.index("BLOOM inference performance suite"):]
    for option in ("--model", "--batch-sizes", "--new-tokens", "--cycles", "--results", "--worker-timeout",
                   "--world-size", "--hostfile", "--max-memory", "--cpus"):
        assert option in group.split("\n\n")[0], option
