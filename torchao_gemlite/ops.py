"""torch.library custom ops: the one place where tensors and layers call kernels.

Each op has a fake (meta) implementation, so it works under ``torch.compile(fullgraph=True)``
and inside CUDA graphs. fp16/bf16 CUDA inputs go to the Triton kernels through the dispatcher;
CPU inputs, and fp32 inputs on any device, take the reference path (dequantize + fp32 matmul),
so a model quantized on a machine without a GPU, or kept in fp32, still runs.
"""

from __future__ import annotations

from typing import Optional

import torch

from .formats import ACTIVATION_DTYPES, PackedFormat
from .quant import QuantizedWeight, reference_linear, reference_linear_a8w4, reference_linear_dynamic


def _on_kernels(x: torch.Tensor) -> bool:
    """The Triton kernels take fp16/bf16 activations on CUDA; everything else runs the reference."""
    return x.device.type == "cuda" and x.dtype in ACTIVATION_DTYPES


@torch.library.custom_op("torchao_gemlite::linear_weight_only", mutates_args=())
def linear_weight_only(x: torch.Tensor, qdata: torch.Tensor, scale: torch.Tensor, zero: Optional[torch.Tensor],
                       bias: Optional[torch.Tensor], bits: int, group_size: int, symmetric: bool) -> torch.Tensor:
    """y = x @ dequant(W).T + bias for a packed weight (docs/formats.md). x: [..., K] -> [..., N]."""
    if _on_kernels(x):
        from .kernels.dispatch import weight_only_linear

        return weight_only_linear(x, qdata, scale, zero, bias, bits, group_size, symmetric)
    return reference_linear(x, _packed_weight(qdata, scale, zero, bits, group_size, symmetric), bias)


@linear_weight_only.register_fake
def _(x, qdata, scale, zero, bias, bits, group_size, symmetric):
    return x.new_empty(*x.shape[:-1], qdata.shape[1])


def _packed_weight(qdata, scale, zero, bits, group_size, symmetric) -> QuantizedWeight:
    k = qdata.shape[0] * (32 // bits)
    return QuantizedWeight(qdata, scale, zero, PackedFormat(bits, group_size, symmetric), (qdata.shape[1], k))


@torch.library.custom_op("torchao_gemlite::linear_dynamic_int8", mutates_args=())
def linear_dynamic_int8(x: torch.Tensor, weight_q: torch.Tensor, weight_scale: torch.Tensor,
                        bias: Optional[torch.Tensor]) -> torch.Tensor:
    """A8W8 int8: x quantized per token to int8 on the fly; weight_q int8 [N, K], weight_scale fp32 [N]."""
    if _on_kernels(x):
        from .kernels.dispatch import dynamic_int8_linear

        return dynamic_int8_linear(x, weight_q, weight_scale, bias)
    return reference_linear_dynamic(x, weight_q, weight_scale, bias, act="int8")


@torch.library.custom_op("torchao_gemlite::linear_dynamic_fp8", mutates_args=())
def linear_dynamic_fp8(x: torch.Tensor, weight_q: torch.Tensor, weight_scale: torch.Tensor,
                       bias: Optional[torch.Tensor]) -> torch.Tensor:
    """A8W8 fp8: x quantized per token to float8_e4m3fn; weight_q e4m3 [N, K], weight_scale fp32 [N]."""
    if _on_kernels(x):
        from .kernels.dispatch import dynamic_fp8_linear

        return dynamic_fp8_linear(x, weight_q, weight_scale, bias)
    return reference_linear_dynamic(x, weight_q, weight_scale, bias, act="fp8")


@torch.library.custom_op("torchao_gemlite::linear_dynamic_a8w4", mutates_args=())
def linear_dynamic_a8w4(x: torch.Tensor, qdata: torch.Tensor, scale: torch.Tensor, bias: Optional[torch.Tensor],
                        group_size: int) -> torch.Tensor:
    """A8W4: x quantized per token to int8; a packed 4-bit symmetric weight (docs/formats.md)."""
    if _on_kernels(x):
        from .kernels.dispatch import dynamic_a8w4_linear

        return dynamic_a8w4_linear(x, qdata, scale, bias, group_size)
    return reference_linear_a8w4(x, _packed_weight(qdata, scale, None, 4, group_size, True), bias)


@linear_dynamic_int8.register_fake
def _(x, weight_q, weight_scale, bias):
    return x.new_empty(*x.shape[:-1], weight_q.shape[0])


@linear_dynamic_fp8.register_fake
def _(x, weight_q, weight_scale, bias):
    return x.new_empty(*x.shape[:-1], weight_q.shape[0])


@linear_dynamic_a8w4.register_fake
def _(x, qdata, scale, bias, group_size):
    return x.new_empty(*x.shape[:-1], qdata.shape[1])
