"""HF transformers: TorchAoConfig(quant_type=<our config>) on a small local Llama, generate,
save_pretrained / from_pretrained round trips (safetensors, the default, and a pickled
pytorch_model.bin), identical logits. No downloads: the model is built from a LlamaConfig."""

import os

import pytest
import torch

transformers = pytest.importorskip("transformers")

import torchao_gemlite as tg  # noqa: E402
from torchao_gemlite.tensors import ALL_TENSOR_CLASSES  # noqa: E402

CONFIGS = {
    "int4-g64": lambda: tg.GemliteInt4WeightOnlyConfig(group_size=64),
    "w2-sym-g32": lambda: tg.GemliteWeightOnlyConfig(bits=2, group_size=32, symmetric=True),
    "a8w8-int8": tg.GemliteInt8DynamicActivationInt8WeightConfig,
    "a8w8-fp8": tg.GemliteFloat8DynamicActivationFloat8WeightConfig,
    "a8w4-pc": lambda: tg.GemliteInt8DynamicActivationInt4WeightConfig(group_size=None),
}


@pytest.fixture(scope="module")
def float_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=256, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    path = tmp_path_factory.mktemp("llama") / "float"
    transformers.LlamaForCausalLM(config).save_pretrained(path)
    return path


def _load(path, dtype, device="cpu", **kwargs):
    # Loaded on the CPU, then moved: device_map= would need the accelerate package.
    return transformers.AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs).to(device)


def _load_quantized(path, quant_type, dtype, device="cpu"):
    return _load(path, dtype, device, quantization_config=transformers.TorchAoConfig(quant_type=quant_type))


def _round_trip(float_checkpoint, tmp_path, name, dtype, device):
    model = _load_quantized(float_checkpoint, CONFIGS[name](), dtype, device)
    layer = model.model.layers[0]
    assert isinstance(layer.self_attn.q_proj.weight, ALL_TENSOR_CLASSES)
    assert isinstance(layer.mlp.down_proj.weight, ALL_TENSOR_CLASSES)
    ids = torch.randint(0, 256, (2, 7), device=device)
    generated = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert generated.shape == (2, 11)
    with torch.no_grad():
        logits = model(ids).logits
    assert torch.isfinite(logits).all()

    saved = tmp_path / "quantized"
    model.save_pretrained(saved)
    assert (saved / "model.safetensors").exists()
    reloaded = _load(saved, dtype, device)
    assert type(reloaded.model.layers[0].mlp.up_proj.weight) is type(layer.mlp.up_proj.weight)
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, logits)
    assert torch.equal(reloaded.generate(ids, max_new_tokens=4, do_sample=False), generated)

    # The pickle route: a pytorch_model.bin (torch.save of the quantized state dict) loads
    # through torch.load(weights_only=True), since our classes are safe globals.
    os.remove(saved / "model.safetensors")
    torch.save(model.state_dict(), saved / "pytorch_model.bin")
    from_bin = _load(saved, dtype, device, use_safetensors=False)
    with torch.no_grad():
        assert torch.equal(from_bin(ids).logits, logits)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_quantize_generate_save_reload(float_checkpoint, tmp_path, name, dtype):
    if dtype == torch.bfloat16 and name not in ("int4-g64", "a8w8-int8"):
        pytest.skip("bf16 covered by two configs; the rest run in fp32 to keep CI fast")
    _round_trip(float_checkpoint, tmp_path, name, dtype, "cpu")


def test_int4_weight_only_config_gemlite_route(float_checkpoint, tmp_path):
    """torchao's own Int4WeightOnlyConfig(int4_packing_format="gemlite") through HF, and back."""
    from torchao.quantization import Int4WeightOnlyConfig

    model = _load_quantized(float_checkpoint, Int4WeightOnlyConfig(group_size=64, int4_packing_format="gemlite"),
                            torch.float32)
    assert isinstance(model.model.layers[1].self_attn.o_proj.weight, tg.Int4GemliteTensor)
    ids = torch.randint(0, 256, (1, 5))
    model.save_pretrained(tmp_path / "q")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "q", dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, model(ids).logits)


def test_embeddings_stay_float(float_checkpoint):
    model = _load_quantized(float_checkpoint, tg.GemliteInt4WeightOnlyConfig(group_size=64), torch.float32)
    assert not isinstance(model.model.embed_tokens.weight, ALL_TENSOR_CLASSES)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", ["int4-g64", "a8w8-int8", "a8w8-fp8", "a8w4-pc"])
def test_round_trip_on_gpu(float_checkpoint, tmp_path, name):
    _round_trip(float_checkpoint, tmp_path, name, torch.float16, "cuda")
