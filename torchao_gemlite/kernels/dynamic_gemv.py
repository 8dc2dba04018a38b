"""Decode kernel for A8W8 (M <= GEMV_MAX_M) on the CUDA cores: int8 with dp4a, four int8 products
summed into an int32 by one instruction; fp8 (e4m3) with its bytes converted to fp32 and four FMAs:

    y[m, n] = x_scale[m] * w_scale[n] * sum_k xq[m, k] * w[n, k]

At decode the weight stream is all that matters; the tensor-core GEMM pads the batch to 16 rows and
its MMAs buy nothing there. Each int32 word of weight bytes (the 8-bit weight [N, K] read as int32
[N, K/4], 16-byte loads along K) meets the matching int32 word of x bytes (xq viewed as int32
[M, K/4]): a [BM, BN, BK/4] accumulator (int32, or fp32 for fp8) summed over K once at the end, so
a thread's x work serves many columns. fp8 costs about 10 instructions a weight word against dp4a's
one (two cvt.f16x2.e4m3x2, four f16 -> f32 cvt, four FMAs), still below the HBM time at M <= 4.
HBM bytes: N * K (weights) + M * K (x, from L2 for all programs). (A8W4 decode runs on the int8
tensor cores: dynamic_mma_gemv.py.)
Grid: (cdiv(N, BLOCK_N), SPLIT_K). Rows of x and columns past N are clamped (never stored),
so the loop has no masks unless K is ragged. Split-K partials go to dynamic_epilogue's
deterministic reduction. Under Triton's interpreter dp4a runs as plain integer arithmetic and the
e4m3 bytes are decoded with integer ops and a bitcast (EMULATE).
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from .dynamic_epilogue import epilogue, reduce_splits
from .launch import INTERPRETED, FastLauncher, KernelCall, cdiv, next_power_of_2
from .pdl import dependent_meta, launch_dependents, wait_for_prior

GEMV_MAX_M = 4


class GemvConfig(NamedTuple):
    block_n: int
    block_k: int  # codes a step: a power of two, at least 32
    split_k: int
    num_warps: int = 4
    num_stages: int = 3


@triton.jit
def dp4a(a, b, c, EMULATE: tl.constexpr):
    """c + the sum of the four products of the signed bytes of int32 words a and b."""
    if EMULATE:
        total = c
        for i in tl.static_range(4):
            total += ((a << (24 - 8 * i)) >> 24) * ((b << (24 - 8 * i)) >> 24)
        return total
    else:
        return tl.inline_asm_elementwise("dp4a.s32.s32 $0, $1, $2, $3;", "=r,r,r,r", [a, b, c],
                                         dtype=tl.int32, is_pure=True, pack=1)


@triton.jit
def _e4m3_byte_emulated(words, SHIFT: tl.constexpr):
    """The e4m3 byte at bit SHIFT of each int32 word as fp32, with integer ops: to fp16 bits (sign to bit 15,
    exponent and mantissa 4 bits up) that hold the value times 2^-8, subnormals included (both formats'
    subnormals sit 8 binades apart), then times 2^8."""
    b = (words >> SHIFT) & 0xFF
    half = ((b & 0x80) << 8) | ((b & 0x7F) << 7)
    return half.to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32) * 256.0


@triton.jit
def e4m3_quad(words, EMULATE: tl.constexpr):
    """The four e4m3 bytes of each int32 word (low byte first) as fp32, exactly."""
    if EMULATE:
        return (_e4m3_byte_emulated(words, 0), _e4m3_byte_emulated(words, 8), _e4m3_byte_emulated(words, 16),
                _e4m3_byte_emulated(words, 24))
    else:
        return tl.inline_asm_elementwise(
            """{
            .reg .b16 lo, hi, h0, h1, h2, h3;
            .reg .b32 p01, p23;
            mov.b32 {lo, hi}, $4;
            cvt.rn.f16x2.e4m3x2 p01, lo;
            cvt.rn.f16x2.e4m3x2 p23, hi;
            mov.b32 {h0, h1}, p01;
            mov.b32 {h2, h3}, p23;
            cvt.f32.f16 $0, h0;
            cvt.f32.f16 $1, h1;
            cvt.f32.f16 $2, h2;
            cvt.f32.f16 $3, h3;
            }""", "=r,=r,=r,=r,r", [words], dtype=(tl.float32, tl.float32, tl.float32, tl.float32), is_pure=True,
            pack=1)


@triton.jit
def dynamic_gemv_kernel(x_ptr, x_scale_ptr, w_ptr, w_scale_ptr, bias_ptr, out_ptr, ws_ptr,
                        M, N, K, K_PER_SPLIT, stride_xm, stride_wr, stride_om,
                        HAS_BIAS: tl.constexpr, USE_WS: tl.constexpr, EVEN_K: tl.constexpr, EVEN_N: tl.constexpr,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                        NUM_STAGES: tl.constexpr, FP8: tl.constexpr, EMULATE: tl.constexpr,
                        PDL: tl.constexpr = False):
    # x_ptr: int32 words of xq [M, K/4]; w_ptr: int32 words of the weight [N, K/4]; w_scale_ptr: fp32 [N].
    # FP8: the bytes are e4m3 (fp32 sums), else int8 (int32 sums)
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    wait_for_prior(PDL)  # the activation codes' kernel (pdl.py)
    o_m = tl.arange(0, BLOCK_M)
    o_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    r_m = tl.minimum(o_m, M - 1)
    if EVEN_N:
        r_n = o_n
    else:
        r_n = tl.minimum(o_n, N - 1)
    t_start = pid_k * (K_PER_SPLIT // BLOCK_K)
    t_end = tl.minimum(t_start + K_PER_SPLIT // BLOCK_K, tl.cdiv(K, BLOCK_K))
    BKW: tl.constexpr = BLOCK_K // 4
    acc = tl.zeros((BLOCK_M, BLOCK_N, BKW), dtype=tl.float32 if FP8 else tl.int32)
    for t in tl.range(t_start, t_end, num_stages=NUM_STAGES):
        o_kw = t * BKW + tl.arange(0, BKW)
        p_w = w_ptr + r_n.to(tl.int64)[:, None] * stride_wr + o_kw[None, :]
        p_x = x_ptr + r_m[:, None] * stride_xm + o_kw[None, :]
        if EVEN_K:
            words = tl.load(p_w)
            x_words = tl.load(p_x)
        else:
            in_k = o_kw < K // 4
            words = tl.load(p_w, mask=in_k[None, :], other=0)
            x_words = tl.load(p_x, mask=in_k[None, :], other=0)
        if FP8:  # x converted once per thread, shared by the columns it holds
            w0, w1, w2, w3 = e4m3_quad(words, EMULATE)  # [BN, BKW]
            x0, x1, x2, x3 = e4m3_quad(x_words, EMULATE)  # [BM, BKW]
            acc += w0[None, :, :] * x0[:, None, :] + w1[None, :, :] * x1[:, None, :]
            acc += w2[None, :, :] * x2[:, None, :] + w3[None, :, :] * x3[:, None, :]
        else:
            acc = dp4a(words[None, :, :], x_words[:, None, :], acc, EMULATE)
    total = tl.sum(acc, axis=2)  # [BM, BN]
    launch_dependents(PDL and USE_WS)  # the split reduction may start
    if USE_WS:
        p_ws = ws_ptr + (pid_k * M + o_m.to(tl.int64))[:, None] * N + o_n[None, :]
        tl.store(p_ws, total, mask=(o_m < M)[:, None] & (o_n < N)[None, :])
    else:
        x_scale = tl.load(x_scale_ptr + r_m)
        epilogue(total, x_scale, o_m, o_n, M, N, w_scale_ptr, 1, bias_ptr, out_ptr, stride_om, 1, True, HAS_BIAS)


_GEMV = FastLauncher(dynamic_gemv_kernel)


@lru_cache(maxsize=4096)  # one dict lookup a call after the first per shape
def gemv_config(m: int, n: int, k: int, sm_count: int = 132) -> GemvConfig:
    """The H100 probe's winner (test/kernels/gpu_probe_dynamic_gemv.py, docs/kernels.md): 32 columns x
    512 codes at M <= 2 (256 above, and where K is short), 8 warps, 4 stages, the smallest K split that
    gives 0.9 programs an SM."""
    block_n, block_k, stages, target = 32, 512 if m <= 2 and k >= 2048 else 256, 4, 0.9 * sm_count
    k_steps = cdiv(k, block_k)
    programs = cdiv(n, block_n)
    split = 1
    while split < min(k_steps, 16) and programs * split < target:
        split += 1
    return GemvConfig(block_n, block_k, split, num_warps=8, num_stages=stages)


def dynamic_gemv_call(m: int, n: int, k: int, stride_xw: int, stride_ww: int, stride_om: int, has_bias: bool,
                      fp8: bool, config: GemvConfig | None = None, pdl: bool = False) -> tuple[KernelCall, int]:
    """The launch and its K split (> 1: partials to a workspace [split, M, N], int32 or for fp8 fp32, for
    reduce_splits); run it with (x_words, x_scale [M], w_words, w_scale [N], bias or x_scale, out, workspace
    or out). Strides are in int32 words for x and w. ``pdl``: launched as the dependent of the activation
    quantization (pdl.py)."""
    c = config or gemv_config(m, n, k)
    if c.block_k % 32 or c.block_k & (c.block_k - 1):
        raise ValueError(f"gemv block_k={c.block_k} must be a power of two >= 32")
    k_steps = cdiv(k, c.block_k)
    k_per_split = cdiv(k_steps, max(1, min(c.split_k, k_steps))) * c.block_k
    splits = cdiv(k, k_per_split)
    return KernelCall(_GEMV, (cdiv(n, c.block_n), splits), (m, n, k, k_per_split, stride_xw, stride_ww, stride_om), dict(
        HAS_BIAS=has_bias, USE_WS=splits > 1, EVEN_K=k % c.block_k == 0, EVEN_N=n % c.block_n == 0,
        BLOCK_M=max(1, next_power_of_2(m)), BLOCK_N=c.block_n, BLOCK_K=c.block_k, NUM_STAGES=c.num_stages,
        FP8=fp8, EMULATE=INTERPRETED, num_warps=c.num_warps, **dependent_meta(pdl))), splits


def dynamic_gemv(xq: torch.Tensor, x_scale: torch.Tensor, w: torch.Tensor, w_scale: torch.Tensor, bias,
                 out: torch.Tensor, n: int, k: int, config: GemvConfig | None = None) -> torch.Tensor:
    """Runs the kernel on checked inputs (dynamic_gemm.py validates them): xq int8 or float8_e4m3fn [M, K]
    row-major with K % 16 == 0; w of the same dtype [N, K] with unit K stride; w_scale fp32 [N]."""
    m = xq.shape[0]
    if m == 0 or n == 0:
        return out
    if bias is not None and not bias.is_contiguous():
        bias = bias.contiguous()
    x_words = xq.view(torch.int32)
    w_words = w.view(torch.int32)
    if w_scale.stride(-1) != 1:  # the kernel reads w_scale[n]
        w_scale = w_scale.contiguous()
    fp8 = xq.dtype == torch.float8_e4m3fn
    gemv, splits = dynamic_gemv_call(m, n, k, x_words.stride(0), w_words.stride(0), out.stride(0), bias is not None,
                                     fp8, config)
    ws_dtype = torch.float32 if fp8 else torch.int32
    ws = torch.empty((splits, m, n), dtype=ws_dtype, device=xq.device) if splits > 1 else None
    x_scale = x_scale.reshape(m)
    gemv((x_words, x_scale, w_words, w_scale, bias if bias is not None else x_scale, out, ws if ws is not None else out))
    if ws is not None:
        reduce_splits(ws, x_scale, w_scale, 1, bias, out, apply_b_scale=True)
    return out
