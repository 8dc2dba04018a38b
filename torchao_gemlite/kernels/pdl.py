"""Programmatic dependent launch (PDL, sm_90+) between the launches of a dynamic-activation decode call.

At decode (the CUDA-core GEMV, the A8W4 int8 tensor-core kernel at M <= 16 and the A8W8 TMA GEMM at
M <= 64) such a call is the per-token quantization, then the kernel, then (split K) the reduction: three
launches around a few microseconds of work. Each later launch normally starts only after the previous one
has drained; with PDL it is launched with ``launch_pdl`` and may start once every program of the previous
one has called ``launch_dependents`` (the quantization does so on entry, the kernel after its main loop),
and it calls ``wait_for_prior`` before touching memory: that waits until the previous launch has finished
and its writes are visible. So a launch's start-up overlaps the tail of the one before, and nothing
it reads or writes can race. ``wait_for_prior`` comes before every load and store of the dependent
kernel, so it is also correct after a launch that does not trigger (the wait then returns when that
one completes).

Measured on the H100 (harness, CUDA graphs, same run with TORCHAO_GEMLITE_PDL=0): A8W8 int8, fp8 and
A8W4 at M = 1 and 16: 1.03-1.05x; the A8W8 TMA GEMM at M = 8..64 (against the same tree without it):
1.02-1.09x per shape, 1.03-1.04x geomean. Not used elsewhere: the weight-only split-K pair (kernel,
reduction) ran 0.96-0.98x at M = 16, and the pointer tensor-core GEMM gained at M = 64 (1.04-1.06x) but
lost at M = 256 (int8 0.88x, unexplained), so both keep ordinary launches.

Off under Triton's interpreter, on GPUs before sm_90 (no ``griddepcontrol``) and with
TORCHAO_GEMLITE_PDL=0.
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

from .launch import INTERPRETED


@functools.lru_cache(maxsize=None)
def pdl_enabled(device_index: int) -> bool:
    """Whether launches on this CUDA device use PDL (checked once a device)."""
    if INTERPRETED or os.environ.get("TORCHAO_GEMLITE_PDL", "1") == "0":
        return False
    return torch.cuda.get_device_capability(device_index)[0] >= 9


def pdl_for(t: torch.Tensor) -> bool:
    """Whether launches for this tensor's device use PDL."""
    return t.is_cuda and pdl_enabled(t.get_device())


def dependent_meta(pdl: bool) -> dict:
    """The meta entries of a launch that waits for the previous one: the kernel's PDL constexpr and, when
    on, Triton's launch_pdl option (left out otherwise, so the interpreter never sees it)."""
    return dict(PDL=True, launch_pdl=True) if pdl else dict(PDL=False)


@triton.jit
def launch_dependents(ENABLED: tl.constexpr):
    """Lets the next launch (if PDL-launched) start; a no-op when ENABLED is False."""
    if ENABLED:
        gdc_launch_dependents()


@triton.jit
def wait_for_prior(ENABLED: tl.constexpr):
    """Waits until the previous launch has completed and its writes are visible; before any memory access."""
    if ENABLED:
        gdc_wait()
