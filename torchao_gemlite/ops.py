"""torch.library custom ops: the one place where tensors and layers call kernels.

Each op has a fake (meta) implementation, so it works under ``torch.compile(fullgraph=True)``
and inside CUDA graphs. CUDA inputs go to the Triton kernels through the dispatcher; CPU
inputs take the reference path (dequantize + fp32 matmul), so a model quantized on a
machine without a GPU still runs.
"""

from __future__ import annotations

from typing import Optional

import torch

from .formats import PackedFormat
from .quant import QuantizedWeight, reference_linear


@torch.library.custom_op("torchao_gemlite::linear_weight_only", mutates_args=())
def linear_weight_only(x: torch.Tensor, qdata: torch.Tensor, scale: torch.Tensor, zero: Optional[torch.Tensor],
                       bias: Optional[torch.Tensor], bits: int, group_size: int, symmetric: bool) -> torch.Tensor:
    """y = x @ dequant(W).T + bias for a packed weight (docs/formats.md). x: [..., K] -> [..., N]."""
    if x.device.type == "cuda":
        from .kernels.dispatch import weight_only_linear

        return weight_only_linear(x, qdata, scale, zero, bias, bits, group_size, symmetric)
    n = qdata.shape[1]
    k = qdata.shape[0] * (32 // bits)
    qw = QuantizedWeight(qdata, scale, zero, PackedFormat(bits, group_size, symmetric), (n, k))
    return reference_linear(x, qw, bias)


@linear_weight_only.register_fake
def _(x, qdata, scale, zero, bias, bits, group_size, symmetric):
    return x.new_empty(*x.shape[:-1], qdata.shape[1])
