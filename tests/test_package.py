"""The suite as an installed package: another repository runs it through the plugin's entry point
against its own baselines folder and model, and the console scripts are there."""
import json
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from perf.protocol import EMBEDDED_MODEL


def test_the_plugin_and_commands_are_registered_by_the_installed_package():
    entry_points = metadata.distribution("bloom-perf-suite").entry_points
    assert {(ep.group, ep.name, ep.value) for ep in entry_points} >= {
        ("pytest11", "perf.plugin", "perf.plugin"), ("console_scripts", "perf-report", "perf.report:main"),
        ("console_scripts", "perf-record-baselines", "perf.record:main")}
    scripts = Path(sys.executable).parent
    assert (scripts / "perf-report").exists() and (scripts / "perf-record-baselines").exists()


def test_another_repository_runs_the_suite_against_its_own_baselines_and_model(tmp_path, monkeypatch):
    repo = tmp_path / "serving-repo"
    repo.mkdir()
    (repo / "pyproject.toml").write_text('[tool.pytest.ini_options]\naddopts = ["-p", "no:cacheprovider"]\n')
    shutil.copytree(EMBEDDED_MODEL, repo / "our-bloom")
    monkeypatch.delenv("PYTHONPATH", raising=False)  # the installed package, not this checkout's path
    run = lambda *extra: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "pytest", "--pyargs", "perf", "--model", "our-bloom", "-k", "accel_bf16 and ms_per_token",
         "--batch-sizes", "1", "--cycles", "2", "--new-tokens", "5", *extra],
        cwd=repo, capture_output=True, text=True, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    first = run("--update-baselines=force")  # also on a busy host (tests/test_nothing_lost.py tests the refusal)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "rootdir: " + str(repo) in first.stdout
    stored = list((repo / "baselines").glob("*/our-bloom.json"))
    assert len(stored) == 1 and json.loads(stored[0].read_text())["entries"]["accel_bf16"]["bs1"]["outcome"] == "ok"
    second = run()
    assert second.returncode == 0 and f"verdicts against {stored[0]}" in second.stdout
    assert json.loads((repo / "perf-results.json").read_text())["model"] == "our-bloom"


def test_another_projects_tests_with_a_backend_parameter_are_not_cells_and_write_no_results(tmp_path, monkeypatch):
    """The installed plugin loads in every pytest session of its environment: a test of another
    project taking a parameter named `backend` is not one of the suite's cells, and the results file
    there is left alone."""
    repo = tmp_path / "other-project"
    repo.mkdir()
    (repo / "test_theirs.py").write_text('import pytest\n\n\n@pytest.mark.parametrize("backend", ["accel_bf16", "cuda"])\n'
                                         "def test_theirs(backend):\n    assert backend\n")
    (repo / "perf-results.json").write_text("their own file\n")
    monkeypatch.delenv("PYTHONPATH", raising=False)
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_theirs.py"],
                         cwd=repo, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "2 passed" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
    assert "bloom-perf-suite" in run.stdout  # the plugin was loaded (pytest's "plugins:" line)
    assert "perf results" not in run.stdout and (repo / "perf-results.json").read_text() == "their own file\n"


def test_the_checks_the_tools_share_and_the_synthetic_builder_need_no_pytest():
    # `python -m perf.synthetic` runs in a subprocess of the session, and the two console tools
    # reuse the option, model and path checks: none of them may pull in pytest (an import circle
    # between settings and synthetic once did).
    code = ("import sys, perf.synthetic, perf.options, perf.models, perf.outputs, perf.backend_envs, perf.report, "
            "perf.record; from perf.protocol import EMBEDDED_MODEL; print(sorted(m for m in sys.modules "
            "if m == 'pytest' or m.startswith(('_pytest', 'pytest.'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.stdout.strip() == "[]"
