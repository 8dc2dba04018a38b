"""Weight-only packed tensors: 8, 4, 2 and 1-bit codes with fp16/bf16/fp32 activations.

One implementation, four classes (the bit width is the only difference):
:class:`Int8GemliteTensor`, :class:`Int4GemliteTensor`, :class:`Int2GemliteTensor`,
:class:`Int1GemliteTensor`. ``F.linear(x, w)`` calls the op ``torchao_gemlite.linear_weight_only`` (ops.call):
Triton kernels on CUDA, the reference (dequantize + fp32 matmul) on CPU.
"""

from __future__ import annotations

from typing import Optional

import torch

from .. import ops
from ..quant import quantize_weight_refined
from ..formats import check_bits
from ._common import finalize_tensor_class, register_linear
from .packed_tensor import PackedGemliteTensor



class GemliteWeightOnlyTensor(PackedGemliteTensor):
    """Common base of the weight-only classes; layout in :class:`PackedGemliteTensor`.

    Build one with ``Int4GemliteTensor.from_hp(w, group_size=128)`` (or
    ``GemliteWeightOnlyTensor.from_hp(w, bits=4, ...)``, which picks the class by bit width).
    """

    @classmethod
    def from_hp(cls, weight: torch.Tensor, group_size: Optional[int] = 128, symmetric: bool = False,
                bits: Optional[int] = None) -> "GemliteWeightOnlyTensor":
        """Quantizes a float [N, K] weight. group_size None (or -1) means per-channel.

        Scales and zeros take the weight's dtype; the tensor's dtype is that dtype.
        """
        if bits is None:
            if cls.BITS is None:
                raise TypeError("GemliteWeightOnlyTensor.from_hp needs bits=8, 4, 2 or 1")
            bits = cls.BITS
        check_bits(bits)
        if cls.BITS is not None and bits != cls.BITS:
            raise ValueError(f"{cls.__name__}.from_hp makes {cls.BITS}-bit weights, got bits={bits}")
        target = WEIGHT_ONLY_TENSOR_CLASSES[bits]
        with torch.no_grad():
            qw = quantize_weight_refined(weight.detach(), bits, group_size, symmetric)
        return target(qw.qdata, qw.scale, bits, qw.fmt.group_size, symmetric, qw.shape, zero_point=qw.zero)

    def _linear(self, x: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        # No .contiguous() here: N-sliced views (tensor parallel shards, fused-layer pieces) go
        # to the op as they are; the kernel dispatcher copies only what it cannot index, and
        # the CPU reference path reads any strides.
        return ops.call("linear_weight_only", x, self.qdata, self.scale, self.zero_point, bias, self.bits,
                        self.group_size, self.symmetric)


register_linear(GemliteWeightOnlyTensor)


# The concrete classes come after every op registration: TorchAOBaseTensor copies the
# parent's op table when a subclass is created.
class Int8GemliteTensor(GemliteWeightOnlyTensor):
    """8-bit weight-only packed tensor (4 codes per int32 word); see PackedGemliteTensor."""

    BITS = 8


class Int4GemliteTensor(GemliteWeightOnlyTensor):
    """4-bit weight-only packed tensor (8 codes per int32 word); see PackedGemliteTensor."""

    BITS = 4


class Int2GemliteTensor(GemliteWeightOnlyTensor):
    """2-bit weight-only packed tensor (16 codes per int32 word); see PackedGemliteTensor."""

    BITS = 2


class Int1GemliteTensor(GemliteWeightOnlyTensor):
    """1-bit weight-only packed tensor (32 codes per int32 word, levels +-0.5 * scale when
    symmetric); see PackedGemliteTensor."""

    BITS = 1


WEIGHT_ONLY_TENSOR_CLASSES = {8: Int8GemliteTensor, 4: Int4GemliteTensor, 2: Int2GemliteTensor, 1: Int1GemliteTensor}

for _cls in (GemliteWeightOnlyTensor, *WEIGHT_ONLY_TENSOR_CLASSES.values()):
    finalize_tensor_class(_cls)
