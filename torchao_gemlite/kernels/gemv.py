"""Decode kernel: y = x @ dequant(W).T on CUDA cores, the packed weight streamed once.

The dispatcher uses it for M <= 2, and up to configs.GEMV_MAX_M = 4 for the formats that the
tensor-core decode kernel (mma_gemv.py) cannot take (it takes BLOCK_M up to 8: each row of x adds
its own multiply-accumulates, so past M = 2 the MMA does them better).

Grid: (cdiv(N, BLOCK_N), SPLIT_K). A program owns BLOCK_N output columns for every row
of x (BLOCK_M >= M) and one contiguous range of K tiles.
Each K step loads a [BLOCK_K / E, BLOCK_N] tile of int32 words (E = 32 / BITS codes a
word; rows are N-contiguous, so a warp reads whole 128-byte lines in 16-byte vectors)
and the scale/zero of its group(s), and works in the words' own register layout (no
reshapes) into a [BLOCK_M, BLOCK_K / E, BLOCK_N] fp32 tile reduced once at the end.
- HALF_MAC (every format but 8-bit x bf16): packed 16-bit arithmetic (half2.py), two
  codes an instruction. Per word and code pair one PRMT + one LOP3 + one FMA give
  (q - c) * 2^-k exactly and one FMA multiply-accumulates it with x's matching pair (x
  read as int32 pairs); every PF pairs (4; 2 for 8-bit) move to fp32, where the group's
  dequantization is applied once per word:
      sum_k x_k (q_k - z) s = s 2^k * sum_k x_k (q_k - c) 2^-k + s (c - z) * sum_k x_k,
  the last term skipped where z = c (the symmetric formats but 1-bit); the 2^k is applied
  once to the finished sums, and per-channel scales once after the loop.
- Otherwise the fp32 loop: per code slot, unpack (2 int ops, unpack.py), dequantize (1 FMA)
  and multiply-accumulate with the matching slice of x, read as int32 pairs like the packed loop.
No masks inside the loop unless K is ragged (EVEN_K): columns past N and rows past M read
valid clamped addresses whose results are never stored (clamping costs the 16-byte loads,
so N a multiple of BLOCK_N, EVEN_N, skips it).
HBM bytes per program: BLOCK_N * K * BITS / 8 (weights) + its scales/zeros;
x and the output are negligible at decode sizes. Split-K partials: reduce.py.
"""

import triton
import triton.language as tl

from .half2 import fma2, lane_sum, mul2, pair_codes, x_sum_weights
from .reduce import store_tile
from .unpack import group_mul_add, slot_as_float


@triton.jit
def _pair_as_float(pairs, IS_BF16: tl.constexpr):
    """The two 16-bit values of each int32 (low half first) as fp32: a bf16 is the top half of an fp32."""
    if IS_BF16:
        return (pairs << 16).to(tl.float32, bitcast=True), (pairs & -65536).to(tl.float32, bitcast=True)
    lo = (pairs & 0xFFFF).to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)
    hi = ((pairs >> 16) & 0xFFFF).to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)
    return lo, hi


@triton.jit
def gemv_kernel(x_ptr, w_ptr, scale_ptr, zero_ptr, bias_ptr, out_ptr, ws_ptr,
                M, N, K, tiles_per_split,
                stride_xm, stride_wk, stride_sg, stride_om,
                BITS: tl.constexpr, GROUP_K: tl.constexpr, SYMMETRIC: tl.constexpr, SYM_ZERO: tl.constexpr,
                HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                EVEN_K: tl.constexpr, EVEN_N: tl.constexpr, USE_WORKSPACE: tl.constexpr, NUM_STAGES: tl.constexpr,
                HALF_MAC: tl.constexpr, PF: tl.constexpr, KSHIFT: tl.constexpr, EMULATE: tl.constexpr):
    # GROUP_K: the group size, 0 for per-channel scales. x's rows are contiguous (read as int32 pairs)
    E: tl.constexpr = 32 // BITS
    BLOCK_KW: tl.constexpr = BLOCK_K // E
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)

    o_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    o_m = tl.arange(0, BLOCK_M)
    # columns past N: clamped in the last tile only (EVEN_N keeps the addresses provably contiguous)
    o_n3 = (o_n if EVEN_N else tl.minimum(o_n, N - 1))[None, None, :]  # [1, 1, BN]
    o_m3 = tl.minimum(o_m, M - 1)[:, None, None]  # [BM, 1, 1], clamped: no row masks
    o_j3 = tl.arange(0, BLOCK_KW)[None, :, None]  # [1, BKW, 1]
    k_words = K // E

    if GROUP_K == 0:  # per-channel: one scale (and zero) row for the whole K, applied after the loop
        col_scale = tl.load(scale_ptr + o_n3).to(tl.float32)
        if SYMMETRIC:
            col_zero = SYM_ZERO
        else:
            col_zero = tl.load(zero_ptr + o_n3).to(tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_KW, BLOCK_N), dtype=tl.float32)
    t_end = tl.minimum((pid_k + 1) * tiles_per_split, tl.cdiv(K, BLOCK_K))
    if HALF_MAC:
        IS_BF16: tl.constexpr = x_ptr.dtype.element_ty == tl.bfloat16
        CENTER: tl.constexpr = 1 << (BITS - 1)
        # sum x (c - z) s vanishes when the zero is the center (symmetric, but 1-bit)
        X_SUM: tl.constexpr = (not SYMMETRIC) or SYM_ZERO != CENTER
        x_pairs = x_ptr.to(tl.pointer_type(tl.int32))  # x[m, 2i], x[m, 2i + 1] as one int32
        pair_row = o_m3 * (stride_xm // 2)
        if X_SUM:  # sum x (c - z) s (per-channel: sum x), scaled like acc
            acc_x = tl.zeros((BLOCK_M, BLOCK_KW, 1 if GROUP_K == 0 else BLOCK_N), dtype=tl.float32)
    for t in tl.range(pid_k * tiles_per_split, t_end, num_stages=NUM_STAGES):
        o_kw = t * BLOCK_KW + o_j3  # [1, BKW, 1]
        if EVEN_K:
            b_words = tl.load(w_ptr + o_kw * stride_wk + o_n3)  # [1, BKW, BN]
        else:
            b_words = tl.load(w_ptr + o_kw * stride_wk + o_n3, mask=o_kw < k_words, other=0)
        if GROUP_K != 0:
            if GROUP_K % BLOCK_K != 0:  # the step spans several groups: one scale row per word row
                s_offs = (o_kw // (GROUP_K // E)) * stride_sg + o_n3
            else:
                s_offs = (t // (GROUP_K // BLOCK_K)) * stride_sg + o_n3
            if EVEN_K:
                scale = tl.load(scale_ptr + s_offs).to(tl.float32)
            else:  # rows past K would read past the scales
                scale = tl.load(scale_ptr + s_offs, mask=o_kw < k_words, other=0.0).to(tl.float32)
            if SYMMETRIC:
                zero = SYM_ZERO
            elif EVEN_K:
                zero = tl.load(zero_ptr + s_offs).to(tl.float32)
            else:
                zero = tl.load(zero_ptr + s_offs, mask=o_kw < k_words, other=0.0).to(tl.float32)
        if HALF_MAC:
            for pair in tl.static_range(E // 2):
                if EVEN_K:
                    b_x = tl.load(x_pairs + pair_row + o_kw * (E // 2) + pair)  # [BM, BKW, 1]
                else:
                    b_x = tl.load(x_pairs + pair_row + o_kw * (E // 2) + pair, mask=o_kw < k_words, other=0)
                codes = pair_codes(b_words, pair, BITS, KSHIFT, IS_BF16, EMULATE)
                if pair % PF == 0:  # 16-bit sums of the next PF pairs
                    part = mul2(codes, b_x, IS_BF16, EMULATE)  # [BM, BKW, BN]
                    if X_SUM:
                        part_x = mul2(b_x, x_sum_weights(b_x, PF, IS_BF16), IS_BF16, EMULATE)  # [BM, BKW, 1]
                else:
                    part = fma2(codes, b_x, part, IS_BF16, EMULATE)
                    if X_SUM:
                        part_x = fma2(b_x, x_sum_weights(b_x, PF, IS_BF16), part_x, IS_BF16, EMULATE)
                if pair % PF == PF - 1:  # flush the 16-bit sums to fp32
                    if pair == PF - 1:
                        codes_x = lane_sum(part, IS_BF16, EMULATE)  # sum x (q - c) 2^-KSHIFT
                        if X_SUM:
                            x_sum = lane_sum(part_x, IS_BF16, EMULATE)  # sum x / PF
                    else:
                        codes_x += lane_sum(part, IS_BF16, EMULATE)
                        if X_SUM:
                            x_sum += lane_sum(part_x, IS_BF16, EMULATE)
            # acc holds sums / 2^KSHIFT; x_sum * PF * 2^-KSHIFT matches that scale
            if GROUP_K == 0:
                acc += codes_x
                if X_SUM:
                    acc_x += x_sum
            else:
                acc += codes_x * scale
                if X_SUM:
                    acc_x += x_sum * (scale * (CENTER - zero))
        else:
            if GROUP_K == 0:
                mul, add = 1.0 * (1 << BITS), -((1 << BITS) + col_zero)
            else:
                mul, add = scale * (1 << BITS), -((1 << BITS) + zero) * scale
            # x as int32 pairs too: 2-byte loads are not pipelined by Triton and left each step waiting on L2
            x_pairs = x_ptr.to(tl.pointer_type(tl.int32))
            pair_row = o_m3 * (stride_xm // 2)
            for s in tl.static_range(0, E, 2):
                if EVEN_K:
                    b_xx = tl.load(x_pairs + pair_row + o_kw * (E // 2) + s // 2)  # [BM, BKW, 1]
                else:
                    b_xx = tl.load(x_pairs + pair_row + o_kw * (E // 2) + s // 2, mask=o_kw < k_words, other=0)
                x_lo, x_hi = _pair_as_float(b_xx, x_ptr.dtype.element_ty == tl.bfloat16)
                acc += x_lo * (slot_as_float(b_words, s, BITS) * mul + add)  # [BM, BKW, 1] * [1, BKW, BN]
                acc += x_hi * (slot_as_float(b_words, s + 1, BITS) * mul + add)

    if HALF_MAC:
        if X_SUM:
            if GROUP_K == 0:
                acc = acc + acc_x * (CENTER - col_zero) * (PF * 2.0 ** -KSHIFT)
            else:
                acc = acc + acc_x * (PF * 2.0 ** -KSHIFT)
        result = tl.sum(acc, axis=1) * (1 << KSHIFT)  # [BM, BN]
    else:
        result = tl.sum(acc, axis=1)
    if GROUP_K == 0:
        result = result * tl.reshape(col_scale, (1, BLOCK_N))
    store_tile(result, o_m, o_n, M, N, out_ptr, stride_om, bias_ptr, ws_ptr, pid_k, HAS_BIAS, USE_WORKSPACE)
