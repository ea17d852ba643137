"""Record baseline entries from results files already written, as `--update-baselines` does at
the end of each timed test, without running anything again.

    python tools/record_baselines.py RESULTS.json [RESULTS.json ...] [--baselines DIR] [--pool | --force]

For a run reviewed after the fact (a nightly job's artifact, a GPU session's results), or to pool
several runs into one baseline: with --pool each file, in the order given, adds its samples to
the entries (a file whose samples are already in an entry is not added twice). Entries go to
`DIR/<hardware profile>/<model>.json` under the same rules as --update-baselines (lock, history,
published entries kept unless --force); each entry is dated when its run started.
"""
import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from perf import baselines  # noqa: E402


def read(path: Path) -> dict:
    try:
        results = json.loads(path.read_text())
        for field in ("model", "fingerprint", "hardware_profile", "started", "tests"):
            results[field]  # noqa: B018  (a KeyError names the field)
    except FileNotFoundError:
        sys.exit(f"{path}: no such results file")
    except json.JSONDecodeError as exc:
        sys.exit(f"{path}: not valid JSON ({exc})")
    except KeyError as exc:
        sys.exit(f"{path}: missing field {exc}: not a results file of the suite (pytest perf --results)")
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", type=Path, help="the suite's results files (--results)")
    ap.add_argument("--baselines", type=Path, default=REPO / "baselines", help="the store (default: baselines/)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--pool", action="store_true", help="add the samples to the entries instead of replacing them")
    mode.add_argument("--force", action="store_true", help="also replace published entries")
    args = ap.parse_args(argv)
    planned = [(path, read(path)) for path in args.results]
    per_file = []  # every file read and turned into entries before anything is written
    for path, results in planned:
        try:
            per_file.append(baselines.entries_from(results["tests"], results["fingerprint"],
                                                  results["hardware_profile"], date=results["started"]))
        except KeyError as exc:
            sys.exit(f"{path}: a record or the fingerprint misses field {exc}: not a results file of the suite")
    for (path, results), by_profile in zip(planned, per_file):
        if not by_profile:
            print(f"{path}: no measured ms/token record; nothing recorded")
        for profile, entries in by_profile.items():
            target = baselines.baseline_path(args.baselines, profile, results["model"])
            try:
                notes = baselines.update(target, profile, results["model"], entries,
                                         "pool" if args.pool else "force" if args.force else "yes")
            except baselines.BaselineError as exc:  # the file is left as it was
                sys.exit(str(exc))
            print(f"{path} -> {target}: " + "; ".join(notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
