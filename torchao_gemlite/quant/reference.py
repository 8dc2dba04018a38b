"""Reference dequantization and linear layers: the ground truth every kernel is checked against.

Plain PyTorch, fp32 accumulation, any device. Slow by design.
"""

from __future__ import annotations

import torch

from ..formats import symmetric_zero
from .packing import unpack_codes
from .quantize import QuantizedWeight, quantize_rowwise_fp8, quantize_rowwise_int8


def dequantize_weight(qw: QuantizedWeight, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Returns the [N, K] weight (q - zero) * scale, computed in fp32 and cast to ``dtype``."""
    n, k = qw.shape
    group = qw.fmt.group_size
    codes = unpack_codes(qw.qdata, qw.fmt.bits).float().reshape(n, k // group, group)
    scale = qw.scale.t().float().unsqueeze(-1)
    zero = symmetric_zero(qw.fmt.bits) if qw.zero is None else qw.zero.t().float().unsqueeze(-1)
    return ((codes - zero) * scale).reshape(n, k).to(dtype)


def _check_linear_input(x: torch.Tensor, in_features: int) -> None:
    if not x.dtype.is_floating_point:
        raise TypeError(f"input dtype {x.dtype} is not supported: use a floating-point input")
    if x.shape[-1] != in_features:
        raise ValueError(f"input has {x.shape[-1]} features in its last axis, the weight expects K={in_features}")


def reference_linear(x: torch.Tensor, qw: QuantizedWeight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """y = x @ dequantize(W).T + bias in fp32, returned in x's dtype. x: [..., K]."""
    _check_linear_input(x, qw.shape[1])
    y = x.float() @ dequantize_weight(qw).t()
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype)


def reference_linear_dynamic(x: torch.Tensor, weight_q: torch.Tensor, weight_scale: torch.Tensor,
                             bias: torch.Tensor | None = None, act: str = "int8") -> torch.Tensor:
    """Dynamic activation quantization reference: per-token quantized x times a row-wise
    quantized weight ([N, K] int8 or fp8, scale [N, 1]), the product in float64, then scales.
    """
    _check_linear_input(x, weight_q.shape[1])
    quantizers = {"int8": quantize_rowwise_int8, "fp8": quantize_rowwise_fp8}
    if act not in quantizers:
        raise ValueError(f"act={act!r} is not supported: choose one of {sorted(quantizers)}")
    xq, x_scale = quantizers[act](x)
    y = (xq.double() @ weight_q.double().t()) * x_scale.double() * weight_scale.double().reshape(1, -1)
    if bias is not None:
        y = y + bias.double()
    return y.to(x.dtype)


def reference_linear_a8w4(x: torch.Tensor, qw: QuantizedWeight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """int8 per-token activations times a packed 4-bit symmetric weight, in float64."""
    _check_linear_input(x, qw.shape[1])
    if qw.fmt.bits != 4 or not qw.fmt.symmetric:
        raise ValueError(f"A8W4 needs a 4-bit symmetric weight, got bits={qw.fmt.bits} symmetric={qw.fmt.symmetric}")
    xq, x_scale = quantize_rowwise_int8(x)
    y = (xq.double() @ dequantize_weight(qw, torch.float64).t()) * x_scale.double()
    if bias is not None:
        y = y + bias.double()
    return y.to(x.dtype)
