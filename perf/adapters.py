"""How each backend loads a model, through its library's real API. Runs inside a worker only.

Every adapter leaves `self.model` (something with .generate and a forward) and `self.tokenizer`;
the measurements in perf/worker.py are shared by all of them.
"""
import gc
import os

import torch

from perf.worker import BackendUnavailable


def _transformers_major() -> int:
    import transformers
    return int(transformers.__version__.split(".")[0])


def dtype_kwargs(dtype) -> dict:
    # transformers 5 renamed torch_dtype to dtype; the ds_* workers run transformers 4.43.
    return {"dtype": dtype} if _transformers_major() >= 5 else {"torch_dtype": dtype}


class Adapter:
    dtype = torch.float32
    streams = 1  # generate streams whose tokens one cycle counts (ZeRO: one per rank)

    def __init__(self, options: dict):
        self.options = options
        self.cuda = torch.cuda.is_available()
        self.model = None
        self.tokenizer = None

    # -- loading ---------------------------------------------------------------------------
    def load(self, model: str) -> dict:
        raise NotImplementedError

    def load_tokenizer(self, model: str) -> None:
        from transformers import AutoTokenizer
        self.tokenizer = AutoTokenizer.from_pretrained(model, padding_side="left")

    # -- running ---------------------------------------------------------------------------
    @property
    def input_device(self) -> torch.device:
        return next(self.model.parameters()).device

    def generate(self, inputs: dict, **kwargs):
        with torch.no_grad():
            return self.model.generate(**inputs, pad_token_id=self.tokenizer.pad_token_id, **kwargs)

    def forward(self, inputs: dict) -> torch.Tensor:
        return self.model(**inputs).logits

    # -- device bookkeeping ----------------------------------------------------------------
    def synchronize(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def reset_peak_memory(self) -> None:
        if self.cuda:
            for i in range(torch.cuda.device_count()):
                torch.cuda.reset_peak_memory_stats(i)
        else:
            with open("/proc/self/clear_refs", "w") as f:  # Linux: resets VmHWM (peak RSS)
                f.write("5")

    def peak_memory(self) -> dict:
        if self.cuda:
            return {"kind": "cuda_max_allocated",
                    "per_device_mb": [torch.cuda.max_memory_allocated(i) / 2**20
                                      for i in range(torch.cuda.device_count())]}
        with open("/proc/self/status") as f:
            hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
        return {"kind": "cpu_peak_rss", "per_device_mb": [hwm / 1024]}

    def release_memory(self) -> None:
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()


class Reference(Adapter):
    """Plain transformers in fp32 on one device: the correctness reference."""

    def load(self, model: str) -> dict:
        from transformers import AutoModelForCausalLM
        self.load_tokenizer(model)
        self.model = AutoModelForCausalLM.from_pretrained(model, **dtype_kwargs(torch.float32))
        self.model.to("cuda" if self.cuda else "cpu").eval()
        return {"dtype": "fp32"}


class AccelerateBf16(Adapter):
    """HF Accelerate: device_map="auto" places layers over the visible GPUs (or the CPU)."""
    dtype = torch.bfloat16

    def load(self, model: str) -> dict:
        from transformers import AutoModelForCausalLM
        self.load_tokenizer(model)
        self.model = AutoModelForCausalLM.from_pretrained(
            model, device_map="auto", **dtype_kwargs(self.dtype)).eval()
        return {"dtype": "bf16", "device_map": sorted({str(d) for d in getattr(self.model, "hf_device_map", {"": self.input_device}).values()})}


class AccelerateInt8(Adapter):
    """bitsandbytes LLM.int8 through transformers' BitsAndBytesConfig(load_in_8bit=True)."""

    def load(self, model: str) -> dict:
        import bitsandbytes as bnb
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig
        self.load_tokenizer(model)
        self.model = AutoModelForCausalLM.from_pretrained(
            model, device_map="auto" if self.cuda else "cpu",
            quantization_config=BitsAndBytesConfig(load_in_8bit=True),
            **dtype_kwargs(torch.float16 if self.cuda else torch.bfloat16)).eval()
        int8 = sum(isinstance(m, bnb.nn.Linear8bitLt) for m in self.model.modules())
        if int8 == 0:
            raise RuntimeError("BitsAndBytesConfig(load_in_8bit=True) left no bnb Linear8bitLt layer")
        return {"dtype": "int8", "int8_method": "bitsandbytes LLM.int8", "int8_layers": int8}
