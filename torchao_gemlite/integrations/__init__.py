"""Glue for serving and training stacks: SGLang-style config strings, tensor parallel checks.

HF transformers needs no glue: ``TorchAoConfig(quant_type=<our config>)`` works once
``torchao_gemlite`` is imported (docs/integrations.md).
"""

from .distributed import check_tensor_parallel, tp_group_size
from .sglang import ACCEPTED_FORMS, apply_torchao_config_to_model, parse_torchao_config, patch_sglang

__all__ = [
    "ACCEPTED_FORMS",
    "apply_torchao_config_to_model",
    "check_tensor_parallel",
    "parse_torchao_config",
    "patch_sglang",
    "tp_group_size",
]
