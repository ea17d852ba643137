"""Helpers for the suite's own tests: run real perf sessions in a subprocess, read what they
wrote. Sessions use the embedded model with few tokens and cycles so they take seconds."""
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARTICLE = REPO / "tests" / "data" / "article-tables.txt"  # the seed article's two tables, as printed
FAST = ["--new-tokens", "5", "--cycles", "1", "--batch-sizes", "1,2"]


@dataclass
class PerfRun:
    result: pytest.RunResult
    results_path: Path
    load_log: Path

    @property
    def results(self) -> dict:
        return json.loads(self.results_path.read_text())

    def tests(self, **match) -> list[dict]:
        return [t for t in self.results["tests"] if all(t.get(k) == v for k, v in match.items())]

    def loads(self) -> list[dict]:
        if not self.load_log.exists():
            return []
        return [json.loads(line) for line in self.load_log.read_text().splitlines()]


def pid_alive(pid: int) -> bool:
    """Whether the process runs (a zombie, dead but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def run_perf(pytester, monkeypatch):
    """run_perf(*args, fast=True) -> PerfRun: `pytest perf ARGS` in a fresh process."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    load_log = pytester.path / "loads.jsonl"
    monkeypatch.setenv("PERF_LOAD_LOG", str(load_log))

    def run(*args, fast=True) -> PerfRun:
        results = pytester.path / "results.json"
        argv = [str(REPO / "perf"), "-p", "no:cacheprovider", "--results", str(results),
                *(FAST if fast else []), *args]
        return PerfRun(pytester.runpytest_subprocess(*argv, timeout=600), results, load_log)

    return run


def article_tables() -> list[dict]:
    """The article's tables as printed: [{"sizes": [...], "rows": {row name: [cells]}}]."""
    tables, current = [], None
    for line in ARTICLE.read_text().splitlines():
        if line.startswith("#"):
            continue
        if line.startswith("Project bs=1"):
            current = {"sizes": [int(x) for x in re.findall(r"bs=(\d+)", line)], "rows": {}}
            tables.append(current)
        elif current is not None and re.match(r"^(accelerate|ds-inference|ds-zero) ", line):
            words = line.split()
            current["rows"][" ".join(words[:2])] = words[2:]
        elif current is not None and line.strip() == "":
            current = None
    return tables
