"""Packing of 8/4/2/1-bit codes into int32 words (torchao_gemlite/quant/packing.py).

Layout under test (docs/formats.md): codes [N, K] -> int32 [K/E, N], E = 32 // bits;
word (j, n) holds k = j*E + s of column n in bits [s*bits, (s+1)*bits).
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchao_gemlite.quant import pack_codes, unpack_codes

BITS = [8, 4, 2, 1]


def _random_codes(seed: int, n: int, k: int, bits: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2**bits, (n, k), generator=gen, dtype=torch.int64)


def _pack_by_hand(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Independent, loop-based packer over Python ints (slow; small shapes only)."""
    n, k = codes.shape
    per_word = 32 // bits
    rows = []
    for j in range(k // per_word):
        row = []
        for col in range(n):
            word = 0
            for s in range(per_word):
                word |= int(codes[col, j * per_word + s]) << (s * bits)
            row.append(word - (1 << 32) if word >= 1 << 31 else word)
        rows.append(row)
    return torch.tensor(rows, dtype=torch.int32)


@pytest.mark.parametrize("bits", BITS)
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 300), k_blocks=st.integers(1, 8))
def test_pack_unpack_round_trip(bits, seed, n, k_blocks):
    k = 32 * k_blocks
    codes = _random_codes(seed, n, k, bits)
    packed = pack_codes(codes, bits)
    assert packed.dtype == torch.int32
    assert packed.shape == (k * bits // 32, n)
    assert packed.is_contiguous()
    unpacked = unpack_codes(packed, bits)
    assert unpacked.dtype == torch.uint8
    assert unpacked.shape == (n, k)
    assert torch.equal(unpacked.long(), codes)


@pytest.mark.parametrize("bits", BITS)
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 300), k_words=st.integers(1, 8))
def test_unpack_pack_round_trip_on_any_word(bits, seed, n, k_words):
    # Every int32 bit pattern is a valid packed word, so unpack is a bijection too.
    gen = torch.Generator().manual_seed(seed)
    words = torch.randint(-(2**31), 2**31, (k_words, n), generator=gen, dtype=torch.int64).to(torch.int32)
    assert torch.equal(pack_codes(unpack_codes(words, bits), bits), words)


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("n, k", [(1, 32), (3, 64), (5, 96)])
def test_pack_matches_hand_packer(bits, n, k):
    codes = _random_codes(1234 + n, n, k, bits)
    # Make sure some words have the top bit set (negative as int32).
    codes[:, 32 // bits - 1] = 2**bits - 1
    expected = _pack_by_hand(codes, bits)
    assert (expected < 0).any()
    assert torch.equal(pack_codes(codes, bits), expected)


def test_hand_computed_4bit_words():
    # Two columns, K = 16: two words per column.
    codes = torch.tensor([
        list(range(8)) + list(range(8, 16)),  # column 0: 0..7, then 8..15
        [15] * 8 + [0] * 7 + [1],             # column 1
    ])
    packed = pack_codes(codes, 4)
    assert packed.shape == (2, 2)
    # Column 0, word 0: k=0 in bits 0-3, ..., k=7 in bits 28-31 -> 0x76543210.
    assert packed[0, 0].item() == 0x76543210 == 1985229328
    # Column 0, word 1: codes 8..15 -> 0xFEDCBA98, top bit set -> 0xFEDCBA98 - 2**32.
    assert packed[1, 0].item() == 0xFEDCBA98 - 2**32 == -19088744
    # Column 1, word 0: all ones -> 0xFFFFFFFF == -1; word 1: only k=15 (slot 7) = 1 -> 1 << 28.
    assert packed[0, 1].item() == -1
    assert packed[1, 1].item() == 1 << 28
    # The raw bytes, little-endian, of column 0's first word.
    assert packed[0, 0].numpy().tobytes() == bytes([0x10, 0x32, 0x54, 0x76])
    assert torch.equal(unpack_codes(packed, 4).long(), codes)


def test_hand_computed_other_widths():
    # 8-bit: k=0..3 -> bytes of the word in order; 0xFF in the top byte -> negative.
    assert pack_codes(torch.tensor([[0x01, 0x02, 0x03, 0xFF] * 8]), 8)[0, 0].item() == 0xFF030201 - 2**32
    # 2-bit: codes 0,1,2,3 repeated -> 0b11100100 per byte -> 0xE4E4E4E4 (negative).
    assert pack_codes(torch.tensor([[0, 1, 2, 3] * 8]), 2)[0, 0].item() == 0xE4E4E4E4 - 2**32
    # 1-bit: only k=31 set -> the sign bit alone -> INT32_MIN; only k=0 set -> 1.
    one_hot_last = torch.zeros(1, 32, dtype=torch.int64)
    one_hot_last[0, 31] = 1
    assert pack_codes(one_hot_last, 1)[0, 0].item() == -(2**31)
    one_hot_first = torch.zeros(1, 32, dtype=torch.int64)
    one_hot_first[0, 0] = 1
    assert pack_codes(one_hot_first, 1)[0, 0].item() == 1


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64])
def test_pack_accepts_integer_dtypes(dtype):
    codes = _random_codes(7, 9, 64, 4)
    assert torch.equal(pack_codes(codes.to(dtype), 4), pack_codes(codes, 4))


def test_pack_slices_along_n_and_k():
    # The layout lets a column range and a word-aligned K range be sliced independently.
    codes = _random_codes(11, 40, 256, 4)
    packed = pack_codes(codes, 4)
    assert torch.equal(packed[:, 8:20], pack_codes(codes[8:20], 4))
    assert torch.equal(packed[4:12], pack_codes(codes[:, 32:96], 4))


@pytest.mark.parametrize("bits", [0, 3, 16])
def test_pack_rejects_bits(bits):
    with pytest.raises(ValueError, match=rf"bits={bits} is not supported"):
        pack_codes(torch.zeros(2, 32, dtype=torch.int64), bits)
    with pytest.raises(ValueError, match=rf"bits={bits} is not supported"):
        unpack_codes(torch.zeros(2, 2, dtype=torch.int32), bits)


@pytest.mark.parametrize("shape", [(32,), (2, 3, 32)])
def test_pack_rejects_non_2d(shape):
    with pytest.raises(ValueError, match=r"codes must be 2-D \[N, K\]"):
        pack_codes(torch.zeros(shape, dtype=torch.int64), 4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bool])
def test_pack_rejects_non_integer(dtype):
    with pytest.raises(TypeError, match=r"codes must be an integer tensor"):
        pack_codes(torch.zeros(2, 32, dtype=dtype), 4)


@pytest.mark.parametrize("bits, k", [(4, 12), (2, 24), (1, 16), (8, 6)])
def test_pack_rejects_k_not_multiple_of_word(bits, k):
    with pytest.raises(ValueError, match=rf"codes have K={k}: K must be a multiple of {32 // bits}"):
        pack_codes(torch.zeros(2, k, dtype=torch.int64), bits)


@pytest.mark.parametrize("bits, bad", [(4, 16), (4, -1), (8, 256), (2, 4), (1, 2), (1, -1)])
def test_pack_rejects_codes_out_of_range(bits, bad):
    codes = torch.zeros(3, 32, dtype=torch.int64)
    codes[1, 7] = bad
    with pytest.raises(ValueError, match=rf"codes must lie in \[0, {2**bits - 1}\]"):
        pack_codes(codes, bits)


@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.int16, torch.float32])
def test_unpack_rejects_dtype(dtype):
    with pytest.raises(ValueError, match=r"packed must be a 2-D int32 tensor"):
        unpack_codes(torch.zeros(2, 3, dtype=dtype), 4)


@pytest.mark.parametrize("shape", [(6,), (1, 2, 3)])
def test_unpack_rejects_non_2d(shape):
    with pytest.raises(ValueError, match=r"packed must be a 2-D int32 tensor"):
        unpack_codes(torch.zeros(shape, dtype=torch.int32), 4)
