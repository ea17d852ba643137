"""Render a perf run as markdown for a PR comment or a job summary, against baselines or another run.

    perf-report RESULTS... [--against BASELINES_DIR | --against BASELINE.json | --against OTHER_RESULTS]
                [--out report.md] [--plot plot.png] [--fail-on regression|inconclusive|never]
    perf-report --baseline-only baselines/8xA100-80GB/bigscience--bloom.json
    perf-report RESULTS... --article baselines/8xA100-80GB/bigscience--bloom.json

(`python -m perf.report` and `python tools/report.py` are the same command.)

--article adds this run beside the article's published table, cell by cell, with the ratio: a
comparison across hardware (and, for a synthetic model, other weights or a slice of the layers,
which the section says), not a verdict.

RESULTS is the suite's --results file. Against a baseline store, the file for the run's hardware
profile and model is used; against another results file, both sides' samples decide the verdicts.
A side-by-side run (pytest perf --base DIR) is rendered as head vs base with its paired intervals
and the pairs each cell took; it needs no --against. Cells that failed or whose backend crashed are shown with the reason,
and count as failures for --fail-on regression. Exit status: 1 when --fail-on says so, 2 on bad
input (one line on stderr, no output file left behind), else 0.
"""
import sys
from pathlib import Path

from perf.backends import BACKENDS
from perf import baselines, evidence, files, outputs, results, synthetic, table, verdicts
from perf.correctness import THRESHOLDS
from perf.options import OptionError, ToolParser
from perf.protocol import SPEED_TEST
from perf.verdicts import DECIDED, IMPROVEMENT, INCONCLUSIVE, REFUSED, REGRESSION


class ReportError(Exception):
    """Bad input; the message is the one line the user sees."""


def read_baseline(path: Path, what: str) -> dict:
    """A baseline file, validated."""
    path = Path(path)
    if not _exists(path):
        raise ReportError(f"{path}: cannot read {what}: no such file")
    try:
        return baselines.load(path)
    except baselines.BaselineError as exc:
        raise ReportError(str(exc)) from None
    except OSError as exc:  # a name too long, a loop of links...
        raise ReportError(f"{path}: cannot read {what}: {exc.strerror}") from None


def read_run(paths: list[Path]) -> dict:
    replaced = []
    try:
        run = results.read_run(paths, replaced)
    except results.ResultsError as exc:
        raise ReportError(str(exc)) from None
    for line in replaced:  # two runs of one cell given together: only one is judged
        print(f"perf-report: {line}", file=sys.stderr)
    if not table.speed_records(run["tests"]) and not any(t["backend"] for t in run["tests"]):
        raise ReportError(f"{', '.join(map(str, paths))}: no ms/token test in the results")
    return run


# -- the two sides -------------------------------------------------------------------------
def base_side(run: dict, against: str | None) -> tuple[dict | None, str]:
    """(backend id -> {bsN: baseline entry}, a description), from a store, a baseline or a run."""
    if against is None:
        return None, "no baseline"
    path = Path(against)
    if _is_dir(path):
        file = baselines.baseline_path(path, run["hardware_profile"], run["model"])
        if not _exists(file):
            hint = (f"; {path} holds baseline files itself, as a profile's folder does: give the store, "
                    f"--against {path.parent}" if any(path.glob("*.json")) else "")
            raise ReportError(f"{path}: no baseline for profile {run['hardware_profile']!r} and model "
                              f"{run['model']!r} (expected {file}){hint}")
        path = file
    data = files.read_json(path, ReportError, "--against's baseline or results file")
    if isinstance(data, dict) and "entries" in data:  # a baseline file
        try:
            baselines.validate(data, path)
        except baselines.BaselineError as exc:
            raise ReportError(str(exc)) from None
        if (data.get("model"), data.get("profile")) != (run["model"], run["hardware_profile"]):
            raise ReportError(f"{path}: baseline of model {data.get('model')!r} on {data.get('profile')!r}, but the "
                              f"results are {run['model']!r} on {run['hardware_profile']!r} (to put them beside a "
                              "published table of other hardware, use --article)")
        return data["entries"], f"baseline `{path}`"
    try:
        other = results.checked(data, path)
    except results.ResultsError as exc:
        raise ReportError(f"{exc} (--against takes a baseline folder, a baseline file or a results file)") from None
    if other["model"] != run["model"]:
        raise ReportError(f"{path}: results of model {other['model']!r}, but RESULTS are {run['model']!r}")
    if other.get("side_by_side"):
        raise ReportError(f"{path}: a side-by-side run (--base {other['side_by_side']['base']}): its cycles alternated "
                          "with another checkout's; compare against a run without --base, or render it on its own")
    differs = [d for d in results.run_differences(run, other)
               if not d.startswith(("cycles ", "profile cycles ", "--cpus "))]
    if differs:  # the cycle counts may differ, as against a baseline; --cpus is judged cell by cell (not comparable)
        raise ReportError(f"{path}: not comparable with RESULTS: " + "; ".join(differs) + " (for a comparison "
                          "across hardware, use --article)")
    entries = {}
    for (backend, size), rec in table.speed_records(other["tests"]).items():
        if "protocol" in rec and (rec.get("ms_per_token") is not None or rec["outcome"] == "oom"):
            entries.setdefault(backend, {})[baselines.entry_key(size)] = \
                baselines.entry_from(rec, rec["protocol"], other["fingerprint"])
    return entries, f"run `{path}`"


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a name too long: not a folder; reading it says why
        return False


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:
        return True  # reading it says why


def judged(run: dict, base: dict | None) -> list[dict]:
    """The run's records, each measured ms/token record with its verdict against `base` (copies).
    A side-by-side run (--base) keeps the verdicts it reached against its base, pair by pair."""
    if run.get("side_by_side"):
        return [dict(rec) for rec in run["tests"]]
    out = []
    for rec in run["tests"]:
        rec = dict(rec)
        for key in ("verdict", "verdict_detail", "change", "decided_by", "evidence"):
            rec.pop(key, None)
        measured = rec.get("ms_per_token") is not None or rec["outcome"] == "oom"
        if rec["test"] == SPEED_TEST and measured and rec["outcome"] in ("passed", "failed", "oom"):
            entry = (base or {}).get(rec["backend"], {}).get(baselines.entry_key(rec["batch_size"]))
            protocol = rec.get("protocol") or {"new_tokens": None, "world_size": 1}
            rec.update(verdicts.judge(entry, rec, protocol).record_fields(), _entry=entry)
        out.append(rec)
    return out


# -- markdown ------------------------------------------------------------------------------
def render(run: dict, base: dict | None, described: str) -> tuple[str, dict, int]:
    """(markdown, verdict counts, failed cells) of a run against `base`."""
    side_by_side = run.get("side_by_side")
    if side_by_side:
        base, described = None, f"the base checkout `{side_by_side['base']}`, side by side (head vs base)"
    records = judged(run, base)
    speed = table.speed_records(records)
    counts = table.verdict_counts(records)
    skipped = sum(1 for rec in speed.values() if rec["outcome"] == "skipped")
    # A timed cell that failed on its verdict is counted as that verdict, not again as a failure.
    failed = sum(1 for rec in records if rec["outcome"] in table.FAILED
                 and not (rec["test"] == SPEED_TEST and rec.get("ms_per_token") is not None))
    words = [(REGRESSION, "regression"), (IMPROVEMENT, "improvement"), (verdicts.NO_CHANGE, "unchanged"),
             (INCONCLUSIVE, "inconclusive"), (verdicts.NEW, "new"), (REFUSED, "not comparable")]
    parts = [f"{counts[k]} {w}{'s' if counts[k] != 1 and w in ('regression', 'improvement') else ''}"
             for k, w in words if counts.get(k)]
    parts += [f"{skipped} skipped"] * bool(skipped) + [f"{failed} failed"] * bool(failed)
    fp = run["fingerprint"]
    cpus = run["protocol"].get("cpus")
    lines = [f"**{', '.join(parts) or 'nothing measured'}**", "",
             f"{run['model']} on {run.get('hardware_profile')} ({', '.join(sorted(set(fp['devices'])))}; "
             f"torch {fp['versions'].get('torch')}, transformers {fp['versions'].get('transformers')}, "
             f"deepspeed {fp['versions'].get('deepspeed')}), against {described}; "
             f"{run['protocol']['new_tokens']} new tokens, median of {run['protocol']['cycles']} cycles"
             + (f"; workers pinned to CPU {','.join(map(str, cpus))}." if cpus else "."), ""]
    unknown = sum(1 for rec in records if rec.get("_entry") and not rec["_entry"]["protocol"].get("model"))
    if unknown:
        lines += [f"{unknown} baseline entries do not say which model they measured (recorded before entries kept "
                  f"it): another model named `{run['model']}` would not be noticed; re-record them.", ""]
    for t in table.speed_tables(records, run["model"], run["protocol"]["new_tokens"], run["protocol"]["cycles"],
                                markdown=True):
        lines += t.lines() + [""]
    if side_by_side:
        lines += table.figure_table(records, lambda r: r.get("ab"), lambda a: f"{a['pairs']} ({a['seconds']:g} s, {a['stopped']})",
                                    "Pairs per cell (seconds, why sampling stopped)", True, verdict=None,
                                    rows_by_title=True).lines() + [""]
        unavailable = sorted({note for r in speed.values() for note in (r.get("ab") or {}).get("unavailable", [])})
        alternated = sorted({r["ab"]["loads_reason"] for r in speed.values() if (r.get("ab") or {}).get("loads_reason")})
        lines += [f"- not available: {note}" for note in unavailable]
        lines += [f"- the sides took turns loading ({reason}): pairs are cycles of alternate loads" for reason in alternated]
        lines += [""] if unavailable or alternated else []
    for t in table.speed_tables(records, run["model"], run["protocol"]["new_tokens"], run["protocol"]["cycles"],
                                markdown=True, report_only=True):
        lines += t.lines() + [""]
    lines += table.figure_table(records, _bandwidth, lambda v: f"{v[0]:.1f}" + (f" ({v[1]:.0%})" if v[1] else ""),
                                "Weight bandwidth, GB/s (share of the device's copy bandwidth)", True, verdict=None,
                                rows_by_title=True).lines() + [""]
    correctness = table.correctness_table(records, THRESHOLDS)
    lines += (correctness.lines() + [""] if correctness.rows else []) + [table.EMOJI_LEGEND]
    lines += _details(records)
    return "\n".join(lines) + "\n", counts, failed


def _details(records) -> list[str]:
    """A collapsible section per regression or refusal (the evidence, the samples, the kernels
    that changed, the versions), and one list each of the improvements and the inconclusive cells."""
    lines = []
    speed = table.speed_records(records)
    for (backend, size), rec in speed.items():
        if rec.get("verdict") not in (REGRESSION, REFUSED):
            continue
        mark = table.EMOJI_MARK[rec["verdict"]]
        lines += ["", f"<details><summary>{mark} {rec['verdict']}: {table.title(backend)} bs={size}</summary>", "",
                  f"- verdict: {rec['verdict_detail']}"]
        if rec.get("decided_by"):
            lines.append(f"- decided by: {rec['decided_by']}")
        for key, ev in (rec.get("evidence") or {}).items():
            change = f" {verdicts.format_change(verdicts.Verdict(**{k: ev[k] for k in ('kind', 'change', 'low', 'high')}))}" \
                if ev.get("change") is not None else ""
            lines.append(f"- {ev.get('label', key)}: {ev['kind']}{change} {ev['detail']}".rstrip())
        entry = rec.get("_entry") or _base_side(rec)
        if entry is not None and rec.get("ms_per_token") is not None:
            base_samples = entry["samples"].get("ms_per_token") or []
            ours = rec["samples"]["ms_per_token"]
            lines += [f"- this run: median {rec['ms_per_token']:.3f} ms/token, {len(ours)} "
                      f"samples, {min(ours):.3f}..{max(ours):.3f}",
                      f"- baseline: {entry['ms_per_token']:.3f} ms/token ({entry['provenance']['kind']}), "
                      + (f"{len(base_samples)} samples, {min(base_samples):.3f}..{max(base_samples):.3f}"
                         if base_samples else "no samples")]
            lines += _kernel_diff((rec.get("profile") or {}).get("kernels"), entry.get("kernels"))
            ours, theirs = rec.get("versions") or {}, entry["provenance"].get("versions") or {}
            diffs = [f"{k} {theirs.get(k)} → {ours.get(k)}" for k in sorted(set(ours) | set(theirs))
                     if theirs and ours.get(k) != theirs.get(k)]
            if diffs:
                lines += ["- versions: " + ", ".join(diffs)]
        lines += ["", "</details>"]
    for kind, heading in ((IMPROVEMENT, "improved"), (INCONCLUSIVE, "inconclusive: why")):
        cells = [(key, rec) for key, rec in speed.items() if rec.get("verdict") == kind]
        if cells:
            lines += ["", f"<details><summary>{table.EMOJI_MARK[kind]} {len(cells)} {heading}</summary>", ""]
            lines += [f"- {table.title(b)} bs={s}: {rec['verdict_detail']}" for (b, s), rec in cells]
            lines += ["", "</details>"]
    return lines


def _base_side(rec: dict) -> dict | None:
    """A side-by-side record's base side, shaped as a baseline entry for the details."""
    base = (rec.get("ab") or {}).get("base")
    if not base or base.get("ms_per_token") is None:
        return None
    return {"ms_per_token": base["ms_per_token"], "samples": base.get("samples") or {},
            "provenance": {"kind": "the base side"}, "kernels": (base.get("profile") or {}).get("kernels")}


def _kernel_diff(new: dict | None, base: dict | None, top: int = 8) -> list[str]:
    """The decode kernels that changed most in time per step, as a small markdown table."""
    if not new or not base:
        return []
    ours, theirs = new.get("decode", {}), base.get("decode", {})
    rows = []
    for name in set(ours) | set(theirs):
        a, b = theirs.get(name), ours.get(name)
        delta = (b or {}).get("ms_per_step", 0.0) - (a or {}).get("ms_per_step", 0.0)
        launches = (f"{a['launches_per_step']:g}" if a else "–") + " → " + (f"{b['launches_per_step']:g}" if b else "–")
        rows.append((abs(delta), [f"`{verdicts.short_kernel_name(name)}`",
                                  f"{a['ms_per_step']:.4f}" if a else "–", f"{b['ms_per_step']:.4f}" if b else "–",
                                  f"{delta:+.4f}", launches]))
    rows = [cells for _, cells in sorted(rows, key=lambda r: -r[0])[:top]]
    kernels = table.Table("", ["kernel (decode)", "baseline ms/step", "this run ms/step", "change", "launches/step"], True)
    kernels.rows = rows
    return ["", "GPU kernels whose time per decode step changed most:", ""] + kernels.lines()


def _bandwidth(rec):
    """Roofline: weight bytes read per decode step / time per output token, and its share."""
    if rec.get("weight_bandwidth_gb_s") is None:
        return None
    return rec["weight_bandwidth_gb_s"], rec.get("bandwidth_fraction")


def _as_published(entry: dict) -> str:
    """A baseline entry's figure as its source printed it (OOM for an out-of-memory entry)."""
    if entry["outcome"] == "oom":
        return "OOM"
    return entry["provenance"].get("as_published") or f"{entry['ms_per_token']:.2f}"


def render_baseline(path: Path) -> str:
    """A baseline file as the article's table: values exactly as stored (as published); with
    measured entries, a second table of what each holds."""
    data = read_baseline(path, "baseline file")
    sizes = sorted({int(k[2:]) for e in data["entries"].values() for k in e})

    def grid(cell) -> list[str]:  # backend x batch size, `cell(entry)` in each
        out = table.Table("", ["Project"] + [f"bs={s}" for s in sizes], True)
        for backend in table.backend_order(data["entries"]):
            out.rows.append([table.title(backend)] + [
                "" if (entry := data["entries"][backend].get(f"bs{size}")) is None else cell(entry) for size in sizes])
        return out.lines()

    provenance = [e["provenance"] for es in data["entries"].values() for e in es.values()]
    runs = [p.get("runs") or 1 for p in provenance if p["kind"] == "measured"]
    described = "; ".join(sorted({p["source"] for p in provenance if p.get("source")})
                          + ([f"measured, samples of up to {max(runs)} run(s) an entry"] if runs else []))
    lines = [f"ms/token, {data['model']} on {data['profile']} ({described})", ""] + grid(_as_published)
    if runs:  # measured entries: what each can decide on
        lines += ["", f"Evidence an entry holds: runs pooled, kinds of samples of the {len(evidence.SAMPLED)} the suite "
                  "takes (a CPU run takes none of the GPU's), kernels and host-work breakdowns", ""] + grid(_evidence_held)
    return "\n".join(lines) + "\n"


def _evidence_held(entry: dict) -> str:
    """'2 runs, 18/18 kinds, kernels, breakdowns' (or 'OOM', 'published')."""
    if entry["outcome"] == "oom":
        return "OOM"
    if entry["provenance"]["kind"] != "measured":
        return entry["provenance"]["kind"]
    runs = entry["provenance"].get("runs") or 1
    held = [kind.key for kind in evidence.SAMPLED if (entry.get("samples") or {}).get(kind.key)]
    fewer = [key for key in held if entry["provenance"].get("runs_of", {}).get(key, runs) < runs]  # pooled later
    return ", ".join([f"{runs} run{'s' if runs > 1 else ''}", f"{len(held)}/{len(evidence.SAMPLED)} kinds"]
                     + ([f"{len(fewer)} of them from fewer runs"] if fewer else [])
                     + (["kernels"] if entry.get("kernels") else [])
                     + (["breakdowns"] if (entry.get("counted") or {}).get("breakdowns") else []))


def render_article(run: dict, path: Path) -> str:
    """This run beside a published table: "ours / theirs (ours/theirs ×)" per cell."""
    data = read_baseline(path, "--article file")
    current = table.speed_records(run["tests"])
    article = data["entries"]
    sizes = sorted({int(k[2:]) for e in article.values() for k in e} | {k[1] for k in current})
    out = table.Table("", ["Project"] + [f"bs={s}" for s in sizes], True)
    notes: list[str] = []
    for backend in table.backend_order(set(article) | {k[0] for k in current}):
        row = [table.title(backend)]
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
        out.rows.append(row)
    sliced = synthetic.slice_of(run["model"])
    what = [f"ms/token here ({run['model']} on {run.get('hardware_profile')}) / in the article "
            f"({data['model']} on {data['profile']}), and their ratio; `{path}`."]
    if sliced:
        what.append(f"**A slice: {sliced[0]} of {sliced[1]} blocks** (the embedding and LM head whole), "
                    f"while the article ran all {sliced[1]}; the ratio compares unlike models.")
    lines = ["", f"### Beside the article ({data['profile']})", "", *what, ""] + out.lines()
    if notes:
        lines += [""] + [f"[^a{i}]: {text}" for i, text in enumerate(notes, 1)]
    lines += _setups(run, data["profile"], {b for b, _ in current} & set(article))
    return "\n".join(lines) + "\n"


def _setups(run: dict, article_profile: str, backends: set[str]) -> list[str]:
    """Per row, how the article spread its model over its GPUs and how this run did: a ratio across
    unlike setups says little by itself."""
    gpus = (run.get("fingerprint") or {}).get("device_count") or 0
    out = ["", f"What a row compares (the article's {article_profile}; this run: "
               f"{f'{gpus} GPU(s)' if gpus else 'no GPU'}):", ""]
    for backend in table.backend_order(backends):
        info = ((run.get("backends") or {}).get(backend) or {}).get("info") or {}
        here = [f"world size {info['world_size']}" if info.get("world_size") else "",
                f"{info['weight_bytes'] / 1e9:.1f} GB of weights" if info.get("weight_bytes") else ""]
        out.append(f"- {table.title(backend)}: the article: {BACKENDS[backend].article_setup}. Here: "
                   f"{', '.join(h for h in here if h) or 'as loaded'}"
                   f"{', every weight read by one GPU' if gpus == 1 else ''}.")
    if out[3:] and gpus:
        out += ["", "At small batches a step is paced by reading the weights: the weight bandwidth table "
                    "(the share of this device's copy bandwidth) is the figure to hold against the "
                    "article's hardware, not the ratio of ms/token."]
    return out if out[3:] else []


def plot(run: dict, base: dict | None, path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        raise ReportError("--plot needs matplotlib: pip install matplotlib, or leave --plot out") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    current = table.speed_records(run["tests"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, backend in enumerate(table.backend_order(k[0] for k in current)):
        color = f"C{i}"
        points = sorted((s, r["ms_per_token"]) for (b, s), r in current.items() if b == backend and r.get("ms_per_token"))
        if points:
            ax.plot(*zip(*points), "o-", color=color, label=table.title(backend))
        old = sorted((int(k[2:]), e["ms_per_token"]) for k, e in ((base or {}).get(backend) or {}).items()
                     if e.get("ms_per_token"))
        if old:
            ax.plot(*zip(*old), "s--", color=color, alpha=0.6, label=f"{table.title(backend)} (baseline)")
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("ms per token (lower is better)")
    ax.set_title(f"{run['model']} on {run.get('hardware_profile')}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def _write_png(path: Path, draw) -> None:
    """The plot, replacing `path` whole or not at all."""
    tmp = path.with_name(f".{path.name}.plot.png")
    try:
        draw(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def check_outputs(args) -> None:
    """--out and --plot, before anything is read or written: writable, not the same file, and
    none of the inputs, nor a file of a baseline store, nor a results or baseline file."""
    inputs = {f"RESULTS file {p}": p for p in args.results}
    against = Path(args.against) if args.against else None
    store = against if against and _is_dir(against) else None
    inputs.update({"the --against file": against if against and not store else None,
                   "the --article file": args.article, "the --baseline-only file": args.baseline_only})
    if args.out and args.plot and outputs.same_file(args.out, args.plot):
        raise OptionError(f"--out and --plot name one file ({args.out}); give each its own")
    for option, path in (("--out", args.out), ("--plot", args.plot)):
        if path is not None:
            outputs.writable_file(option, path)
            outputs.not_an_input(option, path, inputs, store=store)
            outputs.not_a_suite_file(option, path)


def main(argv=None) -> int:
    ap = ToolParser(prog="perf-report", description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="*", help="the suite's results file (--results); several files of one "
                                                "run split with -k are merged")
    ap.add_argument("--against", help="a baseline store (folder), a baseline file, or another results file")
    ap.add_argument("--out", help="write the markdown here (default: stdout)")
    ap.add_argument("--plot", help="write a PNG of ms/token against batch size here")
    ap.add_argument("--fail-on", choices=["regression", "inconclusive", "never"], default=None,
                    help="exit 1 on a REGRESSION or a failed cell (regression, the default), also on INCONCLUSIVE, or never")
    ap.add_argument("--baseline-only", metavar="BASELINE", help="render a baseline file on its own")
    ap.add_argument("--article", metavar="BASELINE", help="add this run beside a published table (the article's)")
    args = ap.parse_args(argv)
    if args.baseline_only:
        extra = [flag for flag, given in (("RESULTS", args.results), ("--against", args.against),
                                          ("--plot", args.plot), ("--article", args.article),
                                          ("--fail-on", args.fail_on)) if given]
        if extra:
            ap.error(f"--baseline-only renders the baseline file alone; drop {', '.join(extra)} "
                     "(or drop --baseline-only to render a run)")
    failed = 0
    try:
        check_outputs(args)
        if args.baseline_only:
            text, counts = render_baseline(Path(args.baseline_only)), {}
        elif args.results:
            run = read_run([Path(p) for p in args.results])
            if run.get("side_by_side") and args.against:
                raise ReportError(f"--against {args.against} with a side-by-side run (pytest --base "
                                  f"{run['side_by_side']['base']}): its verdicts are against its base, so --against "
                                  "would do nothing; drop --against")
            base, described = base_side(run, args.against)
            text, counts, failed = render(run, base, described)
            if args.article:
                text += render_article(run, Path(args.article))
            if args.plot:
                _write_png(Path(args.plot), lambda p: plot(run, base, p))
        else:
            ap.error("give RESULTS or --baseline-only BASELINE")
        if args.out:
            files.write_atomically(Path(args.out), text)
        else:
            sys.stdout.write(text)
    except (ReportError, OptionError) as exc:
        return ap.fail(exc)
    except OSError as exc:
        return ap.fail(f"cannot write {exc.filename or args.out}: {exc.strerror}")
    args.fail_on = args.fail_on or "regression"
    failing = {"regression": set(DECIDED) - {IMPROVEMENT}, "inconclusive": {REGRESSION, INCONCLUSIVE},
               "never": set()}[args.fail_on]
    return 1 if failing & set(counts) or (failed and args.fail_on != "never") else 0


if __name__ == "__main__":
    sys.exit(main())
