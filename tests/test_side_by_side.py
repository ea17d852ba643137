"""pytest perf --base DIR: each cell's cycles interleaved with another checkout's, judged pair by
pair until decided. Real backends on the embedded model; the head's slowdown is injected from
outside the suite (scripts/inject/sitecustomize.py, through --head-python)."""
import random
import subprocess
import sys

import pytest

from perf import ab, report
from tests.conftest import REPO

SPEED = ["-k", "accel_bf16 and ms_per_token", "--new-tokens", "20"]


def _cells(run) -> dict:
    return {t["batch_size"]: t for t in run.tests(test="test_ms_per_token")}


def test_the_same_code_side_by_side_decides_nothing_and_says_how_many_pairs(run_perf):
    """The work is counted exactly on both sides: the same. Timing is paired, but on a busy host
    (CI's is, at times) its interval may straddle: no decision either way, never a false one."""
    run = run_perf(*SPEED, "--base", str(REPO))
    run.result.assert_outcomes(passed=2)
    for cell in _cells(run).values():
        assert cell["verdict"] in ("NO CHANGE", "INCONCLUSIVE")
        assert {cell["evidence"][key]["kind"] for key in ("python_calls_per_token", "aten_ops_per_token")} == {"NO CHANGE"}
        assert cell["ab"]["pairs"] >= ab.MIN_PAIRS and cell["ab"]["threshold"] == 0.30  # as CPU entries
        assert sorted(cell["ab"]["order"]) == sorted("bh" * cell["ab"]["pairs"])
    run.result.stdout.fnmatch_lines(["*verdicts against the base * (side by side): *",
                                     "*accel_bf16 bs=1 [[]* pairs, * s (*)[]]: *work unchanged: * Python calls per token*"])
    text, counts, _ = report.render(report.read_run([run.results_path]), None, "")
    assert not set(counts) - {"NO CHANGE", "INCONCLUSIVE"} and "side by side (head vs base)" in text
    assert "### Pairs per cell" in text


@pytest.fixture
def slow_python(tmp_path):
    """An interpreter for the head side whose every generate burns twice its time on the CPU."""
    path = tmp_path / "slow-python"
    path.write_text(f"#!/bin/sh\nPYTHONPATH={REPO / 'scripts' / 'inject'}:$PYTHONPATH PERF_INJECT=host-burn:1.0 "
                    f"exec {sys.executable} \"$@\"\n")
    path.chmod(0o755)
    return path


def test_a_host_side_slowdown_of_the_head_alone_is_a_regression_in_every_cell(run_perf, slow_python):
    """The head's every generate spins as long again: its Python work grew (the spin's calls),
    which decides wherever it runs, naming what grew."""
    run = run_perf(*SPEED, "--base", str(REPO), "--head-python", str(slow_python))
    run.result.assert_outcomes(failed=2)
    for cell in _cells(run).values():
        assert cell["verdict"] == "REGRESSION" and cell["decided_by"] == "Python calls"
        assert "work grew: " in cell["verdict_detail"] and "sitecustomize.py:" in cell["verdict_detail"]


def test_a_base_that_lacks_what_the_head_measures_is_judged_on_what_both_have(run_perf, tmp_path):
    """The suite as of 7c6cbbd, before host CPU time and profiled cycles."""
    old = tmp_path / "old"
    old.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "7c6cbbd", "perf"], capture_output=True)
    if archive.returncode:
        pytest.skip("this checkout has no history to take the old suite from")
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    run = run_perf(*SPEED, "--batch-sizes", "1", "--base", str(old))
    run.result.assert_outcomes(passed=1)
    cell = _cells(run)[1]
    assert set(cell["evidence"]) == {"ms_per_token"} and cell["verdict"] in ("NO CHANGE", "INCONCLUSIVE")
    assert cell["ab"]["unavailable"] == ["host time: not in the base's worker", "off-CPU time: not in the base's worker",
                                         "profiled cycles (GPU kernels, aten operators): not in the base's worker"]
    assert "judged on wall time alone: the base has no host CPU or GPU evidence" in cell["verdict_detail"]


def test_sides_that_take_turns_loading_pair_the_cycles_of_alternate_loads(run_perf):
    run = run_perf(*SPEED, "--batch-sizes", "1", "--cycles", "3", "--base", str(REPO), "--ab-loads", "alternate")
    run.result.assert_outcomes(passed=1)
    cell = _cells(run)[1]
    assert cell["ab"]["loads"] == "alternate" and cell["ab"]["load_count"]["base"] >= 2
    assert set(cell["ab"]["order"][:3]) in ({"b"}, {"h"})  # a block of 3 cycles on one side
    assert cell["ab"]["pairs"] >= ab.MIN_PAIRS


@pytest.mark.parametrize("args, message", [
    (["--base", "/no/such/checkout"], "*--base '/no/such/checkout': */no/such/checkout holds no perf/worker.py*"),
    (["--base", ".", "--update-baselines"], "*--base with --update-baselines: a side-by-side run*"),
    (["--base", ".", "--base-python", "/no/python"], "*--base-python '/no/python': not an executable*"),
    (["--head-python", sys.executable], "*--head-python without --base*"),
    (["--base", ".", "--ab-threshold", "5"], "*--ab-threshold 5.0: a fraction, e.g. 0.05*"),
])
def test_bad_side_by_side_options_are_usage_errors(run_perf, args, message):
    args = [str(REPO) if a == "." else a for a in args]
    run = run_perf(*SPEED, *args)
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR
    run.result.stderr.fnmatch_lines([message])


def test_every_two_rounds_run_each_order_once():
    orders = ab.rounds(random.Random(1), alternate=False, block=5)
    rounds = [next(orders) for _ in range(40)]
    for i in range(0, 40, 2):
        assert sorted(map(tuple, rounds[i:i + 2])) == [("base", "head"), ("head", "base")]
    assert len({tuple(map(tuple, rounds[i:i + 2])) for i in range(0, 40, 2)}) == 2  # both orders lead, at random
    blocks = ab.rounds(random.Random(1), alternate=True, block=3)
    assert next(blocks) in (["base"] * 3 + ["head"] * 3, ["head"] * 3 + ["base"] * 3)


def _cycles(ratios):
    base = [{"seconds": 1.0, "new_tokens": 100, "main_cpu_s": 1.0} for _ in ratios]
    head = [{"seconds": r, "new_tokens": 100, "main_cpu_s": r} for r in ratios]
    return {"base": base, "head": head}


def test_sampling_stops_when_decided_or_when_the_interval_is_narrower_than_the_threshold():
    _, why = ab.judge_pairs(_cycles([1.0, 1.01, 0.99, 1.0, 1.02, 0.98]), 0.05)
    assert why == "decided"  # wholly within +-5%
    evidence, why = ab.judge_pairs(_cycles([1.05, 1.051, 1.049, 1.05, 1.052, 1.048]), 0.05)
    assert why == "precise" and evidence["ms_per_token"].kind == "INCONCLUSIVE"  # at the threshold, and it stays there
    _, why = ab.judge_pairs(_cycles([1.0, 1.5, 0.7, 1.3, 0.8, 1.2]), 0.05)
    assert why is None  # noisy: more pairs
    _, why = ab.judge_pairs(_cycles([1.0, 1.01]), 0.05)  # too few pairs for an interval (--ab-max-pairs 2)
    assert why is None


def test_a_cell_stopped_before_its_first_pair_or_its_sixth_says_so_without_a_traceback():
    """--ab-max-seconds 1 (no pair) and --ab-max-pairs 2 (no interval): the cells as ab.judge sees them."""
    from perf import verdicts
    none = ab.judge({}, {}, {"base": [], "head": []}, pairs=0, threshold=0.05, unavailable=[])
    assert none.kind == "INCONCLUSIVE" and "no pair" in none.describe()
    assert verdicts.format_change(none) == "no estimate"
    two = ab.judge({}, {}, _cycles([1.0, 1.01]), pairs=2, threshold=0.05, unavailable=[])
    assert two.kind == "INCONCLUSIVE" and "too few pairs for an interval" in two.describe()
