"""A8W4: int8 per-token dynamic activations times a packed 4-bit symmetric weight.

:class:`Int8DynActInt4GemliteTensor` stores the packed layout of :class:`PackedGemliteTensor`
with bits=4 and symmetric=True (no zero_point). ``F.linear(x, w)`` quantizes x per token
to int8 and calls ``torch.ops.torchao_gemlite.linear_dynamic_a8w4``.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..quant import quantize_weight_refined
from .. import ops
from ._common import finalize_tensor_class, register_linear
from .packed_tensor import PackedGemliteTensor



class Int8DynActInt4GemliteTensor(PackedGemliteTensor):
    """Packed 4-bit symmetric weight for the A8W4 path.

    Tensor data: qdata int32 [K // 8, N]; scale [K // group_size, N] in the tensor's dtype
    (the weight's dtype). Attributes: bits (always 4), group_size, symmetric (always True),
    shape [N, K]. Dequantized weight: (q - 8) * scale, levels -8 .. 7 (the refined quantizer
    may use -8).
    """

    BITS = 4
    SYMMETRIC_ONLY = True

    @classmethod
    def from_hp(cls, weight: torch.Tensor, group_size: Optional[int] = 128) -> "Int8DynActInt4GemliteTensor":
        """Quantizes a float [N, K] weight, symmetric absmax per group (None: per-channel)."""
        with torch.no_grad():
            qw = quantize_weight_refined(weight.detach(), 4, group_size, symmetric=True)
        return cls(qw.qdata, qw.scale, 4, qw.fmt.group_size, True, qw.shape)

    def _linear(self, x: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        return ops.call("linear_dynamic_a8w4", x, self.qdata, self.scale, bias, self.group_size)


register_linear(Int8DynActInt4GemliteTensor)


finalize_tensor_class(Int8DynActInt4GemliteTensor)
