"""Epilogue and deterministic split-K reduction shared by the dynamic-activation kernels
(dynamic_gemm.py, dynamic_tma_gemm.py, dynamic_gemv.py, dynamic_mma_gemv.py).

A split-K program writes its raw partial tile (int32 when the whole accumulation is integer,
else fp32) to a workspace [SPLIT_K, M, N]; ``reduce_splits`` sums the partials in the fixed
order 0..SPLIT_K-1 (no atomics: bit-identical from run to run) and applies the epilogue.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .launch import FastLauncher, KernelCall, cdiv, next_power_of_2
from .pdl import dependent_meta, wait_for_prior


@triton.jit
def zero_accumulator(BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, SWAP_AB: tl.constexpr, FLOAT: tl.constexpr):
    """A GEMM program's accumulator: [BLOCK_M, BLOCK_N], or [BLOCK_N, BLOCK_M] with swapped operands; fp32
    (fp8 products, sums of scaled A8W4 groups) or int32 (int8 products: exact)."""
    if SWAP_AB:
        shape: tl.constexpr = (BLOCK_N, BLOCK_M)
    else:
        shape: tl.constexpr = (BLOCK_M, BLOCK_N)
    if FLOAT:  # one return statement: Triton's GPU compiler rejects returns of two dtypes (the interpreter does not)
        acc = tl.zeros(shape, dtype=tl.float32)
    else:
        acc = tl.zeros(shape, dtype=tl.int32)
    return acc


@triton.jit
def epilogue(acc, b_sa, o_m, o_n, M, N, b_scale_ptr, stride_bs_n, bias_ptr, c_ptr, stride_cm, stride_cn,
             B_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr):
    """acc [BM, BN] (int32 or fp32), x scales [BM] -> acc * x_scale[m] (* w_scale[n]) (+ bias[n]), cast, stored."""
    m_m = o_m < M
    m_n = o_n < N
    b_y = acc.to(tl.float32) * b_sa[:, None]
    if B_SCALE:
        b_sb = tl.load(b_scale_ptr + o_n * stride_bs_n, mask=m_n, other=0.0).to(tl.float32)
        b_y = b_y * b_sb[None, :]
    if HAS_BIAS:
        b_bias = tl.load(bias_ptr + o_n, mask=m_n, other=0.0).to(tl.float32)
        b_y = b_y + b_bias[None, :]
    p_c = c_ptr + o_m.to(tl.int64)[:, None] * stride_cm + o_n[None, :] * stride_cn
    tl.store(p_c, b_y.to(c_ptr.dtype.element_ty), mask=m_m[:, None] & m_n[None, :])


@triton.jit
def _splitk_reduce_kernel(
    ws_ptr, a_scale_ptr, b_scale_ptr, bias_ptr, c_ptr,
    M, N, N_SPLITS, stride_bs_n, stride_cm, stride_cn,
    B_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    PDL: tl.constexpr = False,
):
    """Sums the [N_SPLITS, M, N] partials in the fixed order 0..N_SPLITS-1, then the epilogue."""
    wait_for_prior(PDL)  # the partials' kernel (pdl.py)
    o_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    o_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    m_mn = (o_m < M)[:, None] & (o_n < N)[None, :]
    p_ws = ws_ptr + o_m.to(tl.int64)[:, None] * N + o_n[None, :]
    acc = tl.load(p_ws, mask=m_mn, other=0)
    for s in range(1, N_SPLITS):
        acc += tl.load(p_ws + s * M * N, mask=m_mn, other=0)
    b_sa = tl.load(a_scale_ptr + o_m, mask=o_m < M, other=0.0)
    epilogue(acc, b_sa, o_m, o_n, M, N, b_scale_ptr, stride_bs_n, bias_ptr, c_ptr, stride_cm, stride_cn,
             B_SCALE, HAS_BIAS)


_REDUCE = FastLauncher(_splitk_reduce_kernel)


def reduce_splits_call(splits: int, m: int, n: int, stride_bs_n: int, out_strides: tuple, has_bias: bool,
                       apply_b_scale: bool, pdl: bool = False) -> KernelCall:
    """The reduction launch; run it with (ws, x_scale, b_scale, bias or x_scale, out). ``pdl``: right after
    the partials' kernel, launched as its dependent (pdl.py)."""
    rbm = min(32, next_power_of_2(m))
    return KernelCall(_REDUCE, (cdiv(m, rbm), cdiv(n, 128)), (m, n, splits, stride_bs_n, *out_strides),
                      dict(B_SCALE=apply_b_scale, HAS_BIAS=has_bias, BLOCK_M=rbm, BLOCK_N=128, num_warps=4,
                           **dependent_meta(pdl)))


def reduce_splits(ws: torch.Tensor, x_scale: torch.Tensor, b_scale: torch.Tensor, stride_bs_n: int, bias, out: torch.Tensor,
                  apply_b_scale: bool) -> None:
    """out = sum_s ws[s] * x_scale[m] (* b_scale[n] when ``apply_b_scale``) (+ bias[n])."""
    splits, m, n = ws.shape
    reduce_splits_call(splits, m, n, stride_bs_n, out.stride(), bias is not None, apply_b_scale)(
        (ws, x_scale, b_scale, bias if bias is not None else x_scale, out))
