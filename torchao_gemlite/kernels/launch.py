"""Direct launches of compiled Triton kernels: the eager host cost of one call.

``kernel[grid](*args, **meta)`` binds every argument and recomputes Triton's specialization
on each call: about 40 us on triton 3.6 for our twenty-argument kernels, more than a decode
GEMV runs on the GPU. ``FastLauncher`` lets Triton compile and launch the first call of
each (constexprs, argument specialization), keeps the compiled kernel, and from then on
calls its launcher directly (a few us).

The key holds everything Triton specializes a compiled kernel on: each tensor's dtype and
16-byte alignment, each int's type (32/64-bit), whether it is 1 (compiled as a constant)
and whether it is a multiple of 16, the current device, and the meta values. Launch hooks
(profilers), Triton's interpreter and TORCHAO_GEMLITE_DIRECT_LAUNCH=0 (read at import) take
the normal path.
"""

from __future__ import annotations

import os

import torch
from triton import knobs
from triton.runtime import driver
from triton.tools.tensor_descriptor import TensorDescriptor

from .triton_key import use_saved_triton_key

_INT32 = (-(2**31), 2**31 - 1)


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for launch grids and splits. Host code uses this, not ``triton.cdiv``: that is a
    ConstexprFunction in triton 3.6+ and costs about 6 us a call, which added 80 us to every
    dynamic-activation linear (13 calls)."""
    return -(-a // b)


def next_power_of_2(x: int) -> int:
    """The smallest power of two >= x (1 for x <= 1); plain Python, see ``cdiv``."""
    return 1 << max(0, (x - 1).bit_length())
# Triton reads TRITON_INTERPRET when it decorates the kernels (at import): the mode they were built in.
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
# the escape hatch if a Triton release changes its launcher: every call through kernel[grid]
DIRECT = os.environ.get("TORCHAO_GEMLITE_DIRECT_LAUNCH", "1") != "0"


def _hooked(hook) -> bool:
    """Whether a Triton launch hook is set (a callable, or a HookChain with calls in it)."""
    return hook is not None and bool(getattr(hook, "calls", True))


def _specialization(arg) -> tuple:
    if isinstance(arg, torch.Tensor):
        return arg.dtype, arg.data_ptr() % 16 == 0
    if isinstance(arg, TensorDescriptor):  # Triton specializes on the dtype and block shape; shape and strides
        # travel as ints beside it and are keyed too, conservatively
        return (arg.base.dtype, tuple(arg.block_shape), *map(_specialization, (*arg.shape, *arg.strides)))
    if arg is None:
        return (None,)
    return type(arg), arg == 1, arg % 16 == 0, _INT32[0] <= arg <= _INT32[1]


class FastLauncher:
    """Wraps one @triton.jit kernel; call as ``launcher(grid, args, meta)`` with the runtime
    arguments positional (all of them, in signature order) and the constexprs plus launch
    options (num_warps, ...) in ``meta``. Returns the compiled kernel it launched, for
    ``KernelCall`` to keep (None where Triton's own path ran)."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.compiled: dict[tuple, tuple] = {}

    def __call__(self, grid: tuple, args: tuple, meta: dict) -> tuple | None:
        if INTERPRETED:
            self.kernel[grid](*args, **meta)
            return None
        use_saved_triton_key()
        if not DIRECT or _launch_hooked():
            self.kernel[grid](*args, **meta)
            return None
        device = torch.cuda.current_device()
        key = (device, *meta.values(), *map(_specialization, args))
        hit = self.compiled.get(key)
        if hit is None:
            compiled = self.kernel[grid](*args, **meta)
            # the launcher takes every signature argument, constexprs included, in order
            constexprs = tuple(meta[name] for name in self.kernel.arg_names[len(args):])
            hit = self.compiled[key] = (compiled, constexprs, device)
            return hit
        run_compiled(hit, (*grid, 1, 1), args)
        return hit


def _launch_hooked() -> bool:
    return _hooked(knobs.runtime.launch_enter_hook) or _hooked(knobs.runtime.launch_exit_hook)


def run_compiled(entry: tuple, grid3: tuple, args: tuple) -> None:
    """Launches a kept kernel (``FastLauncher``'s entry) on the current stream of its device."""
    compiled, constexprs, device = entry
    compiled.run(grid3[0], grid3[1], grid3[2], driver.active.get_current_stream(device), compiled.function,
                 compiled.packed_metadata, None, None, None, *args, *constexprs)


class KernelCall:
    """One launch whose grid, trailing int arguments and meta are fixed: a step of a launch plan
    (dispatch.py), replayed with new tensors on every call of the same shape. The first run goes
    through the FastLauncher (which compiles if needed) and keeps its compiled kernel; later runs
    launch that kernel directly, skipping the specialization key. Its validity rests on the plan's
    key: the tensors of a later call have the dtypes and 16-byte alignment of the first call's.
    A launch hook (profilers) sends every run back through the FastLauncher."""

    __slots__ = ("launcher", "grid", "ints", "meta", "entry")

    def __init__(self, launcher: FastLauncher, grid: tuple, ints: tuple, meta: dict):
        self.launcher, self.grid, self.ints, self.meta = launcher, (*grid, 1, 1)[:3], ints, meta
        self.entry = None

    def __call__(self, tensors: tuple) -> None:
        if self.entry is None or _launch_hooked():
            self.entry = self.launcher(self.grid, (*tensors, *self.ints), self.meta)
        else:
            run_compiled(self.entry, self.grid, (*tensors, *self.ints))


def tensor_key(t: torch.Tensor | None) -> tuple | None:
    """What a launch plan depends on in a tensor: dtype, shape, strides, 16-byte alignment (Triton
    specializes on it; copies made for the kernels depend on 4- and 8-byte alignment), device.
    Anything else by its type: a key that validation then rejects with a clear error."""
    if not isinstance(t, torch.Tensor):
        return None if t is None else type(t)
    return t.dtype, t.shape, t.stride(), t.data_ptr() & 15, t.get_device()


def tma_ready(t: torch.Tensor) -> bool:
    """Whether a 2-D operand [rows, cols] can back a TMA descriptor: unit stride along its columns, a
    16-byte aligned base and a 16-byte multiple row stride that does not overlap rows (not an expanded view)."""
    return (t.dim() == 2 and t.stride(1) == 1 and t.stride(0) >= t.shape[1]
            and (t.stride(0) * t.element_size()) % 16 == 0 and t.data_ptr() % 16 == 0)


_DEVICE_FACTS: dict = {}


def device_facts(device: torch.device) -> tuple[str, int]:
    """(GPU model name, SM count) of a CUDA device, the keys of the tuning tables; ("cpu-interpreter", 4)
    for a CPU device (Triton's interpreter). Read once a device."""
    key = (device.type, device.index)
    if key not in _DEVICE_FACTS:
        if device.type != "cuda":
            _DEVICE_FACTS[key] = ("cpu-interpreter", 4)
        else:
            props = torch.cuda.get_device_properties(device)
            _DEVICE_FACTS[key] = (props.name, props.multi_processor_count)
    return _DEVICE_FACTS[key]


class PlanCache(dict):
    """Launch plans by call key (dispatch.py, dynamic_gemm.py), built on a key's first call and
    replayed after; never invalidated by the tensors' values. Bounded: a prefill that sees many
    sequence lengths replans rather than growing it without end."""

    MAX_PLANS = 4096

    def keep(self, key, plan):
        if len(self) >= self.MAX_PLANS:
            self.clear()
        self[key] = plan
        return plan
