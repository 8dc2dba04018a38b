"""Weight formats: the parameters that define a packed weight, and their validation.

Every packed weight is described by a :class:`PackedFormat` (bit width, group size,
symmetric or asymmetric). The byte layout is documented in ``docs/formats.md``.
Validation lives here so that quantizers, tensors and kernels raise the same
clear errors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SUPPORTED_BITS = (8, 4, 2, 1)
WORD_BITS = 32  # codes are packed into int32 words
MIN_GROUP_SIZE = 32
K_ALIGNMENT = 32  # K must be a multiple of this for every packed format
FLOAT_WEIGHT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
ACTIVATION_DTYPES = (torch.float16, torch.bfloat16)


def codes_per_word(bits: int) -> int:
    """How many ``bits``-wide codes one int32 word holds (32 // bits)."""
    return WORD_BITS // bits


def symmetric_zero(bits: int) -> float:
    """The fixed zero point of the symmetric formats: 2^(bits-1), or 0.5 for 1 bit.

    With W ~ (q - z) * s and q in [0, 2^bits - 1], the levels are the integers
    -(2^(bits-1) - 1) .. 2^(bits-1) - 1 (code 0 unused), and +-0.5 for one bit.
    """
    return 0.5 if bits == 1 else float(2 ** (bits - 1))


def check_bits(bits: int) -> None:
    if bits not in SUPPORTED_BITS:
        raise ValueError(f"bits={bits!r} is not supported: choose one of {SUPPORTED_BITS}")


def resolve_group_size(group_size: int | None, in_features: int) -> int:
    """Returns the group size along K; ``None`` or ``-1`` mean per-channel (group = K)."""
    if group_size is None or group_size == -1:
        return in_features
    if not isinstance(group_size, int) or isinstance(group_size, bool):
        raise TypeError(f"group_size must be an int or None (per-channel), got {group_size!r}")
    if group_size == in_features:
        return group_size
    if group_size < MIN_GROUP_SIZE or group_size & (group_size - 1):
        raise ValueError(
            f"group_size={group_size} is not supported: use a power of two >= {MIN_GROUP_SIZE}, "
            f"or None for per-channel (group = K = {in_features})"
        )
    if in_features % group_size:
        raise ValueError(
            f"group_size={group_size} does not divide in_features K={in_features}: "
            f"K must be a multiple of the group size (or use group_size=None for per-channel)"
        )
    return group_size


def check_weight(weight: torch.Tensor, name: str = "weight") -> None:
    """A weight to quantize: 2-D [N, K] floating point, finite, K a multiple of 32."""
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(weight).__name__}")
    if weight.dim() != 2:
        raise ValueError(f"{name} must be 2-D [out_features, in_features], got shape {tuple(weight.shape)}")
    if weight.dtype not in FLOAT_WEIGHT_DTYPES:
        raise TypeError(f"{name} dtype {weight.dtype} is not supported: use one of {FLOAT_WEIGHT_DTYPES}")
    n, k = weight.shape
    if n < 1:
        raise ValueError(f"{name} has out_features N={n}: need at least 1")
    if k < K_ALIGNMENT or k % K_ALIGNMENT:
        raise ValueError(
            f"{name} has in_features K={k}: K must be a positive multiple of {K_ALIGNMENT} for packed formats"
        )
    bad = (~torch.isfinite(weight)).sum().item()
    if bad:
        raise ValueError(
            f"{name} holds {bad} NaN/Inf value(s): quantization needs finite weights "
            f"(clean or clamp the weights first)"
        )


@dataclass(frozen=True)
class PackedFormat:
    """A packed integer weight format: W ~ (q - zero) * scale per group of K.

    bits: code width, one of 8, 4, 2, 1.
    group_size: number of consecutive K elements sharing one scale (and zero).
    symmetric: True -> fixed zero point ``symmetric_zero(bits)``, no zero tensor;
               False -> a floating zero point per group (HQQ convention).
    """

    bits: int
    group_size: int
    symmetric: bool

    def __post_init__(self):
        check_bits(self.bits)
        if self.group_size < MIN_GROUP_SIZE or self.group_size % K_ALIGNMENT:
            raise ValueError(f"group_size={self.group_size} must be a multiple of {K_ALIGNMENT}")

    @property
    def codes_per_word(self) -> int:
        return codes_per_word(self.bits)

    @property
    def max_code(self) -> int:
        return 2**self.bits - 1
