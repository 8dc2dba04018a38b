"""Programmatic dependent launch (pdl.py): the switch, and on the GPU that the dynamic-activation launches it
makes dependent (the GEMM after the activation quantization, the split-K reduction after the GEMM) give
the same bits as ordinary launches, eagerly and replayed in a CUDA graph."""

import pytest
import torch

import torchao_gemlite.kernels.dynamic_gemm as dynamic_gemm
from torchao_gemlite.kernels import pdl
from torchao_gemlite.kernels.configs import clear_caches
from torchao_gemlite.kernels.dynamic_gemm import a8w4_dynamic_linear, fp8_dynamic_linear, int8_dynamic_linear
from torchao_gemlite.quant import quantize_rowwise_fp8, quantize_rowwise_int8, quantize_weight

CUDA = torch.cuda.is_available()
gpu_only = pytest.mark.skipif(not CUDA, reason="needs CUDA")


def test_dependent_meta_names_the_constexpr_and_the_launch_option():
    assert pdl.dependent_meta(True) == {"PDL": True, "launch_pdl": True}
    assert pdl.dependent_meta(False) == {"PDL": False}  # the interpreter never sees launch_pdl


def test_pdl_is_off_for_cpu_tensors_and_under_the_switch(monkeypatch):
    assert not pdl.pdl_for(torch.zeros(1))
    monkeypatch.setenv("TORCHAO_GEMLITE_PDL", "0")
    pdl.pdl_enabled.cache_clear()
    try:
        assert not pdl.pdl_enabled(0)
    finally:
        pdl.pdl_enabled.cache_clear()


def _capture(fn):
    """fn() eagerly, then captured in a CUDA graph and replayed: (eager output, replayed output)."""
    eager = fn().clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    return eager, out


def _with_and_without_pdl(monkeypatch, module, fn):
    results = []
    for on in (True, False):
        monkeypatch.setattr(module, "pdl_for", lambda t, on=on: on and pdl.pdl_for(t))
        clear_caches()
        results.append(_capture(fn))
    clear_caches()
    return results


@gpu_only
@pytest.mark.parametrize("m,k", [(1, 4096), (3, 4096), (16, 4096), (64, 4096), (16, 14336)])
def test_dynamic_linears_with_pdl_are_bit_identical(monkeypatch, m, k):
    """GEMV, A8W4 mma and (M = 16, 64) the TMA GEMM, with (K = 14336) its K split and reduction."""
    n = 1024
    gen = torch.Generator().manual_seed(100 + m)
    x = torch.randn(m, k, generator=gen).half().cuda()
    wq, ws = quantize_rowwise_int8(torch.randn(n, k, generator=gen).cuda())
    fq, fs = quantize_rowwise_fp8(torch.randn(n, k, generator=gen).cuda())
    q4 = quantize_weight(torch.randn(n, k, generator=gen).half().cuda(), 4, 128, True)
    bias = torch.randn(n, generator=gen).half().cuda()
    for fn in (lambda: int8_dynamic_linear(x, wq, ws, bias), lambda: fp8_dynamic_linear(x, fq, fs, bias),
               lambda: a8w4_dynamic_linear(x, q4.qdata, q4.scale, bias, 128)):
        (on_eager, on_graph), (off_eager, off_graph) = _with_and_without_pdl(monkeypatch, dynamic_gemm, fn)
        assert not torch.isnan(on_graph).any()
        for y in (on_graph, off_eager, off_graph):
            assert torch.equal(y, on_eager)
