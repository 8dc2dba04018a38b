"""Decode and small batches on the tensor cores: y = x @ dequant(W).T + bias, the packed weight streamed once
(M <= 16 a CTA; more rows in 16-row M tiles, one CTA each).

The CUDA-core GEMV (gemv.py) spends about 4.5 instructions a code on unpacking, 16-bit
multiply-accumulates and fp32 flushes and stops near 60% of the HBM bandwidth. Here the
multiply-accumulate runs on the tensor cores (``mma.sync.m16n8k16``, fp32 accumulation,
mma_sync.py) and a code costs about one instruction: one LOP3 masks two codes into the mantissas
of a 16-bit pair (1024 + q for fp16, 128 + q for bf16) and one packed add leaves (q - C) exactly
(C = 2^(BITS-1)); 8-bit codes take one more LOP3 (``_byte_pair``). The products and their fp32 sums
are exact up to fp32 rounding.

Fragments (mma_sync.py has the PTX layout; lane = 4 g + t):
- The weight is the A operand: MMA rows are output columns, MMA columns are K. The batch is B's
  8 columns (x row m = g, so M <= 8 costs what M = 1 costs); BATCH_TILES = 2 adds a second B (rows
  8..15) that shares the unpacked A registers, twice the MMAs for the same weight bytes.
- A sum over K ignores the order of K, so each thread feeds the MMA the codes it unpacks cheapest
  and x's fragment follows the same permutation. In every 32-code sub-block thread t of a quad
  owns 8 codes of its 4 columns; register r (0..3) holds two codes that sit in the two 16-bit
  halves of one word (one mask apart): codes base + r and base + L + r for L = 16 / BITS codes a
  half word (8-bit: two words, registers 2u + r = codes 4u + r and 4u + r + 2). MMA j in {0, 1}
  takes register 2j as its columns (2t, 2t+1) and 2j + 1 as (2t+8, 2t+9).
- Each thread loads 16 bytes of a word row: 4 adjacent columns n0..n0+3 (n0 = 4 g); MMA tile p
  has rows g and g + 8 = columns n0 + 2p and n0 + 2p + 1, so a warp covers 32 columns in two
  tiles and reads whole 128-byte lines. 2- and 1-bit words hold the codes of 2 and 4 threads.
Groups: each group's MMAs accumulate sum x (q - C) from zero, and its scale and zero apply once to
the fp32 result: acc += s * A_g + (C - z) s * X_g, where X_g (the group's sum of x) comes from one
more MMA with an all-ones A; symmetric formats skip it (z = C) but 1-bit (z = 0.5). Per-channel
scales apply after the loop.
HBM bytes: each packed weight byte once (M tiles: the others from L2), scales and zeros once; x is read from L2.
Grid (cdiv(N, 32 * WARPS_N) * M_TILES, SPLIT_K): a CTA's WARPS_N x WARPS_K warps own 32 columns each
along N and interleave BLOCK_K steps along K; the WARPS_K partial sums are added in a fixed order at the
end, split-K partials by reduce.py. Deterministic. Past M = 16 the batch is cut into M_TILES row tiles of
16, one CTA each, neighbours in launch order so that a column tile's weight bytes are read from HBM once
and from L2 by the others. M_TILES is a runtime argument (a launch shape compiles at most twice past
M = 16: M a multiple of 16 or not), and each CTA does the work of M = 16.
"""

from typing import NamedTuple

import triton
import triton.language as tl

from .configs import DENSE_MIN_M, MMA_TILE_M, LaunchConfig
from .half2 import fma2
from .launch import cdiv
from .mma_sync import mma_16816


class MmaLaunch(NamedTuple):
    """Grid and launch constexprs shared by both mma decode kernels (this one and dynamic_mma_gemv.py)."""
    grid: tuple
    steps_per_split: int
    m_tiles: int
    split: int
    meta: dict


def mma_launch(c: LaunchConfig, m: int, n: int, k: int, group_k: int) -> MmaLaunch:
    """Checks ``c`` and derives the launch: block_n // 32 warps along N and the rest of num_warps along K,
    block_k codes a warp step, the K split without empty splits, one 8-row batch tile up to M = 8, two
    up to 16, and past 16 one CTA per 16 rows (M tiles). ``group_k``: the group size, 0 for per-channel."""
    if m >= DENSE_MIN_M:  # where prefill starts; also keeps the split-K workspace offsets within int32
        raise ValueError(f"the mma kernels take M < {DENSE_MIN_M}, got M={m}")
    warps_n = c.block_n // 32
    if not warps_n or c.block_n % 32 or c.num_warps % warps_n or c.block_k % 32 or (group_k and c.block_k % group_k):
        raise ValueError(f"mma config block_n={c.block_n}, num_warps={c.num_warps}, block_k={c.block_k} is not "
                         "supported: block_n a multiple of 32 dividing 32 * num_warps, block_k a multiple of 32 "
                         f"and of the group size {group_k or k}")
    warps_k = c.num_warps // warps_n
    warp_steps = cdiv(k, c.block_k)
    steps_per_split = cdiv(warp_steps, max(1, c.split_k) * warps_k)
    split = cdiv(warp_steps, steps_per_split * warps_k)  # no empty splits
    m_tiles = cdiv(m, MMA_TILE_M)
    meta = dict(BATCH_TILES=1 if m <= MMA_TILE_M // 2 else 2, WARPS_N=warps_n, WARPS_K=warps_k, BLOCK_K=c.block_k,
                EVEN_K=k == split * steps_per_split * warps_k * c.block_k, EVEN_N=n % c.block_n == 0,
                USE_WORKSPACE=split > 1, num_warps=c.num_warps)
    return MmaLaunch((cdiv(n, c.block_n) * m_tiles, split), steps_per_split, m_tiles, split, meta)


@triton.jit
def _split4(v):
    """[T, 4] -> its four columns as [T] tensors."""
    a, b = tl.split(tl.reshape(v, (v.shape[0], 2, 2)))
    v0, v2 = tl.split(a)
    v1, v3 = tl.split(b)
    return v0, v1, v2, v3


@triton.jit
def _join4(v0, v1, v2, v3):
    """Four [T] tensors -> [T, 4] (inverse of _split4)."""
    return tl.reshape(tl.join(tl.join(v0, v2), tl.join(v1, v3)), (v0.shape[0], 4))


@triton.jit
def _byte_pair(words, POS: tl.constexpr, IS_BF16: tl.constexpr, EMULATE: tl.constexpr):
    """8-bit codes at bit POS of both halves of each word as the pair (q - 128) exactly, with 7-bit mantissa
    arithmetic (bf16's 8 significant bits hold q - 128 but not 128 + q): the low 7 bits r of each code go
    into the mantissa of B = 128 (bf16) or 1024 (fp16) with one LOP3, the top bit h picks what to subtract,
    B + 128 - 128 h (one LOP3: bit 7 of B + 128 flipped), and one FMA leaves (B + r) - (B + 128 - 128 h)
    = q - 128. fp16 could take 1024 + q in one LOP3 like the narrower codes, but on the H100 that kernel
    ran 0.74x as fast per-channel (1.20 against 1.61x cuBLAS at M = 3..8; group-wise 1.02x)."""
    src = words if POS == 0 else words >> POS  # each half's code in its low byte
    BASE: tl.constexpr = 0x43004300 if IS_BF16 else 0x64006400  # the pair (B, B)
    BASE_128: tl.constexpr = 0x43804380 if IS_BF16 else 0x64806480  # the pair (B + 128, B + 128)
    NEG_ONE: tl.constexpr = -0x407F4080 if IS_BF16 else -0x43FF4400  # 0xBF80BF80 / 0xBC00BC00: (-1, -1)
    if EMULATE:
        magic = (src & 0x007F007F) | BASE
        sub = (src & 0x00800080) ^ BASE_128
        return fma2(sub, tl.full(words.shape, NEG_ONE, tl.int32), magic, IS_BF16, EMULATE)  # sub * -1 + magic
    FMA: tl.constexpr = "fma.rn.bf16x2" if IS_BF16 else "fma.rn.f16x2"
    return tl.inline_asm_elementwise(
        "{ .reg .b32 m, s; lop3.b32 m, $1, $2, $3, 0xea; lop3.b32 s, $1, $4, $5, 0x6a; " + FMA + " $0, s, $6, m; }",
        "=r,r,r,r,r,r,r",
        [src, tl.full(words.shape, 0x007F007F, tl.int32), tl.full(words.shape, BASE, tl.int32),
         tl.full(words.shape, 0x00800080, tl.int32), tl.full(words.shape, BASE_128, tl.int32),
         tl.full(words.shape, NEG_ONE, tl.int32)],
        dtype=tl.int32, is_pure=True, pack=1)


@triton.jit
def _code_pair(words, POS: tl.constexpr, BITS: tl.constexpr, IS_BF16: tl.constexpr, EMULATE: tl.constexpr):
    """The BITS <= 4 codes at bit POS of both 16-bit halves of each word, as a 16-bit pair (q - C) exactly
    (8-bit codes: ``_byte_pair``)."""
    C: tl.constexpr = 1 << (BITS - 1)
    MANT: tl.constexpr = 7 if IS_BF16 else 10  # mantissa bits of the magic constant 128 / 1024
    # a code masked in place at offset O sits in the mantissa as q * 2^O (O + BITS <= MANT); codes
    # further up are shifted down by a multiple of SPAN first, one shift shared by several registers
    SPAN: tl.constexpr = (MANT // BITS) * BITS
    O: tl.constexpr = POS % SPAN
    src = words if O == POS else words >> (POS - O)
    MASK: tl.constexpr = (((1 << BITS) - 1) << O) * 0x00010001
    if IS_BF16:  # 128 = 0x4300; bits of 2^-O and of -(128 * 2^-O + C)
        MAGIC: tl.constexpr = 0x43004300
        MUL: tl.constexpr = (127 - O) << 7
        ADD: tl.constexpr = 0x8000 | ((134 - O) << 7) | (C << O)
    else:  # 1024 = 0x6400
        MAGIC: tl.constexpr = 0x64006400
        MUL: tl.constexpr = (15 - O) << 10
        ADD: tl.constexpr = 0x8000 | ((25 - O) << 10) | (C << O)
    MUL2: tl.constexpr = MUL * 0x00010001
    ADD2: tl.constexpr = ADD * 0x00010001 - (1 << 32)  # as a signed int32
    if EMULATE:
        magic_q = (src & MASK) | MAGIC
        return fma2(magic_q, tl.full(words.shape, MUL2, tl.int32), tl.full(words.shape, ADD2, tl.int32),
                    IS_BF16, EMULATE)
    # one LOP3 (mask and OR with the constants in registers: a LOP3 takes one immediate) and one FMA
    FMA: tl.constexpr = "fma.rn.bf16x2" if IS_BF16 else "fma.rn.f16x2"
    return tl.inline_asm_elementwise(
        "{ .reg .b32 r; lop3.b32 r, $1, $2, $3, 0xea; " + FMA + " $0, r, $4, $5; }", "=r,r,r,r,r,r",
        [src, tl.full(words.shape, MASK, tl.int32), tl.full(words.shape, MAGIC, tl.int32),
         tl.full(words.shape, MUL2, tl.int32), tl.full(words.shape, ADD2, tl.int32)],
        dtype=tl.int32, is_pure=True, pack=1)


@triton.jit
def _x_fragment(lo_src, hi_src, EMULATE: tl.constexpr):
    """B registers from two int32 x pairs: (low half of lo_src, low half of hi_src) and the high halves."""
    if EMULATE:
        return (lo_src & 0xFFFF) | (hi_src << 16), ((lo_src >> 16) & 0xFFFF) | (hi_src & -65536)
    lows = tl.inline_asm_elementwise("prmt.b32 $0, $1, $2, 0x5410;", "=r,r,r", [lo_src, hi_src], dtype=tl.int32,
                                     is_pure=True, pack=1)
    highs = tl.inline_asm_elementwise("prmt.b32 $0, $1, $2, 0x7632;", "=r,r,r", [lo_src, hi_src], dtype=tl.int32,
                                      is_pure=True, pack=1)
    return lows, highs


@triton.jit
def _word_pairs(ptrs, rows, k_words, pshift, BITS: tl.constexpr, EVEN_K: tl.constexpr, IS_BF16: tl.constexpr,
                EMULATE: tl.constexpr):
    """Loads one word row [T, 4] of the thread's columns (``rows``: its index, for the K mask); returns
    the code registers as [T, 4] pairs: (R0, R1, R2, R3) for BITS <= 4, two of them for 8-bit."""
    # the weight streams through once (evict first); x is read by every warp of the SM (evict last): H100, 1-10%
    if EVEN_K:
        words = tl.load(ptrs, eviction_policy="evict_first")
    else:
        words = tl.load(ptrs, mask=(rows < k_words)[:, None], other=0, eviction_policy="evict_first")
    if BITS == 8:
        return _byte_pair(words, 0, IS_BF16, EMULATE), _byte_pair(words, 8, IS_BF16, EMULATE)
    else:
        if BITS != 4:
            words = words >> pshift[:, None]
        return (_code_pair(words, 0, BITS, IS_BF16, EMULATE), _code_pair(words, BITS, BITS, IS_BF16, EMULATE),
                _code_pair(words, 2 * BITS, BITS, IS_BF16, EMULATE), _code_pair(words, 3 * BITS, BITS, IS_BF16, EMULATE))


@triton.jit
def _x_pairs(x_ptrs, SUB: tl.constexpr, k_sub, base, K, X_HI: tl.constexpr, XW: tl.constexpr,
             EVEN_K: tl.constexpr):
    """The thread's x pairs of one sub-block: at k_sub + base (the registers' low lanes) and + X_HI.
    XW = 4 (X_HI = 4: 8- and 4-bit, the four pairs adjacent): one 16-byte load ([T, 4] pointers); XW = 2:
    two 8-byte loads ([T, 2] pointers)."""
    if XW == 4:
        if EVEN_K:
            x4 = tl.load(x_ptrs + SUB * 16, eviction_policy="evict_last")
        else:
            k_x = (k_sub + base)[:, None] + 2 * tl.arange(0, 4)[None, :]  # [T, 4]
            x4 = tl.load(x_ptrs + SUB * 16, mask=k_x < K, other=0, eviction_policy="evict_last")
        even, odd = tl.split(tl.reshape(x4, (x4.shape[0], 2, 2)))  # pairs (0, 2) and (1, 3)
        lo0, hi0 = tl.split(even)
        lo1, hi1 = tl.split(odd)
    else:
        if EVEN_K:
            x_lo = tl.load(x_ptrs + SUB * 16, eviction_policy="evict_last")
            x_hi = tl.load(x_ptrs + (SUB * 16 + X_HI // 2), eviction_policy="evict_last")
        else:
            k_x = (k_sub + base)[:, None] + 2 * tl.arange(0, 2)[None, :]  # [T, 2]
            x_lo = tl.load(x_ptrs + SUB * 16, mask=k_x < K, other=0, eviction_policy="evict_last")
            x_hi = tl.load(x_ptrs + (SUB * 16 + X_HI // 2), mask=k_x + X_HI < K, other=0,
                           eviction_policy="evict_last")
        lo0, lo1 = tl.split(x_lo)
        hi0, hi1 = tl.split(x_hi)
    return lo0, lo1, hi0, hi1


@triton.jit
def _sub_block_mmas(R0, R1, R2, R3, lo0, lo1, hi0, hi1, a00, a01, a02, a03, a10, a11, a12, a13, xs0, xs1, xs2, xs3,
                    ones, BITS: tl.constexpr, X_TERM: tl.constexpr, IS_BF16: tl.constexpr, EMULATE: tl.constexpr):
    """The MMAs of one 32-code sub-block against one 8-row batch tile: per j, both column tiles and the
    x-sum; returns the 12 accumulators (tile p register e as a_pe, the x-sum as xs)."""
    for j in tl.static_range(2):
        if BITS == 8:
            b0, b1 = _x_fragment(lo0, lo1, EMULATE) if j == 0 else _x_fragment(hi0, hi1, EMULATE)
        else:
            b0, b1 = _x_fragment(lo0, hi0, EMULATE) if j == 0 else _x_fragment(lo1, hi1, EMULATE)
        ra0, ra1, ra2, ra3 = _split4(R0 if j == 0 else R2)
        rb0, rb1, rb2, rb3 = _split4(R1 if j == 0 else R3)
        a00, a01, a02, a03 = mma_16816(ra0, ra1, rb0, rb1, b0, b1, a00, a01, a02, a03, IS_BF16, EMULATE)
        a10, a11, a12, a13 = mma_16816(ra2, ra3, rb2, rb3, b0, b1, a10, a11, a12, a13, IS_BF16, EMULATE)
        if X_TERM:
            xs0, xs1, xs2, xs3 = mma_16816(ones, ones, ones, ones, b0, b1, xs0, xs1, xs2, xs3, IS_BF16, EMULATE)
    return a00, a01, a02, a03, a10, a11, a12, a13, xs0, xs1, xs2, xs3


@triton.jit
def _add_group(tot0, tot1, a00, a01, a02, a03, a10, a11, a12, a13, xs0, xs1, scale, shift,
               HAS_SCALE: tl.constexpr, X_TERM: tl.constexpr):
    """tot += scale * (the group's sums) + shift * (its x-sums), as [T, 4] per column for m = 2t (tot0)
    and m = 2t + 1 (tot1); without HAS_SCALE (per-channel) the plain sums, shift then multiplies the
    x-sums that the caller keeps in tot's place: see the kernel."""
    acc0 = _join4(a00, a02, a10, a12)
    acc1 = _join4(a01, a03, a11, a13)
    if HAS_SCALE:
        tot0 += scale * acc0
        tot1 += scale * acc1
    else:
        tot0 += acc0
        tot1 += acc1
    if X_TERM:
        tot0 += shift * xs0[:, None]
        tot1 += shift * xs1[:, None]
    return tot0, tot1


_TILE_M = tl.constexpr(MMA_TILE_M)


@triton.jit
def _tile_of(pid, m_tiles):
    """(column tile, first batch row) of program ``pid``: the M tiles of a column tile are neighbours."""
    return pid // m_tiles, (pid % m_tiles) * _TILE_M


@triton.jit
def _thread_columns(pid_n, N, T: tl.constexpr, WARPS_N: tl.constexpr, EVEN_N: tl.constexpr):
    """The thread mapping shared with dynamic_mma_gemv.py: (g, t, warp_k, cols) with lane = 4 g + t,
    warp_k the thread's warp index along K and cols [T, 4] its columns n0..n0+3, n0 = 4 g of its warp's
    32 (clamped past N unless EVEN_N: valid addresses, never stored)."""
    i = tl.arange(0, T)
    lane = i % 32
    g = lane // 4
    n0 = pid_n * (32 * WARPS_N) + ((i // 32) % WARPS_N) * 32 + 4 * g
    cols = n0[:, None] + tl.arange(0, 4)[None, :]
    if not EVEN_N:
        cols = tl.minimum(cols, N - 1)
    return g, lane % 4, i // (32 * WARPS_N), cols


@triton.jit
def _store_rows(tot0, tot1, U: tl.constexpr, m_first, M, N, pid_n, pid_k, x_scale_ptr, out_ptr, stride_om, bias_ptr,
                ws_ptr, WARPS_N: tl.constexpr, WARPS_K: tl.constexpr, X_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr,
                USE_WORKSPACE: tl.constexpr):
    """Sums the WARPS_K partial sums in a fixed order and writes batch rows m0 = m_first + 2t + 8U (tot0) and
    m0 + 1 (tot1) at the thread's columns: x_scale[m] (X_SCALE) and the bias applied, or the raw fp32
    partials of a split."""
    TN: tl.constexpr = 32 * WARPS_N
    i_n = tl.arange(0, TN)
    n_out = (pid_n * TN + (i_n // 32) * 32 + 4 * ((i_n % 32) // 4))[:, None] + tl.arange(0, 4)[None, :]
    m0 = (m_first + 2 * (i_n % 4) + 8 * U)[:, None]
    y0 = tl.sum(tl.reshape(tot0, (WARPS_K, TN, 4)), axis=0)  # [TN, 4]
    y1 = tl.sum(tl.reshape(tot1, (WARPS_K, TN, 4)), axis=0)
    n_ok = n_out < N
    if USE_WORKSPACE:
        part = ws_ptr + pid_k * M * N + n_out
        tl.store(part + m0 * N, y0, mask=n_ok & (m0 < M))
        tl.store(part + (m0 + 1) * N, y1, mask=n_ok & (m0 + 1 < M))
    else:
        if X_SCALE:
            y0 *= tl.load(x_scale_ptr + m0, mask=m0 < M, other=0.0)
            y1 *= tl.load(x_scale_ptr + m0 + 1, mask=m0 + 1 < M, other=0.0)
        if HAS_BIAS:
            bias = tl.load(bias_ptr + n_out, mask=n_ok, other=0.0).to(tl.float32)
            y0 += bias
            y1 += bias
        out = out_ptr + n_out
        tl.store(out + m0 * stride_om, y0.to(out_ptr.dtype.element_ty), mask=n_ok & (m0 < M))
        tl.store(out + (m0 + 1) * stride_om, y1.to(out_ptr.dtype.element_ty), mask=n_ok & (m0 + 1 < M))


@triton.jit
def mma_gemv_kernel(x_ptr, w_ptr, scale_ptr, zero_ptr, bias_ptr, out_ptr, ws_ptr,
                    M, N, K, steps_per_split, m_tiles,
                    stride_xm, stride_wk, stride_sg, stride_om,
                    BITS: tl.constexpr, GROUP_K: tl.constexpr, SYMMETRIC: tl.constexpr, SYM_ZERO: tl.constexpr,
                    HAS_BIAS: tl.constexpr, BATCH_TILES: tl.constexpr, WARPS_N: tl.constexpr,
                    WARPS_K: tl.constexpr, BLOCK_K: tl.constexpr, EVEN_K: tl.constexpr, EVEN_N: tl.constexpr,
                    USE_WORKSPACE: tl.constexpr, NUM_STAGES: tl.constexpr, WIDE_X: tl.constexpr,
                    EMULATE: tl.constexpr):
    # GROUP_K: the group size (a divisor of BLOCK_K, multiple of 32), 0 for per-channel scales.
    # WIDE_X: 8- and 4-bit codes read a sub-block's x with one 16-byte load (else two 8-byte ones).
    # BATCH_TILES: 1 (M <= 8) or 2 (a second B operand, x rows 8..15 of the tile, shares the A registers).
    # EVEN_K: K a multiple of BLOCK_K and every warp's steps inside K (no masks).
    IS_BF16: tl.constexpr = x_ptr.dtype.element_ty == tl.bfloat16
    T: tl.constexpr = 32 * WARPS_N * WARPS_K
    E: tl.constexpr = 32 // BITS
    C: tl.constexpr = 1 << (BITS - 1)
    X_TERM: tl.constexpr = (not SYMMETRIC) or SYM_ZERO != C  # sum x (C - z) s does not vanish
    SUBS: tl.constexpr = BLOCK_K // 32
    GROUP_SUBS: tl.constexpr = SUBS if GROUP_K == 0 else GROUP_K // 32
    ONES: tl.constexpr = 0x3F803F80 if IS_BF16 else 0x3C003C00  # the pair (1.0, 1.0)
    tl.static_assert(BATCH_TILES == 1 or BATCH_TILES == 2)
    pid_n, m_first = _tile_of(tl.program_id(0), m_tiles)
    pid_k = tl.program_id(1)

    g, t, warp_k, cols = _thread_columns(pid_n, N, T, WARPS_N, EVEN_N)  # cols [T, 4]: n0..n0+3, n0 = 4 g
    # the thread's codes in a 32-code sub-block: word row(s) and the k of register 0 (see the docstring)
    if BITS == 8:
        row0 = 2 * t
        base = 8 * t
        X_HI: tl.constexpr = 4  # x of registers 2 and 3
        pshift = t  # unused
    else:
        L: tl.constexpr = 16 // BITS
        row0 = t // (L // 4)
        base = row0 * 2 * L + 4 * (t % (L // 4))
        X_HI: tl.constexpr = L
        pshift = 4 * BITS * (t % (L // 4))
    k_words = K // E
    ones = tl.full((T,), ONES, tl.int32)
    # pointers at the thread's first step; a step moves WARPS_K * BLOCK_K along K
    k_first = (pid_k * steps_per_split * WARPS_K + warp_k) * BLOCK_K  # [T]
    K_STRIDE: tl.constexpr = WARPS_K * BLOCK_K
    w_ptrs = w_ptr + ((k_first // E + row0) * stride_wk)[:, None] + cols  # [T, 4]
    # x as int32 pairs, batch row g (and g + 8); rows past M: clamped, never stored
    XW: tl.constexpr = 4 if X_HI == 4 and WIDE_X else 2  # x pairs a load (_x_pairs)
    x_col = tl.max_contiguous(tl.multiple_of(((k_first + base) // 2)[:, None] + tl.arange(0, XW)[None, :], [1, XW]),
                              [1, XW])
    x_pairs = x_ptr.to(tl.pointer_type(tl.int32))
    x_ptrs = x_pairs + (tl.minimum(m_first + g, M - 1) * (stride_xm // 2))[:, None] + x_col  # [T, XW]
    if BATCH_TILES == 2:
        x_ptrs2 = x_pairs + (tl.minimum(m_first + g + 8, M - 1) * (stride_xm // 2))[:, None] + x_col
    if GROUP_K != 0:
        s_off = ((k_first // GROUP_K) * stride_sg)[:, None] + cols

    zero_f = tl.zeros((T, 4), dtype=tl.float32)
    zero_t = tl.zeros((T,), dtype=tl.float32)
    # y[m = 2t] and y[m = 2t + 1] at the thread's 4 columns (tot*_2: m + 8); per-channel: the plain sums,
    # and the x-sums over all of K in xs_tot*
    tot0 = zero_f
    tot1 = zero_f
    tot0_2 = zero_f
    tot1_2 = zero_f
    xs_tot0 = zero_t
    xs_tot1 = zero_t
    xs_tot0_2 = zero_t
    xs_tot1_2 = zero_t
    scale = zero_f
    shift = zero_f
    for step in tl.range(0, steps_per_split, num_stages=NUM_STAGES):
        k_step = k_first + step * K_STRIDE  # [T]: for the masks of ragged K
        for grp in tl.static_range(SUBS // GROUP_SUBS):
            # fresh group accumulators for each batch tile
            a00, a01, a02, a03, a10, a11, a12, a13 = zero_t, zero_t, zero_t, zero_t, zero_t, zero_t, zero_t, zero_t
            xs0, xs1, xs2, xs3 = zero_t, zero_t, zero_t, zero_t
            b00, b01, b02, b03, b10, b11, b12, b13 = zero_t, zero_t, zero_t, zero_t, zero_t, zero_t, zero_t, zero_t
            ys0, ys1, ys2, ys3 = zero_t, zero_t, zero_t, zero_t
            for sub in tl.static_range(GROUP_SUBS):
                sub_i = grp * GROUP_SUBS + sub  # static
                rows = (k_step + sub_i * 32) // E + row0
                w_sub = w_ptrs + sub_i * BITS * stride_wk  # a sub-block is BITS word rows
                if BITS == 8:
                    R0, R1 = _word_pairs(w_sub, rows, k_words, pshift, BITS, EVEN_K, IS_BF16, EMULATE)
                    R2, R3 = _word_pairs(w_sub + stride_wk, rows + 1, k_words, pshift, BITS, EVEN_K, IS_BF16, EMULATE)
                else:
                    R0, R1, R2, R3 = _word_pairs(w_sub, rows, k_words, pshift, BITS, EVEN_K, IS_BF16, EMULATE)
                lo0, lo1, hi0, hi1 = _x_pairs(x_ptrs, sub_i, k_step + sub_i * 32, base, K, X_HI, XW, EVEN_K)
                a00, a01, a02, a03, a10, a11, a12, a13, xs0, xs1, xs2, xs3 = _sub_block_mmas(
                    R0, R1, R2, R3, lo0, lo1, hi0, hi1, a00, a01, a02, a03, a10, a11, a12, a13, xs0, xs1, xs2, xs3,
                    ones, BITS, X_TERM, IS_BF16, EMULATE)
                if BATCH_TILES == 2:
                    lo0, lo1, hi0, hi1 = _x_pairs(x_ptrs2, sub_i, k_step + sub_i * 32, base, K, X_HI, XW, EVEN_K)
                    b00, b01, b02, b03, b10, b11, b12, b13, ys0, ys1, ys2, ys3 = _sub_block_mmas(
                        R0, R1, R2, R3, lo0, lo1, hi0, hi1, b00, b01, b02, b03, b10, b11, b12, b13, ys0, ys1, ys2,
                        ys3, ones, BITS, X_TERM, IS_BF16, EMULATE)
            if GROUP_K == 0:  # per-channel: sums and x-sums now, scales after the loop
                if X_TERM:
                    xs_tot0 += xs0
                    xs_tot1 += xs1
                    if BATCH_TILES == 2:
                        xs_tot0_2 += ys0
                        xs_tot1_2 += ys1
            else:  # the group's scale and zero, once per column
                s_ptrs = s_off + grp * stride_sg
                if EVEN_K:
                    scale = tl.load(scale_ptr + s_ptrs).to(tl.float32)
                else:
                    g_ok = ((k_step + grp * GROUP_K) < K)[:, None]
                    scale = tl.load(scale_ptr + s_ptrs, mask=g_ok, other=0.0).to(tl.float32)
                if X_TERM:
                    if SYMMETRIC:
                        shift = (C - SYM_ZERO) * scale
                    elif EVEN_K:
                        shift = (C - tl.load(zero_ptr + s_ptrs).to(tl.float32)) * scale
                    else:
                        zero = tl.load(zero_ptr + s_ptrs, mask=g_ok, other=0.0)
                        shift = (C - zero.to(tl.float32)) * scale
            tot0, tot1 = _add_group(tot0, tot1, a00, a01, a02, a03, a10, a11, a12, a13, xs0, xs1, scale, shift,
                                    GROUP_K != 0, X_TERM and GROUP_K != 0)
            if BATCH_TILES == 2:
                tot0_2, tot1_2 = _add_group(tot0_2, tot1_2, b00, b01, b02, b03, b10, b11, b12, b13, ys0, ys1, scale,
                                            shift, GROUP_K != 0, X_TERM and GROUP_K != 0)

        w_ptrs += (K_STRIDE // E) * stride_wk
        x_ptrs += K_STRIDE // 2
        if BATCH_TILES == 2:
            x_ptrs2 += K_STRIDE // 2
        if GROUP_K != 0:
            s_off += (K_STRIDE // GROUP_K) * stride_sg

    if GROUP_K == 0:  # per-channel scales (and zeros) on the finished sums
        col_scale = tl.load(scale_ptr + cols).to(tl.float32)
        if SYMMETRIC:
            col_shift = (C - SYM_ZERO) * col_scale
        else:
            col_shift = (C - tl.load(zero_ptr + cols).to(tl.float32)) * col_scale
        tot0 = tot0 * col_scale
        tot1 = tot1 * col_scale
        tot0_2 = tot0_2 * col_scale
        tot1_2 = tot1_2 * col_scale
        if X_TERM:
            tot0 += col_shift * xs_tot0[:, None]
            tot1 += col_shift * xs_tot1[:, None]
            tot0_2 += col_shift * xs_tot0_2[:, None]
            tot1_2 += col_shift * xs_tot1_2[:, None]
    _store_rows(tot0, tot1, 0, m_first, M, N, pid_n, pid_k, out_ptr, out_ptr, stride_om, bias_ptr, ws_ptr, WARPS_N,
                WARPS_K, False, HAS_BIAS, USE_WORKSPACE)
    if BATCH_TILES == 2:
        _store_rows(tot0_2, tot1_2, 1, m_first, M, N, pid_n, pid_k, out_ptr, out_ptr, stride_om, bias_ptr, ws_ptr,
                    WARPS_N, WARPS_K, False, HAS_BIAS, USE_WORKSPACE)
