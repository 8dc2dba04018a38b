"""Reference dequantization and linear layers (torchao_gemlite/quant/reference.py),
checked against independent float64 computations written here."""

import pytest
import torch

from torchao_gemlite.formats import symmetric_zero
from torchao_gemlite.quant import (
    FP8_DTYPE,
    dequantize_weight,
    quantize_groupwise_codes,
    quantize_rowwise_fp8,
    quantize_rowwise_int8,
    quantize_weight,
    reference_linear,
    reference_linear_a8w4,
    reference_linear_dynamic,
)

ACT_DTYPES = [torch.float16, torch.bfloat16, torch.float32]
# Relative Frobenius error allowed for a result rounded to the output dtype (fp32 accumulation).
REL_TOL = {torch.float16: 2e-3, torch.bfloat16: 1e-2, torch.float32: 1e-5}
N, K = 45, 256
X_SHAPES = [(7, K), (2, 3, K), (1, K)]


def _rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual.double() - expected).norm() / expected.norm().clamp_min(1e-300)).item()


def _input(shape, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen)
    x.view(-1, shape[-1])[0] = 0.0  # a row of zeros
    return x.to(dtype)


def _bias(dtype, seed=1):
    return torch.randn(N, generator=torch.Generator().manual_seed(seed)).to(dtype)


def _weight(dtype=torch.float32, seed=2):
    return torch.randn(N, K, generator=torch.Generator().manual_seed(seed)).to(dtype)


# dequantize_weight

@pytest.mark.parametrize("bits", [8, 4, 2, 1])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("group_size", [32, 128, None])
def test_dequantize_matches_codes(bits, symmetric, group_size):
    w = _weight(torch.bfloat16)
    codes, scale, zero, fmt = quantize_groupwise_codes(w, bits, group_size, symmetric)
    group = fmt.group_size
    z = symmetric_zero(bits) if zero is None else zero.double().repeat_interleave(group, 1)
    expected = (codes.double() - z) * scale.double().repeat_interleave(group, 1)
    qw = quantize_weight(w, bits, group_size, symmetric)
    got = dequantize_weight(qw, torch.float64)
    assert got.dtype == torch.float64 and got.shape == (N, K)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=0)
    for dtype in ACT_DTYPES:
        assert dequantize_weight(qw, dtype).dtype == dtype
    assert dequantize_weight(qw).dtype == torch.float32


# reference_linear (weight-only)

@pytest.mark.parametrize("x_dtype", ACT_DTYPES, ids=str)
@pytest.mark.parametrize("x_shape", X_SHAPES, ids=str)
@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("bits, symmetric, group_size", [(4, False, 64), (4, True, 128), (8, False, None),
                                                          (2, True, 32), (1, False, 256)])
def test_reference_linear(bits, symmetric, group_size, with_bias, x_shape, x_dtype):
    qw = quantize_weight(_weight(x_dtype), bits, group_size, symmetric)
    x = _input(x_shape, x_dtype)
    bias = _bias(x_dtype) if with_bias else None
    y = reference_linear(x, qw, bias)
    assert y.dtype == x_dtype and y.shape == (*x_shape[:-1], N)
    assert torch.isfinite(y).all()
    expected = x.double() @ dequantize_weight(qw, torch.float64).t()
    if with_bias:
        expected = expected + bias.double()
    assert _rel_err(y, expected) <= REL_TOL[x_dtype]
    # The zero row gives exactly the bias (rounded to the output dtype).
    zero_row = y.reshape(-1, N)[0]
    assert torch.equal(zero_row, bias if with_bias else torch.zeros_like(zero_row))


def test_reference_linear_fp32_scales_with_fp16_input():
    qw = quantize_weight(_weight(), 4, 128, False, scale_dtype=torch.float32)
    x = _input((5, K), torch.float16)
    expected = x.double() @ dequantize_weight(qw, torch.float64).t()
    assert _rel_err(reference_linear(x, qw), expected) <= REL_TOL[torch.float16]


# reference_linear_dynamic (A8W8, int8 and fp8)

def _quantize_rows_int8_f64(t: torch.Tensor):
    """Independent per-row int8 quantizer, in float64."""
    t = t.double()
    scale = (t.abs().amax(-1, keepdim=True) / 127).clamp_min(1e-300)
    return (t / scale).round().clamp(-127, 127), scale


def _quantize_rows_fp8_f64(t: torch.Tensor):
    """Independent per-row e4m3 quantizer: scale in float64, saturate, round to e4m3."""
    t = t.double()
    scale = (t.abs().amax(-1, keepdim=True) / 448).clamp_min(1e-300)
    return (t / scale).clamp(-448, 448).to(FP8_DTYPE).double(), scale


def _dynamic_expected(x, w, bias, act):
    quantize = {"int8": _quantize_rows_int8_f64, "fp8": _quantize_rows_fp8_f64}[act]
    xq, xs = quantize(x)
    wq, ws = quantize(w)
    y = (xq @ wq.t()) * xs * ws.reshape(1, -1)
    return y if bias is None else y + bias.double()


@pytest.mark.parametrize("act", ["int8", "fp8"])
@pytest.mark.parametrize("x_dtype", ACT_DTYPES, ids=str)
@pytest.mark.parametrize("x_shape", X_SHAPES, ids=str)
@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
def test_reference_linear_dynamic(act, x_dtype, x_shape, with_bias):
    w = _weight()
    quantize = {"int8": quantize_rowwise_int8, "fp8": quantize_rowwise_fp8}[act]
    wq, ws = quantize(w)
    assert wq.shape == (N, K) and ws.shape == (N, 1) and ws.dtype == torch.float32
    x = _input(x_shape, x_dtype)
    bias = _bias(x_dtype) if with_bias else None
    y = reference_linear_dynamic(x, wq, ws.reshape(N), bias, act=act)  # the ops pass scale [N]
    assert y.dtype == x_dtype and y.shape == (*x_shape[:-1], N)
    assert torch.isfinite(y).all()
    # Against the same math done independently (fp32 vs fp64 scales may flip a rare rounding tie).
    tol = max(REL_TOL[x_dtype], 1e-4)
    assert _rel_err(y, _dynamic_expected(x, w, bias, act)) <= tol
    # And against the unquantized product: int8 loses ~1%, e4m3 a few %.
    exact = x.double() @ w.double().t() + (0 if bias is None else bias.double())
    assert _rel_err(y, exact) <= (0.02 if act == "int8" else 0.06)
    zero_row = y.reshape(-1, N)[0]
    assert torch.equal(zero_row, bias if with_bias else torch.zeros_like(zero_row))
    # A weight scale of shape [N, 1] gives the same result.
    assert torch.equal(reference_linear_dynamic(x, wq, ws, bias, act=act), y)


@pytest.mark.parametrize("act", ["int8", "fp8"])
def test_reference_linear_dynamic_wide_range_rows(act):
    # Per-token scales: a huge row and a tiny row both keep their relative accuracy; the
    # large values sit at the top of the e4m3/int8 range (saturation, never NaN).
    x = _input((4, K), torch.float32)
    x[1] *= 1e30
    x[2] *= 1e-30
    x[3, 7] = 3e4
    quantize = {"int8": quantize_rowwise_int8, "fp8": quantize_rowwise_fp8}[act]
    wq, ws = quantize(_weight())
    y = reference_linear_dynamic(x, wq, ws, act=act)
    assert torch.isfinite(y).all()
    expected = x.double() @ _weight().double().t()
    for row in (1, 2, 3):
        assert _rel_err(y[row], expected[row]) <= (0.02 if act == "int8" else 0.06)


# reference_linear_a8w4

@pytest.mark.parametrize("x_dtype", ACT_DTYPES, ids=str)
@pytest.mark.parametrize("x_shape", X_SHAPES, ids=str)
@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("group_size", [32, 128, None])
def test_reference_linear_a8w4(x_dtype, x_shape, with_bias, group_size):
    w = _weight(x_dtype)
    qw = quantize_weight(w, 4, group_size, True)
    codes, scale, _, fmt = quantize_groupwise_codes(w, 4, group_size, True)
    w_deq = (codes.double() - 8) * scale.double().repeat_interleave(fmt.group_size, 1)
    x = _input(x_shape, x_dtype)
    bias = _bias(x_dtype) if with_bias else None
    y = reference_linear_a8w4(x, qw, bias)
    assert y.dtype == x_dtype and y.shape == (*x_shape[:-1], N)
    assert torch.isfinite(y).all()
    xq, xs = _quantize_rows_int8_f64(x)
    expected = (xq @ w_deq.t()) * xs + (0 if bias is None else bias.double())
    assert _rel_err(y, expected) <= max(REL_TOL[x_dtype], 1e-4)
    # Against the unquantized activations (int8 costs ~1%).
    exact = x.double() @ w_deq.t() + (0 if bias is None else bias.double())
    assert _rel_err(y, exact) <= 0.02
    zero_row = y.reshape(-1, N)[0]
    assert torch.equal(zero_row, bias if with_bias else torch.zeros_like(zero_row))


@pytest.mark.parametrize("bits, symmetric", [(4, False), (8, True), (2, True)])
def test_a8w4_rejects_other_formats(bits, symmetric):
    qw = quantize_weight(_weight(), bits, 128, symmetric)
    with pytest.raises(ValueError, match=rf"A8W4 needs a 4-bit symmetric weight, got bits={bits} "
                                         rf"symmetric={symmetric}"):
        reference_linear_a8w4(_input((2, K), torch.float16), qw)


# Input errors, shared by the three references

def _linears():
    qw4 = quantize_weight(_weight(), 4, 128, True)
    wq, ws = quantize_rowwise_int8(_weight())
    wf, wfs = quantize_rowwise_fp8(_weight())
    return {
        "weight_only": lambda x: reference_linear(x, qw4),
        "a8w4": lambda x: reference_linear_a8w4(x, qw4),
        "dynamic_int8": lambda x: reference_linear_dynamic(x, wq, ws, act="int8"),
        "dynamic_fp8": lambda x: reference_linear_dynamic(x, wf, wfs, act="fp8"),
    }


@pytest.mark.parametrize("name", ["weight_only", "a8w4", "dynamic_int8", "dynamic_fp8"])
@pytest.mark.parametrize("k", [K - 32, K + 1, 1])
def test_rejects_wrong_k(name, k):
    with pytest.raises(ValueError, match=rf"input has {k} features in its last axis, the weight expects K={K}"):
        _linears()[name](torch.randn(3, k))


@pytest.mark.parametrize("name", ["weight_only", "a8w4", "dynamic_int8", "dynamic_fp8"])
@pytest.mark.parametrize("dtype", [torch.int32, torch.int8, torch.int64])
def test_rejects_integer_input(name, dtype):
    with pytest.raises(TypeError, match=rf"input dtype {dtype} is not supported"):
        _linears()[name](torch.ones(3, K, dtype=dtype))


@pytest.mark.parametrize("act", ["int4", "fp16", ""])
def test_dynamic_rejects_act(act):
    wq, ws = quantize_rowwise_int8(_weight())
    with pytest.raises(ValueError, match=rf"act={act!r} is not supported"):
        reference_linear_dynamic(torch.randn(2, K), wq, ws, act=act)
