"""torchao-gemlite: fast low-bit linear layers for PyTorch through TorchAO."""

from .formats import PackedFormat
from .quant import QuantizedWeight, dequantize_weight, quantize_weight, reference_linear
from .configs import (
    GemliteFloat8DynamicActivationFloat8WeightConfig,
    GemliteInt4WeightOnlyConfig,
    GemliteInt8DynamicActivationInt4WeightConfig,
    GemliteInt8DynamicActivationInt8WeightConfig,
    GemliteWeightOnlyConfig,
)
from .tensors import (
    Float8DynActFloat8GemliteTensor,
    GemliteWeightOnlyTensor,
    Int1GemliteTensor,
    Int2GemliteTensor,
    Int4GemliteTensor,
    Int8DynActInt4GemliteTensor,
    Int8DynActInt8GemliteTensor,
    Int8GemliteTensor,
)
from . import _registration

_registration.register()

__version__ = "0.1.0"


def tune(*args, **kwargs):
    """Measures kernel launch configurations for your shapes on this GPU and saves the best
    to the user cache (see ``torchao_gemlite.kernels.tuning.tune`` and docs/kernels.md).
    Imported lazily so that ``import torchao_gemlite`` does not load the kernels."""
    from .kernels.tuning import tune as _tune

    return _tune(*args, **kwargs)


def tune_dynamic(*args, **kwargs):
    """Measures the dynamic-activation GEMMs' launch configurations (A8W8 int8 / fp8, A8W4) for your shapes on
    this GPU and saves the best to the same user cache (see ``torchao_gemlite.kernels.dynamic_tuning``)."""
    from .kernels.dynamic_tuning import tune_dynamic as _tune_dynamic

    return _tune_dynamic(*args, **kwargs)
