"""A8W8 (int8, fp8) and A8W4 GEMM kernels against float64 references on the SAME codes.

The activation codes are tested separately (test_act_quant.py: bit-exact against the
reference quantizers). Here every reference is computed in float64 from the codes of
``quantize_per_token`` (which the fused GEMM prologue shares), so a GEMM error cannot hide
behind, or be blamed on, a quantization difference. The bound is
    |y - ref| <= ulps * eps(out) * |ref| + acc_rel * mass,   mass = sum_k |xq w| * scales
int8: int32 accumulation is exact, only the fp32 epilogue and the final cast round (acc_rel
2^-21). A8W4 groups and fp8 on CUDA cores / the interpreter accumulate in fp32 (2^-20). fp8 on
Hopper tensor cores accumulates with ~14-bit precision inside a BLOCK_K chunk before each fp32
promotion (max_num_imprecise_acc), hence 2^-11 of the mass there.
Without CUDA the kernels run under Triton's interpreter (conftest.py): small shapes, fp16 only,
and the fp8 GEMM is fed the reference quantizer's output (the interpreter casts fp32 -> fp8
inside a kernel wrongly, see test_act_quant.py). Every output is poisoned with NaN first.
"""

import pytest
import torch

from torchao_gemlite.kernels.act_quant import quantize_per_token
from torchao_gemlite.kernels.dynamic_configs import (
    DynamicGemmConfig,
    candidate_configs,
    pick_codes_config,
    pick_config,
)
from torchao_gemlite.kernels.dequant import w4_codes
from torchao_gemlite.kernels.dynamic_gemm import (
    _launch,
    a8w4_dynamic_linear,
    a8w4_gemm,
    dynamic_gemm,
    fp8_dynamic_linear,
    int8_dynamic_linear,
)
from torchao_gemlite.kernels.dynamic_tma_gemm import TmaGemmCall
from torchao_gemlite.quant import (
    FP8_DTYPE,
    dequantize_weight,
    quantize_rowwise_fp8,
    quantize_rowwise_int8,
    quantize_weight,
    reference_linear_dynamic,
)

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
DTYPES = [torch.float16, torch.bfloat16] if CUDA else [torch.float16]
M_VALUES = [1, 2, 3, 8, 16, 33, 64] + ([256, 1024] if CUDA else [])
K, N = 256, 200  # ragged N: not a multiple of any BLOCK_N
cuda_only = pytest.mark.skipif(not CUDA, reason="needs CUDA")


def _poisoned(shape, dtype):
    return torch.full(shape, float("nan"), dtype=dtype, device=DEVICE)


def _data(m, k, n, dtype, bias, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(m, k, generator=gen) * 2).to(dtype).to(DEVICE)
    w = torch.randn(n, k, generator=gen).to(DEVICE)
    b = torch.randn(n, generator=gen).to(dtype).to(DEVICE) if bias else None
    return x, w, b


ACC_REL = {"int8": 2.0**-21, "a8w4": 2.0**-20, "fp8": 2.0**-11 if CUDA else 2.0**-20}


def _check(y, ref, dtype, rel_ulps=1.0, atol_frac=1e-5):
    eps = torch.finfo(dtype).eps
    assert y.dtype == dtype and not torch.isnan(y).any(), "output not fully written"
    err = (y.double() - ref.double()).abs()
    bound = rel_ulps * eps * ref.double().abs() + atol_frac * ref.double().abs().max()
    assert (err <= bound).all(), f"max err {err.max().item():.3g} (ulps={rel_ulps}, atol_frac={atol_frac})"


def _ref_on_codes(x, kind, w=None, w_scale=None, qw=None, bias=None, codes=None):
    """(ref, mass) in float64 from the activation codes (quantize_per_token's, or ``codes``)."""
    x2 = x.reshape(-1, x.shape[-1])
    xq, xs = codes if codes is not None else quantize_per_token(x2, FP8_DTYPE if kind == "fp8" else torch.int8)
    wd = dequantize_weight(qw, torch.float64) if kind == "a8w4" else w.double() * w_scale.double().reshape(-1, 1)
    xd, xs = xq.double(), xs.double().reshape(-1, 1)
    ref = (xd @ wd.t()) * xs
    mass = (xd.abs() @ wd.abs().t()) * xs
    if bias is not None:
        ref = ref + bias.double()
        mass = mass + bias.double().abs()
    return ref.reshape(*x.shape[:-1], -1), mass.reshape(*x.shape[:-1], -1)


def _check_codes(y, ref_mass, kind, dtype, ulps=1.0):
    ref, mass = ref_mass
    assert y.dtype == dtype and not torch.isnan(y).any(), "output not fully written"
    err = (y.double() - ref).abs()
    bound = ulps * torch.finfo(dtype).eps * ref.abs() + ACC_REL[kind] * mass + 1e-30
    worst = (err / bound).max().item()
    assert worst <= 1.0, f"{kind}: max err {err.max().item():.3g}, {worst:.2f}x the bound"


# ---------------------------------------------------------------------------------------------
# int8
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("m", M_VALUES)
def test_int8_linear(m, bias, dtype):
    x, w, b = _data(m, K, N, dtype, bias)
    wq, ws = quantize_rowwise_int8(w)
    y = int8_dynamic_linear(x, wq, ws.reshape(-1), b, out=_poisoned((m, N), dtype))
    _check_codes(y, _ref_on_codes(x, "int8", wq, ws, bias=b), "int8", dtype)
    # and end to end: the codes equal the reference quantizer's, so only the epilogue rounds
    _check(y, reference_linear_dynamic(x, wq, ws, b, act="int8"), dtype, rel_ulps=1, atol_frac=1e-6)


@pytest.mark.parametrize("m", [1, 33])
def test_int8_gemm_exact_on_prequantized(m):
    """dynamic_gemm alone: integer products exact, only the epilogue rounds."""
    x, w, b = _data(m, 512, 256, torch.float16, True, seed=1)
    xq, xs = quantize_rowwise_int8(x)
    wq, ws = quantize_rowwise_int8(w)
    acc = (xq.double() @ wq.double().t())
    ref = (acc * xs.double() * ws.double().t() + b.double()).to(torch.float16)
    y = dynamic_gemm(xq, xs, wq, ws, b, torch.float16, out=_poisoned((m, 256), torch.float16))
    _check(y, ref, torch.float16)
    y32 = dynamic_gemm(xq, xs, wq, ws, None, torch.float32, DynamicGemmConfig(16, 64, 128, 2))
    torch.testing.assert_close(y32.double(), acc * xs.double() * ws.double().t(), rtol=1e-6, atol=0)


def test_strided_bias():
    """A bias view with a stride (e.g. a slice of a fused bias) is read element by element."""
    x, w, _ = _data(3, K, N, torch.float16, False)
    bias = torch.randn(2 * N, dtype=torch.float16, device=DEVICE)[::2]
    wq, ws = quantize_rowwise_int8(w)
    y = int8_dynamic_linear(x, wq, ws.reshape(-1), bias)
    _check_codes(y, _ref_on_codes(x, "int8", wq, ws, bias=bias), "int8", torch.float16)


@pytest.mark.parametrize("dtype", DTYPES)
def test_int8_leading_dims_and_strides(dtype):
    x, w, b = _data(2 * 3 * 2, K, N, dtype, True)
    x = x.reshape(2, 3, 2, K)[:, :, 1]  # [2, 3, K], not viewable as [6, K] without a copy
    xt = _data(K, 5, 1, dtype, False)[0].t()  # [5, K] with K stride != 1
    wq, ws = quantize_rowwise_int8(w)
    for inp in (x, xt):
        y = int8_dynamic_linear(inp, wq, ws, b)
        assert y.shape == (*inp.shape[:-1], N)
        _check_codes(y, _ref_on_codes(inp, "int8", wq, ws, bias=b), "int8", dtype)


def test_int8_split_k_deterministic_and_exact():
    x, w, b = _data(16, 512, N, torch.float16, True, seed=2)
    wq, ws = quantize_rowwise_int8(w)
    no_split = int8_dynamic_linear(x, wq, ws, b, DynamicGemmConfig(16, 128, 64, 1))
    runs = [int8_dynamic_linear(x, wq, ws, b, DynamicGemmConfig(16, 128, 64, 4), out=_poisoned((16, N), x.dtype))
            for _ in range(2)]
    # int32 partial sums are exact: split-K gives the very same bits as no split
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], no_split)


# ---------------------------------------------------------------------------------------------
# fp8
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("m", M_VALUES)
def test_fp8_gemm_prequantized(m, bias):
    x, w, b = _data(m, K, N, torch.float16, bias)
    xq, xs = quantize_rowwise_fp8(x)
    wq, ws = quantize_rowwise_fp8(w)
    y = dynamic_gemm(xq, xs.reshape(-1), wq, ws, b, torch.float16, out=_poisoned((m, N), torch.float16))
    _check_codes(y, _ref_on_codes(x, "fp8", wq, ws, bias=b, codes=(xq, xs)), "fp8", torch.float16)


@cuda_only
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("m", M_VALUES)
def test_fp8_linear(m, bias, dtype):
    x, w, b = _data(m, 1024, 1000, dtype, bias)
    wq, ws = quantize_rowwise_fp8(w)
    y = fp8_dynamic_linear(x, wq, ws, b, out=_poisoned((m, 1000), dtype))
    _check_codes(y, _ref_on_codes(x, "fp8", wq, ws, bias=b), "fp8", dtype)


def test_fp8_split_k_deterministic():
    x, w, b = _data(8, 512, N, torch.float16, True, seed=3)
    xq, xs = quantize_rowwise_fp8(x)
    wq, ws = quantize_rowwise_fp8(w)
    cfg = DynamicGemmConfig(16, 64, 64, 4)
    a = dynamic_gemm(xq, xs, wq, ws, b, torch.float16, cfg)
    c = dynamic_gemm(xq, xs, wq, ws, b, torch.float16, cfg, out=_poisoned((8, N), torch.float16))
    assert torch.equal(a, c)
    _check(a, dynamic_gemm(xq, xs, wq, ws, b, torch.float16, DynamicGemmConfig(16, 64, 64, 1)), torch.float16,
           rel_ulps=2, atol_frac=1e-4)


# ---------------------------------------------------------------------------------------------
# A8W4
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("m", M_VALUES)
def test_a8w4_linear(m, bias, dtype):
    x, w, b = _data(m, K, N, dtype, bias)
    qw = quantize_weight(w.to(dtype), bits=4, group_size=64, symmetric=True)
    y = a8w4_dynamic_linear(x, qw.qdata, qw.scale, b, 64, out=_poisoned((m, N), dtype))
    _check_codes(y, _ref_on_codes(x, "a8w4", qw=qw, bias=b), "a8w4", dtype)


@pytest.mark.parametrize("group", [32, 128, 256, None])
@pytest.mark.parametrize("config", [None, DynamicGemmConfig(16, 64, 64, 1), DynamicGemmConfig(32, 128, 128, 2)])
def test_a8w4_groups_and_configs(group, config):
    """BLOCK_K below, equal to and above the group size (clamped), per-channel, split-K."""
    x, w, b = _data(5, 512, N, torch.float16, True, seed=4)
    qw = quantize_weight(w.half(), bits=4, group_size=group, symmetric=True)
    y = a8w4_dynamic_linear(x, qw.qdata, qw.scale, b, group, config, out=_poisoned((5, N), torch.float16))
    _check_codes(y, _ref_on_codes(x, "a8w4", qw=qw, bias=b), "a8w4", torch.float16)


VARIANTS = [dict(SWAP_AB=s, FUSE_ACT=f) for s in (False, True) for f in (False, True)]


@pytest.mark.parametrize("split", [1, 3])
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"swap{int(v['SWAP_AB'])}-fuse{int(v['FUSE_ACT'])}")
def test_int8_fused_and_swapped(variant, split):
    """Fused act quant and swap-AB give the same bits as the two-launch path; K = 272 is not a
    multiple of BLOCK_K (masked last step), M = 3 pads a 16-row tile."""
    x, w, b = _data(3, 272, N, torch.float16, True, seed=6)
    wq, ws = quantize_rowwise_int8(w)
    cfg = DynamicGemmConfig(16, 64, 64, split, 4, 2, **variant)
    y = int8_dynamic_linear(x, wq, ws, b, cfg, out=_poisoned((3, N), torch.float16))
    _check_codes(y, _ref_on_codes(x, "int8", wq, ws, bias=b), "int8", torch.float16)
    assert torch.equal(y, int8_dynamic_linear(x, wq, ws, b, DynamicGemmConfig(16, 64, 64, 1)))


@pytest.mark.parametrize("variant", [(32, 1, False), (32, 3, False), (16, 2, True)],
                         ids=lambda v: f"bm{v[0]}-split{v[1]}-swap{int(v[2])}")
@pytest.mark.parametrize("kind", ["int8", "fp8"])
@pytest.mark.parametrize("m", [3, 40, 100])
def test_tma_gemm(m, kind, variant):
    """The TMA-descriptor GEMM (dynamic_tma_gemm.py): ragged M, N = 200 and K = 272 (zero-filled past the
    descriptors' edges), bias, K splits (a last split of one partial step) and swapped operands; int8 is
    bit-identical to the pointer kernel (exact int32 sums, the same epilogue)."""
    block_m, split, swap = variant
    x, w, b = _data(m, 272, N, torch.float16, True, seed=9)
    quant = quantize_rowwise_fp8 if kind == "fp8" else quantize_rowwise_int8
    wq, ws = quant(w)
    xq, xs = quant(x)  # the reference quantizer's codes (the interpreter's in-kernel fp8 cast is wrong)
    cfg = DynamicGemmConfig(block_m, 64, 64, split, 4, 3, SWAP_AB=swap, TMA=True)
    y = dynamic_gemm(xq, xs, wq, ws, b, torch.float16, cfg, out=_poisoned((m, N), torch.float16))
    _check_codes(y, _ref_on_codes(x, kind, wq, ws, bias=b, codes=(xq, xs)), kind, torch.float16)
    if kind == "int8":
        assert torch.equal(y, dynamic_gemm(xq, xs, wq, ws, b, torch.float16, DynamicGemmConfig(32, 64, 64, 1)))


@pytest.mark.parametrize("split", [1, 2])
@pytest.mark.parametrize("m", [3, 40])
def test_tma_gemm_groups(m, split):
    """A8W4's int8 codes [N, K] (dequant.w4_codes) with g64 scales on the TMA GEMM, one group a step, with and
    without a K split: bit-identical to the pointer kernel with the same split."""
    x, w, b = _data(m, 256, N, torch.float16, True, seed=11)
    qw = quantize_weight(w.half(), bits=4, group_size=64, symmetric=True)
    codes = w4_codes(qw.qdata)
    xq, xs = quantize_rowwise_int8(x)
    outs = []
    for tma in (True, False):
        y = _poisoned((m, N), torch.float16)
        _launch(xq, xs.reshape(m), codes, qw.scale, qw.scale.stride(0), qw.scale.stride(1), b, y, N, 256,
                DynamicGemmConfig(32, 64, 64, split, 4, 3, TMA=tma), fp8=False, w4=False, group_k=64)
        outs.append(y)
    _check_codes(outs[0], _ref_on_codes(x, "a8w4", qw=qw, bias=b, codes=(xq, xs)), "a8w4", torch.float16)
    assert torch.equal(outs[0], outs[1])


def test_tma_config_falls_back_without_descriptor_layout():
    """A weight view whose rows are not 16-byte aligned cannot back a TMA descriptor: the pointer kernel runs."""
    x, w, b = _data(5, 256, N + 1, torch.float16, False, seed=10)
    wq, ws = quantize_rowwise_int8(w)
    wq_odd = torch.empty(N * 256 + 8, dtype=torch.int8, device=DEVICE)[8:].view(N, 256)
    wq_odd.copy_(wq[1:])
    xq, xs = quantize_rowwise_int8(x)
    cfg = DynamicGemmConfig(32, 64, 64, 1, 4, 3, TMA=True)
    y = dynamic_gemm(xq, xs, wq_odd, ws[1:], None, torch.float16, cfg, out=_poisoned((5, N), torch.float16))
    assert torch.equal(y, dynamic_gemm(xq, xs, wq[1:], ws[1:], None, torch.float16, DynamicGemmConfig(32, 64, 64, 1)))


def test_tma_config_falls_back_for_activations_and_long_groups():
    """Activation codes whose rows are not 16-byte strided, and groups longer than BLOCK_K, run the pointer
    kernel with the TMA config's tile; the TMA launch itself refuses what it cannot compute."""
    x, w, b = _data(5, 272, N, torch.float16, True, seed=12)
    wq, ws = quantize_rowwise_int8(w)
    xq, xs = quantize_rowwise_int8(x)
    xq_wide = torch.zeros(5, 280, dtype=torch.int8, device=DEVICE)
    xq_wide[:, :272] = xq
    ragged = xq_wide[:, :272]  # row stride 280 bytes
    tma, ptr = DynamicGemmConfig(32, 64, 64, 1, 4, 3, TMA=True), DynamicGemmConfig(32, 64, 64, 1, 4, 3)
    y = dynamic_gemm(ragged, xs, wq, ws, b, torch.float16, tma, out=_poisoned((5, N), torch.float16))
    assert torch.equal(y, dynamic_gemm(xq, xs, wq, ws, b, torch.float16, ptr))
    qw = quantize_weight(w.half()[:, :256], bits=4, group_size=128, symmetric=True)
    codes, xq2 = w4_codes(qw.qdata), xq[:, :256].contiguous()
    outs = []
    for cfg in (tma, ptr):  # BLOCK_K = 64 < group 128
        outs.append(_poisoned((5, N), torch.float16))
        _launch(xq2, xs.reshape(5), codes, qw.scale, qw.scale.stride(0), qw.scale.stride(1), None, outs[-1], N, 256,
                cfg, fp8=False, w4=False, group_k=128)
    assert torch.equal(outs[0], outs[1])
    with pytest.raises(ValueError, match="BLOCK_K=64 must equal the group 128"):
        TmaGemmCall(5, N, 256, 1, 1, (N, 1), False, 128, False, 32, 64, 64, 4, 3)
    with pytest.raises(ValueError, match="does not swap"):
        TmaGemmCall(5, N, 256, 1, 1, (N, 1), False, 64, False, 32, 64, 64, 4, 3, swap_ab=True)


@cuda_only
@pytest.mark.parametrize("group", [32, 64, 128, 256])
def test_a8w4_codes_route_on_tma_gpu(group):
    """A8W4 at M = 1024 with enough 64x128 tiles for the TMA GEMM on int8 codes (groups up to 128; 256 takes the
    pointer GEMM), through the planned linear, against the float64 reference on the same activation codes."""
    x, w, b = _data(1024, 512, 2048, torch.bfloat16, True, seed=13)
    qw = quantize_weight(w.bfloat16(), bits=4, group_size=group, symmetric=True)
    assert pick_codes_config(1024, 2048, 512, group).TMA == (group <= 128)
    y = a8w4_dynamic_linear(x, qw.qdata, qw.scale, b, group)
    _check_codes(y, _ref_on_codes(x, "a8w4", qw=qw, bias=b), "a8w4", torch.bfloat16)
    again = a8w4_dynamic_linear(x, qw.qdata, qw.scale, b, group, out=_poisoned((1024, 2048), torch.bfloat16))
    assert torch.equal(y, again)


@pytest.mark.parametrize("group", [64, None])
@pytest.mark.parametrize("fuse", [False, True])
def test_a8w4_fused(fuse, group):
    x, w, b = _data(3, 256, N, torch.float16, True, seed=7)
    qw = quantize_weight(w.half(), bits=4, group_size=group, symmetric=True)
    cfg = DynamicGemmConfig(16, 64, 64, 2, 4, 2, FUSE_ACT=fuse)
    y = a8w4_dynamic_linear(x, qw.qdata, qw.scale, b, group, cfg, out=_poisoned((3, N), torch.float16))
    _check_codes(y, _ref_on_codes(x, "a8w4", qw=qw, bias=b), "a8w4", torch.float16)


@cuda_only
@pytest.mark.parametrize("m", [1, 5, 16])
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"swap{int(v['SWAP_AB'])}-fuse{int(v['FUSE_ACT'])}")
def test_fp8_fused_and_swapped_gpu(variant, m):
    x, w, b = _data(m, 1024, 1000, torch.bfloat16, True, seed=8)
    wq, ws = quantize_rowwise_fp8(w)
    for cfg in (DynamicGemmConfig(16, 64, 256, 2, 4, 3, **variant), DynamicGemmConfig(16, 128, 128, 1, 4, 3, **variant)):
        y = fp8_dynamic_linear(x, wq, ws, b, cfg, out=_poisoned((m, 1000), torch.bfloat16))
        _check_codes(y, _ref_on_codes(x, "fp8", wq, ws, bias=b), "fp8", torch.bfloat16)


@pytest.mark.parametrize("group", [128, None])
def test_a8w4_split_k_deterministic(group):
    x, w, b = _data(3, 512, N, torch.float16, True, seed=5)
    qw = quantize_weight(w.half(), bits=4, group_size=group, symmetric=True)
    cfg = DynamicGemmConfig(16, 128, 64, 4)
    a = a8w4_dynamic_linear(x, qw.qdata, qw.scale, b, group, cfg)
    c = a8w4_dynamic_linear(x, qw.qdata, qw.scale, b, group, cfg, out=_poisoned((3, N), torch.float16))
    one = a8w4_dynamic_linear(x, qw.qdata, qw.scale, b, group, DynamicGemmConfig(16, 128, 64, 1))
    assert torch.equal(a, c)
    if group is None:  # per-channel: integer partials, so split-K is bit-identical to no split
        assert torch.equal(a, one)
    _check(a, one, torch.float16, rel_ulps=2, atol_frac=1e-5)


# ---------------------------------------------------------------------------------------------
# GPU-only: large M, Llama-like K, every candidate config compiles and is correct
# ---------------------------------------------------------------------------------------------

@cuda_only
@pytest.mark.parametrize("kind", ["int8", "fp8", "a8w4"])
@pytest.mark.parametrize("m", [1, 16, 64, 256, 1024])
def test_candidate_configs_gpu(kind, m):
    k, n = 1024, 1000
    x, w, b = _data(m, k, n, torch.bfloat16, True)
    if kind == "a8w4":
        qw = quantize_weight(w.bfloat16(), bits=4, group_size=128, symmetric=True)
        ref = _ref_on_codes(x, kind, qw=qw, bias=b)
    else:
        wq, ws = (quantize_rowwise_int8 if kind == "int8" else quantize_rowwise_fp8)(w)
        ref = _ref_on_codes(x, kind, wq, ws, bias=b)
    for cfg in candidate_configs(m, n, k, kind)[:5]:
        out = _poisoned((m, n), torch.bfloat16)
        if kind == "a8w4":
            y = a8w4_dynamic_linear(x, qw.qdata, qw.scale, b, 128, cfg, out=out)
        elif kind == "int8":
            y = int8_dynamic_linear(x, wq, ws, b, cfg, out=out)
        else:
            y = fp8_dynamic_linear(x, wq, ws, b, cfg, out=out)
        _check_codes(y, ref, kind, torch.bfloat16)


@cuda_only
def test_llama_shape_gpu():
    x, w, b = _data(64, 4096, 14336, torch.bfloat16, False)
    wq, ws = quantize_rowwise_int8(w)
    _check(int8_dynamic_linear(x, wq, ws, b), reference_linear_dynamic(x, wq, ws, b, act="int8"), torch.bfloat16,
           atol_frac=1e-6)
    qw = quantize_weight(w.bfloat16(), bits=4, group_size=128, symmetric=True)
    _check_codes(a8w4_dynamic_linear(x, qw.qdata, qw.scale, b, 128), _ref_on_codes(x, "a8w4", qw=qw, bias=b), "a8w4",
                 torch.bfloat16)
    w8, ws8 = quantize_rowwise_fp8(w)
    for m in (1, 1024):  # decode and, at M >= 128, the torch._scaled_mm route
        xm = _data(m, 4096, 1, torch.bfloat16, False, seed=9)[0]
        _check_codes(fp8_dynamic_linear(xm, w8, ws8, b), _ref_on_codes(xm, "fp8", w8, ws8, bias=b), "fp8",
                     torch.bfloat16)


@cuda_only
def test_fp8_scaled_mm_route_takes_an_unaligned_bias():
    """cuBLASLt refuses a bias that is not 16-byte aligned: the route passes an aligned copy."""
    x, w, b = _data(256, 512, 64, torch.float16, True, seed=4)
    w8, ws8 = quantize_rowwise_fp8(w)
    unaligned = torch.empty(65, dtype=b.dtype, device=DEVICE)[1:]
    unaligned.copy_(b)
    assert unaligned.data_ptr() % 16
    y = fp8_dynamic_linear(x, w8, ws8, unaligned)
    assert torch.equal(y, fp8_dynamic_linear(x, w8, ws8, b))
    assert torch.equal(fp8_dynamic_linear(x, w8, ws8, unaligned, out=_poisoned((256, 64), torch.float16)), y)


# ---------------------------------------------------------------------------------------------
# Heuristic, empty inputs, errors
# ---------------------------------------------------------------------------------------------

def test_pick_config_regimes():
    decode = pick_config(1, 4096, 14336, "int8")
    assert decode.BLOCK_M == 16 and decode.SPLIT_K > 1 and decode.SWAP_AB and decode.TMA
    assert pick_config(1, 14336, 4096, "a8w4").BLOCK_M == 16
    prefill = pick_config(4096, 4096, 4096, "fp8")
    assert (prefill.BLOCK_M, prefill.BLOCK_N, prefill.BLOCK_K, prefill.SPLIT_K) == (128, 256, 128, 1)
    assert prefill.num_warps == 8 and prefill.num_stages in (3, 4)
    for m in (1, 16, 17, 64, 65, 256, 257, 4096):
        for kind in ("int8", "fp8", "a8w4"):
            cands = candidate_configs(m, 4096, 4096, kind)
            assert cands[0] == pick_config(m, 4096, 4096, kind) and len(cands) == len(set(cands)) >= 4
    with pytest.raises(ValueError, match="kind"):
        pick_config(1, 64, 64, "int4")


def _tile(cfg):
    return cfg.BLOCK_M, cfg.BLOCK_N, cfg.SPLIT_K, cfg.TMA


def test_large_m_rule():
    """Up to M = 64, A8W8 takes the TMA GEMM with swapped 16x64 tiles while they are at most two an SM, else
    64x64, split only for K > 8192. Past M = 64, the TMA GEMM with 128x256 tiles where they fill 0.75 of the
    132 SMs, else 64x128 tiles, or the pointer GEMM's K split where 64x128 tiles are few (< 0.75 of two an SM)
    and K > 8192;
    A8W4's int8 codes take the same rule without the wide tile, and split few tiles at any K."""
    assert _tile(pick_config(1024, 4096, 4096, "int8")) == (128, 256, 1, True)  # 128 tiles
    assert _tile(pick_config(512, 4096, 4096, "int8")) == (64, 128, 1, True)  # 64 wide tiles
    assert _tile(pick_config(256, 4096, 4096, "int8")) == (64, 128, 1, True)  # K = 4096: no split
    assert _tile(pick_config(256, 4096, 14336, "int8")) == (64, 128, 2, False)  # 128 narrow tiles, K = 14336
    assert _tile(pick_config(512, 4096, 14336, "int8")) == (64, 128, 1, True)  # 256 narrow tiles
    assert _tile(pick_config(320, 4096, 14336, "int8")) == (64, 128, 1, True)  # 160 tiles: no split to take
    assert _tile(pick_codes_config(4096, 4096, 4096, 128)) == (64, 128, 1, True)
    assert _tile(pick_codes_config(256, 4096, 14336, 128)) == (128, 64, 2, False)
    assert _tile(pick_codes_config(256, 4096, 4096, 128)) == (128, 64, 2, False)  # codes: few tiles split at any K
    assert pick_codes_config(4096, 4096, 4096, 256) == pick_config(4096, 4096, 4096, "a8w4")  # groups > 128
    assert _tile(pick_config(16, 4096, 4096, "int8")) == (16, 64, 1, True)  # swapped, K = 4096: no split
    assert _tile(pick_config(16, 4096, 14336, "int8")) == (16, 64, 4, True)  # K > 8192: the automatic split
    assert _tile(pick_config(64, 4096, 4096, "int8")) == (16, 64, 1, True)  # 256 swapped tiles
    assert _tile(pick_config(64, 8192, 8192, "int8")) == (64, 64, 1, True)  # 512 would be: 64x64
    assert pick_config(64, 4096, 4096, "int8").SWAP_AB and not pick_config(64, 8192, 8192, "int8").SWAP_AB
    assert _tile(pick_config(16, 4096, 4096, "a8w4"))[3] is False  # A8W4 words: pointer tiles
    cands = candidate_configs(1024, 4096, 4096, "int8")
    assert all(c.SPLIT_K == 1 for c in cands if c.TMA) and any(not c.TMA for c in cands)


def test_empty_batch():
    _, w, _ = _data(1, K, N, torch.float16, False)
    wq, ws = quantize_rowwise_int8(w)
    y = int8_dynamic_linear(torch.empty(0, K, dtype=torch.float16, device=DEVICE), wq, ws)
    assert y.shape == (0, N)


def test_errors():
    x, w, b = _data(2, K, N, torch.float16, True)
    wq, ws = quantize_rowwise_int8(w)
    w8, ws8 = quantize_rowwise_fp8(w)
    qw = quantize_weight(w.half(), bits=4, group_size=64, symmetric=True)
    with pytest.raises(TypeError, match="x dtype"):
        int8_dynamic_linear(x.float(), wq, ws, b)
    with pytest.raises(TypeError, match="weight_q must be a 2-D torch.int8"):
        int8_dynamic_linear(x, w8, ws8, b)
    with pytest.raises(TypeError, match="weight_q must be a 2-D torch.float8_e4m3fn"):
        fp8_dynamic_linear(x, wq, ws, b)
    with pytest.raises(ValueError, match="weight_q has K=128 columns but the activations have K=256"):
        int8_dynamic_linear(x, wq[:, :128], ws, b)
    with pytest.raises(ValueError, match="weight_scale must be a float32"):
        int8_dynamic_linear(x, wq, ws.half(), b)
    with pytest.raises(ValueError, match="weight_scale must be a float32"):
        int8_dynamic_linear(x, wq, ws[:10], b)
    with pytest.raises(ValueError, match="bias must have shape"):
        int8_dynamic_linear(x, wq, ws, b[:10])
    with pytest.raises(TypeError, match="bias must be a floating-point"):
        int8_dynamic_linear(x, wq, ws, b.to(torch.int32))
    with pytest.raises(ValueError, match="must be a multiple of 16"):
        int8_dynamic_linear(x[:, :40], wq[:, :40], ws)
    with pytest.raises(ValueError, match="out must be"):
        int8_dynamic_linear(x, wq, ws, b, out=torch.empty(2, N + 1, dtype=torch.float16, device=DEVICE))
    with pytest.raises(ValueError, match="BLOCK_K"):
        DynamicGemmConfig(16, 64, 16)
    with pytest.raises(ValueError, match="SPLIT_K"):
        DynamicGemmConfig(16, 64, 64, 0)
    with pytest.raises(ValueError, match="x_scale must be"):
        dynamic_gemm(wq[:2], torch.ones(3, device=DEVICE), wq, ws, None, torch.float16)
    with pytest.raises(TypeError, match="out_dtype"):
        dynamic_gemm(wq[:2], torch.ones(2, device=DEVICE), wq, ws, None, torch.int32)
    # A8W4
    with pytest.raises(TypeError, match="qdata must be a 2-D int32"):
        a8w4_dynamic_linear(x, qw.qdata.float(), qw.scale, b, 64)
    with pytest.raises(ValueError, match="group_size=48"):
        a8w4_dynamic_linear(x, qw.qdata, qw.scale, b, 48)
    with pytest.raises(ValueError, match="scale must be"):
        a8w4_dynamic_linear(x, qw.qdata, qw.scale, b, 128)
    with pytest.raises(ValueError, match=r"qdata has 32 word rows \(K=256\) but the activations have K=128"):
        a8w4_dynamic_linear(x[:, :128], qw.qdata, qw.scale, b, 64)
    with pytest.raises(TypeError, match="xq must be a 2-D torch.int8"):
        a8w4_gemm(w8[:2], ws8[:2], qw.qdata, qw.scale, None, 64, torch.float16)


@cuda_only
def test_device_mismatch():
    x, w, b = _data(2, K, N, torch.float16, True)
    wq, ws = quantize_rowwise_int8(w)
    with pytest.raises(ValueError, match="weight_q is on cpu"):
        int8_dynamic_linear(x, wq.cpu(), ws, b)
    with pytest.raises(ValueError, match="bias is on cpu"):
        int8_dynamic_linear(x, wq, ws, b.cpu())
    with pytest.raises(ValueError, match="x is on cpu"):
        int8_dynamic_linear(x.cpu(), wq.cpu(), ws.cpu(), b.cpu())


@pytest.mark.parametrize("kind,m", [("int8", 2), ("int8", 24), ("a8w4", 3), ("a8w4", 40)])
def test_launch_plans_replay_the_unplanned_path(kind, m):
    """A linear's first call of a shape plans it (dynamic_gemm._PLANS); a later call with new values
    replays the plan and gives the same bits as the unplanned path (``out=`` skips the plans)."""
    from torchao_gemlite.kernels import dynamic_gemm

    x, w, b = _data(m, 256, 72, torch.float16, True, seed=3)
    if kind == "int8":
        wq, ws = quantize_rowwise_int8(w)
        linear = lambda t, **kw: int8_dynamic_linear(t, wq, ws.reshape(-1), b, **kw)  # noqa: E731
    else:
        qw = quantize_weight(w.half(), bits=4, group_size=64, symmetric=True)
        linear = lambda t, **kw: a8w4_dynamic_linear(t, qw.qdata, qw.scale, b, 64, **kw)  # noqa: E731
    dynamic_gemm._PLANS.clear()
    linear(x)
    x_new = torch.randn_like(x).view(1, m, 256)  # 3-D: the plan flattens and restores the leading axes
    y = linear(x_new)
    assert len(dynamic_gemm._PLANS) == 2 and y.shape == (1, m, 72)
    assert torch.equal(y, linear(x_new, out=_poisoned((1, m, 72), torch.float16)))


def test_a_non_tensor_input_gets_a_clear_error():
    wq, ws = quantize_rowwise_int8(torch.randn(32, 64, device=DEVICE))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        int8_dynamic_linear([[1.0] * 64], wq, ws.reshape(-1))


def test_w4_codes_unpacks_words_to_k_major_int8():
    from torchao_gemlite.kernels.dequant import w4_codes

    qw = quantize_weight(torch.randn(72, 384, device=DEVICE).half(), bits=4, group_size=128, symmetric=True)
    words = qw.qdata
    ref = torch.stack([((words >> (4 * s)) & 0xF) - 8 for s in range(8)], dim=1).reshape(384, 72).t()
    assert torch.equal(w4_codes(words), ref.to(torch.int8))


@pytest.mark.parametrize("group", [64, None])
def test_a8w4_large_m_runs_on_int8_codes(group):
    """M >= A8W4_CODES_MIN_M without a config: the int8 GEMM on codes unpacked for the call (planned
    and unplanned), bit-identical to the packed-word path with the same tile (exact int32 group sums)."""
    from torchao_gemlite.kernels import dynamic_gemm
    from torchao_gemlite.kernels.dynamic_gemm import A8W4_CODES_MIN_M

    m = A8W4_CODES_MIN_M
    x, w, b = _data(m, 256, 40, torch.float16, True, seed=8)
    qw = quantize_weight(w.half(), bits=4, group_size=group, symmetric=True)
    g = group or 256
    dynamic_gemm._PLANS.clear()
    y = a8w4_dynamic_linear(x, qw.qdata, qw.scale, b, g)
    assert [plan.route for plan in dynamic_gemm._PLANS.values()] == ["codes"]
    _check_codes(y, _ref_on_codes(x, "a8w4", qw=qw, bias=b), "a8w4", torch.float16)
    words = a8w4_dynamic_linear(x, qw.qdata, qw.scale, b, g, pick_config(m, 40, 256, "a8w4"))
    assert torch.equal(y, words)
    assert torch.equal(a8w4_dynamic_linear(x, qw.qdata, qw.scale, b, g, out=_poisoned((m, 40), torch.float16)), y)
