"""The CI recipes: valid GitHub Actions workflows (check-jsonschema's copy of the schema) that fail
when the suite does, and a PR job that a stranger's push cannot start."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_each_workflow_is_valid_against_the_github_workflow_schema(path):
    check = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                            str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def _steps(path: Path) -> tuple[dict, list[dict]]:
    workflow = yaml.safe_load(path.read_text())
    (job,) = workflow["jobs"].values()
    return workflow, job["steps"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_no_step_swallows_a_failure(path):
    text = path.read_text()
    assert "|| true" not in text and "continue-on-error" not in text
    _, steps = _steps(path)
    assert steps[-1]["if"] == "always()" and "exit 1" in steps[-1]["run"]  # the last step fails the job


def test_the_nightly_needs_a_baseline_for_its_runner():
    _, steps = _steps(REPO / ".github" / "workflows" / "nightly.yml")
    assert "--require-baseline" in next(s["run"] for s in steps if s.get("id") == "suite")


def test_the_pr_job_runs_on_the_label_or_a_dispatch_only_one_at_a_time_and_comments_on_its_own_prs():
    workflow, steps = _steps(REPO / ".github" / "workflows" / "pr-perf.yml")
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as True
    assert triggers["pull_request"]["types"] == ["labeled"] and "workflow_dispatch" in triggers
    assert workflow["jobs"]["perf"]["if"] == "github.event_name == 'workflow_dispatch' || github.event.label.name == 'perf'"
    assert workflow["concurrency"]["cancel-in-progress"] is True
    comment = next(s for s in steps if s.get("name") == "Comment")
    assert "steps.pr.outputs.fork == 'false'" in comment["if"]
    assert any(s.get("uses", "").startswith("actions/upload-artifact") for s in steps)


def test_the_nightly_keeps_its_history_publishes_the_page_and_fails_on_a_new_regression():
    workflow, steps = _steps(REPO / ".github" / "workflows" / "nightly.yml")
    history = next(s for s in steps if s.get("id") == "history")
    assert "perf.history add perf-results.json" in history["run"] and "git -C perf-history push" in history["run"]
    assert "--new --markdown --fail-on regression" in history["run"] and "GITHUB_STEP_SUMMARY" in history["run"]
    assert any(s.get("uses", "").startswith("actions/deploy-pages") for s in steps)
    assert workflow["permissions"]["contents"] == "write" and workflow["permissions"]["pages"] == "write"
    assert "steps.history.outputs.status" in steps[-1]["env"]["HISTORY"] and "exit 1" in steps[-1]["run"]
