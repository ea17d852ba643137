"""The article's own benchmark loop, outside the suite, to check that the suite measures the same.

    python tools/fidelity.py --backend accel_bf16 --model PATH --batch-sizes 1,8 [--cycles 5]
                             [--compare perf-results.json]

A reproduction of transformers-bloom-inference's `--benchmark` path (bloom-accelerate-inference.py
and bloom-ds-inference.py): load the model the script's way, one warm-up generate, then `cycles`
calls of tokenize + generate + decode between two `torch.cuda.synchronize()`, and ms/token =
elapsed / the sum of new tokens (output length - padded input length per row). Only the loading
and this loop; none of the suite's code but its host probe, taken before and after the loop (the
lent H200's CPU speed drifted 2x within a minute, so a ratio comes with the hosts' ratio). With
--compare, the suite's figure for the same backend and batch size is read from its results file
and the ratio printed; exit 1 beyond --tolerance.
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perf.protocol import host_probe_ms  # noqa: E402  (the host's speed, not part of the measurement)

PROMPTS = ["DeepSpeed is a machine learning framework", "He is working on", "He has a", "He got all",
           "Everyone is happy and I can", "The new movie that got Oscar this year",
           "In the far far distance from our galaxy,", "Peace is the only way"]


def load(backend: str, model: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(model, padding_side="left")
    if backend == "accel_bf16":  # bloom-accelerate-inference.py
        net = AutoModelForCausalLM.from_pretrained(model, device_map="auto", torch_dtype=torch.bfloat16)
    elif backend == "ds_fp16":  # bloom-ds-inference.py, one rank
        import deepspeed
        net = AutoModelForCausalLM.from_pretrained(model, torch_dtype=torch.float16)
        net = deepspeed.init_inference(net, dtype=torch.float16, tensor_parallel={"tp_size": 1},
                                       replace_with_kernel_inject=True).module
    else:
        sys.exit(f"--backend {backend!r}: this reproduction covers accel_bf16 and ds_fp16")
    return tokenizer, net.eval()


def benchmark(tokenizer, model, batch_size: int, new_tokens: int, cycles: int) -> float:
    import torch
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    inputs = [PROMPTS[i % len(PROMPTS)] for i in range(batch_size)]
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                  pad_token_id=tokenizer.pad_token_id)
    device = next(model.parameters()).device

    def generate():
        tokens = tokenizer(inputs, return_tensors="pt", padding=True).to(device)
        with torch.no_grad():
            outputs = model.generate(**tokens, **kwargs)
        new = [o.shape[0] - i.shape[0] for i, o in zip(tokens.input_ids, outputs)]
        tokenizer.batch_decode(outputs, skip_special_tokens=True)
        return sum(new)

    generate()  # warm-up
    probe_before = host_probe_ms()
    sync()
    start, total = time.time(), 0
    for _ in range(cycles):
        total += generate()
    sync()
    return 1000 * (time.time() - start) / total, (probe_before + host_probe_ms()) / 2


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", required=True)
    ap.add_argument("--model", required=True, help="a checkpoint folder (for a synthetic model: the folder the suite built)")
    ap.add_argument("--batch-sizes", default="1", help="comma-separated, timed one after another on one load (default: 1)")
    ap.add_argument("--new-tokens", type=int, default=100)
    ap.add_argument("--cycles", type=int, default=5)
    ap.add_argument("--compare", help="the suite's results file from the same machine")
    ap.add_argument("--tolerance", type=float, default=0.05)
    args = ap.parse_args(argv)
    try:
        batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    except ValueError:
        ap.error(f"--batch-sizes {args.batch_sizes!r}: expected comma-separated integers, e.g. 1,8")
    suite = {}
    if args.compare:
        results = json.loads(Path(args.compare).read_text())
        suite = {t["batch_size"]: t for t in results["tests"]
                 if t["test"] == "test_ms_per_token" and t["backend"] == args.backend and t.get("ms_per_token_article")}
        missing = [b for b in batch_sizes if b not in suite]
        if missing:
            sys.exit(f"{args.compare}: no ms/token of {args.backend} at batch size {missing}")
    tokenizer, model = load(args.backend, args.model)
    outside = 0
    for batch_size in batch_sizes:
        ms, probe = benchmark(tokenizer, model, batch_size, args.new_tokens, args.cycles)
        out = {"backend": args.backend, "batch_size": batch_size, "ms_per_token": ms, "host_probe_ms": probe}
        if args.compare:
            theirs = suite[batch_size]
            out.update(suite_ms_per_token=theirs["ms_per_token_article"], ratio=ms / theirs["ms_per_token_article"])
            if theirs.get("host_probe_ms_samples"):  # a ratio far from 1 with the host's as far says "host"
                out["host_ratio"] = probe / statistics.median(theirs["host_probe_ms_samples"])
            outside += abs(out["ratio"] - 1) > args.tolerance
        print(json.dumps(out), flush=True)
    return 1 if outside else 0


if __name__ == "__main__":
    sys.exit(main())
