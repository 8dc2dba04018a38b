"""Dequantize a packed weight to a dense [K, N] tile-major matrix for large-M calls.

Prefill (large M) is compute-bound: there the dispatcher may dequantize once per call
(reads K * N * BITS / 8 bytes, writes K * N * 2) and hand the dense matrix to cuBLAS,
whose fp16/bf16 GEMM is the speed of light for the product itself.
Grid: (cdiv(K / E, BLOCK_KW), cdiv(N, BLOCK_N)); each program unpacks a
[BLOCK_KW, BLOCK_N] tile of words into E row-slices of the output (rows j*E + s).
"""

import torch
import triton
import triton.language as tl

from .launch import cdiv
from .unpack import group_mul_add, slot_as_float


@triton.jit
def dequant_kernel(w_ptr, scale_ptr, zero_ptr, out_ptr, N, K, group_size, stride_wk, stride_sg,
                   BITS: tl.constexpr, SYMMETRIC: tl.constexpr, SYM_ZERO: tl.constexpr,
                   BLOCK_KW: tl.constexpr, BLOCK_N: tl.constexpr):
    E: tl.constexpr = 32 // BITS
    o_kw = tl.program_id(0) * BLOCK_KW + tl.arange(0, BLOCK_KW)
    o_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = (o_kw[:, None] < K // E) & (o_n[None, :] < N)
    b_words = tl.load(w_ptr + o_kw[:, None] * stride_wk + o_n[None, :], mask=mask, other=0)
    mul, add = group_mul_add(scale_ptr, zero_ptr, (o_kw[:, None] * E // group_size) * stride_sg + o_n[None, :],
                             mask, SYMMETRIC, SYM_ZERO, BITS)
    for s in tl.static_range(E):
        b_w = slot_as_float(b_words, s, BITS) * mul + add
        p_out = out_ptr + (o_kw[:, None] * E + s) * N + o_n[None, :]
        tl.store(p_out, b_w.to(out_ptr.dtype.element_ty), mask=mask)


def dequantize_packed(qdata, scale, zero, bits: int, group_size: int, symmetric: bool, sym_zero: float,
                      dtype: torch.dtype) -> torch.Tensor:
    """The [K, N] dense weight (W^T) in ``dtype``."""
    kw, n = qdata.shape
    k = kw * (32 // bits)
    out = torch.empty((k, n), dtype=dtype, device=qdata.device)
    block_kw, block_n = 16, 128
    dequant_kernel[(cdiv(kw, block_kw), cdiv(n, block_n))](
        qdata, scale, zero if zero is not None else scale, out, n, k, group_size, qdata.stride(0), scale.stride(0),
        BITS=bits, SYMMETRIC=symmetric, SYM_ZERO=sym_zero, BLOCK_KW=block_kw, BLOCK_N=block_n, num_warps=4,
    )
    return out
