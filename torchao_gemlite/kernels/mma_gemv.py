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
Loads: every load of a warp step (words, x, the groups' scales and zeros as raw words) is issued together
by ``_step_loads`` through vector_load.py, which the compiler keeps where it stands: NUM_STAGES = 1 at the
top of the step, 2 a step ahead, carried in registers while the step before it unpacks and multiplies (the
load latency, not the arithmetic, bounded this kernel). Hence N a multiple of 4 and aligned row pieces
(``mma_operands_aligned``).
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

import torch
import triton
import triton.language as tl

from .configs import DENSE_MIN_M, MMA_TILE_M, LaunchConfig
from .half2 import fma2
from .launch import cdiv
from .mma_sync import mma_16816
from .vector_load import load2, load4


class MmaLaunch(NamedTuple):
    """Grid and launch constexprs shared by the mma kernels (this one, mma_batch.py and dynamic_mma_gemv.py)."""
    grid: tuple
    steps_per_split: int
    m_tiles: int
    split: int
    meta: dict


def mma_launch(c: LaunchConfig, m: int, n: int, k: int, group_k: int) -> MmaLaunch:
    """Checks ``c`` and derives the launch: block_n // 32 warps along N and the rest of num_warps along K,
    block_k codes a warp step, the K split without empty splits, one 8-row batch tile up to M = 8, two
    up to 16, and past 16 one CTA per 16 rows (M tiles); for "mma_batch" (mma_batch.py) CTAs of block_m rows
    (8..64), as many 8-row batch tiles as M needs up to block_m // 8 (each count is its own compile).
    ``group_k``: the group size, 0 for per-channel."""
    if m >= DENSE_MIN_M:  # where prefill starts; also keeps the split-K workspace offsets within int32
        raise ValueError(f"the mma kernels take M < {DENSE_MIN_M}, got M={m}")
    warps_n = c.block_n // 32
    if (not warps_n or c.block_n % 32 or c.num_warps % warps_n or c.block_k % 32
            or (group_k and c.block_k % group_k and c.kernel != "mma_batch")):
        raise ValueError(f"mma config block_n={c.block_n}, num_warps={c.num_warps}, block_k={c.block_k} is not "
                         "supported: block_n a multiple of 32 dividing 32 * num_warps, block_k a multiple of 32"
                         + ("" if c.kernel == "mma_batch" else f" and of the group size {group_k or k}"))
    warps_k = c.num_warps // warps_n
    warp_steps = cdiv(k, c.block_k)
    steps_per_split = cdiv(warp_steps, max(1, c.split_k) * warps_k)
    split = cdiv(warp_steps, steps_per_split * warps_k)  # no empty splits
    if c.kernel == "mma_batch":  # mma_batch.py: block_m rows a CTA, in 8-row batch tiles
        if c.block_m not in (8, 16, 32, 64) or (group_k and group_k % c.block_k and c.block_k % group_k):
            raise ValueError(f"mma_batch config block_m={c.block_m}, block_k={c.block_k} is not supported: block_m "
                             f"8, 16, 32 or 64, block_k a divisor or a multiple of the group size {group_k}")
        tile_m = min(c.block_m, cdiv(m, 8) * 8)
        m_tiles, batch_tiles = cdiv(m, tile_m), tile_m // 8
    else:
        m_tiles, batch_tiles = cdiv(m, MMA_TILE_M), 1 if m <= MMA_TILE_M // 2 else 2
    meta = dict(BATCH_TILES=batch_tiles, WARPS_N=warps_n, WARPS_K=warps_k, BLOCK_K=c.block_k,
                EVEN_K=k == split * steps_per_split * warps_k * c.block_k, EVEN_N=n % c.block_n == 0,
                USE_WORKSPACE=split > 1, num_warps=c.num_warps)
    return MmaLaunch((cdiv(n, c.block_n) * m_tiles, split), steps_per_split, m_tiles, split, meta)


def mma_operands_aligned(qdata: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None) -> bool:
    """Whether the mma kernels' vector loads can read the weight as it lies (vector_load.py): each thread reads
    4 columns of a word row (16 bytes) and of a group-wise scale and zero row (8 bytes for 2-byte scales, 16 for
    fp32), so N, the row strides and the base addresses must keep those pieces aligned; per-channel scales
    ([N] or [1, N]) are read per element. Else a weight-only call runs the GEMV or the GEMM, and A8W4 its int8
    GEMM (weights narrowed to an odd column range, N not a multiple of 4)."""
    def aligned(t: torch.Tensor, size: int) -> bool:
        return (t.stride(-1) == 1 and (t.stride(0) * t.element_size()) % size == 0 and t.data_ptr() % size == 0)
    group_wise = scale.dim() == 2 and scale.shape[0] > 1
    piece = 4 * scale.element_size()
    return (qdata.shape[1] % 4 == 0 and aligned(qdata, 16)
            and (not group_wise or (aligned(scale, piece) and (zero is None or aligned(zero, piece)))))


@triton.jit
def _join4(v0, v1, v2, v3):
    """Four [T] tensors -> [T, 4], column c from v_c."""
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
def _a_operands(w, pshift, BITS: tl.constexpr, IS_BF16: tl.constexpr, EMULATE: tl.constexpr):
    """The A registers of one 32-code sub-block from the thread's words ``w`` (a tuple of [T] int32, one per
    column n0..n0+3; 8-bit: word rows 2t and 2t + 1, four each): for MMA j in {0, 1}, (ra_c) for c = 0..3
    then (rb_c): ra_c holds the pair at register 2j of column c (MMA columns 2t, 2t + 1), rb_c register
    2j + 1 (columns 2t + 8, 2t + 9)."""
    out = ()
    for j in tl.static_range(2):
        ra = ()
        rb = ()
        for c in tl.static_range(4):
            if BITS == 8:
                src = w[4 * j + c]
                ra = ra + (_byte_pair(src, 0, IS_BF16, EMULATE),)
                rb = rb + (_byte_pair(src, 8, IS_BF16, EMULATE),)
            else:
                src = w[c]
                if BITS != 4:  # 2- and 1-bit words hold the codes of 2 or 4 threads
                    src = src >> pshift
                ra = ra + (_code_pair(src, 2 * j * BITS, BITS, IS_BF16, EMULATE),)
                rb = rb + (_code_pair(src, (2 * j + 1) * BITS, BITS, IS_BF16, EMULATE),)
        out = out + ra + rb
    return out


@triton.jit
def _sub_block_mmas(A, x4, a00, a01, a02, a03, a10, a11, a12, a13, xs0, xs1, xs2, xs3, ones, BITS: tl.constexpr,
                    X_TERM: tl.constexpr, IS_BF16: tl.constexpr, EMULATE: tl.constexpr):
    """The MMAs of one 32-code sub-block (A: ``_a_operands``) against one 8-row batch tile (x4: the thread's x
    pairs lo0, lo1, hi0, hi1): per j, both column tiles and the x-sum; returns the 12 accumulators (tile p
    register e as a_pe, the x-sum as xs)."""
    lo0, lo1, hi0, hi1 = x4
    for j in tl.static_range(2):
        if BITS == 8:
            b0, b1 = _x_fragment(lo0, lo1, EMULATE) if j == 0 else _x_fragment(hi0, hi1, EMULATE)
        else:
            b0, b1 = _x_fragment(lo0, hi0, EMULATE) if j == 0 else _x_fragment(lo1, hi1, EMULATE)
        a00, a01, a02, a03 = mma_16816(A[8 * j], A[8 * j + 1], A[8 * j + 4], A[8 * j + 5], b0, b1, a00, a01, a02, a03,
                                       IS_BF16, EMULATE)
        a10, a11, a12, a13 = mma_16816(A[8 * j + 2], A[8 * j + 3], A[8 * j + 6], A[8 * j + 7], b0, b1, a10, a11, a12,
                                       a13, IS_BF16, EMULATE)
        if X_TERM:
            xs0, xs1, xs2, xs3 = mma_16816(ones, ones, ones, ones, b0, b1, xs0, xs1, xs2, xs3, IS_BF16, EMULATE)
    return a00, a01, a02, a03, a10, a11, a12, a13, xs0, xs1, xs2, xs3


@triton.jit
def _x_load(ptrs, ok, X_HI: tl.constexpr, XW: tl.constexpr, PRED: tl.constexpr, FILL: tl.constexpr,
            EMULATE: tl.constexpr):
    """The thread's x pairs of one sub-block, (lo0, lo1, hi0, hi1): the registers' low lanes at ``ptrs`` and the
    high ones X_HI codes on. XW = 4 (X_HI = 4: 8- and 4-bit, the four pairs adjacent): one 16-byte load; XW = 2:
    two 8-byte loads. x is read by every warp of the SM: kept in L1 (evict last)."""
    if XW == 4:
        lo0, lo1, hi0, hi1 = load4(ptrs, ok, ".nc.L1::evict_last", PRED, FILL, EMULATE)
    else:
        lo0, lo1 = load2(ptrs, ok, ".nc.L1::evict_last", PRED, FILL, EMULATE)
        hi0, hi1 = load2(ptrs + X_HI // 2, ok, ".nc.L1::evict_last", PRED, FILL, EMULATE)
    return lo0, lo1, hi0, hi1


@triton.jit
def _scale_loads(s_base, z_base, k_step, live, K, stride_sw, GROUPS: tl.constexpr, GROUP_K: tl.constexpr,
                 HAS_ZERO: tl.constexpr, SCALE_WORDS: tl.constexpr, EVEN_K: tl.constexpr, PRED: tl.constexpr,
                 EMULATE: tl.constexpr):
    """The raw words of GROUPS consecutive scale rows (and zero rows) at the thread's 4 columns, from the row at
    ``s_base`` (``z_base``): SCALE_WORDS words a row; past K (not EVEN_K) they read as 0."""
    scales = ()
    zeros = ()
    for grp in tl.static_range(GROUPS):
        ok = live
        if not EVEN_K:
            ok = live & ((k_step + grp * GROUP_K) < K).to(tl.int32)
        offset = grp * stride_sw
        if SCALE_WORDS == 4:
            scales = scales + (load4(s_base + offset, ok, ".nc.L1::no_allocate", PRED, not EVEN_K, EMULATE),)
            if HAS_ZERO:
                zeros = zeros + (load4(z_base + offset, ok, ".nc.L1::no_allocate", PRED, not EVEN_K, EMULATE),)
        else:
            scales = scales + (load2(s_base + offset, ok, ".nc.L1::no_allocate", PRED, not EVEN_K, EMULATE),)
            if HAS_ZERO:
                zeros = zeros + (load2(z_base + offset, ok, ".nc.L1::no_allocate", PRED, not EVEN_K, EMULATE),)
    return scales, zeros


@triton.jit
def _code_layout(t, BITS: tl.constexpr):
    """Where thread t of a quad finds its codes in a 32-code sub-block (see the docstring): its first word row, the
    k of its register 0 (for x), and the shift that brings its codes down in 2- and 1-bit words (8-bit: unused)."""
    if BITS == 8:
        row0 = 2 * t
        base = 8 * t
        pshift = t
    else:
        L: tl.constexpr = 16 // BITS
        row0 = t // (L // 4)
        base = row0 * 2 * L + 4 * (t % (L // 4))
        pshift = 4 * BITS * (t % (L // 4))
    return row0, base, pshift


@triton.jit
def _step_loads(w_base, x_base, x_base2, s_base, z_base, k_step, live, K, stride_wk, stride_sw,
                BITS: tl.constexpr, SUBS: tl.constexpr, GROUP_K: tl.constexpr, X_HI: tl.constexpr, XW: tl.constexpr,
                BATCH_TILES: tl.constexpr, HAS_ZERO: tl.constexpr, SCALE_WORDS: tl.constexpr, EVEN_K: tl.constexpr,
                PRED: tl.constexpr, EMULATE: tl.constexpr, INT8_X: tl.constexpr = False):
    """Every load of one warp step, issued together: the words of each sub-block (a tuple of [T] int32 per
    column, 8-bit: two word rows), its x for each batch tile (16-bit x: the pairs of ``_x_load``; INT8_X, the
    A8W4 kernel: the thread's 8 bytes as two words), and the raw words of each group's scales and zeros
    (SCALE_WORDS a thread: 4 columns of 2- or 4-byte values). ``k_step`` [T]: the step's first code for the
    thread's warp; ``live`` [T] int32: whether the step exists (a prefetch past the split's last step reads
    nothing). Past K (not EVEN_K) x, scales and zeros read as 0 and the words are not read: their codes
    multiply zeros."""
    words = ()
    xs = ()
    xs2 = ()
    for sub in tl.static_range(SUBS):
        ok = live
        if not EVEN_K:
            ok = live & ((k_step + sub * 32) < K).to(tl.int32)
        w_sub = w_base + sub * BITS * stride_wk  # a sub-block is BITS word rows
        if BITS == 8:
            words = words + (load4(w_sub, ok, ".nc.L1::no_allocate", PRED, False, EMULATE)
                             + load4(w_sub + stride_wk, ok, ".nc.L1::no_allocate", PRED, False, EMULATE),)
        else:
            words = words + (load4(w_sub, ok, ".nc.L1::no_allocate", PRED, False, EMULATE),)
        if INT8_X:  # a sub-block is 8 words of x, written by the quantization that a PDL launch overlaps: not .nc
            xs = xs + (load2(x_base + sub * 8, ok, ".L1::evict_last", PRED, not EVEN_K, EMULATE),)
            if BATCH_TILES == 2:
                xs2 = xs2 + (load2(x_base2 + sub * 8, ok, ".L1::evict_last", PRED, not EVEN_K, EMULATE),)
        else:  # 16 words (pairs)
            xs = xs + (_x_load(x_base + sub * 16, ok, X_HI, XW, PRED, not EVEN_K, EMULATE),)
            if BATCH_TILES == 2:
                xs2 = xs2 + (_x_load(x_base2 + sub * 16, ok, X_HI, XW, PRED, not EVEN_K, EMULATE),)
    GROUPS: tl.constexpr = SUBS // (GROUP_K // 32) if GROUP_K != 0 else 0
    scales, zeros = _scale_loads(s_base, z_base, k_step, live, K, stride_sw, GROUPS, GROUP_K, HAS_ZERO, SCALE_WORDS,
                                 EVEN_K, PRED, EMULATE)
    return words, xs, xs2, scales, zeros


@triton.jit
def _as_f32(raw, DTYPE: tl.constexpr):
    """The raw words of 4 columns' scales (or zeros) of dtype DTYPE (fp16, bf16: two words; fp32: four) as
    four fp32 [T] tensors, one a column."""
    if DTYPE == tl.float32:
        w0, w1, w2, w3 = raw
        c0 = w0.to(tl.float32, bitcast=True)
        c1 = w1.to(tl.float32, bitcast=True)
        c2 = w2.to(tl.float32, bitcast=True)
        c3 = w3.to(tl.float32, bitcast=True)
    elif DTYPE == tl.bfloat16:  # a bf16 is the top half of its fp32
        w0, w1 = raw
        c0 = (w0 << 16).to(tl.float32, bitcast=True)
        c1 = (w0 & -65536).to(tl.float32, bitcast=True)
        c2 = (w1 << 16).to(tl.float32, bitcast=True)
        c3 = (w1 & -65536).to(tl.float32, bitcast=True)
    else:
        w0, w1 = raw
        c0 = w0.to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)
        c1 = (w0 >> 16).to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)
        c2 = w1.to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)
        c3 = (w1 >> 16).to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)
    return c0, c1, c2, c3


@triton.jit
def _by_column(a00, a01, a02, a03, a10, a11, a12, a13):
    """The MMA accumulators of both column tiles as 8 sums: columns n0..n0+3 for m = 2t, then for m = 2t + 1
    (tile p rows g, g + 8 are columns n0 + 2p, n0 + 2p + 1; registers 0, 1: m = 2t, 2t + 1 of row g)."""
    return a00, a02, a10, a12, a01, a03, a11, a13


@triton.jit
def _add_group(tot, sums, xs0, xs1, scale, shift, HAS_SCALE: tl.constexpr, X_TERM: tl.constexpr):
    """tot + scale * sums + shift * (the x-sums xs0 for m = 2t, xs1 for m = 2t + 1), per column: tot, sums and
    the result hold 8 [T] fp32 values ordered as ``_by_column``'s; scale and shift 4 [T] values, one a column.
    Without HAS_SCALE (per-channel, inside the loop) tot + sums."""
    out = ()
    for i in tl.static_range(8):
        if HAS_SCALE:
            v = tot[i] + scale[i % 4] * sums[i]
        else:
            v = tot[i] + sums[i]
        if X_TERM:
            if i < 4:
                v += shift[i % 4] * xs0
            else:
                v += shift[i % 4] * xs1
        out = out + (v,)
    return out


_TILE_M = tl.constexpr(MMA_TILE_M)


@triton.jit
def _tile_of(pid, m_tiles):
    """(column tile, first batch row) of program ``pid``: the M tiles of a column tile are neighbours."""
    return pid // m_tiles, (pid % m_tiles) * _TILE_M


@triton.jit
def _thread_lanes(pid_n, T: tl.constexpr, WARPS_N: tl.constexpr):
    """(g, t, warp_k, n0) of each thread, lane = 4 g + t: warp_k its warp's index along K, n0 = 4 g + its warp's
    first of 32 columns (the thread's columns are n0..n0+3), all [T] from one arange (one layout)."""
    i = tl.arange(0, T)
    lane = i % 32
    g = lane // 4
    return g, lane % 4, i // (32 * WARPS_N), pid_n * (32 * WARPS_N) + ((i // 32) % WARPS_N) * 32 + 4 * g


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

    g, t, warp_k, n0 = _thread_lanes(pid_n, T, WARPS_N)  # the thread's columns: n0..n0+3, n0 = 4 g
    if not EVEN_N:
        n0 = tl.minimum(n0, N - 4)  # N is a multiple of 4: a valid 16-byte row piece, never stored
    # the thread's codes in a 32-code sub-block: word row(s) and the k of register 0 (see the docstring)
    row0, base, pshift = _code_layout(t, BITS)
    X_HI: tl.constexpr = 4 if BITS == 8 else 16 // BITS  # codes from register 0's x to register 2's
    ones = tl.full((T,), ONES, tl.int32)
    # the thread's addresses at its first step; a step moves WARPS_K * BLOCK_K along K
    k_first = (pid_k * steps_per_split * WARPS_K + warp_k) * BLOCK_K  # [T]
    K_STRIDE: tl.constexpr = WARPS_K * BLOCK_K
    W_STEP: tl.constexpr = K_STRIDE // E  # word rows a step
    GROUP_STEP: tl.constexpr = GROUP_K if GROUP_K != 0 else K_STRIDE
    S_STEP: tl.constexpr = K_STRIDE // GROUP_STEP  # scale rows a step (per-channel: unused)
    w_base = w_ptr + (k_first // E + row0) * stride_wk + n0
    # x as int32 pairs, batch row g (and g + 8); rows past M: clamped, never stored
    XW: tl.constexpr = 4 if X_HI == 4 and WIDE_X else 2  # x pairs a load (_x_load)
    x_pairs = x_ptr.to(tl.pointer_type(tl.int32))
    x_col = (k_first + base) // 2
    x_base = x_pairs + tl.minimum(m_first + g, M - 1) * (stride_xm // 2) + x_col
    x_base2 = x_base
    if BATCH_TILES == 2:
        x_base2 = x_pairs + tl.minimum(m_first + g + 8, M - 1) * (stride_xm // 2) + x_col
    # scales and zeros as raw 32-bit words: SCALE_WORDS a thread for its 4 columns
    S_DTYPE: tl.constexpr = scale_ptr.dtype.element_ty
    SCALE_WORDS: tl.constexpr = 4 if S_DTYPE == tl.float32 else 2
    S_PER_WORD: tl.constexpr = 4 // SCALE_WORDS  # scales a 32-bit word
    HAS_ZERO: tl.constexpr = X_TERM and not SYMMETRIC
    stride_sw = stride_sg // S_PER_WORD  # a scale row in words
    s_base = scale_ptr.to(tl.pointer_type(tl.int32))
    z_base = zero_ptr.to(tl.pointer_type(tl.int32))
    if GROUP_K != 0:
        s_word = ((k_first // GROUP_K) * stride_sg + n0) // S_PER_WORD
        s_base += s_word
        z_base += s_word
    PREFETCH: tl.constexpr = NUM_STAGES == 2
    PRED: tl.constexpr = PREFETCH or not EVEN_K
    live = tl.full((T,), 1, tl.int32)

    zero_t = tl.zeros((T,), dtype=tl.float32)
    # y[m = 2t] and y[m = 2t + 1] at the thread's 4 columns, one [T] tensor each (tot_2: m + 8); per-channel:
    # the plain sums, and the x-sums over all of K in xs_tot*
    tot = (zero_t, zero_t, zero_t, zero_t, zero_t, zero_t, zero_t, zero_t)
    tot_2 = tot
    xs_tot0 = zero_t
    xs_tot1 = zero_t
    xs_tot0_2 = zero_t
    xs_tot1_2 = zero_t
    scale = (zero_t, zero_t, zero_t, zero_t)
    shift = scale
    # NUM_STAGES = 2: every load of a step is issued a step ahead (vector_load.py keeps it there), so a warp's
    # loads are in flight while it unpacks and multiplies the previous step; 1: at the top of its own step
    if PREFETCH:
        ahead = _step_loads(w_base, x_base, x_base2, s_base, z_base, k_first, live, K, stride_wk, stride_sw, BITS,
                            SUBS, GROUP_K, X_HI, XW, BATCH_TILES, HAS_ZERO, SCALE_WORDS, EVEN_K, PRED, EMULATE)
    for step in tl.range(0, steps_per_split, num_stages=1):
        k_step = k_first + step * K_STRIDE  # [T]
        if PREFETCH:
            loads = ahead
            nxt = step + 1
            ahead = _step_loads(w_base + nxt * W_STEP * stride_wk, x_base + nxt * (K_STRIDE // 2),
                                x_base2 + nxt * (K_STRIDE // 2), s_base + nxt * S_STEP * stride_sw,
                                z_base + nxt * S_STEP * stride_sw, k_step + K_STRIDE,
                                live * (nxt < steps_per_split).to(tl.int32), K, stride_wk, stride_sw, BITS, SUBS,
                                GROUP_K, X_HI, XW, BATCH_TILES, HAS_ZERO, SCALE_WORDS, EVEN_K, PRED, EMULATE)
        else:
            loads = _step_loads(w_base + step * W_STEP * stride_wk, x_base + step * (K_STRIDE // 2),
                                x_base2 + step * (K_STRIDE // 2), s_base + step * S_STEP * stride_sw,
                                z_base + step * S_STEP * stride_sw, k_step, live, K, stride_wk,
                                stride_sw, BITS, SUBS, GROUP_K, X_HI, XW, BATCH_TILES, HAS_ZERO, SCALE_WORDS, EVEN_K,
                                PRED, EMULATE)
        words, xs, xs2, scales, zeros = loads
        for grp in tl.static_range(SUBS // GROUP_SUBS):
            # fresh group accumulators for each batch tile
            a00, a01, a02, a03, a10, a11, a12, a13 = zero_t, zero_t, zero_t, zero_t, zero_t, zero_t, zero_t, zero_t
            xs0, xs1, xs2_, xs3 = zero_t, zero_t, zero_t, zero_t
            b00, b01, b02, b03, b10, b11, b12, b13 = zero_t, zero_t, zero_t, zero_t, zero_t, zero_t, zero_t, zero_t
            ys0, ys1, ys2, ys3 = zero_t, zero_t, zero_t, zero_t
            for sub in tl.static_range(GROUP_SUBS):
                A = _a_operands(words[grp * GROUP_SUBS + sub], pshift, BITS, IS_BF16, EMULATE)
                a00, a01, a02, a03, a10, a11, a12, a13, xs0, xs1, xs2_, xs3 = _sub_block_mmas(
                    A, xs[grp * GROUP_SUBS + sub], a00, a01, a02, a03, a10, a11, a12, a13, xs0, xs1, xs2_, xs3, ones, BITS, X_TERM,
                    IS_BF16, EMULATE)
                if BATCH_TILES == 2:
                    b00, b01, b02, b03, b10, b11, b12, b13, ys0, ys1, ys2, ys3 = _sub_block_mmas(
                        A, xs2[grp * GROUP_SUBS + sub], b00, b01, b02, b03, b10, b11, b12, b13, ys0, ys1, ys2, ys3, ones, BITS, X_TERM,
                        IS_BF16, EMULATE)
            if GROUP_K == 0:  # per-channel: sums and x-sums now, scales after the loop
                if X_TERM:
                    xs_tot0 += xs0
                    xs_tot1 += xs1
                    if BATCH_TILES == 2:
                        xs_tot0_2 += ys0
                        xs_tot1_2 += ys1
            else:  # the group's scale and zero, once per column
                scale = _as_f32(scales[grp], S_DTYPE)
                if X_TERM:
                    if SYMMETRIC:
                        shift = ((C - SYM_ZERO) * scale[0], (C - SYM_ZERO) * scale[1], (C - SYM_ZERO) * scale[2],
                                 (C - SYM_ZERO) * scale[3])
                    else:
                        z0, z1, z2, z3 = _as_f32(zeros[grp], S_DTYPE)
                        shift = ((C - z0) * scale[0], (C - z1) * scale[1], (C - z2) * scale[2], (C - z3) * scale[3])
            tot = _add_group(tot, _by_column(a00, a01, a02, a03, a10, a11, a12, a13), xs0, xs1, scale, shift,
                             GROUP_K != 0, X_TERM and GROUP_K != 0)
            if BATCH_TILES == 2:
                tot_2 = _add_group(tot_2, _by_column(b00, b01, b02, b03, b10, b11, b12, b13), ys0, ys1, scale, shift,
                                   GROUP_K != 0, X_TERM and GROUP_K != 0)

    if GROUP_K == 0:  # per-channel scales (and zeros) on the finished sums
        col_scale = ()
        col_shift = ()
        for c in tl.static_range(4):
            s_c = tl.load(scale_ptr + n0 + c).to(tl.float32)
            col_scale = col_scale + (s_c,)
            if SYMMETRIC:
                col_shift = col_shift + ((C - SYM_ZERO) * s_c,)
            else:
                col_shift = col_shift + ((C - tl.load(zero_ptr + n0 + c).to(tl.float32)) * s_c,)
        zeros8 = (zero_t, zero_t, zero_t, zero_t, zero_t, zero_t, zero_t, zero_t)
        tot = _add_group(zeros8, tot, xs_tot0, xs_tot1, col_scale, col_shift, True, X_TERM)
        tot_2 = _add_group(zeros8, tot_2, xs_tot0_2, xs_tot1_2, col_scale, col_shift, True, X_TERM)
    tot0 = _join4(tot[0], tot[1], tot[2], tot[3])
    tot1 = _join4(tot[4], tot[5], tot[6], tot[7])
    tot0_2 = _join4(tot_2[0], tot_2[1], tot_2[2], tot_2[3])
    tot1_2 = _join4(tot_2[4], tot_2[5], tot_2[6], tot_2[7])
    _store_rows(tot0, tot1, 0, m_first, M, N, pid_n, pid_k, out_ptr, out_ptr, stride_om, bias_ptr, ws_ptr, WARPS_N,
                WARPS_K, False, HAS_BIAS, USE_WORKSPACE)
    if BATCH_TILES == 2:
        _store_rows(tot0_2, tot1_2, 1, m_first, M, N, pid_n, pid_k, out_ptr, out_ptr, stride_om, bias_ptr, ws_ptr,
                    WARPS_N, WARPS_K, False, HAS_BIAS, USE_WORKSPACE)
