"""The committed GPU baselines, against runs of the same code on the same kind of GPU. The files
stand for themselves: tests/data/gpu-matrix/NVIDIA-H100-80GB-HBM3 holds three processes of
`pytest perf --model synthetic:bloom-7b1 --batch-sizes 1,8,32 -k test_ms_per_token` on a lent H100
(2026-12-06, scripts/device_matrix.sh): P1 and P2 recorded the baseline, P3 is the same code. P3-ds_int8.json
was stopped by the call's time limit during bs=32 (its third cell unfinished); P3-ds_int8@32.json is that
cell, run alone on the same machine against the same store. zero_bf16 (2026-12-07) ran one batch size a
process (about 180-300 s each): P1-zero_bf16@1/@8/@32, P2-zero_bf16@1/@8/@32, and P3-zero_bf16@1/@8 (its
P3-zero_bf16@32 came on a later machine). bs=128 (2026-12-07, later; one process each, `@128`): P1 and P2 of
accel_bf16, accel_int8, ds_fp16 and ds_int8, and P3 of all but accel_int8 (the device time ran out);
2026-12-07, next session: P3-accel_int8@128, P1/P2/P3-zero_bf16@128 and P1/P2/P3-ds_int8@256 (the article's
one bs=256 figure). Its synthetic-bloom-560m/ folder: P1, P2 and P3 of accel_bf16, ds_fp16, ds_int8 and
accel_int8 at bs 1, 8, 32 and 128, and of zero_bf16 at bs=1 (`@1`: the device time ran out before bs=128)."""
import json

from perf import evidence, record, report
from tests.conftest import REPO

H100 = REPO / "tests" / "data" / "gpu-matrix" / "NVIDIA-H100-80GB-HBM3"
H100_BASELINE = REPO / "baselines" / "1xH100-80GB-HBM3" / "synthetic-bloom-7b1.json"
H100_560M = H100 / "synthetic-bloom-560m"
H100_560M_BASELINE = H100_BASELINE.with_name("synthetic-bloom-560m.json")


BACKENDS = ("accel_bf16", "accel_int8", "ds_fp16", "ds_int8", "zero_bf16")
SIZES = ("bs1", "bs8", "bs32", "bs128")


def test_every_h100_entry_holds_every_kind_of_evidence_a_gpu_run_takes_pooled_from_two_processes():
    recorded = {(b, bs) for b in BACKENDS for bs in SIZES} | {("ds_int8", "bs256")}  # the article's one bs=256 figure
    assert_full_two_process_entries(H100_BASELINE, recorded, parameters=7_069_016_064)


def test_every_h100_560m_entry_holds_every_kind_of_evidence_pooled_from_two_processes():
    recorded = {(b, bs) for b in BACKENDS if b != "zero_bf16" for bs in SIZES} | {("zero_bf16", "bs1")}
    assert_full_two_process_entries(H100_560M_BASELINE, recorded, parameters=559_214_592)


def assert_full_two_process_entries(baseline, recorded, parameters):
    entries = json.loads(baseline.read_text())["entries"]
    assert {(b, bs) for b, es in entries.items() for bs in es} == recorded
    sampled = {kind.key for kind in evidence.SAMPLED}
    for backend, size in recorded:
        entry = entries[backend][size]
        assert entry["provenance"].get("runs", 1) == 2, (backend, size)
        assert set(entry["samples"]) == sampled and all(entry["samples"].values()), (backend, size)
        assert entry["counted"]["breakdowns"] and entry["kernels"] and entry["peak_memory_mb"]
        assert entry["protocol"]["model"]["parameters"] == parameters  # the model it measured


def test_the_same_code_on_the_h100_decides_nothing_and_its_work_is_unchanged(capsys):
    for folder, cells in ((H100, 21), (H100_560M, 17)):
        same_code = sorted(str(path) for path in folder.glob("P3-*.json"))
        assert report.main(same_code + ["--against", str(REPO / "baselines"), "--fail-on", "regression"]) == 0
        out = capsys.readouterr().out
        assert out.splitlines()[0] == f"**{cells} inconclusive**", folder
        verdicts = [line for line in out.splitlines() if line.startswith("- ") and ": INCONCLUSIVE" in line]
        assert len(verdicts) == cells and all("work unchanged; host timing not reproducible here" in v for v in verdicts)


def test_baseline_only_says_what_each_h100_entry_can_decide_on(capsys):
    assert report.main(["--baseline-only", str(H100_BASELINE)]) == 0
    held = capsys.readouterr().out.split("Evidence an entry holds")[1]
    full = f"2 runs, {len(evidence.SAMPLED)}/{len(evidence.SAMPLED)} kinds, kernels, breakdowns"
    rows = [line for line in held.splitlines() if line.startswith("| ") and "Project" not in line and "---" not in line]
    assert [line.count(full) for line in rows] == [4, 4, 4, 5, 4], held  # ds_int8 has bs=256 too


def test_zero_bf16s_second_process_does_exactly_the_work_of_its_first(tmp_path, capsys):
    """Against P1 alone (a one-process store), P2 of zero_bf16 is INCONCLUSIVE with every count the
    same: DeepSpeed ZeRO-3 on one H100 made 447183 Python calls a token at bs=1 in both processes,
    while its wall time moved -21% (at bs=32, -24%)."""
    for size in (1, 8, 32):
        assert record.main(["--baselines", str(tmp_path), str(H100 / f"P1-zero_bf16@{size}.json")]) == 0
    same_code = [str(H100 / f"P2-zero_bf16@{size}.json") for size in (1, 8, 32)]
    assert report.main(same_code + ["--against", str(tmp_path), "--fail-on", "regression"]) == 0
    out = capsys.readouterr().out
    verdicts = [line for line in out.splitlines() if line.startswith("- ds-zero bf16")]
    assert len(verdicts) == 3 and all(": INCONCLUSIVE" in v and "work unchanged; host timing" in v for v in verdicts)
    assert "447183 Python calls per token on both sides" in verdicts[0] and "wall -20.8%" in verdicts[0]


def test_a_cell_left_unfinished_does_not_hide_the_same_cell_run_again(capsys):
    """P3-ds_int8.json's bs=32 has no outcome (the call's limit stopped it); whichever order the two
    files come in, the report judges the finished bs=32 of P3-ds_int8@32.json."""
    for files in (["P3-ds_int8.json", "P3-ds_int8@32.json"], ["P3-ds_int8@32.json", "P3-ds_int8.json"]):
        run = report.read_run([H100 / name for name in files])
        bs32 = [t for t in run["tests"] if t["batch_size"] == 32]
        assert len(bs32) == 1 and bs32[0]["outcome"] == "passed" and bs32[0]["ms_per_token"] > 0, files
    assert capsys.readouterr().err == ""  # an unfinished cell replaced is no news


def test_a_finished_cell_given_twice_says_which_file_is_reported(capsys):
    """Two finished runs of one cell (P1 and P2 of accel_bf16, say) given to one report: the later is
    judged, and one stderr line says so, naming both files and the cells."""
    first, later = H100 / "P1-accel_bf16.json", H100 / "P2-accel_bf16.json"
    report.read_run([first, later])
    assert capsys.readouterr().err == (
        f"perf-report: {first} and {later} both hold 3 finished tests (test_ms_per_token[accel_bf16-bs1], "
        "test_ms_per_token[accel_bf16-bs8], test_ms_per_token[accel_bf16-bs32]): the later file's are reported\n")
