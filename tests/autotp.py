"""DeepSpeed-Inference tensor parallelism (AutoTP) in bf16 without kernel injection: what
`ds_fp16` does over N ranks (`tensor_parallel={"tp_size": N}`), in the one form that runs on a
CPU, where DeepSpeed's fp16 kernels cannot. Real DeepSpeed, real sharding; tests/test_multirank.py
runs it as 1 and 2 ranks through the suite's launcher."""
import torch

from perf.adapters import Adapter, dtype_kwargs, init_single_rank


class DeepSpeedAutoTPBf16(Adapter):
    dtype = torch.bfloat16

    def load(self, model: str) -> dict:
        import deepspeed
        import deepspeed.comm.comm as ds_comm
        from deepspeed.module_inject.layers import LinearAllreduce, LinearLayer
        from transformers import AutoModelForCausalLM
        world = init_single_rank()
        self.load_tokenizer(model)
        net = AutoModelForCausalLM.from_pretrained(model, **dtype_kwargs(self.dtype)).eval()
        engine = deepspeed.init_inference(net, dtype=self.dtype, tensor_parallel={"tp_size": world},
                                          replace_with_kernel_inject=False)
        self.model = engine.module
        mlp_in = self.model.transformer.h[0].mlp.dense_h_to_4h
        return {"dtype": "bf16", "world_size": world,
                # >0: DeepSpeed's own shared-memory all-reduce kernel, not gloo's, sums the shards
                "shm_all_reduce_level": getattr(ds_comm.cdb, "shm_vector_kernel_level", 0),
                "sharded_layers": sum(isinstance(m, (LinearAllreduce, LinearLayer)) for m in self.model.modules()),
                "mlp_width_per_rank": mlp_in.weight.shape[0]}
