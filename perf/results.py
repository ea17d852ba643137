"""The results file of a perf session (`--results`, default perf-results.json): every sample,
figure and outcome of the run, written after each test so that a killed run keeps its figures.

    {"schema": 2, "started": ISO time, "model": name, "model_path": what from_pretrained got,
     "protocol": {"new_tokens", "cycles", "warmup_cycles", "profile_cycles", "batch_sizes", "cpus"},
     "fingerprint": {"devices", "device_count", "visible_devices", "driver", "cuda", "cpu",
                     "cpu_count", "platform", "versions", "git_commit", "git_dirty"},
     "side_by_side": null | {"base": checkout, "base_python", "head_python", "max_pairs", "max_seconds", "loads"},
     "hardware_profile": "1xH200", "memory_bandwidth_gb_s": float | null, "baseline_file": path | null,
     "backends": {id: {"info": what its load returned, "unavailable": why | null, "failure": why | null}},
     "tests": [RECORD, ...]}

model_identity (perf.models.model_identity: which model, absent in files written before it was
kept) sits beside "model".

RECORD (one per test, `Record` below is its exact schema): test, nodeid, backend, dtype,
batch_size, model, outcome ("passed" | "failed" | "skipped" | "oom" | "worker crash" | null while
running), reason, seconds {setup, call, teardown}; a correctness test adds its figures (texts;
first_divergence and match; top1 and kl, with the thresholds it was held to); a ms/token test adds
perf.figures.speed_figures (ms_per_token; samples: {key: one value per cycle} for every kind of
evidence of perf.evidence; profile: the profiled cycles' kernel tables; ...), protocol, versions,
hardware_profile, device_count, and its verdict (verdict, verdict_detail, change, decided_by,
evidence: {kind key: its verdict, with its label}, baseline). Side by side (--base), a ms/token record also holds `ab`:
pairs, seconds, stopped ("decided" | "precise" | "budget"), order (b/h per cycle), loads, unavailable
(what one side's worker could not measure), threshold, and the base's figures and samples; its
verdict is the head against the base. The JSON is strict: no NaN or infinity.

Schema 3 keeps the samples under `samples`; files of schemas 1 and 2 (`<key>_samples` beside the
figures or under `profile`, evidence keyed by label) are read into that shape (perf.evidence).
"""
import json
import math
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, create_model, model_validator

from perf import evidence, files, models
from perf.protocol import SPEED_TEST
from perf.schema import Finite, Model, ModelIdentity, Positive, Samples
from perf.worker import versions

SCHEMA = 3
READABLE_SCHEMAS = (1, 2, 3)
OUTCOMES = ("passed", "failed", "skipped", "oom", "worker crash")
VERDICT_KINDS = ("REGRESSION", "IMPROVEMENT", "NO CHANGE", "INCONCLUSIVE", "NEW", "REFUSED")


class ResultsError(Exception):
    """A results file that cannot be used; the message names the file, test and field."""


# -- the schema ----------------------------------------------------------------------------------
# Records of schemas 1 and 2 held each kind's samples as `<key>_samples`: checked as such.
_Legacy = create_model("_Legacy", __base__=Model,
                       **{f"{name}_samples": (info.annotation, []) for name, info in Samples.model_fields.items()})


class Record(_Legacy):
    test: str
    nodeid: str
    backend: str  # every test of the suite runs one backend (a plugin may add backends: pytest_perf_backends)
    batch_size: Annotated[int, Field(gt=0, strict=True)] | None = None
    outcome: Literal[OUTCOMES] | None = None
    reason: str | None = None
    ms_per_token: Positive | None = None
    samples: Samples = Samples()
    verdict: Literal[VERDICT_KINDS] | None = None
    change: Finite | None = None

    @model_validator(mode="after")
    def _sized(self):
        if self.test == SPEED_TEST and self.batch_size is None:
            raise ValueError(f"field batch_size: missing; every {SPEED_TEST} record has its batch size")
        return self


class Fingerprint(Model):
    devices: list[str]
    device_count: Annotated[int, Field(ge=0, strict=True)]
    versions: dict


class ResultsFile(Model):
    schema_: int = Field(alias="schema")
    started: str
    model: str
    model_identity: ModelIdentity | None = None
    protocol: dict
    fingerprint: Fingerprint
    hardware_profile: str | None
    tests: list[Record]


def validate(data, path) -> None:
    if not isinstance(data, dict) or "tests" not in data or "model" not in data:
        raise ResultsError(f"{path}: not a results file of this suite (no 'model'/'tests'; pytest perf --results writes one)")
    if data.get("schema", 1) not in READABLE_SCHEMAS:
        raise ResultsError(f"{path}: field 'schema': unknown results schema {data.get('schema')!r}; "
                           f"this suite reads {', '.join(map(str, READABLE_SCHEMAS))}")
    try:
        ResultsFile.model_validate({"schema": 1, **data})
    except ValidationError as exc:
        raise ResultsError(f"{path}: " + "; ".join(_where(e, data) for e in exc.errors()[:3])) from None


def _where(error: dict, data: dict) -> str:
    loc = list(error["loc"])
    where = []
    if loc[:1] == ["tests"] and len(loc) >= 2 and isinstance(loc[1], int):
        test = data["tests"][loc[1]]
        where.append(f"test {test.get('nodeid', loc[1]) if isinstance(test, dict) else loc[1]}")
        loc = loc[2:]
    if loc:
        where.append("field " + ".".join(map(str, loc)))
    return ": ".join(where + [files.validation_message(error)])


WHAT = "a results file of this suite"


def read(path: Path) -> dict:
    """One results file, validated (ResultsError with one line for the user otherwise)."""
    path = Path(path)
    return checked(files.read_json(path, ResultsError, WHAT), path)


def parse(raw: bytes, path: Path) -> dict:
    """read() of bytes already read from `path`."""
    return checked(files.parse_json(raw, path, ResultsError, WHAT), path)


def checked(data, path) -> dict:
    """The parsed JSON of a results file, validated and in today's shape (schema 3)."""
    validate(data, path)
    return {**data, "tests": [evidence.upgrade_record(t) for t in data["tests"]]}


def read_run(paths: list[Path], replaced: list[str] | None = None) -> dict:
    """One run's results; several files (one run split over calls with -k, as in a time-limited
    GPU lease) are merged, tests by node id, later files winning, if model, profile and --cpus agree.
    A line for each two files that both hold finished cells of the same tests goes to `replaced`."""
    merged, first, held_in, in_both = None, None, {}, {}
    for path in paths:
        data = read(path)
        for t in data["tests"]:
            if t.get("outcome") is None:
                continue
            if t["nodeid"] in held_in:
                in_both.setdefault((held_in[t["nodeid"]], path), []).append(t["nodeid"].split("::")[-1])
            held_in[t["nodeid"]] = path
        if merged is None:
            merged, first = {**data, "tests": list(data["tests"])}, path
            continue
        differs = run_differences(data, merged)
        if differs:
            raise ResultsError(f"{path} and {first} are not one run: " + "; ".join(differs) + ". Only files of one "
                               "run (split over calls with -k) merge: report each on its own")
        merged["tests"] = merge_tests(merged["tests"], data["tests"])
        merged["backends"] = {**merged.get("backends", {}), **data.get("backends", {})}
        merged["memory_bandwidth_gb_s"] = merged.get("memory_bandwidth_gb_s") or data.get("memory_bandwidth_gb_s")
    for (earlier, later), tests in in_both.items():
        if replaced is not None:
            shown = ", ".join(tests[:3]) + (f" and {len(tests) - 3} more" if len(tests) > 3 else "")
            replaced.append(f"{earlier} and {later} both hold {len(tests)} finished "
                            f"{'test' if len(tests) == 1 else 'tests'} ({shown}): the later file's are reported")
    return merged


def run_differences(ours: dict, theirs: dict) -> list[str]:
    """What makes two results files two runs that do not mix (model, its identity, hardware
    profile, protocol, --cpus, plain or side by side), each as 'what: here, there'."""
    shown = lambda side: f"side by side with {side['base']}" if side else "against baselines"  # noqa: E731
    pairs = [("model", ours.get("model"), theirs.get("model")),
             ("hardware profile", ours.get("hardware_profile"), theirs.get("hardware_profile"))]
    pairs += [(name, ours["protocol"].get(key), theirs["protocol"].get(key))
              for name, key in (("new tokens", "new_tokens"), ("cycles", "cycles"), ("profile cycles", "profile_cycles"))
              if key in ours["protocol"] and key in theirs["protocol"]]
    pairs.append(("--cpus", ours["protocol"].get("cpus") or "unpinned", theirs["protocol"].get("cpus") or "unpinned"))
    a, b = ours.get("side_by_side"), theirs.get("side_by_side")
    if bool(a) != bool(b) or (a and a.get("base") != b.get("base")):
        pairs.append(("kind", shown(a), shown(b)))
    differs = [f"{name} {x!r} vs {y!r}" for name, x, y in pairs if x != y]
    a, b = ours.get("model_identity"), theirs.get("model_identity")
    if a and b and not models.same_model(a, b) and ours.get("model") == theirs.get("model"):
        differs.append(f"another model under one name: {models.describe(a)} vs {models.describe(b)}")
    return differs


def merge_tests(ours: list[dict], theirs: list[dict]) -> list[dict]:
    """Records by node id, `theirs` winning, in first-seen order; except that a cell left unfinished
    (no outcome: its run was stopped during it) never hides a finished record of the same cell."""
    by_id = {t["nodeid"]: t for t in ours}
    for record in theirs:
        if record.get("outcome") is None and by_id.get(record["nodeid"], {}).get("outcome") is not None:
            continue
        by_id[record["nodeid"]] = record
    return list(by_id.values())


# -- the machine ---------------------------------------------------------------------------------
def fingerprint() -> dict:
    import torch
    cuda = torch.cuda.is_available()
    devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    source = Path(__file__).parent
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
        "git_commit": _run(["git", "rev-parse", "HEAD"], cwd=source) or None,
        "git_dirty": bool(_run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=source)),
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


# -- one session's results -------------------------------------------------------------------------
class Run:
    """What a session measured: the records, the backends' load info, the machine; as the file."""

    def __init__(self, settings):
        self.settings = settings
        self.records: dict[str, dict] = {}  # nodeid -> record
        self.backends: dict[str, dict] = {}  # backend id -> {"info", "unavailable", "failure"}
        self.started = datetime.now(timezone.utc)
        self.fingerprint: dict | None = None
        self.profile: str | None = None
        self.baseline_file: Path | None = None
        self.memory_bandwidth: float | None = None  # GB/s, measured once per run (roofline)

    def record(self, nodeid: str, **fields) -> dict:
        """This test's record, made with `fields` the first time."""
        return self.records.setdefault(nodeid, {"nodeid": nodeid, "outcome": None, "reason": None, **fields})

    def to_json(self) -> dict:
        s = self.settings
        return {
            "schema": SCHEMA,
            "started": self.started.isoformat(timespec="seconds"),
            "model": s.model_name, "model_path": s.model, "model_identity": s.model_identity,
            "protocol": {"new_tokens": s.new_tokens, "cycles": s.cycles, "warmup_cycles": 1,
                         "profile_cycles": s.profile_cycles, "batch_sizes": s.batch_sizes,
                         "cpus": list(s.cpus) if s.cpus else None},
            # --base: side by side with that checkout; each record's "ab" holds its pairs and the base's samples
            "side_by_side": None if s.base is None else {
                "base": str(s.base), "base_python": s.base_python, "head_python": s.head_python,
                "max_pairs": s.ab_max_pairs, "max_seconds": s.ab_max_seconds, "loads": s.ab_loads},
            "fingerprint": self.fingerprint or fingerprint(),
            "hardware_profile": self.profile,
            "memory_bandwidth_gb_s": self.memory_bandwidth,
            "baseline_file": str(self.baseline_file) if self.baseline_file else None,
            "backends": self.backends,
            "tests": list(self.records.values()),
        }

    def dumps(self) -> str:
        return json.dumps(strict_json(self.to_json()), indent=1, allow_nan=False) + "\n"

    def write(self, path: Path) -> None:
        files.write_atomically(path, self.dumps())

    # -- pytest-xdist: each worker measures its backends; the controller merges and reports --
    def worker_output(self) -> str:
        return json.dumps(strict_json({"records": self.records, "backends": self.backends,
                                       "memory_bandwidth": self.memory_bandwidth}))

    def merge(self, output: str) -> None:
        data = json.loads(output)
        self.records.update({r["nodeid"]: r for r in merge_tests(list(self.records.values()),
                                                                 list(data["records"].values()))})
        self.backends.update(data["backends"])
        self.memory_bandwidth = self.memory_bandwidth or data["memory_bandwidth"]


def strict_json(value):
    """`value` with every NaN or infinity replaced by null: results files are strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value
