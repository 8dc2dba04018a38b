"""Decode kernel: y = x @ dequant(W).T on CUDA cores, the packed weight streamed once.

BLOCK_M <= 4; the dispatcher uses it for M <= configs.GEMV_MAX_M.

Grid: (cdiv(N, BLOCK_N), SPLIT_K). A program owns BLOCK_N output columns for every row
of x (BLOCK_M >= M, at most 4) and one contiguous range of K tiles.
Each K step loads a [BLOCK_K / E, BLOCK_N] tile of int32 words (E = 32 / BITS codes a
word; rows are N-contiguous, so a warp reads whole 128-byte lines in 16-byte vectors)
and the scale/zero of its group(s). The E code slots of the tile are then processed in
turn, all in the words' own register layout (no reshapes, no shared memory): unpack
(2 int ops, unpack.py), dequantize (1 FMA), multiply-accumulate with the matching
strided slice of x (L1-resident) into a [BLOCK_M, BLOCK_K / E, BLOCK_N] fp32 tile,
reduced once at the end.
HBM bytes per program: BLOCK_N * K * BITS / 8 (weights) + its scales/zeros;
x and the output are negligible at decode sizes.
"""

import triton
import triton.language as tl

from .reduce import store_tile
from .unpack import group_mul_add, slot_as_float


@triton.jit
def gemv_kernel(x_ptr, w_ptr, scale_ptr, zero_ptr, bias_ptr, out_ptr, ws_ptr,
                M, N, K, group_size, tiles_per_split,
                stride_xm, stride_xk, stride_wk, stride_sg, stride_om,
                BITS: tl.constexpr, SYMMETRIC: tl.constexpr, SYM_ZERO: tl.constexpr,
                SCALE_PER_ROW: tl.constexpr, HAS_BIAS: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, USE_WORKSPACE: tl.constexpr,
                NUM_STAGES: tl.constexpr):
    E: tl.constexpr = 32 // BITS
    BLOCK_KW: tl.constexpr = BLOCK_K // E
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)

    o_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    o_m = tl.arange(0, BLOCK_M)
    o_n3 = o_n[None, None, :]  # [1, 1, BN]
    o_m3 = o_m[:, None, None]  # [BM, 1, 1]
    o_j3 = tl.arange(0, BLOCK_KW)[None, :, None]  # [1, BKW, 1]
    m_n3 = o_n3 < N
    k_words = K // E

    acc = tl.zeros((BLOCK_M, BLOCK_KW, BLOCK_N), dtype=tl.float32)
    t_end = tl.minimum((pid_k + 1) * tiles_per_split, tl.cdiv(K, BLOCK_K))
    for t in tl.range(pid_k * tiles_per_split, t_end, num_stages=NUM_STAGES):
        o_kw = t * BLOCK_KW + o_j3  # [1, BKW, 1]
        m_w = (o_kw < k_words) & m_n3
        b_words = tl.load(w_ptr + o_kw * stride_wk + o_n3, mask=m_w, other=0)  # [1, BKW, BN]
        if SCALE_PER_ROW:  # the tile spans several groups: one scale row per word row
            mul, add = group_mul_add(scale_ptr, zero_ptr, (o_kw * E // group_size) * stride_sg + o_n3, m_w,
                                     SYMMETRIC, SYM_ZERO, BITS)
        else:
            mul, add = group_mul_add(scale_ptr, zero_ptr, (t * BLOCK_K // group_size) * stride_sg + o_n3, m_n3,
                                     SYMMETRIC, SYM_ZERO, BITS)
        for s in tl.static_range(E):
            b_w = slot_as_float(b_words, s, BITS) * mul + add  # [1, BKW, BN]
            o_k = o_kw * E + s
            b_x = tl.load(x_ptr + o_m3 * stride_xm + o_k * stride_xk, mask=(o_m3 < M) & (o_k < K), other=0.0)
            acc += b_x.to(tl.float32) * b_w  # [BM, BKW, 1] * [1, BKW, BN]

    result = tl.sum(acc, axis=1)  # [BM, BN]
    store_tile(result, o_m, o_n, M, N, out_ptr, stride_om, bias_ptr, ws_ptr, pid_k, HAS_BIAS, USE_WORKSPACE)
