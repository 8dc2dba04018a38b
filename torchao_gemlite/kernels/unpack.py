"""Shared jit helpers that turn packed int32 words into weight tiles (layout: docs/formats.md)."""

import triton
import triton.language as tl


@triton.jit
def unpack_words(words, BITS: tl.constexpr, BLOCK_KW: tl.constexpr, BLOCK_N: tl.constexpr):
    """[BLOCK_KW, BLOCK_N] int32 words -> [BLOCK_KW * 32 // BITS, BLOCK_N] int32 codes in K order.

    Word row j holds k = j*E .. j*E + E - 1, code s in bits [s*BITS, (s+1)*BITS): one
    shift and one mask per code. The arithmetic shift's sign bits are masked away.
    """
    E: tl.constexpr = 32 // BITS
    shifts = tl.arange(0, E) * BITS
    codes = (words[:, None, :] >> shifts[None, :, None]) & ((1 << BITS) - 1)  # [BKW, E, BN]
    return tl.reshape(codes, (BLOCK_KW * E, BLOCK_N))


@triton.jit
def load_group_params(scale_ptr, zero_ptr, group, offs_n, mask_n, stride_sg,
                      SYMMETRIC: tl.constexpr, SYM_ZERO: tl.constexpr):
    """Scale and zero rows ([1, BLOCK_N], fp32) of one group; the zero is a constant when symmetric."""
    scale = tl.load(scale_ptr + group * stride_sg + offs_n, mask=mask_n, other=0.0).to(tl.float32)
    if SYMMETRIC:
        zero = tl.full(scale.shape, SYM_ZERO, tl.float32)
    else:
        zero = tl.load(zero_ptr + group * stride_sg + offs_n, mask=mask_n, other=0.0).to(tl.float32)
    return scale[None, :], zero[None, :]
