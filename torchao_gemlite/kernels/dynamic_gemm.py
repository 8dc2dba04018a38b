"""Tensor-core GEMM for dynamically quantized activations: A8W8 (int8 or fp8) and A8W4.

    y[m, n] = (sum_k xq[m, k] * w[k, n]) * x_scale[m] * w_scale[n] + bias[n]      (per-channel)
    y[m, n] = x_scale[m] * sum_g w_scale[g, n] * (sum_{k in g} xq[m, k] * w[k, n]) + bias[n]   (A8W4 groups)

xq is int8 or float8_e4m3fn [M, K] (act_quant.py), x_scale fp32 [M]. The weight is
  * int8 / fp8 (the same dtype as xq) [N, K] with fp32 scale [N]: the B tile [BLOCK_K, BLOCK_N]
    is read K-contiguous, the operand order wgmma wants for 8-bit types;
  * A8W4: int32 words [K/8, N] (code k = 8j + s in bits 4s..4s+3 of word j, N contiguous), scale
    [K/G, N] (fp16/bf16/fp32), zero fixed at 8. Each word row is loaded once and unpacked in
    registers to an int8 [BLOCK_K, BLOCK_N] tile of (q - 8): shift by 4s, mask, subtract, then
    reshape [BLOCK_K/8, 8, BLOCK_N] -> [BLOCK_K, BLOCK_N] (row 8j + s), and fed to the same int8 dot.

Grid: (cdiv(M, BLOCK_M) * cdiv(N, BLOCK_N), SPLIT_K); programs are ordered in bands of GROUP_M
row tiles so that neighbours share weight tiles in L2 (prefill). Program (tile, s) covers
K range [s * K_PER_SPLIT, (s + 1) * K_PER_SPLIT) in BLOCK_K steps; each step loads
  x tile   [BLOCK_M, BLOCK_K] int8/fp8        BLOCK_M * BLOCK_K bytes
  w tile   [BLOCK_K, BLOCK_N] int8/fp8        BLOCK_K * BLOCK_N bytes     (A8W8)
           [BLOCK_K / 8, BLOCK_N] int32       BLOCK_K * BLOCK_N / 2 bytes (A8W4)
  A8W4 groups: one scale row [BLOCK_N] per group (BLOCK_K divides the group size).
and issues one tl.dot [BLOCK_M, BLOCK_K] @ [BLOCK_K, BLOCK_N] -> [BLOCK_M, BLOCK_N].
Accumulation: int32 (exact) for int8 operands; A8W4 groups keep an int32 accumulator per
group and add it, scaled, to an fp32 one; fp8 accumulates in fp32, promoted to full fp32
precision after every K step (max_num_imprecise_acc=BLOCK_K, the Hopper fast-accumulation
default would keep ~14 mantissa bits over the whole K).
HBM bytes per output tile: BLOCK_N * K (A8W8) or BLOCK_N * K / 2 + 2 * BLOCK_N * K / G
(A8W4) + BLOCK_M * K (x) + BLOCK_M * BLOCK_N * out bytes; split-K adds SPLIT_K * BLOCK_M *
BLOCK_N * 4 bytes written and read back by the reduction.

SWAP_AB (A8W8): each step loads the weight tile as [BLOCK_N, BLOCK_K] and computes
acc^T [BN, BM] = W [BN, BK] @ xq^T [BK, BM], so at decode the weight is the wgmma's 64-row
operand and the 16 padded batch rows its N; acc is transposed once before the epilogue.
FUSE_ACT (*_dynamic_linear only): x is read as fp16/bf16; a prologue computes the per-row
absmax of the BLOCK_M rows over all of K (2 * BLOCK_M * K bytes, from L2 after the first
program; rows >= M masked), then every step quantizes its x tile with act_quant.quantize_tile
(same codes as act_quant.py). Correct, but measured 2.5-4.7x slower at M = 1 on the H200,
so no heuristic picks it (see dynamic_configs._TILES).

Split-K is deterministic: each split writes its raw partial tile (int32 when the whole
accumulation is integer, else fp32) to a workspace [SPLIT_K, M, N]; a second kernel sums
the partials in the fixed order 0..SPLIT_K-1 and applies scales and bias. No atomics, so
results are bit-identical from run to run (and, for int8 / per-channel A8W4, identical to
SPLIT_K = 1, since int32 sums are exact).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .act_quant import (
    FP8_DTYPE,
    FP8_MAX,
    INT8_MAX,
    inv_qmax,
    act_quant_call,
    quantize_per_token,
    quantize_tile,
    row_scale,
    scale_by_reciprocal,
    triton_can_run_on,
    whole_row_pass,
)
from .configs import MMA_MAX_M, register_derived_cache
from .dequant import w4_codes, w4_codes_call
from .dynamic_configs import NUM_SMS_H100, DynamicGemmConfig, choose_config
from .dynamic_epilogue import epilogue, reduce_splits, reduce_splits_call, zero_accumulator
from .dynamic_gemv import GEMV_MAX_M, dynamic_gemv, dynamic_gemv_call
from .dynamic_mma_gemv import dynamic_mma_call, dynamic_mma_gemv
from .mma_gemv import mma_operands_aligned
from .dynamic_tma_gemm import TmaGemmCall
from .launch import FastLauncher, KernelCall, PlanCache, cdiv, device_facts, tensor_key, tma_ready
from .pdl import pdl_for
from .reduce import tile_coordinates

OUT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
GROUP_M = 8
K_ALIGNMENT = 16  # int8/fp8 rows start on 16-byte boundaries (vector loads, TMA-compatible)
W4_PER_WORD = 8
W4_ZERO = 8
# fp8 with M >= this goes to torch._scaled_mm (see _scaled_mm_route); its row-wise scaled path
# supports these output dtypes on torch 2.11 / sm_90.
SCALED_MM_MIN_M = 128
SCALED_MM_OUT_DTYPES = (torch.float16, torch.bfloat16)
# A8W4 with M >= this (and no config asked for) unpacks the weight once per call to int8 codes [N, K]
# (dequant.w4_codes: K * N / 2 bytes read, K * N written) and runs the int8 GEMM on them with the group
# scales: the int8 tensor cores take 8-bit B tiles K-major only, and the W4 path's in-register unpack of
# N-major words into a transposed tile ran 1.3-2.3x slower than unpack + GEMM at M = 256..4096 on the H100;
# at M = 64 the W4 path was faster on three of four Llama shapes (test/kernels/gpu_probe_a8w4_dense.py).
A8W4_CODES_MIN_M = 256


def default_config(m: int, n: int, k: int, kind: str, device: torch.device, group: int | None = None,
                   codes: bool = False) -> DynamicGemmConfig:
    """The GEMM launch when none is asked for: tuned tables, then the heuristic
    (dynamic_configs.choose_config) for this GPU; on the CPU (Triton's interpreter) the H100 heuristic."""
    name, sms = device_facts(device)
    return choose_config(m, n, k, kind, group, codes, name, sms if device.type == "cuda" else NUM_SMS_H100)


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------

@triton.jit
def _dynamic_gemm_kernel(
    a_ptr, a_scale_ptr, b_ptr, b_scale_ptr, bias_ptr, c_ptr, ws_ptr,
    M, N, K, K_PER_SPLIT,
    stride_am, stride_ak, stride_bk, stride_bn, stride_bs_g, stride_bs_n, stride_cm, stride_cn,
    FP8: tl.constexpr, W4: tl.constexpr, GROUP_K: tl.constexpr, GROUP_STEPS: tl.constexpr,
    HAS_BIAS: tl.constexpr, USE_WS: tl.constexpr, EVEN_K: tl.constexpr,
    FUSE_ACT: tl.constexpr, SWAP_AB: tl.constexpr, QMAX: tl.constexpr, INV_QMAX: tl.constexpr, RECIP: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    # GROUP_K == 0: one scale per output channel, applied in the epilogue. GROUP_K > 0 (A8W4
    # groups): GROUP_STEPS = GROUP_K // BLOCK_K K steps share one scale row.
    i_m, i_n = tile_coordinates(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)
    i_s = tl.program_id(1)

    o_m = i_m * BLOCK_M + tl.arange(0, BLOCK_M)
    o_n = i_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_m = o_m < M
    m_n = o_n < N
    # Columns past N wrap around to column o_n % N instead of being masked, and so do rows past
    # M for quantized inputs: the inner loop stays mask-free, those outputs are never stored.
    # Fused act quant masks rows instead (M = 1 must not load a 16-row x tile).
    if FUSE_ACT:
        r_m = o_m.to(tl.int64)
    else:
        r_m = (o_m % M).to(tl.int64)
    r_n = o_n % N
    o_kk = tl.arange(0, BLOCK_K)
    p_a = a_ptr + r_m[:, None] * stride_am + o_kk[None, :] * stride_ak
    if W4:
        o_kw = tl.arange(0, BLOCK_K // 8)
        p_b = b_ptr + o_kw[:, None] * stride_bk + r_n[None, :] * stride_bn
        shifts = tl.arange(0, 8) * 4
    elif SWAP_AB:
        p_b = b_ptr + r_n.to(tl.int64)[:, None] * stride_bn + o_kk[None, :] * stride_bk  # [BN, BK]
    else:
        p_b = b_ptr + r_n.to(tl.int64)[None, :] * stride_bn + o_kk[:, None] * stride_bk  # [BK, BN]

    if FUSE_ACT:
        # Prologue: the per-row absmax over all of K (from L2 after the first program), then the
        # scale exactly as act_quant.py computes it. One program per row block publishes it
        # for the split-K reduction.
        b_amax = tl.zeros((BLOCK_M,), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            b_x = tl.load(p_a + k0 * stride_ak, mask=m_m[:, None] & ((k0 + o_kk) < K)[None, :], other=0.0)
            b_amax = tl.maximum(b_amax, tl.max(tl.abs(b_x.to(tl.float32)), axis=1))
        b_sa = row_scale(b_amax, QMAX, INV_QMAX, RECIP)  # [BM]
        if i_s == 0:
            if i_n == 0:
                tl.store(a_scale_ptr + o_m, b_sa, mask=m_m)
    else:
        b_sa = tl.load(a_scale_ptr + o_m, mask=m_m, other=0.0)  # [BM]

    acc = zero_accumulator(BLOCK_M, BLOCK_N, SWAP_AB, FP8 or GROUP_K > 0)  # groups: sums of scaled int32 sums
    acc_g = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)  # A8W4 groups spanning several K steps

    k_lo = i_s * K_PER_SPLIT
    k_hi = tl.minimum(k_lo + K_PER_SPLIT, K)
    for k0 in range(k_lo, k_hi, BLOCK_K):
        m_k = (k0 + o_kk) < K
        # ---- activation tile [BM, BK], int8 / fp8 ----
        if FUSE_ACT:
            if EVEN_K:
                b_x = tl.load(p_a + k0 * stride_ak, mask=m_m[:, None], other=0.0)
            else:
                b_x = tl.load(p_a + k0 * stride_ak, mask=m_m[:, None] & m_k[None, :], other=0.0)
            b_a = quantize_tile(b_x.to(tl.float32), b_sa, FP8)
        elif EVEN_K:
            b_a = tl.load(p_a + k0 * stride_ak)
        elif FP8:
            b_a = tl.load(p_a + k0 * stride_ak, mask=m_k[None, :], other=0.0)
        else:
            b_a = tl.load(p_a + k0 * stride_ak, mask=m_k[None, :], other=0)
        # ---- weight tile ----
        if W4:
            p_w = p_b + (k0 // 8) * stride_bk
            if EVEN_K:
                b_w = tl.load(p_w)  # [BK/8, BN] int32
            else:
                b_w = tl.load(p_w, mask=((k0 // 8 + o_kw) < K // 8)[:, None], other=0)
            b_q = ((b_w[:, None, :] >> shifts[None, :, None]) & 0xF) - 8  # [BK/8, 8, BN], row 8j + s
            b_b = tl.reshape(b_q.to(tl.int8), (BLOCK_K, BLOCK_N))  # [BK, BN]
        elif SWAP_AB:
            if EVEN_K:
                b_b = tl.load(p_b + k0 * stride_bk)  # [BN, BK]
            elif FP8:
                b_b = tl.load(p_b + k0 * stride_bk, mask=m_k[None, :], other=0.0)
            else:
                b_b = tl.load(p_b + k0 * stride_bk, mask=m_k[None, :], other=0)
        else:
            if EVEN_K:
                b_b = tl.load(p_b + k0 * stride_bk)  # [BK, BN]
            elif FP8:
                b_b = tl.load(p_b + k0 * stride_bk, mask=m_k[:, None], other=0.0)
            else:
                b_b = tl.load(p_b + k0 * stride_bk, mask=m_k[:, None], other=0)
        # ---- multiply-accumulate ----
        if SWAP_AB:  # A8W8 only (the launcher never swaps A8W4)
            if FP8:
                acc = tl.dot(b_b, tl.trans(b_a), acc, max_num_imprecise_acc=BLOCK_K)  # [BN, BK] @ [BK, BM] -> [BN, BM]
            else:
                acc = tl.dot(b_b, tl.trans(b_a), acc, out_dtype=tl.int32)  # [BN, BK] @ [BK, BM] -> [BN, BM]
        elif FP8:
            acc = tl.dot(b_a, b_b, acc, max_num_imprecise_acc=BLOCK_K)  # [BM, BK] @ [BK, BN] -> [BM, BN]
        elif GROUP_K == 0:
            acc = tl.dot(b_a, b_b, acc, out_dtype=tl.int32)  # [BM, BK] @ [BK, BN] -> [BM, BN]
        elif GROUP_STEPS == 1:
            b_s = tl.load(b_scale_ptr + (k0 // GROUP_K) * stride_bs_g + r_n * stride_bs_n).to(tl.float32)
            b_p = tl.dot(b_a, b_b, out_dtype=tl.int32)  # [BM, BK] @ [BK, BN] -> [BM, BN]
            acc += b_p.to(tl.float32) * b_s[None, :]
        else:
            acc_g = tl.dot(b_a, b_b, acc_g, out_dtype=tl.int32)  # [BM, BK] @ [BK, BN] -> [BM, BN]
            if (k0 + BLOCK_K) % GROUP_K == 0:  # last step of a group: scale it into the fp32 sum
                b_s = tl.load(b_scale_ptr + (k0 // GROUP_K) * stride_bs_g + r_n * stride_bs_n).to(tl.float32)
                acc += acc_g.to(tl.float32) * b_s[None, :]
                acc_g = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)

    if SWAP_AB:
        acc = tl.trans(acc)  # [BN, BM] -> [BM, BN]
    if USE_WS:
        p_ws = ws_ptr + (i_s * M + o_m.to(tl.int64))[:, None] * N + o_n[None, :]
        tl.store(p_ws, acc, mask=m_m[:, None] & m_n[None, :])
    else:
        epilogue(acc, b_sa, o_m, o_n, M, N, b_scale_ptr, stride_bs_n, bias_ptr, c_ptr, stride_cm, stride_cn,
                 GROUP_K == 0, HAS_BIAS)


# --------------------------------------------------------------------------------------------
# Launchers
# --------------------------------------------------------------------------------------------

_DYNAMIC_GEMM = FastLauncher(_dynamic_gemm_kernel)


def _check_same_device(ref: torch.Tensor, ref_name: str, **tensors) -> None:
    for name, t in tensors.items():
        if t is not None and t.device != ref.device:
            raise ValueError(f"{name} is on {t.device} but {ref_name} is on {ref.device}: put them on one device")
    if not triton_can_run_on(ref.device):
        raise ValueError(
            f"{ref_name} is on {ref.device}: the Triton kernels need CUDA tensors "
            f"(CPU tensors only under TRITON_INTERPRET=1, set before importing torchao_gemlite.kernels)"
        )


def _check_bias(bias, n: int) -> None:
    if bias is None:
        return
    if not isinstance(bias, torch.Tensor) or not bias.dtype.is_floating_point or bias.dtype == FP8_DTYPE:
        raise TypeError(f"bias must be a floating-point tensor or None, got {getattr(bias, 'dtype', type(bias))}")
    if bias.shape != (n,):
        raise ValueError(f"bias must have shape ({n},) [N], got {tuple(bias.shape)}")


def _check_act(xq: torch.Tensor, x_scale: torch.Tensor, dtypes: tuple) -> tuple[int, int]:
    if not isinstance(xq, torch.Tensor) or xq.dim() != 2 or xq.dtype not in dtypes:
        raise TypeError(f"xq must be a 2-D {' or '.join(map(str, dtypes))} tensor [M, K], "
                        f"got {getattr(xq, 'dtype', type(xq))} {tuple(getattr(xq, 'shape', ()))}")
    m, k = xq.shape
    if not isinstance(x_scale, torch.Tensor) or x_scale.dtype != torch.float32 or x_scale.numel() != m \
            or x_scale.shape not in ((m,), (m, 1)):
        raise ValueError(f"x_scale must be a float32 tensor of shape ({m},) or ({m}, 1), "
                         f"got {getattr(x_scale, 'dtype', None)} {tuple(getattr(x_scale, 'shape', ()))}")
    return m, k


def _check_out(out, m: int, n: int, out_dtype, device) -> torch.Tensor:
    if out_dtype not in OUT_DTYPES:
        raise TypeError(f"out_dtype must be one of {OUT_DTYPES}, got {out_dtype}")
    if out is None:
        return torch.empty((m, n), dtype=out_dtype, device=device)
    if out.shape != (m, n) or out.dtype != out_dtype or out.device != device:
        raise ValueError(f"out must be a {out_dtype} tensor of shape ({m}, {n}) on {device}, "
                         f"got {out.dtype} {tuple(out.shape)} on {out.device}")
    return out


def _gemm_call(m: int, n: int, k: int, xq_strides: tuple, b_strides_kn: tuple, stride_bs_g: int, stride_bs_n: int,
               out_strides: tuple, config: DynamicGemmConfig, fp8: bool, w4: bool, group_k: int, fuse: bool,
               has_bias: bool, device) -> tuple[KernelCall, int, torch.dtype]:
    """The GEMM launch, its K split and the split-K workspace dtype; run it with (xq, x_scale [M], b, b_scale,
    bias or x_scale, out, workspace [split, M, N] or out). fuse=False: xq int8/fp8 [M, K] and its scales.
    fuse=True: xq is the fp16/bf16 x [M, K] itself and x_scale an fp32 [M] buffer that receives its scales."""
    c = config
    block_k = min(c.BLOCK_K, group_k) if group_k else c.BLOCK_K
    if group_k:  # splits fall on group boundaries; BLOCK_K divides the group size
        groups = k // group_k
        k_per_split = cdiv(groups, max(1, min(c.SPLIT_K, groups))) * group_k
    else:
        k_steps = cdiv(k, block_k)
        k_per_split = cdiv(k_steps, max(1, min(c.SPLIT_K, k_steps))) * block_k
    splits = cdiv(k, k_per_split)  # never an empty split
    int_acc = not fp8 and not group_k
    qmax = FP8_MAX if fp8 else INT8_MAX
    grid = (cdiv(m, c.BLOCK_M) * cdiv(n, c.BLOCK_N), splits)
    ints = (m, n, k, k_per_split, *xq_strides, *b_strides_kn, stride_bs_g, stride_bs_n, *out_strides)
    meta = dict(FP8=fp8, W4=w4, GROUP_K=group_k, GROUP_STEPS=group_k // block_k if group_k else 0,
                HAS_BIAS=has_bias, USE_WS=splits > 1, EVEN_K=k % block_k == 0, FUSE_ACT=fuse,
                SWAP_AB=c.SWAP_AB and not (w4 or group_k), QMAX=qmax, INV_QMAX=inv_qmax(qmax),
                RECIP=scale_by_reciprocal(device),
                BLOCK_M=c.BLOCK_M, BLOCK_N=c.BLOCK_N, BLOCK_K=block_k, GROUP_M=GROUP_M,
                num_warps=c.num_warps, num_stages=c.num_stages)
    return KernelCall(_DYNAMIC_GEMM, grid, ints, meta), splits, torch.int32 if int_acc else torch.float32


def _tma_call(m: int, n: int, k: int, stride_bs_g: int, stride_bs_n: int, out_strides: tuple,
              config: DynamicGemmConfig, fp8: bool, group_k: int, has_bias: bool, pdl: bool = False) -> TmaGemmCall:
    """The TMA GEMM's launch; its ``splits`` and ``ws_dtype`` say what workspace a split needs. ``pdl``: launched
    as the dependent of the activation quantization (pdl.py)."""
    c = config
    return TmaGemmCall(m, n, k, stride_bs_g, stride_bs_n, out_strides, fp8, group_k, has_bias, c.BLOCK_M, c.BLOCK_N,
                       group_k or c.BLOCK_K, c.num_warps, c.num_stages, c.SPLIT_K, c.SWAP_AB and not group_k, pdl)


def _tma_fits(config: DynamicGemmConfig, w4: bool, group_k: int, fuse: bool) -> bool:
    """config.TMA for a kernel the TMA GEMM can run: int8/fp8 operands (A8W8, or A8W4's int8 codes with groups
    of at most BLOCK_K codes, one group a step, never swapped), not packed words or the fused quantization."""
    return config.TMA and not (w4 or fuse) and group_k <= config.BLOCK_K


def _b_strides_kn(b: torch.Tensor, w4: bool) -> tuple[int, int]:
    """(stride along K, stride along N) of the weight: [N, K] for A8W8, words [K/8, N] for A8W4."""
    return (b.stride(0), b.stride(1)) if w4 else (b.stride(1), b.stride(0))


def _launch(xq, x_scale, b, b_scale, stride_bs_g, stride_bs_n, bias, out, n, k, config: DynamicGemmConfig,
            fp8: bool, w4: bool, group_k: int, fuse: bool = False) -> torch.Tensor:
    """Runs the GEMM on checked inputs: the TMA GEMM where the config asks for it and the operands can back its
    descriptors (``_tma_fits``, ``tma_ready``), else the pointer GEMM (``_gemm_call``); then the split-K reduction."""
    m = xq.shape[0]
    if m == 0 or n == 0:
        return out
    if bias is not None and not bias.is_contiguous():  # the kernels index the bias as bias[n]
        bias = bias.contiguous()
    x_scale = x_scale.reshape(m)
    if _tma_fits(config, w4, group_k, fuse) and tma_ready(xq) and tma_ready(b):
        gemm = _tma_call(m, n, k, stride_bs_g, stride_bs_n, out.stride(), config, fp8, group_k, bias is not None)
        splits, ws_dtype = gemm.splits, gemm.ws_dtype
    else:
        gemm, splits, ws_dtype = _gemm_call(m, n, k, xq.stride(), _b_strides_kn(b, w4), stride_bs_g, stride_bs_n,
                                            out.stride(), config, fp8, w4, group_k, fuse, bias is not None,
                                            xq.device)
    ws = torch.empty((splits, m, n), dtype=ws_dtype, device=xq.device) if splits > 1 else None
    gemm((xq, x_scale, b, b_scale, bias if bias is not None else x_scale, out, ws if ws is not None else out))
    if ws is not None:
        reduce_splits(ws, x_scale, b_scale, stride_bs_n, bias, out, apply_b_scale=not group_k)
    return out


def _check_a8w8_weight(weight_q, weight_scale, bias, k: int, qdtype: torch.dtype) -> int:
    """Validates an int8/fp8 weight [N, K] with its fp32 scale; returns N."""
    if not isinstance(weight_q, torch.Tensor) or weight_q.dim() != 2 or weight_q.dtype != qdtype:
        raise TypeError(f"weight_q must be a 2-D {qdtype} tensor [N, K], "
                        f"got {getattr(weight_q, 'dtype', type(weight_q))} {tuple(getattr(weight_q, 'shape', ()))}")
    n = weight_q.shape[0]
    if weight_q.shape[1] != k:
        raise ValueError(f"weight_q has K={weight_q.shape[1]} columns but the activations have K={k}")
    if k % K_ALIGNMENT:
        raise ValueError(f"K={k} must be a multiple of {K_ALIGNMENT} for the int8/fp8 kernels")
    if not isinstance(weight_scale, torch.Tensor) or weight_scale.dtype != torch.float32 \
            or weight_scale.shape not in ((n,), (n, 1)):
        raise ValueError(f"weight_scale must be a float32 tensor of shape ({n},) or ({n}, 1), "
                         f"got {getattr(weight_scale, 'dtype', None)} {tuple(getattr(weight_scale, 'shape', ()))}")
    _check_bias(bias, n)
    return n


def _check_w4_weight(qdata, scale, bias, group_size, k: int) -> tuple[int, int]:
    """Validates a packed symmetric 4-bit weight; returns (N, group) with group = K when per-channel."""
    if not isinstance(qdata, torch.Tensor) or qdata.dtype != torch.int32 or qdata.dim() != 2:
        raise TypeError(f"qdata must be a 2-D int32 tensor [K/8, N], "
                        f"got {getattr(qdata, 'dtype', type(qdata))} {tuple(getattr(qdata, 'shape', ()))}")
    if qdata.shape[0] * W4_PER_WORD != k:
        raise ValueError(f"qdata has {qdata.shape[0]} word rows (K={qdata.shape[0] * W4_PER_WORD}) "
                         f"but the activations have K={k}")
    n = qdata.shape[1]
    group = k if group_size in (None, -1) else group_size
    if not isinstance(group, int) or isinstance(group, bool) or group < 32 or k % group \
            or (group != k and group & (group - 1)):
        raise ValueError(f"group_size={group_size!r} is not supported for K={k}: use a power of two >= 32 "
                         f"that divides K, or None / -1 / K for per-channel")
    if not isinstance(scale, torch.Tensor) or scale.dtype not in (torch.float16, torch.bfloat16, torch.float32) \
            or scale.shape != (k // group, n):
        raise ValueError(f"scale must be a float16/bfloat16/float32 tensor of shape ({k // group}, {n}) "
                         f"[K / group_size, N], got {getattr(scale, 'dtype', None)} {tuple(getattr(scale, 'shape', ()))}")
    _check_bias(bias, n)
    return n, group


def dynamic_gemm(xq: torch.Tensor, x_scale: torch.Tensor, weight_q: torch.Tensor, weight_scale: torch.Tensor,
                 bias: torch.Tensor | None, out_dtype: torch.dtype, config: DynamicGemmConfig | None = None,
                 *, out: torch.Tensor | None = None) -> torch.Tensor:
    """A8W8 GEMM on quantized inputs: (xq @ weight_q.T) * x_scale * weight_scale.T + bias -> [M, N].

    xq int8 or float8_e4m3fn [M, K] (any strides), x_scale fp32 [M] or [M, 1]; weight_q the same
    dtype, [N, K]; weight_scale fp32 [N] or [N, 1]; bias [N] or None; config None -> the tuned
    tables, then the heuristic (default_config).
    """
    m, k = _check_act(xq, x_scale, (torch.int8, FP8_DTYPE))
    fp8 = xq.dtype == FP8_DTYPE
    n = _check_a8w8_weight(weight_q, weight_scale, bias, k, xq.dtype)
    _check_same_device(xq, "xq", x_scale=x_scale, weight_q=weight_q, weight_scale=weight_scale, bias=bias, out=out)
    out = _check_out(out, m, n, out_dtype, xq.device)
    config = config or default_config(m, n, k, "fp8" if fp8 else "int8", xq.device)
    w_scale = weight_scale.reshape(n)
    return _launch(xq, x_scale, weight_q, w_scale, 0, w_scale.stride(0), bias, out, n, k, config,
                   fp8=fp8, w4=False, group_k=0)


def a8w4_gemm(xq: torch.Tensor, x_scale: torch.Tensor, qdata: torch.Tensor, scale: torch.Tensor,
              bias: torch.Tensor | None, group_size: int | None, out_dtype: torch.dtype,
              config: DynamicGemmConfig | None = None, *, out: torch.Tensor | None = None) -> torch.Tensor:
    """A8W4 GEMM: int8 xq [M, K] times a packed symmetric 4-bit weight (qdata int32 [K/8, N],
    scale [K/G, N] fp16/bf16/fp32, zero 8); group_size None, -1 or K means per-channel. Without a
    config, M >= A8W4_CODES_MIN_M runs on int8 codes unpacked for the call (``_codes_route``)."""
    m, k = _check_act(xq, x_scale, (torch.int8,))
    n, group = _check_w4_weight(qdata, scale, bias, group_size, k)
    _check_same_device(xq, "xq", x_scale=x_scale, qdata=qdata, scale=scale, bias=bias, out=out)
    out = _check_out(out, m, n, out_dtype, xq.device)
    codes = _codes_route(m, config, qdata)
    per_channel = group == k
    config = config or default_config(m, n, k, "a8w4", xq.device, group, codes)
    return _launch(xq, x_scale, w4_codes(qdata) if codes else qdata, scale, 0 if per_channel else scale.stride(0),
                   scale.stride(1), bias, out, n, k, config, fp8=False, w4=not codes,
                   group_k=0 if per_channel else group)


# --------------------------------------------------------------------------------------------
# Linear layers: x [..., K] fp16/bf16 -> quantize per token -> GEMM -> [..., N] in x's dtype
# --------------------------------------------------------------------------------------------

def _check_x(x) -> int:
    """x: a floating-point fp16/bf16 tensor [..., K]; returns K."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in (torch.float16, torch.bfloat16):
        raise TypeError(f"x dtype {x.dtype} is not supported: use torch.float16 or torch.bfloat16")
    if x.dim() < 1:
        raise ValueError("x must have at least one axis [..., K]")
    return x.shape[-1]


def _linear_out(out, x: torch.Tensor, n: int):
    if out is None:
        return None
    shape = (*x.shape[:-1], n)
    if out.shape != shape or out.dtype != x.dtype or not out.is_contiguous():
        raise ValueError(f"out must be a contiguous {x.dtype} tensor of shape {shape}, got {out.dtype} {tuple(out.shape)}")
    return out.view(-1, n)


def _scaled_mm_route(m: int, weight_n: int, x: torch.Tensor, qdtype: torch.dtype, config) -> bool:
    """fp8 with M >= SCALED_MM_MIN_M goes to torch._scaled_mm (row-wise scales, our act quant):
    on the H200 it took 0.80 / 0.66 / 0.62 of fp16's time at M = 256 / 1024 / 4096 against
    0.88 / 0.92 / 0.92 for the Triton kernel (geomean of 4 Llama shapes), and ties at M = 64.
    Only when no config was asked for, on CUDA, N % 16 == 0 (cuBLASLt), fp16/bf16 out. int8
    stays on Triton: torch._int_mm was no faster and needs a separate scaling pass."""
    return (config is None and qdtype == FP8_DTYPE and x.device.type == "cuda" and m >= SCALED_MM_MIN_M
            and x.dtype in SCALED_MM_OUT_DTYPES and weight_n % 16 == 0)


def _scaled_mm_bias(bias, dtype):
    """torch._scaled_mm's bias in the output dtype, 16-byte aligned (cuBLASLt refuses an unaligned one)."""
    if bias is None:
        return None
    return bias.to(dtype, copy=bias.data_ptr() % 16 != 0)


def _gemv_route(m: int, config, weight) -> bool:
    """A8W8 decode (int8 and fp8, M <= GEMV_MAX_M, no config asked for) goes to the CUDA-core GEMV
    (dynamic_gemv.py) when the weight [N, K] can be read as int32 words: unit stride along K, 4-byte
    aligned rows."""
    if config is not None or weight is None or not 1 <= m <= GEMV_MAX_M:
        return False
    return weight.stride(1) == 1 and weight.stride(0) % 4 == 0 and weight.storage_offset() % 4 == 0


def _codes_route(m: int, config, qdata) -> bool:
    """A8W4 with M >= A8W4_CODES_MIN_M and no config asked for runs the int8 GEMM on codes unpacked
    for the call (dequant.w4_codes, which reads words with unit stride along N)."""
    return config is None and m >= A8W4_CODES_MIN_M and qdata.stride(1) == 1


def _mma_route(m: int, config, qdata, scale) -> bool:
    """A8W4 with 1 <= M <= 16 and no config asked for goes to the int8 tensor-core decode kernel
    (dynamic_mma_gemv.py) when its vector loads can read the words and scales (mma_gemv.mma_operands_aligned):
    H100, 1.0-1.8x the dp4a GEMV (M <= 4) and the int8 GEMM (M = 8, 16) it replaced (docs/kernels.md)."""
    return config is None and 1 <= m <= MMA_MAX_M and mma_operands_aligned(qdata, scale, None)


class DynamicPlan:
    """One dynamic-activation linear for a call key (see dispatch.WeightOnlyPlan): the per-token
    quantization launch, the route (torch._scaled_mm, the int8 dp4a GEMV, the A8W4 mma kernel, the
    tensor-core GEMM, or for A8W4 at large M the GEMM on int8 codes unpacked per call) with its launch
    and split-K reduction, decided once from a validated call, so that a replayed call costs its
    allocations and launches. kind: "int8", "fp8" or "a8w4"; ``weight`` / ``w_scale`` are weight_q /
    weight_scale (A8W8) or qdata / scale (A8W4); ``group`` is A8W4's group (K for per-channel). A ``config``
    (the tuner's candidates, dynamic_tuning.tune_dynamic) runs the GEMM route with it: on A8W4's int8 codes where
    the call would use them (M >= A8W4_CODES_MIN_M), else on the packed words."""

    def __init__(self, kind: str, x, weight, w_scale, bias, k: int, n: int, group: int | None,
                 config: DynamicGemmConfig | None = None):
        self.kind, self.k, self.n, self.dtype = kind, k, n, x.dtype
        self.lead, self.flatten = tuple(x.shape[:-1]), x.dim() != 2
        self.guard = x.get_device() if x.is_cuda and x.get_device() != torch.cuda.current_device() else None
        m = self.m = math.prod(self.lead)
        self.qdtype = FP8_DTYPE if kind == "fp8" else torch.int8
        self.fix_bias = bias is not None and not bias.is_contiguous()
        self.scale_rows = kind != "a8w4" and w_scale.dim() != 1  # A8W8 [N, 1] scales are read as [N]
        self.fix_scale = False
        self.main = self.reduce = None
        self.split = 1
        self.route = "empty" if m == 0 or n == 0 else self._route(x, weight, w_scale, group, config)
        if self.route in ("empty", "fused"):
            return
        x2 = x.reshape(m, k)  # what every call's reshape gives: the same view, or a contiguous copy
        # the decode kernels after the quantization, and their split reduction, start early (pdl.py): the GEMV,
        # A8W4's mma kernel (not its two-tile form after the whole-row quantization of long rows: 14336x4096
        # M = 16, 31.8 us with, 27.2 without) and the A8W8 TMA GEMM up to M = 64 (1.02-1.09x); not larger GEMMs
        # (the pointer GEMM at M = 256: int8 0.88x with it)
        tma_decode = (self.route == "gemm" and kind != "a8w4" and m <= 64 and self.config.TMA and tma_ready(weight))
        pdl = pdl_for(x) and (self.route == "gemv" or tma_decode
                              or (self.route == "mma" and (m <= 8 or not whole_row_pass(m, k))))
        self.quant = act_quant_call(m, k, x2.stride(0), x2.stride(1), self.qdtype, x.device, pdl)
        if self.route == "scaled_mm":
            return
        has_bias = bias is not None
        if self.route == "gemv":
            self.fix_scale = w_scale.reshape(n).stride(0) != 1  # it reads w_scale[n]
            fp8 = kind == "fp8"
            self.main, self.split = dynamic_gemv_call(m, n, k, k // 4, weight.stride(0) // 4, n, has_bias, fp8,
                                                      pdl=pdl)
            self.ws_dtype, stride_bs_n, b_scale_applied = torch.float32 if fp8 else torch.int32, 1, False
        elif self.route == "mma":
            self.fix_scale = w_scale.stride(-1) != 1
            stride_sg = w_scale.contiguous().stride(0) if self.fix_scale else w_scale.stride(0)
            self.main, self.split = dynamic_mma_call(m, n, k, 0 if group == k else group, k // 4, weight.stride(0),
                                                     stride_sg, n, has_bias, pdl=pdl)
            self.ws_dtype, stride_bs_n, b_scale_applied = torch.float32, 1, True
        else:  # gemm, on the packed words or (codes) on int8 codes [N, K] unpacked by self.unpack
            w4 = kind == "a8w4" and self.route == "gemm"
            group_k = 0 if kind != "a8w4" or group == k else group
            b_scale = w_scale if kind == "a8w4" else w_scale.reshape(n)
            stride_bs_g, stride_bs_n = (0 if not group_k else b_scale.stride(0), b_scale.stride(-1))
            b_strides = (1, k) if self.route == "codes" else _b_strides_kn(weight, w4)
            # the codes route's weight is a fresh contiguous [N, K] int8 tensor; xq is one too
            b_tma = self.route == "codes" or tma_ready(weight)
            if _tma_fits(self.config, w4, group_k, False) and b_tma and k % 16 == 0:
                self.main = _tma_call(m, n, k, stride_bs_g, stride_bs_n, (n, 1), self.config, kind == "fp8",
                                      group_k, has_bias, pdl)
                self.split, self.ws_dtype = self.main.splits, self.main.ws_dtype
            else:
                self.main, self.split, self.ws_dtype = _gemm_call(
                    m, n, k, (k, 1), b_strides, stride_bs_g, stride_bs_n, (n, 1), self.config,
                    kind == "fp8", w4, group_k, False, has_bias, x.device)
            b_scale_applied = bool(group_k)
            if self.route == "codes":
                self.unpack = w4_codes_call(n, k, weight.stride(0))
        if self.split > 1:
            self.reduce = reduce_splits_call(self.split, m, n, stride_bs_n, (n, 1), has_bias, not b_scale_applied,
                                             pdl)

    def _route(self, x, weight, w_scale, group, config) -> str:
        m, n, k = self.m, self.n, self.k
        codes = self.kind == "a8w4" and _codes_route(m, None, weight)
        if config is None:
            if self.kind == "a8w4" and _mma_route(m, None, weight, w_scale):
                return "mma"
            if self.kind == "fp8" and _scaled_mm_route(m, n, x, self.qdtype, None):
                return "scaled_mm"
            if self.kind != "a8w4" and _gemv_route(m, None, weight):
                return "gemv"
            config = default_config(m, n, k, self.kind, x.device, group, codes)
        self.config = config
        if codes:
            return "codes"
        return "fused" if config.FUSE_ACT else "gemm"  # no heuristic picks the fused prologue

    def __call__(self, x, weight, w_scale, bias) -> torch.Tensor:
        if self.guard is not None:
            with torch.cuda.device(self.guard):
                return self._run(x, weight, w_scale, bias)
        return self._run(x, weight, w_scale, bias)

    def _run(self, x, weight, w_scale, bias) -> torch.Tensor:
        m, n = self.m, self.n
        if self.route == "empty":
            return torch.empty((*self.lead, n), dtype=self.dtype, device=x.device)
        x2 = x.reshape(m, self.k) if self.flatten else x
        if self.fix_bias:
            bias = bias.contiguous()
        if self.scale_rows:
            w_scale = w_scale.reshape(n)
        if self.fix_scale:
            w_scale = w_scale.contiguous()
        xq = torch.empty((m, self.k), dtype=self.qdtype, device=x.device)
        if self.route == "scaled_mm":
            x_scale = torch.empty((m, 1), dtype=torch.float32, device=x.device)
            self.quant((x2, xq, x_scale))
            y = torch._scaled_mm(xq, weight.t(), scale_a=x_scale, scale_b=w_scale.reshape(1, n),
                                 bias=_scaled_mm_bias(bias, x.dtype), out_dtype=x.dtype)
            return y.view(*self.lead, n) if self.flatten else y
        x_scale = torch.empty(m, dtype=torch.float32, device=x.device)
        self.quant((x2, xq, x_scale))
        y = torch.empty((m, n), dtype=self.dtype, device=x.device)
        ws = torch.empty((self.split, m, n), dtype=self.ws_dtype, device=x.device) if self.split > 1 else y
        bias_arg = bias if bias is not None else x_scale
        if self.route == "gemv":
            self.main((xq.view(torch.int32), x_scale, weight.view(torch.int32), w_scale, bias_arg, y, ws))
        elif self.route == "mma":
            self.main((xq.view(torch.int32), x_scale, weight, w_scale, bias_arg, y, ws))
        elif self.route == "codes":
            codes = torch.empty((n, self.k), dtype=torch.int8, device=x.device)
            self.unpack((weight, codes))
            self.main((xq, x_scale, codes, w_scale, bias_arg, y, ws))
        else:
            self.main((xq, x_scale, weight, w_scale, bias_arg, y, ws))
        if self.reduce is not None:
            self.reduce((ws, x_scale, x_scale if self.route == "mma" else w_scale, bias_arg, y))
        return y.view(*self.lead, n) if self.flatten else y


# configs.clear_caches() empties it with the config caches
_PLANS = PlanCache()
register_derived_cache(_PLANS)


def _planned(kind: str, x, weight, w_scale, bias, group_size=None) -> torch.Tensor | None:
    """The call through its kept plan (validated and planned on a key's first call); None for the
    fused-prologue route, which the caller runs unplanned."""
    key = (kind, tensor_key(x), tensor_key(weight), tensor_key(w_scale), tensor_key(bias), group_size,
           type(group_size), torch.cuda.current_device() if isinstance(x, torch.Tensor) and x.is_cuda else -1)
    plan = _PLANS.get(key)
    if plan is None:
        k = _check_x(x)
        if kind == "a8w4":
            n, group = _check_w4_weight(weight, w_scale, bias, group_size, k)
            _check_same_device(x, "x", qdata=weight, scale=w_scale, bias=bias)
        else:
            n, group = _check_a8w8_weight(weight, w_scale, bias, k, FP8_DTYPE if kind == "fp8" else torch.int8), None
            _check_same_device(x, "x", weight_q=weight, weight_scale=w_scale, bias=bias)
        plan = _PLANS.keep(key, DynamicPlan(kind, x, weight, w_scale, bias, k, n, group))
    return None if plan.route == "fused" else plan(x, weight, w_scale, bias)


def _a8w8_linear(x, weight_q, weight_scale, bias, config, out, qdtype):
    if config is None and out is None:
        y = _planned("fp8" if qdtype == FP8_DTYPE else "int8", x, weight_q, weight_scale, bias)
        if y is not None:
            return y
    k = _check_x(x)
    n = _check_a8w8_weight(weight_q, weight_scale, bias, k, qdtype)
    _check_same_device(x, "x", weight_q=weight_q, weight_scale=weight_scale, bias=bias, out=out)
    out2 = _linear_out(out, x, n)
    x2 = x.reshape(-1, k)
    m = x2.shape[0]
    fp8 = qdtype == FP8_DTYPE
    w_scale = weight_scale.reshape(n)
    if _scaled_mm_route(m, n, x, qdtype, config):
        xq, x_scale = quantize_per_token(x2, qdtype)
        y = torch._scaled_mm(xq, weight_q.t(), scale_a=x_scale, scale_b=w_scale.reshape(1, n),
                             bias=_scaled_mm_bias(bias, x.dtype), out_dtype=x.dtype)
        if out2 is not None:
            out2.copy_(y)
            y = out2
        return y.view(*x.shape[:-1], n)
    y = _check_out(out2, m, n, x.dtype, x.device)
    if _gemv_route(m, config, weight_q):
        xq, x_scale = quantize_per_token(x2, qdtype)
        dynamic_gemv(xq, x_scale, weight_q, w_scale, bias, y, n, k)
        return y.view(*x.shape[:-1], n)
    config = config or default_config(m, n, k, "fp8" if fp8 else "int8", x.device)
    if config.FUSE_ACT:
        x_scale = torch.empty(m, dtype=torch.float32, device=x.device)
        _launch(x2, x_scale, weight_q, w_scale, 0, w_scale.stride(0), bias, y, n, k, config,
                fp8=fp8, w4=False, group_k=0, fuse=True)
    else:
        xq, x_scale = quantize_per_token(x2, qdtype)
        dynamic_gemm(xq, x_scale, weight_q, weight_scale, bias, x.dtype, config, out=y)
    return y.view(*x.shape[:-1], n)


def int8_dynamic_linear(x: torch.Tensor, weight_q: torch.Tensor, weight_scale: torch.Tensor,
                        bias: torch.Tensor | None = None, config: DynamicGemmConfig | None = None, *,
                        out: torch.Tensor | None = None) -> torch.Tensor:
    """A8W8 int8: x [..., K] fp16/bf16 quantized per token to int8, weight_q int8 [N, K] with
    fp32 weight_scale [N] (or [N, 1]); int32 accumulation; returns [..., N] in x's dtype."""
    return _a8w8_linear(x, weight_q, weight_scale, bias, config, out, torch.int8)


def fp8_dynamic_linear(x: torch.Tensor, weight_q: torch.Tensor, weight_scale: torch.Tensor,
                       bias: torch.Tensor | None = None, config: DynamicGemmConfig | None = None, *,
                       out: torch.Tensor | None = None) -> torch.Tensor:
    """A8W8 fp8: x [..., K] quantized per token to float8_e4m3fn (saturating), weight_q e4m3
    [N, K] with fp32 weight_scale [N] (or [N, 1]); fp32 accumulation; [..., N] in x's dtype."""
    return _a8w8_linear(x, weight_q, weight_scale, bias, config, out, FP8_DTYPE)


def a8w4_dynamic_linear(x: torch.Tensor, qdata: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None,
                        group_size: int | None, config: DynamicGemmConfig | None = None, *,
                        out: torch.Tensor | None = None) -> torch.Tensor:
    """A8W4: x [..., K] quantized per token to int8 times a packed symmetric 4-bit weight
    (qdata int32 [K/8, N], scale [K/G, N], zero 8); returns [..., N] in x's dtype."""
    if config is None and out is None:
        y = _planned("a8w4", x, qdata, scale, bias, group_size)
        if y is not None:
            return y
    k = _check_x(x)
    n, group = _check_w4_weight(qdata, scale, bias, group_size, k)
    _check_same_device(x, "x", qdata=qdata, scale=scale, bias=bias, out=out)
    out2 = _linear_out(out, x, n)
    x2 = x.reshape(-1, k)
    m = x2.shape[0]
    per_channel = group == k
    if _mma_route(m, config, qdata, scale):
        y = _check_out(out2, m, n, x.dtype, x.device)
        xq, x_scale = quantize_per_token(x2, torch.int8)
        dynamic_mma_gemv(xq, x_scale, qdata, scale, scale.stride(0), bias, y, n, k, 0 if per_channel else group)
        return y.view(*x.shape[:-1], n)
    if config is not None and config.FUSE_ACT:
        y = _check_out(out2, m, n, x.dtype, x.device)
        x_scale = torch.empty(m, dtype=torch.float32, device=x.device)
        _launch(x2, x_scale, qdata, scale, 0 if per_channel else scale.stride(0), scale.stride(1), bias, y,
                n, k, config, fp8=False, w4=True, group_k=0 if per_channel else group, fuse=True)
    else:  # without a config, a8w4_gemm routes large M to the int8 codes
        xq, x_scale = quantize_per_token(x2, torch.int8)
        y = a8w4_gemm(xq, x_scale, qdata, scale, bias, group_size, x.dtype, config, out=out2)
    return y.view(*x.shape[:-1], n)
