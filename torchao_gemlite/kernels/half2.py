"""Two codes per instruction: packed half-precision (f16x2 / bf16x2) helpers in inline PTX.

The fp32 unpacking of unpack.py costs two integer ops and two FMAs per code, which
capped the decode kernel at about a quarter of the HBM bandwidth. Here every 32-bit register
holds a pair of 16-bit lanes (fp16 for fp16 activations, bf16 for bf16), so each
instruction handles two codes:

- ``pair_codes`` takes codes 2p and 2p+1 of each word with one PRMT (the bytes that
  hold them into the two lanes) and one LOP3 (mask the code, OR in the exponent of the
  magic constant 1024 for fp16 / 128 for bf16), then one FMA turns
  magic + q into the exact small value (q - CENTER) * 2^-KSHIFT.
- ``fma2`` multiply-accumulates lane-wise; ``lane_sum`` adds the two lanes in fp32.
- ``dequant_codes`` gives the tensor-core kernel its weight tile in the activation dtype,
  two codes an FMA (the operand is rounded to 16 bits for the MMA anyway).

Everything on the integer side is exact. A kernel accumulates at most PF pairs (PF
products a lane; ``pairs_per_flush``) in 16-bit before moving the sum to fp32; CENTER
and KSHIFT keep that partial sum below max |x| so fp16 cannot overflow (``pair_kshift``),
and sums of x are accumulated as x / PF for the same reason (``x_sum_weights``).
The price is range at the small end: products below 2^-14 are fp16 subnormals, so
with fp16 activations whose entries are all below about 1e-3 (1e-2 for 8-bit codes) the
error grows past fp16 rounding; ``LaunchConfig(half_mac=False)`` selects the fp32 loop.
Under Triton's interpreter (EMULATE) the same steps run as plain integer and fp16
arithmetic, so CPU tests exercise the algorithm; the PTX runs on the GPU. 8-bit codes
with bf16 cannot use this path (128 + q needs q < 128): kernels use unpack.py there.
"""

import triton
import triton.language as tl


def pairs_per_flush(bits: int) -> int:
    """Pairs a kernel accumulates in 16-bit before the fp32 add: 4 (8-bit words hold only 2)."""
    return min(4, 16 // bits)


def pair_kshift(bits: int) -> int:
    """KSHIFT of ``pair_codes``: a flush's partial sum, pairs * 2^(BITS-1) * 2^-KSHIFT * |x|, stays <= |x|."""
    return (pairs_per_flush(bits).bit_length() - 1) + bits - 1


def half_mac_supported(bits: int, is_bf16: bool) -> bool:
    """Whether the packed-half path can take this format (bf16's magic 128 leaves 7 code bits)."""
    return bits <= 4 or not is_bf16


@triton.jit
def _splat(like, VALUE: tl.constexpr):
    return tl.full(like.shape, VALUE, tl.int32)


@triton.jit
def _lane(pairs, LANE: tl.constexpr):
    """Emulation: lane LANE of fp16 pairs as fp32."""
    return ((pairs >> (16 * LANE)) & 0xFFFF).to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)


@triton.jit
def _bits(value):
    """Emulation: fp32 rounded to fp16, as its 16 bits in the low half of an int32."""
    return value.to(tl.float16).to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF


@triton.jit
def pair_codes(words, PAIR: tl.constexpr, BITS: tl.constexpr, KSHIFT: tl.constexpr, IS_BF16: tl.constexpr,
               EMULATE: tl.constexpr):
    """Codes 2*PAIR and 2*PAIR+1 of every int32 word as a 16-bit pair (low lane: the lower
    slot), each lane holding (q - 2^(BITS-1)) * 2^-KSHIFT exactly; int32 result."""
    LO_BIT: tl.constexpr = 2 * PAIR * BITS
    HI_BIT: tl.constexpr = LO_BIT + BITS
    # PRMT picks byte LO_BIT // 8 of (words >> LO_BIT % 8) into lane 0 and byte HI_BIT // 8
    # of (words >> HI_BIT % 8) into lane 1; codes never straddle a byte.
    SEL_LO: tl.constexpr = LO_BIT // 8
    SEL_HI: tl.constexpr = 4 + HI_BIT // 8
    SEL: tl.constexpr = SEL_LO | (SEL_LO << 4) | (SEL_HI << 8) | (SEL_HI << 12)
    MASK: tl.constexpr = ((1 << BITS) - 1) * 0x00010001
    if IS_BF16:  # 128.0 = 0x4300; value bits: exponent (127 + e) << 7
        MAGIC: tl.constexpr = 0x43004300
        SCALE: tl.constexpr = (127 - KSHIFT) << 7
        OFF: tl.constexpr = 0x8000 | ((134 - KSHIFT) << 7) | (1 << (BITS - 1))  # -(128 + c) * 2^-k
    else:  # 1024.0 = 0x6400; value bits: exponent (15 + e) << 10
        MAGIC: tl.constexpr = 0x64006400
        SCALE: tl.constexpr = (15 - KSHIFT) << 10
        OFF: tl.constexpr = 0x8000 | ((25 - KSHIFT) << 10) | (1 << (BITS - 1))  # -(1024 + c) * 2^-k
    SCALE2: tl.constexpr = SCALE | (SCALE << 16)
    OFF2: tl.constexpr = (OFF | (OFF << 16)) - (1 << 32)  # as a signed int32
    src_lo = words >> (LO_BIT % 8)
    src_hi = words >> (HI_BIT % 8)
    if EMULATE:  # the PRMT + LOP3 as shifts and masks, then the FMA lane by lane
        pair = (((src_lo >> (8 * (LO_BIT // 8))) & 0xFF) | (((src_hi >> (8 * (HI_BIT // 8))) & 0xFF) << 16)) & MASK
        return fma2(pair | MAGIC, _splat(words, SCALE2), _splat(words, OFF2), IS_BF16, EMULATE)
    args = [src_lo, src_hi, _splat(words, SEL), _splat(words, MASK), _splat(words, MAGIC), _splat(words, SCALE2),
            _splat(words, OFF2)]
    if IS_BF16:
        return tl.inline_asm_elementwise(
            "{ .reg .b32 r; prmt.b32 r, $1, $2, $3; lop3.b32 r, r, $4, $5, 0xea; fma.rn.bf16x2 $0, r, $6, $7; }",
            "=r,r,r,r,r,r,r,r", args, dtype=tl.int32, is_pure=True, pack=1)
    else:
        return tl.inline_asm_elementwise(
            "{ .reg .b32 r; prmt.b32 r, $1, $2, $3; lop3.b32 r, r, $4, $5, 0xea; fma.rn.f16x2 $0, r, $6, $7; }",
            "=r,r,r,r,r,r,r,r", args, dtype=tl.int32, is_pure=True, pack=1)


@triton.jit
def fma2(a, b, c, IS_BF16: tl.constexpr, EMULATE: tl.constexpr):
    """Lane-wise a * b + c on 16-bit pairs held in int32 tensors (broadcast like any op)."""
    tl.static_assert(not (EMULATE and IS_BF16), "the emulation is fp16 only (the interpreter computes bf16 wrongly)")
    if EMULATE:
        lo = _lane(a, 0) * _lane(b, 0) + _lane(c, 0)
        hi = _lane(a, 1) * _lane(b, 1) + _lane(c, 1)
        return _bits(lo) | (_bits(hi) << 16)
    elif IS_BF16:
        return tl.inline_asm_elementwise("fma.rn.bf16x2 $0, $1, $2, $3;", "=r,r,r,r", [a, b, c],
                                         dtype=tl.int32, is_pure=True, pack=1)
    else:
        return tl.inline_asm_elementwise("fma.rn.f16x2 $0, $1, $2, $3;", "=r,r,r,r", [a, b, c],
                                         dtype=tl.int32, is_pure=True, pack=1)


@triton.jit
def mul2(a, b, IS_BF16: tl.constexpr, EMULATE: tl.constexpr):
    """Lane-wise a * b on 16-bit pairs held in int32 tensors."""
    tl.static_assert(not (EMULATE and IS_BF16), "the emulation is fp16 only (the interpreter computes bf16 wrongly)")
    if EMULATE:
        return _bits(_lane(a, 0) * _lane(b, 0)) | (_bits(_lane(a, 1) * _lane(b, 1)) << 16)
    elif IS_BF16:
        return tl.inline_asm_elementwise("mul.rn.bf16x2 $0, $1, $2;", "=r,r,r", [a, b],
                                         dtype=tl.int32, is_pure=True, pack=1)
    else:
        return tl.inline_asm_elementwise("mul.rn.f16x2 $0, $1, $2;", "=r,r,r", [a, b],
                                         dtype=tl.int32, is_pure=True, pack=1)


@triton.jit
def x_sum_weights(like, PF: tl.constexpr, IS_BF16: tl.constexpr):
    """The pair (1/PF, 1/PF) shaped like ``like``: fma2(x, it, acc) adds x / PF lane-wise, so that
    PF such terms stay below max |x|. PF is 2 or 4 (an exact power of two)."""
    if IS_BF16:
        ONE_OVER: tl.constexpr = (127 - PF // 2) << 7  # 2^-1 or 2^-2
    else:
        ONE_OVER: tl.constexpr = (15 - PF // 2) << 10
    return _splat(like, ONE_OVER | (ONE_OVER << 16))


@triton.jit
def lane_sum(pairs, IS_BF16: tl.constexpr, EMULATE: tl.constexpr):
    """fp32 sum of the two 16-bit lanes of every int32 element."""
    if EMULATE:
        return _lane(pairs, 0) + _lane(pairs, 1)
    elif IS_BF16:  # a bf16 is the top half of an fp32
        lo = (pairs << 16).to(tl.float32, bitcast=True)
        hi = (pairs & -65536).to(tl.float32, bitcast=True)
        return lo + hi
    else:
        return tl.inline_asm_elementwise(
            "{ .reg .f16 l, h; .reg .f32 a, b; mov.b32 {l, h}, $1; cvt.f32.f16 a, l; cvt.f32.f16 b, h; "
            "add.f32 $0, a, b; }", "=r,r", [pairs], dtype=tl.float32, is_pure=True, pack=1)


@triton.jit
def dequant_codes(words, shifts, mul, add, BITS: tl.constexpr, IS_BF16: tl.constexpr, EMULATE: tl.constexpr):
    """Tensor-core operand: the code at bit ``shifts`` of each int32 word, dequantized in 16-bit
    arithmetic two elements an instruction (whichever two elements Triton's layout pairs):
    q - C exactly from a magic constant, then (q - C) * mul + add with mul = scale and
    add = (C - zero) * scale in the activation dtype (C = 2^(BITS-1)).

    fp16: one PRMT takes the byte holding each element's code into its lane, one LOP3 masks
    the code in place (q * 2^o, o = its offset in the byte) and ORs in 1024.0, one FMA by
    (2^-o, -(1024 * 2^-o + C)) gives q - C exactly, and one FMA applies scale and zero: 4
    instructions a pair (the selector and mask depend only on the slot and leave the loop).
    bf16 keeps 7 mantissa bits, too few for q * 2^o: each code is shifted down first (2 more)."""
    C: tl.constexpr = 1 << (BITS - 1)
    if EMULATE:
        q = ((words >> shifts) & ((1 << BITS) - 1)) - C
        return (q.to(tl.float32) * mul.to(tl.float32) + add.to(tl.float32)).to(mul.dtype)
    if IS_BF16:
        MASK: tl.constexpr = ((1 << BITS) - 1) * 0x00010001
        OFF: tl.constexpr = 0xC300 | C  # -(128 + C) as bf16
        return tl.inline_asm_elementwise(
            "{ .reg .b32 a, b, r; shr.u32 a, $1, $3; shr.u32 b, $2, $4; prmt.b32 r, a, b, 0x5410; "
            "lop3.b32 r, r, $7, $9, 0xea; add.rn.bf16x2 r, r, $11; fma.rn.bf16x2 $0, r, $5, $6; }",
            "=r" + ",r" * 12,
            [words, shifts, mul, add, _splat(words, MASK), _splat(words, 0x43004300),
             _splat(words, (OFF | (OFF << 16)) - (1 << 32))], dtype=mul.dtype, is_pure=True, pack=2)
    else:
        offset = shifts & 7
        lane_mul = tl.exp2(-offset.to(tl.float32)).to(tl.float16)
        lane_add = (-(1024.0 * lane_mul.to(tl.float32) + C)).to(tl.float16)
        return tl.inline_asm_elementwise(
            "{ .reg .b32 sel, m, r; add.u32 sel, $4, 4; shl.b32 sel, sel, 8; or.b32 sel, sel, $3; "
            "shl.b32 m, $6, 16; or.b32 m, m, $5; prmt.b32 r, $1, $2, sel; lop3.b32 r, r, m, 0x64006400, 0xea; "
            "fma.rn.f16x2 r, r, $7, $8; fma.rn.f16x2 $0, r, $9, $10; }",
            "=r" + ",r" * 10,
            [words, shifts >> 3, ((1 << BITS) - 1) << offset, lane_mul, lane_add, mul, add],
            dtype=tl.float16, is_pure=True, pack=2)
