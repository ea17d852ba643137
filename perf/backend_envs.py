"""Per-backend environments: the interpreter and extra PYTHONPATH entries a backend's worker runs
with, from `[tool.perf.backends.<id>]` in pyproject.toml and `PERF_BACKEND_<ID>_PYTHON[PATH]`
variables. Plain errors (perf.options.OptionError) naming the file, table and key."""
import os
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from perf.backends import BACKENDS
from perf.options import OptionError

ENV_VAR = re.compile(r"^PERF_BACKEND_(.+)_(PYTHON|PYTHONPATH)$")


@dataclass(frozen=True)
class BackendEnv:
    """Which interpreter and extra PYTHONPATH entries a backend's worker runs with."""
    python: str
    pythonpath: tuple[str, ...] = ()


def default_python() -> str:
    return sys.executable


def backend_envs(pyproject: Path, environ: dict) -> dict[str, BackendEnv]:
    """[tool.perf.backends.<id>] of pyproject.toml, then PERF_BACKEND_<ID>_PYTHON[PATH] variables."""
    raw: dict[str, dict] = {}
    if pyproject.is_file():
        try:
            table = tomllib.loads(pyproject.read_text()).get("tool", {}).get("perf", {}).get("backends", {})
        except tomllib.TOMLDecodeError as exc:
            raise OptionError(f"{pyproject}: not valid TOML: {exc}") from None
        for backend_id, entry in table.items():
            where = f"{pyproject} [tool.perf.backends.{backend_id}]"
            _check_id(backend_id, where)
            unknown = set(entry) - {"python", "pythonpath"}
            if unknown:
                raise OptionError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: python, pythonpath")
            raw[backend_id] = dict(entry)
    for name, value in environ.items():
        match = ENV_VAR.match(name)
        if match:
            backend_id = match[1].lower()
            _check_id(backend_id, f"environment variable {name}")
            raw.setdefault(backend_id, {})[match[2].lower()] = value
    envs = {}
    for backend_id, entry in raw.items():
        python = os.path.expandvars(entry.get("python") or default_python())
        if not os.access(python, os.X_OK):
            raise OptionError(f"backend {backend_id}: python {python!r} is not an executable; "
                              "fix [tool.perf.backends] in pyproject.toml or PERF_BACKEND_*_PYTHON")
        paths = entry.get("pythonpath") or []
        if isinstance(paths, str):
            paths = paths.split(os.pathsep)
        expanded = tuple(p for p in (os.path.expandvars(p) for p in paths) if p and not p.startswith("$"))
        envs[backend_id] = BackendEnv(python, expanded)
    return envs


def _check_id(backend_id: str, where: str) -> None:
    if backend_id not in BACKENDS:
        raise OptionError(f"{where}: unknown backend id {backend_id!r}; "
                          f"known ids: {', '.join(BACKENDS)}")
