"""The seed measurement protocol (DESIGN.md, "Measurement"): the prompts and defaults of
transformers-bloom-inference's `--benchmark` loop, which produced the article's tables."""
import time

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

NEW_TOKENS = 100
CYCLES = 5
WARMUP_CYCLES = 1


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


def _spin(rounds) -> None:
    """The meter's process: the probe's loop, cut into rounds of 1,000, counted for ever."""
    while True:
        total = 0
        for i in range(1000):
            total += i
        rounds.value += 1


class HostMeter:
    """The host's speed over exactly a timed window, where the probe above only samples its edges:
    a process on another core spins the probe's loop and counts rounds in shared memory for as
    long as the meter lives. Rounds a second during a cycle, times the cycle's seconds, is the cycle
    in host units; if the whole host slows, both slow together. (If only the timed loop's own core
    slows, the meter cannot see it: an A/A control, tools/fidelity.py --control, shows how much it
    removes.) It takes a core, so it is opt-in."""

    def __init__(self):
        import multiprocessing
        context = multiprocessing.get_context("spawn")  # no fork of a process that holds CUDA
        self._rounds = context.Value("Q", 0, lock=False)  # one writer; 8-byte reads are atomic
        self._process = context.Process(target=_spin, args=(self._rounds,), daemon=True, name="host-meter")
        self._process.start()
        deadline = time.monotonic() + 60
        while self._rounds.value == 0:  # spinning before the first window
            if not self._process.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the host meter did not start (exit code {self._process.exitcode})")
            time.sleep(0.01)

    def rate(self, timed):
        """Call `timed()`; return (its result, the meter's rounds a second while it ran)."""
        start, rounds = time.perf_counter(), self._rounds.value
        result = timed()
        return result, (self._rounds.value - rounds) / (time.perf_counter() - start)

    def close(self) -> None:
        self._process.terminate()
        self._process.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
