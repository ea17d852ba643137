"""The files a run or a tool will write, checked before anything runs: they can be written, and
(perf.outputs.not_an_input) none of them is a file the run reads or the baseline store keeps.
Plain errors (perf.options.OptionError), shared by the plugin and the tools."""
import os
from pathlib import Path

from perf.options import OptionError


def writable_file(option: str, text: str) -> Path:
    """A file the run will write: its folder exists and takes files, and it is not a folder."""
    if not text.strip():
        raise OptionError(f"{option} {text!r}: give a file path, e.g. {option} perf-results.json")
    path = Path(text).expanduser()
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OptionError(f"{option} {text!r}: a folder; give a file path inside it, e.g. {option} {path / 'perf-results.json'}")
    if not folder.is_dir():
        raise OptionError(f"{option} {text!r}: folder {folder} does not exist; create it or give another path")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise OptionError(f"{option} {text!r}: cannot write there (permissions, or a read-only file system); "
                          "give a path you can write")
    return path


def check_baseline_store(store: Path, profile: str, model: str) -> None:
    """--update-baselines: the store's profile folder, the file, its lock and its history can be
    written (or made), before any model loads. OptionError naming the path otherwise."""
    folder = Path(store) / profile
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    targets = [folder / f"{model}.json", folder / f"{model}.json.lock", folder / f"{model}.history.jsonl"]
    problem = None
    if existing is not None and not existing.is_dir():
        problem = f"{existing} is a file, where a folder of the store should be"
    elif existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        problem = f"cannot create or write files in {existing}"
    else:
        problem = next((f"{t} cannot be written" for t in targets
                        if t.exists() and (t.is_dir() or not os.access(t, os.W_OK))), None)
    if problem:
        raise OptionError(f"--update-baselines with --baselines {store}: {problem} (permissions, or a "
                          "read-only file system); give a writable --baselines folder, or leave out "
                          "--update-baselines")
