"""TorchAO tensor subclasses holding our packed weights (one file per family)."""

from .a8w4_tensor import Int8DynActInt4GemliteTensor
from .packed_tensor import PackedGemliteTensor
from .rowwise_dynamic_tensor import (
    Float8DynActFloat8GemliteTensor,
    Int8DynActInt8GemliteTensor,
    RowwiseDynActGemliteTensor,
)
from .weight_only_tensor import (
    WEIGHT_ONLY_TENSOR_CLASSES,
    GemliteWeightOnlyTensor,
    Int1GemliteTensor,
    Int2GemliteTensor,
    Int4GemliteTensor,
    Int8GemliteTensor,
)

ALL_TENSOR_CLASSES = (
    Int8GemliteTensor,
    Int4GemliteTensor,
    Int2GemliteTensor,
    Int1GemliteTensor,
    Int8DynActInt8GemliteTensor,
    Float8DynActFloat8GemliteTensor,
    Int8DynActInt4GemliteTensor,
)

__all__ = [
    "ALL_TENSOR_CLASSES",
    "Float8DynActFloat8GemliteTensor",
    "GemliteWeightOnlyTensor",
    "Int1GemliteTensor",
    "Int2GemliteTensor",
    "Int4GemliteTensor",
    "Int8DynActInt4GemliteTensor",
    "Int8DynActInt8GemliteTensor",
    "Int8GemliteTensor",
    "PackedGemliteTensor",
    "RowwiseDynActGemliteTensor",
    "WEIGHT_ONLY_TENSOR_CLASSES",
]
