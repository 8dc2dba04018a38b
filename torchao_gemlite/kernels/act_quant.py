"""Per-token activation quantization: x [M, K] fp16/bf16 -> q [M, K] int8 or float8_e4m3fn, scale [M, 1] fp32.

Math (identical to ``quant.quantize_rowwise_int8`` / ``quantize_rowwise_fp8`` on the same device):

    scale[m] = max(absmax_k |x[m, k]| / QMAX, FLT_MIN)          QMAX = 127 (int8) or 448 (e4m3)
    int8:  q[m, k] = round_half_even(clamp(x[m, k] / scale[m], -127, 127))
    fp8:   q[m, k] = e4m3(clamp(x[m, k] / scale[m], -448, 448))  (cast rounds to nearest even)

The scale division follows PyTorch, bit for bit, on each device. The reference computes
``absmax / 127.0``, a tensor divided by a Python scalar: on CUDA PyTorch turns that into a
multiplication by the fp32 reciprocal fl(1/127) (``div_true_kernel_cuda``), on CPU it divides.
The two differ by one ulp for ~4% (int8) / ~45% (fp8) of the rows, and a one-ulp different
scale moves x / scale across a rounding boundary for ~1% of 4096-wide rows: exactly the
M-dependent failures the first GPU run showed. So ``RECIP`` (set by the launcher for CUDA
tensors) multiplies by fl(1/QMAX), otherwise the scale is an IEEE division; x / scale is
always an IEEE round-to-nearest division (``tl.math.div_rn``: Triton's plain ``/`` on fp32
lowers to an approximate ``div.full.f32`` on NVIDIA GPUs). Clamping before rounding is
equivalent to the reference's round-then-clamp (both bounds are integers). int8 rounding adds
1.5 * 2^23, which makes the fp32 adder round to an integer, half to even, and reads the
integer from the low mantissa bits (no libdevice ``rint``, no float->int conversion, which
runs at quarter rate on Hopper). The fp8 clamp makes out-of-range values saturate to +-448
(e4m3fn has no infinity). Rows of zeros get scale FLT_MIN and q = 0. Everything is computed
in fp32 after the load, so magnitudes up to the bf16 maximum are safe.
The jit helpers ``row_scale`` and ``quantize_tile`` are shared with the fused GEMM prologue
(dynamic_gemm.py), so both paths give the same codes.

Grid: (cdiv(M, ROWS),): one program per block of ROWS rows (``_launch_params``).
  * one pass (K <= ONE_PASS_MAX_K, or K <= SMALL_M_ONE_PASS_MAX_K when M <= SMALL_M): the
    ROWS x next_pow2(K) tile is loaded once (ROWS rows of short K at 4 warps, or one whole
    row at 8-16 warps: at most 32 fp32 registers a thread), reduced, quantized, stored.
    HBM bytes per row: 2K read + K written + 4.
  * two passes (larger K): pass 1 streams the row in BLOCK_K chunks for the absmax, pass 2
    reads them again (from L2: the row was just read) and quantizes.
    HBM bytes per row: 2K (+2K from L2) + K + 4.
Many small programs keep enough loads in flight for large M; at small M a whole row a program in
one pass is a single round of loads instead of the two passes' chain of chunk loads (K = 14336,
M <= 64: 5.4 instead of 8.1 us on the H100). At K = 14336 and M = 1024 the one pass took 27 us
against the two passes' 20 (fewer programs an SM), so from M > 256 long rows take two passes.
x may have any strides (the row and column strides are kernel arguments); q is contiguous.
"""

from __future__ import annotations

import struct
from functools import lru_cache

import torch
import triton
import triton.language as tl

from ..formats import ACTIVATION_DTYPES
from .launch import INTERPRETED, FastLauncher, KernelCall, cdiv, next_power_of_2
from .pdl import launch_dependents

FP8_DTYPE = torch.float8_e4m3fn
INT8_MAX = 127.0
FP8_MAX = 448.0
ONE_PASS_MAX_K = 8192
TWO_PASS_BLOCK_K = 2048
ROW_TILE_ELEMENTS = 4096  # elements per program tile: 32 fp32 values a thread at 4 warps
SMALL_M = 256  # up to this many rows, rows of up to SMALL_M_ONE_PASS_MAX_K codes are quantized in one pass
SMALL_M_ONE_PASS_MAX_K = 16384  # 32 fp32 values a thread at 16 warps
_FLT_MIN = tl.constexpr(1.1754943508222875e-38)  # torch.finfo(torch.float32).tiny: the reference scale floor
_ROUND_MAGIC = tl.constexpr(12582912.0)  # 1.5 * 2^23: v + this rounds v to an integer (|v| < 2^22)
_ROUND_MAGIC_BITS = tl.constexpr(0x4B400000)  # its fp32 bit pattern


@lru_cache(maxsize=None)
def inv_qmax(qmax: float) -> float:
    """fl32(1 / qmax), as PyTorch's CUDA division by a scalar computes it (fp32 1.0f / b).

    1 / qmax is rounded to double, then to fp32; for the qmax values used here (127, 448) that
    equals the correctly rounded fp32 quotient (checked in test_act_quant.py)."""
    return struct.unpack("f", struct.pack("f", 1.0 / qmax))[0]


@triton.jit
def row_scale(b_amax, QMAX: tl.constexpr, INV_QMAX: tl.constexpr, RECIP: tl.constexpr):
    """[R] fp32 absmax -> [R] fp32 scale, as the reference computes it on this device."""
    if RECIP:
        b_s = b_amax * INV_QMAX
    else:
        b_s = tl.math.div_rn(b_amax, QMAX)
    return tl.maximum(b_s, _FLT_MIN)


@triton.jit
def quantize_tile(b_x, b_scale, FP8: tl.constexpr):
    """[R, BK] fp32 values, [R] fp32 scales -> [R, BK] int8 or float8e4nv codes."""
    b_v = tl.math.div_rn(b_x, b_scale[:, None])
    if FP8:
        return tl.minimum(tl.maximum(b_v, -448.0), 448.0).to(tl.float8e4nv)
    else:
        b_v = tl.minimum(tl.maximum(b_v, -127.0), 127.0)
        b_i = (b_v + _ROUND_MAGIC).to(tl.int32, bitcast=True) - _ROUND_MAGIC_BITS  # round half to even
        return b_i.to(tl.int8)


@triton.jit
def _act_quant_kernel(
    x_ptr, q_ptr, s_ptr,
    M, K,
    stride_xm, stride_xk, stride_qm,
    QMAX: tl.constexpr, INV_QMAX: tl.constexpr, RECIP: tl.constexpr, FP8: tl.constexpr, ONE_PASS: tl.constexpr,
    ROWS: tl.constexpr, BLOCK_K: tl.constexpr, PDL: tl.constexpr = False,
):
    launch_dependents(PDL)  # the GEMM that reads the codes (pdl.py)
    i_m = tl.program_id(0)
    o_m = i_m * ROWS + tl.arange(0, ROWS)
    m_m = o_m < M
    o_m64 = o_m.to(tl.int64)
    p_x_rows = x_ptr + o_m64[:, None] * stride_xm
    p_q_rows = q_ptr + o_m64[:, None] * stride_qm
    o_k = tl.arange(0, BLOCK_K)
    q_ty = q_ptr.dtype.element_ty

    if ONE_PASS:
        m_x = m_m[:, None] & (o_k[None, :] < K)
        b_x = tl.load(p_x_rows + o_k[None, :] * stride_xk, mask=m_x, other=0.0).to(tl.float32)  # [ROWS, BK]
        b_scale = row_scale(tl.max(tl.abs(b_x), axis=1), QMAX, INV_QMAX, RECIP)  # [ROWS]
        tl.store(p_q_rows + o_k[None, :], quantize_tile(b_x, b_scale, FP8).to(q_ty), mask=m_x)
    else:
        b_amax = tl.zeros((ROWS,), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            m_x = m_m[:, None] & ((k0 + o_k)[None, :] < K)
            b_x = tl.load(p_x_rows + (k0 + o_k)[None, :] * stride_xk, mask=m_x, other=0.0).to(tl.float32)
            b_amax = tl.maximum(b_amax, tl.max(tl.abs(b_x), axis=1))
        b_scale = row_scale(b_amax, QMAX, INV_QMAX, RECIP)
        for k0 in range(0, K, BLOCK_K):
            m_x = m_m[:, None] & ((k0 + o_k)[None, :] < K)
            b_x = tl.load(p_x_rows + (k0 + o_k)[None, :] * stride_xk, mask=m_x, other=0.0).to(tl.float32)
            tl.store(p_q_rows + (k0 + o_k)[None, :], quantize_tile(b_x, b_scale, FP8).to(q_ty), mask=m_x)
    tl.store(s_ptr + o_m, b_scale, mask=m_m)


_ACT_QUANT = FastLauncher(_act_quant_kernel)


def triton_can_run_on(device: torch.device) -> bool:
    """CUDA tensors, or CPU tensors when the kernels were built under TRITON_INTERPRET=1 (tests)."""
    return device.type == "cuda" or (device.type == "cpu" and INTERPRETED)


def _check_device(t: torch.Tensor, name: str) -> None:
    if not triton_can_run_on(t.device):
        raise ValueError(
            f"{name} is on {t.device}: the Triton kernels need CUDA tensors "
            f"(CPU tensors only under TRITON_INTERPRET=1, set before importing torchao_gemlite.kernels)"
        )


def scale_by_reciprocal(device: torch.device) -> bool:
    """Whether PyTorch's ``tensor / python_scalar`` multiplies by the reciprocal on ``device``
    (CUDA does, CPU divides): the kernels follow the reference on each device."""
    return device.type == "cuda"


def whole_row_pass(m: int, k: int) -> bool:
    """Whether m rows of k > ONE_PASS_MAX_K codes are quantized in one pass over whole rows (small M)."""
    return m <= SMALL_M and ONE_PASS_MAX_K < k <= SMALL_M_ONE_PASS_MAX_K


def _launch_params(m: int, k: int) -> tuple[bool, int, int, int]:
    """(one_pass, BLOCK_K, ROWS, num_warps) for m rows of length k. Rows padded to fewer than 4096 codes: several
    rows a program, 4 warps. Longer rows: one row a program; 4096 codes with 16 warps up to M = 256, then 8
    (H100, test/kernels/gpu_probe_act_quant.py --launches: 2.2-2.9 instead of 3.0-3.4 us at K = 4096),
    8192 with 16 warps (2.8-4.1 instead of 3.3-4.3 us up to M = 256, 36.3 instead of 36.7 at M = 4096);
    up to 16384 codes at M <= 256 in one pass over the whole row (``whole_row_pass``; K = 14336: 5.4 / 7.3
    instead of the two passes' 8.1 / 8.9 us at M = 1..64 / 256); beyond, two passes, in 4096-code chunks
    with 8 warps at M > 1024 (M = 4096, K = 14336: 78.5 instead of 97.5 us)."""
    if k <= ONE_PASS_MAX_K or whole_row_pass(m, k):
        block_k = next_power_of_2(k)
        if block_k >= ROW_TILE_ELEMENTS:
            return True, block_k, 1, 16 if m <= SMALL_M or block_k > ROW_TILE_ELEMENTS else 8
        return True, block_k, max(1, min(16, ROW_TILE_ELEMENTS // block_k, next_power_of_2(m))), 4
    if m > 1024:
        return False, 2 * TWO_PASS_BLOCK_K, 1, 8
    return False, TWO_PASS_BLOCK_K, 1, 4


def quantize_per_token(x: torch.Tensor, dtype: torch.dtype = torch.int8, *, out: torch.Tensor | None = None,
                       out_scale: torch.Tensor | None = None):
    """Quantizes each row of the last axis of ``x`` (fp16/bf16, any shape and strides).

    Returns ``(q, scale)``: q has x's shape in ``dtype`` (torch.int8 or torch.float8_e4m3fn),
    scale is fp32 with x's shape but a last axis of size 1, exactly like
    ``quant.quantize_rowwise_int8`` / ``quantize_rowwise_fp8``. ``out`` / ``out_scale`` may
    pre-allocate the results (contiguous, those shapes and dtypes).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in ACTIVATION_DTYPES:
        raise TypeError(f"x dtype {x.dtype} is not supported: use one of {ACTIVATION_DTYPES}")
    if dtype not in (torch.int8, FP8_DTYPE):
        raise TypeError(f"dtype must be torch.int8 or torch.float8_e4m3fn, got {dtype}")
    if x.dim() < 1 or x.shape[-1] < 1:
        raise ValueError(f"x must have a non-empty last axis [..., K], got shape {tuple(x.shape)}")
    _check_device(x, "x")
    k = x.shape[-1]
    scale_shape = (*x.shape[:-1], 1)
    if out is None:
        out = torch.empty(x.shape, dtype=dtype, device=x.device)
    elif out.shape != x.shape or out.dtype != dtype or not out.is_contiguous() or out.device != x.device:
        raise ValueError(f"out must be a contiguous {dtype} tensor of shape {tuple(x.shape)} on {x.device}")
    if out_scale is None:
        out_scale = torch.empty(scale_shape, dtype=torch.float32, device=x.device)
    elif (out_scale.shape != scale_shape or out_scale.dtype != torch.float32 or not out_scale.is_contiguous()
          or out_scale.device != x.device):
        raise ValueError(f"out_scale must be a contiguous float32 tensor of shape {scale_shape} on {x.device}")
    x2 = x.reshape(-1, k)  # a view whenever the leading axes allow it; the kernel takes both strides
    m = x2.shape[0]
    if m == 0:
        return out, out_scale
    act_quant_call(m, k, x2.stride(0), x2.stride(1), dtype, x.device)((x2, out, out_scale))
    return out, out_scale


def act_quant_call(m: int, k: int, stride_xm: int, stride_xk: int, dtype: torch.dtype, device,
                   pdl: bool = False) -> KernelCall:
    """The launch that quantizes m rows of length k; run it with (x [m, k], q [m, k] contiguous, scale [m]).
    ``pdl``: the GEMM that follows is launched as its dependent (pdl.py)."""
    one_pass, block_k, rows, num_warps = _launch_params(m, k)
    fp8 = dtype == FP8_DTYPE
    qmax = FP8_MAX if fp8 else INT8_MAX
    return KernelCall(_ACT_QUANT, (cdiv(m, rows),), (m, k, stride_xm, stride_xk, k),
                      dict(QMAX=qmax, INV_QMAX=inv_qmax(qmax), RECIP=scale_by_reciprocal(device), FP8=fp8,
                           ONE_PASS=one_pass, ROWS=rows, BLOCK_K=block_k, PDL=pdl, num_warps=num_warps))
