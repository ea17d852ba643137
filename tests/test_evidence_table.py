"""Every kind of evidence in perf.evidence's table travels the whole way: the worker's replies ->
the record (perf.figures) -> the baseline entry (perf.baselines, its schema) -> the verdict's
evidence map (perf.verdicts) -> the terminal table and the markdown report (perf.table,
perf.report). The replies here stand for what perf.worker sends (a timed cycle, a first token, a
profiled cycle on a GPU or on a CPU); every measured figure of the "changed" run is twice the base's.
"""
import pytest

from perf import baselines, evidence, figures, report, table, verdicts
from perf.protocol import SPEED_TEST

PROTOCOL = {"new_tokens": 100, "world_size": 1}
FINGERPRINT = {"device_count": 1, "devices": ["GPU"], "versions": {}, "git_commit": "c"}


def _replies(factor: float, gpu: bool) -> dict:
    """What a worker replies for one cell: 5 timed cycles, 5 first tokens, 2 profiled cycles."""
    cycles = [{"seconds": 2.0 * factor * (1 + i / 100), "new_tokens": 100, "host_probe_ms": 6.0,
               "main_cpu_s": 1.8 * factor * (1 + i / 100), "process_cpu_s": 2.2 * factor, "cpus": 2,
               "run_queue_wait_s": 0.01 * factor, "other_cpu_s": 0.02 * factor} for i in range(5)]
    first = [{"seconds": 0.05 * factor} for _ in range(5)]
    python = {"activity": "count", "counted": True, "new_tokens": 100, "steps": 100, "seconds": 3.0 * factor,
              "generate_seconds": 3.0 * factor,
              "python": {"generate": [100, 5.0], "forward": [int(1000 * factor), 2000.0 * factor]}}
    dispatch = {**python, "aten": {"aten::mm": [int(3000 * factor), 900.0 * factor]}}
    del dispatch["python"]
    profiled = [python, dispatch]  # the host's work, by name
    if gpu:
        phase = lambda ms, n: {"kernel_ms": ms * factor, "memcpy_ms": ms / 10 * factor, "memset_ms": ms / 20 * factor,  # noqa: E731
                               "launches": int(n * factor), "kernels": {"gemm": (int(n * factor), ms * factor)}}
        profiled += [{"activity": "cuda", "decode_steps": 99, "new_tokens": 100, "seconds": 3.0, "steps": 100,
                      "prefill": phase(9.0, 30), "decode": phase(495.0 * (1 + i / 1000), 2970)} for i in range(2)]
        dispatch.update(syncs={"cudaStreamSynchronize": [int(100 * factor), 500.0 * factor]},
                        allocs={"cudaMalloc": [int(10 * factor), 300.0 * factor]},
                        copies={"Memcpy DtoH": [int(100 * factor), 400.0 * factor]})
    return {"timed": cycles, "ttft": first, "profiled": profiled}


def _record(factor: float, gpu: bool) -> dict:
    replies = _replies(factor, gpu)
    memory = {"per_device_mb": [1000.0 * factor]}
    rec = figures.speed_figures(replies["timed"], replies["ttft"], memory, replies["profiled"],
                                {"weight_bytes": 1e9}, 1000.0, 100)
    return {**rec, "test": SPEED_TEST, "nodeid": f"perf/test_bloom.py::{SPEED_TEST}[b-bs1]", "backend": "accel_bf16",
            "batch_size": 1, "outcome": "passed", "protocol": PROTOCOL}


def _gpu_for(kind) -> bool:
    """Which machine measures this kind: a GPU's profiled cycles, or a CPU's."""
    on_gpu = [kind.read(reply) for reply in _replies(1, gpu=True)["profiled"]]
    on_cpu = [kind.read(reply) for reply in _replies(1, gpu=False)["profiled"]]
    return kind.source not in (evidence.PROFILED, evidence.COUNTED) or any(v is not None for v in on_gpu) and \
        not any(v is not None for v in on_cpu)


@pytest.mark.parametrize("kind", list(evidence.KINDS.values()), ids=lambda k: k.key)
def test_every_kind_travels_from_the_worker_to_the_report(kind):
    gpu = _gpu_for(kind)
    base_record, changed = _record(1.0, gpu), _record(2.0, gpu)
    # worker -> record: one sample per reply of its source (the run's peak memory: the record's)
    if kind.source != evidence.RUN:
        assert len(base_record["samples"][kind.key]) == {evidence.CYCLE: 5, evidence.FIRST_TOKEN: 5,
                                                         evidence.PROFILED: 2, evidence.COUNTED: 1}[kind.source]
    if kind.breakdown:  # and by name, in the record's profile
        assert base_record["profile"]["counted"]["breakdowns"][kind.key]
    # record -> baseline entry, valid under the schema the table makes
    entries = baselines.entries_from([base_record], FINGERPRINT, "1xGPU")["1xGPU"]
    entry = entries["accel_bf16"]["bs1"]
    baselines.validate({"schema": baselines.SCHEMA, "profile": "1xGPU", "model": "m", "entries": entries}, "mem")
    if kind.source != evidence.RUN:
        assert entry["samples"][kind.key] == base_record["samples"][kind.key]
    # entry -> verdict: a compared kind is in the evidence map, under its key, with its label
    verdict = verdicts.judge({**entry, "provenance": {**entry["provenance"], "runs": 2}}, changed, PROTOCOL)
    if kind.compare:
        assert verdict.evidence[kind.key].label == kind.label
        assert verdict.evidence[kind.key].kind != verdicts.NO_CHANGE  # twice the work, the time, the memory
    elif kind.role == evidence.LOAD:  # judged through the busy-host rule
        assert kind.busy(10.0, 2) and verdicts.host_busy({kind.key: [10.0] * 5}, 2)
    # verdict -> tables: the kinds the table shows, in the terminal and in the markdown report
    changed.update(verdict.record_fields())
    terminal = "\n".join(table.terminal_table([changed], "m", 100, 5))
    run = {"tests": [changed], "model": "m", "hardware_profile": "1xGPU", "protocol": {**PROTOCOL, "cycles": 5},
           "fingerprint": {**FINGERPRINT, "devices": ["GPU"]}}
    markdown, _, _ = report.render(run, {"accel_bf16": {"bs1": entry}}, "a test")
    if kind.show:
        assert (kind.show.title in terminal) == (not kind.show.report_only)
        assert kind.show.title in markdown
    if kind.compare:
        assert f"- {kind.label}: " in markdown or verdict.kind != verdicts.REGRESSION  # a regression's evidence listed


def test_the_table_is_the_schema_and_old_files_map_onto_it():
    """The baseline schema's samples are the table's keys; a schema-2 record's `<key>_samples` and
    label-keyed evidence read into samples[key] and key-keyed evidence."""
    from perf.schema import Samples
    assert set(Samples.model_fields) == {k.key for k in evidence.SAMPLED}
    old = {"test": SPEED_TEST, "ms_per_token_samples": [1.0], "profile": {"gpu_decode_ms_per_step_samples": [5.0],
                                                                        "kernels": {}},
           "evidence": {"wall": {"kind": "NO CHANGE"}, "GPU kernel time": {"kind": "NO CHANGE"}}}
    new = evidence.upgrade_record(old)
    assert new["samples"] == {"ms_per_token": [1.0], "gpu_decode_ms_per_step": [5.0]}
    assert new["profile"] == {"kernels": {}} and set(new["evidence"]) == {"ms_per_token", "gpu_decode_ms_per_step"}
    assert new["evidence"]["ms_per_token"]["label"] == "wall"
