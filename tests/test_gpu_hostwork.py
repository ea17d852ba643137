"""Issue 26's GPU rows on real runs: `pytest perf --model synthetic:bloom-7b1 --batch-sizes 1,8 -k
"test_ms_per_token and BACKEND"` on a lent NVIDIA H200, 2026-12-06 (scripts/device_matrix.sh;
tests/data/gpu-matrix/NVIDIA-H200; docs/notes/2026-12-06-h200-host-work.md). P1 and P2 recorded the
baseline; F and G are injected from outside the suite's code (scripts/inject/sitecustomize.py):
F python-work:0.10, G2200/G2800/G3300 gpu-matmul:N (one more N x N GEMM a step)."""
import re

import pytest

from perf import record, report
from tests.conftest import REPO

RUNS = REPO / "tests" / "data" / "gpu-matrix" / "NVIDIA-H200"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("store")
    for phase, pool in (("P1", []), ("P2", ["--pool"])):
        assert record.main([str(RUNS / f"{phase}-accel_bf16.json"), str(RUNS / f"{phase}-ds_fp16.json"),
                            "--baselines", str(path), *pool]) == 0
    return path


def verdicts(runs: list[str], against, capsys) -> tuple[str, list[str]]:
    """perf-report's summary line of the runs against `against`, and its verdict lines."""
    capsys.readouterr()
    report.main([str(RUNS / f"{run}.json") for run in runs] + ["--against", str(against), "--fail-on", "never"])
    lines = capsys.readouterr().out.splitlines()
    return lines[0], [line for line in lines if line.startswith("- verdict: ") or re.match(r"- .* bs=\d+: ", line)]


def test_the_second_process_against_the_first_decides_nothing_and_its_work_is_unchanged(tmp_path, capsys):
    assert record.main([str(RUNS / "P1-accel_bf16.json"), str(RUNS / "P1-ds_fp16.json"), "--baselines", str(tmp_path)]) == 0
    summary, lines = verdicts(["P2-accel_bf16", "P2-ds_fp16"], tmp_path, capsys)
    assert summary == "**4 inconclusive**" and len(lines) == 4  # wall -31.5% in accel_bf16 bs=1: no IMPROVEMENT
    assert all("work unchanged; host timing not reproducible here" in line for line in lines)


@pytest.mark.parametrize("run", ["F-accel_bf16", "F-ds_fp16"])  # not "backend": the suite's own parameter
def test_more_python_work_per_step_is_a_regression_in_every_cell_naming_the_function(run, store, capsys):
    summary, lines = verdicts([run], store, capsys)
    assert summary == "**2 regressions**" and len(lines) == 2
    assert all("work grew" in line and "sitecustomize.py:extra_python_work" in line for line in lines)


def test_one_more_gemm_a_step_is_a_regression_naming_its_kernel_from_a_percent_up(store, capsys):
    summary, lines = verdicts(["G2800-ds_fp16"], store, capsys)  # +1.2% and +1.1%
    assert summary == "**2 regressions**" and len(lines) == 2
    assert all("grew: nvjet_sm90_hsh_128x240" in line for line in lines)
    summary, lines = verdicts(["G3300-accel_bf16"], store, capsys)  # cuBLAS picks an sm80 kernel: +7.0%, +5.7%
    assert summary == "**2 regressions**" and len(lines) == 2
    assert all("grew: cutlass::Kernel2<cutlass_80_tensorop" in line for line in lines)
    summary, lines = verdicts(["G2800-accel_bf16"], store, capsys)  # +1.2%, and +1.0% on the threshold
    assert summary == "**1 regression, 1 inconclusive**"


def test_a_gemm_below_the_threshold_is_reported_by_name_not_failed(store, capsys):
    summary, lines = verdicts(["G2200-accel_bf16"], store, capsys)  # +0.7%, +0.6%: one more launch a step
    assert summary == "**2 inconclusive**" and len(lines) == 2
    assert all("launches per decode step (baseline" in line and "kernels changed: decode: +nvjet_sm90_tst" in line
               for line in lines)
    assert all("GPU work changed within the threshold (" in line for line in lines)  # not "unchanged"
