"""What a perf session measured: one record per test, the backends' load info, the machine's
fingerprint; written as the results file and summarised as the article-shaped table."""
import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from perf import baselines
from perf.backends import BACKENDS
from perf.verdicts import INCONCLUSIVE, REGRESSION, Verdict
from perf.worker import versions

SCHEMA = 1


def fingerprint() -> dict:
    import torch
    cuda = torch.cuda.is_available()
    devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    return {
        "devices": devices or ["cpu"],
        "device_count": len(devices),
        # The GPU set this process was given (pytest -n splits a node's GPUs between its workers).
        "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "driver": _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]).split("\n")[0] or None,
        "cuda": torch.version.cuda,
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "versions": versions(),
        "git_commit": _run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent) or None,
        "git_dirty": bool(_run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=Path(__file__).parent)),
    }


def _run(cmd, cwd=None) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=cwd).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


class Results:
    def __init__(self, settings):
        self.settings = settings
        self.records: dict[str, dict] = {}  # nodeid -> record
        self.handles: dict = {}  # backend id -> BackendHandle, for load info
        self.specs: dict | None = None  # backend id -> BackendSpec (perf.plugin.session_backends)
        self.started = datetime.now(timezone.utc)
        self.fingerprint: dict | None = None
        self.profile: str | None = None
        self.baseline_file: Path | None = None
        self.baseline: dict | None = None  # the validated baseline file of this profile and model
        self.baseline_notes: list[str] = []
        self.memory_bandwidth: float | None = None  # GB/s, measured once per run (roofline)
        self.merged_backends: dict = {}  # backend id -> info, from pytest-xdist workers

    def prepare_baselines(self) -> None:
        """Fingerprint the machine and read this profile's baseline file (BaselineError if bad)."""
        self.fingerprint = fingerprint()
        self.profile = self.settings.hardware or baselines.hardware_profile(self.fingerprint)
        self.baseline_file = baselines.baseline_path(self.settings.baselines_dir, self.profile,
                                                     self.settings.model_name)
        self.baseline = baselines.load(self.baseline_file)

    def judge(self, handle, record: dict) -> Verdict:
        """The verdict of one ms/token record against its baseline entry; noted in the record."""
        entry = ((self.baseline or {}).get("entries", {}).get(handle.spec.id, {})
                 .get(baselines.entry_key(record["batch_size"])))
        record["protocol"] = baselines.protocol_of(self.settings, handle.info)
        record["versions"] = handle.info.get("versions")
        # Under pytest -n on GPUs each xdist worker sees its share of the GPUs: its own profile.
        record["hardware_profile"] = self.profile
        record["device_count"] = self.fingerprint["device_count"]
        verdict = baselines.judge(entry, record, record["protocol"])
        record["verdict"] = verdict.kind
        record["verdict_detail"] = verdict.describe()
        record["change"] = verdict.change
        if entry is not None:
            record["baseline"] = {"ms_per_token": entry["ms_per_token"], "outcome": entry["outcome"],
                                  "provenance": entry["provenance"]["kind"]}
        return verdict

    def assert_verdict(self, verdict: Verdict) -> None:
        import pytest
        if verdict.kind == REGRESSION or (verdict.kind == INCONCLUSIVE and self.settings.strict_perf):
            pytest.fail(f"{verdict.describe()} against {self.baseline_file}", pytrace=False)

    def update_baselines(self, records) -> None:
        """Write these records' entries (called after each ms/token test: a killed run keeps them)."""
        by_profile = baselines.entries_from(records, self.fingerprint, self.profile)
        for profile, entries in by_profile.items():
            path = baselines.baseline_path(self.settings.baselines_dir, profile, self.settings.model_name)
            self.baseline_notes += baselines.update(path, profile, self.settings.model_name, entries,
                                                    self.settings.update_baselines)

    def record(self, item) -> dict:
        params = getattr(item, "callspec", None)
        params = params.params if params else {}
        backend = params.get("backend")
        spec = (self.specs or BACKENDS).get(backend)
        return self.records.setdefault(item.nodeid, {
            "test": item.originalname, "nodeid": item.nodeid, "backend": backend,
            "dtype": spec.dtype if spec else None, "batch_size": params.get("batch_size"),
            "model": self.settings.model_name, "outcome": None, "reason": None,
        })

    def on_report(self, item, report) -> None:
        rec = self.record(item)
        # Seconds per phase (setup includes a backend's load): what plans a time-limited GPU call.
        rec.setdefault("seconds", {})[report.when] = round(report.duration, 3)
        if report.when != "call" and report.passed:
            return
        if rec["outcome"] == "oom":  # set by the test; the skip it raised says the same
            return
        if report.skipped:
            rec["outcome"] = "skipped"
            rec["reason"] = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        elif report.failed:
            handle = self.handles.get(rec["backend"])
            crashed = handle is not None and handle.worker is not None and handle.worker.dead
            rec["outcome"] = "worker crash" if crashed else "failed"
            rec["reason"] = str(report.longrepr).strip().splitlines()[-1][:500] if report.longrepr else None
        else:
            rec["outcome"] = "passed"

    def to_json(self) -> dict:
        s = self.settings
        return {
            "schema": SCHEMA,
            "started": self.started.isoformat(timespec="seconds"),
            "model": s.model_name, "model_path": s.model,
            "protocol": {"new_tokens": s.new_tokens, "cycles": s.cycles, "warmup_cycles": 1,
                         "batch_sizes": s.batch_sizes, "cpus": list(s.cpus) if s.cpus else None},
            "fingerprint": self.fingerprint or fingerprint(),
            "hardware_profile": self.profile,
            "memory_bandwidth_gb_s": self.memory_bandwidth,
            "baseline_file": str(self.baseline_file) if self.baseline_file else None,
            "backends": self.backends_json(),
            "tests": list(self.records.values()),
        }

    def backends_json(self) -> dict:
        return {**self.merged_backends,
                **{bid: {"info": h.info, "unavailable": h.unavailable, "failure": h.failure}
                   for bid, h in self.handles.items()}}

    # -- pytest-xdist: each worker measures its backends; the controller merges and reports --
    def worker_output(self) -> str:
        return json.dumps({"records": self.records, "backends": self.backends_json(),
                           "memory_bandwidth": self.memory_bandwidth, "baseline_notes": self.baseline_notes})

    def merge(self, output: str) -> None:
        data = json.loads(output)
        self.records.update(data["records"])
        self.merged_backends.update(data["backends"])
        self.memory_bandwidth = self.memory_bandwidth or data["memory_bandwidth"]
        self.baseline_notes += data["baseline_notes"]

    def write(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        tmp.replace(path)

    # -- the terminal summary --------------------------------------------------------------
    def verdict_summary(self) -> list[str]:
        judged = [r for r in self.records.values() if r.get("verdict")]
        if not judged:
            return []
        counts = {}
        for rec in judged:
            counts[rec["verdict"]] = counts.get(rec["verdict"], 0) + 1
        lines = [f"verdicts against {self.baseline_file} (profile {self.profile}): "
                 + ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
                 + "  (= no change, ? inconclusive)"]
        for rec in judged:
            if rec["verdict"] not in ("NO CHANGE", "NEW"):
                lines.append(f"  {rec['backend']} bs={rec['batch_size']}: {rec['verdict_detail']}")
        if "NEW" in counts and not self.settings.update_baselines:
            lines.append(f"  {counts['NEW']} entries have no baseline: record them with "
                         f"`pytest perf --update-baselines` (writes {self.baseline_file})")
        lines += [f"  baseline {note}" for note in self.baseline_notes]
        return lines

    def table(self) -> list[str]:
        """Backend rows x batch-size columns of ms/token, and the correctness verdicts."""
        speed = [r for r in self.records.values() if r["test"] == baselines.SPEED_TEST]
        checks = [r for r in self.records.values() if r["test"] != baselines.SPEED_TEST and r["backend"]]
        ids = [b for b in (self.specs or BACKENDS) if any(r["backend"] == b for r in speed + checks)]
        sizes = sorted({r["batch_size"] for r in speed})
        notes: list[str] = []

        def note(text: str) -> str:
            if text not in notes:
                notes.append(text)
            return f"[{notes.index(text) + 1}]"

        header = ["backend"] + [f"bs={b}" for b in sizes] + ["correctness"]
        rows = []
        for bid in ids:
            row = [bid]
            for size in sizes:
                rec = next((r for r in speed if r["backend"] == bid and r["batch_size"] == size), None)
                row.append(_cell(rec, note))
            mine = [r for r in checks if r["backend"] == bid]
            bad = [r for r in mine if r["outcome"] in ("failed", "worker crash")]
            if bad:
                row.append("FAIL: " + ", ".join(r["test"].removeprefix("test_") for r in bad))
            elif mine and all(r["outcome"] == "skipped" for r in mine):
                row.append("skipped " + note(mine[0]["reason"] or ""))
            else:
                row.append("ok" if mine else "-")
            rows.append(row)
        widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
        fmt = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
        lines = [f"ms/token, {self.settings.model_name}, {self.settings.new_tokens} new tokens, "
                 f"median of {self.settings.cycles} cycles", fmt(header)]
        lines += [fmt(r) for r in rows]
        lines += [f"[{i}] {text}" for i, text in enumerate(notes, 1)]
        return lines


MARKERS = {"REGRESSION": "REGRESSION", "IMPROVEMENT": "improved", "NO CHANGE": "=",
           "INCONCLUSIVE": "?", "NEW": "new", "REFUSED": "refused"}


def _cell(rec: dict | None, note) -> str:
    if rec is None:
        return "-"
    if rec["outcome"] == "oom":
        marker = MARKERS.get(rec.get("verdict"), "")
        return f"OOM {marker}".rstrip() if marker not in ("", "=", "new") else "OOM"
    if rec["outcome"] == "skipped":
        return "skip " + note(rec["reason"] or "")
    if rec.get("ms_per_token") is None:
        return "FAIL" if rec["outcome"] in ("failed", "worker crash") else "-"
    text = f"{rec['ms_per_token']:.2f}"
    if rec.get("change") is not None:
        text += f" {rec['change']:+.1%}"
    if rec.get("verdict"):
        text += f" {MARKERS[rec['verdict']]}"
    return text + (" FAIL" if rec["outcome"] == "failed" and rec.get("verdict") != "REGRESSION" else "")


