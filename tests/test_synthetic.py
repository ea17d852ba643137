"""Synthetic BLOOM checkpoints (perf/synthetic.py): spec parsing, and a small real build loaded
back through from_pretrained: every weight present, transformers' init statistics, reproducible."""
import hashlib

import pytest
import torch
from transformers import BloomForCausalLM

from perf import synthetic


@pytest.mark.parametrize("spec, parsed", [
    ("synthetic:bloom-7b1", ("bloom-7b1", 30, "synthetic-bloom-7b1")),
    ("synthetic:bloom-176b?layers=8", ("bloom-176b", 8, "synthetic-bloom-176b-8of70layers")),
    ("synthetic:bloom-560m?layers=24", ("bloom-560m", 24, "synthetic-bloom-560m")),
])
def test_specs_name_the_model_and_say_when_it_is_a_slice(spec, parsed):
    assert synthetic.parse(spec) == parsed


@pytest.mark.parametrize("spec, message", [
    ("synthetic:bloom-3b", "expected synthetic:<bloom-560m|bloom-7b1|bloom-176b>"),
    ("synthetic:bloom-176b?layers=0", "layers must be 1..70"),
    ("synthetic:bloom-560m?layers=25", "layers must be 1..24"),
])
def test_bad_specs_say_what_is_accepted(spec, message):
    with pytest.raises(ValueError, match=message.replace("|", r"\|")):
        synthetic.parse(spec)


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.safetensors"))}


def test_a_two_block_slice_loads_whole_with_transformers_init_and_is_reproducible(tmp_path, monkeypatch):
    monkeypatch.setenv("PERF_SYNTHETIC_DIR", str(tmp_path))
    folder = synthetic.ensure("synthetic:bloom-560m?layers=2", timeout=600)
    assert folder == str(tmp_path / "synthetic-bloom-560m-2of24layers")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic-bloom-560m-2of24layers",
                                                           "synthetic-bloom-560m-2of24layers.lock"]
    model, info = BloomForCausalLM.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert (model.config.hidden_size, model.config.n_layer, model.config.vocab_size) == (1024, 2, 250880)
    assert model.lm_head.weight.data_ptr() == model.transformer.word_embeddings.weight.data_ptr()  # tied
    block = model.transformer.h[1]
    for weight in (model.transformer.word_embeddings.weight, block.self_attention.query_key_value.weight,
                   block.mlp.dense_4h_to_h.weight):
        assert abs(weight.float().mean().item()) < 1e-3 and weight.float().std().item() == pytest.approx(0.02, rel=0.01)
    assert torch.equal(block.input_layernorm.weight, torch.ones(1024)) and not block.mlp.dense_h_to_4h.bias.any()
    # Different tensors draw different values; a rebuild draws the same ones.
    assert not torch.equal(model.transformer.h[0].mlp.dense_4h_to_h.weight, block.mlp.dense_4h_to_h.weight)
    first = _digest(tmp_path / "synthetic-bloom-560m-2of24layers")
    synthetic.build("synthetic:bloom-560m?layers=2", tmp_path / "again")
    assert _digest(tmp_path / "again") == first and len(first) == 3  # two blocks and the rest


def test_a_build_by_an_older_builder_or_of_another_spec_is_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("PERF_SYNTHETIC_DIR", str(tmp_path))
    old = tmp_path / "synthetic-bloom-560m-1of24layers"
    old.mkdir()
    (old / "DONE").write_text('{"spec": "synthetic:bloom-560m?layers=1", "seed": 0}\n')  # format 1
    (old / "model.safetensors").write_text("the old builder's weights")
    folder = synthetic.ensure("synthetic:bloom-560m?layers=1", timeout=600)
    assert not (old / "model.safetensors").exists() and len(list(old.glob("model-*.safetensors"))) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [old.name, old.name + ".lock"]
    assert synthetic.ensure("synthetic:bloom-560m?layers=1", timeout=1) == folder  # built: no rebuild
