"""Render a perf run as markdown for a PR comment or a job summary, against baselines or another run.

    python tools/report.py RESULTS... [--against BASELINES_DIR | --against BASELINE.json | --against OTHER_RESULTS]
                           [--out report.md] [--plot plot.png] [--fail-on regression|inconclusive|never]
    python tools/report.py --baseline-only baselines/8xA100-80GB/bigscience--bloom.json
    python tools/report.py RESULTS... --article baselines/8xA100-80GB/bigscience--bloom.json

--article adds this run beside the article's published table, cell by cell, with the ratio: a
comparison across hardware (and, for a synthetic model, other weights or a slice of the layers,
which the section says), not a verdict.

RESULTS is the suite's --results file. Against a baseline store, the file for the run's hardware
profile and model is used; against another results file (the PR case: base vs head in one job),
both sides' samples decide the verdicts. Exit status: 1 when --fail-on says so, 2 on bad input
(one line on stderr, no output file left behind), else 0.
"""
import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perf import baselines, synthetic  # noqa: E402
from perf.backends import BACKENDS  # noqa: E402
from perf.verdicts import IMPROVEMENT, INCONCLUSIVE, NEW, NO_CHANGE, REFUSED, REGRESSION  # noqa: E402

MARK = {REGRESSION: "🔴", IMPROVEMENT: "🟢", NO_CHANGE: "⚪", INCONCLUSIVE: "🟡", NEW: "🆕", REFUSED: "⛔"}
LEGEND = "🔴 regression · 🟢 improvement · ⚪ no change · 🟡 inconclusive · 🆕 no baseline · ⛔ not comparable"


class ReportError(Exception):
    """Bad input; the message is the one line the user sees."""


def read_json(path: Path, what: str) -> dict:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ReportError(f"{path}: cannot read {what}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except ValueError:
        raise ReportError(f"{path}: {what} is not valid JSON (empty or truncated?)") from None


def read_baseline(path: Path, what: str, data: dict | None = None) -> dict:
    """A baseline file, validated (`data`: its JSON, when already read)."""
    data = read_json(path, what) if data is None else data
    try:
        baselines.validate(data, path)
    except baselines.BaselineError as exc:
        raise ReportError(str(exc)) from None
    return data


def read_results(paths: list[Path]) -> dict:
    """One run's results; several files (one run split over calls with -k, as in a time-limited
    GPU lease) are merged, tests by node id, later files winning, if model and profile agree."""
    merged = None
    for path in paths:
        data = read_json(path, "results file")
        if not isinstance(data, dict) or "tests" not in data or "model" not in data:
            raise ReportError(f"{path}: not a results file of this suite (no 'model'/'tests')")
        if merged is None:
            merged = {**data, "tests": {t["nodeid"]: t for t in data["tests"]}}
            first = path
            continue
        for key in ("model", "hardware_profile"):
            if data.get(key) != merged.get(key):
                raise ReportError(f"{path}: {key} {data.get(key)!r}, but {first} has {merged.get(key)!r}; "
                                  "only files of one model and hardware profile merge")
        cpus = [d["protocol"].get("cpus") for d in (data, merged)]
        if cpus[0] != cpus[1]:
            raise ReportError(f"{path}: --cpus {cpus[0]!r}, but {first} has {cpus[1]!r}; "
                              "only files of one --cpus setting merge (null: unpinned)")
        merged["tests"].update({t["nodeid"]: t for t in data["tests"]})
        merged["memory_bandwidth_gb_s"] = merged.get("memory_bandwidth_gb_s") or data.get("memory_bandwidth_gb_s")
    merged["tests"] = list(merged["tests"].values())
    if not [t for t in merged["tests"] if t["test"] == baselines.SPEED_TEST]:
        raise ReportError(f"{', '.join(map(str, paths))}: no ms/token test in the results")
    return merged


def title(backend: str) -> str:
    return BACKENDS[backend].title if backend in BACKENDS else backend


# -- the two sides -------------------------------------------------------------------------
def current_side(results: dict) -> dict:
    """(backend, batch size) -> the speed record of this run."""
    return {(t["backend"], t["batch_size"]): t for t in results["tests"] if t["test"] == baselines.SPEED_TEST}


def base_side(results: dict, against: str | None) -> tuple[dict | None, str]:
    """(backend id -> {bsN: baseline entry}, a description), from a store, a baseline or a run."""
    if against is None:
        return None, "no baseline"
    path = Path(against)
    if path.is_dir():
        file = baselines.baseline_path(path, results["hardware_profile"], results["model"])
        if not file.exists():
            raise ReportError(f"{path}: no baseline for profile {results['hardware_profile']!r} and model "
                              f"{results['model']!r} (expected {file})")
        path = file
    data = read_json(path, "--against file")
    if "entries" in data:  # a baseline file
        read_baseline(path, "--against file", data)
        if (data.get("model"), data.get("profile")) != (results["model"], results["hardware_profile"]):
            raise ReportError(f"{path}: baseline of model {data.get('model')!r} on {data.get('profile')!r}, but the "
                              f"results are {results['model']!r} on {results['hardware_profile']!r}")
        return data["entries"], f"baseline `{path}`"
    if "tests" not in data:
        raise ReportError(f"{path}: neither a baseline file nor a results file")
    if data["model"] != results["model"]:
        raise ReportError(f"{path}: results of model {data['model']!r}, but RESULTS are {results['model']!r}")
    entries = {}
    for (backend, size), rec in current_side(data).items():
        if "protocol" in rec and (rec.get("ms_per_token") is not None or rec["outcome"] == "oom"):
            entries.setdefault(backend, {})[baselines.entry_key(size)] = \
                baselines.entry_from(rec, rec["protocol"], data["fingerprint"])
    return entries, f"run `{path}`"


def verdicts(current: dict, base: dict | None) -> dict:
    out = {}
    for (backend, size), rec in current.items():
        if rec["outcome"] not in ("passed", "failed", "oom") or (rec.get("ms_per_token") is None and rec["outcome"] != "oom"):
            continue
        entry = (base or {}).get(backend, {}).get(baselines.entry_key(size))
        protocol = rec.get("protocol") or {"new_tokens": None, "world_size": 1}
        out[(backend, size)] = (baselines.judge(entry, rec, protocol), entry)
    return out


# -- markdown ------------------------------------------------------------------------------
def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def render(results: dict, base: dict | None, described: str) -> tuple[str, dict]:
    current = current_side(results)
    judged = verdicts(current, base)
    backends = [b for b in BACKENDS if any(k[0] == b for k in current)]
    backends += sorted({k[0] for k in current} - set(backends))
    sizes = sorted({k[1] for k in current})
    notes: list[str] = []

    def footnote(text: str) -> str:
        if text not in notes:
            notes.append(text)
        return f"[^{notes.index(text) + 1}]"

    counts = {}
    for verdict, _ in judged.values():
        counts[verdict.kind] = counts.get(verdict.kind, 0) + 1
    skipped = sum(1 for rec in current.values() if rec["outcome"] == "skipped")
    failed = sum(1 for rec in current.values() if rec["outcome"] in ("failed", "worker crash")
                 and rec.get("ms_per_token") is None)
    words = [(REGRESSION, "regression"), (IMPROVEMENT, "improvement"), (NO_CHANGE, "unchanged"),
             (INCONCLUSIVE, "inconclusive"), (NEW, "new"), (REFUSED, "not comparable")]
    parts = [f"{counts[k]} {w}{'s' if counts[k] != 1 and w in ('regression', 'improvement') else ''}"
             for k, w in words if counts.get(k)]
    parts += [f"{skipped} skipped"] * bool(skipped) + [f"{failed} failed"] * bool(failed)
    fp = results["fingerprint"]
    lines = [f"**{', '.join(parts)}**", "",
             f"{results['model']} on {results.get('hardware_profile')} ({', '.join(sorted(set(fp['devices'])))}; "
             f"torch {fp['versions'].get('torch')}, transformers {fp['versions'].get('transformers')}, "
             f"deepspeed {fp['versions'].get('deepspeed')}), against {described}; "
             f"{results['protocol']['new_tokens']} new tokens, median of {results['protocol']['cycles']} cycles"
             + (f"; workers pinned to CPU {','.join(map(str, cpus))}." if (cpus := results["protocol"].get("cpus")) else "."),
             "", "### ms/token", ""]

    def cell(backend, size, figure, unit_format):
        rec = current.get((backend, size))
        if rec is None:
            return ""
        if rec["outcome"] == "oom":
            verdict = judged.get((backend, size), (None,))[0]
            return "OOM" + (f" {MARK[verdict.kind]}" if verdict and verdict.kind in (REGRESSION, IMPROVEMENT) else "")
        if rec["outcome"] == "skipped":
            return "skipped" + footnote(f"{backend}: {rec['reason']}")
        value = figure(rec)
        if value is None:  # a failed test, or a figure this run did not record
            if rec["outcome"] in ("failed", "worker crash"):
                return "failed" + footnote(f"{backend} bs={size}: {rec.get('reason')}")
            return "n/a"
        text = unit_format(value)
        if figure is _ms and (backend, size) in judged:
            verdict = judged[(backend, size)][0]
            if verdict.change is not None:
                text += f" ({verdict.change:+.1%})"
            text += f" {MARK[verdict.kind]}"
        return text

    for name, figure, fmt in (("ms/token", _ms, "{:.2f}".format), ("time to first token, ms", _ttft, "{:.1f}".format),
                              ("peak memory, MiB (max over devices)", _memory, "{:.0f}".format),
                              ("weight bandwidth, GB/s (share of the device's copy bandwidth)", _bandwidth,
                               lambda v: f"{v[0]:.1f}" + (f" ({v[1]:.0%})" if v[1] else ""))):
        if name != "ms/token":
            lines += ["", f"### {name[0].upper() + name[1:]}", ""]
        lines += _table(["Project"] + [f"bs={s}" for s in sizes],
                        [[title(b)] + [cell(b, s, figure, fmt) for s in sizes] for b in backends])
    lines += ["", LEGEND]
    if notes:
        lines += [""] + [f"[^{i}]: {text}" for i, text in enumerate(notes, 1)]
    details = [(k, v) for k, v in judged.items() if v[0].kind in (REGRESSION, REFUSED)]
    for (backend, size), (verdict, entry) in details:
        rec = current[(backend, size)]
        lines += ["", f"<details><summary>{MARK[verdict.kind]} {verdict.kind}: {title(backend)} bs={size}</summary>", ""]
        lines += [f"- verdict: {verdict.describe()}"]
        if entry is not None and rec.get("ms_per_token") is not None:
            base_samples = entry["samples"].get("ms_per_token") or []
            lines += [f"- this run: median {rec['ms_per_token']:.3f} ms/token, {len(rec['ms_per_token_samples'])} samples, "
                      f"{min(rec['ms_per_token_samples']):.3f}..{max(rec['ms_per_token_samples']):.3f}",
                      f"- baseline: {entry['ms_per_token']:.3f} ms/token ({entry['provenance']['kind']}), "
                      + (f"{len(base_samples)} samples, {min(base_samples):.3f}..{max(base_samples):.3f}"
                         if base_samples else "no samples")]
            ours = rec.get("versions") or {}
            theirs = (entry["provenance"].get("versions") or {})
            diffs = [f"{k} {theirs.get(k)} → {ours.get(k)}" for k in sorted(set(ours) | set(theirs))
                     if theirs and ours.get(k) != theirs.get(k)]
            if diffs:
                lines += ["- versions: " + ", ".join(diffs)]
        lines += ["", "</details>"]
    # An improvement may need the baseline updated, or doubting (a baseline of one process); an
    # inconclusive cell says what would decide it (more cycles, a quieter host).
    for kind, heading in ((IMPROVEMENT, "improved"), (INCONCLUSIVE, "inconclusive: why")):
        cells = [(key, verdict) for key, (verdict, _) in judged.items() if verdict.kind == kind]
        if cells:
            lines += ["", f"<details><summary>{MARK[kind]} {len(cells)} {heading}</summary>", ""]
            lines += [f"- {title(backend)} bs={size}: {verdict.describe()}" for (backend, size), verdict in cells]
            lines += ["", "</details>"]
    return "\n".join(lines) + "\n", counts


def _ms(rec):
    return rec.get("ms_per_token")


def _ttft(rec):
    return rec.get("ttft_ms")


def _bandwidth(rec):
    """Roofline: weight bytes read per decode step / time per output token, and its share."""
    if rec.get("weight_bandwidth_gb_s") is None:
        return None
    return rec["weight_bandwidth_gb_s"], rec.get("bandwidth_fraction")


def _memory(rec):
    memory = (rec.get("peak_memory") or {}).get("per_device_mb")
    return max(memory) if memory else None


def _as_published(entry: dict) -> str:
    """A baseline entry's figure as its source printed it (OOM for an out-of-memory entry)."""
    if entry["outcome"] == "oom":
        return "OOM"
    return entry["provenance"].get("as_published") or f"{entry['ms_per_token']:.2f}"


def render_baseline(path: Path) -> str:
    """A baseline file as the article's table: values exactly as stored (as published)."""
    data = read_baseline(path, "baseline file")
    sizes = sorted({int(k[2:]) for e in data["entries"].values() for k in e})
    rows = []
    for backend in [b for b in BACKENDS if b in data["entries"]] + sorted(set(data["entries"]) - set(BACKENDS)):
        row = [title(backend)]
        for size in sizes:
            entry = data["entries"][backend].get(f"bs{size}")
            row.append("" if entry is None else _as_published(entry))
        rows.append(row)
    provenance = [e["provenance"] for es in data["entries"].values() for e in es.values()]
    runs = [p.get("runs", 1) for p in provenance if p["kind"] == "measured"]
    described = "; ".join(sorted({p["source"] for p in provenance if p.get("source")})
                          + ([f"measured, samples of up to {max(runs)} run(s) an entry"] if runs else []))
    return "\n".join([f"ms/token, {data['model']} on {data['profile']} ({described})", ""]
                     + _table(["Project"] + [f"bs={s}" for s in sizes], rows)) + "\n"


def render_article(results: dict, path: Path) -> str:
    """This run beside a published table: "ours / theirs (ours/theirs ×)" per cell."""
    data = read_baseline(path, "--article file")
    current = current_side(results)
    article = data["entries"]
    sizes = sorted({int(k[2:]) for e in article.values() for k in e} | {k[1] for k in current})
    backends = [b for b in BACKENDS if b in article or any(k[0] == b for k in current)]
    notes: list[str] = []
    rows = []
    for backend in backends:
        row = [title(backend)]
        for size in sizes:
            entry, rec = article.get(backend, {}).get(f"bs{size}"), current.get((backend, size))
            theirs = _as_published(entry) if entry else "–"
            ours = "–" if rec is None else "OOM" if rec["outcome"] == "oom" else \
                f"{rec['ms_per_token']:.2f}" if rec.get("ms_per_token") is not None else rec["outcome"]
            cell = f"{ours} / {theirs}"
            if rec and rec.get("ms_per_token") is not None and entry and entry["outcome"] != "oom":
                cell += f" ({rec['ms_per_token'] / entry['ms_per_token']:.2f}×)"
            ours_method = (rec or {}).get("protocol", {}).get("int8_method")
            theirs_method = (entry or {}).get("protocol", {}).get("int8_method")
            if rec and entry and ours_method != theirs_method:
                note = f"{backend}: int8 method here {ours_method!r}, in the article {theirs_method!r}"
                if note not in notes:
                    notes.append(note)
                cell += f"[^a{notes.index(note) + 1}]"
            row.append(cell)
        rows.append(row)
    sliced = synthetic.slice_of(results["model"])
    what = [f"ms/token here ({results['model']} on {results.get('hardware_profile')}) / in the article "
            f"({data['model']} on {data['profile']}), and their ratio; `{path}`."]
    if sliced:
        what.append(f"**A slice: {sliced[0]} of {sliced[1]} blocks** (the embedding and LM head whole), "
                    f"while the article ran all {sliced[1]}; the ratio compares unlike models.")
    lines = ["", f"### Beside the article ({data['profile']})", "", *what, ""]
    lines += _table(["Project"] + [f"bs={s}" for s in sizes], rows)
    if notes:
        lines += [""] + [f"[^a{i}]: {text}" for i, text in enumerate(notes, 1)]
    return "\n".join(lines) + "\n"


def plot(results: dict, base: dict | None, path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        raise ReportError("--plot needs matplotlib (in requirements.txt): pip install matplotlib, "
                          "or leave --plot out") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    current = current_side(results)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, backend in enumerate([b for b in BACKENDS if any(k[0] == b for k in current)]):
        color = f"C{i}"
        points = sorted((s, r["ms_per_token"]) for (b, s), r in current.items() if b == backend and r.get("ms_per_token"))
        if points:
            ax.plot(*zip(*points), "o-", color=color, label=title(backend))
        old = sorted((int(k[2:]), e["ms_per_token"]) for k, e in ((base or {}).get(backend) or {}).items()
                     if e.get("ms_per_token"))
        if old:
            ax.plot(*zip(*old), "s--", color=color, alpha=0.6, label=f"{title(backend)} (baseline)")
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("ms per token (lower is better)")
    ax.set_title(f"{results['model']} on {results.get('hardware_profile')}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def _write_atomically(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="*", help="the suite's results file (--results); several files of one "
                                                "run split with -k are merged")
    ap.add_argument("--against", help="a baseline store (folder), a baseline file, or another results file")
    ap.add_argument("--out", help="write the markdown here (default: stdout)")
    ap.add_argument("--plot", help="write a PNG of ms/token against batch size here")
    ap.add_argument("--fail-on", choices=["regression", "inconclusive", "never"], default="regression")
    ap.add_argument("--baseline-only", metavar="BASELINE", help="render a baseline file on its own")
    ap.add_argument("--article", metavar="BASELINE", help="add this run beside a published table (the article's)")
    args = ap.parse_args(argv)
    if args.baseline_only:
        extra = [flag for flag, given in (("RESULTS", args.results), ("--against", args.against),
                                          ("--plot", args.plot), ("--article", args.article)) if given]
        if extra:
            ap.error(f"--baseline-only renders the baseline file alone; drop {', '.join(extra)} "
                     "(or drop --baseline-only to render a run)")
    try:
        if args.baseline_only:
            text, counts = render_baseline(Path(args.baseline_only)), {}
        elif args.results:
            results = read_results([Path(p) for p in args.results])
            base, described = base_side(results, args.against)
            text, counts = render(results, base, described)
            if args.article:
                text += render_article(results, Path(args.article))
            if args.plot:
                _write_atomically(Path(args.plot), lambda p: plot(results, base, p))
        else:
            ap.error("give RESULTS or --baseline-only BASELINE")
    except ReportError as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 2
    if args.out:
        _write_atomically(Path(args.out), lambda p: p.write_text(text))
    else:
        sys.stdout.write(text)
    failing = {"regression": {REGRESSION}, "inconclusive": {REGRESSION, INCONCLUSIVE}, "never": set()}[args.fail_on]
    return 1 if failing & set(counts) else 0


if __name__ == "__main__":
    sys.exit(main())
