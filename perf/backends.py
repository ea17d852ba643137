"""The backends under test, as data: id (what `-k` selects), dtype, article row name, adapter.

Importing this module is cheap (no torch): the pytest process uses it to build the test matrix;
the adapters named here are imported only inside worker processes (perf/adapters.py).
"""
from dataclasses import dataclass


class BackendUnavailable(Exception):
    """Raised by an adapter that cannot run here; the message says what it needs. Its tests are
    skipped with that reason (a worker runs as __main__, so this lives outside perf/worker.py)."""


@dataclass(frozen=True)
class BackendSpec:
    id: str
    dtype: str  # the weights' dtype; selects the correctness thresholds
    title: str  # the article's row name
    adapter: str  # "module:Class", imported in the worker
    multi_rank: bool = False  # runs as --world-size ranks (torchrun); else one process
    max_memory: bool = False  # places its layers with accelerate's device map, within --max-memory
    article_setup: str = ""  # how the article's row spread BLOOM-176B over its GPUs (report --article)
    # Loaded with the interpreter/PYTHONPATH of [tool.perf.backends.<id>] (perf/backend_envs.py).


_PIPELINE = ("the layers split over the GPUs, one GPU working at a time (each step streams every "
             "weight through the GPUs in turn): paced by one GPU's memory bandwidth over the whole model")
_TENSOR_PARALLEL = ("tensor parallel: every layer split over all the GPUs, working at once on their share of "
                    "the weights and joined by an all-reduce per layer")

BACKENDS: dict[str, BackendSpec] = {spec.id: spec for spec in (
    BackendSpec("accel_bf16", "bf16", "accelerate bf16", "perf.adapters:AccelerateBf16", max_memory=True,
                article_setup=_PIPELINE),
    BackendSpec("accel_int8", "int8", "accelerate int8", "perf.adapters:AccelerateInt8", max_memory=True,
                article_setup=_PIPELINE),
    BackendSpec("ds_fp16", "fp16", "ds-inference fp16", "perf.adapters:DeepSpeedInferenceFp16", multi_rank=True,
                article_setup=_TENSOR_PARALLEL),
    BackendSpec("ds_int8", "int8", "ds-inference int8", "perf.adapters:DeepSpeedInferenceInt8",
                article_setup=_TENSOR_PARALLEL),
    BackendSpec("zero_bf16", "bf16", "ds-zero bf16", "perf.adapters:DeepSpeedZeroBf16", multi_rank=True,
                article_setup="each GPU a process generating its own batch, the weights sharded over all and "
                              "gathered layer by layer every step; the published ms/token is one process's "
                              "divided by the number of GPUs (their streams run at once)"),
)}

# The correctness reference: plain transformers in fp32, not a row of the speed table.
REFERENCE = BackendSpec("reference_fp32", "fp32", "transformers fp32", "perf.adapters:Reference")
