"""Decode kernel for int8 activations (M <= GEMV_MAX_M): A8W8 int8 and A8W4 on the CUDA cores
with dp4a, four int8 products summed into an int32 by one instruction.

    A8W8: y[m, n] = x_scale[m] * w_scale[n] * sum_k xq[m, k] * w[n, k]
    A8W4: y[m, n] = x_scale[m] * sum_g scale[g, n] * sum_{k in g} xq[m, k] * (q[k, n] - 8)

At decode the weight stream is all that matters; the tensor-core kernel pads the batch to 16
rows and its int8 MMAs buy nothing there. Here each int32 word of weight bytes meets the
matching int32 word of x bytes (xq viewed as int32 [M, K/4]) in one dp4a:
  * A8W8, weight int8 [N, K] viewed as int32 [N, K/4]: a [BLOCK_N, BLOCK_K/4] tile, K
    contiguous (16-byte loads), one dp4a a word, an int32 accumulator [BM, BN, BK/4] summed
    over K once at the end. HBM bytes: N * K (weights) + M * K (x, from L2 for all programs).
  * A8W4, words int32 [K/8, N] (code k = 8j + s in bits 4s..4s+3, N contiguous): a
    [BLOCK_N, BLOCK_K/8] tile (the same [BM, BN, BK/8] arrangement as A8W8, so that a thread
    holds one word row for many columns and its x work is shared by all of them). A word's even codes (w & 0x0F0F0F0F) and odd codes
    ((w >> 4) & 0x0F0F0F0F) are four bytes each; the two x words of the same 8 k are
    permuted once per program row into their even and odd bytes (two PRMTs, shared by every
    column). The zero 8 costs nothing: the dp4a chain starts from -8 * sum(x bytes). Groups
    scale each word's int32 sum in fp32 (one I2F and one FMA a word); per-channel weights keep
    int32 to the end. HBM bytes: N * K / 2 + 2 * N * K / G (scales) + M * K.
Instructions per 8 weight codes: A8W8 2 dp4a; A8W4 5 integer ops + 2 for a group scale.
Grid: (cdiv(N, BLOCK_N), SPLIT_K). Rows of x and columns past N are clamped (never stored),
so the loop has no masks unless K is ragged. Split-K partials go to dynamic_epilogue's
deterministic reduction. Under Triton's interpreter dp4a and the byte permutation run as
plain integer arithmetic (EMULATE).
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from .dynamic_epilogue import epilogue, reduce_splits
from .launch import INTERPRETED, FastLauncher, cdiv, next_power_of_2

GEMV_MAX_M = 4


class GemvConfig(NamedTuple):
    block_n: int
    block_k: int  # codes a step: a multiple of 32 (A8W4: of 8 words), a power of two
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
def _bytes_of_pair(lo, hi, PICK: tl.constexpr, EMULATE: tl.constexpr):
    """Bytes PICK, PICK + 2, PICK + 4, PICK + 6 of the 8-byte value (hi:lo), as one int32 (PRMT)."""
    if EMULATE:
        b0 = (lo >> (8 * PICK)) & 0xFF
        b1 = (lo >> (8 * (PICK + 2))) & 0xFF
        b2 = (hi >> (8 * PICK)) & 0xFF
        b3 = (hi >> (8 * (PICK + 2))) & 0xFF
        return b0 | (b1 << 8) | (b2 << 16) | (b3 << 24)
    else:
        SEL: tl.constexpr = PICK | ((PICK + 2) << 4) | ((PICK + 4) << 8) | ((PICK + 6) << 12)
        return tl.inline_asm_elementwise("prmt.b32 $0, $1, $2, $3;", "=r,r,r,r",
                                         [lo, hi, tl.full(lo.shape, SEL, tl.int32)],
                                         dtype=tl.int32, is_pure=True, pack=1)


@triton.jit
def _load_scales(scale_ptr, row_offs, cols, mask, SCALE_PAIRS: tl.constexpr):
    """fp32 scales at row offset ``row_offs`` and columns ``cols`` (broadcast together).
    SCALE_PAIRS 1 / 2: the fp16 / bf16 scales are read as int32 words of two, so that the load
    is a 4-byte cp.async that Triton pipelines (a 2-byte load would wait its full latency every
    step); 0: fp32 scales."""
    if SCALE_PAIRS == 0:
        return tl.load(scale_ptr + row_offs + cols, mask=mask, other=None if mask is None else 0.0)
    else:
        pair = tl.load(scale_ptr + (row_offs + cols) // 2, mask=mask, other=None if mask is None else 0)
        bits = (pair >> (16 * (cols % 2))) & 0xFFFF
        if SCALE_PAIRS == 1:
            return bits.to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)
        else:
            return (bits << 16).to(tl.float32, bitcast=True)


@triton.jit
def dynamic_gemv_kernel(x_ptr, x_scale_ptr, w_ptr, w_scale_ptr, bias_ptr, out_ptr, ws_ptr,
                        M, N, K, K_PER_SPLIT, stride_xm, stride_wr, stride_sg, stride_om,
                        W4: tl.constexpr, GROUP_K: tl.constexpr, HAS_BIAS: tl.constexpr, USE_WS: tl.constexpr,
                        EVEN_K: tl.constexpr, EVEN_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                        SCALE_PAIRS: tl.constexpr, NUM_STAGES: tl.constexpr, EMULATE: tl.constexpr):
    # x_ptr: int32 words of xq [M, K/4]; GROUP_K: A8W4 group size, 0 for per-channel scales;
    # w_scale_ptr: A8W8 fp32 [N]; A8W4 [K/G, N] (with SCALE_PAIRS, its int32 view, offsets in scales)
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    o_m = tl.arange(0, BLOCK_M)
    o_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    r_m = tl.minimum(o_m, M - 1)
    if EVEN_N:
        r_n = o_n
    else:  # clamping costs A8W4 its 16-byte loads (the contiguity along N is lost)
        r_n = tl.minimum(o_n, N - 1)
    t_start = pid_k * (K_PER_SPLIT // BLOCK_K)
    t_end = tl.minimum(t_start + K_PER_SPLIT // BLOCK_K, tl.cdiv(K, BLOCK_K))
    if W4:  # tiles [BLOCK_M, BLOCK_N, BLOCK_K / 8]: a thread's x work serves all its columns
        BKW: tl.constexpr = BLOCK_K // 8
        if GROUP_K == 0:
            acc = tl.zeros((BLOCK_M, BLOCK_N, BKW), dtype=tl.int32)
        else:
            acc = tl.zeros((BLOCK_M, BLOCK_N, BKW), dtype=tl.float32)
        for t in tl.range(t_start, t_end, num_stages=NUM_STAGES):
            o_kw = t * BKW + tl.arange(0, BKW)
            o_kx = t * 2 * BKW + tl.arange(0, 2 * BKW)  # the x words of the step, contiguous
            p_w = w_ptr + o_kw[None, :] * stride_wr + r_n[:, None]  # [BN, BKW] view of the [K/8, N] words
            p_x = x_ptr + r_m[:, None] * stride_xm + o_kx[None, :]
            if EVEN_K:
                words = tl.load(p_w)
                x_words = tl.load(p_x)
            else:
                words = tl.load(p_w, mask=(o_kw < K // 8)[None, :], other=0)
                x_words = tl.load(p_x, mask=(o_kx < K // 4)[None, :], other=0)
            x_lo, x_hi = tl.split(tl.reshape(x_words, (BLOCK_M, BKW, 2)))  # bytes 0-3 and 4-7 of each 8 k
            x_even = _bytes_of_pair(x_lo, x_hi, 0, EMULATE)[:, None, :]  # x of codes 8j, 8j+2, 8j+4, 8j+6
            x_odd = _bytes_of_pair(x_lo, x_hi, 1, EMULATE)[:, None, :]
            ones = tl.full(x_lo.shape, 0x01010101, tl.int32)
            minus_zero_x = -8 * dp4a(x_lo, ones, dp4a(x_hi, ones, tl.zeros_like(x_hi), EMULATE), EMULATE)
            part = dp4a((words & 0x0F0F0F0F)[None, :, :], x_even,
                        dp4a(((words >> 4) & 0x0F0F0F0F)[None, :, :], x_odd, minus_zero_x[:, None, :], EMULATE),
                        EMULATE)  # [BM, BN, BKW]: sum over the word's 8 k of x * (q - 8)
            if GROUP_K == 0:
                acc += part
            elif GROUP_K % BLOCK_K == 0:  # one group a step
                s = _load_scales(w_scale_ptr, (t // (GROUP_K // BLOCK_K)) * stride_sg, r_n, None, SCALE_PAIRS)
                acc += part.to(tl.float32) * s[None, :, None]
            else:  # several groups a step: one scale row per word row
                s = _load_scales(w_scale_ptr, (o_kw // (GROUP_K // 8))[None, :] * stride_sg, r_n[:, None],
                                 (o_kw < K // 8)[None, :], SCALE_PAIRS)
                acc += part.to(tl.float32) * s[None, :, :]
        total = tl.sum(acc, axis=2)  # [BM, BN]
    else:
        BKW: tl.constexpr = BLOCK_K // 4
        acc = tl.zeros((BLOCK_M, BLOCK_N, BKW), dtype=tl.int32)
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
            acc = dp4a(words[None, :, :], x_words[:, None, :], acc, EMULATE)
        total = tl.sum(acc, axis=2)  # [BM, BN]
    if USE_WS:
        p_ws = ws_ptr + (pid_k * M + o_m.to(tl.int64))[:, None] * N + o_n[None, :]
        tl.store(p_ws, total, mask=(o_m < M)[:, None] & (o_n < N)[None, :])
    else:
        x_scale = tl.load(x_scale_ptr + r_m)
        epilogue(total, x_scale, o_m, o_n, M, N, w_scale_ptr, 1, bias_ptr, out_ptr, stride_om, 1,
                 GROUP_K == 0, HAS_BIAS)


_GEMV = FastLauncher(dynamic_gemv_kernel)


@lru_cache(maxsize=4096)  # one dict lookup a call after the first per shape
def gemv_config(m: int, n: int, k: int, w4: bool, group_k: int, sm_count: int = 132) -> GemvConfig:
    """The H100 probe's winners (test/kernels/gpu_probe_dynamic_gemv.py, docs/kernels.md):
    A8W8 32 columns x 256 codes, 4 stages; A8W4 128 columns (32 from M = 3, for registers) x
    128 codes, 3 stages; the smallest K split that gives 0.9 programs an SM (A8W4 from M = 3:
    3.5, the M = 4 winners split further)."""
    if w4:
        block_n, block_k, stages = (128 if m <= 2 else 32), 128, 3
        target = 0.9 * sm_count if m <= 2 else 3.5 * sm_count
    else:
        block_n, block_k, stages, target = 32, 256, 4, 0.9 * sm_count
    k_steps = cdiv(k, block_k)
    programs = cdiv(n, block_n)
    split = 1
    while split < min(k_steps, 16) and programs * split < target:
        split += 1
    return GemvConfig(block_n, block_k, split, num_warps=4, num_stages=stages)


def dynamic_gemv(xq: torch.Tensor, x_scale: torch.Tensor, w: torch.Tensor, w_scale: torch.Tensor,
                 stride_sg: int, bias, out: torch.Tensor, n: int, k: int, w4: bool, group_k: int,
                 config: GemvConfig | None = None) -> torch.Tensor:
    """Runs the kernel on checked inputs (dynamic_gemm.py validates them): xq int8 [M, K]
    row-major with K % 16 == 0; w int8 [N, K] with unit K stride (A8W8) or int32 words [K/8, N]
    (A8W4); w_scale fp32 [N] (A8W8) or scale [K/G, N] with row stride ``stride_sg``."""
    m = xq.shape[0]
    if m == 0 or n == 0:
        return out
    c = config or gemv_config(m, n, k, w4, group_k)
    if c.block_k % 32 or c.block_k & (c.block_k - 1) or (w4 and group_k and group_k % c.block_k
                                                         and c.block_k % group_k):
        raise ValueError(f"gemv block_k={c.block_k} must be a power of two >= 32 that divides the group size "
                         f"or is a multiple of it")
    if bias is not None and not bias.is_contiguous():
        bias = bias.contiguous()
    x_words = xq.view(torch.int32)
    w_words = w if w4 else w.view(torch.int32)
    # the kernel reads scales at row * stride_sg + n: unit stride along N (and, for 16-bit group
    # scales read as int32 pairs, even row strides and offset)
    pairs = w4 and group_k and w_scale.dtype != torch.float32
    if w_scale.stride(-1) != 1 or (pairs and (stride_sg % 2 or w_scale.storage_offset() % 2)):
        w_scale = w_scale.contiguous()
        stride_sg = w_scale.stride(0) if w_scale.dim() == 2 else 0
    scale_pairs = 0
    if pairs:  # group scales as int32 pairs (see _load_scales)
        if n % 2 == 0:
            scale_pairs = 1 if w_scale.dtype == torch.float16 else 2
            w_scale = w_scale.view(torch.int32)
        else:
            w_scale = w_scale.float()
            stride_sg = n
    k_steps = cdiv(k, c.block_k)
    k_per_split = cdiv(k_steps, max(1, min(c.split_k, k_steps))) * c.block_k
    splits = cdiv(k, k_per_split)
    ws = None
    if splits > 1:
        ws = torch.empty((splits, m, n), dtype=torch.float32 if (w4 and group_k) else torch.int32, device=xq.device)
    x_scale = x_scale.reshape(m)
    _GEMV((cdiv(n, c.block_n), splits), (
        x_words, x_scale, w_words, w_scale, bias if bias is not None else x_scale, out, ws if ws is not None else out,
        m, n, k, k_per_split, x_words.stride(0), w_words.stride(0), stride_sg, out.stride(0)), dict(
        W4=w4, GROUP_K=group_k, HAS_BIAS=bias is not None, USE_WS=ws is not None, EVEN_K=k % c.block_k == 0,
        EVEN_N=n % c.block_n == 0, SCALE_PAIRS=scale_pairs,
        BLOCK_M=max(1, next_power_of_2(m)), BLOCK_N=c.block_n, BLOCK_K=c.block_k, NUM_STAGES=c.num_stages,
        EMULATE=INTERPRETED, num_warps=c.num_warps))
    if ws is not None:
        reduce_splits(ws, x_scale, w_scale, 1, bias, out, apply_b_scale=not group_k)
    return out
