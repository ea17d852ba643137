"""One pytest session of the suite: its settings, the backends it loaded, the baseline file of its
hardware profile and model, and its results (perf.results.Run). The plugin (perf.plugin) keeps one
in the config's stash; the fixtures and tests reach it as `perf_run`."""
import os
import tempfile
from pathlib import Path

from perf import baselines, files, results, verdicts
from perf.backends import BACKENDS
from perf.verdicts import INCONCLUSIVE, REGRESSION, Verdict


class PerfSession:
    def __init__(self, settings):
        self.settings = settings
        self.run = results.Run(settings)
        self.handles: dict = {}  # backend id -> BackendHandle
        self.specs: dict | None = None  # backend id -> BackendSpec (perf.plugin.session_backends)
        self.baseline: dict | None = None  # the validated baseline file of this profile and model
        self.baseline_notes: list[str] = []
        self.write_failures: list[str] = []  # what could not be written, and where the figures went instead
        self.unwritten: str | None = None  # the results JSON when no file could take it
        self.unrecorded = False  # a baseline write failed: its entries are only in the results
        self.results_at: Path | None = None  # where the results were last written (the file or its temporary copy)
        self.results_lock = None  # held open while this process writes --results (perf.outputs.claim_results)

    @property
    def records(self) -> dict:
        return self.run.records

    @property
    def baseline_file(self) -> Path | None:
        return self.run.baseline_file

    def prepare_baselines(self) -> None:
        """Fingerprint the machine and read this profile's baseline file (BaselineError if bad)."""
        run = self.run
        run.fingerprint = results.fingerprint()
        run.profile = self.settings.hardware or baselines.hardware_profile(run.fingerprint)
        run.baseline_file = baselines.baseline_path(self.settings.baselines_dir, run.profile, self.settings.model_name)
        self.baseline = baselines.load(run.baseline_file)

    # -- records -------------------------------------------------------------------------------
    def record(self, item) -> dict:
        params = getattr(item, "callspec", None)
        params = params.params if params else {}
        backend = params.get("backend")
        spec = (self.specs or BACKENDS).get(backend)
        return self.run.record(item.nodeid, test=item.originalname, backend=backend,
                               dtype=spec.dtype if spec else None, batch_size=params.get("batch_size"),
                               model=self.settings.model_name)

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
            rec["reason"] = rec.get("reason") or _reason(report)
        else:
            rec["outcome"] = "passed"
        self.snapshot_backends()

    def snapshot_backends(self) -> None:
        self.run.backends.update({bid: {"info": h.info, "unavailable": h.unavailable, "failure": h.failure}
                                  for bid, h in self.handles.items()})

    # -- verdicts ------------------------------------------------------------------------------
    def judge(self, handle, record: dict, ab_verdict: Verdict | None = None) -> Verdict:
        """The verdict of one ms/token record against its baseline entry (or, side by side, the one
        perf.ab reached against the base); noted in the record."""
        entry = ((self.baseline or {}).get("entries", {}).get(handle.spec.id, {})
                 .get(baselines.entry_key(record["batch_size"])))
        record["protocol"] = baselines.protocol_of(self.settings, handle.info)
        record["versions"] = handle.info.get("versions")
        # Under pytest -n on GPUs each xdist worker sees its share of the GPUs: its own profile.
        record["hardware_profile"] = self.run.profile
        record["device_count"] = self.run.fingerprint["device_count"]
        verdict = ab_verdict or verdicts.judge(entry, record, record["protocol"])
        record.update(verdict.record_fields())
        if entry is not None and ab_verdict is None:
            record["baseline"] = {"ms_per_token": entry["ms_per_token"], "outcome": entry["outcome"],
                                  "provenance": entry["provenance"]["kind"],
                                  "model_known": bool(entry["protocol"].get("model"))}
        return verdict

    def assert_verdict(self, verdict: Verdict) -> None:
        import pytest
        if verdict.kind == REGRESSION or (verdict.kind == INCONCLUSIVE and self.settings.strict_perf):
            against = f"the base {self.settings.base}" if self.settings.base else self.baseline_file
            pytest.fail(f"{verdict.describe()} against {against}", pytrace=False)

    def update_baselines(self, records) -> None:
        """Write these records' entries (called after each ms/token test: a killed run keeps them)."""
        run = self.run
        by_profile = baselines.entries_from(records, run.fingerprint, run.profile)
        for profile, entries in by_profile.items():
            path = baselines.baseline_path(self.settings.baselines_dir, profile, self.settings.model_name)
            try:
                self.baseline_notes += baselines.update(path, profile, self.settings.model_name, entries,
                                                        self.settings.update_baselines, refuse=verdicts.pool_refusal,
                                                        busy=verdicts.busy_refusal)
            except OSError as exc:  # update() left the file and its history as they were
                cells = ", ".join(f"{b}/{k}" for b, sizes in entries.items() for k in sizes)
                self.write_failures.append(f"baseline {path} NOT updated with {cells}: {exc.strerror or exc}")
                self.unrecorded = True

    def refused_entries(self) -> list[str]:
        """The baseline notes of entries --update-baselines was asked for and did not write."""
        return [note for note in self.baseline_notes if note.startswith(baselines.NOT_RECORDED)]

    def record_later(self) -> str | None:
        """How to record the entries a failed baseline write left out, from wherever this run's
        results actually went (the results file, or its temporary copy), with the same store and mode."""
        if not self.unrecorded:
            return None
        mode = self.settings.update_baselines or "yes"
        flags = f" --baselines {self.settings.baselines_dir.resolve()}" + \
            (" --pool" if "pool" in mode else "") + (" --force" if "force" in mode else "")
        if self.results_at is None:
            return f"to record them later, save the results printed below to a file, then: perf-record-baselines FILE{flags}"
        return f"the figures are in {self.results_at}; record them later with: perf-record-baselines {self.results_at}{flags}"

    def write_results(self) -> None:
        """The results file; if it cannot be written (a full disk), a copy in the temporary folder,
        and the failure said; if neither can, the failure is said and the JSON kept for the summary."""
        text = self.run.dumps()
        target = self.settings.results
        try:
            files.write_atomically(target, text)
            self.results_at, self.unwritten = target, None
            return
        except OSError as exc:
            error = f"cannot write --results {target}: {exc.strerror or exc}"
        fallback = Path(tempfile.gettempdir()) / f"perf-results-{os.getpid()}.json"
        try:
            files.write_atomically(fallback, text)
            note = f"{error}; this run's figures are in {fallback}"
            self.results_at, self.unwritten = fallback, None
        except OSError as exc:
            note = f"{error}, nor {fallback} ({exc.strerror or exc}); the results are printed below"
            self.results_at, self.unwritten = None, text
        if note not in self.write_failures:
            self.write_failures.append(note)


def _reason(report) -> str | None:
    """The line of a failure that says what went wrong: the first line of the message pytest.fail
    was given (the error, before the worker's stderr tail), else the exception's last line."""
    longrepr = report.longrepr
    if longrepr is None:
        return None
    crash = getattr(getattr(longrepr, "reprcrash", None), "message", None)
    text = crash if crash else str(longrepr)
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return None
    first = lines[0].removeprefix("Failed: ")
    return first[:500]
