"""Nothing lost, nothing misleading (issue 27's table, row by row): torn history lines, outputs
that would overwrite inputs, baselines recorded on a busy host, which model an entry measured, runs
that do not mix, messages that point at real files, and flags that do nothing in a run."""
import json

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
