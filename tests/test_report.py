"""tools/report.py on stored results and baselines: tables, changes, markers, OOM and skipped
cells, summary counts, the article tables round trip, exit codes and bad input."""
import json
import shutil

import pytest

from tests.conftest import REPO, article_tables
from perf import evidence, report

DATA = REPO / "tests" / "data"
RUN1, RUN2 = DATA / "h200-560m-run1.json", DATA / "h200-560m-run2.json"  # two H200 processes
CPU_RESULTS, CPU_STORE = DATA / "cpu-results.json", DATA / "cpu-baselines"  # two CPU runs


def _rows(markdown: str) -> dict:
    """Markdown table rows: {first cell: [other cells]} (the first table only)."""
    rows, seen = {}, False
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith("| Project") and not line.startswith("| ---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
            seen = True
        elif seen and not line.startswith("|"):
            break
    return rows


@pytest.mark.parametrize("index, profile", [(0, "8xA100-80GB"), (1, "4xA100-80GB")])
def test_published_baselines_render_back_to_the_articles_tables(index, profile, capsys):
    assert report.main(["--baseline-only", str(REPO / "baselines" / profile / "bigscience--bloom.json")]) == 0
    rendered = _rows(capsys.readouterr().out)
    table = article_tables()[index]
    assert {row: [c for c in cells if c] for row, cells in rendered.items()} == table["rows"]


def test_run_against_run_uses_both_sides_samples(capsys):
    """Two processes of the same code on the H200: against one process, timing decides nothing, neither
    a change (its +48% in accel_int8 bs=32 was a false REGRESSION before) nor no change, and says why."""
    assert report.main([str(RUN2), "--against", str(RUN1)]) == 0  # --fail-on regression
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "**9 inconclusive**"
    rows = _rows(out)
    assert rows["accelerate int8"] == ["38.44 (+11.3%) 🟡", "6.00 (+16.1%) 🟡", "1.99 (+48.1%) 🟡"]
    assert rows["accelerate bf16"][2] == "0.46 (-9.7%) 🟡"
    assert "<details><summary>🟡 9 inconclusive: why</summary>" in out
    assert "- accelerate int8 bs=32: INCONCLUSIVE +48.1% [+5.8%, +80.8%] host timing not reproducible here (the " \
           "baseline is one process (pool a second with --update-baselines=pool))" in out
    assert "### Time to first token, ms" in out and "### Peak memory, MiB (max over devices)" in out


def test_the_same_code_against_a_single_run_decides_nothing(capsys):
    """The H200's BLOOM-560m run 2 against run 1 alone (same code): the 3 IMPROVEMENTs that timing
    gave before (-13% to -40%) are INCONCLUSIVE, saying that one process is not a baseline."""
    runs = [DATA / "h200-560m-20261130" / f"{part}.json" for part in ("run2", "run2-int8")]
    store = DATA / "h200-560m-20261130" / "run1-baselines"
    assert report.main([*map(str, runs), "--against", str(store)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "**16 inconclusive**"
    for cell in ("accelerate bf16 bs=8", "accelerate bf16 bs=32", "ds-inference fp16 bs=128"):
        line = next(line for line in out.splitlines() if line.startswith(f"- {cell}: "))
        assert ": INCONCLUSIVE -" in line and "host timing not reproducible here (the baseline is one process" in line


@pytest.mark.parametrize("fail_on, code", [("regression", 1), ("inconclusive", 1), ("never", 0)])
def test_exit_status_follows_fail_on(fail_on, code, capsys):
    """One more GEMM a step on the H100 (2026-12-06) against the committed baseline: 4 REGRESSIONs."""
    gemm = DATA / "h100-7b1-hostwork" / "G.json"
    assert report.main([str(gemm), "--against", str(REPO / "baselines"), "--fail-on", fail_on]) == code
    assert report.main([str(RUN1), "--against", str(RUN1), "--fail-on", fail_on]) == (1 if fail_on == "inconclusive" else 0)


def test_against_a_baseline_store_with_skipped_and_oom_cells(tmp_path, capsys):
    results = json.loads(CPU_RESULTS.read_text())
    oom = next(t for t in results["tests"] if t["test"] == "test_ms_per_token" and t["backend"] == "accel_int8"
               and t["batch_size"] == 8)
    oom.update(outcome="oom", ms_per_token=None, reason="out of memory at bs=8")  # as the suite records it
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    out_md = tmp_path / "report.md"
    assert report.main([str(path), "--against", str(CPU_STORE), "--out", str(out_md), "--fail-on", "never"]) == 0
    text = out_md.read_text()
    rows = _rows(text)
    assert rows["accelerate int8"][1] == "OOM 🔴"  # the baseline ran at bs=8
    assert rows["ds-inference fp16"] == ["skipped[^1]", "skipped[^1]"]
    assert "[^1]: ds_fp16: Skipped: ds_fp16: needs CUDA" in text
    assert "1 regression" in text.splitlines()[0] and "2 skipped" in text.splitlines()[0]


def test_a_pinned_run_says_so_and_is_not_compared_with_an_unpinned_baseline(tmp_path, capsys):
    results = json.loads(CPU_RESULTS.read_text())
    results["protocol"]["cpus"] = [1]
    for t in results["tests"]:
        if "protocol" in t:
            t["protocol"]["cpus"] = [1]  # as `--cpus 1` records it
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    assert report.main([str(path), "--against", str(CPU_STORE), "--fail-on", "never"]) == 0
    out = capsys.readouterr().out
    assert "median of 5 cycles; workers pinned to CPU 1." in out.splitlines()[2]
    assert "not comparable" in out.splitlines()[0] and "unchanged" not in out.splitlines()[0]
    assert "cpus [1] here, unpinned in the baseline" in out
    # Half a run pinned and half not is two runs: the files do not merge into one report.
    assert report.main([str(path), str(CPU_RESULTS), "--against", str(CPU_STORE)]) == 2
    assert "are not one run: --cpus 'unpinned' vs [1]. Only files of one run (split over calls with -k) merge: " \
           "report each on its own" in capsys.readouterr().err


def test_a_run_split_over_several_results_files_reports_as_one(tmp_path, capsys):
    # As on a time-limited GPU lease: one run made as two calls with -k, one backend each.
    data = json.loads(RUN2.read_text())
    halves = []
    for i, keep in enumerate((("accel_bf16",), ("accel_int8", "ds_fp16"))):
        half = tmp_path / f"half{i}.json"
        half.write_text(json.dumps({**data, "tests": [t for t in data["tests"] if t["backend"] in keep]}))
        halves.append(str(half))
    assert report.main([str(RUN2), "--against", str(RUN1), "--fail-on", "never"]) == 0
    whole = capsys.readouterr().out
    assert report.main([*halves, "--against", str(RUN1), "--fail-on", "never"]) == 0
    assert capsys.readouterr().out == whole
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**data, "model": "tiny-bloom"}))
    assert report.main([halves[0], str(other)]) == 2
    assert f"{other} and {halves[0]} are not one run: model 'tiny-bloom' vs 'synthetic-bloom-560m'" in capsys.readouterr().err


def test_plot_is_a_png(tmp_path):
    png = tmp_path / "plot.png"
    assert report.main([str(RUN2), "--against", str(RUN1), "--plot", str(png), "--out", str(tmp_path / "r.md"),
                        "--fail-on", "never"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("case, message", [
    ("missing", "cannot read a results file of this suite"),
    ("empty", "not valid JSON (Expecting value: line 1 column 1 (char 0); empty or truncated?), so not a results file"),
    ("other-model", "no baseline for profile 'cpu-amd-epyc-2c' and model 'synthetic-bloom-560m'"),
    ("other-run", "results of model 'tiny-bloom', but RESULTS are 'synthetic-bloom-560m'"),
    ("profile-folder", "holds baseline files itself, as a profile's folder does: give the store, --against "),
    ("article", "but the results are 'synthetic-bloom-560m' on '1xH200' (to put them beside a published table of "
                "other hardware, use --article)"),
])
def test_bad_input_is_one_line_exit_2_and_no_output_file(tmp_path, capsys, case, message):
    results, against = tmp_path / "results.json", None
    if case == "empty":
        results.write_text("")
    elif case == "other-model":  # the 560m run, relabelled as from this CPU, against the CPU store
        data = json.loads(RUN2.read_text())
        data["hardware_profile"] = "cpu-amd-epyc-2c"
        results.write_text(json.dumps(data))
        against = CPU_STORE
    elif case == "other-run":
        shutil.copy(RUN2, results)
        against = CPU_RESULTS
    elif case == "profile-folder":  # one profile's folder where the store's was meant
        shutil.copy(RUN2, results)
        against = REPO / "baselines" / "1xH200"
    elif case == "article":
        shutil.copy(RUN2, results)
        against = REPO / "baselines" / "8xA100-80GB" / "bigscience--bloom.json"
    out = tmp_path / "report.md"
    argv = [str(results), "--out", str(out)] + (["--against", str(against)] if against else [])
    assert report.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and err.startswith("perf-report: ")
    assert not out.exists() and list(tmp_path.iterdir()) in ([], [results])


def test_article_section_puts_each_cell_beside_the_published_one_and_names_a_slice(capsys, tmp_path):
    article = REPO / "baselines" / "8xA100-80GB" / "bigscience--bloom.json"
    results = json.loads(CPU_RESULTS.read_text())
    assert report.main([str(CPU_RESULTS), "--article", str(article)]) == 0
    out = capsys.readouterr().out
    section = out[out.index("### Beside the article (8xA100-80GB)"):]
    rows = _rows(section)
    ours = {t["batch_size"]: t["ms_per_token"] for t in results["tests"]
            if t["test"] == "test_ms_per_token" and t["backend"] == "accel_bf16"}
    assert rows["accelerate bf16"][:2] == [f"{ours[1]:.2f} / 230.38 ({ours[1] / 230.38:.2f}×)",
                                           f"{ours[8]:.2f} / 31.78 ({ours[8] / 31.78:.2f}×)"]
    assert rows["accelerate bf16"][4] == "– / OOM"  # bs=64: the article's OOM, not run here
    assert rows["ds-inference int8"][0].endswith("[^a1]") and "[^a1]: ds_int8: int8 method here" in section
    assert "A slice" not in section
    results["model"] = "synthetic-bloom-176b-8of70layers"
    sliced = tmp_path / "sliced.json"
    sliced.write_text(json.dumps(results))
    assert report.main([str(sliced), "--article", str(article)]) == 0
    assert "**A slice: 8 of 70 blocks**" in capsys.readouterr().out


def test_article_section_says_per_row_how_the_article_spread_its_model_and_how_one_gpu_ran_it(capsys):
    article = REPO / "baselines" / "8xA100-80GB" / "bigscience--bloom.json"
    assert report.main([str(REPO / "tests/data/h100-7b1-hostwork/C.json"), "--article", str(article)]) == 0
    setups = capsys.readouterr().out.split("What a row compares")[1]
    assert setups.startswith(" (the article's 8xA100-80GB; this run: 1 GPU(s)):")
    rows = [line for line in setups.splitlines() if line.startswith("- ")]
    assert [r.split(":")[0] for r in rows] == ["- accelerate bf16", "- ds-inference fp16"]  # the rows run
    assert "one GPU working at a time" in rows[0] and "14.1 GB of weights, every weight read by one GPU" in rows[0]
    assert "tensor parallel" in rows[1] and "world size 1" in rows[1]
    assert "weight bandwidth table" in setups


def test_article_that_is_not_a_baseline_file_is_bad_input(capsys):
    assert report.main([str(CPU_RESULTS), "--article", str(CPU_RESULTS)]) == 2
    assert "cpu-results.json: a results file of this suite, not a baseline file" in capsys.readouterr().err


def test_baseline_only_refuses_what_it_would_ignore(capsys, tmp_path):
    baseline = REPO / "baselines" / "1xH200" / "synthetic-bloom-7b1.json"
    with pytest.raises(SystemExit):
        report.main(["--baseline-only", str(baseline), "--plot", str(tmp_path / "p.png"), str(RUN1)])
    err = capsys.readouterr().err
    assert "drop RESULTS, --plot" in err and not (tmp_path / "p.png").exists()
    assert report.main(["--baseline-only", str(baseline)]) == 0
    assert "| ds-zero bf16 | 250.99 |" in capsys.readouterr().out


def test_baseline_only_says_when_some_kinds_come_from_fewer_runs(capsys, tmp_path):
    """An entry pooled over 2 runs whose first run lacked a kind (an older suite) holds that kind
    from 1 run (provenance.runs_of): the evidence table says so instead of '2 runs' for all."""
    data = json.loads((REPO / "baselines" / "1xH100-80GB-HBM3" / "synthetic-bloom-7b1.json").read_text())
    entry = data["entries"]["accel_bf16"]["bs1"]
    entry["provenance"]["runs_of"] = {"gpu_decode_ms_per_step": 1, "python_calls_per_token": 1}
    path = tmp_path / "synthetic-bloom-7b1.json"
    path.write_text(json.dumps(data))
    assert report.main(["--baseline-only", str(path)]) == 0
    held = capsys.readouterr().out.split("Evidence an entry holds")[1]
    row = next(line for line in held.splitlines() if line.startswith("| accelerate bf16"))
    n = len(evidence.SAMPLED)
    assert f"2 runs, {n}/{n} kinds, 2 of them from fewer runs, kernels" in row
