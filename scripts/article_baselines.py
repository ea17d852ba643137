"""Write the article's two tables as published baselines (bigscience/bloom, BLOOM-176B).

    python scripts/article_baselines.py        # rewrites baselines/{8,4}xA100-80GB/bigscience--bloom.json

Source: "Achieving Blazing-Fast BLOOM Inference with DeepSpeed and Accelerate" (DailyGlimpse,
2026-04-26; shared/seed/bloom-inference-article.txt): ms/token, greedy, 100 new tokens, on
8x80GB A100 (first table) and 4x80GB A100 (int8 table). Values are kept as printed
(`as_published`) so that rendering them gives the article's text back.
"""
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from perf.baselines import PROMPTS_ID, SCHEMA  # noqa: E402

SOURCE = ("DailyGlimpse, 'Achieving Blazing-Fast BLOOM Inference with DeepSpeed and Accelerate', "
          "2026-04-26 ({table})")
TOLERANCE = 0.10  # one number per cell and no spread: a wider band than for measured samples
INT8_METHOD = {"accel_int8": "bitsandbytes LLM.int8",
               "ds_int8": "deepspeed-inference int8 kernels (init_inference dtype=torch.int8)"}
# Ranks: DeepSpeed-Inference and ZeRO run one per GPU; Accelerate is one process over all GPUs.
ONE_PROCESS = {"accel_bf16", "accel_int8"}

# (profile, table name, GPUs, batch sizes, {backend id: cells as printed})
TABLES = [
    ("8xA100-80GB", "first table, 8x80GB A100", 8, [1, 8, 16, 32, 64, 128, 256, 512], {
        "accel_bf16": ["230.38", "31.78", "17.84", "10.89", "OOM"],
        "accel_int8": ["286.56", "40.92", "22.65", "13.27", "OOM"],
        "ds_fp16": ["44.02", "5.70", "3.01", "1.68", "1.00", "0.69", "OOM"],
        "ds_int8": ["89.09", "11.44", "5.88", "3.09", "1.71", "1.02", "0.71", "OOM"],
        "zero_bf16": ["283", "34.88", "OOM"],
    }),
    ("4xA100-80GB", "int8 table, 4x80GB A100", 4, [1, 8, 16, 32, 64, 128], {
        "accel_int8": ["284.15", "40.14", "21.97", "OOM"],
        "ds_int8": ["156.51", "20.11", "10.38", "5.50", "2.96", "OOM"],
    }),
]


def table_file(profile: str, table: str, gpus: int, sizes: list[int], rows: dict) -> dict:
    entries = {}
    for backend, cells in rows.items():
        for size, text in zip(sizes, cells):
            oom = text == "OOM"
            entries.setdefault(backend, {})[f"bs{size}"] = {
                "outcome": "oom" if oom else "ok",
                "ms_per_token": None if oom else float(text),
                "ttft_ms": None, "peak_memory_mb": None, "samples": {},
                "threshold": TOLERANCE,
                "provenance": {"kind": "published", "source": SOURCE.format(table=table), "as_published": text},
                "protocol": {"new_tokens": 100, "cycles": 5, "prompts": PROMPTS_ID,
                             "int8_method": INT8_METHOD.get(backend),
                             "world_size": 1 if backend in ONE_PROCESS else gpus},
            }
    return {"schema": SCHEMA, "profile": profile, "model": "bigscience--bloom", "entries": entries}


def main() -> None:
    for profile, table, gpus, sizes, rows in TABLES:
        path = REPO / "baselines" / profile / "bigscience--bloom.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(table_file(profile, table, gpus, sizes, rows), indent=1) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
