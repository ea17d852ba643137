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
        if report.when == "teardown" and not hasattr(item.config, "workerinput"):
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
    if results is not None and results.records and not hasattr(session.config, "workerinput"):
        if results.settings.update_baselines:
            results.update_baselines()
        results.write(results.settings.results)


def pytest_terminal_summary(terminalreporter, config) -> None:
    results = config.stash.get(RESULTS, None)
    if results is None or not results.records:
        return
    terminalreporter.section("perf results")
    for line in results.table() + results.verdict_summary():
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"results file: {results.settings.results}")
