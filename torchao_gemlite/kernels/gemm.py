"""Tensor-core kernel (17 <= M <= 256 by default, configs.py): y = x @ dequant(W).T, weight dequantized in registers.

Grid: (cdiv(M, BLOCK_M) * cdiv(N, BLOCK_N), SPLIT_K), programs ordered in bands of
GROUP_M row tiles so that neighbouring programs share weight tiles in L2.
Each K step loads a [BLOCK_K / E, BLOCK_N] tile of int32 words and its scales/zeros and
unpacks all E codes of every word at once into a [BLOCK_K / E, E, BLOCK_N] tile, reshaped
to [BLOCK_K, BLOCK_N] in k order (k = word row * E + slot), for one tl.dot with the
contiguous [BLOCK_M, BLOCK_K] tile of x, fp32 accumulation (wgmma from BLOCK_M = 64 on
Hopper); Triton pipelines the loads num_stages deep. One dot over the whole step, rather
than one per code slot, measured 2x faster at M = 64 on the H100.
Dequantization: with HALF (the default where half2.py supports the format, never with
SWAP_AB), half2.dequant_codes in 16-bit arithmetic, 4 instructions a pair of codes for fp16:
the kernel ran 1.1-1.3x faster at M = 8..128 on the H100 (SASS loop of a 16x128 tile: 883 ->
548 instructions a step). Otherwise unpack.py's fp32 bit trick and one FMA a code.
With TMA, x and the words come through host-built TMA descriptors (one bulk copy a tile, zero-filled
past M, N and K, no masks or address arithmetic in the loop) instead of per-thread cp.async copies; the
scales stay pointer loads. H100, same tiles (test/kernels/gpu_probe_gemm_tma.py, 4/8/2-bit): 1.03-1.05x the
pointer loads at M = 64, up to 1.6x at M = 128 (2-bit, 4096x4096: 36.0 -> 24.3 us), 1.05-1.15x at M = 256.
SWAP_AB computes W^T x^T so that for small M the weight is the MMA's large operand (and its
register operand) and the batch the small one; with the 16-bit dequantization that register
operand gave intermittently wrong results (dispatch.py), so swapped tiles dequantize in fp32.
HBM bytes per output tile: BLOCK_N * K * BITS / 8 (weights) + BLOCK_M * K * 2 (x)
+ scales/zeros; split-K adds an fp32 partial per tile (reduce.py).
"""

import triton
import triton.language as tl

from .half2 import dequant_codes
from .reduce import store_tile, tile_coordinates
from .unpack import all_slots_as_float, group_mul_add


@triton.jit
def gemm_kernel(x_ptr, w_ptr, scale_ptr, zero_ptr, bias_ptr, out_ptr, ws_ptr,
                M, N, K, tiles_per_split,
                stride_xm, stride_xk, stride_wk, stride_sg, stride_om,
                BITS: tl.constexpr, GROUP_K: tl.constexpr, SYMMETRIC: tl.constexpr, SYM_ZERO: tl.constexpr,
                HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                USE_WORKSPACE: tl.constexpr, NUM_STAGES: tl.constexpr, GROUP_M: tl.constexpr, SWAP_AB: tl.constexpr,
                HALF: tl.constexpr, EMULATE: tl.constexpr, TMA: tl.constexpr = False):
    # GROUP_K: the group size, 0 for per-channel scales; TMA: x_ptr and w_ptr are TMA descriptors
    E: tl.constexpr = 32 // BITS
    BLOCK_KW: tl.constexpr = BLOCK_K // E
    pid_m, pid_n = tile_coordinates(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)
    pid_k = tl.program_id(1)

    o_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    o_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_m = o_m < M
    m_n = o_n < N
    k_words = K // E
    dot_dtype = out_ptr.dtype.element_ty  # x's dtype

    if SWAP_AB:
        acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    t_end = tl.minimum((pid_k + 1) * tiles_per_split, tl.cdiv(K, BLOCK_K))
    for t in tl.range(pid_k * tiles_per_split, t_end, num_stages=NUM_STAGES):
        o_kw = t * BLOCK_KW + tl.arange(0, BLOCK_KW)
        m_w = (o_kw[:, None] < k_words) & m_n[None, :]
        if TMA:
            b_words = w_ptr.load([t * BLOCK_KW, pid_n * BLOCK_N])  # [BKW, BN]
        else:
            b_words = tl.load(w_ptr + o_kw[:, None] * stride_wk + o_n[None, :], mask=m_w, other=0)  # [BKW, BN]
        if GROUP_K == 0:  # per-channel
            mul, add = group_mul_add(scale_ptr, zero_ptr, o_n[None, :], m_n[None, :], SYMMETRIC, SYM_ZERO, BITS)
        elif GROUP_K % BLOCK_K != 0:  # the step spans several groups: one scale row per word row
            mul, add = group_mul_add(scale_ptr, zero_ptr, (o_kw[:, None] // (GROUP_K // E)) * stride_sg + o_n[None, :],
                                     m_w, SYMMETRIC, SYM_ZERO, BITS)
        else:
            mul, add = group_mul_add(scale_ptr, zero_ptr, (t // (GROUP_K // BLOCK_K)) * stride_sg + o_n[None, :],
                                     m_n[None, :], SYMMETRIC, SYM_ZERO, BITS)
        # every code of the step at once: [BKW, E, BN] -> [BLOCK_K, BN] in k order (k = word row * E + slot)
        if HALF:  # 16-bit arithmetic, two codes an instruction: scale and (C - zero) * scale, C = 2^(BITS-1)
            shape: tl.constexpr = (BLOCK_KW, E, BLOCK_N)
            scale16 = (mul * (1.0 / (1 << BITS))).to(dot_dtype)
            offset16 = (add + mul * (((1 << (BITS - 1)) + (1 << BITS)) / (1 << BITS))).to(dot_dtype)
            b_w = dequant_codes(tl.broadcast_to(b_words[:, None, :], shape),
                                tl.broadcast_to((tl.arange(0, E) * BITS)[None, :, None], shape),
                                tl.broadcast_to(scale16[:, None, :], shape), tl.broadcast_to(offset16[:, None, :], shape),
                                BITS, dot_dtype == tl.bfloat16, EMULATE)
            b_w = tl.reshape(b_w, (BLOCK_K, BLOCK_N))
        else:
            f = all_slots_as_float(b_words, BITS)  # [BKW, E, BN]
            b_w = tl.reshape((f * mul[:, None, :] + add[:, None, :]).to(dot_dtype), (BLOCK_K, BLOCK_N))
        if TMA:
            b_x = x_ptr.load([pid_m * BLOCK_M, t * BLOCK_K])  # [BM, BK]
        else:
            o_k = t * BLOCK_K + tl.arange(0, BLOCK_K)
            b_x = tl.load(x_ptr + o_m[:, None] * stride_xm + o_k[None, :] * stride_xk,
                          mask=m_m[:, None] & (o_k[None, :] < K), other=0.0)  # [BM, BK]
        if SWAP_AB:
            acc = tl.dot(tl.trans(b_w), tl.trans(b_x), acc)  # [BN, BK] @ [BK, BM] -> [BN, BM]
        else:
            acc = tl.dot(b_x, b_w, acc)  # [BM, BK] @ [BK, BN] -> [BM, BN]

    if SWAP_AB:
        result = tl.trans(acc)
    else:
        result = acc
    store_tile(result, o_m, o_n, M, N, out_ptr, stride_om, bias_ptr, ws_ptr, pid_k, HAS_BIAS, USE_WORKSPACE)
