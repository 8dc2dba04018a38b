"""The A8W4 int8 tensor-core decode kernel (dynamic_mma_gemv.py): M <= 16, and 16-row M tiles past 16.

Runs under Triton's interpreter on CPU (mma.sync m16n8k32 and the byte permutation emulated) and on
the GPU (the PTX). Each group's sum is exact in int32, so outputs are checked against a float64
reference built from the same activation codes: only the fp32 group scaling and the epilogue round.
"""

import dataclasses

import pytest
import torch

import torchao_gemlite.kernels.dynamic_gemm as dynamic_gemm
from torchao_gemlite.kernels.act_quant import quantize_per_token
from torchao_gemlite.kernels.configs import LaunchConfig
from torchao_gemlite.kernels.dynamic_gemm import a8w4_dynamic_linear
from torchao_gemlite.kernels.dynamic_mma_gemv import dynamic_mma_gemv
from torchao_gemlite.quant import dequantize_weight, quantize_weight

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"


def _inputs(m, k, n, seed):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(m, k, generator=gen) * 3).half().to(DEVICE)
    w = torch.randn(n, k, generator=gen).to(DEVICE)
    bias = torch.randn(n, generator=gen).half().to(DEVICE)
    return x, w, bias


def _check(y, xq, xs, qw, bias):
    """Within fp16 output rounding plus 2^-20 of the sum of |products| (the fp32 group scaling)."""
    w = dequantize_weight(qw, torch.float64)
    ref = (xq.double() @ w.t()) * xs.double().reshape(-1, 1) + bias.double()
    mass = (xq.double().abs() @ w.abs().t()) * xs.double().reshape(-1, 1) + bias.double().abs()
    assert not torch.isnan(y).any(), "unwritten (NaN-poisoned) outputs remain"
    assert ((y.double() - ref).abs() <= torch.finfo(y.dtype).eps * ref.abs() + 2.0**-20 * mass).all()


def _run(xq, xs, qw, scale, bias, n, k, group_k, config):
    out = torch.full((xq.shape[0], n), float("nan"), dtype=torch.float16, device=DEVICE)
    return dynamic_mma_gemv(xq, xs, qw.qdata, scale, scale.stride(0), bias, out, n, k, group_k, config)


# (block_n, num_warps, block_k, split_k): one warp; warps along N and K with split-K; a split whose
# last warps' steps fall past K; the heuristic
LAUNCHES = [(32, 1, 128, 1), (64, 4, 128, 2), (32, 2, 256, 3), None]


if CUDA:
    CASES = [(m, g, launch) for m in (1, 3, 8, 9, 16, 17, 40) for g in (32, 128, 256, None) for launch in LAUNCHES]
else:  # the interpreter: every group size and launch once, M = 1, 9 (two batch tiles), 24 (two M tiles) in turn
    CASES = [((1, 9, 24)[(i + j) % 3], g, launch) for i, g in enumerate((32, 128, 256, None))
             for j, launch in enumerate(LAUNCHES)]


@pytest.mark.parametrize("m,group,launch", CASES)
def test_a8w4_mma_groups_splits_and_ragged_shapes(m, group, launch):
    k, n = 768 if group != 256 else 1024, 72  # 768: a ragged last 256-code step; N not a multiple of 64
    if not CUDA:
        k = 640 if group != 256 else 512  # 640: a ragged last step of 128 and of 256
    if launch is not None and group and max(launch[2], group) % group:
        pytest.skip("block_k is not a multiple of the group size")
    config = None if launch is None else LaunchConfig("mma", 16, launch[0], max(launch[2], group or 0), launch[3],
                                                      num_warps=launch[1])
    x, w, bias = _inputs(m, k, n, seed=(group or 7) + m)
    qw = quantize_weight(w.half(), bits=4, group_size=group, symmetric=True)
    xq, xs = quantize_per_token(x, torch.int8)
    _check(_run(xq, xs, qw, qw.scale, bias, n, k, 0 if group is None else group, config), xq, xs, qw, bias)


@pytest.mark.parametrize("scale_dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("n", [72, 40])
def test_a8w4_mma_scale_dtypes_and_layouts(scale_dtype, n):
    """Group scales of every accepted dtype, and strided, misaligned or column-major scale views (made
    contiguous first: the kernel reads 4 columns of scale[row * stride + n] with one vector load)."""
    k = 256
    x, w, bias = _inputs(2, k, n, seed=n)
    qw = quantize_weight(w.half(), bits=4, group_size=64, symmetric=True)
    scale = qw.scale.to(scale_dtype)
    strided = torch.empty(k // 64, n + 3, dtype=scale_dtype, device=DEVICE)[:, 1:n + 1]
    strided.copy_(scale)
    column_major = torch.empty(n, k // 64, dtype=scale_dtype, device=DEVICE).t()
    column_major.copy_(scale)
    xq, xs = quantize_per_token(x, torch.int8)
    qw = dataclasses.replace(qw, scale=scale)
    for s in (scale, strided, column_major):
        _check(_run(xq, xs, qw, s, bias, n, k, 64, LaunchConfig("mma", 16, 64, 128, 1, num_warps=4)), xq, xs, qw,
               bias)


@pytest.mark.parametrize("stages", [1, 2])
def test_a8w4_mma_load_schedules_agree(stages):
    """num_stages = 1 (a step's loads at its top) and 2 (and the next step's): the same sums, bit for bit;
    ragged K (the last steps read x and scales past K as 0), a split, two batch tiles."""
    x, w, bias = _inputs(11, 640, 72, seed=9)
    qw = quantize_weight(w.half(), bits=4, group_size=64, symmetric=True)
    xq, xs = quantize_per_token(x, torch.int8)
    for m in (1, 11):
        runs = [_run(xq[:m], xs[:m], qw, qw.scale, bias, 72, 640, 64,
                     LaunchConfig("mma", 16, 32, 128, 2, num_warps=2, num_stages=st)) for st in (stages, 3 - stages)]
        _check(runs[0], xq[:m], xs[:m], qw, bias)
        assert torch.equal(runs[0], runs[1])


def test_a8w4_weights_the_vector_loads_cannot_read_take_the_int8_gemm():
    """N not a multiple of 4 (or a misaligned weight view): no mma route; the int8 GEMM gives the result, and
    the kernel called directly says what it needs."""
    x, w, bias = _inputs(3, 256, 45, seed=4)
    qw = quantize_weight(w.half(), bits=4, group_size=64, symmetric=True)
    dynamic_gemm._PLANS.clear()
    y = a8w4_dynamic_linear(x, qw.qdata, qw.scale, bias, 64)
    assert [plan.route for plan in dynamic_gemm._PLANS.values()] == ["gemm"]
    xq, xs = quantize_per_token(x, torch.int8)
    _check(y, xq, xs, qw, bias)
    with pytest.raises(ValueError, match="N and its row stride multiples of 4"):
        _run(xq, xs, qw, qw.scale, bias, 45, 256, 64, None)


def test_a8w4_mma_is_deterministic():
    x, w, _ = _inputs(5, 512, 40, seed=3)
    qw = quantize_weight(w.half(), bits=4, group_size=128, symmetric=True)
    xq, xs = quantize_per_token(x, torch.int8)
    cfg = LaunchConfig("mma", 16, 32, 128, 2, num_warps=2)
    runs = [_run(xq, xs, qw, qw.scale, None, 40, 512, 128, cfg) for _ in range(3)]
    assert all(torch.equal(runs[0], r) for r in runs[1:])


def test_a8w4_linears_route_m_up_to_16_to_the_mma_kernel():
    """No config: M = 1..16 run the mma kernel (the launch plan's route), M = 17 the int8 GEMM."""
    x, w, bias = _inputs(17, 256, 48, seed=5)
    qw = quantize_weight(w.half(), bits=4, group_size=64, symmetric=True)
    for m, route in ((1, "mma"), (16, "mma"), (17, "gemm")):
        dynamic_gemm._PLANS.clear()
        y = a8w4_dynamic_linear(x[:m], qw.qdata, qw.scale, bias, 64)
        assert [plan.route for plan in dynamic_gemm._PLANS.values()] == [route]
        xq, xs = quantize_per_token(x[:m], torch.int8)
        _check(y, xq, xs, qw, bias)


def test_a8w4_mma_errors_name_the_problem():
    x, w, _ = _inputs(129, 256, 64, seed=1)
    qw = quantize_weight(w.half(), bits=4, group_size=64, symmetric=True)
    xq, xs = quantize_per_token(x, torch.int8)
    with pytest.raises(ValueError, match="M < 129"):
        _run(xq, xs, qw, qw.scale, None, 64, 256, 64, None)
    with pytest.raises(ValueError, match="block_k a multiple of 32 and of the group size 64"):
        _run(xq[:2], xs[:2], qw, qw.scale, None, 64, 256, 64, LaunchConfig("mma", 16, 32, 32, 1, num_warps=2))
    with pytest.raises(ValueError, match="takes an \"mma\" config, got kernel='mma_batch'"):
        _run(xq[:2], xs[:2], qw, qw.scale, None, 64, 256, 64, LaunchConfig("mma_batch", 32, 32, 64, 1, num_warps=2))
