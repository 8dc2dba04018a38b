"""Small batches on the tensor cores (by default 4-bit codes at M = 17..32, 2- and 1-bit at 25..32; configs.py):
y = x @ dequant(W).T + bias, up to 64 batch rows a CTA sharing each unpacked weight fragment.

mma_gemv.py keeps each group's sums in fp32 and scales them there, which costs per 8-row batch tile a set of
group accumulators, an x-sum MMA and the scaling FMAs: past 16 rows it runs one CTA per 16 rows, each
unpacking the same weight again. Here the group's scale and zero are folded into the A operand instead, as
the tensor-core GEMM does: after the exact pair (q - C) of mma_gemv's unpacking, one more packed FMA gives
(q - C) s + (C - z) s = (q - z) s in the activation's 16-bit type (rounded once, like the GEMM's
dequantization), so the MMAs of every group and every batch tile accumulate straight into one fp32 result
per tile. A CTA takes BATCH_TILES 8-row tiles (up to 64 rows): per 32-code sub-block a thread unpacks its 8
codes of 4 columns once (16 LOP3 + 32 packed FMAs for 4-bit) and issues 4 MMAs per batch tile.

Fragments, K permutation, loads a step ahead, warps along N and K, split-K and the stores are mma_gemv.py's
(its docstring); x rows past M are not read (predicated loads) and not stored.
HBM bytes: each packed weight byte once per M tile of the grid (the other M tiles of a column tile, launched
next to it, read them from L2), scales and zeros alike; x from L2 by every column tile.
Registers a thread: 8 fp32 accumulators and, per stage in flight, 4 words of x per batch tile and sub-block,
so BATCH_TILES x BLOCK_K is what bounds a launch (8 tiles take BLOCK_K = 32 or 64).
"""

import triton
import triton.language as tl

from .half2 import fma2
from .mma_gemv import (_a_operands, _as_f32, _by_column, _code_layout, _join4, _scale_loads, _store_rows,
                       _sub_block_mmas, _thread_lanes, _x_load)
from .vector_load import load4


@triton.jit
def _pair16(v, IS_BF16: tl.constexpr):
    """fp32 [T] -> the int32 pair (h, h) of its 16-bit value h in the activation's type."""
    if IS_BF16:
        h = v.to(tl.bfloat16).to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF
    else:
        h = v.to(tl.float16).to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF
    return h | (h << 16)


@triton.jit
def _fold_constants(s0, s1, s2, s3, z0, z1, z2, z3, C: tl.constexpr, IS_BF16: tl.constexpr):
    """Per column c: (s_c, s_c) and ((C - z_c) s_c, same) as 16-bit pairs, 8 [T] int32 tensors."""
    return (_pair16(s0, IS_BF16), _pair16(s1, IS_BF16), _pair16(s2, IS_BF16), _pair16(s3, IS_BF16),
            _pair16((C - z0) * s0, IS_BF16), _pair16((C - z1) * s1, IS_BF16), _pair16((C - z2) * s2, IS_BF16),
            _pair16((C - z3) * s3, IS_BF16))


@triton.jit
def _fold(A, fold, IS_BF16: tl.constexpr, EMULATE: tl.constexpr):
    """The 16 A registers of a sub-block (pairs q - C; register i holds column i % 4) -> (q - z) s."""
    out = ()
    for i in tl.static_range(16):
        out = out + (fma2(A[i], fold[i % 4], fold[4 + i % 4], IS_BF16, EMULATE),)
    return out


@triton.jit
def _batch_step_loads(w_base, x_base, x_row_step, s_base, z_base, k_step, live, rows_ok, K, stride_wk, stride_sw,
                      BITS: tl.constexpr, SUBS: tl.constexpr, GROUPS: tl.constexpr, GROUP_K: tl.constexpr,
                      X_HI: tl.constexpr, XW: tl.constexpr, BATCH_TILES: tl.constexpr, HAS_ZERO: tl.constexpr,
                      SCALE_WORDS: tl.constexpr, EVEN_K: tl.constexpr, EMULATE: tl.constexpr):
    """Every load of one warp step, issued together: per sub-block the words (as mma_gemv's ``_step_loads``)
    and x for each batch tile (``x_row_step`` int32 pairs further per tile; ``rows_ok`` a tuple of [T] int32,
    the tile's row of the thread exists), then the raw words of the step's GROUPS scale (and zero) rows.
    ``live``: whether the step exists; past K x, scales and zeros read as 0 and the words are not read."""
    words = ()
    xs = ()
    for sub in tl.static_range(SUBS):
        ok = live
        if not EVEN_K:
            ok = live & ((k_step + sub * 32) < K).to(tl.int32)
        w_sub = w_base + sub * BITS * stride_wk  # a sub-block is BITS word rows
        if BITS == 8:
            words = words + (load4(w_sub, ok, ".nc.L1::no_allocate", True, False, EMULATE)
                             + load4(w_sub + stride_wk, ok, ".nc.L1::no_allocate", True, False, EMULATE),)
        else:
            words = words + (load4(w_sub, ok, ".nc.L1::no_allocate", True, False, EMULATE),)
        tiles = ()
        for b in tl.static_range(BATCH_TILES):
            tiles = tiles + (_x_load(x_base + b * x_row_step + sub * 16, ok & rows_ok[b], X_HI, XW, True,
                                     not EVEN_K, EMULATE),)
        xs = xs + (tiles,)
    SCALE_ROWS: tl.constexpr = GROUPS if GROUP_K != 0 else 0  # per-channel: loaded once, before the loop
    scales, zeros = _scale_loads(s_base, z_base, k_step, live, K, stride_sw, SCALE_ROWS, GROUP_K, HAS_ZERO,
                                 SCALE_WORDS, EVEN_K, True, EMULATE)
    return words, xs, scales, zeros


@triton.jit
def mma_batch_kernel(x_ptr, w_ptr, scale_ptr, zero_ptr, bias_ptr, out_ptr, ws_ptr,
                     M, N, K, steps_per_split, m_tiles,
                     stride_xm, stride_wk, stride_sg, stride_om,
                     BITS: tl.constexpr, GROUP_K: tl.constexpr, SYMMETRIC: tl.constexpr, SYM_ZERO: tl.constexpr,
                     HAS_BIAS: tl.constexpr, BATCH_TILES: tl.constexpr, WARPS_N: tl.constexpr,
                     WARPS_K: tl.constexpr, BLOCK_K: tl.constexpr, EVEN_K: tl.constexpr, EVEN_N: tl.constexpr,
                     USE_WORKSPACE: tl.constexpr, NUM_STAGES: tl.constexpr, WIDE_X: tl.constexpr,
                     EMULATE: tl.constexpr):
    # GROUP_K: the group size (a multiple of 32 that divides BLOCK_K or that BLOCK_K divides), 0 for per-channel.
    # BATCH_TILES: 8-row batch tiles a CTA (its M tile is 8 * BATCH_TILES rows).
    IS_BF16: tl.constexpr = x_ptr.dtype.element_ty == tl.bfloat16
    T: tl.constexpr = 32 * WARPS_N * WARPS_K
    E: tl.constexpr = 32 // BITS
    C: tl.constexpr = 1 << (BITS - 1)
    SUBS: tl.constexpr = BLOCK_K // 32
    TILE_M: tl.constexpr = 8 * BATCH_TILES
    pid = tl.program_id(0)
    pid_n = pid // m_tiles
    m_first = (pid % m_tiles) * TILE_M  # the M tiles of a column tile are neighbours in launch order
    pid_k = tl.program_id(1)

    g, t, warp_k, n0 = _thread_lanes(pid_n, T, WARPS_N)  # the thread's columns: n0..n0+3, n0 = 4 g
    if not EVEN_N:
        n0 = tl.minimum(n0, N - 4)  # N is a multiple of 4: a valid 16-byte row piece, never stored
    # the thread's codes in a 32-code sub-block (mma_gemv.py)
    row0, base, pshift = _code_layout(t, BITS)
    X_HI: tl.constexpr = 4 if BITS == 8 else 16 // BITS
    k_first = (pid_k * steps_per_split * WARPS_K + warp_k) * BLOCK_K  # [T]
    K_STRIDE: tl.constexpr = WARPS_K * BLOCK_K
    W_STEP: tl.constexpr = K_STRIDE // E
    w_base = w_ptr + (k_first // E + row0) * stride_wk + n0
    XW: tl.constexpr = 4 if X_HI == 4 and WIDE_X else 2
    x_pairs = x_ptr.to(tl.pointer_type(tl.int32))
    x_base = x_pairs + (m_first + g) * (stride_xm // 2) + (k_first + base) // 2
    x_row_step = 8 * (stride_xm // 2)
    rows_ok = ()
    for b in tl.static_range(BATCH_TILES):
        rows_ok = rows_ok + ((m_first + 8 * b + g < M).to(tl.int32),)
    S_DTYPE: tl.constexpr = scale_ptr.dtype.element_ty
    SCALE_WORDS: tl.constexpr = 4 if S_DTYPE == tl.float32 else 2
    S_PER_WORD: tl.constexpr = 4 // SCALE_WORDS
    HAS_ZERO: tl.constexpr = not SYMMETRIC
    stride_sw = stride_sg // S_PER_WORD
    s_cols = scale_ptr.to(tl.pointer_type(tl.int32)) + n0 // S_PER_WORD
    z_cols = zero_ptr.to(tl.pointer_type(tl.int32)) + n0 // S_PER_WORD
    GROUP_SUBS: tl.constexpr = SUBS if GROUP_K == 0 or GROUP_K > BLOCK_K else GROUP_K // 32  # sub-blocks a fold
    ROW_K: tl.constexpr = GROUP_K if GROUP_K != 0 else BLOCK_K  # k // ROW_K: the scale row (group-wise)
    GROUPS: tl.constexpr = SUBS // GROUP_SUBS  # scale rows a step
    zero_t = tl.zeros((T,), dtype=tl.float32)
    col_fold = ()
    if GROUP_K == 0:  # per-channel: the folded constants once
        s = ()
        z = ()
        for c in tl.static_range(4):
            s = s + (tl.load(scale_ptr + n0 + c).to(tl.float32),)
            if HAS_ZERO:
                z = z + (tl.load(zero_ptr + n0 + c).to(tl.float32),)
            else:
                z = z + (zero_t + SYM_ZERO,)
        col_fold = _fold_constants(s[0], s[1], s[2], s[3], z[0], z[1], z[2], z[3], C, IS_BF16)
    PREFETCH: tl.constexpr = NUM_STAGES == 2
    live = tl.full((T,), 1, tl.int32)

    acc = ()
    for b in tl.static_range(BATCH_TILES):
        acc = acc + ((zero_t, zero_t, zero_t, zero_t, zero_t, zero_t, zero_t, zero_t),)
    if PREFETCH:
        ahead = _batch_step_loads(w_base, x_base, x_row_step, s_cols + (k_first // ROW_K) * stride_sw,
                                  z_cols + (k_first // ROW_K) * stride_sw, k_first, live, rows_ok, K, stride_wk,
                                  stride_sw, BITS, SUBS, GROUPS, GROUP_K, X_HI, XW, BATCH_TILES, HAS_ZERO,
                                  SCALE_WORDS, EVEN_K, EMULATE)
    for step in tl.range(0, steps_per_split, num_stages=1):
        k_step = k_first + step * K_STRIDE  # [T]
        if PREFETCH:
            loads = ahead
            nxt = step + 1
            k_next = k_step + K_STRIDE
            ahead = _batch_step_loads(w_base + nxt * W_STEP * stride_wk, x_base + nxt * (K_STRIDE // 2), x_row_step,
                                      s_cols + (k_next // ROW_K) * stride_sw, z_cols + (k_next // ROW_K) * stride_sw,
                                      k_next, live * (nxt < steps_per_split).to(tl.int32), rows_ok, K, stride_wk,
                                      stride_sw, BITS, SUBS, GROUPS, GROUP_K, X_HI, XW, BATCH_TILES, HAS_ZERO,
                                      SCALE_WORDS, EVEN_K, EMULATE)
        else:
            loads = _batch_step_loads(w_base + step * W_STEP * stride_wk, x_base + step * (K_STRIDE // 2), x_row_step,
                                      s_cols + (k_step // ROW_K) * stride_sw, z_cols + (k_step // ROW_K) * stride_sw,
                                      k_step, live, rows_ok, K, stride_wk, stride_sw, BITS, SUBS, GROUPS, GROUP_K,
                                      X_HI, XW, BATCH_TILES, HAS_ZERO, SCALE_WORDS, EVEN_K, EMULATE)
        words, xs, scales, zeros = loads
        for grp in tl.static_range(GROUPS):
            if GROUP_K == 0:
                fold = col_fold
            else:
                s0, s1, s2, s3 = _as_f32(scales[grp], S_DTYPE)
                if HAS_ZERO:
                    z0, z1, z2, z3 = _as_f32(zeros[grp], S_DTYPE)
                else:
                    z0, z1, z2, z3 = zero_t + SYM_ZERO, zero_t + SYM_ZERO, zero_t + SYM_ZERO, zero_t + SYM_ZERO
                fold = _fold_constants(s0, s1, s2, s3, z0, z1, z2, z3, C, IS_BF16)
            for sub_in in tl.static_range(GROUP_SUBS):
                A = _fold(_a_operands(words[grp * GROUP_SUBS + sub_in], pshift, BITS, IS_BF16, EMULATE), fold, IS_BF16, EMULATE)
                new_acc = ()
                for b in tl.static_range(BATCH_TILES):
                    a = acc[b]
                    r = _sub_block_mmas(A, xs[grp * GROUP_SUBS + sub_in][b], a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], zero_t,
                                        zero_t, zero_t, zero_t, zero_t, BITS, False, IS_BF16, EMULATE)
                    new_acc = new_acc + ((r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]),)
                acc = new_acc

    for b in tl.static_range(BATCH_TILES):
        a = acc[b]
        tot = _by_column(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7])
        _store_rows(_join4(tot[0], tot[1], tot[2], tot[3]), _join4(tot[4], tot[5], tot[6], tot[7]), b, m_first, M,
                    N, pid_n, pid_k, out_ptr, out_ptr, stride_om, bias_ptr, ws_ptr, WARPS_N, WARPS_K, False,
                    HAS_BIAS, USE_WORKSPACE)
