"""Decode kernel (M <= 4): y = x @ dequant(W).T on CUDA cores, the packed weight streamed once.

Grid: (cdiv(N, BLOCK_N), SPLIT_K). A program owns BLOCK_N output columns for every row
of x (BLOCK_M >= M, at most 4) and one contiguous range of K tiles.
Each K step loads a [BLOCK_K / E, BLOCK_N] tile of int32 words (E = 32 / BITS codes a
word; rows are N-contiguous, so a warp reads whole 128-byte lines in 16-byte vectors),
one scale/zero row of the step's group, and a [BLOCK_M, BLOCK_K] slice of x (L2-resident).
Codes are unpacked with shift+mask and multiply-accumulated into a
[BLOCK_M, BLOCK_K, BLOCK_N] fp32 register tile that is reduced once at the end, so
the loop has no cross-thread reductions.
Per-channel formats skip the per-element dequant: acc = sum x*q, then
y = scale * (acc - zero * sum x) once per tile.
HBM bytes per program: BLOCK_N * K * BITS / 8 (weights) + scales/zeros of its columns;
x and the output are negligible at decode sizes.
"""

import triton
import triton.language as tl

from .reduce import store_tile
from .unpack import load_group_params, unpack_words


@triton.jit
def gemv_kernel(x_ptr, w_ptr, scale_ptr, zero_ptr, bias_ptr, out_ptr, ws_ptr,
                M, N, K, group_size, tiles_per_split,
                stride_xm, stride_xk, stride_wk, stride_sg, stride_om,
                BITS: tl.constexpr, SYMMETRIC: tl.constexpr, SYM_ZERO: tl.constexpr,
                PER_CHANNEL: tl.constexpr, HAS_BIAS: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, USE_WORKSPACE: tl.constexpr):
    E: tl.constexpr = 32 // BITS
    BLOCK_KW: tl.constexpr = BLOCK_K // E
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)

    o_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_n = o_n < N
    o_m = tl.arange(0, BLOCK_M)
    m_m = o_m < M
    k_words = K // E

    acc = tl.zeros((BLOCK_M, BLOCK_K, BLOCK_N), dtype=tl.float32)
    x_acc = tl.zeros((BLOCK_M, BLOCK_K), dtype=tl.float32)  # per-channel only: sum of x
    t_end = tl.minimum((pid_k + 1) * tiles_per_split, tl.cdiv(K, BLOCK_K))
    for t in range(pid_k * tiles_per_split, t_end):
        o_kw = t * BLOCK_KW + tl.arange(0, BLOCK_KW)
        p_w = w_ptr + o_kw[:, None] * stride_wk + o_n[None, :]
        b_words = tl.load(p_w, mask=(o_kw[:, None] < k_words) & m_n[None, :], other=0)
        b_w = unpack_words(b_words, BITS, BLOCK_KW, BLOCK_N).to(tl.float32)  # [BK, BN]
        o_k = t * BLOCK_K + tl.arange(0, BLOCK_K)
        p_x = x_ptr + o_m[:, None] * stride_xm + o_k[None, :] * stride_xk
        b_x = tl.load(p_x, mask=m_m[:, None] & (o_k[None, :] < K), other=0.0).to(tl.float32)  # [BM, BK]
        if PER_CHANNEL:
            x_acc += b_x
        else:
            scale, zero = load_group_params(scale_ptr, zero_ptr, (t * BLOCK_K) // group_size, o_n, m_n,
                                            stride_sg, SYMMETRIC, SYM_ZERO)
            b_w = (b_w - zero) * scale
        acc += b_x[:, :, None] * b_w[None, :, :]  # [BM, BK, 1] * [1, BK, BN]

    result = tl.sum(acc, axis=1)  # [BM, BN]
    if PER_CHANNEL:
        scale, zero = load_group_params(scale_ptr, zero_ptr, 0, o_n, m_n, stride_sg, SYMMETRIC, SYM_ZERO)
        result = (result - zero * tl.sum(x_acc, axis=1)[:, None]) * scale
    store_tile(result, o_m, o_n, M, N, out_ptr, stride_om, bias_ptr, ws_ptr, pid_k, HAS_BIAS, USE_WORKSPACE)
