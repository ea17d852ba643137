"""How each backend loads a model, through its library's real API. Runs inside a worker only.

Every adapter leaves `self.model` (something with .generate and a forward) and `self.tokenizer`;
the measurements in perf/worker.py are shared by all of them.
"""
import contextlib
import ctypes
import gc
import os

import torch

from perf.backends import BackendUnavailable
from perf.launcher import single_rank_env


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the peak may then include freed memory
        pass


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

    def max_memory(self) -> dict | None:
        """--max-memory, for from_pretrained. The JSON pipe turned GPU indices into strings;
        accelerate wants ints (it reads "0" as an unknown device)."""
        spec = self.options.get("max_memory")
        return spec and {int(k) if str(k).isdecimal() else k: v for k, v in spec.items()}

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
            # What an earlier cell's profiled cycles allocated (the profiler's event buffers) stays
            # in the process until glibc hands it back; the peak from here must not start above
            # this cell's own working set (ds_int8 bs=8 read 708 MB after bs=1's profile, 387 without).
            gc.collect()
            _malloc_trim()
            with open("/proc/self/clear_refs", "w") as f:  # Linux: resets VmHWM (peak RSS) to the RSS now
                f.write("5")

    def peak_memory(self) -> dict:
        if self.cuda:
            return {"kind": "cuda_max_allocated",
                    "per_device_mb": [torch.cuda.max_memory_allocated(i) / 2**20
                                      for i in range(torch.cuda.device_count())]}
        with open("/proc/self/status") as f:
            hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
        return {"kind": "cpu_peak_rss", "per_device_mb": [hwm / 1024]}

    def weight_bytes(self) -> int:
        """Bytes of weights one decode step must read (ZeRO-3: the full, unpartitioned size)."""
        return sum(getattr(p, "ds_numel", p.numel()) * p.element_size() for p in self.model.parameters())

    def memory_bandwidth(self) -> float:
        """GB/s of a large copy on the device the weights live on: the roofline's ceiling."""
        import time
        device = self.input_device
        size = (2 << 30) if device.type == "cuda" else (256 << 20)
        src = torch.empty(size, dtype=torch.uint8, device=device)
        dst = torch.empty_like(src)
        dst.copy_(src)
        self.synchronize()
        start, reps = time.perf_counter(), 10
        for _ in range(reps):
            dst.copy_(src)
        self.synchronize()
        seconds = time.perf_counter() - start
        del src, dst
        self.release_memory()
        return 2 * size * reps / seconds / 1e9  # each copy reads and writes `size` bytes

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
        max_memory = self.max_memory()
        # A copy: accelerate rewrites the sizes in the dict it gets, as bytes.
        self.model = AutoModelForCausalLM.from_pretrained(
            model, device_map="auto", max_memory=max_memory and dict(max_memory), **dtype_kwargs(self.dtype)).eval()
        return {"dtype": "bf16", "max_memory": max_memory,
                "device_map": sorted({str(d) for d in getattr(self.model, "hf_device_map", {"": self.input_device}).values()})}


class AccelerateInt8(Adapter):
    """bitsandbytes LLM.int8 through transformers' BitsAndBytesConfig(load_in_8bit=True)."""

    def load(self, model: str) -> dict:
        import bitsandbytes as bnb
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig
        self.load_tokenizer(model)
        # On the CPU everything loads onto the CPU (device_map="cpu"): no placement to bound.
        max_memory = self.max_memory() if self.cuda else None
        self.model = AutoModelForCausalLM.from_pretrained(
            model, device_map="auto" if self.cuda else "cpu", max_memory=max_memory and dict(max_memory),
            quantization_config=BitsAndBytesConfig(load_in_8bit=True),
            **dtype_kwargs(torch.float16 if self.cuda else torch.bfloat16)).eval()
        int8 = sum(isinstance(m, bnb.nn.Linear8bitLt) for m in self.model.modules())
        if int8 == 0:
            raise RuntimeError("BitsAndBytesConfig(load_in_8bit=True) left no bnb Linear8bitLt layer")
        return {"dtype": "int8", "int8_method": "bitsandbytes LLM.int8", "int8_layers": int8, "max_memory": max_memory}


def announce_op_builds() -> None:
    """Say when DeepSpeed JIT-loads one of its compiled ops, and how long that took: compiling one
    takes minutes the first time in a virtualenv (perf.worker keeps the cache per virtualenv).
    Loads of one op are serialized by a lock the kernel drops when its holder dies, so a build
    that was killed (Ctrl-C, a killed pytest) cannot leave the next run waiting forever."""
    from deepspeed.ops.op_builder.builder import OpBuilder
    from perf.worker import announce
    if getattr(OpBuilder.jit_load, "announced", False):
        return
    jit_load = OpBuilder.jit_load

    def announced(builder, *args, **kwargs):
        import time
        so = _cached_op(builder.name)
        with _op_build_lock(so, announce):
            before = so.stat().st_mtime if so and so.exists() else None
            announce(f"DeepSpeed op {builder.name}: loading" + ("" if before else
                                                               " (not in the cache: compiling it, which takes minutes)"))
            start = time.perf_counter()
            module = jit_load(builder, *args, **kwargs)
            after = so.stat().st_mtime if so and so.exists() else None
        how = "compiled" if after != before else "loaded from the cache"
        announce(f"DeepSpeed op {builder.name}: {how} in {time.perf_counter() - start:.1f} s ({so.parent if so else 'cache'})")
        return module

    announced.announced = True
    OpBuilder.jit_load = announced


@contextlib.contextmanager
def _op_build_lock(so, announce):
    """Hold an flock beside the op's build folder while torch builds or loads it. torch's own lock
    there (a plain 'lock' file, waited on with no timeout) stays behind when its process is
    killed; every process of this suite takes the flock first, so a 'lock' found while holding it
    is such a leftover and is removed."""
    if so is None:
        yield
        return
    import fcntl
    build_dir = so.parent
    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir.parent / f".{build_dir.name}.perf-lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another rank loading the same op: wait for it
        stale = build_dir / "lock"
        if stale.exists():
            stale.unlink()
            announce(f"removed {stale}: left by a build of {build_dir.name} that was interrupted")
        yield


def _cached_op(name: str):
    """Where torch's JIT extension cache keeps the op's library (a private path of torch's)."""
    from pathlib import Path
    try:
        from torch.utils.cpp_extension import _get_build_directory
        return Path(_get_build_directory(name, False)) / f"{name}.so"
    except Exception:  # a torch without it: no build/cache distinction, only the time
        return None


def init_single_rank() -> int:
    """torch.distributed for DeepSpeed: a launcher sets RANK & co for N ranks; alone, we do."""
    import deepspeed
    import torch.distributed as dist
    announce_op_builds()
    if not dist.is_initialized():
        for key, value in single_rank_env().items():
            os.environ.setdefault(key, value)
        deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_world_size()


def _fp16_model(model: str):
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(model, **dtype_kwargs(torch.float16)).eval()


class DeepSpeedInferenceFp16(Adapter):
    """DeepSpeed-Inference with its fused BLOOM kernels (replace_with_kernel_inject=True)."""
    dtype = torch.float16

    def load(self, model: str) -> dict:
        if not self.cuda:
            raise BackendUnavailable("needs CUDA: DeepSpeed-Inference's fp16 BLOOM kernels run on NVIDIA GPUs only")
        import transformers
        from packaging.version import Version
        if Version(transformers.__version__) > Version("4.43.4"):
            raise BackendUnavailable(
                f"needs transformers <= 4.43.4 for DeepSpeed's BLOOM kernels (this worker has "
                f"{transformers.__version__}); point [tool.perf.backends.ds_fp16] pythonpath at one")
        import deepspeed
        from deepspeed.model_implementations.transformers.ds_transformer import DeepSpeedTransformerInference
        world = init_single_rank()
        self.load_tokenizer(model)
        engine = deepspeed.init_inference(_fp16_model(model), dtype=torch.float16,
                                          tensor_parallel={"tp_size": world}, replace_with_kernel_inject=True)
        self.model = engine.module
        injected = sum(isinstance(m, DeepSpeedTransformerInference) for m in self.model.modules())
        if injected == 0:
            raise RuntimeError("replace_with_kernel_inject=True replaced no BLOOM block: the kernels are not in use")
        return {"dtype": "fp16", "kernel_injected_blocks": injected, "world_size": world}


class DeepSpeedInferenceInt8(Adapter):
    """DeepSpeed int8. DeepSpeed 0.19 rejects init_inference(dtype=torch.int8) ("not supported by
    cuda accelerator"); its weight-only group-wise int8 (deepspeed.inference.quantization,
    post_init_quant) runs, on fp16 weights: that is what this measures, and `int8_method` says so.
    Groups run along the input dimension on CUDA, where DeepSpeed dequantizes with its own kernel,
    and along the output dimension on CPU, the PyTorch path (the kernel is CUDA-only)."""
    dtype = torch.float16

    def load(self, model: str) -> dict:
        announce_op_builds()
        from deepspeed.inference.quantization.layers import QuantizedLinear
        from deepspeed.inference.quantization.quantization import _init_group_wise_weight_quantization
        self.load_tokenizer(model)
        net = _fp16_model(model).to("cuda" if self.cuda else "cpu")
        scheme = {"num_bits": 8, "group_size": 64, "group_dim": 1 if self.cuda else 0, "symmetric": False}
        # Keys are substrings of module names: every Linear of every BLOOM block.
        config = {"weight_quantization": {"post_init_quant": {"transformer.h.": scheme}}}
        self.model = _init_group_wise_weight_quantization(net, config)
        quantized = sum(isinstance(m, QuantizedLinear) for m in self.model.modules())
        if quantized == 0:
            raise RuntimeError("post_init_quant quantized no layer")
        method = (f"deepspeed weight-only group-wise int8 (post_init_quant, group_size 64, "
                  f"group_dim {scheme['group_dim']}, {'CUDA kernel' if self.cuda else 'PyTorch'} dequantize)")
        return {"dtype": "int8", "int8_method": method, "int8_layers": quantized}


class DeepSpeedZeroBf16(Adapter):
    """DeepSpeed ZeRO stage 3 in bf16, as bloom-ds-zero-inference.py: every rank runs its own
    generate stream, so a cycle's tokens count once per rank."""
    dtype = torch.bfloat16

    def load(self, model: str) -> dict:
        import deepspeed
        from transformers import AutoConfig, AutoModelForCausalLM
        from transformers.integrations import HfDeepSpeedConfig
        world = init_single_rank()
        hidden = AutoConfig.from_pretrained(model).hidden_size
        ds_config = {
            "bf16": {"enabled": True},
            "zero_optimization": {"stage": 3, "overlap_comm": True, "contiguous_gradients": True,
                                  "reduce_bucket_size": hidden * hidden,
                                  "stage3_prefetch_bucket_size": int(0.9 * hidden * hidden),
                                  "stage3_param_persistence_threshold": 0},
            "steps_per_print": 2000, "train_batch_size": world,
            "train_micro_batch_size_per_gpu": 1, "wall_clock_breakdown": False,
        }
        self._hf_ds_config = HfDeepSpeedConfig(ds_config)  # must live while the model loads (zero.Init)
        self.load_tokenizer(model)
        net = AutoModelForCausalLM.from_pretrained(model, **dtype_kwargs(self.dtype))
        engine = deepspeed.initialize(model=net, config_params=ds_config)[0]
        engine.module.eval()
        self.model = engine.module
        self.streams = world
        return {"dtype": "bf16", "zero_stage": 3, "world_size": world}

    @property
    def input_device(self) -> torch.device:
        from deepspeed.accelerator import get_accelerator
        return torch.device(get_accelerator().current_device_name())

    def generate(self, inputs: dict, **kwargs):
        # With several ranks every rank must step the forward together (ZeRO gathers weights).
        import torch.distributed as dist
        return super().generate(inputs, synced_gpus=dist.get_world_size() > 1, **kwargs)
