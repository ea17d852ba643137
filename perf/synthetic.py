"""Synthetic BLOOM checkpoints for speed: BLOOM's real layer shapes and vocabulary, seeded random
weights. `--model synthetic:bloom-7b1` (also bloom-560m, bloom-176b; `?layers=N` keeps the
first N blocks, e.g. synthetic:bloom-176b?layers=8, and the name then says it is a slice).

The checkpoint is built once per machine (drawn on the GPU when there is one) and written as
sharded safetensors with an index, block by block, so that every backend loads it through its own
real loader (from_pretrained), like any checkpoint. The tokenizer is the embedded model's (its ids
are a subset of the vocabulary).

    python -m perf.synthetic SPEC OUT_DIR      (what the suite runs in a subprocess)
"""
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

# BLOOM's published configurations (hidden size, blocks, heads); vocabulary 250880.
SHAPES = {
    "bloom-560m": (1024, 24, 16),
    "bloom-7b1": (4096, 30, 32),
    "bloom-176b": (14336, 70, 112),
}
VOCAB = 250880
SEED = 0
FORMAT = 2  # of the builder: 1 was save_pretrained of a whole model, 2 draws each tensor by name
INIT_STD = 0.02  # BloomConfig.initializer_range, transformers' init for Linear and Embedding
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


def slice_of(model_name: str) -> tuple[int, int] | None:
    """(layers kept, full layers) when a model name (as parse() makes it) is a slice, else None."""
    match = re.search(r"-(\d+)of(\d+)layers$", model_name)
    return (int(match[1]), int(match[2])) if match else None


def cache_dir() -> Path:
    return Path(os.environ.get("PERF_SYNTHETIC_DIR", Path.home() / ".cache" / "bloom-perf-suite" / "synthetic"))


def ensure(text: str, timeout: float) -> str:
    """The checkpoint folder of a synthetic spec, building it (in a subprocess) if missing or made
    by another version of the builder. Under a lock: pytest -n starts several sessions at once."""
    _, _, name = parse(text)
    out = cache_dir() / name
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _built(out, text):
            subprocess.run([sys.executable, "-m", "perf.synthetic", text, str(out)], check=True, timeout=timeout)
    return str(out)


def _built(out: Path, text: str) -> bool:
    try:
        done = json.loads((out / "DONE").read_text())
    except (OSError, ValueError):
        return False
    return done.get("spec") == text and done.get("format") == FORMAT


def build(text: str, out: Path) -> None:
    """Write the checkpoint one block at a time: each tensor is drawn from its own seeded generator
    (transformers' init: N(0, 0.02) for Linear and Embedding weights, LayerNorm 1 and 0, biases 0),
    so memory holds one block, not the model (a BLOOM-176B block is 4.9 GB, the model 352 GB),
    and any subset could be drawn alone with the same values."""
    import torch
    from safetensors.torch import save_file
    from transformers import BloomConfig, BloomForCausalLM

    from perf.protocol import EMBEDDED_MODEL
    shape, layers, _ = parse(text)
    hidden, _, heads = SHAPES[shape]
    config = BloomConfig(vocab_size=VOCAB, hidden_size=hidden, n_layer=layers, n_head=heads,
                         bos_token_id=1, eos_token_id=2, pad_token_id=3, torch_dtype="bfloat16")
    with torch.device("meta"):
        skeleton = BloomForCausalLM(config)
    tied = set(skeleton._tied_weights_keys or {}) if config.tie_word_embeddings else set()
    shards: dict[str, list] = {}  # one file per block, one for the rest
    for name, tensor in skeleton.state_dict().items():
        if name not in tied:
            block = re.match(r"transformer\.h\.(\d+)\.", name)
            shards.setdefault(f"h{int(block[1]):03d}" if block else "rest", []).append((name, tensor.shape))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    partial = out.with_name(f"{out.name}.partial.{os.getpid()}")  # a build killed midway leaves no usable folder
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    weight_map, total = {}, 0
    for i, (_, tensors) in enumerate(sorted(shards.items()), 1):
        file = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        drawn = {name: initial_value(name, shape, device).cpu() for name, shape in tensors}
        save_file(drawn, partial / file, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(drawn, file))
        total += sum(t.numel() * t.element_size() for t in drawn.values())
    (partial / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    config.save_pretrained(partial)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(EMBEDDED_MODEL / name, partial / name)
    (partial / "DONE").write_text(json.dumps({"spec": text, "seed": SEED, "format": FORMAT}) + "\n")
    if out.exists():  # an older build: out of the way first, so that the rename cannot fail on it
        stale = out.with_name(f"{out.name}.stale.{os.getpid()}")
        out.rename(stale)
        shutil.rmtree(stale, ignore_errors=True)
    partial.rename(out)


def initial_value(name: str, shape, device: str):
    """One tensor of the checkpoint, in bf16, from a generator seeded by SEED and its name."""
    import torch
    if name.endswith(".bias"):
        return torch.zeros(shape, dtype=torch.bfloat16, device=device)
    if "layernorm" in name or name.startswith("transformer.ln_f."):
        return torch.ones(shape, dtype=torch.bfloat16, device=device)
    generator = torch.Generator(device).manual_seed(SEED * 2**32 + zlib.crc32(name.encode()))
    return torch.empty(shape, dtype=torch.bfloat16, device=device).normal_(0.0, INIT_STD, generator=generator)


if __name__ == "__main__":
    build(sys.argv[1], Path(sys.argv[2]))
