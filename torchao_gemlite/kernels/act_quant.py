"""Per-token activation quantization: x [M, K] fp16/bf16 -> q [M, K] int8 or float8_e4m3fn, scale [M, 1] fp32.

Math (identical to ``quant.quantize_rowwise_int8`` / ``quantize_rowwise_fp8``):

    scale[m] = max(absmax_k |x[m, k]| / QMAX, FLT_MIN)          QMAX = 127 (int8) or 448 (e4m3)
    int8:  q[m, k] = round_half_even(clamp(x[m, k] / scale[m], -127, 127))
    fp8:   q[m, k] = e4m3(clamp(x[m, k] / scale[m], -448, 448))  (cast rounds to nearest even)

Both divisions are IEEE round-to-nearest (``tl.math.div_rn``): Triton's plain ``/`` on fp32
lowers to an approximate ``div.full.f32`` on NVIDIA GPUs and would move a few values across
a rounding boundary. Clamping before rounding is equivalent to the reference's
round-then-clamp (both bounds are integers). The int8 rounding is done with ``floor``
plus a tie fix instead of libdevice ``rint``: the interpreter has no libdevice, and the
result is the same bit for bit. The fp8 clamp makes out-of-range values saturate to +-448
instead of becoming NaN (e4m3fn has no infinity). Rows of zeros get scale FLT_MIN and q = 0.
Magnitudes up to the bf16 maximum are safe: everything is computed in fp32 after the load.

Grid: (cdiv(M, ROWS),): one program per block of ROWS rows.
  * ONE_PASS (K <= 16384): the ROWS x next_pow2(K) tile is loaded once into registers,
    reduced, quantized and stored. HBM bytes per row: 2K read + K written + 4.
  * two passes (larger K): pass 1 streams the row in BLOCK_K chunks for the absmax, pass 2
    reads it again (mostly from L2) and quantizes. HBM bytes per row: 2K (+2K from L2) + K + 4.
x may have any strides (the row and column strides are kernel arguments); q is contiguous.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from ..formats import ACTIVATION_DTYPES

FP8_DTYPE = torch.float8_e4m3fn
INT8_MAX = 127.0
FP8_MAX = 448.0
ONE_PASS_MAX_K = 16384  # a full row (as fp32) still fits in registers at 8 warps: 64 values per thread
TWO_PASS_BLOCK_K = 4096
ROW_TILE_ELEMENTS = 4096  # small K: several rows per program, about this many elements per tile
_FLT_MIN = tl.constexpr(1.1754943508222875e-38)  # torch.finfo(torch.float32).tiny: the reference scale floor


@triton.jit
def _round_half_even(v):
    """Rounds fp32 values to the nearest integer, ties to even (torch.round); |v| < 2^22."""
    r = tl.floor(v + 0.5)  # exact: v + 0.5 is representable for |v| < 2^22
    is_tie = (r - v) == 0.5
    is_odd = (r - 2.0 * tl.floor(r * 0.5)) != 0.0
    return tl.where(is_tie & is_odd, r - 1.0, r)


@triton.jit
def _quantize_tile(b_x, b_scale, FP8: tl.constexpr):
    """[R, BK] fp32 values, [R] fp32 scales -> quantized tile in the output's value domain (fp32)."""
    if FP8:
        b_v = tl.math.div_rn(b_x, b_scale[:, None])
        return tl.minimum(tl.maximum(b_v, -448.0), 448.0)
    else:
        b_v = tl.math.div_rn(b_x, b_scale[:, None])
        b_v = tl.minimum(tl.maximum(b_v, -127.0), 127.0)
        return _round_half_even(b_v)


@triton.jit
def _act_quant_kernel(
    x_ptr, q_ptr, s_ptr,
    M, K,
    stride_xm, stride_xk, stride_qm,
    QMAX: tl.constexpr, FP8: tl.constexpr, ONE_PASS: tl.constexpr,
    ROWS: tl.constexpr, BLOCK_K: tl.constexpr,
):
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
        b_amax = tl.max(tl.abs(b_x), axis=1)  # [ROWS]
        b_scale = tl.maximum(tl.math.div_rn(b_amax, QMAX), _FLT_MIN)
        b_q = _quantize_tile(b_x, b_scale, FP8)
        tl.store(p_q_rows + o_k[None, :], b_q.to(q_ty), mask=m_x)
    else:
        b_amax = tl.zeros((ROWS,), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            m_x = m_m[:, None] & ((k0 + o_k)[None, :] < K)
            b_x = tl.load(p_x_rows + (k0 + o_k)[None, :] * stride_xk, mask=m_x, other=0.0).to(tl.float32)
            b_amax = tl.maximum(b_amax, tl.max(tl.abs(b_x), axis=1))
        b_scale = tl.maximum(tl.math.div_rn(b_amax, QMAX), _FLT_MIN)
        for k0 in range(0, K, BLOCK_K):
            m_x = m_m[:, None] & ((k0 + o_k)[None, :] < K)
            b_x = tl.load(p_x_rows + (k0 + o_k)[None, :] * stride_xk, mask=m_x, other=0.0).to(tl.float32)
            b_q = _quantize_tile(b_x, b_scale, FP8)
            tl.store(p_q_rows + (k0 + o_k)[None, :], b_q.to(q_ty), mask=m_x)
    tl.store(s_ptr + o_m, b_scale, mask=m_m)


def triton_can_run_on(device: torch.device) -> bool:
    """CUDA tensors, or CPU tensors when the kernels were built under TRITON_INTERPRET=1 (tests)."""
    return device.type == "cuda" or (device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1")


def _check_device(t: torch.Tensor, name: str) -> None:
    if not triton_can_run_on(t.device):
        raise ValueError(
            f"{name} is on {t.device}: the Triton kernels need CUDA tensors "
            f"(CPU tensors only under TRITON_INTERPRET=1, set before importing torchao_gemlite.kernels)"
        )


def _launch_params(k: int) -> tuple[bool, int, int, int]:
    """(one_pass, BLOCK_K, ROWS, num_warps) for rows of length k."""
    if k <= ONE_PASS_MAX_K:
        block_k = triton.next_power_of_2(k)
        rows = max(1, min(16, ROW_TILE_ELEMENTS // block_k))
        return True, block_k, rows, max(1, min(8, rows * block_k // 512))
    return False, TWO_PASS_BLOCK_K, 1, 8


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
    one_pass, block_k, rows, num_warps = _launch_params(k)
    fp8 = dtype == FP8_DTYPE
    _act_quant_kernel[(triton.cdiv(m, rows),)](
        x2, out, out_scale, m, k, x2.stride(0), x2.stride(1), k,
        QMAX=FP8_MAX if fp8 else INT8_MAX, FP8=fp8, ONE_PASS=one_pass, ROWS=rows, BLOCK_K=block_k,
        num_warps=num_warps,
    )
    return out, out_scale
