"""The seed measurement protocol (DESIGN.md, "Measurement"): the prompts and defaults of
transformers-bloom-inference's `--benchmark` loop, which produced the article's tables."""

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
