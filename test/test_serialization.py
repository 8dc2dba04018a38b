"""Serialization: torch.save / torch.load(weights_only=True), load_state_dict (assign and copy),
safetensors through torchao.prototype.safetensors, and tampered checkpoints."""

import io

import torch
from torch.testing._internal import common_utils
from torch.testing._internal.common_utils import TestCase, instantiate_parametrized_tests, parametrize
from torchao.prototype.safetensors.safetensors_support import (
    flatten_tensor_state_dict,
    unflatten_tensor_state_dict,
)
from torchao.quantization import quantize_

import torchao_gemlite  # noqa: F401
from torchao_gemlite import (
    GemliteFloat8DynamicActivationFloat8WeightConfig,
    GemliteInt4WeightOnlyConfig,
    GemliteInt8DynamicActivationInt4WeightConfig,
    GemliteInt8DynamicActivationInt8WeightConfig,
    GemliteWeightOnlyConfig,
    Int4GemliteTensor,
)

CONFIGS = {
    "int4": GemliteInt4WeightOnlyConfig(group_size=64),
    "int8_sym": GemliteWeightOnlyConfig(bits=8, group_size=None, symmetric=True),
    "int2": GemliteWeightOnlyConfig(bits=2, group_size=32),
    "int1": GemliteWeightOnlyConfig(bits=1, group_size=128, symmetric=True),
    "a8w8_int8": GemliteInt8DynamicActivationInt8WeightConfig(),
    "a8w8_fp8": GemliteFloat8DynamicActivationFloat8WeightConfig(),
    "a8w4": GemliteInt8DynamicActivationInt4WeightConfig(group_size=64),
}


def make_model(seed=0, dtype=torch.bfloat16):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(128, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128)).to(dtype)


def save_load(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


class TestSerialization(TestCase):
    def setUp(self):
        self.x = torch.randn(4, 128, dtype=torch.bfloat16)

    @parametrize("name", list(CONFIGS))
    def test_save_load_assign_bit_identical(self, name):
        model = make_model()
        quantize_(model, CONFIGS[name])
        expected = model(self.x)
        fresh = make_model(seed=1)
        fresh.load_state_dict(save_load(model.state_dict()), assign=True)
        self.assertIs(type(fresh[0].weight), type(model[0].weight))
        self.assertTrue(torch.equal(fresh(self.x), expected))

    @parametrize("name", list(CONFIGS))
    def test_load_into_quantized_model(self, name):
        model = make_model()
        quantize_(model, CONFIGS[name])
        expected = model(self.x)
        other = make_model(seed=1)
        quantize_(other, CONFIGS[name])
        self.assertFalse(torch.equal(other(self.x), expected))
        other.load_state_dict(save_load(model.state_dict()))
        self.assertTrue(torch.equal(other(self.x), expected))

    @parametrize("name", list(CONFIGS))
    def test_safetensors_round_trip(self, name):
        from safetensors.torch import load, save

        model = make_model()
        quantize_(model, CONFIGS[name])
        expected = model(self.x)
        data, metadata = flatten_tensor_state_dict(model.state_dict())
        self.assertTrue(any(key.endswith("_weight_qdata") for key in data))
        blob = save(data, metadata=metadata)
        from safetensors import safe_open  # noqa: F401  (metadata is read back below)

        loaded_data = load(blob)
        state_dict, leftover = unflatten_tensor_state_dict(loaded_data, metadata)
        self.assertEqual(leftover, {})
        fresh = make_model(seed=1)
        fresh.load_state_dict(state_dict, assign=True)
        self.assertTrue(torch.equal(fresh(self.x), expected))

    @parametrize("name", ["int4", "a8w8_int8"])
    def test_whole_model_pickle_round_trip(self, name):
        """torch.save(model) pickles the modules themselves (their extra_repr included)."""
        model = make_model()
        quantize_(model, CONFIGS[name])
        expected = model(self.x)
        buf = io.BytesIO()
        torch.save(model, buf)
        buf.seek(0)
        loaded = torch.load(buf, weights_only=False)
        self.assertTrue(torch.equal(loaded(self.x), expected))
        self.assertEqual(repr(loaded), repr(model))
        self.assertIn("in_features=128, out_features=256", repr(loaded))

    def test_load_mismatched_config_fails(self):
        model = make_model()
        quantize_(model, GemliteInt4WeightOnlyConfig(group_size=64))
        other = make_model()
        quantize_(other, GemliteInt4WeightOnlyConfig(group_size=128))
        with self.assertRaisesRegex(RuntimeError, "group_size: source 64, destination 128"):
            other.load_state_dict(save_load(model.state_dict()))
        other = make_model()
        quantize_(other, GemliteWeightOnlyConfig(bits=2))
        with self.assertRaisesRegex(RuntimeError, "type: source Int4GemliteTensor, destination Int2GemliteTensor"):
            other.load_state_dict(save_load(model.state_dict()))

    def test_load_quantized_into_float_model_without_assign_fails(self):
        model = make_model()
        quantize_(model, GemliteInt4WeightOnlyConfig())
        with self.assertRaisesRegex(RuntimeError, "assign=True"):
            make_model().load_state_dict(save_load(model.state_dict()))

    def test_tampered_checkpoint_fails(self):
        w = Int4GemliteTensor.from_hp(torch.randn(256, 128), group_size=64)
        w.qdata = w.qdata[:-1]  # truncated codes
        with self.assertRaisesRegex(ValueError, "inconsistent: qdata has shape"):
            save_load({"w": w})
        w = Int4GemliteTensor.from_hp(torch.randn(256, 128), group_size=64)
        del w.scale
        with self.assertRaisesRegex(ValueError, "missing the field"):
            save_load({"w": w})
        w = Int4GemliteTensor.from_hp(torch.randn(256, 128), group_size=64)
        w.bits = 2
        with self.assertRaisesRegex(ValueError, "4-bit codes"):
            save_load({"w": w})

    def test_tampered_safetensors_fails(self):
        model = make_model()
        quantize_(model, GemliteInt4WeightOnlyConfig(group_size=64))
        data, metadata = flatten_tensor_state_dict(model.state_dict())
        data["0._weight_scale"] = data["0._weight_scale"][:1]
        with self.assertRaisesRegex(ValueError, "scale has shape"):
            unflatten_tensor_state_dict(data, metadata)

    def test_registration_is_idempotent(self):
        from torchao.prototype.safetensors import safetensors_utils
        from torchao.quantization import Int4WeightOnlyConfig
        from torchao.quantization.transform_module import _QUANTIZE_CONFIG_HANDLER

        from torchao_gemlite import _registration

        handler = _QUANTIZE_CONFIG_HANDLER[Int4WeightOnlyConfig]
        _registration.register()
        _registration.register()
        self.assertIs(_QUANTIZE_CONFIG_HANDLER[Int4WeightOnlyConfig], handler)
        self.assertEqual(safetensors_utils.ALLOWED_TENSORS_SUBCLASSES.count("Int4GemliteTensor"), 1)
        safe = torch.serialization.get_safe_globals()
        self.assertEqual(safe.count(Int4GemliteTensor), 1)
        self.assertEqual(Int4GemliteTensor.__module__, "torchao_gemlite")


instantiate_parametrized_tests(TestSerialization)

if __name__ == "__main__":
    common_utils.run_tests()
