"""Record baseline entries from results files already written, as `--update-baselines` does at
the end of each timed test, without running anything again.

    perf-record-baselines RESULTS.json [RESULTS.json ...] [--baselines DIR] [--pool] [--force]

(`python -m perf.record` and `python tools/record_baselines.py` are the same command.)

For a run reviewed after the fact (a nightly job's artifact, a GPU session's results), or to pool
several runs into one baseline: with --pool each file, in the order given, adds its samples to
the entries (a file whose samples are already in an entry is not added twice). Entries go to
`DIR/<hardware profile>/<model>.json` under the same rules as --update-baselines (lock, history,
published entries kept unless --force); each entry is dated when its run started. Every file is
read and checked before anything is written. An entry measured on a busy host (other processes
on the worker's CPUs, or its main thread waiting for one) is not recorded unless --force: exit
status 1 then. Exit status 2 on bad input, with one line on stderr.
"""
import sys
from pathlib import Path

from perf import baselines, outputs, results, verdicts
from perf.options import OptionError, ToolParser


def plan(paths: list[Path], store: Path) -> list[tuple[Path, dict, dict]]:
    """Every results file read, checked and turned into entries before anything is written:
    (path, run, {profile: {backend: {bsN: entry}}}); ResultsError or OptionError otherwise."""
    for path in paths:
        if outputs.store_file(path, store):
            raise OptionError(f"{path}: inside the baseline store {store}, which this command rewrites; "
                              "move the results file out of it first")
    planned = []
    for path in paths:
        run = results.read(path)
        if run.get("side_by_side"):
            raise OptionError(f"{path}: a side-by-side run (pytest --base {run['side_by_side']['base']}): its cells "
                              "alternate with another checkout's and are judged against it, not measured for a "
                              "baseline (pytest refuses --base with --update-baselines too); record from a run without --base")
        if run.get("hardware_profile") is None:
            raise OptionError(f"{path}: no hardware profile (the run measured nothing?)")
        by_profile = baselines.entries_from(run["tests"], run["fingerprint"], run["hardware_profile"],
                                            date=run["started"])
        for profile in by_profile:
            outputs.check_baseline_store(store, profile, run["model"], option="--baselines")
        planned.append((path, run, by_profile))
    return planned


def main(argv=None) -> int:
    ap = ToolParser(prog="perf-record-baselines", description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", type=Path, help="the suite's results files (--results)")
    ap.add_argument("--baselines", type=Path, default=Path("baselines"),
                    help="the store (default: ./baselines)")
    ap.add_argument("--pool", action="store_true", help="add the samples to the entries instead of replacing them, "
                                                         "unless the run was a REGRESSION or IMPROVEMENT against them, or its work differs")
    ap.add_argument("--force", action="store_true", help="also replace published entries, and record entries measured "
                                                          "on a busy host; with --pool, pool anyway")
    args = ap.parse_args(argv)
    try:
        planned = plan(args.results, args.baselines)
    except (results.ResultsError, OptionError) as exc:
        return ap.fail(exc)
    refused = False  # an entry measured on a busy host, left out
    for path, run, by_profile in planned:
        if not by_profile:
            print(f"{path}: no measured ms/token record; nothing recorded")
        for profile, entries in by_profile.items():
            target = baselines.baseline_path(args.baselines, profile, run["model"])
            try:
                mode = ("force-pool" if args.force else "pool") if args.pool else "force" if args.force else "yes"
                notes = baselines.update(target, profile, run["model"], entries, mode, refuse=verdicts.pool_refusal,
                                         busy=verdicts.busy_refusal)
                refused = refused or any(note.startswith(baselines.NOT_RECORDED) for note in notes)
            except baselines.BaselineError as exc:  # the file is left as it was
                return ap.fail(exc)
            except OSError as exc:
                return ap.fail(f"cannot write {target}: {exc.strerror}; it is left as it was")
            print(f"{path} -> {target}: " + "; ".join(notes))
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
