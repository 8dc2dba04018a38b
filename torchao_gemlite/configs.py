"""TorchAO configs: ``quantize_(model, GemliteInt4WeightOnlyConfig())`` and friends.

Each config is a JSON-friendly ``@dataclass`` on :class:`torchao.core.config.AOBaseConfig`
(``config_to_dict`` / ``config_from_dict`` round-trip it) with a handler registered through
``register_quantize_module_handler``. A handler takes ``parameter_name`` (so ``FqnToConfig``
works), quantizes that one parameter where it sits (a model on the GPU is quantized on the
GPU, one layer's float copy at a time), and leaves an ineligible layer (in_features not a
multiple of 32 or of the group size, not 2-D, already quantized) as it is, with a warning
that names it and says why.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torchao.core.config import AOBaseConfig
from torchao.quantization.transform_module import register_quantize_module_handler
from torchao.utils import TorchAOBaseTensor

from .formats import FLOAT_WEIGHT_DTYPES, K_ALIGNMENT, MIN_GROUP_SIZE, check_bits
from .tensors import (
    Float8DynActFloat8GemliteTensor,
    GemliteWeightOnlyTensor,
    Int8DynActInt4GemliteTensor,
    Int8DynActInt8GemliteTensor,
)

__all__ = [
    "GemliteFloat8DynamicActivationFloat8WeightConfig",
    "GemliteInt4WeightOnlyConfig",
    "GemliteInt8DynamicActivationInt4WeightConfig",
    "GemliteInt8DynamicActivationInt8WeightConfig",
    "GemliteWeightOnlyConfig",
]


def _check_group_size(group_size) -> None:
    if group_size is None:
        return
    if not isinstance(group_size, int) or isinstance(group_size, bool):
        raise TypeError(f"group_size must be an int or None (per-channel), got {group_size!r}")
    if group_size < MIN_GROUP_SIZE or group_size & (group_size - 1):
        raise ValueError(f"group_size={group_size} is not supported: use a power of two >= {MIN_GROUP_SIZE}, "
                         f"or None for per-channel")


def _check_symmetric(symmetric) -> None:
    if not isinstance(symmetric, bool):
        raise TypeError(f"symmetric must be a bool, got {symmetric!r}")


@dataclass
class GemliteWeightOnlyConfig(AOBaseConfig):
    """Weight-only quantization to ``bits`` = 8, 4, 2 or 1 with fp16/bf16/fp32 activations.

    group_size: K elements sharing a scale (power of two >= 32), or None for per-channel.
    symmetric: False -> a zero point per group (HQQ convention (q - zero) * scale);
               True -> fixed zero 2^(bits-1) (0.5 for 1 bit), no zero tensor.
    Weights become ``Int{bits}GemliteTensor``.
    """

    bits: int = 4
    group_size: Optional[int] = 128
    symmetric: bool = False

    def __post_init__(self):
        check_bits(self.bits)
        _check_group_size(self.group_size)
        _check_symmetric(self.symmetric)


@dataclass
class GemliteInt4WeightOnlyConfig(AOBaseConfig):
    """4-bit weight-only quantization: ``GemliteWeightOnlyConfig(bits=4, ...)``, weights become
    ``Int4GemliteTensor``."""

    group_size: Optional[int] = 128
    symmetric: bool = False

    def __post_init__(self):
        _check_group_size(self.group_size)
        _check_symmetric(self.symmetric)


@dataclass
class GemliteInt8DynamicActivationInt8WeightConfig(AOBaseConfig):
    """A8W8 int8: weights int8 per output channel, activations int8 per token at run time.
    Weights become ``Int8DynActInt8GemliteTensor``."""


@dataclass
class GemliteFloat8DynamicActivationFloat8WeightConfig(AOBaseConfig):
    """A8W8 fp8 (e4m3): weights per output channel, activations per token at run time.
    Weights become ``Float8DynActFloat8GemliteTensor``."""


@dataclass
class GemliteInt8DynamicActivationInt4WeightConfig(AOBaseConfig):
    """A8W4: weights 4-bit symmetric per group (None: per-channel), activations int8 per token
    at run time. Weights become ``Int8DynActInt4GemliteTensor``."""

    group_size: Optional[int] = 128

    def __post_init__(self):
        _check_group_size(self.group_size)


# --- handlers ---------------------------------------------------------------------------


def _module_name(module: torch.nn.Module) -> Optional[str]:
    """Best effort: the fully qualified name quantize_ is visiting, read from torchao's
    traversal frames (``cur_fqn`` / ``fqn``); None if not found (e.g. a direct handler call)."""
    frame = sys._getframe(1)
    for _ in range(12):
        frame = frame.f_back
        if frame is None:
            return None
        local = frame.f_locals
        if frame.f_code.co_name == "_replace_with_custom_fn_if_matches_filter" and local.get("model") is module:
            return local.get("cur_fqn", "")[:-1] or "<root>"
        if frame.f_code.co_name == "_fqn_to_config_handler" and local.get("module") is module:
            return local.get("fqn") or "<root>"
    return None


def _ineligible_reason(weight, group_size: Optional[int]) -> Optional[str]:
    if isinstance(weight, TorchAOBaseTensor):
        return f"its weight is already quantized ({type(weight).__name__})"
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        shape = list(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        return f"the weight is not a 2-D [out_features, in_features] tensor ({shape})"
    if weight.dtype not in FLOAT_WEIGHT_DTYPES:
        return f"the weight dtype {weight.dtype} is not one of {FLOAT_WEIGHT_DTYPES}"
    n, k = weight.shape
    if n < 1 or k < K_ALIGNMENT or k % K_ALIGNMENT:
        return f"in_features={k} is too small or not a multiple of {K_ALIGNMENT} (out_features={n})"
    if group_size is not None and k % group_size:
        return f"in_features={k} is not a multiple of group_size={group_size} (use a smaller group or None)"
    return None


class _QuantizedExtraRepr:
    """``module.extra_repr`` once a parameter is quantized: the original text plus the new tensor's
    description. A plain object, not a lambda, so that ``torch.save(model)`` can pickle the module."""

    def __init__(self, module: torch.nn.Module, parameter_name: str):
        self.module = module
        self.parameter_name = parameter_name
        self.previous = module.__dict__.get("extra_repr")  # another quantized parameter's, if any

    def __call__(self) -> str:
        base = self.previous() if self.previous is not None else type(self.module).extra_repr(self.module)
        w = getattr(self.module, self.parameter_name)
        parts = [base] if base else []
        if hasattr(w, "_quantization_type"):
            parts.append(f"{self.parameter_name}={type(w).__name__}({w._quantization_type()})")
        return ", ".join(parts)


def _quantize_parameter(module: torch.nn.Module, config: AOBaseConfig, parameter_name: str,
                        group_size: Optional[int], build: Callable[[torch.Tensor], torch.Tensor]) -> torch.nn.Module:
    """Replaces ``module.<parameter_name>`` by ``build(weight)``, or warns and leaves it."""
    if not hasattr(module, parameter_name):
        raise AttributeError(f"{type(config).__name__}: {type(module).__name__} has no parameter {parameter_name!r}")
    weight = getattr(module, parameter_name)
    reason = _ineligible_reason(weight, group_size)
    if reason is not None:
        name = _module_name(module)
        where = f"{name!r} ({type(module).__name__})" if name else repr(module)
        warnings.warn(f"{type(config).__name__}: left {where} unquantized: {reason}", UserWarning, stacklevel=2)
        return module
    with torch.no_grad():
        new_weight = build(weight.detach())
    setattr(module, parameter_name, torch.nn.Parameter(new_weight, requires_grad=False))
    module.extra_repr = _QuantizedExtraRepr(module, parameter_name)
    return module


def quantize_module_weight_only(module, bits: int, group_size: Optional[int], symmetric: bool, config,
                                parameter_name: str = "weight"):
    """The weight-only transform, shared by both weight-only configs and the Int4WeightOnlyConfig route."""
    return _quantize_parameter(
        module, config, parameter_name, group_size,
        lambda w: GemliteWeightOnlyTensor.from_hp(w, group_size=group_size, symmetric=symmetric, bits=bits),
    )


@register_quantize_module_handler(GemliteWeightOnlyConfig)
def _weight_only_transform(module, config: GemliteWeightOnlyConfig, *, parameter_name: str = "weight"):
    return quantize_module_weight_only(module, config.bits, config.group_size, config.symmetric, config,
                                       parameter_name)


@register_quantize_module_handler(GemliteInt4WeightOnlyConfig)
def _int4_weight_only_transform(module, config: GemliteInt4WeightOnlyConfig, *, parameter_name: str = "weight"):
    return quantize_module_weight_only(module, 4, config.group_size, config.symmetric, config, parameter_name)


@register_quantize_module_handler(GemliteInt8DynamicActivationInt8WeightConfig)
def _a8w8_int8_transform(module, config, *, parameter_name: str = "weight"):
    return _quantize_parameter(module, config, parameter_name, None, Int8DynActInt8GemliteTensor.from_hp)


@register_quantize_module_handler(GemliteFloat8DynamicActivationFloat8WeightConfig)
def _a8w8_fp8_transform(module, config, *, parameter_name: str = "weight"):
    return _quantize_parameter(module, config, parameter_name, None, Float8DynActFloat8GemliteTensor.from_hp)


@register_quantize_module_handler(GemliteInt8DynamicActivationInt4WeightConfig)
def _a8w4_transform(module, config, *, parameter_name: str = "weight"):
    return _quantize_parameter(
        module, config, parameter_name, config.group_size,
        lambda w: Int8DynActInt4GemliteTensor.from_hp(w, group_size=config.group_size),
    )


ALL_CONFIG_CLASSES = (
    GemliteWeightOnlyConfig,
    GemliteInt4WeightOnlyConfig,
    GemliteInt8DynamicActivationInt8WeightConfig,
    GemliteFloat8DynamicActivationFloat8WeightConfig,
    GemliteInt8DynamicActivationInt4WeightConfig,
)
