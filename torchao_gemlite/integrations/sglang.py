"""SGLang-style ``--torchao-config`` strings, mapped to our configs.

SGLang's ``apply_torchao_config_to_model(model, torchao_config, filter_fn)`` turns a short
string into a torchao config and quantizes every layer whose name contains ``"proj"``. Its
``gemlite-...`` strings build torchao's GemLite configs, which torchao 0.18 removed; this
module is the maintained replacement: the same strings and the same layer filter, with our
kernels behind them wherever we have one.

    from torchao_gemlite.integrations import apply_torchao_config_to_model
    apply_torchao_config_to_model(model, "gemlite-4-64")

or ``patch_sglang()`` before SGLang loads a model (docs/integrations.md).
"""

from __future__ import annotations

import re
from typing import Callable, Optional

import torch
from torchao.core.config import AOBaseConfig
from torchao.quantization import quantize_

from ..configs import (
    GemliteFloat8DynamicActivationFloat8WeightConfig,
    GemliteInt4WeightOnlyConfig,
    GemliteInt8DynamicActivationInt8WeightConfig,
    GemliteWeightOnlyConfig,
)

ACCEPTED_FORMS = (
    "gemlite-<bits>-<group_size>              bits 8, 4, 2, 1; group_size a power of two >= 32 or None "
    "(per-channel); our weight-only kernels, asymmetric",
    "gemlite-<packing_bitwidth>-<bits>-<group_size>   packing_bitwidth 8, 16 or 32 is accepted and ignored "
    "(we always pack into int32 words)",
    "int4wo-<group_size>                      4-bit weight-only, asymmetric (our kernels)",
    "int8wo                                   8-bit weight-only, symmetric per channel (our kernels)",
    "int8dq                                   int8 dynamic activations x int8 weights (our kernels)",
    "fp8dq-per_row                            fp8 dynamic activations x fp8 weights, per row (our kernels)",
    "fp8wo                                    fp8 weight-only (torchao's Float8WeightOnlyConfig)",
    "fp8dq-per_tensor                         fp8 per-tensor (torchao's Float8DynamicActivationFloat8WeightConfig)",
    "'' (empty)                               no quantization",
)

_PACKING_BITWIDTHS = (8, 16, 32)


def _accepted() -> str:
    return "accepted forms:\n  " + "\n  ".join(ACCEPTED_FORMS)


def _group(text: str, spec: str) -> Optional[int]:
    if text in ("None", "none"):
        return None
    if not text.isdigit():
        raise ValueError(f"torchao config {spec!r}: group size {text!r} is not an integer or None; {_accepted()}")
    return int(text)


def _gemlite(spec: str, parts: list[str]) -> AOBaseConfig:
    if len(parts) == 4:
        packing = parts[1]
        if not packing.isdigit() or int(packing) not in _PACKING_BITWIDTHS:
            raise ValueError(f"torchao config {spec!r}: packing_bitwidth {packing!r} is not one of "
                             f"{_PACKING_BITWIDTHS}; {_accepted()}")
    elif len(parts) != 3:
        raise ValueError(f"torchao config {spec!r} has {len(parts) - 1} fields after 'gemlite'; {_accepted()}")
    bits_text, group_text = parts[-2], parts[-1]
    if not bits_text.isdigit():
        raise ValueError(f"torchao config {spec!r}: bits {bits_text!r} is not an integer; {_accepted()}")
    try:
        return GemliteWeightOnlyConfig(bits=int(bits_text), group_size=_group(group_text, spec))
    except (TypeError, ValueError) as e:
        raise ValueError(f"torchao config {spec!r}: {e}; {_accepted()}") from None


def _torchao_fp8_per_tensor() -> AOBaseConfig:
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerTensor

    return Float8DynamicActivationFloat8WeightConfig(granularity=PerTensor())


def _torchao_fp8_weight_only() -> AOBaseConfig:
    from torchao.quantization import Float8WeightOnlyConfig

    return Float8WeightOnlyConfig()


def parse_torchao_config(spec: str) -> Optional[AOBaseConfig]:
    """The config for an SGLang-style string (see ``ACCEPTED_FORMS``); None for ''.

    Raises ValueError, listing the accepted forms, for anything else.
    """
    if not isinstance(spec, str):
        raise TypeError(f"torchao config must be a string, got {type(spec).__name__}")
    spec = spec.strip()
    if spec == "":
        return None
    fixed = {
        "int8wo": lambda: GemliteWeightOnlyConfig(bits=8, group_size=None, symmetric=True),
        "int8dq": GemliteInt8DynamicActivationInt8WeightConfig,
        "fp8dq-per_row": GemliteFloat8DynamicActivationFloat8WeightConfig,
        "fp8dq-per_tensor": _torchao_fp8_per_tensor,
        "fp8wo": _torchao_fp8_weight_only,
    }
    if spec in fixed:
        return fixed[spec]()
    parts = spec.split("-")
    if parts[0] == "gemlite":
        return _gemlite(spec, parts)
    match = re.fullmatch(r"int4wo-(\w+)", spec)
    if match:
        try:
            return GemliteInt4WeightOnlyConfig(group_size=_group(match.group(1), spec))
        except (TypeError, ValueError) as e:
            raise ValueError(f"torchao config {spec!r}: {e}; {_accepted()}") from None
    raise ValueError(f"unknown torchao config {spec!r}; {_accepted()}")


def proj_filter(module: torch.nn.Module, fqn: str) -> bool:
    """SGLang's default: quantize the linear layers whose name contains 'proj'
    (q/k/v/o_proj, gate/up/down_proj, qkv_proj, gate_up_proj), not embeddings or lm_head."""
    return isinstance(module, torch.nn.Linear) and "proj" in fqn


def apply_torchao_config_to_model(model: torch.nn.Module, torchao_config: str,
                                  filter_fn: Optional[Callable[[torch.nn.Module, str], bool]] = proj_filter
                                  ) -> torch.nn.Module:
    """Quantizes ``model`` in place as SGLang's function of the same name does, and returns it.

    ``filter_fn(module, fqn)`` picks the layers (default: linear layers named ``*proj*``);
    None quantizes every ``nn.Linear``. An empty ``torchao_config`` leaves the model as it is.
    """
    config = parse_torchao_config(torchao_config)
    if config is None:
        return model
    quantize_(model, config, filter_fn=filter_fn)
    return model


def patch_sglang() -> list[str]:
    """Makes SGLang's ``--torchao-config`` use ``apply_torchao_config_to_model`` from here.

    Replaces the function in ``sglang.srt.layers.torchao_utils`` and in every already-imported
    ``sglang`` module that imported it by name (e.g. the model runner). Call it before SGLang
    loads a model, in the process that loads it. Returns the patched module names.
    """
    import sys

    try:
        import sglang.srt.layers.torchao_utils as torchao_utils
    except ImportError as e:
        raise ImportError(f"patch_sglang needs SGLang (sglang.srt.layers.torchao_utils): {e}") from None
    original = getattr(torchao_utils, "apply_torchao_config_to_model", None)
    patched = []
    for name, module in list(sys.modules.items()):
        if not name.startswith("sglang") or module is None:
            continue
        current = getattr(module, "apply_torchao_config_to_model", None)
        if current is not None and (current is original or module is torchao_utils):
            module.apply_torchao_config_to_model = apply_torchao_config_to_model
            patched.append(name)
    return patched
