"""A8W8 with dynamic per-token activation quantization: int8 x int8 and fp8 x fp8.

:class:`Int8DynActInt8GemliteTensor` and :class:`Float8DynActFloat8GemliteTensor` share one
implementation: the weight is quantized per output channel (symmetric absmax), the input
per token on every call, and ``F.linear`` calls ``torch.ops.torchao_gemlite.linear_dynamic_int8``
or ``linear_dynamic_fp8``.
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import return_and_correct_aliasing

from .. import ops
from ..formats import K_ALIGNMENT, check_weight
from ..quant import FP8_DTYPE, quantize_rowwise_fp8, quantize_rowwise_int8
from ._common import (
    GemliteBaseTensor,
    cat_arguments,
    copy_into,
    describe,
    finalize_tensor_class,
    register_linear,
    register_slicing,
    to_copy_target,
)

aten = torch.ops.aten


class RowwiseDynActGemliteTensor(GemliteBaseTensor):
    """A row-wise quantized [N, K] weight for dynamic-activation A8W8 linears.

    Tensor data:
        qdata: [N, K] int8 (Int8DynActInt8GemliteTensor) or float8_e4m3fn
            (Float8DynActFloat8GemliteTensor); W ~ qdata * scale[:, None].
        scale: float32 [N], one per output channel.
    Attributes:
        dtype: the logical (activation / output) dtype, the original weight's dtype.
    """

    tensor_data_names = ["qdata", "scale"]
    tensor_attribute_names = ["dtype"]

    QDATA_DTYPE: torch.dtype  # set by each concrete class
    LINEAR_OP_NAME: str

    def __new__(cls, qdata, scale, dtype):
        return torch.Tensor._make_wrapper_subclass(cls, qdata.shape, dtype=dtype, device=qdata.device,
                                                   requires_grad=False)

    def __init__(self, qdata, scale, dtype):
        super().__init__()
        self.qdata = qdata
        self.scale = scale
        self._check()

    def _check(self) -> None:
        for name in ("qdata", "scale"):
            if not isinstance(getattr(self, name), torch.Tensor):
                raise ValueError(f"{name} must be a tensor, got {type(getattr(self, name)).__name__}")
        if self.qdata.dtype != self.QDATA_DTYPE or self.qdata.dim() != 2:
            raise ValueError(f"qdata must be a 2-D {self.QDATA_DTYPE} tensor [N, K], got {describe(self.qdata)}")
        n, k = self.qdata.shape
        if tuple(self.shape) != (n, k):
            raise ValueError(f"qdata has shape {[n, k]} but the tensor's shape is {list(self.shape)}")
        if self.scale.dtype != torch.float32 or list(self.scale.shape) != [n]:
            raise ValueError(f"scale must be float32 [N={n}], got {describe(self.scale)}")
        if k % K_ALIGNMENT:
            raise ValueError(f"K={k} must be a multiple of {K_ALIGNMENT}")
        if self.scale.device != self.qdata.device:
            raise ValueError(f"scale is on {self.scale.device} but qdata is on {self.qdata.device}")
        if not self.dtype.is_floating_point:
            raise ValueError(f"dtype must be floating point, got {self.dtype}")

    @classmethod
    def from_hp(cls, weight: torch.Tensor) -> "RowwiseDynActGemliteTensor":
        """Quantizes a float [N, K] weight per output channel; the tensor keeps the weight's dtype."""
        if cls is RowwiseDynActGemliteTensor:
            raise TypeError("use Int8DynActInt8GemliteTensor.from_hp or Float8DynActFloat8GemliteTensor.from_hp")
        check_weight(weight)
        with torch.no_grad():
            qdata, scale = cls._quantize_rows(weight.detach())
        return cls(qdata, scale.reshape(-1), weight.dtype)

    def _quantization_type(self) -> str:
        return (f"shape={list(self.shape)}, weight={self.QDATA_DTYPE} per-channel, activation=dynamic per-token, "
                f"dtype={self.dtype}, device={self.device}, qdata={describe(self.qdata)}, scale={describe(self.scale)}")

    def _linear(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        # qdata/scale views (N or K slices) go to the op as they are: the kernels take strides.
        return ops.call(self.LINEAR_OP_NAME, x, self.qdata, self.scale, bias)

    def dequantize(self, output_dtype: torch.dtype | None = None) -> torch.Tensor:
        """The [N, K] weight qdata * scale, in ``output_dtype`` (default: the tensor's dtype)."""
        return (self.qdata.float() * self.scale.unsqueeze(1)).to(output_dtype or self.dtype)


implements = RowwiseDynActGemliteTensor.implements
implements_torch_function = RowwiseDynActGemliteTensor.implements_torch_function
register_linear(RowwiseDynActGemliteTensor)


def _slice_rows(self, dim, start, end):
    if dim == 0:
        return type(self)(aten.slice.Tensor(self.qdata, 0, start, end), aten.slice.Tensor(self.scale, 0, start, end),
                          self.dtype)
    if start % K_ALIGNMENT or end % K_ALIGNMENT:
        raise ValueError(f"cannot slice a {type(self).__name__} along K (in_features) at [{start}, {end}): "
                         f"K slices must start and end on multiples of {K_ALIGNMENT}")
    return type(self)(aten.slice.Tensor(self.qdata, 1, start, end), self.scale, self.dtype)


register_slicing(RowwiseDynActGemliteTensor, _slice_rows)


@implements(aten.cat.default)
def _(func, types, args, kwargs):
    tensors, dim = cat_arguments(args, lambda a, b: a.dtype == b.dtype, lambda t: f"{type(t).__name__}({t.dtype})")
    first = tensors[0]
    if dim == 0:
        return type(first)(torch.cat([t.qdata for t in tensors], 0), torch.cat([t.scale for t in tensors], 0),
                           first.dtype)
    if not all(torch.equal(t.scale, first.scale) for t in tensors[1:]):
        raise ValueError("cat along K (in_features) needs identical per-channel scales in every piece; "
                         "these pieces were quantized separately")
    return type(first)(torch.cat([t.qdata for t in tensors], 1), first.scale.clone(), first.dtype)


@implements(aten.copy_.default)
def _(func, types, args, kwargs):
    return copy_into(args[0], args[1], RowwiseDynActGemliteTensor.tensor_attribute_names)


@implements(aten._to_copy.default)
def _(func, types, args, kwargs):
    """``.to(device)`` moves qdata and scale; ``.to(dtype)`` only changes the logical dtype
    (the output dtype of the linear): the stored codes and fp32 scales are unchanged."""
    self = args[0]
    device, dtype, non_blocking = to_copy_target(self, kwargs)
    new = type(self)(self.qdata.to(device, non_blocking=non_blocking), self.scale.to(device, non_blocking=non_blocking),
                     dtype)
    return return_and_correct_aliasing(func, args, kwargs, new)


class Int8DynActInt8GemliteTensor(RowwiseDynActGemliteTensor):
    """A8W8 int8: int8 [N, K] weight, fp32 per-channel scale; int8 per-token activations."""

    QDATA_DTYPE = torch.int8
    LINEAR_OP_NAME = "linear_dynamic_int8"
    _quantize_rows = staticmethod(quantize_rowwise_int8)


class Float8DynActFloat8GemliteTensor(RowwiseDynActGemliteTensor):
    """A8W8 fp8: float8_e4m3fn [N, K] weight, fp32 per-channel scale; fp8 per-token activations."""

    QDATA_DTYPE = FP8_DTYPE
    LINEAR_OP_NAME = "linear_dynamic_fp8"
    _quantize_rows = staticmethod(quantize_rowwise_fp8)


for _cls in (Int8DynActInt8GemliteTensor, Float8DynActFloat8GemliteTensor):
    finalize_tensor_class(_cls)
