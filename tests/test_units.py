"""Unit tests on known inputs: correctness metrics, option parsing, the summary table."""
import math

import pytest
import torch

from perf.correctness import first_divergence, greedy_agreement, logits_agreement
from perf.results import Results
from perf.settings import Settings, parse_batch_sizes


def test_first_divergence():
    assert first_divergence([1, 2, 3], [1, 2, 3]) == 3
    assert first_divergence([1, 2, 3], [1, 9, 3]) == 1
    assert first_divergence([1, 2, 3], [7, 2, 3]) == 0


def test_greedy_agreement_is_the_mean_matching_fraction():
    got = greedy_agreement([[1, 2, 3, 4], [5, 6, 7, 8]], [[1, 2, 3, 4], [5, 6, 0, 0]])
    assert got == {"first_divergence": [4, 2], "match": 0.75}


def test_logits_agreement_on_known_distributions():
    ref = torch.log(torch.tensor([[0.5, 0.5], [0.9, 0.1]]))
    same = logits_agreement(ref, ref.clone())
    assert same == {"top1": 1.0, "kl": 0.0}
    other = torch.log(torch.tensor([[0.5, 0.5], [0.1, 0.9]]))
    got = logits_agreement(ref, other)
    # KL row 2: 0.9 ln 9 + 0.1 ln(1/9) = 0.8 ln 9; row 1: 0. Mean: 0.4 ln 9.
    assert got["top1"] == 0.5 and math.isclose(got["kl"], 0.4 * math.log(9), rel_tol=1e-5)


def test_parse_batch_sizes_sorts_and_dedups():
    assert parse_batch_sizes("8,1,8") == [1, 8]
    for bad in ("0", "-1", "x", "1,,2", ""):
        with pytest.raises(pytest.UsageError, match="--batch-sizes"):
            parse_batch_sizes(bad)


def _record(results, backend, bs, test="test_ms_per_token", **fields):
    results.records[f"{test}[{backend}-{bs}]"] = {
        "test": test, "backend": backend, "batch_size": bs, "outcome": "passed", "reason": None, **fields}


def test_summary_table_cells():
    results = Results(Settings(model="m", model_name="tiny-bloom", batch_sizes=[1, 8], new_tokens=100,
                               cycles=5, results=None, worker_timeout=1))
    _record(results, "accel_bf16", 1, ms_per_token=12.345)
    _record(results, "accel_bf16", 8, outcome="oom", reason="out of memory at bs=8")
    _record(results, "ds_fp16", 1, outcome="skipped", reason="Skipped: ds_fp16: needs CUDA")
    _record(results, "ds_fp16", 8, outcome="skipped", reason="Skipped: ds_fp16: needs CUDA")
    _record(results, "accel_bf16", None, test="test_greedy_matches_reference", outcome="failed")
    lines = results.table()
    assert lines[1].split() == ["backend", "bs=1", "bs=8", "correctness"]
    assert lines[2].split() == ["accel_bf16", "12.35", "OOM", "FAIL:", "greedy_matches_reference"]
    assert lines[3].split() == ["ds_fp16", "skip", "[1]", "skip", "[1]", "-"]
    assert lines[4] == "[1] Skipped: ds_fp16: needs CUDA"
