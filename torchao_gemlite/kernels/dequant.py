"""Dense copies of packed weights for large-M calls: dequantize to a [K, N] matrix for cuBLAS
(weight-only formats), or unpack A8W4's codes to an int8 [N, K] operand for the int8 GEMM.

Prefill (large M) is compute-bound: there the dispatcher may dequantize once per call
(reads K * N * BITS / 8 bytes, writes K * N * 2) and hand the dense matrix to cuBLAS,
whose fp16/bf16 GEMM is the speed of light for the product itself.
Grid: (cdiv(K / E, BLOCK_KW), cdiv(N, BLOCK_N)); each program unpacks a
[BLOCK_KW, BLOCK_N] tile of words into E row-slices of the output (rows j*E + s).
"""

import torch
import triton
import triton.language as tl

from .launch import FastLauncher, KernelCall, cdiv
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
                      dtype: torch.dtype, out: torch.Tensor | None = None) -> torch.Tensor:
    """The [K, N] dense weight (W^T) in ``dtype``, into ``out`` (contiguous [K, N]) if given. ``qdata``,
    ``scale`` and ``zero`` may be column slices (unit stride along N)."""
    kw, n = qdata.shape
    k = kw * (32 // bits)
    if out is None:
        out = torch.empty((k, n), dtype=dtype, device=qdata.device)
    block_kw, block_n = 16, 128
    dequant_kernel[(cdiv(kw, block_kw), cdiv(n, block_n))](
        qdata, scale, zero if zero is not None else scale, out, n, k, group_size, qdata.stride(0), scale.stride(0),
        BITS=bits, SYMMETRIC=symmetric, SYM_ZERO=sym_zero, BLOCK_KW=block_kw, BLOCK_N=block_n, num_warps=4,
    )
    return out


@triton.jit
def w4_codes_kernel(w_ptr, out_ptr, N, K, stride_wk, BLOCK_KW: tl.constexpr, BLOCK_N: tl.constexpr):
    """Packed symmetric 4-bit words [K/8, N] (code k = 8j + s in bits 4s..4s+3 of word j) -> int8
    codes q - 8 as [N, K], K contiguous: the operand order of the int8 tensor cores.
    Grid: (cdiv(K / 8, BLOCK_KW), cdiv(N, BLOCK_N)); reads K * N / 2 bytes, writes K * N."""
    o_kw = tl.program_id(0) * BLOCK_KW + tl.arange(0, BLOCK_KW)
    o_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    b_w = tl.load(w_ptr + o_kw[:, None] * stride_wk + o_n[None, :], mask=(o_kw < K // 8)[:, None] & (o_n < N)[None, :],
                  other=0)
    shifts = tl.arange(0, 8) * 4
    b_q = (((b_w[:, None, :] >> shifts[None, :, None]) & 0xF) - 8).to(tl.int8)  # [BKW, 8, BN]
    b_q = tl.trans(tl.reshape(b_q, (BLOCK_KW * 8, BLOCK_N)))  # [BN, BK], column 8j + s
    o_k = tl.program_id(0) * BLOCK_KW * 8 + tl.arange(0, BLOCK_KW * 8)
    tl.store(out_ptr + o_n.to(tl.int64)[:, None] * K + o_k[None, :], b_q, mask=(o_n < N)[:, None] & (o_k < K)[None, :])


def w4_codes_call(n: int, k: int, stride_wk: int) -> KernelCall:
    """The launch of w4_codes_kernel; run it with (words [K/8, N], out int8 [N, K])."""
    block_kw, block_n = 16, 64
    return KernelCall(_W4_CODES, (cdiv(k // 8, block_kw), cdiv(n, block_n)), (n, k, stride_wk),
                      dict(BLOCK_KW=block_kw, BLOCK_N=block_n, num_warps=4))


def w4_codes(qdata: torch.Tensor) -> torch.Tensor:
    """The int8 codes q - 8 [N, K] of a packed symmetric 4-bit weight [K/8, N] (N unit-stride)."""
    kw, n = qdata.shape
    out = torch.empty((n, kw * 8), dtype=torch.int8, device=qdata.device)
    w4_codes_call(n, kw * 8, qdata.stride(0))((qdata, out))
    return out


_W4_CODES = FastLauncher(w4_codes_kernel)
