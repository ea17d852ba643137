"""Fixtures of the suite: one worker per backend for the whole session, and the fp32 reference.

`backend` is session-scoped and parametrized by backend id: pytest runs all tests of one
backend together and finalizes its instance (stopping the worker, freeing its memory) before the
next backend loads. That is the "load once per session" guarantee (tests/test_load_once.py).
"""
from dataclasses import dataclass

import pytest

from perf import ab, protocol
from perf.backends import REFERENCE
from perf.handle import BackendHandle
from perf.launcher import RemoteError, WorkerFailed
from perf.plugin import RESULTS, progress, session_backends

def _default_batch_sizes() -> list[int]:
    import torch
    return [1, 8, 32] if torch.cuda.is_available() else [1, 8]


def pytest_generate_tests(metafunc):
    config = metafunc.config
    if "backend" in metafunc.fixturenames:
        ids = list(session_backends(config))
        metafunc.parametrize("backend", ids, ids=ids, indirect=True, scope="session")
    if "batch_size" in metafunc.fixturenames:
        settings = config.stash[RESULTS].settings
        if settings.batch_sizes is None:
            settings.batch_sizes = _default_batch_sizes()
        metafunc.parametrize("batch_size", settings.batch_sizes,
                             ids=[f"bs{b}" for b in settings.batch_sizes])


@pytest.fixture(scope="session")
def perf_settings(pytestconfig):
    return pytestconfig.stash[RESULTS].settings


@pytest.fixture(scope="session")
def perf_run(pytestconfig):
    """The session's state: records, baselines, verdicts (perf.session.PerfSession)."""
    return pytestconfig.stash[RESULTS]


@pytest.fixture(scope="session")
def worker_logs(tmp_path_factory):
    return tmp_path_factory.mktemp("workers")


@pytest.fixture(scope="session")
def checkpoint(perf_settings) -> str:
    """The model folder every worker loads; a synthetic model is built here, once."""
    if perf_settings.model.startswith("synthetic:"):
        from pathlib import Path

        from perf import models, synthetic
        spec = perf_settings.model
        perf_settings.model = synthetic.ensure(spec, perf_settings.worker_timeout)
        perf_settings.model_identity = models.check_checkpoint(Path(perf_settings.model), f"--model {spec!r}")
    return perf_settings.model


@pytest.fixture(scope="session")
def backend(request, perf_settings, worker_logs, checkpoint):
    spec = session_backends(request.config)[request.param]
    say = lambda text: progress(request.config, text)  # noqa: E731
    side_by_side = perf_settings.base is not None
    handle = BackendHandle(spec, perf_settings, worker_logs, progress=say, side="head" if side_by_side else None)
    if side_by_side and not (handle.unavailable or handle.failure):  # the base, beside it or taking turns
        handle.sides = ab.Sides(handle, lambda: BackendHandle(spec, perf_settings, worker_logs, progress=say, side="base"),
                                alternate=perf_settings.ab_loads == "alternate")
    request.config.stash[RESULTS].handles[spec.id] = handle
    yield handle
    if getattr(handle, "sides", None):
        handle.sides.close()
    handle.close()


@dataclass
class ReferenceOutputs:
    greedy: dict  # tokens/texts of the prompts, as perf.worker.Session.greedy returns them
    logprobs_path: str  # teacher-forced log-probabilities of protocol.SCORING_TEXTS


@pytest.fixture(scope="session")
def reference(request, perf_settings, worker_logs, tmp_path_factory, checkpoint) -> ReferenceOutputs:
    """The fp32 reference's outputs, computed once; its worker is gone before the backends run."""
    path = str(tmp_path_factory.mktemp("reference") / "logprobs.pt")
    handle = BackendHandle(REFERENCE, perf_settings, worker_logs, progress=lambda text: progress(request.config, text))
    try:
        handle.require()
        greedy = handle.call("greedy", prompts=list(protocol.PROMPTS), new_tokens=perf_settings.new_tokens)
        handle.call("score", texts=list(protocol.SCORING_TEXTS), path=path)
    except (RemoteError, WorkerFailed) as exc:
        pytest.fail(f"the fp32 reference failed: {exc}", pytrace=False)
    finally:
        handle.close()
    return ReferenceOutputs(greedy, path)


@pytest.fixture
def perf_record(request) -> dict:
    """This test's entry in the results file; tests add their figures to it."""
    return request.config.stash[RESULTS].record(request.node)
