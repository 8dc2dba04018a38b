"""Shared jit helpers that turn packed int32 words into weight values (layout: docs/formats.md).

Unpacking costs two integer ops per code and no int->float conversion (those run at a
quarter of the FP32 rate on Hopper and would cap a decode kernel far below the HBM
limit): slot s of a word is shifted so that its code lands in the top BITS bits of an
fp32 mantissa, masked and OR-ed with the exponent of 1.0, giving exactly
f = 1 + q / 2^BITS. The dequantized weight (q - zero) * scale is then one FMA,

    w = f * (2^BITS * scale) + (-(2^BITS + zero) * scale) = f * mul + add,

with ``mul`` and ``add`` computed once per group and column. The constant's rounding
error is 2^-24 of (2^BITS + zero) * scale, far below a quantization step.
"""

import triton
import triton.language as tl


@triton.jit
def slot_as_float(words, SLOT: tl.constexpr, BITS: tl.constexpr):
    """Code ``SLOT`` of every int32 word as fp32 1 + q / 2^BITS (shift, and|or, bitcast)."""
    SHIFT: tl.constexpr = 23 - BITS - SLOT * BITS
    if SHIFT >= 0:
        moved = words << SHIFT
    else:
        moved = words >> (-SHIFT)  # arithmetic shift: the sign bits are masked away below
    MASK: tl.constexpr = ((1 << BITS) - 1) << (23 - BITS)
    return ((moved & MASK) | 0x3F800000).to(tl.float32, bitcast=True)


@triton.jit
def all_slots_as_float(words, BITS: tl.constexpr):
    """Every code of [R, C] int32 words at once, as fp32 1 + q / 2^BITS in an [R, 32 / BITS, C]
    tile (slot s of a word at [:, s, :]): a shift by each slot's offset, a mask, the same bit trick."""
    codes = (words[:, None, :] >> (tl.arange(0, 32 // BITS) * BITS)[None, :, None]) & ((1 << BITS) - 1)
    return ((codes << (23 - BITS)) | 0x3F800000).to(tl.float32, bitcast=True)


@triton.jit
def group_mul_add(scale_ptr, zero_ptr, offs, mask, SYMMETRIC: tl.constexpr, SYM_ZERO: tl.constexpr,
                  BITS: tl.constexpr):
    """(mul, add) of ``slot_as_float`` for the scale/zero entries at ``offs`` (any shape)."""
    scale = tl.load(scale_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if SYMMETRIC:
        zero = SYM_ZERO
    else:
        zero = tl.load(zero_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    return scale * (1 << BITS), -((1 << BITS) + zero) * scale
