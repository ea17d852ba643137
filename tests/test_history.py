"""perf-history: the store keeps every run once and never loses one, the change points are found
where the runs changed and nowhere else, the page shows them, the command refuses bad input.

tests/data/history-cpu holds real `make perf` runs of the CPU machine (docs/notes/2026-12-06-
history-change-points.md): quiet same-code runs, runs with two busy loops on the host, and runs
with more Python work per generate step injected from outside the suite (scripts/inject)."""
import hashlib
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from perf import changepoints, history, trendpage
from tests.conftest import REPO

DATA = REPO / "tests" / "data"
CPU_RUNS = sorted((DATA / "history-cpu").glob("r*.json"))
H200 = sorted((DATA / "h200-7b1").glob("*.json")) + sorted((DATA / "h200-7b1-evidence").glob("*.json"))


def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "perf.history", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)


def snapshot(folder: Path) -> dict:
    """Every file of a folder (but the lock) and its bytes' digest: what 'as it was' means."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


def listed(folder: Path) -> list[str]:
    return [r["file"] for r in json.loads((folder / "index.json").read_text())["runs"]]


def synthetic():
    spec = importlib.util.spec_from_file_location("synthetic_history", REPO / "scripts" / "synthetic_history.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the store --------------------------------------------------------------------------------------
def test_adding_a_run_twice_changes_nothing(tmp_path):
    store = tmp_path / "h"
    first = cli("add", CPU_RUNS[0], CPU_RUNS[1], "--history", store)
    assert first.returncode == 0, first.stderr
    before = snapshot(store)
    again = cli("add", CPU_RUNS[1], CPU_RUNS[0], "--history", store)
    assert again.returncode == 0
    assert again.stdout.count("already in the history") == 2
    assert snapshot(store) == before
    # each file kept byte for byte, listed once
    assert len(listed(store)) == 2
    assert (store / listed(store)[0]).read_bytes() == CPU_RUNS[0].read_bytes()


def test_every_results_schema_the_suite_reads_goes_in(tmp_path):
    schema1 = [DATA / "cpu-results.json", DATA / "h200-7b1" / "run1a.json"]
    schema2 = [DATA / "h200-7b1-evidence" / "same-code.json"]
    assert {json.loads(p.read_text()).get("schema", 1) for p in schema1 + schema2} == {1, 2}
    history.add(tmp_path, schema1 + schema2)
    loaded = {(h.profile, h.model): h for h in history.load(tmp_path)}
    gpu = loaded[("1xH200", "synthetic-bloom-7b1")]
    newest = gpu.nights[-1].cells[("accel_bf16", 1)]
    assert {"ms_per_token", "gpu_decode_ms_per_step", "launches_per_step", "main_cpu_ms_per_token"} \
        <= set(history.samples_of(newest))
    assert set(history.samples_of(gpu.nights[0].cells[("accel_bf16", 1)])) >= {"ms_per_token", "host_probe_ms"}


def test_samples_are_read_from_every_record_shape():
    flat = {"ms_per_token_samples": [1.0, 2.0], "profile": {"aten_ops_per_token_samples": [5.0]}}
    keyed = {"samples": {"ms_per_token": [1.0, 2.0], "aten_ops_per_token": [5.0], "a_new_kind": [3.0]}}
    assert history.samples_of(flat) == {"ms_per_token": [1.0, 2.0], "aten_ops_per_token": [5.0]}
    assert history.samples_of(keyed)["a_new_kind"] == [3.0]


@pytest.mark.parametrize("case, message", [
    ("truncated", "not valid JSON"),
    ("missing", "cannot read the results file: No such file"),
    ("folder", "a folder, where a results file should be"),
    ("not results", "not a results file of this suite"),
    ("other bytes, same run", "another file of the run"),
])
def test_a_bad_file_is_refused_in_one_line_and_the_history_is_left_as_it_was(tmp_path, case, message):
    store = tmp_path / "h"
    assert cli("add", CPU_RUNS[0], "--history", store).returncode == 0
    before = snapshot(store)
    bad = tmp_path / "bad.json"
    text = CPU_RUNS[1].read_text()
    if case == "truncated":
        bad.write_text(text[: len(text) // 2])
    elif case == "folder":
        bad.mkdir()
    elif case == "not results":
        bad.write_text('{"entries": {}}')
    elif case == "other bytes, same run":
        bad.write_text(CPU_RUNS[0].read_text().replace('"passed"', '"failed"', 1))
    done = cli("add", CPU_RUNS[1], bad, "--history", store)  # a good file first: not added either
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("perf-history: ") and message in done.stderr
    assert str(bad) in done.stderr
    assert snapshot(store) == before


KILLER = textwrap.dedent("""
    # A real `perf-history add` that SIGKILLs itself at the Nth file write (stands for a kill,
    # an out-of-memory kill or a power cut at that moment); `half`: in the middle of that write.
    import os, signal, sys
    from perf import files, history
    at, half = int(sys.argv[1]), sys.argv[2] == "half"
    calls, write = [0], files.write_atomically

    def dying(path, text):
        calls[0] += 1
        if calls[0] == at:
            if half:
                with open(path.with_name(f".{path.name}.{os.getpid()}.tmp"), "w") as f:
                    f.write(text[: len(text) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        write(path, text)

    files.write_atomically = dying
    sys.exit(history.main(sys.argv[3:]))
""")


@pytest.mark.parametrize("at, half", [(1, False), (2, True), (3, False), (4, True)])
def test_killing_add_midway_leaves_the_history_as_it_was(tmp_path, at, half):
    store = tmp_path / "h"
    assert cli("add", CPU_RUNS[0], "--history", store).returncode == 0
    before, runs_before = snapshot(store), listed(store)
    new = CPU_RUNS[1:4]  # three run files, then the index: writes 1-4
    killed = subprocess.run([sys.executable, "-c", KILLER, str(at), "half" if half else "whole", "add", *map(str, new),
                             "--history", str(store)], capture_output=True, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    assert listed(store) == runs_before
    assert {k: v for k, v in snapshot(store).items() if k in before} == before  # nothing stored changed
    assert len(history.load(store)[0].nights) == 1
    # the same add again completes, whatever the killed one left behind
    assert cli("add", *new, "--history", store).returncode == 0
    assert len(listed(store)) == 4 and len(history.load(store)[0].nights) == 4


# -- change points ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cpu_history(tmp_path_factory) -> history.History:
    store = tmp_path_factory.mktemp("cpu")
    history.add(store, CPU_RUNS)
    (found,) = history.load(store)
    return found


def test_the_injected_python_work_is_found_at_the_run_it_began_and_ended_and_nowhere_else(cpu_history):
    """tests/data/history-cpu: r09-r12 ran with PERF_INJECT=py-work:200 (200 more small calls per
    generate step), r04-r06 beside two busy loops; before r07 the venv got scipy (ruptures'), which
    transformers then imports: 40 MB more peak RSS in every worker."""
    how = [_source(n) for n in cpu_history.nights]
    injected = [i for i, h in enumerate(how) if "injected" in h]
    environment = [i for i, h in enumerate(how) if "environment" in h]
    found = changepoints.changes(cpu_history)
    ops = [c for c in found if c.kind.key == "aten_ops_per_token"]
    assert sorted((c.after, c.batch_size) for c in ops) == [(injected[0], 1), (injected[0], 8),
                                                            (injected[-1] + 1, 1), (injected[-1] + 1, 8)]
    assert all(c.before == c.after - 1 and c.low is None for c in ops)  # exact, no interval
    # These runs predate the counted cycles' breakdowns: a count change is reported, not decided
    # (as a verdict treats an entry without them); with them it is named and costed (next test).
    up = {c.batch_size: c for c in ops if c.after == injected[0]}
    assert up[1].regression and not up[1].decided and up[1].new - up[1].old == pytest.approx(1000)  # 200 calls x 5 operators, bs=1
    assert up[8].new - up[8].old == pytest.approx(125)  # the same per step, over 8 rows
    assert all(not c.regression for c in ops if c.after == injected[-1] + 1)
    others = [c for c in found if c not in ops]
    assert all(c.kind.key == "peak_memory_mb" and c.after in environment and c.regression for c in others), others


def _injected(path: Path) -> bool:
    sources = json.loads((DATA / "history-cpu" / "sources.json").read_text())
    return "injected" in sources[json.loads(path.read_text())["started"]]


def _source(night) -> dict:
    return json.loads((DATA / "history-cpu" / "sources.json").read_text())[night.started]


def test_a_busy_stretch_is_no_change_point(cpu_history):
    busy = [i for i, n in enumerate(cpu_history.nights) if "busy" in _source(n)]
    cell = ("accel_bf16", 1)
    assert busy and all(changepoints.busy_reason(cpu_history.nights[i].cells[cell]) for i in busy)
    walls = [statistics.median(history.samples_of(n.cells[cell])["ms_per_token"]) for n in cpu_history.nights]
    assert max(walls[i] for i in busy) > 10 * min(walls)  # wall time rose tenfold and more there
    assert not [c for c in changepoints.changes(cpu_history) if c.kind.role == changepoints.TIMING]


def test_a_step_and_a_drift_in_resampled_nights_are_found_at_their_nights_and_nothing_else(tmp_path):
    """A smaller version of scripts/synthetic_history.py's 60 nights: 40 nights drawn from the quiet
    same-code runs, 1% a night slower over nights 8-16, 15% slower from night 28."""
    sources = json.loads((DATA / "history-cpu" / "sources.json").read_text())
    changed = min(started for started, how in sources.items() if "environment" in how)
    runs = [json.loads(p.read_text()) for p in CPU_RUNS]
    quiet = [r for r in runs if r["started"] < changed and set(sources[r["started"]]) == {"run"} and not any(
        changepoints.busy_reason(t) for t in r["tests"] if t.get("ms_per_token"))]  # same code, same venv, quiet
    assert len(quiet) >= 2
    made = synthetic().nights(quiet, 40, seed=3, step_at=28, step=0.15, drift_from=8, drift_to=16, drift=0.01)
    folder = tmp_path / "nights"
    folder.mkdir()
    for i, run in enumerate(made, 1):
        (folder / f"night-{i:02d}.json").write_text(json.dumps(run))
    history.add(tmp_path / "h", sorted(folder.glob("*.json")))
    (h,) = history.load(tmp_path / "h")
    found = [c for c in changepoints.changes(h) if c.kind.key == "ms_per_token"]
    nights = sorted({(c.before + 1, c.after + 1) for c in found})  # 1-based, as the page shows them
    assert any(a == 28 for _, a in nights), nights
    assert any(7 <= b and a <= 18 for b, a in nights), nights
    assert all(a == 28 or (7 <= b and a <= 18) for b, a in nights), nights
    assert all(c.regression for c in found)


def test_a_new_kernel_is_named_and_the_gpu_history_reads_every_schema(tmp_path):
    history.add(tmp_path, H200)
    (h,) = history.load(tmp_path)
    found = changepoints.changes(h)
    up = [c for c in found if c.kind.key == "launches_per_step" and c.regression]
    assert up and all("nvjet" in c.detail and c.low is None for c in up)


def test_a_costly_count_change_names_what_grew_and_decides(tmp_path):
    """tests/data/h100-7b1-hostwork: H100 runs with and without PERF_INJECT=python-work (counted
    cycles with breakdowns by function)."""
    runs = sorted((DATA / "h100-7b1-hostwork").glob("*.json"))
    with pytest.raises(history.HistoryError, match="AB.json: a side-by-side run"):  # not a night
        history.add(tmp_path, runs)
    history.add(tmp_path, [run for run in runs if run.name != "AB.json"])
    (h,) = history.load(tmp_path)
    calls = [c for c in changepoints.changes(h) if c.kind.key == "python_calls_per_token"]
    assert calls and all("extra_python_work" in c.detail and "estimated cost" in c.detail for c in calls)
    assert any(c.regression and c.decided for c in calls)


# -- the command ------------------------------------------------------------------------------------
def test_changes_text_markdown_since_new_and_fail_on(tmp_path):
    store = tmp_path / "h"
    assert cli("add", *CPU_RUNS, "--history", store).returncode == 0
    text = cli("changes", "--history", store)
    assert text.returncode == 0 and "REGRESSION" in text.stdout and "aten ops" in text.stdout
    assert "between night" in text.stdout and "commits" not in text.stdout.split("\n")[0]
    md = cli("changes", "--history", store, "--markdown", "--fail-on", "regression")
    assert md.returncode == 1 and "| 🔴" in md.stdout
    late = cli("changes", "--history", store, "--since", "2100-01-01", "--fail-on", "regression")
    assert late.returncode == 0 and late.stdout.startswith("0 change points")
    assert "aten ops" not in cli("changes", "--history", store, "--new").stdout  # brought nights ago
    # the night the injected work arrived, as the nightly sees it: --new names it, and fails on it
    upto = tmp_path / "upto"
    first = next(i for i, p in enumerate(CPU_RUNS) if _injected(p))
    assert cli("add", *CPU_RUNS[: first + 1], "--history", upto).returncode == 0
    tonight = cli("changes", "--history", upto, "--new", "--fail-on", "regression")
    assert "REGRESSION (not decided)" in tonight.stdout and "aten ops" in tonight.stdout
    # and the peak memory step of r07 (scipy), confirmed by the nights since, is new tonight: it fails
    assert tonight.returncode == 1 and "peak memory" in tonight.stdout
    assert f"and night {first + 1} (" in tonight.stdout


@pytest.mark.parametrize("args, message", [
    (["changes"], "no history here"),
    (["changes", "--since", "deadbeef"], "no night of the history has a commit"),
    (["page"], "the following arguments are required: --out"),
    (["bogus"], "invalid choice: 'bogus'"),
    (["export", "--out", "/proc/no/such/dir/x.csv"], "folder /proc/no/such/dir does not exist"),
    (["export", "--out", "."], "a folder; give a file path inside it, e.g. --out history.csv"),
    (["changes", "--since", "2026-13-45"], "--since 2026-13-45: no such date"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    store = tmp_path / ("h" if args[0] in ("changes", "bogus") and len(args) == 1 else "g")
    if store.name == "g":
        history.add(store, CPU_RUNS[:2])
    done = cli(*args, "--history", store)
    assert done.returncode == 2 and message in done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("perf-history")


def test_the_default_history_is_perf_history_in_the_checkouts_top(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "sub").mkdir()
    assert cli("add", CPU_RUNS[0], cwd=tmp_path / "sub").returncode == 0
    assert (tmp_path / "perf-history" / "index.json").exists()


def test_export_is_one_row_per_night_and_one_column_per_cell_and_evidence(tmp_path):
    history.add(tmp_path / "h", CPU_RUNS)
    done = cli("export", "--history", tmp_path / "h")
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and len(lines) == 1 + len(CPU_RUNS)
    assert lines[0].startswith("time,commit,profile,model,") and "accel_bf16.bs1.ms_per_token" in lines[0]


# -- the page ----------------------------------------------------------------------------------------
def test_the_page_has_a_chart_per_cell_the_change_points_the_nights_and_a_published_line(tmp_path):
    store = tmp_path / "h"
    history.add(store, CPU_RUNS)
    (h,) = history.load(store)
    # A baseline store holding a published entry for this profile and model (a test double for the
    # article's file, which is for 8xA100-80GB and bigscience/bloom).
    article = json.loads((REPO / "baselines" / "8xA100-80GB" / "bigscience--bloom.json").read_text())
    article.update(profile=h.profile, model=h.model)
    article["entries"] = {"accel_bf16": {"bs1": {**article["entries"]["accel_bf16"]["bs1"], "ms_per_token": 2.5}}}
    (tmp_path / "b" / h.profile).mkdir(parents=True)
    (tmp_path / "b" / h.profile / f"{h.model}.json").write_text(json.dumps(article))
    out = tmp_path / "page.html"
    done = cli("page", "--history", store, "--out", out, "--baselines", tmp_path / "b")
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    assert "<script" not in page and "http" not in page.replace("http://www.w3.org", "")  # nothing fetched
    cells = h.cells()
    assert page.count('class="cell"') == len(cells)
    assert page.count("<svg") == 2 * len(cells)  # ms/token and the work beside it
    assert page.count('class="change"') >= 2 and "aten ops" in page
    night = h.nights[-1]
    assert f"night {len(h.nights)}: {night.started}" in page and f"commit {night.commit}" in page
    assert page.count('class="reference"') == 1 and "DailyGlimpse" in page


def test_an_empty_history_page_says_how_to_fill_it():
    assert "perf-history add" in trendpage.render([])


def test_a_run_of_another_protocol_or_another_model_does_not_join_a_history(tmp_path):
    night = DATA / "cpu-hostwork" / "C.json"
    history.add(tmp_path, [night])
    before = snapshot(tmp_path)
    for change, message in ((lambda d: d["protocol"].update(new_tokens=12), "new tokens 12 vs 100"),
                            (lambda d: d["model_identity"].update(layers=6, weights="0" * 12),
                             "another model under one name: 6 layers")):
        data = json.loads(night.read_text())
        change(data)
        data["started"] = "2026-12-07T02:00:00+00:00"
        later = tmp_path.parent / f"{tmp_path.name}-later.json"
        later.write_text(json.dumps(data))
        with pytest.raises(history.HistoryError, match=f"does not continue the history .*{message}"):
            history.add(tmp_path, [later])
    assert snapshot(tmp_path) == before


def test_a_full_disk_during_add_is_one_line_and_the_history_is_as_it_was(tmp_path, monkeypatch, capsys):
    store = tmp_path / "h"
    history.add(store, CPU_RUNS[:1])
    before = snapshot(store)

    def full(path, text):  # stands for a file system without room (ENOSPC)
        raise OSError(28, "No space left on device", str(path))
    monkeypatch.setattr(history.files, "write_atomically", full)
    assert history.main(["add", str(CPU_RUNS[1]), "--history", str(store)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device; the history is as it was" in err
    assert snapshot(store) == before


def test_out_inside_the_history_or_a_damaged_stored_run_is_one_line_and_changes_nothing(tmp_path, capsys):
    store = tmp_path / "h"
    history.add(store, CPU_RUNS[:2])
    before = snapshot(store)
    for verb in ("export", "page"):
        assert history.main([verb, "--history", str(store), "--out", str(store / "index.json")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "inside the --history folder" in err
    assert snapshot(store) == before
    stored = store / listed(store)[0]
    stored.write_text(stored.read_text()[:500])  # a bad merge of the history branch
    assert history.main(["changes", "--history", str(store)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{stored}: not valid JSON" in err
