"""Packing of 8/4/2/1-bit codes into int32 words (layout: docs/formats.md).

Logical codes are a [N, K] integer tensor (one code per weight, values in
[0, 2^bits - 1]). The packed tensor is int32 of shape [K // E, N] with E = 32 // bits:
word (j, n) holds the codes of column n for k = j*E .. j*E + E - 1, code k = j*E + s
in bits [s*bits, (s+1)*bits) (lowest k in the lowest bits). N is the contiguous
axis so that a row of words loads in wide coalesced vectors, and a kernel unpacks a
word with one shift and one mask per code.
"""

from __future__ import annotations

import torch

from ..formats import check_bits, codes_per_word


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Packs [N, K] integer codes into an int32 [K // E, N] tensor (E = 32 // bits)."""
    check_bits(bits)
    if codes.dim() != 2:
        raise ValueError(f"codes must be 2-D [N, K], got shape {tuple(codes.shape)}")
    if codes.dtype.is_floating_point or codes.dtype == torch.bool:
        raise TypeError(f"codes must be an integer tensor, got {codes.dtype}")
    n, k = codes.shape
    per_word = codes_per_word(bits)
    if k % per_word:
        raise ValueError(f"codes have K={k}: K must be a multiple of {per_word} for {bits}-bit packing")
    codes = codes.to(torch.int64)
    if codes.numel() and (codes.min() < 0 or codes.max() >= 2**bits):
        raise ValueError(f"codes must lie in [0, {2**bits - 1}] for {bits}-bit packing")
    # [N, K] -> [K/E, E, N]: axis 1 is the slot s inside the word.
    slots = codes.t().reshape(k // per_word, per_word, n)
    shifts = torch.arange(per_word, device=codes.device, dtype=torch.int64) * bits
    words = (slots << shifts.view(1, per_word, 1)).sum(dim=1)  # disjoint bits: sum == or
    # Reinterpret the unsigned 32-bit value as int32 (two's complement).
    words = torch.where(words >= 2**31, words - 2**32, words)
    return words.to(torch.int32).contiguous()


def unpack_codes(packed: torch.Tensor, bits: int) -> torch.Tensor:
    """Inverse of :func:`pack_codes`: int32 [K // E, N] -> uint8 [N, K]."""
    check_bits(bits)
    if packed.dtype != torch.int32 or packed.dim() != 2:
        raise ValueError(f"packed must be a 2-D int32 tensor, got {packed.dtype} {tuple(packed.shape)}")
    per_word = codes_per_word(bits)
    kw, n = packed.shape
    shifts = torch.arange(per_word, device=packed.device, dtype=torch.int64) * bits
    words = packed.to(torch.int64) & 0xFFFFFFFF
    slots = (words.unsqueeze(1) >> shifts.view(1, per_word, 1)) & (2**bits - 1)  # [K/E, E, N]
    return slots.reshape(kw * per_word, n).t().to(torch.uint8).contiguous()
