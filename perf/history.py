"""The nightly history: every run's results file kept, per hardware profile and model, so that a
drift or a step can be seen across nights and dated (docs/history.md says why it is built so).

    perf-history/                       (--history DIR; default perf-history/ in the rootdir)
      index.json                        {"schema": 1, "runs": [RUN, ...]}: the runs the history holds
      runs/<profile>/<model>/<started>-<commit>-<sha>.json   each run's results file, byte for byte

RUN: {"file", "profile", "model", "started", "commit", "dirty", "sha256"}. A run is its results
file's bytes: the same file added twice is one run; another file with the same profile, model and
start time is refused (nothing stored is ever rewritten). Adding is all or nothing: the run files
are written first (atomically, under names that only the same bytes give), then the index is
replaced atomically; a file the index does not list is not part of the history, so an `add`
killed at any point leaves the history as it was. One writer at a time (index.json.lock).
"""
import hashlib
import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from perf import evidence, files, outputs, results
from perf.options import OptionError, ToolParser
from perf.table import SPEED_TEST, backend_order

INDEX_SCHEMA = 1
INDEX = "index.json"
SAFE_NAME = re.compile(r"^[A-Za-z0-9_+-][A-Za-z0-9._+-]*$")


class HistoryError(Exception):
    """Bad input or a history that cannot be used; the message is the one line the user sees."""


def default_dir() -> Path:
    """perf-history/ in the rootdir: the current git checkout's top, or the current folder."""
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                             timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        top = ""
    return Path(top or ".") / "perf-history"


# -- what a night holds ----------------------------------------------------------------------------
def samples_of(record: dict) -> dict[str, list[float]]:
    """{kind of evidence: one value per cycle} of a ms/token record, whatever the results schema
    (perf.evidence reads schemas 1 and 2 into today's `samples[key]`). The one place the history
    reads samples: a kind of evidence the suite adds appears here by itself."""
    return evidence.upgrade_record(record).get("samples") or {}


@dataclass
class Night:
    """One run of the history, in the order of the nights: when, which code, what it measured."""
    index: int
    started: str
    commit: str | None
    dirty: bool
    file: str
    versions: dict
    cells: dict = field(default_factory=dict)  # (backend, batch size) -> the ms/token record

    @property
    def label(self) -> str:
        return f"{self.started[:16].replace('T', ' ')} {(self.commit or 'no commit')[:10]}{'+dirty' if self.dirty else ''}"


@dataclass
class History:
    """The runs of one hardware profile and model, oldest first."""
    profile: str
    model: str
    nights: list[Night]

    def cells(self) -> list[tuple[str, int]]:
        keys = {key for night in self.nights for key in night.cells}
        order = backend_order(b for b, _ in keys)
        return sorted(keys, key=lambda k: (order.index(k[0]), k[1]))


# -- the store -------------------------------------------------------------------------------------
def _read_index(store: Path) -> list[dict]:
    path = store / INDEX
    if not path.exists():
        return []
    data = files.read_json(path, HistoryError, "the history's index")
    if not isinstance(data, dict) or data.get("schema") != INDEX_SCHEMA or not isinstance(data.get("runs"), list):
        raise HistoryError(f"{path}: not a history index of schema {INDEX_SCHEMA} "
                           "(perf-history add writes one; is --history the right folder?)")
    return data["runs"]


def _identity(run: dict) -> tuple:
    return run["profile"], run["model"], run["started"]


def _entry_for(path: Path, raw: bytes) -> tuple[dict, dict]:
    """The index entry of one results file (`raw`: its bytes) and the file's data, checked;
    HistoryError if unusable."""
    try:
        data = results.parse(raw, path)  # the bytes whose digest the index keeps
    except results.ResultsError as exc:
        raise HistoryError(str(exc)) from None
    if data.get("side_by_side"):
        raise HistoryError(f"{path}: a side-by-side run (--base {data['side_by_side'].get('base')}): its cells "
                           "are head against base, not a night; add the nightly runs (against baselines)")
    if not data.get("hardware_profile"):
        raise HistoryError(f"{path}: no hardware profile (the run measured nothing?); nothing to keep")
    if not any(t["test"] == SPEED_TEST for t in data["tests"]):
        raise HistoryError(f"{path}: no ms/token test in the results; nothing to keep")
    for key in ("hardware_profile", "model"):
        if not SAFE_NAME.match(data[key]):
            raise HistoryError(f"{path}: field '{key}': {data[key]!r} cannot name a folder of the history "
                               "(letters, digits, '.', '_', '+', '-')")
    fp = data["fingerprint"]
    digest = hashlib.sha256(raw).hexdigest()
    commit = fp.get("git_commit")
    stamp = data["started"].replace(":", "").replace("-", "").replace("+0000", "Z")
    name = f"{stamp}-{(commit or 'nocommit')[:10]}-{digest[:12]}.json"
    entry = {"file": f"runs/{data['hardware_profile']}/{data['model']}/{name}",
             "profile": data["hardware_profile"], "model": data["model"],
             "started": data["started"], "commit": commit, "dirty": bool(fp.get("git_dirty")), "sha256": digest}
    return entry, data


def _continues(store: Path, runs: list[dict], path: Path, entry: dict, data: dict, planned: dict) -> None:
    """HistoryError unless the run continues its series: the same model (its identity, not only
    its name) and protocol as the newest night of its profile and model, stored or planned before
    it in this add (a series of another model or another number of tokens would show a step that
    is not the code's)."""
    key = (entry["profile"], entry["model"])
    before = planned.get(key)
    if before is None:
        stored = [r for r in runs if (r["profile"], r["model"]) == key and r["started"] < entry["started"]]
        if not stored:
            return
        newest = max(stored, key=lambda r: r["started"])
        before = (newest["file"], results.read(store / newest["file"]))
    differs = results.run_differences(data, before[1])
    if differs:
        raise HistoryError(f"{path}: does not continue the history of {entry['profile']}/{entry['model']} "
                           f"(its night before: {before[0]}): {'; '.join(differs)}. A history holds one model "
                           "and one protocol per profile and model name: give this run its own --history")


def add(store: Path, paths: list[Path]) -> list[str]:
    """Add results files to the history; one line per file saying what happened. Every file is
    read and checked before anything is written; HistoryError (nothing written) otherwise."""
    store = Path(store)
    planned = []
    for path in paths:
        path = Path(path)
        try:
            raw = path.read_bytes()
        except IsADirectoryError:
            raise HistoryError(f"{path}: a folder, where a results file should be; name the file") from None
        except OSError as exc:
            raise HistoryError(f"{path}: cannot read the results file: {exc.strerror}") from None
        planned.append((path, raw, *_entry_for(path, raw)))
    if store.exists() and not store.is_dir():
        raise HistoryError(f"{store}: not a folder; --history names the history's folder")
    with files.locked(store / INDEX):
        for leftover in store.rglob(".*.tmp"):  # a killed add's half-written file; no other add runs now
            leftover.unlink()
        runs = _read_index(store)
        known = {_identity(r): r for r in runs}
        notes, new, newest = {}, [], {}
        for path, raw, entry, data in sorted(planned, key=lambda p: p[2]["started"]):  # every decision before any write
            same = known.get(_identity(entry))
            if same is not None and same["sha256"] == entry["sha256"]:
                notes[path] = f"{path}: already in the history ({same['file']}); nothing changed"
                continue
            if same is not None:
                raise HistoryError(f"{path}: another file of the run {entry['profile']}/{entry['model']} started "
                                   f"{entry['started']} is in the history ({same['file']}); it is kept as it was "
                                   "(a history never rewrites a run)")
            _continues(store, runs, path, entry, data, newest)
            newest[(entry["profile"], entry["model"])] = (str(path), data)
            known[_identity(entry)] = entry
            new.append((raw, entry))
            notes[path] = f"{path}: added to {store} as {entry['file']}"
        for raw, entry in new:
            target = store / entry["file"]
            target.parent.mkdir(parents=True, exist_ok=True)
            if not (target.exists() and hashlib.sha256(target.read_bytes()).hexdigest() == entry["sha256"]):
                files.write_atomically(target, raw.decode())  # else left over from a killed add: the same bytes
        if new:
            if not (store / ".gitignore").exists():  # the store is a git branch: its lock is not history
                files.write_atomically(store / ".gitignore", "*.lock\n.*.tmp\n")
            runs = sorted(runs + [entry for _, entry in new], key=lambda r: (r["profile"], r["model"], r["started"]))
            files.write_atomically(store / INDEX, json.dumps({"schema": INDEX_SCHEMA, "runs": runs}, indent=1) + "\n")
    return [notes[path] for path, *_ in planned if path in notes]


def load(store: Path) -> list[History]:
    """Every profile and model of the history, its nights oldest first."""
    store = Path(store)
    if not store.is_dir():
        raise HistoryError(f"{store}: no history here (perf-history add RESULTS... starts one; or give --history DIR)")
    runs = _read_index(store)
    groups: dict[tuple[str, str], list[Night]] = {}
    for run in runs:
        path = store / run["file"]
        data = results.read(path) if path.exists() else None
        if data is None:
            raise HistoryError(f"{path}: listed in {store / INDEX} but missing; restore it from the history's "
                               "git branch or artifact")
        nights = groups.setdefault((run["profile"], run["model"]), [])
        night = Night(len(nights), run["started"], run["commit"], run["dirty"], run["file"],
                      data["fingerprint"].get("versions") or {})
        night.cells = {(t["backend"], t["batch_size"]): t for t in data["tests"] if t["test"] == SPEED_TEST}
        nights.append(night)
    return [History(profile, model, nights) for (profile, model), nights in sorted(groups.items())]


# -- the command -----------------------------------------------------------------------------------
USAGE = """Every night kept, change points found, a trend page (docs/history.md).

    perf-history add RESULTS... [--history DIR]
    perf-history changes [--history DIR] [--since DATE|COMMIT] [--new] [--markdown] [--fail-on regression|never]
    perf-history page --out FILE [--history DIR] [--baselines DIR]
    perf-history export [--out FILE] [--history DIR]

(`python -m perf.history` is the same command.) --history defaults to perf-history/ in the rootdir
(the current git checkout's top, or the current folder). `changes --new` lists the change points
that the newest night of each history brought (found with it, not without it); `--fail-on
regression` exits 1 when a listed change point is a regression on decided evidence (not on wall
time alone). Exit status 2 on bad input, with one line on stderr; nothing is written then.
"""


def main(argv=None) -> int:
    import argparse
    import sys
    ap = ToolParser(prog="perf-history", description=USAGE.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=USAGE)
    verbs = ap.add_subparsers(dest="verb", required=True, metavar="add|changes|page|export")
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--history", type=Path, help="the history's folder (default: perf-history/ in the rootdir)")
    add_p = verbs.add_parser("add", parents=[store], help="add results files (the suite's --results) to the history")
    add_p.add_argument("results", nargs="+", type=Path)
    ch = verbs.add_parser("changes", parents=[store], help="the change points, newest first")
    ch.add_argument("--since", help="only change points after this date (YYYY-MM-DD) or commit (a prefix)")
    ch.add_argument("--new", action="store_true", help="only those the newest night brought")
    ch.add_argument("--markdown", action="store_true", help="markdown (a job summary) instead of text")
    ch.add_argument("--fail-on", choices=["regression", "never"], default="never",
                    help="exit 1 when a listed change point is a regression on decided evidence")
    pg = verbs.add_parser("page", parents=[store], help="write the trend page (static HTML)")
    pg.add_argument("--out", type=Path, required=True)
    pg.add_argument("--baselines", type=Path, help="published entries drawn as reference lines "
                                                   "(default: baselines/ in the rootdir)")
    ex = verbs.add_parser("export", parents=[store], help="CSV: one row per night, one column per cell and evidence")
    ex.add_argument("--out", type=Path, help="default: stdout")
    args = ap.parse_args(argv)
    folder = args.history or default_dir()
    out = getattr(args, "out", None)
    status = 0
    try:
        if out is not None:  # checked before anything is read or written
            outputs.writable_file("--out", str(out), "index.html" if args.verb == "page" else "history.csv")
            outputs.not_a_suite_file("--out", out)
            outputs.not_an_input("--out", out, {}, {"the --history folder": folder})  # its index, its runs
        if args.verb == "add":
            print("\n".join(add(folder, args.results)))
            return 0
        from perf import changepoints, trendpage
        histories = load(folder)
        if args.verb == "changes":
            listed = changepoints.listed(histories, since=args.since, new_only=args.new)
            text = changepoints.render(listed, histories, markdown=args.markdown)
            status = 1 if args.fail_on == "regression" and any(c.regression and c.decided for c in listed) else 0
        elif args.verb == "page":
            text = trendpage.render(histories, args.baselines or default_dir().parent / "baselines")
        else:
            text = export_csv(histories)
        files.write_atomically(out, text) if out else sys.stdout.write(text)
        if args.verb == "page":
            print(f"perf-history: wrote {out}")
    except (HistoryError, OptionError, results.ResultsError) as exc:  # a stored run damaged (a bad merge)
        return ap.fail(exc)
    except OSError as exc:  # a file could not be written (a full disk); what was stored is as it was
        return ap.fail(f"cannot write {exc.filename or out or folder}: {exc.strerror}"
                       + ("; the history is as it was" if args.verb == "add" else ""))
    return status


def export_csv(histories: list[History]) -> str:
    """One row per night (time, commit, profile, model), one column per cell and kind: the median of
    the night's samples. Otava's CSV importer and spreadsheets read it as it is."""
    import csv
    import io
    import statistics
    from perf.changepoints import KINDS, night_values
    columns, rows = [], []
    for h in histories:
        for night in h.nights:
            row = {"time": night.started, "commit": night.commit or "", "profile": h.profile, "model": h.model}
            for (backend, size), record in night.cells.items():
                for kind in KINDS:
                    values = night_values(kind, record)
                    if values:
                        name = f"{backend}.bs{size}.{kind.key}"
                        if name not in columns:
                            columns.append(name)
                        row[name] = f"{statistics.median(values):.6g}"
            rows.append(row)
    out = io.StringIO()
    writer = csv.DictWriter(out, ["time", "commit", "profile", "model", *sorted(columns)], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


if __name__ == "__main__":  # run through the package's module, so its exceptions are the ones caught
    import sys
    from perf.history import main as perf_history
    sys.exit(perf_history())
