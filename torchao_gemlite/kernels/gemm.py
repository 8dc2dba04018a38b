"""Tensor-core kernel (M >= 5): y = x @ dequant(W).T with the weight dequantized in registers.

Grid: (cdiv(M, BLOCK_M) * cdiv(N, BLOCK_N), SPLIT_K), programs ordered in bands of
GROUP_M row tiles so that neighbouring programs share weight tiles in L2.
Each K step loads a [BLOCK_M, BLOCK_K] tile of x, a [BLOCK_K / E, BLOCK_N] tile of
int32 words and one scale/zero row (BLOCK_K divides the group size, so a step never
straddles groups), unpacks and dequantizes the weight tile to x's dtype and feeds
one tl.dot with fp32 accumulation. Triton pipelines the loads num_stages deep.
SWAP_AB computes the transposed product W^T x^T, so that for small M the weight is
the MMA's large operand and the batch the small one (MMA N = BLOCK_M = 16).
Per-channel formats feed the raw codes to the dot (exact in fp16/bf16) and apply
y = scale * (acc - zero * sum x) once in the epilogue.
HBM bytes per output tile: BLOCK_N * K * BITS / 8 (weights) + BLOCK_M * K * 2 (x)
+ scales/zeros; split-K adds an fp32 partial per tile (reduce.py).
"""

import triton
import triton.language as tl

from .reduce import store_tile
from .unpack import load_group_params, unpack_words


@triton.jit
def gemm_kernel(x_ptr, w_ptr, scale_ptr, zero_ptr, bias_ptr, out_ptr, ws_ptr,
                M, N, K, group_size, tiles_per_split,
                stride_xm, stride_xk, stride_wk, stride_sg, stride_om,
                BITS: tl.constexpr, SYMMETRIC: tl.constexpr, SYM_ZERO: tl.constexpr,
                PER_CHANNEL: tl.constexpr, HAS_BIAS: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, USE_WORKSPACE: tl.constexpr,
                GROUP_M: tl.constexpr, SWAP_AB: tl.constexpr, NUM_STAGES: tl.constexpr):
    E: tl.constexpr = 32 // BITS
    BLOCK_KW: tl.constexpr = BLOCK_K // E
    pid = tl.program_id(0)
    pid_k = tl.program_id(1)
    tiles_m = tl.cdiv(M, BLOCK_M)
    tiles_n = tl.cdiv(N, BLOCK_N)
    band = pid // (GROUP_M * tiles_n)
    first_m = band * GROUP_M
    band_rows = tl.minimum(tiles_m - first_m, GROUP_M)
    pid_m = first_m + (pid % (GROUP_M * tiles_n)) % band_rows
    pid_n = (pid % (GROUP_M * tiles_n)) // band_rows

    o_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    o_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_m = o_m < M
    m_n = o_n < N
    k_words = K // E
    dot_dtype = x_ptr.dtype.element_ty

    if SWAP_AB:
        acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    x_sum = tl.zeros((BLOCK_M,), dtype=tl.float32)  # per-channel only
    t_end = tl.minimum((pid_k + 1) * tiles_per_split, tl.cdiv(K, BLOCK_K))
    for t in tl.range(pid_k * tiles_per_split, t_end, num_stages=NUM_STAGES):
        o_k = t * BLOCK_K + tl.arange(0, BLOCK_K)
        p_x = x_ptr + o_m[:, None] * stride_xm + o_k[None, :] * stride_xk
        b_x = tl.load(p_x, mask=m_m[:, None] & (o_k[None, :] < K), other=0.0)  # [BM, BK]
        o_kw = t * BLOCK_KW + tl.arange(0, BLOCK_KW)
        p_w = w_ptr + o_kw[:, None] * stride_wk + o_n[None, :]
        b_words = tl.load(p_w, mask=(o_kw[:, None] < k_words) & m_n[None, :], other=0)
        b_codes = unpack_words(b_words, BITS, BLOCK_KW, BLOCK_N)  # [BK, BN]
        if PER_CHANNEL:
            b_w = b_codes.to(dot_dtype)
            x_sum += tl.sum(b_x.to(tl.float32), axis=1)
        else:
            scale, zero = load_group_params(scale_ptr, zero_ptr, (t * BLOCK_K) // group_size, o_n, m_n,
                                            stride_sg, SYMMETRIC, SYM_ZERO)
            b_w = ((b_codes.to(tl.float32) - zero) * scale).to(dot_dtype)
        if SWAP_AB:
            acc = tl.dot(tl.trans(b_w), tl.trans(b_x), acc)  # [BN, BK] @ [BK, BM] -> [BN, BM]
        else:
            acc = tl.dot(b_x, b_w, acc)  # [BM, BK] @ [BK, BN] -> [BM, BN]

    if SWAP_AB:
        result = tl.trans(acc)
    else:
        result = acc
    if PER_CHANNEL:
        scale, zero = load_group_params(scale_ptr, zero_ptr, 0, o_n, m_n, stride_sg, SYMMETRIC, SYM_ZERO)
        result = (result - zero * x_sum[:, None]) * scale
    store_tile(result, o_m, o_n, M, N, out_ptr, stride_om, bias_ptr, ws_ptr, pid_k, HAS_BIAS, USE_WORKSPACE)
