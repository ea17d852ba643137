"""The embedded default model is a real BLOOM checkpoint whose greedy text is not degenerate,
which is what makes the greedy correctness check able to fail."""
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, BloomForCausalLM

from perf.protocol import PROMPTS
from perf.protocol import EMBEDDED_MODEL


def _distinct_new_tokens(model, tokenizer, prompt: str) -> int:
    enc = tokenizer(prompt, return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=100, min_new_tokens=100, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)
    return len(set(out[0, enc.input_ids.shape[1]:].tolist()))


def test_embedded_model_loads_with_from_pretrained_and_continues_every_prompt_non_degenerately():
    tokenizer = AutoTokenizer.from_pretrained(EMBEDDED_MODEL)
    model = AutoModelForCausalLM.from_pretrained(EMBEDDED_MODEL)
    assert model.config.model_type == "bloom"
    assert sum(f.stat().st_size for f in EMBEDDED_MODEL.iterdir()) < 5e6
    for prompt in PROMPTS:
        assert _distinct_new_tokens(model, tokenizer, prompt) >= 20, prompt


def test_a_random_bloom_of_the_same_shape_is_degenerate():
    """The check above can fail: an untrained BLOOM repeats itself."""
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(EMBEDDED_MODEL)
    model = BloomForCausalLM(AutoModelForCausalLM.from_pretrained(EMBEDDED_MODEL).config).eval()
    assert min(_distinct_new_tokens(model, tokenizer, p) for p in PROMPTS) < 20
