"""Format parameters and their validation (torchao_gemlite/formats.py)."""

import dataclasses

import pytest
import torch

from torchao_gemlite import formats
from torchao_gemlite.formats import PackedFormat


@pytest.mark.parametrize("bits, per_word", [(8, 4), (4, 8), (2, 16), (1, 32)])
def test_codes_per_word(bits, per_word):
    assert formats.codes_per_word(bits) == per_word
    assert PackedFormat(bits, 32, False).codes_per_word == per_word
    assert PackedFormat(bits, 32, False).max_code == 2**bits - 1


@pytest.mark.parametrize("bits, zero", [(8, 128.0), (4, 8.0), (2, 2.0), (1, 0.5)])
def test_symmetric_zero(bits, zero):
    assert formats.symmetric_zero(bits) == zero


@pytest.mark.parametrize("bits", [0, 3, 5, 16, 32, -4])
def test_check_bits_rejects(bits):
    with pytest.raises(ValueError, match=rf"bits={bits} is not supported"):
        formats.check_bits(bits)
    with pytest.raises(ValueError, match=rf"bits={bits}"):
        PackedFormat(bits, 128, False)


@pytest.mark.parametrize("group_size, k, expected", [
    (None, 4096, 4096),
    (-1, 96, 96),
    (96, 96, 96),  # per-channel spelled out: any K that is a multiple of 32
    (32, 64, 32),
    (64, 4096, 64),
    (128, 4096, 128),
    (256, 512, 256),
])
def test_resolve_group_size(group_size, k, expected):
    assert formats.resolve_group_size(group_size, k) == expected


@pytest.mark.parametrize("group_size, k, pattern", [
    (48, 96 * 4, r"group_size=48 is not supported: use a power of two"),
    (16, 256, r"group_size=16 is not supported: use a power of two >= 32"),
    (0, 256, r"group_size=0 is not supported"),
    (-2, 256, r"group_size=-2 is not supported"),
    (100, 400, r"group_size=100 is not supported"),
    (64, 96, r"group_size=64 does not divide in_features K=96"),
    (256, 128 * 3, r"group_size=256 does not divide in_features K=384"),
])
def test_resolve_group_size_rejects(group_size, k, pattern):
    with pytest.raises(ValueError, match=pattern):
        formats.resolve_group_size(group_size, k)


@pytest.mark.parametrize("group_size", [64.0, "128", True])
def test_resolve_group_size_rejects_non_int(group_size):
    with pytest.raises(TypeError, match=r"group_size must be an int or None"):
        formats.resolve_group_size(group_size, 256)


def test_check_weight_accepts():
    for dtype in formats.FLOAT_WEIGHT_DTYPES:
        formats.check_weight(torch.randn(1, 32, dtype=dtype))
        formats.check_weight(torch.randn(300, 96, dtype=dtype))


@pytest.mark.parametrize("weight, error, pattern", [
    ([[1.0] * 32], TypeError, r"weight must be a torch.Tensor, got list"),
    (torch.randn(64), ValueError, r"weight must be 2-D \[out_features, in_features\], got shape \(64,\)"),
    (torch.randn(2, 4, 64), ValueError, r"weight must be 2-D .*got shape \(2, 4, 64\)"),
    (torch.randn(0, 64), ValueError, r"weight has out_features N=0"),
    (torch.randn(4, 48), ValueError, r"weight has in_features K=48: K must be a positive multiple of 32"),
    (torch.randn(4, 16), ValueError, r"weight has in_features K=16"),
    (torch.randn(4, 0), ValueError, r"weight has in_features K=0"),
    (torch.ones(4, 64, dtype=torch.int32), TypeError, r"weight dtype torch.int32 is not supported"),
    (torch.ones(4, 64, dtype=torch.bool), TypeError, r"weight dtype torch.bool is not supported"),
    (torch.ones(4, 64, dtype=torch.float64), TypeError, r"weight dtype torch.float64 is not supported"),
])
def test_check_weight_rejects(weight, error, pattern):
    with pytest.raises(error, match=pattern):
        formats.check_weight(weight)


@pytest.mark.parametrize("dtype", formats.FLOAT_WEIGHT_DTYPES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_check_weight_rejects_non_finite(dtype, bad):
    w = torch.randn(8, 64).to(dtype)
    w[3, 5] = bad
    w[7, 63] = bad
    with pytest.raises(ValueError, match=r"weight holds 2 NaN/Inf value\(s\)"):
        formats.check_weight(w)


def test_check_weight_uses_given_name():
    with pytest.raises(ValueError, match=r"^w_proj must be 2-D"):
        formats.check_weight(torch.randn(64), name="w_proj")


@pytest.mark.parametrize("group_size", [16, 48, 0])
def test_packed_format_rejects_group_size(group_size):
    with pytest.raises(ValueError, match=rf"group_size={group_size} must be a multiple of 32"):
        PackedFormat(4, group_size, True)


def test_packed_format_is_frozen_and_hashable():
    fmt = PackedFormat(4, 128, False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fmt.bits = 8
    assert fmt == PackedFormat(4, 128, False)
    assert len({fmt, PackedFormat(4, 128, False), PackedFormat(4, 128, True)}) == 2
