"""Nothing lost, nothing misleading (issue 27's table, row by row): torn history lines, outputs
that would overwrite inputs, baselines recorded on a busy host, which model an entry measured, runs
that do not mix, messages that point at real files, and flags that do nothing in a run."""
import json
import os
from pathlib import Path

import pytest

from perf import baselines, files, record
from tests.conftest import REPO
from tests.test_bad_input import tmpfs
from tests.test_evidence import entry

DATA = REPO / "tests" / "data"


# -- 1. append-only files survive a torn tail --------------------------------------------------------
def _history(path):
    return path.with_name(f"{path.stem}.history.jsonl")


def _replace_twice(path) -> None:
    """A baseline file with one replaced entry in its history (one whole line)."""
    baselines.update(path, "p", "m", {"a": {"bs1": entry(runs=1)}})
    baselines.update(path, "p", "m", {"a": {"bs1": entry(runs=1)}})


def test_a_torn_last_history_line_is_set_aside_and_never_glued_to_the_next_record(tmp_path):
    path = tmp_path / "p" / "m.json"
    _replace_twice(path)
    history = _history(path)
    whole = history.read_bytes()
    history.write_bytes(whole + whole[:57])  # a crash in the middle of the next append
    notes = baselines.update(path, "p", "m", {"a": {"bs1": entry(runs=1)}})
    assert notes == ["replaced a/bs1", f"{history}: its last line was torn (57 bytes, an append cut short); moved "
                                       f"to {history}.torn, and the history goes on after its last whole line"]
    lines = history.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line)["entry_key"] == "bs1" for line in lines)
    assert (tmp_path / "p" / "m.history.jsonl.torn").read_bytes() == whole[:57] + b"\n"


def test_a_history_line_that_only_lacks_its_newline_is_kept_as_it_is(tmp_path):
    path = tmp_path / "p" / "m.json"
    _replace_twice(path)
    history = _history(path)
    history.write_bytes(history.read_bytes().rstrip(b"\n"))  # e.g. edited by hand, or a merge
    assert baselines.update(path, "p", "m", {"a": {"bs1": entry(runs=1)}}) == ["replaced a/bs1"]
    lines = history.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line)["entry_key"] == "bs1" for line in lines)
    assert not history.with_name(history.name + ".torn").exists()


def test_a_history_of_one_torn_line_is_set_aside_whole(tmp_path):
    log = tmp_path / "h.jsonl"
    log.write_bytes(b'{"replaced": "2026-')
    appended = files.append_lines(log, ['{"b": 1}'])
    assert "moved to" in appended.repaired
    assert log.read_text() == '{"b": 1}\n' and (tmp_path / "h.jsonl.torn").read_text() == '{"replaced": "2026-\n'


def test_perf_record_baselines_says_it_set_a_torn_line_aside(tmp_path, capsys):
    store = tmp_path / "store"
    assert record.main([str(DATA / "cpu-results.json"), "--baselines", str(store), "--force"]) == 0
    history = next(store.glob("*/*.json")).with_suffix("").with_suffix(".history.jsonl")
    history.write_text('{"replaced": "2026-12-01T00:00:00+00:00", "backend": "accel_b')
    capsys.readouterr()
    assert record.main([str(DATA / "cpu-results.json"), "--baselines", str(store), "--force"]) == 0
    out = capsys.readouterr().out
    assert f"{history}: its last line was torn" in out and "moved to" in out
    assert all(json.loads(line) for line in history.read_text().splitlines())


def test_a_torn_line_that_cannot_be_set_aside_stops_the_update_and_changes_nothing(tmp_path):
    with tmpfs(tmp_path / "full", "size=64k") as disk:
        path = disk / "p" / "m.json"
        _replace_twice(path)
        history = _history(path)
        history.write_bytes(history.read_bytes() + b'{"replaced": "20')
        before = {p.name: p.read_bytes() for p in path.parent.iterdir()}
        _fill(disk / "filler")
        with pytest.raises(OSError) as error:
            baselines.update(path, "p", "m", {"a": {"bs1": entry(runs=1)}})
        assert f"the last line of {history} is torn" in str(error.value) and "could not be set aside" in str(error.value)
        assert {p.name: p.read_bytes() for p in path.parent.iterdir() if p.name != "m.history.jsonl.torn"} == before


def _fill(path) -> None:
    """Write to `path` until the file system is full."""
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"x" * 1024)
        except OSError:
            pass


# -- 2. no output is an input; one writer per results file ---------------------------------------------
ACCEL = ["-k", "accel_bf16 and ms_per_token", "--batch-sizes", "1"]


def _usage(run, message: str):
    assert run.result.ret == pytest.ExitCode.USAGE_ERROR, run.result.stdout.str()[-2000:]
    pytest.LineMatcher(run.result.stderr.lines + run.result.stdout.lines).fnmatch_lines([message])
    assert run.loads() == []


@pytest.mark.parametrize("target, message", [
    ("store/cpu-x/tiny-bloom.json", "*--results *store/cpu-x/tiny-bloom.json: inside the baseline store *store, whose "
                                    "profile folders hold only baseline files*write elsewhere*"),
    ("store/cpu-x/tiny-bloom.history.jsonl", "*--results *tiny-bloom.history.jsonl: inside the baseline store*"),
    ("store/cpu-x/tiny-bloom.json.lock", "*--results *tiny-bloom.json.lock: inside the baseline store*"),
    ("model/config.json", "*--results *model/config.json: inside the --model folder (*model), an input of this command*"),
    ("hostfile", "*--results *hostfile: that is the --hostfile, an input of this command; writing there would replace it*"),
    ("elsewhere/tiny-bloom.json", "*--results *elsewhere/tiny-bloom.json: holds a baseline file of this suite; writing "
                                  "there would replace it*"),  # a baseline outside this run's --baselines
    ("notes.md", "*--results *notes.md: holds a file that is not a results file of this suite; writing there would "
                 "replace it. Give another path, or move that file away first*"),
])
def test_a_results_path_that_is_an_input_or_a_store_file_is_refused_before_any_load(run_perf, tmp_path, target, message):
    import shutil
    from perf.protocol import EMBEDDED_MODEL
    store = tmp_path / "store" / "cpu-x"
    store.mkdir(parents=True)
    baseline = store / "tiny-bloom.json"
    baseline.write_text('{"schema": 2, "profile": "cpu-x", "model": "tiny-bloom", "entries": {}}')
    (tmp_path / "elsewhere").mkdir()
    shutil.copy(baseline, tmp_path / "elsewhere" / "tiny-bloom.json")
    shutil.copytree(EMBEDDED_MODEL, tmp_path / "model")
    (tmp_path / "hostfile").write_text("localhost slots=1\n")
    (tmp_path / "notes.md").write_text("# a file of the user's, named by mistake\n")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    run = run_perf(*ACCEL, "--results", str(tmp_path / target), "--baselines", str(tmp_path / "store"),
                   "--hardware", "cpu-x", "--model", str(tmp_path / "model"), "--hostfile", str(tmp_path / "hostfile"),
                   "--update-baselines")
    _usage(run, message)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p in before} == before


def test_a_results_file_another_run_is_writing_is_refused(run_perf, tmp_path):
    results = tmp_path / "shared.json"
    lock, holder = files.claim(results)  # this process stands for the other run
    assert holder is None
    try:
        run = run_perf(*ACCEL, "--results", str(results))
        import os
        _usage(run, f"*--results {results}: another run (pid {os.getpid()}) is writing it now; give each run its own "
                    "--results, or wait until that one ends*")
    finally:
        lock.close()
    again, holder = files.claim(results)  # free again once its holder is gone
    assert holder is None
    again.close()


@pytest.mark.parametrize("args, message", [
    (["R", "--out", "R"], "perf-report: --out R: that is RESULTS file R, an input of this command; writing there would "
                          "replace it. Give another path"),
    (["R", "--plot", "R"], "perf-report: --plot R: that is RESULTS file R, an input of this command*"),
    (["R", "--out", "r.md", "--plot", "r.md"], "perf-report: --out and --plot name one file (r.md); give each its own"),
    (["R", "--against", "B", "--out", "B"], "perf-report: --out B: that is the --against file, an input of this command*"),
    (["R", "--against", "store", "--out", "store/cpu-x/m.json"], "perf-report: --out store/cpu-x/m.json: inside the "
                                                                 "baseline store store*"),
    (["R", "--out", "OTHER"], "perf-report: --out OTHER: holds a results file of this suite; writing there would "
                              "replace it*"),
    (["R", "--out", "B"], "perf-report: --out B: holds a baseline file of this suite*"),
    (["R", "--out", "H"], "perf-report: --out H: holds a baseline history of this suite; writing there would replace it*"),
    (["R", "--article", "B", "--out", "B"], "perf-report: --out B: that is the --article file*"),
    (["--baseline-only", "B", "--out", "B"], "perf-report: --out B: that is the --baseline-only file*"),
    (["R", "--out", "nowhere/r.md"], "perf-report: --out 'nowhere/r.md': folder nowhere does not exist*"),
    (["R", "--out", "store"], "perf-report: --out 'store': a folder; give a file path inside it*"),
])
def test_perf_report_never_writes_over_an_input_or_a_suite_file(tmp_path, monkeypatch, capsys, args, message):
    from perf import report
    monkeypatch.chdir(tmp_path)
    names = {"R": DATA / "cpu-results.json", "OTHER": DATA / "cpu-results.json",
             "B": next((DATA / "cpu-baselines").rglob("*.json")), "H": None}
    for name, source in names.items():
        (tmp_path / name).write_bytes(source.read_bytes() if source else b'{"replaced": "x"}\n')
    (tmp_path / "H").rename(tmp_path / "m.history.jsonl")
    args = ["m.history.jsonl" if a == "H" else a for a in args]
    message = message.replace("--out H", "--out m.history.jsonl")
    (tmp_path / "store" / "cpu-x").mkdir(parents=True)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert report.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and pytest.LineMatcher([err.strip()]).fnmatch_lines([message]) is None
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_perf_record_baselines_refuses_a_results_file_inside_its_store(tmp_path, capsys):
    results = tmp_path / "store" / "cpu-x" / "tiny-bloom.json"
    results.parent.mkdir(parents=True)
    results.write_bytes((DATA / "cpu-results.json").read_bytes())
    assert record.main([str(results), "--baselines", str(tmp_path / "store")]) == 2
    assert capsys.readouterr().err == (f"perf-record-baselines: {results}: inside the baseline store {tmp_path / 'store'}, "
                                       "which this command rewrites; move the results file out of it first\n")
    assert results.read_bytes() == (DATA / "cpu-results.json").read_bytes()


def test_perf_record_baselines_checks_the_store_before_writing_any_file(tmp_path, capsys):
    store = tmp_path / "store"
    store.mkdir()
    (store / json.loads((DATA / "cpu-results.json").read_text())["hardware_profile"]).write_text("a file")
    assert record.main([str(DATA / "cpu-results.json"), "--baselines", str(store)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"perf-record-baselines: --baselines {store}: {store}/cpu-")
    assert err.endswith(" is a file, where a folder of the store should be; move it away; or give another --baselines folder\n")
    assert list(store.iterdir()) == [next(store.iterdir())]


# -- 6. messages that point at real files -------------------------------------------------------------
def test_a_full_disk_names_where_the_figures_went_and_how_to_record_them(run_perf, tmp_path):
    with tmpfs(tmp_path / "full", "size=64k") as disk:
        _fill(disk / "filler")
        run = run_perf(*ACCEL, "--results", str(disk / "r.json"), "--baselines", str(disk / "store"),
                       "--update-baselines=force")
        out = run.result.stdout.str()
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED
    copy = out.split("this run's figures are in ")[1].split()[0]
    run.result.stdout.fnmatch_lines(["*perf: NOT WRITTEN*", "*baseline *store/*/tiny-bloom.json NOT updated with "
                                     "accel_bf16/bs1: No space left on device*",
                                     f"*the figures are in {copy}; record them later with: perf-record-baselines "
                                     f"{copy} --baselines {disk / 'store'} --force*"])
    assert "results file:" not in out
    assert json.loads(Path(copy).read_text())["tests"][0]["outcome"] == "passed"
    Path(copy).unlink()


# -- 3. no baseline recorded on a busy host --------------------------------------------------------
DOUBLES = ["-p", "tests.doubles"]


def test_a_baseline_measured_on_a_busy_host_is_not_recorded_unless_forced(run_perf, tmp_path, capsys):
    store = tmp_path / "store"
    args = [*DOUBLES, "-k", "double_busy_host and ms_per_token", "--batch-sizes", "1", "--baselines", str(store),
            "--hardware", "cpu-x"]
    refused = run_perf(*args, "--update-baselines")
    assert refused.result.ret == pytest.ExitCode.TESTS_FAILED  # asked to record, and did not
    refused.result.stdout.fnmatch_lines([
        "*perf: baselines NOT recorded*",
        "not recorded: double_busy_host/bs1, measured on a busy host (*other processes used * of its * CPUs*); "
        "measure again on a quiet host, or record it anyway with --update-baselines=force (perf-record-baselines --force)"])
    assert not store.exists() or not list(store.rglob("*.json"))
    results = tmp_path / "busy.json"
    results.write_bytes(refused.results_path.read_bytes())
    assert record.main([str(results), "--baselines", str(store)]) == 1
    assert "not recorded: double_busy_host/bs1, measured on a busy host" in capsys.readouterr().out
    assert record.main([str(results), "--baselines", str(store), "--force"]) == 0
    assert "double_busy_host/bs1 measured on a busy host (" in capsys.readouterr().out
    entry = baselines.load(store / "cpu-x" / "tiny-bloom.json")["entries"]["double_busy_host"]["bs1"]
    assert entry["worker_cpus"] >= 1 and entry["samples"]["ms_per_token"]
    forced = run_perf(*args, "--update-baselines=force")
    assert forced.result.ret == pytest.ExitCode.OK
    forced.result.stdout.fnmatch_lines(["*baseline double_busy_host/bs1 measured on a busy host (*), recorded as forced*"])


def test_xdist_workers_recording_on_one_machine_without_gpus_is_refused(run_perf, monkeypatch):
    from perf.plugin import _visible_gpus
    if _visible_gpus():
        pytest.skip("with GPUs each xdist worker measures on its own")
    run = run_perf("-n", "2", "--update-baselines")
    _usage(run, "*-n 2 with --update-baselines on a machine without GPUs: the 2 xdist workers would measure at the "
                "same time on the same CPUs, and the baseline would keep that slowdown; record without -n*")


# -- 4. an entry knows which model it measured; 6. a folder that cannot load says what it lacks ------
def _other_model(folder):
    """A BLOOM of another shape (4 blocks instead of 3: its last block repeated) in a folder: what a
    mix-up of folders gives. Built from the embedded model's files, the weights in a process of their
    own: pytester drops the modules a test imported when it ends, and torch imported again in this
    process then crashes (a later in-process `import torch` segfaulted)."""
    import shutil
    import subprocess
    import sys

    from perf.protocol import EMBEDDED_MODEL
    shutil.copytree(EMBEDDED_MODEL, folder)
    subprocess.run([sys.executable, "-c", "import sys; from safetensors.torch import load_file, save_file; "
                    "t = load_file(sys.argv[1]); "
                    "t.update({n.replace('.h.2.', '.h.3.'): v.clone() for n, v in t.items() if '.h.2.' in n}); "
                    "save_file(t, sys.argv[2], metadata={'format': 'pt'})",
                    str(EMBEDDED_MODEL / "model.safetensors"), str(folder / "model.safetensors")], check=True)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "n_layer": 4}))
    return folder


def test_another_model_under_the_same_name_is_refused_and_old_entries_say_they_cannot_tell(run_perf, tmp_path):
    store = tmp_path / "store"
    args = [*ACCEL, "--baselines", str(store), "--hardware", "cpu-x"]
    run_perf(*args, "--update-baselines=force").result.assert_outcomes(passed=1)
    path = store / "cpu-x" / "tiny-bloom.json"
    recorded = json.loads(path.read_text())["entries"]["accel_bf16"]["bs1"]["protocol"]["model"]
    assert recorded["layers"] == 3 and len(recorded["config"]) == len(recorded["weights"]) == 12
    other = _other_model(tmp_path / "elsewhere" / "tiny-bloom")  # another model, the same name
    run = run_perf(*args, "--model", str(other))
    assert run.tests()[0]["verdict"] == "REFUSED" and run.results["model_identity"]["layers"] == 4
    run.result.stdout.fnmatch_lines(["*accel_bf16 bs=1: REFUSED: not comparable: another model: 4 layers, hidden 128, "
                                     "0.9M parameters (config *, weights *) here, 3 layers, hidden 128, 0.7M parameters "
                                     "(config *, weights *) in the baseline*"])
    data = json.loads(path.read_text())  # an entry recorded before entries kept the model
    del data["entries"]["accel_bf16"]["bs1"]["protocol"]["model"]
    path.write_text(json.dumps(data))
    run = run_perf(*args, "--model", str(other))
    assert run.tests()[0]["verdict"] != "REFUSED"
    run.result.stdout.fnmatch_lines(["*1 baseline entries do not say which model they measured (recorded before entries "
                                     "kept it): another model named 'tiny-bloom' would not be noticed; re-record them*"])


def test_pooling_another_model_is_refused_with_the_reason(tmp_path):
    from perf import models
    ours, theirs = entry(runs=1), entry(runs=1, wall=20.1)
    ours["protocol"] = {**ours["protocol"], "model": {"config": "a" * 12, "weights": "b" * 12, "layers": 3,
                                                      "hidden_size": 128, "parameters": 660864}}
    theirs["protocol"] = {**theirs["protocol"], "model": {**ours["protocol"]["model"], "weights": "c" * 12, "layers": 24}}
    path = tmp_path / "p" / "m.json"
    baselines.update(path, "p", "m", {"a": {"bs1": ours}})
    notes = baselines.update(path, "p", "m", {"a": {"bs1": theirs}}, "pool")
    assert notes == [f"kept a/bs1, not pooled: not comparable: another model: {models.describe(theirs['protocol']['model'])} "
                     f"here, {models.describe(ours['protocol']['model'])} in the baseline (replace it with --update-baselines)"]


def _copy_model(tmp_path):
    import shutil

    from perf.protocol import EMBEDDED_MODEL
    return shutil.copytree(EMBEDDED_MODEL, tmp_path / "m")


@pytest.mark.parametrize("damage, message", [
    (lambda m: (m / "model.safetensors").unlink(),
     "*m holds no weights (model.safetensors, model.safetensors.index.json with its shards, or pytorch_model.bin)*"),
    (lambda m: (m / "model.safetensors").write_bytes((m / "model.safetensors").read_bytes()[:1_000_000]),
     "*model.safetensors is not a whole safetensors file: 1000000 bytes, its header needs 2647904 (38% there); copy it "
     "again*"),
    (lambda m: (m / "model.safetensors").write_bytes(b"\x00" * 4),
     "*model.safetensors is not a whole safetensors file: too short for its own header*"),
    (lambda m: (m / "tokenizer.json").unlink(), "*m has no tokenizer.json (BLOOM's tokenizer)*"),
    (lambda m: (m / "config.json").unlink(), "*cannot read *m/config.json: *No such file or directory*"),
    (lambda m: (m / "config.json").write_text('{"n_layer": 2,'), "*cannot read *m/config.json: Expecting*"),
    (lambda m: (m / "tokenizer.json").write_text('{"version": "1.0", "trunc'), "*tokenizer.json is not a readable tokenizer*"),
    (lambda m: (m / "model.safetensors.index.json").write_text(
        '{"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}'),
     "*model.safetensors.index.json names 2 weight file(s), and 2 are not in *m (model-00001-of-00002.safetensors, "
     "model-00002-of-00002.safetensors); copy them too*"),
    (lambda m: (m / "model.safetensors.index.json").write_text('["x"]'), "*model.safetensors.index.json is not a weight index*"),
    (lambda m: ((m / "model.safetensors").unlink(), (m / "pytorch_model.bin").write_bytes(b"PK\x03\x04 cut")),
     "*pytorch_model.bin is not a whole PyTorch weight file (cut short?)*"),
])
def test_a_model_folder_that_cannot_load_says_what_it_lacks_before_any_backend_loads(run_perf, tmp_path, damage, message):
    model = _copy_model(tmp_path)
    damage(model)
    _usage(run_perf(*ACCEL, "--model", str(model)), f"*--model '{model}': {message}")


def test_a_whole_pytorch_bin_checkpoint_is_accepted_and_identified(tmp_path):
    import subprocess
    import sys

    from perf import models
    model = _copy_model(tmp_path)
    # torch.save in a process of its own: torch's state in this long test process is not this test's
    subprocess.run([sys.executable, "-c", "import sys, torch; from safetensors.torch import load_file; "
                    "torch.save(load_file(sys.argv[1]), sys.argv[2])", str(model / "model.safetensors"),
                    str(model / "pytorch_model.bin")], check=True)
    (model / "model.safetensors").unlink()
    identity = models.check_checkpoint(model, "--model m")
    assert identity["layers"] == 3 and identity["parameters"] is None


# -- 5. runs that do not mix -------------------------------------------------------------------------
def _variant(tmp_path, name, change) -> str:
    data = json.loads((DATA / "cpu-results.json").read_text())
    change(data)
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


IDENTITY = {"config": "a" * 12, "weights": "b" * 12, "layers": 3, "hidden_size": 128, "parameters": 660864}


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(side_by_side={"base": "../base"}), "kind 'side by side with ../base' vs 'against baselines'"),
    (lambda d: d["protocol"].update(new_tokens=10), "new tokens 10 vs 100"),
    (lambda d: d.update(hardware_profile="1xH200"), "hardware profile '1xH200' vs 'cpu-amd-epyc-2c'"),
    (lambda d: d.update(model_identity={**IDENTITY, "layers": 24, "weights": "c" * 12}),
     "another model under one name: 24 layers, hidden 128, 0.7M parameters (config aaaaaaaaaaaa, weights cccccccccccc) "
     "vs 3 layers, hidden 128, 0.7M parameters (config aaaaaaaaaaaa, weights bbbbbbbbbbbb)"),
])
def test_perf_report_refuses_to_merge_runs_that_do_not_mix_naming_what_differs(tmp_path, capsys, change, message):
    from perf import report
    first = _variant(tmp_path, "first.json", lambda d: d.update(model_identity=IDENTITY))
    second = _variant(tmp_path, "second.json", lambda d: (d.update(model_identity=IDENTITY), change(d)))
    assert report.main([first, second]) == 2
    err = capsys.readouterr().err
    assert err == (f"perf-report: {second} and {first} are not one run: {message}. Only files of one run (split over "
                   "calls with -k) merge: report each on its own\n")


@pytest.mark.parametrize("args, message", [
    (["OTHER_PROFILE"], "not comparable with RESULTS: hardware profile 'cpu-amd-epyc-2c' vs '1xH200' (for a comparison "
                        "across hardware, use --article)"),
    (["SIDE_BY_SIDE"], "a side-by-side run (--base ../base): its cycles alternated with another checkout's; compare "
                       "against a run without --base, or render it on its own"),
])
def test_perf_report_against_another_run_refuses_one_that_does_not_compare(tmp_path, capsys, args, message):
    from perf import report
    change = {"OTHER_PROFILE": lambda d: d.update(hardware_profile="1xH200"),
              "SIDE_BY_SIDE": lambda d: d.update(side_by_side={"base": "../base"})}[args[0]]
    other = _variant(tmp_path, "o.json", change)
    assert report.main([str(DATA / "cpu-results.json"), "--against", other]) == 2
    assert capsys.readouterr().err == f"perf-report: {other}: {message}\n"


def test_perf_report_against_with_a_side_by_side_run_says_it_would_do_nothing(tmp_path, capsys):
    from perf import report
    sbs = _variant(tmp_path, "sbs.json", lambda d: d.update(side_by_side={"base": "../base"}))
    assert report.main([sbs, "--against", str(DATA / "cpu-baselines")]) == 2
    assert capsys.readouterr().err == (f"perf-report: --against {DATA / 'cpu-baselines'} with a side-by-side run (pytest "
                                       "--base ../base): its verdicts are against its base, so --against would do "
                                       "nothing; drop --against\n")


def test_perf_record_baselines_refuses_a_side_by_side_run(tmp_path, capsys):
    sbs = _variant(tmp_path, "sbs.json", lambda d: d.update(side_by_side={"base": "../base"}))
    assert record.main([sbs, "--baselines", str(tmp_path / "store")]) == 2
    assert capsys.readouterr().err.startswith(f"perf-record-baselines: {sbs}: a side-by-side run (pytest --base ../base): "
                                              "its cells alternate with another checkout's")
    assert not (tmp_path / "store").exists()


# -- 6. every config value type-checked with its key named; names the disk cannot take --------------
@pytest.mark.parametrize("toml, message", [
    ('[tool.perf.backends.ds_fp16]\npythonpath = 5\n', "[tool.perf.backends.ds_fp16]: key pythonpath is 5, not a string "
                                                       "or a list of strings; e.g. pythonpath = "),
    ('[tool.perf.backends.ds_fp16]\npythonpath = ["/a", 1]\n', "key pythonpath is ['/a', 1], not a string or a list"),
    ('[tool.perf.backends.ds_fp16]\npython = ["/usr/bin/python3"]\n', "[tool.perf.backends.ds_fp16]: key python is "
                                                                     "['/usr/bin/python3'], not a string"),
    ('[tool.perf.backends]\nds_fp16 = "/opt/t4"\n', "[tool.perf.backends.ds_fp16]: '/opt/t4', not a table; write "
                                                   "[tool.perf.backends.ds_fp16] with keys python and/or pythonpath"),
    ('[tool.perf]\nbackends = ["ds_fp16"]\n', "'tool.perf.backends' is ['ds_fp16'], not a table"),
    ('[tool]\nperf = 1\n', "'tool.perf' is 1, not a table"),
    ('[tool.perf.backends.ds_fp16]\npython = "/no/such/python"\n', "backend ds_fp16: python '/no/such/python' (from "
                                                                  "*pyproject.toml [tool.perf.backends.ds_fp16] key python) "
                                                                  "is not an executable file"),
])
def test_every_backend_environment_value_is_type_checked_with_its_key(tmp_path, toml, message):
    from perf.backend_envs import backend_envs
    from perf.options import OptionError
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(toml)
    with pytest.raises(OptionError) as error:
        backend_envs(pyproject, {})
    text = str(error.value)
    assert str(pyproject) in text and all(part in text for part in message.split("*")), text


def test_a_bad_backend_environment_variable_names_the_variable(tmp_path):
    from perf.backend_envs import backend_envs
    from perf.options import OptionError
    with pytest.raises(OptionError, match=r"backend zero_bf16: python '/nope' \(from environment variable "
                                          r"PERF_BACKEND_ZERO_BF16_PYTHON\) is not an executable file"):
        backend_envs(tmp_path / "none.toml", {"PERF_BACKEND_ZERO_BF16_PYTHON": "/nope"})


def test_a_wrong_type_in_the_rootdirs_pyproject_is_a_usage_error_not_an_internal_error(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    pytester.makepyprojecttoml('[tool.perf.backends.ds_fp16]\npythonpath = 5\n')
    result = pytester.runpytest_subprocess("-p", "perf.plugin", "-p", "no:cacheprovider", "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "INTERNALERROR" not in result.stderr.str()
    result.stderr.fnmatch_lines(["*pyproject.toml [[]tool.perf.backends.ds_fp16[]]: key pythonpath is 5, not a string*"])


@pytest.mark.parametrize("option, message", [
    ("--hardware", "*--hardware 'xxxxxxxxxxxxxxxxxxxx...': 300 characters, longer than a folder name can be (255); give "
                   "a short name, e.g. --hardware 8xA100-80GB*"),
    ("--results", "*--results 'xxxxxxxxxxxxxxxxxxxx...': a file name of 300 bytes; the run writes files named after it*"),
    ("--model", "*--model '*': a name of 250 bytes; its baseline files are named after it (*...), and a file name may "
                "have at most 255: rename the folder to under 236 characters*"),
])
def test_a_name_too_long_for_the_disk_is_a_usage_error(run_perf, tmp_path, option, message):
    value = "x" * 300
    if option == "--model":
        import shutil

        from perf.protocol import EMBEDDED_MODEL
        value = str(shutil.copytree(EMBEDDED_MODEL, tmp_path / ("m" * 250)))
    elif option == "--results":
        value = str(tmp_path / value)
    run = run_perf(*ACCEL, option, value, "--update-baselines", "--baselines", str(tmp_path / "store"))
    _usage(run, message)
    assert "INTERNALERROR" not in run.result.stdout.str() + run.result.stderr.str()


LONG = "/tmp/" + "x" * 300  # a name no file system takes: every read of it fails with ENAMETOOLONG


@pytest.mark.parametrize("args, message", [
    (["R", "--against", LONG], f"perf-report: {LONG}: cannot read --against's baseline or results file: File name too long"),
    (["--baseline-only", LONG], f"perf-report: {LONG}: cannot read baseline file: File name too long"),
    (["R", "--article", LONG], f"perf-report: {LONG}: cannot read --article file: File name too long"),
    (["R", "--out", LONG + "/r.md"], f"perf-report: --out '{LONG}/r.md': File name too long; give another path"),
])
def test_perf_report_names_a_path_no_disk_takes_and_says_reading_not_writing(capsys, args, message):
    from perf import report
    args = [str(DATA / "cpu-results.json") if a == "R" else a for a in args]
    assert report.main(args) == 2
    assert capsys.readouterr().err == message + "\n"


def test_perf_record_baselines_names_a_store_no_disk_takes(capsys):
    assert record.main([str(DATA / "cpu-results.json"), "--baselines", LONG]) == 2
    assert capsys.readouterr().err == f"perf-record-baselines: --baselines {LONG}: File name too long; give another --baselines folder\n"


@pytest.mark.parametrize("option", ["--baselines", "--model", "--results"])
def test_a_path_no_disk_takes_is_a_usage_error_of_its_option(run_perf, option):
    run = run_perf(*ACCEL, option, LONG + ("/r.json" if option == "--results" else ""), "--update-baselines")
    _usage(run, f"*{option} '{LONG}*': File name too long; give *")
    assert "INTERNALERROR" not in run.result.stdout.str() + run.result.stderr.str()


# -- 7. every flag that does nothing in this run says so -------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--ab-max-pairs", "5"], "*--ab-max-pairs without --base: it does nothing in a run against baselines; give --base "
                              "DIR (the checkout to compare with) or leave it out*"),
    (["--ab-max-seconds", "60", "--ab-loads", "alternate"], "*--ab-max-seconds, --ab-loads without --base: they do "
                                                            "nothing in a run against baselines*"),
    (["--base", str(REPO), "--require-baseline"], "*--require-baseline with --base: a side-by-side run judges head "
                                                  "against base and reads no baseline, so it does nothing*"),
    (["--base", str(REPO), "--baselines", "elsewhere"], "*--baselines with --base: *so it does nothing*"),
    (["--base", str(REPO), "--update-baselines"], "*--base with --update-baselines: a side-by-side run judges head "
                                                  "against base and records no baseline; leave out one of them*"),
])
def test_an_option_that_does_nothing_with_or_without_base_is_a_usage_error(run_perf, args, message):
    _usage(run_perf(*ACCEL, *args), message)


@pytest.mark.parametrize("args, message", [
    (["-k", "greedy", "--cycles", "3", "--update-baselines"],
     "perf: --batch-sizes, --cycles, --update-baselines do nothing in this run: no ms/token test is selected (-k)"),
    (["-k", "ds_int8", "--max-memory", "cpu=2GiB"],
     "perf: --max-memory does nothing in this run: only accel_bf16, accel_int8 take it, and none is selected"),
    (["-k", "accel", "--world-size", "2"],
     "perf: --world-size does nothing in this run: only ds_fp16, zero_bf16 run as several ranks, and none is selected"),
])
def test_an_option_that_does_nothing_in_the_tests_selected_says_so(run_perf, args, message):
    run = run_perf("--collect-only", *args)  # FAST gives --batch-sizes too
    assert run.result.ret == pytest.ExitCode.OK
    run.result.stdout.fnmatch_lines([message])


def test_options_that_do_something_say_nothing(run_perf):
    run = run_perf("--collect-only", "-k", "accel_bf16", "--max-memory", "cpu=2GiB", "--cycles", "3")
    assert "does nothing" not in run.result.stdout.str() and "do nothing" not in run.result.stdout.str()


def test_require_baseline_stops_a_run_without_one_also_with_update_baselines(run_perf, tmp_path):
    run = run_perf(*ACCEL, "--baselines", str(tmp_path / "store"), "--hardware", "cpu-x", "--require-baseline",
                   "--update-baselines")
    _usage(run, "*--require-baseline: no baseline for hardware profile 'cpu-x' and model 'tiny-bloom'*")


def test_a_baselines_folder_that_is_not_there_is_refused_unless_recording(run_perf, tmp_path):
    """A mistyped --baselines would otherwise judge nothing: every cell NEW, and the run green."""
    run = run_perf(*ACCEL, "--baselines", str(tmp_path / "baselinez"))
    _usage(run, f"*--baselines {tmp_path / 'baselinez'}: no such folder, so no cell would be judged (each one NEW); "
                "give the baseline store's folder (default: baselines/ in the checkout), or add --update-baselines*")
    assert not (tmp_path / "baselinez").exists()


@pytest.mark.parametrize("argv, message", [
    (["--baseline-only", "B", "--fail-on", "never"], "perf-report: --baseline-only renders the baseline file alone; "
                                                     "drop --fail-on (or drop --baseline-only to render a run)"),
    (["R", "--fail-on", "sometimes"], "perf-report: argument --fail-on: invalid choice: 'sometimes' (choose from "
                                      "'regression', 'inconclusive', 'never')"),
    ([], "perf-report: give RESULTS or --baseline-only BASELINE"),
])
def test_the_report_tools_bad_command_lines_are_one_line(capsys, argv, message):
    from perf import report
    argv = [str(DATA / "cpu-results.json") if a == "R" else str(next((DATA / "cpu-baselines").rglob("*.json")))
            if a == "B" else a for a in argv]
    with pytest.raises(SystemExit) as done:
        report.main(argv)
    assert done.value.code == 2 and capsys.readouterr().err == message + "\n"


def test_perf_record_baselines_bad_command_line_is_one_line(capsys):
    with pytest.raises(SystemExit) as done:
        record.main([])
    assert done.value.code == 2
    assert capsys.readouterr().err == "perf-record-baselines: the following arguments are required: results\n"


def test_recording_over_another_models_entry_says_so_and_keeps_it_in_the_history(tmp_path):
    from perf import models
    ours, theirs = entry(runs=1), entry(runs=1, wall=21.0)
    ours["protocol"] = {**ours["protocol"], "model": IDENTITY}
    theirs["protocol"] = {**theirs["protocol"], "model": {**IDENTITY, "weights": "c" * 12, "layers": 24}}
    path = tmp_path / "p" / "m.json"
    baselines.update(path, "p", "m", {"a": {"bs1": ours}})
    notes = baselines.update(path, "p", "m", {"a": {"bs1": theirs}})
    assert notes == [f"replaced a/bs1 (it measured another model, {models.describe(IDENTITY)}; this run measured "
                     f"{models.describe(theirs['protocol']['model'])}; the old entry is in the history)"]
    assert json.loads(_history(path).read_text())["entry"]["protocol"]["model"] == IDENTITY


@pytest.mark.parametrize("option, make, message", [
    ("--model", lambda p: p.write_text("{}"), "*--model '*': a file; give the folder that holds it*"),
    ("--baselines", lambda p: p.write_text("{}"), "*--baselines '*': a file, where the baseline store (a folder) should "
                                                  "be; give a folder*"),
])
def test_a_file_where_a_folder_is_expected_is_named(run_perf, tmp_path, option, make, message):
    make(tmp_path / "thing")
    _usage(run_perf(*ACCEL, option, str(tmp_path / "thing")), message)


def test_a_baseline_model_identity_of_the_wrong_shape_is_named_by_field(tmp_path):
    path = tmp_path / "b.json"
    bad = {**entry(runs=1), "protocol": {"new_tokens": 100, "world_size": 1, "model": 5}}
    path.write_text(json.dumps({"schema": 2, "profile": "p", "model": "m", "entries": {"a": {"bs1": bad}}}))
    with pytest.raises(baselines.BaselineError, match=r"entry a/bs1: field 'protocol.model': Input should be a valid "
                                                      r"dictionary"):
        baselines.load(path)


def test_a_results_model_identity_of_the_wrong_shape_is_named_by_field(tmp_path, capsys):
    from perf import report
    bad = _variant(tmp_path, "r.json", lambda d: d.update(model_identity={"config": 1}))
    assert report.main([bad]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"perf-report: {bad}: field model_identity.config: Input should be a valid string")


def _edited(tmp_path, name: str, change) -> Path:
    data = json.loads((REPO / "tests" / "data" / "cpu-hostwork" / "C.json").read_text())
    change(data)
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _drop_batch_size(data):
    del next(t for t in data["tests"] if t["test"] == "test_ms_per_token")["batch_size"]


@pytest.mark.parametrize("change, message", [
    (_drop_batch_size, "test perf/test_bloom.py::test_ms_per_token[accel_bf16-bs1]: field batch_size: missing; every "
                       "test_ms_per_token record has its batch size"),
    (lambda data: data["tests"][0].pop("backend"), "test perf/test_bloom.py::test_generation_is_sane[accel_bf16]: "
                                                    "field backend: Field required"),
])
def test_the_tools_refuse_a_results_record_without_its_batch_size_or_its_backend(tmp_path, capsys, change,
                                                                                             message):
    from perf import report
    bad = _edited(tmp_path, "bad.json", change)
    store = tmp_path / "store"
    assert report.main([str(bad)]) == 2
    assert record.main([str(bad), "--baselines", str(store), "--force"]) == 2
    err = capsys.readouterr().err
    assert all(message in line for line in err.splitlines()) and err.count("\n") == 2 and not store.exists()


def test_a_results_file_where_a_baseline_file_belongs_is_named_as_such(capsys):
    from perf import report
    run = REPO / "tests" / "data" / "cpu-hostwork" / "C.json"
    assert report.main(["--baseline-only", str(run)]) == 2
    assert report.main([str(run), "--article", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count(f"{run}: a results file of this suite, not a baseline file") == 2


def _nan_ms(data):
    data["tests"][-1]["ms_per_token"] = float("nan")


@pytest.mark.parametrize("make, message", [
    (lambda tmp: _edited(tmp, "nan.json", _nan_ms), "ms_per_token': NaN is not a number JSON allows; fix or remove it"),
    (lambda tmp: _edited(tmp, "s99.json", lambda d: d.update(schema=99)), "field 'schema': unknown results schema 99"),
    (lambda tmp: (tmp / "list.json", (tmp / "list.json").write_text("[]"))[0], "not a results file of this suite"),
    (lambda tmp: REPO / "baselines" / "cpu-amd-epyc-2c" / "tiny-bloom.json", "not a results file of this suite"),
])
def test_both_tools_refuse_what_is_not_a_results_file_in_one_line(tmp_path, capsys, make, message):
    from perf import report
    path = make(tmp_path)
    store = tmp_path / "store"
    assert report.main([str(path)]) == 2 and record.main([str(path), "--baselines", str(store)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(message in line for line in err) and not store.exists()


def test_recording_onto_a_truncated_baseline_file_refuses_and_leaves_it(tmp_path, capsys):
    run = REPO / "tests" / "data" / "cpu-hostwork" / "S4.json"
    target = tmp_path / "cpu-intel-r-xeon-r-processor-2c" / "tiny-bloom.json"
    target.parent.mkdir()
    target.write_text('{"schema": 2, "profile": "cpu-i')
    assert record.main([str(run), "--baselines", str(tmp_path), "--force"]) == 2
    assert "tiny-bloom.json: not valid JSON" in capsys.readouterr().err
    assert target.read_text() == '{"schema": 2, "profile": "cpu-i'


def test_a_results_lock_left_by_a_killed_run_does_not_block_the_next(tmp_path):
    results = tmp_path / "r.json"
    (tmp_path / ".r.json.lock").write_text("999999\n")  # what a SIGKILLed run leaves: its pid, no flock held
    lock, holder = files.claim(results)
    assert lock is not None and holder is None
    assert files.claim(results) == (None, str(os.getpid()))  # while this one holds it, another is refused
    lock.close()


def test_the_same_results_file_given_twice_records_its_entries_once(tmp_path, capsys):
    run = REPO / "tests" / "data" / "cpu-hostwork" / "S4.json"
    assert record.main([str(run), "--baselines", str(tmp_path)]) == 0
    assert record.main([str(run), "--pool", "--baselines", str(tmp_path)]) == 0
    assert "kept accel_bf16/bs1: these samples are already in it" in capsys.readouterr().out
    entry = json.loads(next(tmp_path.rglob("tiny-bloom.json")).read_text())["entries"]["accel_bf16"]["bs1"]
    assert entry["provenance"].get("runs", 1) == 1 and len(entry["samples"]["ms_per_token"]) == 5
