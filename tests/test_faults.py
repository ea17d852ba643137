"""A backend that crashes, hangs or runs out of memory fails (or marks) its own tests only,
with its error text and stderr, and leaves no process behind. Doubles: tests/doubles.py."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, pid_alive

DOUBLES = ["-p", "tests.doubles"]


def test_a_backend_that_raises_during_load_fails_its_tests_and_the_others_run(run_perf):
    run = run_perf(*DOUBLES, "-k", "ms_per_token and (double_crash_on_load or accel_bf16)")
    run.result.assert_outcomes(passed=2, failed=2)
    run.result.stdout.fnmatch_lines(["*double_crash_on_load: load failed: RuntimeError: double: load exploded*",
                                     "*double: this line must reach the failure report*"])
    assert [t["outcome"] for t in run.tests(backend="double_crash_on_load")] == ["failed", "failed"]
    assert [t["outcome"] for t in run.tests(backend="accel_bf16")] == ["passed", "passed"]
    assert not [load for load in run.loads() if pid_alive(load["pid"])]


def test_a_killed_worker_fails_its_backend_with_the_signal_and_stderr(run_perf):
    run = run_perf(*DOUBLES, "-k", "ms_per_token and (double_killed or accel_bf16)")
    run.result.assert_outcomes(passed=2, failed=2)
    run.result.stdout.fnmatch_lines(["*double_killed: worker died during 'cycle' (killed by signal 9)*",
                                     "*worker stderr (tail*"])
    assert [t["outcome"] for t in run.tests(backend="double_killed")] == ["worker crash"] * 2
    assert not [load for load in run.loads() if pid_alive(load["pid"])]


def test_a_hung_worker_is_killed_after_the_worker_timeout(run_perf):
    run = run_perf(*DOUBLES, "--worker-timeout", "20", "-k", "ms_per_token and double_hang and bs1")
    run.result.assert_outcomes(failed=1)
    run.result.stdout.fnmatch_lines(["*double_hang: no answer to 'cycle' within 20 s (--worker-timeout); worker killed*"])
    assert [t["outcome"] for t in run.tests(backend="double_hang")] == ["worker crash"]
    loads = run.loads()
    assert len(loads) == 1 and not pid_alive(loads[0]["pid"])


def test_out_of_memory_is_an_outcome_and_larger_batches_are_not_run(run_perf):
    run = run_perf(*DOUBLES, "--batch-sizes", "1,4,8", "-k", "ms_per_token and double_oom")
    run.result.assert_outcomes(passed=1, skipped=2)
    outcomes = {t["batch_size"]: (t["outcome"], t["reason"]) for t in run.tests(backend="double_oom")}
    assert outcomes[1] == ("passed", None)
    assert outcomes[4][0] == "oom" and "out of memory at bs=4: OutOfMemoryError" in outcomes[4][1]
    assert outcomes[8] == ("oom", "not run: out of memory at bs=4 already")
    run.result.stdout.fnmatch_lines(["double_oom *OOM*OOM*"])


def test_correctness_checks_catch_a_backend_with_wrong_numerics(run_perf):
    run = run_perf(*DOUBLES, "--new-tokens", "40", "-k", "double_perturbed and not ms_per_token")
    run.result.assert_outcomes(passed=1, failed=2)  # still sane text, but not the reference's
    run.result.stdout.fnmatch_lines(["*greedy tokens diverge from the fp32 reference too early*",
                                     "*teacher-forced logits differ from the fp32 reference*"])
    greedy = run.tests(test="test_greedy_matches_reference")[0]
    assert greedy["match"] < 0.8 and min(greedy["first_divergence"]) < 100


def test_a_lock_left_by_a_killed_deepspeed_op_build_is_removed_and_the_run_goes_on(run_perf, tmp_path, monkeypatch):
    # torch's JIT build waits with no timeout while its 'lock' file exists, and a build killed
    # midway (Ctrl-C, a killed pytest) leaves that file: every later run would hang.
    extensions = tmp_path / "torch_extensions"
    cached = Path(sys.prefix) / "torch_extensions" / "deepspeed_shm_comm"
    if cached.is_dir():  # spares a compile; without it the op is compiled here
        shutil.copytree(cached, extensions / cached.name)
    lock = extensions / "deepspeed_shm_comm" / "lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.touch()
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(extensions))
    run = run_perf("--worker-timeout", "300", "-k", "ms_per_token and zero_bf16 and bs1")
    run.result.assert_outcomes(passed=1)
    pytest.LineMatcher(run.result.stderr.lines + run.result.stdout.lines).fnmatch_lines(
        [f"*removed {lock}: left by a build of deepspeed_shm_comm that was interrupted*"])
    assert not lock.exists() and (lock.parent / "deepspeed_shm_comm.so").exists()


def test_a_message_a_library_logs_at_every_step_is_shown_once_then_counted():
    # bitsandbytes logs "MatMul8bitLt: inputs will be cast ..." at every int8 matmul.
    script = ("import logging; from perf import worker; worker._collapse_repeated_log_records()\n"
              "log = logging.getLogger('bitsandbytes.autograd')\n"
              "for i in range(1500): log.warning('MatMul8bitLt: inputs will be cast from %s to float16', 'bf16')\n"
              "log.warning('another message')")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stderr.splitlines() == [
        "MatMul8bitLt: inputs will be cast from bf16 to float16",
        "MatMul8bitLt: inputs will be cast from bf16 to float16 [the same message 10 times so far; repeats not shown]",
        "MatMul8bitLt: inputs will be cast from bf16 to float16 [the same message 100 times so far; repeats not shown]",
        "MatMul8bitLt: inputs will be cast from bf16 to float16 [the same message 1000 times so far; repeats not shown]",
        "another message"]
