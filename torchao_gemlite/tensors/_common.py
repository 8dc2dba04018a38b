"""Pieces shared by every torchao-gemlite tensor subclass.

* :class:`GemliteBaseTensor`: a :class:`torchao.utils.TorchAOBaseTensor` whose unsupported
  ops fail with an error that names the op, whose ``__repr__`` shows shapes instead of
  the packed bytes, and whose unpickling (``torch.load``) validates the loaded fields.
* helpers for the linear argument list, slice bounds and ``copy_`` checks.
* :func:`finalize_tensor_class`: pins the public module name and allows the class in
  ``torch.load(weights_only=True)``; every concrete class calls it once, last.
"""

from __future__ import annotations

import hashlib

import torch
from torch.utils._python_dispatch import return_and_correct_aliasing
from torchao.utils import TorchAOBaseTensor, _torchao_base_tensor__setstate__, fill_defaults

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

    def _stable_hash_for_caching(self) -> str:
        """Key of this weight's metadata for torch.compile's AOT autograd cache: class, attributes,
        and each data tensor's shape, stride, dtype and device (never the values)."""
        parts = [type(self).__qualname__]
        parts += [f"{name}={getattr(self, name)!r}" for name in self.tensor_attribute_names]
        for name in self._data_names():
            t = getattr(self, name)
            parts.append(f"{name}=None" if t is None else
                         f"{name}={t.dtype}{tuple(t.shape)}{t.stride()}{t.device.type}")
        return hashlib.blake2b(";".join(parts).encode(), digest_size=16).hexdigest()

    def _data_names(self) -> list[str]:
        return list(self.tensor_data_names) + list(getattr(self, "optional_tensor_data_names", []))

    def _with_data(self, fields: dict) -> "GemliteBaseTensor":
        """The same type and attributes around new data tensors (``fields``: name -> tensor or None)."""
        args = [fields[name] for name in self.tensor_data_names]
        args += [getattr(self, name) for name in self.tensor_attribute_names]
        optional = {name: fields[name] for name in getattr(self, "optional_tensor_data_names", [])}
        return type(self)(*args, **optional)

    def _linear(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """y = x @ W.T + bias through this family's custom op (every subclass overrides it)."""
        raise NotImplementedError  # pragma: no cover


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
    # .shape on a subclass goes through __torch_function__ (about 3 us an eager call) unless disabled
    with torch._C.DisableTorchFunctionSubclass():
        k, x_k = w.shape[1], x.shape[-1]
    if x_k != k:
        raise ValueError(f"F.linear: input has {x_k} features in its last axis, but the "
                         f"{type(w).__name__} weight of shape {list(w.shape)} expects K={k}")


def register_linear(cls) -> None:
    """Routes ``F.linear`` (torch function) and ``aten.linear`` (dispatch) on ``cls`` weights.

    Inference calls go to the family's custom op (``cls._linear``). The ops have no backward, so
    when autograd needs a gradient for the input (fine-tuning adapters on a frozen quantized base),
    the call takes the differentiable path instead: ``F.linear`` with the dequantized weight, which
    gives the input its gradient and keeps the quantized weight frozen.
    """

    @cls.implements(aten.linear.default)
    @cls.implements_torch_function(torch.nn.functional.linear)
    def _(func, types, args, kwargs):
        x, w, bias = linear_args(args, kwargs)
        check_linear_input(x, w)
        if x.requires_grad and torch.is_grad_enabled():
            return torch.nn.functional.linear(x, w.dequantize(x.dtype), bias)
        return w._linear(x, bias)


def slice_bounds(dim, start, end, step, shape) -> tuple[int, int, int]:
    """Normalizes aten.slice arguments on a 2-D tensor to (dim, start, end), Python semantics."""
    if step != 1:
        raise ValueError(f"slicing a packed weight needs step 1, got step={step}")
    if dim not in (0, 1, -1, -2):
        raise IndexError(f"slice dim {dim} is out of range for a 2-D weight")
    dim %= 2
    start, end, _ = slice(start, end).indices(shape[dim])
    return dim, start, max(start, end)


def _split_sizes(func, args, size_along_dim):
    """Chunk sizes of aten.split.Tensor / split_with_sizes (their dim is args[2], default 0)."""
    if func is aten.split.Tensor:
        step = args[1]
        return [min(step, size_along_dim - s) for s in range(0, size_along_dim, step)] or [0]
    return list(args[1])


def to_copy_target(self, kwargs) -> tuple[torch.device, torch.dtype, bool]:
    """(device, dtype, non_blocking) of an aten._to_copy call; only floating dtypes are accepted."""
    device = kwargs.get("device") or self.device
    dtype = kwargs.get("dtype") or self.dtype
    if not dtype.is_floating_point:
        raise TypeError(f"{type(self).__name__} can only be cast to a floating-point dtype, got {dtype}")
    return device, dtype, kwargs.get("non_blocking", False)


def register_slicing(cls, slice_fn) -> None:
    """Implements aten.slice.Tensor (an aliasing view) and aten.split / split_with_sizes for ``cls``
    through ``slice_fn(self, dim, start, end)``, which knows the class's data layout."""

    @cls.implements(aten.slice.Tensor)
    def _(func, types, args, kwargs):
        self, dim, start, end, step = fill_defaults(args, 5, [0, None, None, 1])
        dim, start, end = slice_bounds(dim, start, end, step, self.shape)
        return return_and_correct_aliasing(func, args, kwargs, slice_fn(self, dim, start, end))

    @cls.implements([aten.split.Tensor, aten.split_with_sizes.default])
    def _(func, types, args, kwargs):
        self = args[0]
        dim = (args[2] if len(args) > 2 else kwargs.get("dim", 0)) % 2
        pieces, start = [], 0
        for size in _split_sizes(func, args, self.shape[dim]):
            pieces.append(slice_fn(self, dim, start, start + size))
            start += size
        return pieces


def cat_arguments(args, same_format, describe_format):
    """(tensors, dim) of aten.cat on 2-D weights, after checking that every piece has the first's
    format (``same_format(a, b)``) and matching sizes on the other dim."""
    tensors, dim = fill_defaults(args, 2, [[], 0])
    if not tensors:
        raise ValueError("cat needs at least one tensor")
    first = tensors[0]
    dim %= 2
    for t in tensors[1:]:
        if type(t) is not type(first) or not same_format(first, t):
            raise ValueError(f"cat needs tensors quantized the same way: {describe_format(first)} vs "
                             f"{describe_format(t)}")
        if t.shape[1 - dim] != first.shape[1 - dim]:
            raise ValueError(f"cat along dim {dim} needs equal sizes on dim {1 - dim}: "
                             f"{list(first.shape)} vs {list(t.shape)}")
    return tensors, dim


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


# --- transposed weight (what DTensor hands to mm) ---------------------------------------
#
# On a DTensor, F.linear is decomposed before it reaches the local tensors: the sharded
# weight gets ``aten.t`` and the product is ``aten.mm(x, w.t())`` (``aten.addmm`` with a
# bias). A packed weight cannot be transposed in memory, so ``t()`` returns a thin view
# that remembers the weight and turns ``mm`` / ``addmm`` back into our linear. It is a
# transient value inside one matmul: it is never a parameter and never serialized.


class TransposedGemliteWeight(torch.Tensor):
    """``w.t()`` of a quantized weight ``w`` [N, K]: logical shape [K, N].

    Supports ``mm(x, self)``, ``addmm(bias, x, self)`` (alpha = beta = 1), ``t()`` (gives ``w``
    back), detach/alias; anything else raises, naming the op.
    """

    @staticmethod
    def __new__(cls, weight: GemliteBaseTensor):
        n, k = weight.shape
        return torch.Tensor._make_wrapper_subclass(cls, (k, n), dtype=weight.dtype, device=weight.device,
                                                   requires_grad=False)

    def __init__(self, weight: GemliteBaseTensor):
        self.weight = weight

    __torch_function__ = torch._C._disabled_torch_function_impl

    def __tensor_flatten__(self):
        return ["weight"], None

    @staticmethod
    def __tensor_unflatten__(inner_tensors, meta, outer_size, outer_stride):
        return TransposedGemliteWeight(inner_tensors["weight"])

    def __repr__(self) -> str:
        return f"TransposedGemliteWeight({self.weight!r})"

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        kwargs = {} if kwargs is None else kwargs
        if func is aten.mm.default:
            x, wt = args
            return wt.weight._linear(x, None)
        if func is aten.addmm.default:
            bias, x, wt = args[:3]
            if kwargs.get("beta", 1) != 1 or kwargs.get("alpha", 1) != 1:
                raise NotImplementedError("addmm with a quantized weight supports only alpha = beta = 1")
            out = wt.weight._linear(x, bias if bias.dim() == 1 else None)
            return out if bias.dim() == 1 else out + bias
        if func is aten.t.default:
            return aten.detach.default(args[0].weight)
        if func in (aten.detach.default, aten.alias.default):
            return return_and_correct_aliasing(func, args, kwargs,
                                               TransposedGemliteWeight(aten.detach.default(args[0].weight)))
        raise NotImplementedError(
            f"the transposed view of a {type(args[0].weight).__name__} supports mm/addmm only, not {func}"
        )


@GemliteBaseTensor.implements([aten.t.default])
def _(func, types, args, kwargs):
    # Not passed through return_and_correct_aliasing: it insists that a view keeps its input's
    # type. The view holds the weight itself, so it shares the weight's storage all the same.
    return TransposedGemliteWeight(args[0])


@GemliteBaseTensor.implements([aten.empty_like.default])
def _(func, types, args, kwargs):
    """An uninitialized tensor of the same type and settings (DTensor's scatter target)."""
    self = args[0]
    if kwargs.get("dtype") not in (None, self.dtype):
        raise NotImplementedError(f"empty_like of a {type(self).__name__} cannot change its dtype")
    device = kwargs.get("device") or self.device
    fields = {name: (None if getattr(self, name) is None else torch.empty_like(getattr(self, name), device=device))
              for name in self._data_names()}
    return self._with_data(fields)


@GemliteBaseTensor.implements([torch.ops.c10d.scatter_.default])
def _(func, types, args, kwargs):
    """``torch.distributed.scatter`` of quantized weights (what ``distribute_tensor`` and
    ``parallelize_module`` do with the default ``src_data_rank=0``): one scatter per data tensor.

    Arguments: ([output], [[input per rank]] on the source rank or [] elsewhere, group, root
    rank, async_op, timeout). Each inner scatter is waited for here, so the returned work is done.

    The inner scatters always run with async_op=True: since torch 2.8 NCCL returns no work object
    (a null pointer) for a synchronous collective, and handing that null back through the
    dispatcher to Python crashes the process (SIGSEGV on every rank). An asynchronous scatter
    returns a real work; waiting on it orders the current stream after the copy, which is what
    a synchronous one would have done.
    """
    outputs, inputs, group, root = args[0], args[1], args[2], args[3]
    timeout = args[5] if len(args) > 5 else kwargs.get("timeout", -1)
    if len(outputs) != 1:
        raise NotImplementedError("scatter of quantized weights supports one output tensor")
    out = outputs[0]
    work = None
    for name in out._data_names():
        target = getattr(out, name)
        if target is None:
            continue
        pieces = [[getattr(t, name) for t in per_rank] for per_rank in inputs]
        _, work = func([target], pieces, group, root, True, timeout)
        work.wait()
    return [out], work


@GemliteBaseTensor.implements([aten.constant_pad_nd.default])
def _(func, types, args, kwargs):
    raise ValueError(
        f"cannot pad a {type(args[0]).__name__} {list(args[0].shape)}: DTensor pads the last shard when tensor "
        f"parallel splits a dimension unevenly. out_features (ColwiseParallel) and in_features (RowwiseParallel) "
        f"must be divisible by the TP degree; torchao_gemlite.integrations.check_tensor_parallel(model, plan, tp) "
        f"lists the layers that do not fit"
    )


@GemliteBaseTensor.implements([aten.view.default])
def _(func, types, args, kwargs):
    """Only the identity view (``view_as(self)``, used by ``DTensor.to_local()``)."""
    self, size = args[0], list(args[1])
    if size != list(self.shape):
        raise NotImplementedError(f"a {type(self).__name__} {list(self.shape)} cannot be viewed as {size}: "
                                  f"only its own shape is allowed")
    new = self._with_data({name: getattr(self, name) for name in self._data_names()})
    return return_and_correct_aliasing(func, args, kwargs, new)
