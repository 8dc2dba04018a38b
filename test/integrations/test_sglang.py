"""SGLang-style --torchao-config strings: parsing, errors, SGLang's layer filter, patching."""

import sys
import types

import pytest
import torch
from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, Float8WeightOnlyConfig

import torchao_gemlite as tg
from torchao_gemlite.integrations import apply_torchao_config_to_model, parse_torchao_config, patch_sglang
from torchao_gemlite.tensors import ALL_TENSOR_CLASSES

PARSED = {
    "gemlite-4-64": tg.GemliteWeightOnlyConfig(bits=4, group_size=64),
    "gemlite-2-128": tg.GemliteWeightOnlyConfig(bits=2, group_size=128),
    "gemlite-8-None": tg.GemliteWeightOnlyConfig(bits=8, group_size=None),
    "gemlite-32-4-128": tg.GemliteWeightOnlyConfig(bits=4, group_size=128),
    "gemlite-8-1-32": tg.GemliteWeightOnlyConfig(bits=1, group_size=32),
    "int4wo-128": tg.GemliteInt4WeightOnlyConfig(group_size=128),
    "int4wo-32": tg.GemliteInt4WeightOnlyConfig(group_size=32),
    "int8wo": tg.GemliteWeightOnlyConfig(bits=8, group_size=None, symmetric=True),
    "int8dq": tg.GemliteInt8DynamicActivationInt8WeightConfig(),
    "fp8dq-per_row": tg.GemliteFloat8DynamicActivationFloat8WeightConfig(),
}


@pytest.mark.parametrize("spec", list(PARSED))
def test_parse(spec):
    assert parse_torchao_config(spec) == PARSED[spec]


def test_parse_routes_to_torchao_where_we_have_no_kernel():
    assert isinstance(parse_torchao_config("fp8wo"), Float8WeightOnlyConfig)
    assert isinstance(parse_torchao_config("fp8dq-per_tensor"), Float8DynamicActivationFloat8WeightConfig)
    assert parse_torchao_config("") is None


@pytest.mark.parametrize("spec", ["gemlite-3-64", "gemlite-4-48", "gemlite-4", "gemlite-64-4-64", "gemlite-4-abc",
                                  "int4wo", "int4wo-100", "int3wo-64", "awq", "gemlite-a-4-64", "fp8dq"])
def test_unknown_or_invalid_strings_list_the_accepted_forms(spec):
    with pytest.raises(ValueError, match=r"(?s)accepted forms:.*gemlite-<bits>-<group_size>.*int4wo-<group_size>"):
        parse_torchao_config(spec)


def test_parse_type_error():
    with pytest.raises(TypeError):
        parse_torchao_config(None)


class _TinyDecoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed_tokens = torch.nn.Embedding(64, 64)
        self.q_proj = torch.nn.Linear(64, 64, bias=False)
        self.gate_up_proj = torch.nn.Linear(64, 128, bias=False)
        self.down_proj = torch.nn.Linear(64, 64, bias=False)
        self.router = torch.nn.Linear(64, 64, bias=False)
        self.lm_head = torch.nn.Linear(64, 64, bias=False)


def test_apply_quantizes_proj_layers_only():
    model = apply_torchao_config_to_model(_TinyDecoder(), "gemlite-4-32")
    for name in ("q_proj", "gate_up_proj", "down_proj"):
        assert isinstance(getattr(model, name).weight, tg.Int4GemliteTensor), name
    for name in ("router", "lm_head", "embed_tokens"):
        assert not isinstance(getattr(model, name).weight, ALL_TENSOR_CLASSES), name


def test_apply_with_custom_filter_and_empty_string():
    model = apply_torchao_config_to_model(_TinyDecoder(), "int8dq", filter_fn=None)
    assert isinstance(model.lm_head.weight, tg.Int8DynActInt8GemliteTensor)
    untouched = _TinyDecoder()
    assert apply_torchao_config_to_model(untouched, "") is untouched
    assert not isinstance(untouched.q_proj.weight, ALL_TENSOR_CLASSES)


def test_apply_output_close_to_float():
    torch.manual_seed(0)
    model = _TinyDecoder()
    x = torch.randn(3, 64)
    ref = model.q_proj(x)
    apply_torchao_config_to_model(model, "int8wo")
    torch.testing.assert_close(model.q_proj(x), ref, atol=0.02, rtol=0.02)


def test_patch_sglang_replaces_the_function_everywhere(monkeypatch):
    """A stand-in for SGLang's modules: torchao_utils defines the function, the model
    runner imported it by name; both must call ours after patching."""
    def sglang_original(model, torchao_config, filter_fn=None):
        raise AssertionError("the original must not run")

    names = ["sglang", "sglang.srt", "sglang.srt.layers", "sglang.srt.layers.torchao_utils",
             "sglang.srt.model_executor", "sglang.srt.model_executor.model_runner"]
    fakes = {name: types.ModuleType(name) for name in names}
    fakes["sglang.srt.layers.torchao_utils"].apply_torchao_config_to_model = sglang_original
    fakes["sglang.srt.model_executor.model_runner"].apply_torchao_config_to_model = sglang_original
    for parent, child in zip(names, names[1:]):
        if child.startswith(parent + ".") and child.count(".") == parent.count(".") + 1:
            setattr(fakes[parent], child.rsplit(".", 1)[1], fakes[child])
    fakes["sglang.srt"].model_executor = fakes["sglang.srt.model_executor"]
    for name, module in fakes.items():
        monkeypatch.setitem(sys.modules, name, module)

    patched = patch_sglang()
    assert set(patched) == {"sglang.srt.layers.torchao_utils", "sglang.srt.model_executor.model_runner"}
    runner = sys.modules["sglang.srt.model_executor.model_runner"]
    model = runner.apply_torchao_config_to_model(_TinyDecoder(), "gemlite-4-64")
    assert isinstance(model.down_proj.weight, tg.Int4GemliteTensor)


def test_patch_sglang_without_sglang(monkeypatch):
    monkeypatch.setitem(sys.modules, "sglang", None)
    with pytest.raises(ImportError, match="needs SGLang"):
        patch_sglang()
