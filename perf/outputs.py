"""The files a run or a tool will write, checked before anything runs: they can be written, and
(perf.outputs.not_an_input) none of them is a file the run reads or the baseline store keeps.
Plain errors (perf.options.OptionError), shared by the plugin and the tools."""
import json
import os
from pathlib import Path

from perf import files
from perf.options import NAME_MAX, OptionError

NAME_ROOM = 32  # what the temporary and lock files beside an output add to its name


def writable_file(option: str, text: str, example: str = "perf-results.json") -> Path:
    """A file the run will write: its folder exists and takes files, and it is not a folder."""
    try:
        return _writable_file(option, text, example)
    except OSError as exc:  # a folder name too long, a loop of links...
        raise OptionError(f"{option} {text!r}: {exc.strerror}; give another path") from None


def _writable_file(option: str, text: str, example: str) -> Path:
    if not text.strip():
        raise OptionError(f"{option} {text!r}: give a file path, e.g. {option} {example}")
    path = Path(text).expanduser()
    folder = path.parent if str(path.parent) else Path(".")
    if len(path.name.encode()) > NAME_MAX - NAME_ROOM:
        raise OptionError(f"{option} '{path.name[:20]}...': a file name of {len(path.name.encode())} bytes; the run "
                          f"writes files named after it (.NAME.PID.tmp, .NAME.lock), and a name may have at most "
                          f"{NAME_MAX}: give a name under {NAME_MAX - NAME_ROOM}")
    if path.is_dir():
        raise OptionError(f"{option} {text!r}: a folder; give a file path inside it, e.g. {option} {path / example}")
    if not folder.is_dir():
        raise OptionError(f"{option} {text!r}: folder {folder} does not exist; create it or give another path")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise OptionError(f"{option} {text!r}: cannot write there (permissions, or a read-only file system); "
                          "give a path you can write")
    return path


def store_folder(option: str, text: str) -> Path:
    """--baselines: a folder, or a path where one can be made (it may not exist yet)."""
    path = Path(text).expanduser()
    try:
        if path.exists() and not path.is_dir():
            raise OptionError(f"{option} {text!r}: a file, where the baseline store (a folder) should be; "
                              "give a folder")
    except OSError as exc:  # a name too long, a loop of links...
        raise OptionError(f"{option} {text!r}: {exc.strerror}; give another folder") from None
    return path


def check_baseline_store(store: Path, profile: str, model: str, option: str = "--update-baselines with --baselines") -> None:
    """The store's profile folder, the file, its lock and its history can be written (or made),
    before any model loads or any file is written. OptionError naming the path otherwise."""
    folder = Path(store) / profile
    try:
        existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    except OSError as exc:
        raise OptionError(f"{option} {store}: {exc.strerror}; give another --baselines folder") from None
    targets = [folder / f"{model}.json", folder / f"{model}.json.lock", folder / f"{model}.history.jsonl"]
    denied = " (permissions, or a read-only file system)"
    if existing is not None and not existing.is_dir():
        problem = f"{existing} is a file, where a folder of the store should be; move it away"
    elif existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        problem = f"cannot create or write files in {existing}{denied}"
    else:
        problem = next((f"{t} is a folder, where a file of the store should be; move it away" if t.is_dir()
                        else f"{t} cannot be written{denied}" for t in targets
                        if t.exists() and (t.is_dir() or not os.access(t, os.W_OK))), None)
    if problem:
        raise OptionError(f"{option} {store}: {problem}; or give another --baselines folder"
                          + (", or leave out --update-baselines" if "--update-baselines" in option else ""))


# -- an output is never an input -------------------------------------------------------------------
def _resolved(path) -> Path:
    return Path(path).expanduser().resolve()


def same_file(a, b) -> bool:
    """Whether two paths name one file: links followed, and hard links by their inode."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them is not there yet
        return _resolved(a) == _resolved(b)


def inside(path, folder) -> bool:
    return _resolved(path).is_relative_to(_resolved(folder))


def store_file(path, store) -> bool:
    """Whether `path` lies in a profile folder of the baseline store `store` (where the baseline
    files, their locks and histories live: STORE/<profile>/<model>.json ...)."""
    if store is None or not inside(path, store):
        return False
    return len(_resolved(path).relative_to(_resolved(store)).parts) >= 2


def not_an_input(option: str, output, files: dict, folders: dict | None = None, store=None) -> None:
    """OptionError when the file `option` names (`output`) is one of the run's input `files`
    ({what: path}), lies inside one of its input `folders` ({what: folder}), or is a file of the
    baseline store `store`: writing it would replace what the run reads or keeps."""
    for what, path in files.items():
        if path is not None and same_file(output, path):
            raise OptionError(f"{option} {output}: that is {what}, an input of this command; writing there "
                              "would replace it. Give another path")
    for what, folder in (folders or {}).items():
        if folder is not None and inside(output, folder):
            raise OptionError(f"{option} {output}: inside {what} ({folder}), an input of this command; "
                              "write elsewhere")
    if store_file(output, store):
        raise OptionError(f"{option} {output}: inside the baseline store {store}, whose profile folders hold only "
                          "baseline files, their locks and histories; write elsewhere")


def suite_file(path) -> str | None:
    """What file of this suite `path` already holds: "a results file", "a baseline file", "a
    baseline history", or None (none, or not one of ours)."""
    path = Path(path)
    if not path.is_file():
        return None
    if path.name.endswith((".history.jsonl", ".history.jsonl.torn")):
        return "a baseline history"
    try:
        if path.stat().st_size > 1 << 28:  # no suite file is this large
            return None
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if isinstance(data, dict):
        return "a baseline file" if "entries" in data else "a results file" if "tests" in data else None
    return None


def not_a_suite_file(option: str, output, keep: tuple = ("a results file", "a baseline file", "a baseline history")) -> None:
    """OptionError when `output` already holds one of the suite's files of the kinds in `keep` (a
    tool writing markdown or a PNG there, or a run its results, would replace it)."""
    what = suite_file(output)
    if what in keep:
        raise OptionError(f"{option} {output}: holds {what} of this suite; writing there would replace it. "
                          "Give another path")


def replaces_only_results(option: str, output) -> None:
    """OptionError when `output` already holds anything but an empty file or a results file of this
    suite (a run's results replace the last run's, never a baseline, wherever it lies, nor a README or
    a notes file named by mistake)."""
    not_a_suite_file(option, output, keep=("a baseline file", "a baseline history"))
    output = Path(output)
    if output.is_file() and output.stat().st_size and suite_file(output) != "a results file":
        raise OptionError(f"{option} {output}: holds a file that is not a results file of this suite; writing there "
                          "would replace it. Give another path, or move that file away first")


def claim_results(path: Path):
    """The results file to this process alone while it runs (the lock file to keep open): two runs
    given one --results would each replace the other's figures."""
    lock, holder = files.claim(path)
    if lock is None:
        raise OptionError(f"--results {path}: another run (pid {holder}) is writing it now; give each run "
                          "its own --results, or wait until that one ends")
    return lock
