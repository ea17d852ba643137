"""Compare change-point libraries on the history's own series (docs/notes/2026-12-06-history-change-points.md).

    .venv/bin/python scripts/compare_change_points.py series --history DIR --out series.json
    python scripts/compare_change_points.py detect series.json --method perf|otava|spa [--out found.json]
    python scripts/compare_change_points.py score series.json found.json

`series` writes every cell's series of each measured kind (each night's samples; wall and host
time without the busy nights), as perf-history sees them, with the nights where a change was
made (`--changed NIGHT,...`, 1-based, for a synthetic history). `detect` runs one method on them,
in whatever interpreter has its library (Apache Otava and MongoDB's signal-processing-algorithms
pin numpy versions the suite cannot take, so each gets its own virtualenv): `perf` is
perf.changepoints.detect (ruptures); `otava` is Otava's E-Divisive with its Student t-test
(compute_change_points, window 50, p 0.001); `spa` is signal-processing-algorithms' E-Divisive
with its permutation test (p 0.01, 1000 permutations). Otava and spa see each night's median.
`score` counts, per method, change points at a changed night (+-1) and elsewhere.
"""
import argparse
import json
import sys
from pathlib import Path


def dump_series(args) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from perf import changepoints, history
    out = []
    for h in history.load(args.history):
        for cell in h.cells():
            for kind in changepoints.KINDS:
                if kind.exact:
                    continue
                index, values = changepoints._series(h, cell, kind)
                if len(values) >= 4:
                    out.append({"name": f"{h.profile}/{h.model} {cell[0]} bs={cell[1]} {kind.key}",
                                "nights": [i + 1 for i in index], "samples": values})
    changed = [int(n) for n in args.changed.split(",")] if args.changed else []
    Path(args.out).write_text(json.dumps({"changed": changed, "series": out}))
    print(f"{len(out)} series to {args.out}")
    return 0


def detect(args) -> int:
    import numpy as np
    data = json.loads(Path(args.series).read_text())
    found = []
    for s in data["series"]:
        medians = [float(np.median(np.log(x))) for x in s["samples"]]
        if args.method == "perf":
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from perf.changepoints import detect as perf_detect
            cuts = perf_detect(s["samples"])
        elif args.method == "otava":
            from otava.analysis import compute_change_points
            cuts = [int(c.index) for c in compute_change_points(medians, window_len=50, max_pvalue=0.001)[0]]
        else:
            from signal_processing_algorithms.energy_statistics.energy_statistics import e_divisive
            cuts = [int(c) for c in e_divisive(np.array(medians), pvalue=0.01, permutations=1000)]
        found.append({"name": s["name"], "after": sorted(s["nights"][c] for c in cuts)})
    text = json.dumps({"method": args.method, "found": found})
    Path(args.out).write_text(text) if args.out else print(text)
    return 0


def score(args) -> int:
    data = json.loads(Path(args.series).read_text())
    changed = set(data["changed"])
    for path in args.found:
        result = json.loads(Path(path).read_text())
        right = wrong = series_right = series_wrong = 0
        for f in result["found"]:
            near = [n for n in f["after"] if any(abs(n - c) <= 1 for c in changed)]
            right, wrong = right + len(near), wrong + len(f["after"]) - len(near)
            series_right, series_wrong = series_right + bool(near), series_wrong + (len(near) < len(f["after"]))
            for night in sorted(set(f["after"]) - set(near)):
                print(f"  {result['method']}: {f['name']}: change at night {night}, where none was made")
        print(f"{result['method']}: {right} change points at a changed night, {wrong} elsewhere; series with one "
              f"at a changed night {series_right}, with one elsewhere {series_wrong}, of {len(result['found'])}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    verbs = ap.add_subparsers(dest="verb", required=True)
    s = verbs.add_parser("series")
    s.add_argument("--history", type=Path, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--changed", help="1-based nights where a change was made, comma-separated")
    d = verbs.add_parser("detect")
    d.add_argument("series")
    d.add_argument("--method", choices=["perf", "otava", "spa"], required=True)
    d.add_argument("--out")
    c = verbs.add_parser("score")
    c.add_argument("series")
    c.add_argument("found", nargs="+")
    args = ap.parse_args(argv)
    return {"series": dump_series, "detect": detect, "score": score}[args.verb](args)


if __name__ == "__main__":
    sys.exit(main())
