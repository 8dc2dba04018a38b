"""A8W4 decode and small batches on the int8 tensor cores: y = x_scale * (xq @ (q - 8).T scaled per group),
the packed 4-bit weight streamed once (any M below prefill, in 16-row M tiles as in mma_gemv.py; the A8W4
route sends it M <= 16 only: at M = 24, 32 it was 0.93-1.22x the int8 GEMM, docs/kernels.md).

The int8 counterpart of mma_gemv.py (same thread mapping, same words [K/8, N] int32, N contiguous):
``mma.sync.m16n8k32`` with the weight's codes as unsigned bytes (A) and the per-token int8 x as signed
bytes (B), int32 accumulation (mma_sync.py). A thread owns one word row of 4 adjacent columns in every
32-code sub-block (word row t of the quad: codes 8t..8t+7); its even codes (w & 0x0F0F0F0F) are four
bytes for MMA columns 4t..4t+3 and its odd codes ((w >> 4) & 0x0F0F0F0F) four bytes for columns
16+4t..: 3 instructions for 8 codes, and one MMA takes a whole sub-block of two output columns. x's
bytes follow the same K permutation (one PRMT each for the even and the odd bytes of an 8-byte load).
The zero 8 costs one more MMA per sub-block: an all-ones A gives sum(x), and each group's int32 sum is
exact: sum x (q - 8) = sum x q - 8 sum x; it is scaled by the group's scale in fp32 once per group
(per-channel: once at the end), and by x_scale[m] (and the bias added) when the output is written.
HBM bytes: N * K / 2 (weights; M tiles: the others from L2) + the scales; x (K bytes a row) is read from L2.
Grid (cdiv(N, 32 * WARPS_N) * M_TILES, SPLIT_K), warps along N and K as in mma_gemv.py; split-K partials
(fp32, weight scales applied) go to dynamic_epilogue.reduce_splits. Deterministic.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .configs import LaunchConfig, decode_config
from .dynamic_epilogue import reduce_splits
from .launch import INTERPRETED, FastLauncher, KernelCall
from .mma_gemv import (_as_f32, _by_column, _join4, _step_loads, _store_rows, _thread_lanes, _tile_of, mma_launch,
                       mma_operands_aligned)
from .mma_sync import mma_16832_u8s8
from .pdl import dependent_meta, launch_dependents, wait_for_prior


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
def _sub_block(w, x_words, a00, a01, a02, a03, a10, a11, a12, a13, xs0, xs1, xs2, xs3, ones,
               EMULATE: tl.constexpr):
    """One 32-code sub-block against one 8-row batch tile: both column tiles and the x-sum. ``w``: the
    thread's word of each of its 4 columns; ``x_words``: its 8 x bytes as two words."""
    x_lo, x_hi = x_words
    b0 = _bytes_of_pair(x_lo, x_hi, 0, EMULATE)  # x at the even codes' k
    b1 = _bytes_of_pair(x_lo, x_hi, 1, EMULATE)
    even0, even1, even2, even3 = w[0] & 0x0F0F0F0F, w[1] & 0x0F0F0F0F, w[2] & 0x0F0F0F0F, w[3] & 0x0F0F0F0F
    odd0, odd1 = (w[0] >> 4) & 0x0F0F0F0F, (w[1] >> 4) & 0x0F0F0F0F
    odd2, odd3 = (w[2] >> 4) & 0x0F0F0F0F, (w[3] >> 4) & 0x0F0F0F0F
    a00, a01, a02, a03 = mma_16832_u8s8(even0, even1, odd0, odd1, b0, b1, a00, a01, a02, a03, EMULATE)
    a10, a11, a12, a13 = mma_16832_u8s8(even2, even3, odd2, odd3, b0, b1, a10, a11, a12, a13, EMULATE)
    xs0, xs1, xs2, xs3 = mma_16832_u8s8(ones, ones, ones, ones, b0, b1, xs0, xs1, xs2, xs3, EMULATE)
    return a00, a01, a02, a03, a10, a11, a12, a13, xs0, xs1, xs2, xs3


@triton.jit
def _group_sums(a00, a01, a02, a03, a10, a11, a12, a13, xs0, xs1):
    """The group's exact int32 sums x (q - 8), 8 [T] values ordered as mma_gemv._by_column's."""
    sums = _by_column(a00, a01, a02, a03, a10, a11, a12, a13)
    return (sums[0] - 8 * xs0, sums[1] - 8 * xs0, sums[2] - 8 * xs0, sums[3] - 8 * xs0,
            sums[4] - 8 * xs1, sums[5] - 8 * xs1, sums[6] - 8 * xs1, sums[7] - 8 * xs1)


@triton.jit
def _add_scaled(tot, sums, scale):
    """tot + sums * scale per column (8 [T] fp32 values, ``_by_column``'s order; scale: 4, one a column)."""
    return (tot[0] + sums[0].to(tl.float32) * scale[0], tot[1] + sums[1].to(tl.float32) * scale[1],
            tot[2] + sums[2].to(tl.float32) * scale[2], tot[3] + sums[3].to(tl.float32) * scale[3],
            tot[4] + sums[4].to(tl.float32) * scale[0], tot[5] + sums[5].to(tl.float32) * scale[1],
            tot[6] + sums[6].to(tl.float32) * scale[2], tot[7] + sums[7].to(tl.float32) * scale[3])


@triton.jit
def _add_ints(tot, sums):
    return (tot[0] + sums[0], tot[1] + sums[1], tot[2] + sums[2], tot[3] + sums[3],
            tot[4] + sums[4], tot[5] + sums[5], tot[6] + sums[6], tot[7] + sums[7])


@triton.jit
def dynamic_mma_gemv_kernel(x_ptr, x_scale_ptr, w_ptr, w_scale_ptr, bias_ptr, out_ptr, ws_ptr,
                            M, N, K, steps_per_split, m_tiles, stride_xm, stride_wk, stride_sg, stride_om,
                            GROUP_K: tl.constexpr, HAS_BIAS: tl.constexpr, BATCH_TILES: tl.constexpr,
                            WARPS_N: tl.constexpr, WARPS_K: tl.constexpr, BLOCK_K: tl.constexpr,
                            EVEN_K: tl.constexpr, EVEN_N: tl.constexpr, USE_WORKSPACE: tl.constexpr,
                            NUM_STAGES: tl.constexpr, EMULATE: tl.constexpr, PDL: tl.constexpr = False):
    # x_ptr: int32 words of xq [M, K/4] (stride_xm in words); GROUP_K: the group size (a divisor of
    # BLOCK_K, multiple of 32), 0 for per-channel scales ([N], or [1, N]); EVEN_K: as in mma_gemv.py.
    T: tl.constexpr = 32 * WARPS_N * WARPS_K
    SUBS: tl.constexpr = BLOCK_K // 32
    GROUP_SUBS: tl.constexpr = SUBS if GROUP_K == 0 else GROUP_K // 32
    tl.static_assert(BATCH_TILES == 1 or BATCH_TILES == 2)
    pid_n, m_first = _tile_of(tl.program_id(0), m_tiles)  # past M = 16: 16-row M tiles, as in mma_gemv.py
    pid_k = tl.program_id(1)
    wait_for_prior(PDL)  # the activation codes' kernel (pdl.py)

    g, t, warp_k, n0 = _thread_lanes(pid_n, T, WARPS_N)  # the thread's columns: n0..n0+3, n0 = 4 g
    if not EVEN_N:
        n0 = tl.minimum(n0, N - 4)  # N is a multiple of 4: a valid 16-byte row piece, never stored
    ones = tl.full((T,), 0x01010101, tl.int32)
    k_first = (pid_k * steps_per_split * WARPS_K + warp_k) * BLOCK_K  # [T]
    K_STRIDE: tl.constexpr = WARPS_K * BLOCK_K
    GROUP_STEP: tl.constexpr = GROUP_K if GROUP_K != 0 else K_STRIDE
    S_STEP: tl.constexpr = K_STRIDE // GROUP_STEP  # scale rows a step (per-channel: unused)
    w_base = w_ptr + (k_first // 8 + t) * stride_wk + n0  # word row t of each sub-block
    x_col = (k_first + 8 * t) // 4  # the thread's 8 bytes of a sub-block: codes 8t..8t+7 of its quad
    x_base = x_ptr + tl.minimum(m_first + g, M - 1) * stride_xm + x_col
    x_base2 = x_base
    if BATCH_TILES == 2:
        x_base2 = x_ptr + tl.minimum(m_first + g + 8, M - 1) * stride_xm + x_col
    S_DTYPE: tl.constexpr = w_scale_ptr.dtype.element_ty
    SCALE_WORDS: tl.constexpr = 4 if S_DTYPE == tl.float32 else 2
    S_PER_WORD: tl.constexpr = 4 // SCALE_WORDS
    stride_sw = stride_sg // S_PER_WORD
    s_base = w_scale_ptr.to(tl.pointer_type(tl.int32))
    if GROUP_K != 0:
        s_base += ((k_first // GROUP_K) * stride_sg + n0) // S_PER_WORD
    PREFETCH: tl.constexpr = NUM_STAGES == 2
    PRED: tl.constexpr = PREFETCH or not EVEN_K
    live = tl.full((T,), 1, tl.int32)

    zf = tl.zeros((T,), dtype=tl.float32)
    z = tl.zeros((T,), dtype=tl.int32)
    # fp32 sums for m = 2t, 2t + 1 (and + 8) at the thread's 4 columns, group scales applied; per-channel: int32
    tot = (zf, zf, zf, zf, zf, zf, zf, zf)
    tot_2 = tot
    ints = (z, z, z, z, z, z, z, z)
    ints_2 = ints
    # NUM_STAGES = 2: every load of a step issued a step ahead (mma_gemv.py); 1: at the top of its own step
    if PREFETCH:
        ahead = _step_loads(w_base, x_base, x_base2, s_base, s_base, k_first, live, K, stride_wk, stride_sw, 4, SUBS,
                            GROUP_K, 0, 0, BATCH_TILES, False, SCALE_WORDS, EVEN_K, PRED, EMULATE, True)
    for step in tl.range(0, steps_per_split, num_stages=1):
        k_step = k_first + step * K_STRIDE
        if PREFETCH:
            loads = ahead
            nxt = step + 1
            ahead = _step_loads(w_base + nxt * (K_STRIDE // 8) * stride_wk, x_base + nxt * (K_STRIDE // 4),
                                x_base2 + nxt * (K_STRIDE // 4), s_base + nxt * S_STEP * stride_sw, s_base,
                                k_step + K_STRIDE, live * (nxt < steps_per_split).to(tl.int32), K, stride_wk,
                                stride_sw, 4, SUBS, GROUP_K, 0, 0, BATCH_TILES, False, SCALE_WORDS, EVEN_K, PRED,
                                EMULATE, True)
        else:
            loads = _step_loads(w_base + step * (K_STRIDE // 8) * stride_wk, x_base + step * (K_STRIDE // 4),
                                x_base2 + step * (K_STRIDE // 4), s_base + step * S_STEP * stride_sw, s_base, k_step,
                                live, K, stride_wk, stride_sw, 4, SUBS, GROUP_K, 0, 0, BATCH_TILES, False,
                                SCALE_WORDS, EVEN_K, PRED, EMULATE, True)
        words, xs, xs2, scales, _ = loads
        for grp in tl.static_range(SUBS // GROUP_SUBS):
            a00, a01, a02, a03, a10, a11, a12, a13, xs0, xs1, xs2_, xs3 = z, z, z, z, z, z, z, z, z, z, z, z
            b00, b01, b02, b03, b10, b11, b12, b13, ys0, ys1, ys2, ys3 = z, z, z, z, z, z, z, z, z, z, z, z
            for sub in tl.static_range(GROUP_SUBS):
                a00, a01, a02, a03, a10, a11, a12, a13, xs0, xs1, xs2_, xs3 = _sub_block(
                    words[grp * GROUP_SUBS + sub], xs[grp * GROUP_SUBS + sub], a00, a01, a02, a03, a10, a11, a12,
                    a13, xs0, xs1, xs2_, xs3, ones, EMULATE)
                if BATCH_TILES == 2:
                    b00, b01, b02, b03, b10, b11, b12, b13, ys0, ys1, ys2, ys3 = _sub_block(
                        words[grp * GROUP_SUBS + sub], xs2[grp * GROUP_SUBS + sub], b00, b01, b02, b03, b10, b11,
                        b12, b13, ys0, ys1, ys2, ys3, ones, EMULATE)
            sums = _group_sums(a00, a01, a02, a03, a10, a11, a12, a13, xs0, xs1)
            sums_2 = _group_sums(b00, b01, b02, b03, b10, b11, b12, b13, ys0, ys1)
            if GROUP_K == 0:
                ints = _add_ints(ints, sums)
                if BATCH_TILES == 2:
                    ints_2 = _add_ints(ints_2, sums_2)
            else:  # the group's scale, once per column
                scale = _as_f32(scales[grp], S_DTYPE)
                tot = _add_scaled(tot, sums, scale)
                if BATCH_TILES == 2:
                    tot_2 = _add_scaled(tot_2, sums_2, scale)

    if GROUP_K == 0:
        col_scale = (tl.load(w_scale_ptr + n0).to(tl.float32), tl.load(w_scale_ptr + n0 + 1).to(tl.float32),
                     tl.load(w_scale_ptr + n0 + 2).to(tl.float32), tl.load(w_scale_ptr + n0 + 3).to(tl.float32))
        tot = _add_scaled(tot, ints, col_scale)
        tot_2 = _add_scaled(tot_2, ints_2, col_scale)
    tot0 = _join4(tot[0], tot[1], tot[2], tot[3])
    tot1 = _join4(tot[4], tot[5], tot[6], tot[7])
    tot0_2 = _join4(tot_2[0], tot_2[1], tot_2[2], tot_2[3])
    tot1_2 = _join4(tot_2[4], tot_2[5], tot_2[6], tot_2[7])
    launch_dependents(PDL and USE_WORKSPACE)  # the split reduction may start
    _store_rows(tot0, tot1, 0, m_first, M, N, pid_n, pid_k, x_scale_ptr, out_ptr, stride_om, bias_ptr, ws_ptr,
                WARPS_N, WARPS_K, True, HAS_BIAS, USE_WORKSPACE)
    if BATCH_TILES == 2:
        _store_rows(tot0_2, tot1_2, 1, m_first, M, N, pid_n, pid_k, x_scale_ptr, out_ptr, stride_om, bias_ptr, ws_ptr,
                    WARPS_N, WARPS_K, True, HAS_BIAS, USE_WORKSPACE)


_MMA = FastLauncher(dynamic_mma_gemv_kernel)


def dynamic_mma_call(m: int, n: int, k: int, group_k: int, stride_xw: int, stride_qk: int, stride_sg: int,
                     stride_om: int, has_bias: bool, config: LaunchConfig | None = None,
                     pdl: bool = False) -> tuple[KernelCall, int]:
    """The launch and its K split (> 1: fp32 partials to a workspace [split, M, N] for reduce_splits without
    weight scales); run it with (x_words, x_scale [M], qdata, scale, bias or x_scale, out, workspace or out).
    By default configs.decode_config's launch for every M (32 columns, 8 warps along K, 128-code steps, loads a
    step ahead): H100 sweep (test/kernels/gpu_probe_dynamic_mma.py, M = 1, 4, 16) within 0.94-0.95 of each
    shape's best launch in geomean, where the earlier choice (the widest CTA with 16 warps, and 64 columns with
    8 warps for two batch tiles, loads at each step's top) ran 2.1x slower than the best at M = 16 on 8192x8192.
    ``pdl``: launched as the dependent of the activation quantization (pdl.py)."""
    c = config or decode_config(n, k, group_k or k)
    if c.kernel != "mma":
        raise ValueError(f"the A8W4 mma kernel takes an \"mma\" config, got kernel={c.kernel!r}")
    if c.num_stages not in (1, 2):
        raise ValueError(f"mma config num_stages={c.num_stages} is not supported: 1 (a step's loads at its top) or 2 "
                         "(and the next step's: mma_gemv.py)")
    launch = mma_launch(c, m, n, k, group_k)
    return KernelCall(_MMA, launch.grid, (m, n, k, launch.steps_per_split, launch.m_tiles, stride_xw, stride_qk,
                                          stride_sg, stride_om),
                      dict(launch.meta, GROUP_K=group_k, HAS_BIAS=has_bias and launch.split == 1,
                           NUM_STAGES=c.num_stages, EMULATE=INTERPRETED, **dependent_meta(pdl))), launch.split


def dynamic_mma_gemv(xq: torch.Tensor, x_scale: torch.Tensor, qdata: torch.Tensor, scale: torch.Tensor,
                     stride_sg: int, bias, out: torch.Tensor, n: int, k: int, group_k: int,
                     config: LaunchConfig | None = None) -> torch.Tensor:
    """Runs the kernel on checked inputs (dynamic_gemm.py validates them): xq int8 [M, K] row-major,
    M < 129 (16-row M tiles past 16); qdata int32 words [K/8, N] with unit stride along N; scale [K/G, N]
    (per-channel: ``group_k`` 0, one row) with row stride ``stride_sg``. The launch shape is mma_gemv's at M <= 8
    (configs.decode_config: 32-column warps along K, 128-code steps, split-K to fill the SMs)."""
    m = xq.shape[0]
    if m == 0 or n == 0:
        return out
    if scale.stride(-1) != 1 or not mma_operands_aligned(qdata, scale, None):  # its vector loads: 4 columns
        scale = scale.contiguous()
        stride_sg = scale.stride(0) if scale.dim() == 2 else 0
    if not mma_operands_aligned(qdata, scale, None):
        raise ValueError("qdata must be 16-byte aligned with N and its row stride multiples of 4 for the A8W4 mma "
                         f"kernel, got N={qdata.shape[1]}, stride {qdata.stride(0)}: use the int8 GEMM route")
    if bias is not None and not bias.is_contiguous():
        bias = bias.contiguous()
    x_words = xq.view(torch.int32)
    x_scale = x_scale.reshape(m)
    mma, split = dynamic_mma_call(m, n, k, group_k, x_words.stride(0), qdata.stride(0), stride_sg, out.stride(0),
                                  bias is not None, config)
    ws = torch.empty((split, m, n), dtype=torch.float32, device=xq.device) if split > 1 else None
    mma((x_words, x_scale, qdata, scale, bias if bias is not None else x_scale, out, ws if ws is not None else out))
    if ws is not None:  # weight scales are applied: x_scale and the bias only
        reduce_splits(ws, x_scale, x_scale, 1, bias, out, apply_b_scale=False)
    return out
