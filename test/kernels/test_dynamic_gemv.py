"""The dp4a decode kernel (dynamic_gemv.py) for int8 activations: A8W8 int8 and A8W4.

Runs under Triton's interpreter on CPU (dp4a and the byte permutation emulated) and on the GPU
(the PTX). Integer sums are exact, so outputs are checked against a float64 reference built
from the same activation codes: only the epilogue (and A8W4's fp32 group scaling) rounds.
"""

import dataclasses

import pytest
import torch

import torchao_gemlite.kernels.dynamic_gemm as dynamic_gemm
from torchao_gemlite.kernels.act_quant import quantize_per_token
from torchao_gemlite.kernels.dynamic_gemm import a8w4_dynamic_linear, int8_dynamic_linear
from torchao_gemlite.kernels.dynamic_gemv import GEMV_MAX_M, GemvConfig, dynamic_gemv, gemv_config
from torchao_gemlite.quant import dequantize_weight, quantize_rowwise_int8, quantize_weight

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"


def _inputs(m, k, n, seed):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(m, k, generator=gen) * 3).half().to(DEVICE)
    w = torch.randn(n, k, generator=gen).to(DEVICE)
    bias = torch.randn(n, generator=gen).half().to(DEVICE)
    return x, w, bias


def _reference(xq, xs, w_dequant, bias):
    y = (xq.double() @ w_dequant.double().t()) * xs.double().reshape(-1, 1)
    mass = (xq.double().abs() @ w_dequant.double().abs().t()) * xs.double().reshape(-1, 1)
    return y + bias.double(), mass + bias.double().abs()


def _check(y, ref_mass, acc_rel):
    ref, mass = ref_mass
    assert not torch.isnan(y).any(), "unwritten (NaN-poisoned) outputs remain"
    bound = torch.finfo(y.dtype).eps * ref.abs() + acc_rel * mass + 1e-30
    assert ((y.double() - ref).abs() <= bound).all()


CONFIGS = [GemvConfig(32, 128, 1), GemvConfig(64, 256, 3, num_warps=8, num_stages=2), None]


@pytest.mark.parametrize("config", CONFIGS, ids=["bn32-bk128", "bn64-bk256-split3", "heuristic"])
@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_a8w8_gemv_exact_up_to_the_epilogue(m, config):
    k, n = 640, 72  # K not a multiple of 256: a ragged last step; N not a multiple of the tile
    x, w, bias = _inputs(m, k, n, seed=m)
    wq, ws = quantize_rowwise_int8(w)
    xq, xs = quantize_per_token(x, torch.int8)
    out = torch.full((m, n), float("nan"), dtype=torch.float16, device=DEVICE)
    y = dynamic_gemv(xq, xs, wq, ws.reshape(-1), 0, bias, out, n, k, w4=False, group_k=0, config=config)
    _check(y, _reference(xq, xs, wq.double() * ws.double().reshape(-1, 1), bias), 2.0**-21)


@pytest.mark.parametrize("config", CONFIGS, ids=["bn32-bk128", "bn64-bk256-split3", "heuristic"])
@pytest.mark.parametrize("group", [32, 128, 256, None])
@pytest.mark.parametrize("m", [1, 3])
def test_a8w4_gemv_groups_splits_and_ragged_k(m, group, config):
    k, n = 768, 72  # three 256-code steps; 768 = 6 groups of 128
    x, w, bias = _inputs(m, k, n, seed=group or 7)
    qw = quantize_weight(w.half(), bits=4, group_size=group, symmetric=True)
    xq, xs = quantize_per_token(x, torch.int8)
    out = torch.full((m, n), float("nan"), dtype=torch.float16, device=DEVICE)
    group_k = 0 if group is None else group
    if config is not None and group_k and group_k % config.block_k and config.block_k % group_k:
        pytest.skip("block_k and group size do not nest")
    y = dynamic_gemv(xq, xs, qw.qdata, qw.scale, qw.scale.stride(0), bias, out, n, k, w4=True, group_k=group_k,
                     config=config)
    _check(y, _reference(xq, xs, dequantize_weight(qw, torch.float64), bias), 2.0**-20)


@pytest.mark.parametrize("scale_dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("n", [72, 45])
def test_a8w4_gemv_scale_dtypes_and_odd_n(scale_dtype, n):
    """Group scales of every accepted dtype: 16-bit ones are read as int32 pairs (even N, even row
    stride), otherwise converted to fp32; strided and column-major views are made contiguous first."""
    k = 512
    x, w, bias = _inputs(2, k, n, seed=n)
    qw = quantize_weight(w.half(), bits=4, group_size=64, symmetric=True)
    scale = qw.scale.to(scale_dtype)
    strided = torch.empty(k // 64, n + 3, dtype=scale_dtype, device=DEVICE)[:, 1:n + 1]
    strided.copy_(scale)
    column_major = torch.empty(n, k // 64, dtype=scale_dtype, device=DEVICE).t()  # stride 1 along K, not N
    column_major.copy_(scale)
    xq, xs = quantize_per_token(x, torch.int8)
    ref = _reference(xq, xs, dequantize_weight(dataclasses.replace(qw, scale=scale), torch.float64), bias)
    for s in (scale, strided, column_major):
        out = torch.full((2, n), float("nan"), dtype=torch.float16, device=DEVICE)
        _check(dynamic_gemv(xq, xs, qw.qdata, s, s.stride(0), bias, out, n, k, True, 64, GemvConfig(32, 128, 2)),
               ref, 2.0**-20)


def test_strided_per_channel_scale():
    """A per-channel scale given as a strided view is read correctly (made contiguous first)."""
    x, w, bias = _inputs(1, 256, 40, seed=9)
    wq, ws = quantize_rowwise_int8(w)
    strided = torch.empty(40, 3, device=DEVICE)[:, 1]
    strided.copy_(ws.reshape(-1))
    xq, xs = quantize_per_token(x, torch.int8)
    for split in (1, 2):
        out = torch.full((1, 40), float("nan"), dtype=torch.float16, device=DEVICE)
        y = dynamic_gemv(xq, xs, wq, strided, 0, bias, out, 40, 256, False, 0, GemvConfig(32, 128, split))
        _check(y, _reference(xq, xs, wq.double() * ws.double().reshape(-1, 1), bias), 2.0**-21)


def test_split_k_is_deterministic():
    x, w, bias = _inputs(2, 1024, 40, seed=3)
    qw = quantize_weight(w.half(), bits=4, group_size=128, symmetric=True)
    xq, xs = quantize_per_token(x, torch.int8)
    runs = [dynamic_gemv(xq, xs, qw.qdata, qw.scale, qw.scale.stride(0), None,
                         torch.empty(2, 40, dtype=torch.float16, device=DEVICE), 40, 1024, True, 128,
                         GemvConfig(32, 128, 4)) for _ in range(3)]
    assert all(torch.equal(runs[0], r) for r in runs[1:])


def test_linear_layers_route_decode_to_the_gemv(monkeypatch):
    """int8 and A8W4 linears with M <= GEMV_MAX_M and no config run the GEMV; M above it, an
    explicit config, or an int8 weight that cannot be read as int32 words take the GEMM."""
    calls = []
    real = dynamic_gemm.dynamic_gemv
    monkeypatch.setattr(dynamic_gemm, "dynamic_gemv", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    x, w, bias = _inputs(GEMV_MAX_M + 1, 256, 48, seed=5)
    wq, ws = quantize_rowwise_int8(w)
    qw = quantize_weight(w.half(), bits=4, group_size=64, symmetric=True)
    int8_dynamic_linear(x[:1], wq, ws.reshape(-1), bias)
    a8w4_dynamic_linear(x[:GEMV_MAX_M], qw.qdata, qw.scale, bias, 64)
    assert len(calls) == 2
    int8_dynamic_linear(x, wq, ws.reshape(-1), bias)
    misaligned = torch.empty(48 * 256 + 1, dtype=torch.int8, device=DEVICE)[1:].view(48, 256)
    misaligned.copy_(wq)
    y = int8_dynamic_linear(x[:1], misaligned, ws.reshape(-1), bias)
    assert len(calls) == 2
    torch.testing.assert_close(y, int8_dynamic_linear(x[:1], wq, ws.reshape(-1), bias), rtol=0, atol=0)


def test_heuristic_and_bad_config():
    splits = {(k, n): (gemv_config(1, n, k, False, 0).split_k, gemv_config(1, n, k, True, 128).split_k,
                       gemv_config(4, n, k, True, 128).split_k)
              for k, n in ((4096, 4096), (4096, 14336), (14336, 4096), (8192, 8192))}
    assert splits == {(4096, 4096): (1, 4, 4), (4096, 14336): (1, 2, 2), (14336, 4096): (1, 4, 4),
                      (8192, 8192): (1, 2, 2)}  # the H100 probe's winners
    x, w, _ = _inputs(1, 256, 40, seed=6)
    qw = quantize_weight(w.half(), bits=4, group_size=64, symmetric=True)
    xq, xs = quantize_per_token(x, torch.int8)
    out = torch.empty(1, 40, dtype=torch.float16, device=DEVICE)
    with pytest.raises(ValueError, match="block_k=96"):
        dynamic_gemv(xq, xs, qw.qdata, qw.scale, qw.scale.stride(0), None, out, 40, 256, True, 64,
                     GemvConfig(32, 96, 1))
