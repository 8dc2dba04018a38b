"""What ``import torchao_gemlite`` registers with torch and torchao. Every step is idempotent.

* ``torch.serialization.add_safe_globals``: our tensor classes, for ``torch.load(weights_only=True)``
  (each tensor module also does this for its own classes);
* ``torchao.core.config.ALLOWED_AO_MODULES``: ``config_from_dict`` (HF ``TorchAoConfig``)
  finds our configs by class name;
* torchao's safetensors allowlists: ``flatten_tensor_state_dict`` / ``unflatten_tensor_state_dict``
  (and HF ``save_pretrained``) accept our tensors;
* the seed route: torchao's ``Int4WeightOnlyConfig(int4_packing_format="gemlite")`` goes to our
  weight-only handler; every other packing format still goes to torchao's own handler.
"""

from __future__ import annotations

import functools

import torch

from .configs import ALL_CONFIG_CLASSES, GemliteInt4WeightOnlyConfig, quantize_module_weight_only
from .tensors import ALL_TENSOR_CLASSES

CONFIG_MODULE = "torchao_gemlite.configs"
INT4_PACKING_FORMAT = "gemlite"
_WRAPPER_MARK = "_torchao_gemlite_route"


def _register_safe_globals() -> None:
    present = set(torch.serialization.get_safe_globals())
    torch.serialization.add_safe_globals([cls for cls in ALL_TENSOR_CLASSES if cls not in present])


def _register_config_module() -> None:
    from torchao.core.config import ALLOWED_AO_MODULES

    ALLOWED_AO_MODULES.add(CONFIG_MODULE)


def _register_safetensors() -> None:
    from torchao.prototype.safetensors import safetensors_utils

    for cls in ALL_TENSOR_CLASSES:
        safetensors_utils.ALLOWED_CLASSES[cls.__name__] = cls
        if cls.__name__ not in safetensors_utils.ALLOWED_TENSORS_SUBCLASSES:
            safetensors_utils.ALLOWED_TENSORS_SUBCLASSES.append(cls.__name__)


def _install_int4_route() -> None:
    from torchao.quantization import Int4WeightOnlyConfig
    from torchao.quantization.transform_module import _QUANTIZE_CONFIG_HANDLER

    torchao_handler = _QUANTIZE_CONFIG_HANDLER[Int4WeightOnlyConfig]
    if getattr(torchao_handler, _WRAPPER_MARK, False):
        return

    @functools.wraps(torchao_handler)
    def handler(module, config, *, parameter_name: str = "weight"):
        fmt = config.int4_packing_format
        if getattr(fmt, "value", fmt) == INT4_PACKING_FORMAT:
            return quantize_module_weight_only(
                module, 4, config.group_size, False, GemliteInt4WeightOnlyConfig(group_size=config.group_size),
                parameter_name,
            )
        return torchao_handler(module, config, parameter_name=parameter_name)

    setattr(handler, _WRAPPER_MARK, True)
    _QUANTIZE_CONFIG_HANDLER[Int4WeightOnlyConfig] = handler


def register() -> None:
    """Runs every registration; safe to call any number of times."""
    _register_safe_globals()
    _register_config_module()
    _register_safetensors()
    _install_int4_route()
