"""torchao-gemlite: fast low-bit linear layers for PyTorch through TorchAO."""

from .formats import PackedFormat
from .quant import QuantizedWeight, dequantize_weight, quantize_weight, reference_linear

__version__ = "0.1.0"
