"""Configs: quantize_ over a model, ineligible layers, FqnToConfig, config dicts, and the
Int4WeightOnlyConfig(int4_packing_format="gemlite") seed route."""

import unittest
import warnings

import torch
from torch.testing._internal import common_utils
from torch.testing._internal.common_utils import TestCase, instantiate_parametrized_tests, parametrize
from torchao.core.config import config_from_dict, config_to_dict
from torchao.quantization import FqnToConfig, Int4WeightOnlyConfig, quantize_

import torchao_gemlite  # noqa: F401
from torchao_gemlite import (
    Float8DynActFloat8GemliteTensor,
    GemliteFloat8DynamicActivationFloat8WeightConfig,
    GemliteInt4WeightOnlyConfig,
    GemliteInt8DynamicActivationInt4WeightConfig,
    GemliteInt8DynamicActivationInt8WeightConfig,
    GemliteWeightOnlyConfig,
    Int1GemliteTensor,
    Int2GemliteTensor,
    Int4GemliteTensor,
    Int8DynActInt4GemliteTensor,
    Int8DynActInt8GemliteTensor,
    Int8GemliteTensor,
)

CASES = [
    (GemliteInt4WeightOnlyConfig(), Int4GemliteTensor),
    (GemliteInt4WeightOnlyConfig(group_size=None, symmetric=True), Int4GemliteTensor),
    (GemliteWeightOnlyConfig(bits=8, group_size=32), Int8GemliteTensor),
    (GemliteWeightOnlyConfig(bits=2, group_size=64, symmetric=True), Int2GemliteTensor),
    (GemliteWeightOnlyConfig(bits=1, group_size=None), Int1GemliteTensor),
    (GemliteInt8DynamicActivationInt8WeightConfig(), Int8DynActInt8GemliteTensor),
    (GemliteFloat8DynamicActivationFloat8WeightConfig(), Float8DynActFloat8GemliteTensor),
    (GemliteInt8DynamicActivationInt4WeightConfig(group_size=32), Int8DynActInt4GemliteTensor),
]


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.up = torch.nn.Linear(128, 256)
        self.odd = torch.nn.Linear(256, 100)  # N=100 is fine
        self.tiny = torch.nn.Linear(100, 64)  # K=100: not a multiple of 32

    def forward(self, x):
        return self.tiny(self.odd(self.up(x)))


class TestConfigs(TestCase):
    @parametrize("case", range(len(CASES)))
    def test_quantize_model(self, case):
        config, cls = CASES[case]
        torch.manual_seed(0)
        model = Net()
        x = torch.randn(3, 128)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            quantize_(model, config)
        self.assertIs(type(model.up.weight), cls)
        self.assertIs(type(model.odd.weight), cls)
        self.assertIs(type(model.tiny.weight), torch.nn.Parameter)  # left as is
        messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
        skipped = [m for m in messages if "unquantized" in m]
        self.assertEqual(len(skipped), 1, messages)
        self.assertIn("'tiny'", skipped[0])
        self.assertIn("in_features=100", skipped[0])
        self.assertEqual(model(x).shape, (3, 64))

    def test_group_size_not_dividing_k_is_skipped(self):
        model = torch.nn.Sequential(torch.nn.Linear(96, 64), torch.nn.Linear(64, 64))
        with self.assertWarnsRegex(UserWarning, r"left '0' \(Linear\) unquantized: in_features=96 is not a multiple of "
                                                r"group_size=64"):
            quantize_(model, GemliteInt4WeightOnlyConfig(group_size=64))
        self.assertIs(type(model[1].weight), Int4GemliteTensor)

    def test_config_validation(self):
        with self.assertRaisesRegex(ValueError, "bits=3"):
            GemliteWeightOnlyConfig(bits=3)
        with self.assertRaisesRegex(ValueError, "power of two"):
            GemliteInt4WeightOnlyConfig(group_size=100)
        with self.assertRaisesRegex(TypeError, "symmetric"):
            GemliteInt4WeightOnlyConfig(symmetric="yes")

    @parametrize("case", range(len(CASES)))
    def test_config_dict_round_trip(self, case):
        config = CASES[case][0]
        d = config_to_dict(config)
        self.assertEqual(config_from_dict(d), config)

    def test_fqn_to_config(self):
        model = Net()
        config = FqnToConfig({
            "up.weight": GemliteInt8DynamicActivationInt4WeightConfig(group_size=32),
            "odd": GemliteWeightOnlyConfig(bits=2, group_size=32),
        })
        quantize_(model, config, filter_fn=None)
        self.assertIs(type(model.up.weight), Int8DynActInt4GemliteTensor)
        self.assertIs(type(model.odd.weight), Int2GemliteTensor)
        self.assertIs(type(model.tiny.weight), torch.nn.Parameter)

    def test_quantize_then_move(self):
        model = Net()
        quantize_(model, GemliteInt4WeightOnlyConfig())
        model.to("meta")  # the same _apply path as .to("cuda")
        self.assertEqual(model.up.weight.qdata.device.type, "meta")
        self.assertIs(type(model.up.weight), Int4GemliteTensor)

    @unittest.skipIf(not torch.cuda.is_available(), "needs CUDA")
    def test_cpu_quantize_then_cuda_and_quantize_on_gpu(self):
        x = torch.randn(3, 128, dtype=torch.bfloat16)
        model = Net().to(torch.bfloat16)
        quantize_(model, GemliteInt4WeightOnlyConfig())
        expected = model(x)
        model.to("cuda")
        torch.testing.assert_close(model(x.cuda()).cpu(), expected, atol=2e-2, rtol=2e-2)
        on_gpu = Net().to("cuda", torch.bfloat16)
        quantize_(on_gpu, GemliteInt4WeightOnlyConfig())
        self.assertEqual(on_gpu.up.weight.qdata.device.type, "cuda")


    @unittest.skipIf(not torch.cuda.is_available(), "needs CUDA")
    def test_quantize_on_gpu_keeps_no_full_precision_copy(self):
        """quantize_ on a model that sits on the GPU works layer by layer: the peak above the float
        model stays a small multiple of one layer, far below a second copy of the model."""
        layers = 64
        model = torch.nn.Sequential(*[torch.nn.Linear(2048, 2048, bias=False) for _ in range(layers)])
        model = model.to("cuda", torch.float16)
        layer_bytes = 2048 * 2048 * 2
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        quantize_(model, GemliteInt4WeightOnlyConfig())
        torch.cuda.synchronize()
        extra = torch.cuda.max_memory_allocated() - before
        self.assertLess(extra, 24 * layer_bytes, f"peak {extra / layer_bytes:.1f} layers above the float model")
        self.assertLess(extra, layers * layer_bytes / 2)


class TestInt4WeightOnlyConfigRoute(TestCase):
    def test_gemlite_packing_format(self):
        model = torch.nn.Sequential(torch.nn.Linear(256, 128))
        quantize_(model, Int4WeightOnlyConfig(group_size=128, int4_packing_format="gemlite"))
        w = model[0].weight
        self.assertIs(type(w), Int4GemliteTensor)
        self.assertEqual((w.group_size, w.symmetric), (128, False))

    def test_other_formats_reach_torchao_handler(self):
        from torchao.quantization.transform_module import _QUANTIZE_CONFIG_HANDLER

        handler = _QUANTIZE_CONFIG_HANDLER[Int4WeightOnlyConfig]
        self.assertTrue(hasattr(handler, "__wrapped__"))
        seen = []
        original = handler.__wrapped__
        # Observe the calls that the wrapper forwards, without running torchao's int4 kernels
        # (they need CUDA and mslk).
        import torchao_gemlite._registration as registration

        def spy(module, config, *, parameter_name="weight"):
            seen.append(config.int4_packing_format)
            return module

        try:
            del handler._torchao_gemlite_route
            _QUANTIZE_CONFIG_HANDLER[Int4WeightOnlyConfig] = spy
            registration._install_int4_route()
            for fmt in ("plain", "preshuffled", "plain_int32", "tile_packed_to_4d"):
                model = torch.nn.Sequential(torch.nn.Linear(256, 128))
                quantize_(model, Int4WeightOnlyConfig(group_size=128, int4_packing_format=fmt))
                self.assertIs(type(model[0].weight), torch.nn.Parameter)
            quantize_(torch.nn.Sequential(torch.nn.Linear(256, 128)),
                      Int4WeightOnlyConfig(group_size=128, int4_packing_format="gemlite"))
        finally:
            handler._torchao_gemlite_route = True
            _QUANTIZE_CONFIG_HANDLER[Int4WeightOnlyConfig] = handler
        self.assertEqual([str(getattr(f, "value", f)) for f in seen],
                         ["plain", "preshuffled", "plain_int32", "tile_packed_to_4d"])
        self.assertEqual(original.__name__, "_int4_weight_only_transform")

    def test_config_dict_round_trip(self):
        config = Int4WeightOnlyConfig(group_size=128, int4_packing_format="gemlite")
        self.assertEqual(config_from_dict(config_to_dict(config)), config)


instantiate_parametrized_tests(TestConfigs)

if __name__ == "__main__":
    common_utils.run_tests()
