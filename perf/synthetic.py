"""Synthetic BLOOM checkpoints for speed: BLOOM's real layer shapes and vocabulary, seeded random
weights. `--model synthetic:bloom-7b1` (also bloom-560m, bloom-176b; `?layers=N` keeps the
first N blocks, e.g. synthetic:bloom-176b?layers=8, and the name then says it is a slice).

The checkpoint is built once per machine (on the GPU when there is one) and saved with
save_pretrained, so that every backend loads it through its own real loader, like any
checkpoint. The tokenizer is the embedded model's (its ids are a subset of the vocabulary).

    python -m perf.synthetic SPEC OUT_DIR      (what the suite runs in a subprocess)
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# BLOOM's published configurations (hidden size, blocks, heads); vocabulary 250880.
SHAPES = {
    "bloom-560m": (1024, 24, 16),
    "bloom-7b1": (4096, 30, 32),
    "bloom-176b": (14336, 70, 112),
}
VOCAB = 250880
SEED = 0
SPEC = re.compile(r"^synthetic:(?P<shape>[\w.-]+?)(?:\?layers=(?P<layers>\d+))?$")


def parse(text: str) -> tuple[str, int, str]:
    """(shape, layers, model name) of a synthetic spec; ValueError says what is accepted."""
    match = SPEC.match(text)
    if not match or match["shape"] not in SHAPES:
        raise ValueError(f"expected synthetic:<{'|'.join(SHAPES)}>[?layers=N]")
    full = SHAPES[match["shape"]][1]
    layers = int(match["layers"] or full)
    if not 1 <= layers <= full:
        raise ValueError(f"layers must be 1..{full} for {match['shape']}")
    name = f"synthetic-{match['shape']}" + (f"-{layers}of{full}layers" if layers < full else "")
    return match["shape"], layers, name


def cache_dir() -> Path:
    return Path(os.environ.get("PERF_SYNTHETIC_DIR", Path.home() / ".cache" / "bloom-perf-suite" / "synthetic"))


def ensure(text: str, timeout: float) -> str:
    """The checkpoint folder of a synthetic spec, building it (in a subprocess) if missing."""
    _, _, name = parse(text)
    out = cache_dir() / name
    if not (out / "DONE").exists():
        subprocess.run([sys.executable, "-m", "perf.synthetic", text, str(out)], check=True, timeout=timeout)
    return str(out)


def build(text: str, out: Path) -> None:
    import torch
    from transformers import BloomConfig, BloomForCausalLM

    from perf.settings import EMBEDDED_MODEL
    shape, layers, _ = parse(text)
    hidden, _, heads = SHAPES[shape]
    config = BloomConfig(vocab_size=VOCAB, hidden_size=hidden, n_layer=layers, n_head=heads,
                         bos_token_id=1, eos_token_id=2, pad_token_id=3, torch_dtype="bfloat16")
    torch.manual_seed(SEED)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = BloomForCausalLM(config).to(torch.bfloat16)  # transformers' init: N(0, 0.02)
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(out, max_shard_size="5GB")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(EMBEDDED_MODEL / name, out / name)
    (out / "DONE").write_text(json.dumps({"spec": text, "seed": SEED}) + "\n")


if __name__ == "__main__":
    build(sys.argv[1], Path(sys.argv[2]))
