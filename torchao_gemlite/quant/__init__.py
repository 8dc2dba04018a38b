"""Reference formats: quantizers, packing and the reference linear layers."""

from .packing import pack_codes, unpack_codes
from .quantize import (
    FP8_DTYPE,
    QuantizedWeight,
    quantize_groupwise_codes,
    quantize_rowwise_fp8,
    quantize_rowwise_int8,
    quantize_weight,
)
from .refine import quantize_weight_refined
from .reference import dequantize_weight, reference_linear, reference_linear_a8w4, reference_linear_dynamic

__all__ = [
    "FP8_DTYPE",
    "QuantizedWeight",
    "dequantize_weight",
    "pack_codes",
    "quantize_groupwise_codes",
    "quantize_rowwise_fp8",
    "quantize_rowwise_int8",
    "quantize_weight",
    "quantize_weight_refined",
    "reference_linear",
    "reference_linear_a8w4",
    "reference_linear_dynamic",
    "unpack_codes",
]
