"""Reference quantizers (torchao_gemlite/quant/quantize.py): shapes, ranges and error bounds."""

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
    unpack_codes,
)

BITS = [8, 4, 2, 1]
GROUP_SIZES = [32, 64, 128, 256, None]
DTYPES = [torch.float16, torch.bfloat16, torch.float32]
N, K = 37, 512  # ragged N; K is divisible by every group size under test
STEP_TOLERANCE = 1e-3  # of one step: room for the fp32 arithmetic of quantize/dequantize
ZERO_BOUND = 256.0


def _weights(kind: str, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    if kind == "normal":
        w = torch.randn(N, K, generator=gen)
    elif kind == "uniform":
        w = torch.rand(N, K, generator=gen) * 6 - 2  # skewed: [-2, 4)
    elif kind == "outliers":
        w = torch.randn(N, K, generator=gen) * 0.02
        idx = torch.randint(0, N * K, (N * K // 100,), generator=gen)
        w.view(-1)[idx] = torch.randn(idx.numel(), generator=gen) * 50
    elif kind == "adversarial":
        w = torch.randn(N, K, generator=gen)
        noise = torch.randn(N, K, generator=gen)
        w[0] = 3.75                                # constant groups
        w[1] = 0.0                                 # all-zero groups
        w[2] = 10.0 + 1e-4 * noise[2]              # one sign, tiny range
        w[3] = -10.0 + 1e-4 * noise[3]
        w[4] = 1000.0 + 1e-2 * noise[4]
        w[5, : K // 2] = -0.0                      # half zero, half constant
        w[5, K // 2:] = -7.0
        w[6] = noise[6] * torch.finfo(dtype).tiny  # around the smallest normal
        w[7] = torch.where(noise[7] > 0, 1.0, -1.0)  # two values only
        w[8] = noise[8].abs() * 1e-3 + 5.0          # positive offset, small spread
        w[9] = torch.linspace(-1e-3, 1e-3, K)       # tiny symmetric ramp
        w[10, ::2] = 1e4                             # alternating magnitudes
        w[10, 1::2] = -1e-4
    elif kind == "huge":
        # fp16: near its largest finite value (too wide for some formats: they must refuse).
        # bf16/fp32: a quarter of it, since the fp32 arithmetic of quantize/dequantize
        # itself overflows closer to fp32's limit.
        limit = torch.finfo(dtype).max * (0.9 if dtype == torch.float16 else 0.25)
        w = (torch.rand(N, K, generator=gen) * 2 - 1) * limit
        w[0] = limit                                                # constant, at the limit
        w[1] = limit * (0.5 + 0.5 * torch.rand(K, generator=gen))  # one sign
        w[2] = -w[1]
    else:
        raise AssertionError(kind)
    return w.to(dtype)


def _required_step(w: torch.Tensor, bits: int, group: int, symmetric: bool) -> torch.Tensor:
    """The step the format needs per group (before rounding to the scale dtype), in float64."""
    g = w.double().reshape(w.shape[0], -1, group)
    max_code = 2**bits - 1
    if symmetric:
        return g.abs().amax(-1) / (max_code - symmetric_zero(bits))
    lo, hi = g.amin(-1), g.amax(-1)
    return torch.maximum((hi - lo) / max_code, lo.abs() / ZERO_BOUND)


def _check_quantized(w: torch.Tensor, bits: int, group_size, symmetric: bool) -> None:
    n, k = w.shape
    qw = quantize_weight(w, bits, group_size, symmetric)
    group = k if group_size is None else group_size
    per_word = 32 // bits

    # Shapes, dtypes, format.
    assert qw.shape == (n, k)
    assert (qw.fmt.bits, qw.fmt.group_size, qw.fmt.symmetric) == (bits, group, symmetric)
    assert qw.qdata.dtype == torch.int32 and qw.qdata.shape == (k // per_word, n)
    assert qw.scale.dtype == w.dtype and qw.scale.shape == (k // group, n)
    if symmetric:
        assert qw.zero is None
    else:
        assert qw.zero.dtype == w.dtype and qw.zero.shape == (k // group, n)

    # Stored parameters: positive finite scales, finite bounded zeros.
    scale = qw.scale.double()
    assert torch.isfinite(scale).all() and (scale > 0).all()
    if not symmetric:
        zero = qw.zero.double()
        assert torch.isfinite(zero).all()
        assert (zero.abs() <= ZERO_BOUND).all()

    # Codes in range; symmetric formats with > 1 bit never use code 0.
    codes = unpack_codes(qw.qdata, bits)
    assert codes.max() <= 2**bits - 1
    if symmetric and bits > 1:
        assert codes.min() >= 1

    # Every weight within half a step of its group's stored scale.
    step = scale.t().repeat_interleave(group, dim=1)  # [N, K]
    err = (dequantize_weight(qw, torch.float64) - w.double()).abs()
    worst = (err / step).max().item()
    assert worst <= 0.5 * (1 + STEP_TOLERANCE), f"error reaches {worst:.6f} steps"

    # The stored scale is the required step rounded up: never smaller (up to the fp32
    # arithmetic that computes it), and at most one ulp of the scale dtype above it
    # (unless floored at the smallest normal value).
    required = _required_step(w, bits, group, symmetric).t()
    assert (scale >= required * (1 - 1e-6)).all()
    tiny = torch.finfo(w.dtype).tiny
    ulp = torch.finfo(w.dtype).eps * 2  # relative spacing, generous
    assert ((scale <= required * (1 + ulp)) | (scale <= tiny * (1 + ulp))).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("group_size", GROUP_SIZES)
@pytest.mark.parametrize("symmetric", [False, True], ids=["asym", "sym"])
@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("kind", ["normal", "uniform", "outliers", "adversarial"])
def test_rtn_error_within_half_step(kind, bits, symmetric, group_size, dtype):
    _check_quantized(_weights(kind, dtype), bits, group_size, symmetric)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("group_size", [32, None])
@pytest.mark.parametrize("symmetric", [False, True], ids=["asym", "sym"])
@pytest.mark.parametrize("bits", BITS)
def test_rtn_huge_magnitudes(bits, symmetric, group_size, dtype):
    """Near the dtype's limits: either the bound holds, or the step does not fit the dtype
    and quantization refuses with the documented error (never an inf/NaN scale)."""
    w = _weights("huge", dtype)
    group = K if group_size is None else group_size
    overflows = (_required_step(w, bits, group, symmetric) > torch.finfo(dtype).max).any().item()
    if overflows:
        with pytest.raises(ValueError, match=r"span too wide a range for torch\.\w+ scales"):
            quantize_weight(w, bits, group_size, symmetric)
    else:
        _check_quantized(w, bits, group_size, symmetric)


def test_huge_fp16_formats_that_overflow():
    # fp16 +-60000 with 1 bit: the step is 120000 (symmetric) or 120000 (asymmetric), over
    # fp16's 65504, so fp16 scales refuse and fp32 scales work.
    w = torch.tensor([[-60000.0, 60000.0] * 16], dtype=torch.float16)
    for symmetric in (False, True):
        with pytest.raises(ValueError, match=r"use scale_dtype=torch.float32"):
            quantize_weight(w, 1, None, symmetric)
        qw = quantize_weight(w, 1, None, symmetric, scale_dtype=torch.float32)
        assert qw.scale.dtype == torch.float32
        assert torch.equal(dequantize_weight(qw, torch.float64), w.double())
    # The same values fit 2 bits (step 40000).
    for symmetric in (False, True):
        qw = quantize_weight(w, 2, None, symmetric)
        assert (dequantize_weight(qw, torch.float64) - w.double()).abs().max() <= qw.scale.double().max() / 2


def test_step_just_below_fp16_max_is_refused_not_inf():
    # Regression: a step of 65504.5 rounds down to fp16's 65504 and rounding it up gave inf
    # (an inf scale and NaN weights). It must be refused like any other overflow.
    w = torch.tensor([[65504.0, -0.5] * 16], dtype=torch.float16)
    with pytest.raises(ValueError, match=r"span too wide a range for torch.float16 scales"):
        quantize_weight(w, 1, None, False)
    qw = quantize_weight(w, 1, None, False, scale_dtype=torch.float32)
    assert torch.equal(dequantize_weight(qw, torch.float64), w.double())


@pytest.mark.xfail(strict=True, reason="known: rounding the scale up can put the top level past fp16's max, "
                                        "so an fp16 dequantization overflows (fp32/fp64 dequantization is exact)")
def test_fp16_dequantization_stays_finite_at_the_limit():
    w = torch.tensor([[-65504.0, 65504.0] * 16], dtype=torch.float16)
    qw = quantize_weight(w, 4, None, True)
    assert torch.isfinite(dequantize_weight(qw, torch.float16)).all()


@pytest.mark.parametrize("symmetric", [False, True])
def test_scale_dtype_override(symmetric):
    w = _weights("normal", torch.bfloat16)
    qw = quantize_weight(w, 4, 64, symmetric, scale_dtype=torch.float32)
    assert qw.scale.dtype == torch.float32
    assert symmetric or qw.zero.dtype == torch.float32
    err = (dequantize_weight(qw, torch.float64) - w.double()).abs()
    assert (err <= qw.scale.double().t().repeat_interleave(64, 1) * 0.5 * (1 + STEP_TOLERANCE)).all()


@pytest.mark.parametrize("symmetric", [False, True])
def test_groupwise_codes_match_packed_weight(symmetric):
    w = _weights("uniform", torch.float16)
    codes, scale, zero, fmt = quantize_groupwise_codes(w, 2, 128, symmetric)
    qw = quantize_weight(w, 2, 128, symmetric)
    assert codes.dtype == torch.uint8 and codes.shape == (N, K)
    assert scale.shape == (N, K // 128)
    assert fmt == qw.fmt
    assert torch.equal(unpack_codes(qw.qdata, 2), codes)
    assert torch.equal(qw.scale, scale.t())
    assert (zero is None) == symmetric
    if not symmetric:
        assert torch.equal(qw.zero, zero.t())


@pytest.mark.parametrize("bits", BITS)
def test_grid_values_round_trip_exactly(bits):
    # Symmetric weights already on the grid (levels times a power-of-two scale) come back unchanged.
    gen = torch.Generator().manual_seed(3)
    half = 2 ** (bits - 1)
    if bits == 1:
        levels = torch.randint(0, 2, (8, 64), generator=gen).float() - 0.5
        levels[:, 0] = 0.5
    else:
        levels = torch.randint(-(half - 1), half, (8, 64), generator=gen).float()
        levels[:, 0] = half - 1  # pin the absmax so the scale is exactly 0.25
    w = (levels * 0.25).to(torch.float16)
    qw = quantize_weight(w, bits, None, True)
    assert torch.equal(dequantize_weight(qw, torch.float16), w)


@pytest.mark.parametrize("bits", [3, 16])
def test_quantize_rejects_bits(bits):
    with pytest.raises(ValueError, match=rf"bits={bits} is not supported"):
        quantize_weight(torch.randn(4, 64), bits, None)


@pytest.mark.parametrize("group_size, pattern", [
    (48, r"group_size=48 is not supported"),
    (16, r"group_size=16 is not supported"),
    (256, r"group_size=256 does not divide in_features K=384"),
])
def test_quantize_rejects_group_size(group_size, pattern):
    with pytest.raises(ValueError, match=pattern):
        quantize_weight(torch.randn(4, 384), 4, group_size)


@pytest.mark.parametrize("weight, error, pattern", [
    ("not a tensor", TypeError, r"weight must be a torch.Tensor, got str"),
    (torch.randn(64), ValueError, r"weight must be 2-D"),
    (torch.randn(2, 2, 64), ValueError, r"weight must be 2-D"),
    (torch.randn(0, 64), ValueError, r"weight has out_features N=0"),
    (torch.randn(4, 80), ValueError, r"weight has in_features K=80"),
    (torch.randint(0, 5, (4, 64), dtype=torch.int32), TypeError, r"weight dtype torch.int32 is not supported"),
])
def test_quantize_rejects_weight(weight, error, pattern):
    with pytest.raises(error, match=pattern):
        quantize_weight(weight, 4, None)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("symmetric", [False, True])
def test_quantize_rejects_non_finite(bad, symmetric):
    w = torch.randn(4, 64, dtype=torch.float16)
    w[2, 10] = bad
    with pytest.raises(ValueError, match=r"weight holds 1 NaN/Inf value"):
        quantize_weight(w, 4, 32, symmetric)


# Row-wise formats (int8 / fp8 tensor-core paths).

def _rows(dtype, shape=(6, 5, 96), seed=0):
    gen = torch.Generator().manual_seed(seed)
    t = torch.randn(shape, generator=gen) * torch.logspace(-3, 3, shape[-2]).unsqueeze(-1)
    t[0, 0] = 0.0  # a row of zeros
    t[1, 1, 3] = 1e3  # an outlier
    return t.to(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_rowwise_int8(dtype):
    t = _rows(dtype)
    q, scale = quantize_rowwise_int8(t)
    assert q.dtype == torch.int8 and q.shape == t.shape
    assert scale.dtype == torch.float32 and scale.shape == (*t.shape[:-1], 1)
    assert torch.isfinite(scale).all() and (scale > 0).all()
    assert q.abs().max() <= 127 and q.min() >= -127
    assert (q[0, 0] == 0).all()
    nonzero = t.abs().amax(-1) > 0
    assert (q.abs().amax(-1)[nonzero] == 127).all()  # the absmax lands on the top code
    err = (q.double() * scale.double() - t.double()).abs()
    assert (err <= scale.double() * 0.5 * (1 + STEP_TOLERANCE)).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_rowwise_fp8(dtype):
    t = _rows(dtype)
    q, scale = quantize_rowwise_fp8(t)
    assert q.dtype == FP8_DTYPE and q.shape == t.shape
    assert scale.dtype == torch.float32 and scale.shape == (*t.shape[:-1], 1)
    assert torch.isfinite(scale).all() and (scale > 0).all()
    qf = q.double()
    assert not torch.isnan(qf).any()
    assert qf.abs().max() <= 448
    assert (qf[0, 0] == 0).all()
    # e4m3: 3 mantissa bits -> relative error <= 2^-4 for normals; absolute 2^-10 below 2^-6.
    err = (qf * scale.double() - t.double()).abs()
    assert (err <= t.double().abs() * 2**-4 + scale.double() * 2**-10).all()


def test_rowwise_fp8_saturates_instead_of_nan():
    # fp32 values a with a / (a / 448) > 448 after rounding: the ratio exceeds e4m3's largest
    # value; they must saturate to +-448, never become NaN (e4m3fn has no inf).
    a = torch.linspace(1.0, 1000.0, 20001)
    a = a[a / (a / 448) > 448]
    assert a.numel() > 0
    rows = torch.stack([a, -a], dim=1).reshape(-1, 1) * torch.ones(1, 32)  # one row per value
    q, scale = quantize_rowwise_fp8(rows)
    assert not torch.isnan(q.float()).any()
    assert (q.float().abs() == 448).all()


@pytest.mark.parametrize("quantize", [quantize_rowwise_int8, quantize_rowwise_fp8])
def test_rowwise_rejects_integer(quantize):
    with pytest.raises(TypeError, match=r"input must be floating point, got torch.int32"):
        quantize(torch.ones(3, 32, dtype=torch.int32))
