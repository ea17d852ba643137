"""The seed measurement protocol (DESIGN.md, "Measurement"): the prompts and defaults of
transformers-bloom-inference's `--benchmark` loop, which produced the article's tables."""
import time
from pathlib import Path

# The embedded default model (DESIGN.md, "Models"): a real BLOOM checkpoint with its tokenizer,
# small enough to ship; synthetic checkpoints take their tokenizer from it.
EMBEDDED_MODEL = Path(__file__).resolve().parent / "assets" / "tiny-bloom"

# The 8 prompts of transformers-bloom-inference, repeated up to the batch size.
PROMPTS = (
    "DeepSpeed is a machine learning framework",
    "He is working on",
    "He has a",
    "He got all",
    "Everyone is happy and I can",
    "The new movie that got Oscar this year",
    "In the far far distance from our galaxy,",
    "Peace is the only way",
)

SPEED_TEST = "test_ms_per_token"  # the timed test: its records become baseline entries

NEW_TOKENS = 100
CYCLES = 5
WARMUP_CYCLES = 1
# Cycles run under torch.profiler after the timed ones (a profiled cycle runs 30-60% longer, so it
# is never a timed one): GPU kernel time and launches per step, aten operators per token.
PROFILE_CYCLES = 2


def batch_prompts(batch_size: int) -> list[str]:
    """The article's prompts cycled to `batch_size` rows (the script repeats them as needed)."""
    return [PROMPTS[i % len(PROMPTS)] for i in range(batch_size)]


# Fixed text for the teacher-forced logits comparison: every position is scored.
SCORING_TEXTS = PROMPTS


# The host's own speed, taken right before and after every timed cycle. Decoding at small batch
# sizes is bound by the Python and kernel-launch work of the host CPU, and on the lent H200 that
# CPU's speed drifted 2x within a minute (docs/results/h200-host-noise.txt: the same loop took
# 65 ms, then 100-156 ms for stretches of about 30 s). Verdicts use it to tell a slower backend
# from a slower host (perf.verdicts.compare_with_host).
HOST_PROBE_LOOPS = 200_000


def host_probe_ms() -> float:
    """Milliseconds of a fixed pure-Python loop (about 6 ms on a quiet server core)."""
    start = time.perf_counter()
    total = 0
    for i in range(HOST_PROBE_LOOPS):
        total += i
    return 1000 * (time.perf_counter() - start)
