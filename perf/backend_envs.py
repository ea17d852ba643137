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
            data = tomllib.loads(pyproject.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise OptionError(f"{pyproject}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise OptionError(f"{pyproject}: cannot read it: {exc.strerror}") from None
        table = data
        for key in ("tool", "perf", "backends"):
            table = table.get(key, {})
            if not isinstance(table, dict):
                name = "tool.perf.backends"[:"tool.perf.backends".index(key) + len(key)]
                raise OptionError(f"{pyproject}: '{name}' is {table!r}, not a table; "
                                  "write it as [tool.perf.backends.<id>] tables (README, per-backend environments)")
        for backend_id, entry in table.items():
            where = f"{pyproject} [tool.perf.backends.{backend_id}]"
            _check_id(backend_id, where)
            if not isinstance(entry, dict):
                raise OptionError(f"{where}: {entry!r}, not a table; write [tool.perf.backends.{backend_id}] "
                                  "with keys python and/or pythonpath")
            unknown = set(entry) - {"python", "pythonpath"}
            if unknown:
                raise OptionError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: python, pythonpath")
            if "python" in entry and not isinstance(entry["python"], str):
                raise OptionError(f"{where}: key python is {entry['python']!r}, not a string; give an interpreter's "
                                  'path, e.g. python = "/opt/t4-venv/bin/python"')
            paths = entry.get("pythonpath")
            if paths is not None and not (isinstance(paths, str) or
                                          (isinstance(paths, list) and all(isinstance(p, str) for p in paths))):
                raise OptionError(f"{where}: key pythonpath is {paths!r}, not a string or a list of strings; e.g. "
                                  'pythonpath = "$PERF_T4_PYTHONPATH" or pythonpath = ["/opt/t4", "/opt/extra"]')
            if paths is not None:  # a relative folder there is the pyproject's ($VARs are expanded below)
                paths = paths.split(os.pathsep) if isinstance(paths, str) else paths
                entry["pythonpath"] = [p if p.startswith("$") else str(pyproject.parent / p) for p in paths if p]
            raw[backend_id] = dict(entry)
    for name, value in environ.items():
        match = ENV_VAR.match(name)
        if match:
            backend_id = match[1].lower()
            _check_id(backend_id, f"environment variable {name}")
            raw.setdefault(backend_id, {})[match[2].lower()] = value
            if match[2] == "PYTHON":
                raw[backend_id]["python_from"] = f"environment variable {name}"
    envs = {}
    for backend_id, entry in raw.items():
        python = os.path.expandvars(entry.get("python") or default_python())
        if not (os.path.isfile(python) and os.access(python, os.X_OK)):
            where = entry.get("python_from") or f"{pyproject} [tool.perf.backends.{backend_id}] key python"
            raise OptionError(f"backend {backend_id}: python {python!r} (from {where}) is not an executable "
                              "file; give an interpreter's path there, or remove it to use pytest's")
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
