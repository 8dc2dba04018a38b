"""Weight-only tensors (Int8/4/2/1GemliteTensor): torchao's test bases, linear accuracy,
slicing/aliasing, cat, copy_, device and dtype moves. CPU tensors run the reference path."""

import unittest

import torch
import torch.nn.functional as F
from torch.testing._internal import common_utils
from torch.testing._internal.common_utils import TestCase, instantiate_parametrized_tests, parametrize
from torchao.quantization import quantize_
from torchao.quantization.utils import compute_error
from torchao.testing import utils as aotu

import torchao_gemlite  # noqa: F401
from torchao_gemlite import (
    GemliteWeightOnlyConfig,
    Int1GemliteTensor,
    Int2GemliteTensor,
    Int4GemliteTensor,
    Int8GemliteTensor,
)

CLASSES = {8: Int8GemliteTensor, 4: Int4GemliteTensor, 2: Int2GemliteTensor, 1: Int1GemliteTensor}
NO_CUDA = "needs CUDA: the base test calls .cuda() or quantizes on an accelerator"
TRANSPOSE = "a packed [K/E, N] weight has no transposed form: the linear consumes it as stored"


# --- torchao's own test bases ---------------------------------------------------------------


def skip_base_tests(cls, prefix, reason):
    """Replaces the base's already-instantiated tests named ``prefix*`` by a skip with ``reason``."""
    for name in [n for n in dir(cls) if n.startswith(prefix)]:
        setattr(cls, name, unittest.skip(reason)(lambda self: None))
    return cls


class TestInt4GemliteBasic(aotu.TorchAOBasicTestCase):
    TENSOR_SUBCLASS = Int4GemliteTensor
    FACTORY_FN = staticmethod(Int4GemliteTensor.from_hp)
    kwargs = {"group_size": 128}
    LINEAR_MIN_SQNR = 18  # 4-bit on a [4, 128] weight: one group per row, few samples


class TestInt8GemliteBasic(aotu.TorchAOBasicTestCase):
    TENSOR_SUBCLASS = Int8GemliteTensor
    FACTORY_FN = staticmethod(Int8GemliteTensor.from_hp)
    kwargs = {"group_size": 32, "symmetric": True}
    LINEAR_MIN_SQNR = 38


class TestInt4GemliteCompile(aotu.TorchAOCompileTestCase):
    TENSOR_SUBCLASS = Int4GemliteTensor
    FACTORY_FN = staticmethod(Int4GemliteTensor.from_hp)
    kwargs = {"group_size": 128}
    LINEAR_MIN_SQNR = 18
    # from_hp under torch.compile gives the same codes except where a value sits on a rounding edge
    COMPILE_MIN_SQNR = 30


if not torch.cuda.is_available():
    # Each inductor compile costs seconds on a cold CPU cache; float32 covers the CPU path.
    for _dtype in ("float16", "bfloat16"):
        skip_base_tests_matching = [n for n in dir(TestInt4GemliteCompile) if n.endswith(f"_cpu_{_dtype}")]
        for _name in skip_base_tests_matching:
            skip_base_tests(TestInt4GemliteCompile, _name, "CI time: inductor CPU compiles; float32 covers the CPU path")

for _cls in (TestInt4GemliteBasic, TestInt8GemliteBasic):
    skip_base_tests(_cls, "test_transpose", TRANSPOSE)
    if not torch.cuda.is_available():
        skip_base_tests(_cls, "test_device1_to_device2", NO_CUDA)


class TestInt4GemliteIntegration(aotu.TorchAOIntegrationTestCase):
    config = GemliteWeightOnlyConfig(bits=4, group_size=128)

    @unittest.skipIf(not torch.cuda.is_available(), "needs CUDA: torchao's helper runs on an accelerator")
    def test_slice_and_copy_similar_to_vllm(self):
        self._test_slice_and_copy_similar_to_vllm(self.config)

    @unittest.skipIf(not torch.cuda.is_available(), "needs CUDA: torchao's helper runs on cuda")
    def test_narrow_similar_to_vllm(self):
        self._test_narrow_similar_to_vllm(self.config)

    def test_chunk_similar_to_vllm_llama4(self):
        w = Int4GemliteTensor.from_hp(torch.randn(256, 512), group_size=128)
        self._test_chunk_similar_to_vllm_llama4(w, 0)
        self._test_chunk_similar_to_vllm_llama4(w, 1)


# --- our own tests ------------------------------------------------------------------------


class TestWeightOnlyTensor(TestCase):
    def setUp(self):
        torch.manual_seed(0)
        self.w = torch.randn(256, 128)

    @parametrize("bits", [8, 4, 2, 1])
    @parametrize("symmetric", [False, True])
    @parametrize("group_size", [32, 128, None])
    def test_linear_matches_dequantized(self, bits, symmetric, group_size):
        t = CLASSES[bits].from_hp(self.w, group_size=group_size, symmetric=symmetric)
        self.assertIs(type(t), CLASSES[bits])
        self.assertEqual(t.shape, self.w.shape)
        self.assertEqual(t.qdata.shape, (128 * bits // 32, 256))
        self.assertEqual(t.zero_point is None, symmetric)
        x = torch.randn(3, 5, 128)
        bias = torch.randn(256)
        y = F.linear(x, t, bias)
        self.assertEqual(y.shape, (3, 5, 256))
        torch.testing.assert_close(y, F.linear(x, t.dequantize(), bias), atol=1e-4, rtol=1e-4)

    @parametrize("dtype", [torch.float16, torch.bfloat16])
    def test_linear_half_dtypes(self, dtype):
        t = Int4GemliteTensor.from_hp(self.w.to(dtype), group_size=64)
        self.assertEqual(t.dtype, dtype)
        x = torch.randn(4, 128, dtype=dtype)
        y = F.linear(x, t)
        self.assertEqual(y.dtype, dtype)
        self.assertGreater(compute_error(F.linear(x.float(), self.w), y.float()), 19)

    def test_sqnr_table(self):
        """SQNR (dB) of the quantized linear against the fp32 linear, Gaussian weights."""
        w, x = torch.randn(512, 1024), torch.randn(64, 1024)
        ref = F.linear(x, w)
        rows = []
        for bits in (8, 4, 2, 1):
            for group_size in (128, None):
                for symmetric in (False, True):
                    t = CLASSES[bits].from_hp(w, group_size=group_size, symmetric=symmetric)
                    sqnr = compute_error(ref, F.linear(x, t)).item()
                    rows.append((bits, group_size, symmetric, sqnr))
        print("\nbits group symmetric SQNR(dB)")
        for bits, group_size, symmetric, sqnr in rows:
            print(f"{bits:4d} {str(group_size):5s} {str(symmetric):9s} {sqnr:6.2f}")
        table = {(b, g, s): v for b, g, s, v in rows}
        self.assertGreater(table[(4, 128, False)], 20)
        self.assertGreater(table[(8, 128, False)], 40)
        self.assertGreater(table[(2, 128, False)], 8)

    def test_slice_along_n_aliases(self):
        t = Int4GemliteTensor.from_hp(self.w, group_size=32)
        s = t[16:48]
        self.assertEqual(s.shape, (32, 128))
        self.assertEqual(s.qdata.untyped_storage().data_ptr(), t.qdata.untyped_storage().data_ptr())
        torch.testing.assert_close(s.dequantize(), t.dequantize()[16:48], atol=0, rtol=0)
        x = torch.randn(2, 128)
        torch.testing.assert_close(F.linear(x, s), F.linear(x, t)[:, 16:48], atol=0, rtol=0)

    def test_narrow_along_k_at_group_boundaries(self):
        t = Int4GemliteTensor.from_hp(self.w, group_size=32)
        s = t.narrow(1, 32, 64)
        self.assertEqual(s.shape, (256, 64))
        self.assertEqual(s.qdata.shape, (8, 256))
        self.assertEqual(s.scale.shape, (2, 256))
        self.assertEqual(s.qdata.data_ptr(), t.qdata[4:].data_ptr())
        torch.testing.assert_close(s.dequantize(), t.dequantize()[:, 32:96], atol=0, rtol=0)
        with self.assertRaisesRegex(ValueError, "group boundary"):
            t.narrow(1, 16, 64)
        per_channel = Int4GemliteTensor.from_hp(self.w, group_size=None)
        with self.assertRaisesRegex(ValueError, "per-channel"):
            per_channel.narrow(1, 0, 64)

    def test_slice_errors(self):
        t = Int4GemliteTensor.from_hp(self.w, group_size=32)
        with self.assertRaisesRegex(ValueError, "step 1"):
            t[::2]

    def test_copy_into_slice_writes_original(self):
        """vLLM's loader: param.data.narrow(0, start, size).copy_(loaded.narrow(0, start, size))."""
        param = Int4GemliteTensor.from_hp(self.w, group_size=32)
        loaded = Int4GemliteTensor.from_hp(self.w + 1 + 2 * torch.randn_like(self.w), group_size=32)
        for start in (0, 128):
            param.narrow(0, start, 128).copy_(loaded.narrow(0, start, 128))
        for name in ("qdata", "scale", "zero_point"):
            self.assertTrue(torch.equal(getattr(param, name), getattr(loaded, name)))
        # along K at group boundaries (row-parallel shards)
        other = Int4GemliteTensor.from_hp(torch.randn_like(self.w), group_size=32)
        param.narrow(1, 64, 64).copy_(other.narrow(1, 64, 64))
        torch.testing.assert_close(param.dequantize()[:, 64:], other.dequantize()[:, 64:], atol=0, rtol=0)
        torch.testing.assert_close(param.dequantize()[:, :64], loaded.dequantize()[:, :64], atol=0, rtol=0)

    def test_copy_mismatch_errors(self):
        t = Int4GemliteTensor.from_hp(self.w, group_size=32)
        with self.assertRaisesRegex(ValueError, "group_size"):
            t.copy_(Int4GemliteTensor.from_hp(self.w, group_size=64))
        with self.assertRaisesRegex(ValueError, "type: source Int2GemliteTensor"):
            t.copy_(Int2GemliteTensor.from_hp(self.w, group_size=32))
        with self.assertRaisesRegex(TypeError, "quantize it first"):
            t.copy_(self.w)
        with self.assertRaisesRegex(TypeError, "assign=True"):
            torch.empty(256, 128).copy_(t)

    def test_cat_fused_qkv(self):
        q, k, v = (Int4GemliteTensor.from_hp(torch.randn(n, 128), group_size=64) for n in (128, 32, 32))
        qkv = torch.cat([q, k, v], dim=0)
        self.assertIs(type(qkv), Int4GemliteTensor)
        self.assertEqual(qkv.shape, (192, 128))
        x = torch.randn(3, 128)
        torch.testing.assert_close(F.linear(x, qkv), torch.cat([F.linear(x, t) for t in (q, k, v)], -1),
                                   atol=0, rtol=0)
        along_k = torch.cat([q.narrow(1, 0, 64), q.narrow(1, 64, 64)], dim=1)
        torch.testing.assert_close(along_k.dequantize(), q.dequantize(), atol=0, rtol=0)
        with self.assertRaisesRegex(ValueError, "quantized the same way"):
            torch.cat([q, Int4GemliteTensor.from_hp(torch.randn(32, 128), group_size=32)])

    def test_detach_clone_to(self):
        t = Int2GemliteTensor.from_hp(self.w, group_size=64)
        for u in (t.detach(), t.clone(), t.to("cpu")):
            self.assertIs(type(u), Int2GemliteTensor)
            torch.testing.assert_close(u.dequantize(), t.dequantize(), atol=0, rtol=0)
        self.assertNotEqual(t.clone().qdata.data_ptr(), t.qdata.data_ptr())
        meta = t.to("meta")
        self.assertEqual(meta.device.type, "meta")
        self.assertEqual(meta.qdata.device.type, "meta")
        half = t.to(torch.float16)
        self.assertEqual((half.dtype, half.scale.dtype, half.zero_point.dtype), (torch.float16,) * 3)

    def test_module_to_and_half(self):
        m = torch.nn.Sequential(torch.nn.Linear(128, 256))
        quantize_(m, GemliteWeightOnlyConfig(bits=4, group_size=64))
        m.to("cpu")
        m.half()
        self.assertIs(type(m[0].weight), Int4GemliteTensor)
        self.assertEqual(m[0].weight.dtype, torch.float16)
        m.to("meta")
        self.assertEqual(m[0].weight.qdata.device.type, "meta")

    def test_unsupported_op_names_itself(self):
        t = Int4GemliteTensor.from_hp(self.w)
        with self.assertRaisesRegex(NotImplementedError, "aten.abs.default"):
            torch.abs(t)
        with self.assertRaisesRegex(NotImplementedError, "Int4GemliteTensor does not support the op aten.add"):
            t + 1

    def test_repr_and_quantization_type(self):
        t = Int4GemliteTensor.from_hp(self.w, group_size=64)
        text = repr(t)
        self.assertIn("Int4GemliteTensor(shape=[256, 128], bits=4, group_size=64", text)
        self.assertIn("qdata=int32[16, 256]", text)
        m = torch.nn.Sequential(torch.nn.Linear(128, 256))
        quantize_(m, GemliteWeightOnlyConfig(bits=4, group_size=64))
        self.assertIn("weight=Int4GemliteTensor(shape=[256, 128]", repr(m))

    def test_invalid_construction(self):
        t = Int4GemliteTensor.from_hp(self.w, group_size=32)
        with self.assertRaisesRegex(ValueError, "qdata has shape"):
            Int4GemliteTensor(t.qdata[:-1], t.scale, 4, 32, False, (256, 128), zero_point=t.zero_point)
        with self.assertRaisesRegex(ValueError, "4-bit codes"):
            Int4GemliteTensor(t.qdata, t.scale, 2, 32, False, (256, 128), zero_point=t.zero_point)
        with self.assertRaisesRegex(ValueError, "zero_point"):
            Int4GemliteTensor(t.qdata, t.scale, 4, 32, False, (256, 128))

    def test_compile_fullgraph_linear(self):
        t = Int4GemliteTensor.from_hp(self.w, group_size=64)
        lin = torch.nn.Linear(128, 256, bias=False)
        lin.weight = torch.nn.Parameter(t, requires_grad=False)
        x = torch.randn(4, 128)
        compiled = torch.compile(lin, fullgraph=True, backend="aot_eager")
        torch.testing.assert_close(compiled(x), lin(x), atol=0, rtol=0)

    @unittest.skipIf(not torch.cuda.is_available(), "needs CUDA")
    def test_cuda_linear_matches_reference(self):
        for bits in (8, 4, 2, 1):
            t = CLASSES[bits].from_hp(self.w.half(), group_size=128).to("cuda")
            x = torch.randn(16, 128, device="cuda", dtype=torch.float16)
            torch.testing.assert_close(F.linear(x, t).float(), F.linear(x.float(), t.dequantize().float()),
                                       atol=2e-2, rtol=2e-2)


instantiate_parametrized_tests(TestWeightOnlyTensor)

if __name__ == "__main__":
    common_utils.run_tests()


def test_input_gradient_flows_through_a_frozen_quantized_weight():
    """The ops have no backward: with an input that needs a gradient the linear takes the
    dequantized, differentiable path (adapters trained on a frozen quantized base)."""
    w = torch.randn(64, 128)
    qw = Int4GemliteTensor.from_hp(w, group_size=32)
    x = torch.randn(3, 128, requires_grad=True)
    torch.nn.functional.linear(x, qw).sum().backward()
    torch.testing.assert_close(x.grad, qw.dequantize(torch.float32).sum(0).expand(3, -1))
    with torch.no_grad():
        torch.testing.assert_close(torch.nn.functional.linear(x, qw), x @ qw.dequantize(torch.float32).t(),
                                   rtol=1e-5, atol=1e-5)
