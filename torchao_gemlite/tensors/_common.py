"""Pieces shared by every torchao-gemlite tensor subclass.

* :class:`GemliteBaseTensor`: a :class:`torchao.utils.TorchAOBaseTensor` whose unsupported
  ops fail with an error that names the op, whose ``__repr__`` shows shapes instead of
  the packed bytes, and whose unpickling (``torch.load``) validates the loaded fields.
* helpers for the linear argument list, slice bounds and ``copy_`` checks.
* :func:`finalize_tensor_class`: pins the public module name and allows the class in
  ``torch.load(weights_only=True)``; every concrete class calls it once, last.
"""

from __future__ import annotations

import torch
from torchao.utils import TorchAOBaseTensor, _torchao_base_tensor__setstate__

aten = torch.ops.aten

# The module name written into checkpoints: independent of the file a class lives in.
PUBLIC_MODULE = "torchao_gemlite"


def describe(t: torch.Tensor | None) -> str:
    """'int32[16, 256]' for a tensor, 'None' otherwise (for reprs and error messages)."""
    if t is None:
        return "None"
    return f"{str(t.dtype).removeprefix('torch.')}{list(t.shape)}"


class GemliteBaseTensor(TorchAOBaseTensor):
    """Base of our weight tensors. Subclasses define the data/attribute names, ``_check()``
    (raises ValueError on inconsistent fields) and ``_quantization_type()``."""

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        kwargs = {} if kwargs is None else kwargs
        table = cls._ATEN_OP_TABLE.get(cls, {})
        if func in table:
            return table[func](func, types, args, kwargs)
        raise NotImplementedError(
            f"{cls.__name__} does not support the op {func}: a packed quantized weight supports "
            f"F.linear, detach/clone/to/copy_, slice/narrow/split, cat and dequantize(). "
            f"Call .dequantize() first to get a plain tensor for other ops."
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._quantization_type()})"

    def _check(self) -> None:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError


def _validating_setstate(self, state):
    """Unpickling path of ``torch.load``: set the fields, then check they fit together, so a
    tampered or truncated checkpoint fails here instead of producing a garbage model."""
    _torchao_base_tensor__setstate__(self, state)
    missing = [name for name in self.tensor_data_names + self.tensor_attribute_names
               if name not in ("shape", "dtype") and not hasattr(self, name)]
    if missing:
        raise ValueError(f"checkpoint entry for {type(self).__name__} is missing the field(s) {missing}")
    try:
        self._check()
    except (ValueError, TypeError) as e:
        raise ValueError(f"checkpoint entry for {type(self).__name__} is inconsistent: {e}") from None


def finalize_tensor_class(cls) -> None:
    """Last step of a tensor module: stable pickle name, validated unpickling, safe global."""
    cls.__module__ = PUBLIC_MODULE
    # TorchAOBaseTensor.__init_subclass__ installs its own __setstate__ on every class;
    # ours wraps it, so it must be set after the class exists.
    cls.__setstate__ = _validating_setstate
    torch.serialization.add_safe_globals([cls])


def linear_args(args, kwargs):
    """(input, weight, bias) from the arguments of F.linear / aten.linear."""
    x = args[0] if len(args) > 0 else kwargs["input"]
    w = args[1] if len(args) > 1 else kwargs["weight"]
    bias = args[2] if len(args) > 2 else kwargs.get("bias")
    return x, w, bias


def check_linear_input(x: torch.Tensor, w: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point:
        raise TypeError(f"F.linear with a {type(w).__name__} weight needs a floating-point input, got "
                        f"{x.dtype if isinstance(x, torch.Tensor) else type(x).__name__}")
    if x.shape[-1] != w.shape[1]:
        raise ValueError(f"F.linear: input has {x.shape[-1]} features in its last axis, but the "
                         f"{type(w).__name__} weight of shape {list(w.shape)} expects K={w.shape[1]}")


def slice_bounds(dim, start, end, step, shape) -> tuple[int, int, int]:
    """Normalizes aten.slice arguments on a 2-D tensor to (dim, start, end), Python semantics."""
    if step != 1:
        raise ValueError(f"slicing a packed weight needs step 1, got step={step}")
    if dim not in (0, 1, -1, -2):
        raise IndexError(f"slice dim {dim} is out of range for a 2-D weight")
    dim %= 2
    start, end, _ = slice(start, end).indices(shape[dim])
    return dim, start, max(start, end)


def split_sizes(func, args, size_along_dim):
    """Chunk sizes of aten.split.Tensor / split_with_sizes (their dim is args[2], default 0)."""
    if func is aten.split.Tensor:
        step = args[1]
        return [min(step, size_along_dim - s) for s in range(0, size_along_dim, step)] or [0]
    return list(args[1])


def metadata_mismatches(dst, src, attribute_names) -> list[str]:
    """Differences between two tensors that make ``dst.copy_(src)`` meaningless."""
    diffs = []
    if type(dst) is not type(src):
        diffs.append(f"type: source {type(src).__name__}, destination {type(dst).__name__}")
        return diffs
    if dst.shape != src.shape:
        diffs.append(f"shape: source {list(src.shape)}, destination {list(dst.shape)}")
    for name in attribute_names:
        if name in ("shape", "dtype"):
            continue
        if getattr(dst, name) != getattr(src, name):
            diffs.append(f"{name}: source {getattr(src, name)!r}, destination {getattr(dst, name)!r}")
    names = list(dst.tensor_data_names) + list(getattr(dst, "optional_tensor_data_names", []))
    for name in names:
        a, b = getattr(dst, name), getattr(src, name)
        if (a is None) != (b is None):
            diffs.append(f"{name} present in one and absent in the other")
        elif a is not None and a.shape != b.shape:
            diffs.append(f"{name} shape: source {list(b.shape)}, destination {list(a.shape)}")
    return diffs


def copy_into(dst, src, attribute_names):
    """In-place copy of every data tensor (dst may be a view: the write lands in its base)."""
    if not isinstance(dst, GemliteBaseTensor):
        raise TypeError(
            f"cannot copy a {type(src).__name__} into a plain {describe(dst)} tensor: to load a quantized "
            f"checkpoint into a float model use load_state_dict(..., assign=True), or quantize the model "
            f"with the same config first; to get float values call .dequantize()"
        )
    if not isinstance(src, GemliteBaseTensor):
        raise TypeError(
            f"cannot copy a plain {describe(src) if isinstance(src, torch.Tensor) else type(src).__name__} "
            f"into a {type(dst).__name__}: quantize it first (e.g. {type(dst).__name__}.from_hp) "
            f"with the same settings, then copy"
        )
    diffs = metadata_mismatches(dst, src, attribute_names)
    if diffs:
        raise ValueError(f"cannot copy_ into a {type(dst).__name__}: the source differs ({'; '.join(diffs)}); "
                         f"it was quantized with different settings or has a different shape")
    names = list(dst.tensor_data_names) + list(getattr(dst, "optional_tensor_data_names", []))
    for name in names:
        target = getattr(dst, name)
        if target is not None:
            target.copy_(getattr(src, name))
    return dst
