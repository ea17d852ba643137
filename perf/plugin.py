"""The pytest plugin: options, the backend matrix, outcome recording, results file and summary.

Loaded by the repository's conftest.py; fixtures and tests live in perf/conftest.py and
perf/test_bloom.py.
"""
import pytest

from perf import settings as settings_mod
from perf.backends import BACKENDS
from perf.baselines import BaselineError
from perf.results import Results

RESULTS = pytest.StashKey[Results]()


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
    config.stash[RESULTS] = Results(settings_mod.from_config(config))
    if hasattr(config, "workerinput"):
        _take_gpu_share(config.workerinput)


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

    return ByBackend(config, log)


def _take_gpu_share(workerinput: dict) -> None:
    """Under pytest -n K, xdist worker i gets the i-th of K disjoint sets of the visible GPUs
    (through CUDA_VISIBLE_DEVICES, which every backend worker it starts inherits)."""
    import os
    import subprocess
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        gpus = [g for g in visible.split(",") if g.strip()]
    else:
        try:
            listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            listing = ""
        gpus = [str(i) for i, line in enumerate(listing.splitlines()) if line.startswith("GPU ")]
    if not gpus:
        return  # CPU: the workers only run side by side
    index, count = int(workerinput["workerid"].removeprefix("gw")), workerinput["workercount"]
    if count > len(gpus):
        raise pytest.UsageError(f"-n {count}: only {len(gpus)} GPU(s) visible; use at most -n {len(gpus)}")
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus[index * len(gpus) // count:(index + 1) * len(gpus) // count])


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    output = getattr(node, "workeroutput", {}).get("perf")
    if output:
        node.config.stash[RESULTS].merge(output)


def session_backends(config) -> dict:
    """This session's backend matrix (id -> BackendSpec): BACKENDS plus what hooks add."""
    results = config.stash[RESULTS]
    if results.specs is None:
        results.specs = dict(BACKENDS)
        config.hook.pytest_perf_backends(backends=results.specs)
    return results.specs


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    results = item.config.stash[RESULTS]
    if results.records.get(item.nodeid) is not None or _is_perf_item(item):
        results.on_report(item, report)
        if report.when == "teardown":
            if results.settings.update_baselines:
                results.update_baselines([results.records[item.nodeid]])
            if not hasattr(item.config, "workerinput"):
                results.write(results.settings.results)  # after every test: a killed run keeps its figures
    return report


def pytest_collection_finish(session) -> None:
    # The baseline file is read (and checked) once we know perf tests will run, before any load.
    if any(_is_perf_item(item) for item in session.items):
        try:
            session.config.stash[RESULTS].prepare_baselines()
        except BaselineError as exc:
            pytest.exit(f"baseline file unusable: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)


def _is_perf_item(item) -> bool:
    return "backend" in getattr(item, "fixturenames", ())


def pytest_sessionfinish(session) -> None:
    results = session.config.stash.get(RESULTS, None)
    if results is None or not results.records:
        return
    if hasattr(session.config, "workerinput"):  # an xdist worker: the controller writes
        session.config.workeroutput["perf"] = results.worker_output()
        return
    if results.profile is None:  # the xdist controller collected nothing itself
        results.prepare_baselines()
    results.write(results.settings.results)


def pytest_terminal_summary(terminalreporter, config) -> None:
    results = config.stash.get(RESULTS, None)
    if results is None or not results.records:
        return
    terminalreporter.section("perf results")
    for line in results.table() + results.verdict_summary():
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"results file: {results.settings.results}")
