"""The pytest plugin: options, the backend matrix, outcome recording, results file and summary.

Registered through the `pytest11` entry point named "perf.plugin" when the package is installed
(and by the repository's conftest.py, under the same name, when it is not); fixtures and tests
live in perf/conftest.py and perf/test_bloom.py.
"""
import contextlib
import json
from pathlib import Path

import pytest

from perf import ab, files, outputs, table
from perf import settings as settings_mod
from perf.backends import BACKENDS
from perf.baselines import BaselineError
from perf.options import OptionError
from perf.protocol import SPEED_TEST
from perf.session import PerfSession

RESULTS = pytest.StashKey[PerfSession]()


class PerfHooks:
    @staticmethod
    def pytest_perf_backends(backends: dict) -> None:
        """Add or remove entries of `backends` (id -> BackendSpec) for this session's matrix.
        The suite's own tests use it to add test doubles (tests/doubles.py)."""


def pytest_addhooks(pluginmanager) -> None:
    pluginmanager.add_hookspecs(PerfHooks)


def pytest_addoption(parser) -> None:
    settings_mod.add_options(parser)


def pytest_configure(config) -> None:
    # Every option is checked here, before collection and before any worker starts.
    config.stash[RESULTS] = perf = PerfSession(settings_mod.from_config(config))
    if hasattr(config, "workerinput"):
        _take_gpu_share(config.workerinput)
    elif not (config.option.help or config.option.collectonly):
        try:
            _check_parallel_recording(config, perf.settings)
            perf.results_lock = outputs.claim_results(perf.settings.results)  # held by the process that writes it
        except OptionError as exc:
            raise pytest.UsageError(str(exc)) from None


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """pytest -n K: every test of one backend goes to the same xdist worker, so that the backend
    still loads once. (xdist's own --dist loadgroup marks do not reach pytest 9's node ids.)"""
    if config.option.dist != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByBackend(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            # Ids carry the backend first: test_ms_per_token[accel_int8-bs8], test_x[zero_bf16].
            if not nodeid.endswith("]"):
                return nodeid
            return nodeid.rpartition("[")[2][:-1].split("-")[0]

        def remove_node(self, node):
            # xdist's LoadScopeScheduling puts the test that crashed its worker back in the queue
            # with the rest of the backend's: it then runs again, and is reported twice (failed,
            # then passed). Marked done here, the rest of the backend goes on without it.
            crashed = next((nodeid for unit in self.assigned_work.get(node, {}).values()
                            for nodeid, done in unit.items() if not done), None)
            for unit in self.assigned_work.get(node, {}).values():
                if crashed in unit:
                    unit[crashed] = True
            super().remove_node(node)
            return crashed

    return ByBackend(config, log)


def _visible_gpus() -> list[str]:
    """The GPUs this process may use, without importing torch: CUDA_VISIBLE_DEVICES, else nvidia-smi's list."""
    import os
    import subprocess
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g for g in visible.split(",") if g.strip()]
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        listing = ""
    return [str(i) for i, line in enumerate(listing.splitlines()) if line.startswith("GPU ")]


def _check_parallel_recording(config, settings) -> None:
    """pytest -n K (K > 1) with --update-baselines: on a machine without GPUs the xdist workers'
    cells measure at the same time on the same CPUs, and the baseline would keep that slowdown.
    With GPUs each worker has its own; a cell whose host was busy is still refused (perf.verdicts.busy_refusal)."""
    workers = len(config.getoption("tx", None) or [])
    if settings.update_baselines and workers > 1 and not _visible_gpus():
        raise OptionError(f"-n {workers} with --update-baselines on a machine without GPUs: the {workers} xdist "
                          "workers would measure at the same time on the same CPUs, and the baseline would keep "
                          "that slowdown; record without -n (or run with -n, then record a quiet run's results "
                          "with perf-record-baselines)")


def _take_gpu_share(workerinput: dict) -> None:
    """Under pytest -n K, xdist worker i gets the i-th of K disjoint sets of the visible GPUs
    (through CUDA_VISIBLE_DEVICES, which every backend worker it starts inherits)."""
    import os
    gpus = _visible_gpus()
    if not gpus:
        return  # CPU: the workers only run side by side
    index, count = int(workerinput["workerid"].removeprefix("gw")), workerinput["workercount"]
    if count > len(gpus):
        raise pytest.UsageError(f"-n {count}: only {len(gpus)} GPU(s) visible; use at most -n {len(gpus)}")
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus[index * len(gpus) // count:(index + 1) * len(gpus) // count])


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    output = getattr(node, "workeroutput", {})
    if output.get("perf"):
        perf = node.config.stash[RESULTS]
        perf.run.merge(output["perf"])
        perf.baseline_notes += output.get("perf_baseline_notes", [])
        failures = output.get("perf_write_failures", [])
        perf.write_failures += failures  # a baseline this worker could not update: said, and the run fails
        perf.unrecorded = perf.unrecorded or bool(failures)


def session_backends(config) -> dict:
    """This session's backend matrix (id -> BackendSpec): BACKENDS plus what hooks add."""
    perf = config.stash[RESULTS]
    if perf.specs is None:
        perf.specs = dict(BACKENDS)
        config.hook.pytest_perf_backends(backends=perf.specs)
    return perf.specs


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    session = item.config.stash[RESULTS]
    if session.records.get(item.nodeid) is not None or _is_perf_item(item):
        session.on_report(item, report)
        if report.when == "call" and item.originalname == SPEED_TEST:
            progress(item.config, _cell_line(session.records[item.nodeid], report.duration))
        if report.when == "teardown":
            if session.settings.update_baselines:
                session.update_baselines([session.records[item.nodeid]])
            if not hasattr(item.config, "workerinput"):
                session.write_results()  # after every test: a killed run keeps its figures
            else:  # an xdist worker killed later must not take its finished records with it
                files.write_atomically(_partial(item.config), session.run.worker_output())
    return report


def _partial(config) -> Path:
    """Where xdist worker gwN keeps its records as it goes, beside the results file."""
    results = config.stash[RESULTS].settings.results
    return results.with_name(f".{results.name}.{config.workerinput['workerid']}.partial")


def _merge_partials(perf: PerfSession) -> None:
    """The records of xdist workers that died before handing them over, then their files gone."""
    results = perf.settings.results
    for path in sorted(results.parent.glob(f".{results.name}.gw*.partial")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        missing = {k: v for k, v in data["records"].items() if k not in perf.records}
        if missing:
            perf.run.merge(json.dumps({**data, "records": missing}))
        path.unlink(missing_ok=True)


def progress(config, text: str) -> None:
    """A line on the terminal as the run goes (a backend loading, a cell done); xdist workers' and
    -qq runs' are not shown."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or hasattr(config, "workerinput") or config.get_verbosity() < -1:
        return
    capture = config.pluginmanager.get_plugin("capturemanager")  # a load runs in a fixture, captured
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.ensure_newline()
        reporter.write_line(f"perf: {text}")


def _cell_line(rec: dict, seconds: float) -> str:
    figure = f"{rec['ms_per_token']:.2f} ms/token" if rec.get("ms_per_token") is not None else rec["outcome"] or "?"
    verdict = f", {rec['verdict']}" if rec.get("verdict") else ""
    return f"{rec['backend']} bs={rec['batch_size']}: {figure}{verdict} ({seconds:.1f} s)"


def pytest_collection_finish(session) -> None:
    # The baseline file is read (and checked) once we know perf tests will run, before any load.
    if any(_is_perf_item(item) for item in session.items):
        perf = session.config.stash[RESULTS]
        _say_idle_options(session)
        try:
            settings_mod.checked_before_a_run(perf.settings, session.config.getoption)
            perf.prepare_baselines()
            if perf.settings.update_baselines:
                outputs.check_baseline_store(perf.settings.baselines_dir, perf.run.profile, perf.settings.model_name)
            if perf.settings.require_baseline and perf.baseline is None:
                raise OptionError(
                    f"--require-baseline: no baseline for hardware profile {perf.run.profile!r} and model "
                    f"{perf.settings.model_name!r} ({perf.baseline_file} does not exist); record one with "
                    "--update-baselines, or name a profile that has one with --hardware")
        except BaselineError as exc:
            pytest.exit(f"baseline file unusable: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)
        except OptionError as exc:
            pytest.exit(str(exc), returncode=pytest.ExitCode.USAGE_ERROR)


def _say_idle_options(session) -> None:
    """A line for each given option that does nothing in the run as selected (-k)."""
    items = [item for item in session.items if _is_perf_item(item)]
    specs = session_backends(session.config)
    selected = {item.callspec.params["backend"] for item in items if hasattr(item, "callspec")}
    timed = any(item.originalname == table.SPEED_TEST for item in items)
    for note in settings_mod.idle_options(session.config.getoption, timed, [specs[b] for b in selected if b in specs]):
        progress(session.config, note)


SUITE_DIR = Path(__file__).resolve().parent  # the suite's tests and the conftest.py of its `backend` fixture


def _is_perf_item(item) -> bool:
    """A test of the suite: under its own folder, taking its `backend` fixture. The plugin loads in
    every pytest session of an environment where the suite is installed; another project's test
    with a parameter or fixture named `backend` is not a cell, and writes no results file."""
    return "backend" in getattr(item, "fixturenames", ()) and SUITE_DIR in Path(str(item.path)).resolve().parents


def pytest_sessionfinish(session) -> None:
    perf = session.config.stash.get(RESULTS, None)
    if perf is not None and not hasattr(session.config, "workerinput"):
        _merge_partials(perf)
    if perf is None or not perf.records:
        return
    perf.snapshot_backends()
    if hasattr(session.config, "workerinput"):  # an xdist worker: the controller writes
        session.config.workeroutput["perf"] = perf.run.worker_output()
        session.config.workeroutput["perf_baseline_notes"] = list(perf.baseline_notes)
        session.config.workeroutput["perf_write_failures"] = [f for f in perf.write_failures if f.startswith("baseline ")]
        return
    if perf.run.profile is None:  # the xdist controller collected nothing itself
        perf.prepare_baselines()
    perf.write_results()
    if (perf.write_failures or perf.refused_entries()) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED  # a run whose figures were not all kept (or recorded) fails


def pytest_terminal_summary(terminalreporter, config) -> None:
    perf = config.stash.get(RESULTS, None)
    if perf is None or not perf.records:
        return
    s = perf.settings
    terminalreporter.section("perf results")
    for line in table.terminal_table(perf.records.values(), s.model_name, s.new_tokens, s.cycles) + verdict_summary(perf):
        terminalreporter.write_line(line)
    if perf.write_failures:
        terminalreporter.section("perf: NOT WRITTEN", red=True)
        for line in perf.write_failures + [perf.record_later()] * bool(perf.unrecorded):
            terminalreporter.write_line(line, red=True)
        if perf.unwritten:
            terminalreporter.write_line(perf.unwritten)
    if perf.refused_entries():
        terminalreporter.section("perf: baselines NOT recorded", red=True)
        for note in perf.refused_entries():
            terminalreporter.write_line(note, red=True)
    if perf.results_at == s.results:
        terminalreporter.write_line(f"results file: {s.results}")


def verdict_summary(perf: PerfSession) -> list[str]:
    """The verdict counts, a line per cell that is not NO CHANGE or NEW, and what the baselines did."""
    judged = [r for r in perf.records.values() if r.get("verdict")]
    if not judged:
        return []
    counts = table.verdict_counts(judged)
    against = f"the base {perf.settings.base} (side by side)" if perf.settings.base else \
        f"{perf.baseline_file} (profile {perf.run.profile})"
    legend = table.text_legend(counts)
    lines = [f"verdicts against {against}: " + ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
             + (f"  {legend}" if legend else "")]
    for rec in judged:
        pairs = f" [{ab.summary_line(rec)}]" if rec.get("ab") else ""
        if rec["verdict"] not in ("NO CHANGE", "NEW") or pairs:
            lines.append(f"  {rec['backend']} bs={rec['batch_size']}{pairs}: {rec['verdict_detail']}")
    unknown = sum(1 for rec in judged if (rec.get("baseline") or {}).get("model_known") is False)
    if unknown:
        lines.append(f"  {unknown} baseline entries do not say which model they measured (recorded before entries "
                     f"kept it): another model named {perf.settings.model_name!r} would not be noticed; re-record "
                     "them with --update-baselines")
    if "NEW" in counts and not perf.settings.update_baselines:
        new = counts["NEW"]
        lines.append(f"  {new} {'cell has' if new == 1 else 'cells have'} no baseline entry: record "
                     f"{'it' if new == 1 else 'them'} with "
                     f"`pytest perf --update-baselines` (writes {perf.baseline_file})")
    lines += [f"  baseline {note}" for note in perf.baseline_notes if note not in perf.refused_entries()]
    return lines
