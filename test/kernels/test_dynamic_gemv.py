"""The CUDA-core decode kernel (dynamic_gemv.py) for A8W8: int8 (dp4a) and fp8 (e4m3 bytes to fp32).

Runs under Triton's interpreter on CPU (dp4a and the e4m3 conversion emulated) and on the GPU (the
PTX). Outputs are checked against a float64 reference built from the same activation codes: int8
sums are exact, so only the epilogue rounds; fp8 sums are fp32. fp8 codes come from the reference
quantizer (the interpreter casts fp32 -> fp8 wrongly, design.md section 3).
"""

import pytest
import torch

import torchao_gemlite.kernels.dynamic_gemm as dynamic_gemm
from torchao_gemlite.kernels.act_quant import quantize_per_token
from torchao_gemlite.kernels.dynamic_gemm import fp8_dynamic_linear, int8_dynamic_linear
from torchao_gemlite.kernels.dynamic_gemv import GEMV_MAX_M, GemvConfig, dynamic_gemv, gemv_config
from torchao_gemlite.quant import quantize_rowwise_fp8, quantize_rowwise_int8

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
    y = dynamic_gemv(xq, xs, wq, ws.reshape(-1), bias, out, n, k, config=config)
    _check(y, _reference(xq, xs, wq.double() * ws.double().reshape(-1, 1), bias), 2.0**-21)


@pytest.mark.parametrize("config", CONFIGS, ids=["bn32-bk128", "bn64-bk256-split3", "heuristic"])
@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_fp8_gemv_against_float64_on_the_same_codes(m, config):
    k, n = 640, 72
    x, w, bias = _inputs(m, k, n, seed=10 + m)
    wq, ws = quantize_rowwise_fp8(w)
    xq, xs = quantize_rowwise_fp8(x.float())
    out = torch.full((m, n), float("nan"), dtype=torch.float16, device=DEVICE)
    y = dynamic_gemv(xq, xs, wq, ws.reshape(-1), bias, out, n, k, config=config)
    _check(y, _reference(xq, xs, wq.double() * ws.double().reshape(-1, 1), bias), 2.0**-20)


def test_every_e4m3_code_converts_exactly():
    """Weight row n holds code n (NaN codes zeroed) at K = 0..3, x row r is 1.0 at K = r: y[r, n] is
    code n's value, for each byte position of a word, subnormals and negatives included."""
    codes = torch.arange(256, dtype=torch.int32)
    codes[(codes & 0x7F) == 0x7F] = 0
    k, n = 256, 256
    w_bytes = torch.zeros(n, k, dtype=torch.uint8)
    w_bytes[:, :4] = codes.to(torch.uint8)[:, None]
    wq = w_bytes.view(torch.float8_e4m3fn).to(DEVICE)
    xq = torch.zeros(4, k, dtype=torch.float32)
    xq[range(4), range(4)] = 1.0
    xq = xq.to(torch.float8_e4m3fn).to(DEVICE)
    ones_m, ones_n = torch.ones(4, device=DEVICE), torch.ones(n, device=DEVICE)
    out = torch.full((4, n), float("nan"), dtype=torch.float32, device=DEVICE)
    y = dynamic_gemv(xq, ones_m, wq, ones_n, None, out, n, k, GemvConfig(32, 128, 1))
    expect = w_bytes[:, 0].view(torch.float8_e4m3fn).float().to(DEVICE)
    torch.testing.assert_close(y, expect[None, :].expand(4, n), rtol=0, atol=0)


def test_strided_per_channel_scale():
    """A per-channel scale given as a strided view is read correctly (made contiguous first)."""
    x, w, bias = _inputs(1, 256, 40, seed=9)
    wq, ws = quantize_rowwise_int8(w)
    strided = torch.empty(40, 3, device=DEVICE)[:, 1]
    strided.copy_(ws.reshape(-1))
    xq, xs = quantize_per_token(x, torch.int8)
    for split in (1, 2):
        out = torch.full((1, 40), float("nan"), dtype=torch.float16, device=DEVICE)
        y = dynamic_gemv(xq, xs, wq, strided, bias, out, 40, 256, GemvConfig(32, 128, split))
        _check(y, _reference(xq, xs, wq.double() * ws.double().reshape(-1, 1), bias), 2.0**-21)


def test_split_k_is_deterministic():
    x, w, bias = _inputs(2, 1024, 40, seed=3)
    wq, ws = quantize_rowwise_int8(w)
    xq, xs = quantize_per_token(x, torch.int8)
    runs = [dynamic_gemv(xq, xs, wq, ws.reshape(-1), None, torch.empty(2, 40, dtype=torch.float16, device=DEVICE),
                         40, 1024, GemvConfig(32, 128, 4)) for _ in range(3)]
    assert all(torch.equal(runs[0], r) for r in runs[1:])


def _planned_route(call):
    """(route of the launch plan that ``call`` made, its result); the plan cache is emptied first."""
    dynamic_gemm._PLANS.clear()
    y = call()
    (plan,) = dynamic_gemm._PLANS.values()
    return plan.route, y


def test_linear_layers_route_decode_to_the_gemv():
    """A8W8 linears (int8, fp8) with M <= GEMV_MAX_M and no config run the GEMV; M above it or a weight that
    cannot be read as int32 words take the GEMM."""
    x, w, bias = _inputs(GEMV_MAX_M + 1, 256, 48, seed=5)
    wq, ws = quantize_rowwise_int8(w)
    assert _planned_route(lambda: int8_dynamic_linear(x[:1], wq, ws.reshape(-1), bias))[0] == "gemv"
    assert _planned_route(lambda: int8_dynamic_linear(x[:GEMV_MAX_M], wq, ws.reshape(-1), bias))[0] == "gemv"
    assert _planned_route(lambda: int8_dynamic_linear(x, wq, ws.reshape(-1), bias))[0] == "gemm"
    fq, fs = quantize_rowwise_fp8(w)  # fp8 too (routes only: the interpreter's fp8 activation codes are wrong)
    assert _planned_route(lambda: fp8_dynamic_linear(x[:GEMV_MAX_M], fq, fs.reshape(-1), bias))[0] == "gemv"
    assert _planned_route(lambda: fp8_dynamic_linear(x, fq, fs.reshape(-1), bias))[0] == "gemm"
    misaligned = torch.empty(48 * 256 + 1, dtype=torch.int8, device=DEVICE)[1:].view(48, 256)
    misaligned.copy_(wq)
    route, y = _planned_route(lambda: int8_dynamic_linear(x[:1], misaligned, ws.reshape(-1), bias))
    assert route == "gemm"
    torch.testing.assert_close(y, int8_dynamic_linear(x[:1], wq, ws.reshape(-1), bias), rtol=0, atol=0)


def test_heuristic_and_bad_config():
    splits = {(k, n): gemv_config(1, n, k).split_k for k, n in ((4096, 4096), (4096, 14336), (14336, 4096), (8192, 8192))}
    assert splits == {(4096, 4096): 1, (4096, 14336): 1, (14336, 4096): 1, (8192, 8192): 1}  # the H100 probe's winners
    x, w, _ = _inputs(1, 256, 40, seed=6)
    wq, ws = quantize_rowwise_int8(w)
    xq, xs = quantize_per_token(x, torch.int8)
    out = torch.empty(1, 40, dtype=torch.float16, device=DEVICE)
    with pytest.raises(ValueError, match="block_k=96"):
        dynamic_gemv(xq, xs, wq, ws.reshape(-1), None, out, 40, 256, GemvConfig(32, 96, 1))
