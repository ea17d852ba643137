"""Issue 26's CPU rows, on real runs: `pytest perf` on the embedded model, the 2-core Intel Xeon VM,
2026-12-06 (tests/data/cpu-hostwork; docs/notes/2026-12-06-cpu-host-work.md). R1 recorded and R2
pooled the baseline on a quiet host; S3 is the same code with two busy loops on both cores, S4 the
same code on a quiet host; A, B2 and C are injected from outside the suite's code
(scripts/inject/sitecustomize.py): A python-work:0.10, B2 host-sleep:1.0, C the same code with a
busy loop pinned to CPU 0."""
import pytest

from perf import record, report
from tests.conftest import REPO

RUNS = REPO / "tests" / "data" / "cpu-hostwork"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("store")
    assert record.main([str(RUNS / "R1.json"), "--baselines", str(path)]) == 0
    assert record.main([str(RUNS / "R2.json"), "--baselines", str(path), "--pool"]) == 0
    return path


def regressions(run: str, store, capsys) -> tuple[str, list[str]]:
    """perf-report's summary line of a run against the store, and its REGRESSION verdict lines."""
    capsys.readouterr()
    report.main([str(RUNS / f"{run}.json"), "--against", str(store), "--fail-on", "never"])
    lines = capsys.readouterr().out.splitlines()
    return lines[0], [line for line in lines if line.startswith("- verdict: REGRESSION")]


@pytest.mark.parametrize("run", ["S3", "S4", "C"])
def test_the_same_code_is_never_a_regression_or_an_improvement(run, store, capsys):
    summary, _ = regressions(run, store, capsys)
    assert "regression" not in summary and "improvement" not in summary, summary
    # S4's host was quiet, but its probe still ranged 7% to 16% against the baseline's: not steady
    # enough for timing to say NO CHANGE either (docs/verdicts.md)
    assert summary == "**8 inconclusive, 2 skipped**"


def test_more_python_work_per_step_is_a_regression_in_every_cell_naming_the_function(store, capsys):
    summary, verdicts = regressions("A", store, capsys)
    assert summary == "**8 regressions, 2 skipped**" and len(verdicts) == 8 and all("work grew" in v and "sitecustomize.py:extra_python_work" in v for v in verdicts)


def test_a_sleep_as_long_as_each_generate_is_a_regression_that_says_waited(store, capsys):
    summary, verdicts = regressions("B2", store, capsys)
    assert summary == "**8 regressions, 2 skipped**" and len(verdicts) == 8 and all("waited: off-CPU +" in v for v in verdicts)
