"""The trend page: one static HTML file (inline SVG and CSS, no script, nothing fetched), per
hardware profile and model a small chart per cell: wall ms/token over the nights and, beside it,
GPU kernel ms per decode step (on a CPU machine: aten operators per token), each night's median
with the range of its samples, change points marked, and a published figure (the article's) as a
reference line where the baselines hold one for this profile and model. Hovering a night shows
its date, commit and figures (SVG <title>). It opens from disk and publishes as it is."""
import html
import math
import statistics
from pathlib import Path

from perf import baselines, changepoints
from perf.changepoints import KINDS, Change, busy_reason, night_values
from perf.history import History
from perf.table import title

WIDTH, HEIGHT = 280, 132
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 18, 20
BY_KEY = {k.key: k for k in KINDS}
COLORS = {"regression": "#d7301f", "undecided": "#e6a100", "improvement": "#1a9850"}

STYLE = """
body{font:13px/1.4 system-ui,sans-serif;margin:16px;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:22px 0 6px}
.grid{display:flex;flex-wrap:wrap;gap:10px}
.cell{border:1px solid #ddd;border-radius:6px;padding:6px 8px}
.cell h3{font-size:13px;margin:0 0 2px}
.charts{display:flex;gap:6px}
svg text{font:10px system-ui,sans-serif;fill:#555}
.legend span{margin-right:14px}
table{border-collapse:collapse;margin:10px 0 4px} caption{text-align:left;font-weight:600;padding:4px 0} td,th{border:1px solid #ddd;padding:3px 6px;font-size:12px;text-align:left}
.reg{color:#d7301f;font-weight:600} .und{color:#b07800} .imp{color:#1a9850}
.muted{color:#777}
"""


def render(histories: list[History], baselines_dir: Path | None = None) -> str:
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>Nightly performance history</title>", f"<style>{STYLE}</style></head><body>",
             "<h1>Nightly performance history</h1>",
             '<p class="legend muted"><span>● a night\'s median, bar: its samples\' range</span>'
             '<span>○ a busy host (wall and host time not judged)</span>'
             f'<span style="color:{COLORS["regression"]}">┆ regression</span>'
             f'<span style="color:{COLORS["undecided"]}">┆ not decided</span>'
             f'<span style="color:{COLORS["improvement"]}">┆ improvement</span>'
             '<span>- - published figure</span>'
             "<span>hover a night for its commit and figures</span></p>"]
    if not histories:
        parts.append("<p>The history is empty: perf-history add RESULTS... adds a night.</p>")
    for h in histories:
        found = changepoints.changes(h)
        published = _published(baselines_dir, h)
        first, last = h.nights[0], h.nights[-1]
        parts.append(f"<h2>{_e(h.profile)} · {_e(h.model)} <span class=\"muted\">{len(h.nights)} nights, "
                     f"{_e(first.started[:10])} to {_e(last.started[:10])}</span></h2>")
        parts.append('<div class="grid">')
        for cell in h.cells():
            if not any(night_values(BY_KEY["ms_per_token"], n.cells[cell]) for n in h.nights if cell in n.cells):
                continue  # skipped or failed on every night: nothing to draw
            parts.append(_cell(h, cell, [c for c in found if (c.backend, c.batch_size) == cell], published))
        parts.append("</div>")
        parts.append(_changes_table(h, found))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _published(store: Path | None, h: History) -> dict:
    """(backend, batch size) -> (figure, source) of the published entries for this profile and model."""
    if store is None:
        return {}
    path = baselines.baseline_path(store, h.profile, h.model)
    try:
        data = baselines.load(path)
    except baselines.BaselineError:
        return {}
    out = {}
    for backend, entries in (data or {}).get("entries", {}).items():
        for key, entry in entries.items():
            if entry.get("provenance", {}).get("kind") == "published" and entry.get("ms_per_token"):
                out[(backend, int(key.removeprefix("bs")))] = (entry["ms_per_token"], entry["provenance"].get("source", ""))
    return out


def _changes_table(h: History, found: list[Change]) -> str:
    """One row per cell and night where something moved, newest first: what moved, by how much."""
    if not found:
        return '<p class="muted">No change point over these nights.</p>'
    rows = {}
    for c in found:
        rows.setdefault((c.after, c.before, c.backend, c.batch_size), []).append(c)
    out = []
    for (after, before, backend, size), group in sorted(rows.items(), key=lambda kv: -kv[0][0]):
        decided = [c for c in group if c.decided]
        cls, what = ("reg", "regression") if any(c.regression for c in decided) else \
            ("imp", "improvement") if decided else ("und", "not decided")
        b, a = h.nights[before], h.nights[after]
        moved = "<br>".join(f"{_e(c.kind.label)}: {_e(c.size())}" + (f" <span class=\"muted\">{_e(c.detail)}</span>"
                                                                      if c.detail else "") for c in group)
        out.append(f'<tr><td class="{cls}">{what}</td><td>{_e(backend)} bs={size}</td>'
                   f"<td>#{b.index + 1} {_e(b.label)}</td><td>#{a.index + 1} {_e(a.label)}</td><td>{moved}</td></tr>")
    return ('<table class="changes"><caption>Change points, newest first</caption><tr><th></th><th>cell</th>'
            "<th>last night before</th><th>first night after</th><th>what moved</th></tr>" + "".join(out) + "</table>")


def _cell(h: History, cell: tuple, found: list[Change], published: dict) -> str:
    backend, size = cell
    records = [(n, n.cells.get(cell)) for n in h.nights]
    second = "gpu_decode_ms_per_step" if any(r and night_values(BY_KEY["gpu_decode_ms_per_step"], r)
                                              for _, r in records) else "aten_ops_per_token"
    charts = []
    for key in ("ms_per_token", second):
        kind = BY_KEY[key]
        marks = [c for c in found if c.kind.key == key or (key == "ms_per_token" and c.kind.key not in
                                                             ("ms_per_token", second))]
        reference = published.get(cell) if key == "ms_per_token" else None
        charts.append(_chart(h, records, kind, marks, reference))
    return (f'<div class="cell"><h3>{_e(title(backend))} · bs={size}</h3><div class="charts">'
            + "".join(charts) + "</div></div>")


def _chart(h: History, records: list, kind, marks: list[Change], reference) -> str:
    points = []  # (night index, median, low, high, busy, tooltip)
    for night, record in records:
        if record is None:
            continue
        values = night_values(kind, record)
        if not values:
            continue
        busy = busy_reason(record) if kind.role == changepoints.TIMING else None
        points.append((night.index, statistics.median(values), min(values), max(values), busy,
                       _tooltip(h, night, record, busy)))
    head = f'<text x="{LEFT}" y="12">{_e(kind.label)} ({_e(kind.unit)})</text>'
    if not points:
        return (f'<svg width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{_e(kind.label)}: no data">'
                f'{head}<text x="{LEFT}" y="{HEIGHT / 2}">not measured</text></svg>')
    lows = [p[2] for p in points] + ([reference[0]] if reference else [])
    highs = [p[3] for p in points] + ([reference[0]] if reference else [])
    # A busy night can be 40 times slower: past a 3x range the axis is logarithmic, so the quiet
    # nights' steps stay visible.
    scale = math.log if min(lows) > 0 and max(highs) / min(lows) > 3 else (lambda v: v)
    if scale is math.log:
        head = f'<text x="{LEFT}" y="12">{_e(kind.label)} ({_e(kind.unit)}, log scale)</text>'
    lo, hi = scale(min(lows)), scale(max(highs))
    pad = (hi - lo) * 0.08 or abs(hi) * 0.05 or 1.0
    n = len(h.nights)
    x = lambda i: LEFT + (WIDTH - LEFT - RIGHT) * (0.5 if n == 1 else i / (n - 1))  # noqa: E731
    y = lambda v: TOP + (HEIGHT - TOP - BOTTOM) * (1 - (scale(v) - lo + pad) / (hi - lo + 2 * pad))  # noqa: E731
    svg = [f'<svg width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{_e(kind.label)} over {n} nights">', head,
           f'<line x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" y2="{HEIGHT - BOTTOM}" stroke="#bbb"/>',
           f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}" stroke="#bbb"/>']
    for v in (min(lows), max(highs)):
        svg.append(f'<text x="{LEFT - 3}" y="{y(v) + 3:.1f}" text-anchor="end">{_fmt(v)}</text>')

    svg.append(f'<text x="{LEFT}" y="{HEIGHT - 6}">#1</text>'
               f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 6}" text-anchor="end">#{n} {_e(h.nights[-1].started[:10])}</text>')
    if reference:
        svg.append(f'<line class="reference" x1="{LEFT}" y1="{y(reference[0]):.1f}" x2="{WIDTH - RIGHT}" '
                   f'y2="{y(reference[0]):.1f}" stroke="#555" stroke-dasharray="5 3"><title>published: '
                   f'{reference[0]:g} ms/token ({_e(reference[1])})</title></line>'
                   f'<text x="{WIDTH - RIGHT}" y="{y(reference[0]) - 3:.1f}" text-anchor="end">published {reference[0]:g}</text>')
    at_night = {}
    for c in marks:  # one mark per place: this chart's own kind first
        at_night.setdefault((c.before, c.after), []).append(c)
    for (before, after), group in at_night.items():
        group.sort(key=lambda c: c.kind.key != kind.key)
        c = group[0]
        color = COLORS["improvement"] if not c.regression else COLORS["regression"] if c.decided else COLORS["undecided"]
        label = f"{c.change:+.0%}" if c.kind.key == kind.key else f"{c.kind.label} {c.change:+.0%}"
        tip = "\n".join(f"{o.kind.label}: {o.size()} {o.detail}".rstrip() for o in group)
        if after - before > 1:  # a drift: the nights it took, shaded
            shape = (f'<rect x="{x(before):.1f}" y="{TOP}" width="{x(after) - x(before):.1f}" '
                     f'height="{HEIGHT - TOP - BOTTOM}" fill="{color}" fill-opacity="0.12"/>')
            at = x(before)
        else:
            at = (x(before) + x(after)) / 2
            shape = (f'<line x1="{at:.1f}" y1="{TOP}" x2="{at:.1f}" y2="{HEIGHT - BOTTOM}" stroke="{color}" '
                     'stroke-width="2" stroke-dasharray="4 2"/>')
        right = at > LEFT + 0.6 * (WIDTH - LEFT - RIGHT)  # near the right edge: the label to the left
        label_y = TOP + 9 if c.regression else HEIGHT - BOTTOM - 4  # improvements below: two marks close by stay apart
        svg.append(f'<g class="change">{shape}<text x="{at - 3 if right else at + 3:.1f}" y="{label_y}" '
                   f'text-anchor="{"end" if right else "start"}" style="fill:{color}">'
                   f"{_e(label)}</text><title>{_e(tip)}</title></g>")
    line = " ".join(f"{x(i):.1f},{y(m):.1f}" for i, m, *_ in points)
    svg.append(f'<polyline points="{line}" fill="none" stroke="#4a78b5" stroke-width="1.2"/>')
    for i, m, low, high, busy, tip in points:
        svg.append(f'<g class="night"><line x1="{x(i):.1f}" y1="{y(low):.1f}" x2="{x(i):.1f}" y2="{y(high):.1f}" '
                   f'stroke="#9bb3d6"/><circle cx="{x(i):.1f}" cy="{y(m):.1f}" r="3.2" '
                   + ('fill="#fff" stroke="#888"' if busy else 'fill="#2b5b9b"')
                   + f"/><title>{_e(tip)}</title></g>")
    svg.append("</svg>")
    return "".join(svg)


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def _tooltip(h: History, night, record: dict, busy: str | None) -> str:
    lines = [f"night {night.index + 1}: {night.started}", f"commit {night.commit or 'unknown'}"
             + (" (uncommitted changes)" if night.dirty else "")]
    for kind in KINDS:
        values = night_values(kind, record)
        if values:
            spread = f" ({len(values)} samples, {min(values):.4g}-{max(values):.4g})" if len(values) > 1 else ""
            lines.append(f"{kind.label}: {statistics.median(values):.4g} {kind.unit}{spread}")
    if record.get("verdict"):
        lines.append(f"that night's verdict: {record['verdict']}")
    if busy:
        lines.append(f"host busy: {busy}")
    return "\n".join(lines)
