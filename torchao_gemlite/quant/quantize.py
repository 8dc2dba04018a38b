"""Reference quantizers (pure PyTorch, any device).

Group-wise packed formats (8/4/2/1 bit), W ~ (q - zero) * scale per group of
``group_size`` consecutive K elements of one output row:

* asymmetric (HQQ convention): min-max over the group, a floating zero per group;
* symmetric: absmax over the group, the fixed zero ``symmetric_zero(bits)``.

Scales and zeros are rounded to their storage dtype *before* the codes are
computed, and the scale is rounded up, so every dequantized weight is within
half a step (its group's stored scale) of the original: rounding to nearest
never clips. Three floors keep the stored values exact and finite:

* scale >= the smallest normal number of the scale dtype (all-zero groups);
* asymmetric scale >= |min| / 256, so |zero| <= 256 and a bf16 zero is off by at
  most half a code. It only bites for groups whose values share one sign and
  span less than 1/256 (8-bit) of their magnitude: they get a coarser step.

Row-wise formats for the int8 / fp8 tensor-core paths: symmetric absmax per row
(weights: per output channel; activations: per token).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..formats import PackedFormat, check_weight, resolve_group_size, symmetric_zero
from .packing import pack_codes

ZERO_BOUND = 256.0  # |zero| stays <= this, where bf16 still has a 1.0 or finer step
INT8_MAX = 127
FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8_DTYPE).max  # 448


@dataclass(frozen=True)
class QuantizedWeight:
    """A packed weight of logical shape [N, K] (out_features, in_features).

    qdata: int32 [K // E, N], E = 32 // bits codes per word (docs/formats.md).
    scale: [K // group_size, N] in the scale dtype (the weight's dtype by default).
    zero:  [K // group_size, N] like scale, or None for symmetric formats.
    """

    qdata: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor | None
    fmt: PackedFormat
    shape: tuple[int, int]


def _round_up_to_dtype(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Rounds positive fp32 values to ``dtype``, upward (the result is never smaller)."""
    stored = values.to(dtype)
    if dtype != torch.float32:
        too_small = stored.float() < values
        bumped = (stored.view(torch.int16) + 1).view(dtype)  # next representable value up
        stored = torch.where(too_small, bumped, stored)
    # Checked after the bump: a step just above the dtype's largest finite value rounds
    # down to it, and bumping that gives inf.
    if not torch.isfinite(stored).all():
        raise ValueError(
            f"weight values span too wide a range for {dtype} scales: a group's step overflows; "
            f"use scale_dtype=torch.float32, float32 weights or a smaller group size"
        )
    return stored


def quantize_groupwise_codes(weight: torch.Tensor, bits: int, group_size: int | None, symmetric: bool,
                             scale_dtype: torch.dtype | None = None):
    """Quantizes [N, K] ``weight`` per group; returns (codes uint8 [N, K], scale, zero, format).

    scale and zero have shape [N, K // group_size] here (the unpacked orientation);
    ``zero`` is None when ``symmetric``.
    """
    check_weight(weight)
    n, k = weight.shape
    group = resolve_group_size(group_size, k)
    fmt = PackedFormat(bits, group, symmetric)
    scale_dtype = scale_dtype or weight.dtype
    max_code = fmt.max_code
    tiny = torch.finfo(scale_dtype).tiny

    w = weight.float().reshape(n, k // group, group)
    if symmetric:
        zero_point = symmetric_zero(bits)
        absmax = w.abs().amax(dim=-1)
        scale = _round_up_to_dtype((absmax / (max_code - zero_point)).clamp_min(tiny), scale_dtype)
        zero = None
        shifted = w / scale.float().unsqueeze(-1) + zero_point
    else:
        wmin, wmax = w.amin(dim=-1), w.amax(dim=-1)
        step = torch.maximum((wmax - wmin) / max_code, wmin.abs() / ZERO_BOUND).clamp_min(tiny)
        scale = _round_up_to_dtype(step, scale_dtype)
        zero = (-wmin / scale.float()).to(scale_dtype)
        shifted = w / scale.float().unsqueeze(-1) + zero.float().unsqueeze(-1)
    codes = shifted.round().clamp_(0, max_code).to(torch.uint8).reshape(n, k)
    return codes, scale, zero, fmt


def quantize_weight(weight: torch.Tensor, bits: int = 4, group_size: int | None = 128, symmetric: bool = False,
                    scale_dtype: torch.dtype | None = None) -> QuantizedWeight:
    """Quantizes and packs a [N, K] weight into the kernels' layout (docs/formats.md)."""
    codes, scale, zero, fmt = quantize_groupwise_codes(weight, bits, group_size, symmetric, scale_dtype)
    return QuantizedWeight(
        qdata=pack_codes(codes, bits),
        scale=scale.t().contiguous(),
        zero=None if zero is None else zero.t().contiguous(),
        fmt=fmt,
        shape=tuple(weight.shape),
    )


def _rowwise_absmax_scale(t: torch.Tensor, max_value: float) -> torch.Tensor:
    absmax = t.float().abs().amax(dim=-1, keepdim=True)
    return (absmax / max_value).clamp_min(torch.finfo(torch.float32).tiny)


def quantize_rowwise_int8(t: torch.Tensor):
    """Symmetric int8 per row of the last axis: t ~ q * scale, q in [-127, 127].

    Returns (q int8 like t, scale fp32 with the last axis of size 1). Rows of zeros get
    the smallest positive scale (never a division by zero). Weights: rows are output
    channels; activations: rows are tokens.
    """
    if not t.dtype.is_floating_point:
        raise TypeError(f"input must be floating point, got {t.dtype}")
    scale = _rowwise_absmax_scale(t, INT8_MAX)
    q = (t.float() / scale).round().clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)
    return q, scale


def quantize_rowwise_fp8(t: torch.Tensor):
    """float8_e4m3fn per row of the last axis: t ~ q * scale, |q| <= 448 (saturating).

    Returns (q float8_e4m3fn like t, scale fp32 with the last axis of size 1).
    """
    if not t.dtype.is_floating_point:
        raise TypeError(f"input must be floating point, got {t.dtype}")
    scale = _rowwise_absmax_scale(t, FP8_MAX)
    q = (t.float() / scale).clamp_(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    return q, scale
