"""The tables of a run, for the terminal summary (plain text) and the report (markdown): one model
of rows, cells and footnotes, drawn from records (perf.results) that carry their verdicts."""
from perf import evidence
from perf.backends import BACKENDS
from perf.protocol import SPEED_TEST
from perf.verdicts import (DECIDED, IMPROVEMENT, INCONCLUSIVE, NEW, NO_CHANGE, REFUSED, REGRESSION,
                           count)

TEXT_MARK = {REGRESSION: "REGRESSION", IMPROVEMENT: "improved", NO_CHANGE: "=", INCONCLUSIVE: "?",
             NEW: "new", REFUSED: "refused", "CHANGED": "changed"}
EMOJI_MARK = {REGRESSION: "🔴", IMPROVEMENT: "🟢", NO_CHANGE: "⚪", INCONCLUSIVE: "🟡", NEW: "🆕", REFUSED: "⛔",
              "CHANGED": "🟠"}
TEXT_LEGEND = "(= no change, ? inconclusive)"
EMOJI_LEGEND = "🔴 regression · 🟢 improvement · ⚪ no change · 🟡 inconclusive · 🆕 no baseline · ⛔ not comparable"
FAILED = ("failed", "worker crash")


def text_legend(kinds) -> str:
    """The key to the plain-text marks '=' and '?', where those verdicts are among `kinds` (else '')."""
    return TEXT_LEGEND if {NO_CHANGE, INCONCLUSIVE} & set(kinds) else ""


class Table:
    """Rows of cells under a header, with footnotes; drawn as aligned text or as markdown."""

    def __init__(self, title: str, header: list[str], markdown: bool):
        self.title, self.header, self.markdown = title, header, markdown
        self.rows: list[list[str]] = []
        self.notes: list[str] = []

    def note(self, text: str) -> str:
        if text not in self.notes:
            self.notes.append(text)
        number = self.notes.index(text) + 1
        return f"[^{number}]" if self.markdown else f"[{number}]"

    def mark(self, kind: str | None) -> str:
        return (EMOJI_MARK if self.markdown else TEXT_MARK).get(kind, "") if kind else ""

    def lines(self) -> list[str]:
        if self.markdown:
            lines = ["| " + " | ".join(self.header) + " |", "|" + " --- |" * len(self.header)]
            lines += ["| " + " | ".join(row) + " |" for row in self.rows]
            notes = [f"[^{i}]: {text}" for i, text in enumerate(self.notes, 1)]
            return ([f"### {self.title}", ""] if self.title else []) + lines + ([""] + notes if notes else [])
        widths = [max(len(str(x)) for x in col) for col in zip(self.header, *self.rows)]
        fmt = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
        return ([self.title] if self.title else []) + [fmt(self.header)] + [fmt(r) for r in self.rows] + \
            [f"[{i}] {text}" for i, text in enumerate(self.notes, 1)]


# -- which records -------------------------------------------------------------------------------
def speed_records(records) -> dict:
    """(backend, batch size) -> the ms/token record."""
    return {(r["backend"], r["batch_size"]): r for r in records if r["test"] == SPEED_TEST}


def backend_order(ids) -> list[str]:
    ids = set(ids)
    return [b for b in BACKENDS if b in ids] + sorted(ids - set(BACKENDS))


def title(backend: str) -> str:
    return BACKENDS[backend].title if backend in BACKENDS else backend


def verdict_counts(records) -> dict:
    return count(r["verdict"] for r in records if r["test"] == SPEED_TEST and r.get("verdict"))


# -- the figure tables ---------------------------------------------------------------------------
def _outcome_cell(table: Table, rec: dict | None, size) -> str | None:
    """A cell that holds an outcome rather than a figure (absent, OOM, skipped, failed), or None."""
    if rec is None:
        return "-" if not table.markdown else ""
    if rec["outcome"] == "oom":
        kind = rec.get("verdict")
        return "OOM" + (f" {table.mark(kind)}" if kind in DECIDED else "")
    if rec["outcome"] == "skipped":
        reason = rec.get("reason") or ""
        return ("skipped" if table.markdown else "skip ") + table.note(f"{rec['backend']}: {reason}" if table.markdown
                                                                      else reason)
    return None


def _failed_cell(table: Table, rec: dict, size) -> str:
    if rec["outcome"] in FAILED:
        return ("failed" if table.markdown else "FAIL ") + table.note(
            f"{rec['backend']} bs={size}: {rec['outcome']}: {rec.get('reason') or 'no reason recorded'}")
    return "n/a" if table.markdown else "-"


def figure_table(records, figure, fmt, title_text: str, markdown: bool, verdict: str | None = "cell",
                 rows_by_title: bool = False) -> Table:
    """Backend rows x batch-size columns of `figure(record)`, formatted by `fmt`; `verdict`: "cell"
    marks the cell's verdict and change, an evidence name marks that evidence's, None none."""
    speed = speed_records(records)
    sizes = sorted({size for _, size in speed})
    first = "Project" if rows_by_title else "backend"
    table = Table(title_text, [first] + [f"bs={s}" for s in sizes], markdown)
    for backend in backend_order(b for b, _ in speed):
        row = [title(backend) if rows_by_title else backend]
        for size in sizes:
            rec = speed.get((backend, size))
            cell = _outcome_cell(table, rec, size)
            if cell is None:
                value = figure(rec)
                cell = _failed_cell(table, rec, size) if value is None else fmt(value) + _verdict_suffix(table, rec, verdict)
                if value is not None and rec["outcome"] in FAILED and rec.get("verdict") != REGRESSION:
                    cell += " " + ("failed" if markdown else "FAIL") + table.note(
                        f"{backend} bs={size}: {rec['outcome']}: {rec.get('reason') or 'no reason recorded'}")
            row.append(cell)
        table.rows.append(row)
    return table


def _verdict_suffix(table: Table, rec: dict, which: str | None) -> str:
    if which is None:
        return ""
    if which == "cell":
        kind, change = rec.get("verdict"), rec.get("change")
    else:
        evidence = (rec.get("evidence") or {}).get(which) or {}
        kind, change = evidence.get("kind"), evidence.get("change")
    if not kind:
        return ""
    text = ""
    if change is not None:
        text = f" ({change:+.1%})" if table.markdown else f" {change:+.1%}"
    return text + f" {table.mark(kind)}"


def speed_tables(records, model: str, new_tokens: int, cycles: int, markdown: bool,
                 report_only: bool = False) -> list[Table]:
    """A table per kind of evidence that perf.evidence shows and the run has: ms/token first (with
    each cell's verdict), then each kind's figure with that evidence's verdict (GPU kernel time per
    decode step with the GPU's busy share, the main thread's CPU time per token, ...); with
    `report_only`, the kinds shown in the markdown report alone (TTFT, peak memory)."""
    speed = list(speed_records(records).values())
    tables = []
    for kind in evidence.KINDS.values():
        show = kind.show
        if show is None or show.report_only != report_only:
            continue
        figure = show.figure or evidence.median_of(kind.key)
        headline = kind.key == "ms_per_token"
        if not headline and not any(figure(r) is not None for r in speed):
            continue
        title_text = show.title if markdown or not headline else \
            f"{show.title}, {model}, {new_tokens} new tokens, median of {cycles} cycles"
        which = "cell" if headline else None if show.report_only else kind.key
        tables.append(figure_table(records, figure, show.fmt, title_text, markdown, verdict=which, rows_by_title=markdown))
    return tables


# -- correctness ---------------------------------------------------------------------------------
def correctness_column(records, backend: str, table: Table) -> str:
    """The terminal's correctness cell of a backend: ok, FAIL: tests, or skipped."""
    mine = [r for r in records if r["backend"] == backend and r["test"] != SPEED_TEST]
    bad = [r for r in mine if r["outcome"] in FAILED]
    if bad:
        return "FAIL: " + ", ".join(r["test"].removeprefix("test_") for r in bad)
    if mine and all(r["outcome"] == "skipped" for r in mine):
        return "skipped " + table.note(mine[0]["reason"] or "")
    return "ok" if mine else "-"


def terminal_table(records, model: str, new_tokens: int, cycles: int) -> list[str]:
    """The article-shaped ms/token table with a correctness column, then the evidence tables."""
    records = list(records)
    tables = speed_tables(records, model, new_tokens, cycles, markdown=False)
    head = tables[0]
    ids = backend_order({r["backend"] for r in records if r["backend"]})
    speed_ids = [row[0] for row in head.rows]
    head.header.append("correctness")
    for row in head.rows:
        row.append(correctness_column(records, row[0], head))
    for backend in ids:  # a backend with correctness tests and no timed cell
        if backend not in speed_ids:
            head.rows.append([backend] + ["-"] * (len(head.header) - 2) + [correctness_column(records, backend, head)])
    lines = head.lines()
    for table in tables[1:]:
        lines += [""] + table.lines()
    return lines


def correctness_table(records, thresholds) -> Table:
    """Per backend: greedy match, teacher-forced top-1 and KL, each beside its threshold."""
    table = Table("Correctness against the fp32 reference", ["Project", "greedy match", "top-1", "KL", "outcome"], True)
    by_backend: dict = {}
    for rec in records:
        if rec["test"] != SPEED_TEST and rec["backend"]:
            by_backend.setdefault(rec["backend"], {})[rec["test"]] = rec
    for backend in backend_order(by_backend):
        tests = by_backend[backend]
        limits = thresholds.get((tests[next(iter(tests))].get("dtype")))
        greedy, logits = tests.get("test_greedy_matches_reference", {}), tests.get("test_logits_match_reference", {})
        cells = [title(backend),
                 _against(greedy.get("match"), limits and limits.min_greedy_match, ">=", greedy),
                 _against(logits.get("top1"), limits and limits.min_top1, ">=", logits),
                 _against(logits.get("kl"), limits and limits.max_kl, "<=", logits, "{:.2e}")]
        bad = [f"{name.removeprefix('test_')}: {rec['outcome']}" + (f" ({rec['reason']})" if rec.get("reason") else "")
               for name, rec in tests.items() if rec["outcome"] in FAILED]
        skipped = all(rec["outcome"] == "skipped" for rec in tests.values())
        cells.append("; ".join(bad) if bad else "skipped" + table.note(
            next(iter(tests.values())).get("reason") or "") if skipped else "ok")
        table.rows.append(cells)
    return table


def _against(value, limit, op: str, rec: dict, fmt="{:.3f}") -> str:
    if value is None:
        return "skipped" if rec.get("outcome") == "skipped" else "–"
    return fmt.format(value) + (f" ({op} {limit:g})" if limit is not None else "")
