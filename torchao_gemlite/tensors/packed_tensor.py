"""The packed group-wise layout shared by the weight-only tensors and the A8W4 tensor.

:class:`PackedGemliteTensor` holds a [N, K] weight W ~ (q - zero) * scale in the kernels'
layout (docs/formats.md) and implements everything but the linear: validation,
dequantize, device/dtype moves, copy_, slices along N and along K at group boundaries
(views aliasing the original storage), split/chunk, and cat.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch.utils._python_dispatch import return_and_correct_aliasing

from ..formats import PackedFormat, codes_per_word
from ..quant import QuantizedWeight, dequantize_weight
from ._common import GemliteBaseTensor, cat_arguments, copy_into, describe, register_slicing, to_copy_target

aten = torch.ops.aten


class PackedGemliteTensor(GemliteBaseTensor):
    """A packed low-bit weight of logical shape [N, K] = (out_features, in_features).

    Tensor data:
        qdata: int32 [K // E, N], E = 32 // bits codes per word; word (j, n) holds the
            codes of k = j*E .. j*E + E - 1 for output column n, lowest k in the lowest bits.
        scale: [K // group_size, N], the tensor's dtype.
        zero_point: [K // group_size, N] like scale (asymmetric), or None (symmetric: the
            fixed zero 2^(bits-1), 0.5 for 1 bit).

    Attributes:
        bits: 8, 4, 2 or 1 (fixed by the concrete class).
        group_size: consecutive K elements sharing a scale (and zero); equal to K for
            per-channel quantization.
        symmetric: whether zero_point is absent.
        shape: the logical [N, K].
    """

    tensor_data_names = ["qdata", "scale"]
    tensor_attribute_names = ["bits", "group_size", "symmetric", "shape"]
    optional_tensor_data_names = ["zero_point"]

    BITS: Optional[int] = None  # fixed by each concrete class
    SYMMETRIC_ONLY = False

    def __new__(cls, qdata, scale, bits, group_size, symmetric, shape, zero_point=None):
        return torch.Tensor._make_wrapper_subclass(
            cls, torch.Size(shape), dtype=scale.dtype, device=qdata.device, requires_grad=False
        )

    def __init__(self, qdata, scale, bits, group_size, symmetric, shape, zero_point=None):
        super().__init__()
        self.qdata = qdata
        self.scale = scale
        self.zero_point = zero_point
        self.bits = bits
        self.group_size = group_size
        self.symmetric = symmetric
        self._check()

    def _check(self) -> None:
        cls = type(self)
        if self.BITS is not None and self.bits != self.BITS:
            raise ValueError(f"{cls.__name__} holds {self.BITS}-bit codes, got bits={self.bits}")
        if self.SYMMETRIC_ONLY and not self.symmetric:
            raise ValueError(f"{cls.__name__} is symmetric only, got symmetric={self.symmetric}")
        PackedFormat(self.bits, self.group_size, self.symmetric)  # validates bits and group size
        if len(self.shape) != 2:
            raise ValueError(f"logical shape must be 2-D [N, K], got {list(self.shape)}")
        n, k = self.shape
        per_word = codes_per_word(self.bits)
        if k % self.group_size:
            raise ValueError(f"K={k} is not a multiple of group_size={self.group_size}")
        expected = {"qdata": [k // per_word, n], "scale": [k // self.group_size, n]}
        if not self.symmetric:
            expected["zero_point"] = expected["scale"]
        elif self.zero_point is not None:
            raise ValueError("a symmetric weight has no zero_point tensor, but one is present")
        for name, want in expected.items():
            t = getattr(self, name)
            if not isinstance(t, torch.Tensor):
                raise ValueError(f"{name} must be a tensor of shape {want}, got {type(t).__name__}")
            if list(t.shape) != want:
                raise ValueError(f"{name} has shape {list(t.shape)}, expected {want} for a "
                                 f"{self.bits}-bit [N={n}, K={k}] weight with group_size={self.group_size}")
            if t.device != self.qdata.device:
                raise ValueError(f"{name} is on {t.device} but qdata is on {self.qdata.device}")
        if self.qdata.dtype != torch.int32:
            raise ValueError(f"qdata must be int32, got {self.qdata.dtype}")
        if not self.scale.dtype.is_floating_point:
            raise ValueError(f"scale must be floating point, got {self.scale.dtype}")
        if self.zero_point is not None and self.zero_point.dtype != self.scale.dtype:
            raise ValueError(f"zero_point dtype {self.zero_point.dtype} differs from scale dtype {self.scale.dtype}")

    @property
    def format(self) -> PackedFormat:
        return PackedFormat(self.bits, self.group_size, self.symmetric)

    def _quantization_type(self) -> str:
        group = f"{self.group_size} (per-channel)" if self.group_size == self.shape[1] else self.group_size
        return (f"shape={list(self.shape)}, bits={self.bits}, group_size={group}, symmetric={self.symmetric}, "
                f"dtype={self.dtype}, device={self.device}, qdata={describe(self.qdata)}, "
                f"scale={describe(self.scale)}, zero_point={describe(self.zero_point)}")

    def as_quantized_weight(self) -> QuantizedWeight:
        """The fields as the reference code's :class:`QuantizedWeight` (contiguous copies if needed)."""
        zero = None if self.zero_point is None else self.zero_point.contiguous()
        return QuantizedWeight(self.qdata.contiguous(), self.scale.contiguous(), zero, self.format,
                               tuple(self.shape))

    def dequantize(self, output_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """The [N, K] weight (q - zero) * scale, in ``output_dtype`` (default: the tensor's dtype)."""
        return dequantize_weight(self.as_quantized_weight(), output_dtype or self.dtype)

    def _rebuild(self, qdata, scale, zero_point, shape):
        return type(self)(qdata, scale, self.bits, self.group_size, self.symmetric, shape, zero_point=zero_point)


implements = PackedGemliteTensor.implements


def _slice_packed(self: PackedGemliteTensor, dim: int, start: int, end: int) -> PackedGemliteTensor:
    """Views of the data tensors for rows/columns [start, end) of the logical [N, K] weight."""
    n, k = self.shape
    zero = self.zero_point
    if dim == 0:  # output channels: the last axis of every data tensor
        qdata = aten.slice.Tensor(self.qdata, 1, start, end)
        scale = aten.slice.Tensor(self.scale, 1, start, end)
        zero = None if zero is None else aten.slice.Tensor(zero, 1, start, end)
        return self._rebuild(qdata, scale, zero, (end - start, k))
    group, per_word = self.group_size, codes_per_word(self.bits)
    if start % group or (end % group and end != k):
        kind = "per-channel (group = K)" if group == k else f"group_size={group}"
        raise ValueError(
            f"cannot slice a {type(self).__name__} along K (in_features) at [{start}, {end}): a K slice "
            f"must start and end on a group boundary ({kind}), so that every kept group keeps its scale. "
            f"Tensor parallel (RowwiseParallel / Shard(1)) needs in_features / tp to be a multiple of the "
            f"group size: quantize with a smaller group "
            f"(torchao_gemlite.integrations.tp_group_size(in_features, tp) gives the largest that fits)"
        )
    qdata = aten.slice.Tensor(self.qdata, 0, start // per_word, end // per_word)
    scale = aten.slice.Tensor(self.scale, 0, start // group, end // group)
    zero = None if zero is None else aten.slice.Tensor(zero, 0, start // group, end // group)
    return self._rebuild(qdata, scale, zero, (n, end - start))


register_slicing(PackedGemliteTensor, _slice_packed)


def _describe_format(t) -> str:
    return (f"{type(t).__name__}(bits={getattr(t, 'bits', None)}, group_size={getattr(t, 'group_size', None)}, "
            f"symmetric={getattr(t, 'symmetric', None)})")


@implements(aten.cat.default)
def _(func, types, args, kwargs):
    tensors, dim = cat_arguments(
        args, lambda a, b: (a.bits, a.group_size, a.symmetric) == (b.bits, b.group_size, b.symmetric), _describe_format)
    first = tensors[0]
    data_dim = 1 if dim == 0 else 0  # N is the last axis of the data tensors, K (words, groups) the first
    qdata = torch.cat([t.qdata for t in tensors], data_dim)
    scale = torch.cat([t.scale for t in tensors], data_dim)
    zero = None if first.zero_point is None else torch.cat([t.zero_point for t in tensors], data_dim)
    shape = list(first.shape)
    shape[dim] = sum(t.shape[dim] for t in tensors)
    return first._rebuild(qdata, scale, zero, shape)


@implements(aten.copy_.default)
def _(func, types, args, kwargs):
    return copy_into(args[0], args[1], PackedGemliteTensor.tensor_attribute_names)


@implements(aten._to_copy.default)
def _(func, types, args, kwargs):
    """``.to(device)`` moves every data tensor; ``.to(dtype)`` (e.g. ``model.half()``) also casts
    scale and zero_point, the only float fields."""
    self = args[0]
    device, dtype, non_blocking = to_copy_target(self, kwargs)

    def move(t, cast):
        if t is None:
            return None
        return t.to(device=device, dtype=dtype if cast else t.dtype, non_blocking=non_blocking)

    new = self._rebuild(move(self.qdata, False), move(self.scale, True), move(self.zero_point, True), self.shape)
    return return_and_correct_aliasing(func, args, kwargs, new)
