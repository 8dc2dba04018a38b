"""GEMM for dynamically quantized activations on TMA descriptors: A8W8 (int8 or fp8) and A8W4's
int8 codes with group scales.

    y[m, n] = (sum_k xq[m, k] * w[n, k]) * x_scale[m] * w_scale[n] + bias[n]                    (per-channel)
    y[m, n] = x_scale[m] * sum_g w_scale[g, n] * (sum_{k in g} xq[m, k] * w[n, k]) + bias[n]   (groups)

The pointer GEMM of dynamic_gemm.py issues each operand tile as per-thread cp.async copies with
their address arithmetic and masks. Here both operands come through host-built TMA descriptors:
one bulk copy a tile, zero-filled past M, N and K (no masks in the loop), multi-buffered by
Triton's pipeliner over num_stages shared-memory stages.

Grid: (output tiles [BLOCK_M, BLOCK_N], SPLIT_K), tiles ordered in bands of GROUP_M row tiles so that
neighbours share weight tiles in L2. Program (tile, s) runs the BLOCK_K steps of its K range
[s * K_PER_SPLIT, (s + 1) * K_PER_SPLIT), each
  x tile  [BLOCK_M, BLOCK_K] int8/fp8   BLOCK_M * BLOCK_K bytes (TMA)
  w tile  [BLOCK_N, BLOCK_K] int8/fp8   BLOCK_N * BLOCK_K bytes (TMA, K-major: the order wgmma wants)
  groups: one scale row [BLOCK_N] (BLOCK_K == GROUP_K, one group a step)
and one tl.dot: [BM, BK] @ [BK, BN], or with SWAP_AB [BN, BK] @ [BK, BM] (the weight tile is the
wgmma's 64-row operand, so a small batch pads to BLOCK_M = 16, not 64), into an int32 accumulator
(int8 per-channel: exact), an fp32 one (fp8, promoted after every step as in dynamic_gemm.py), or for
groups a fresh int32 product scaled into the fp32 accumulator. Scaling the previous group's product
while the next group's wgmma runs (a one-step lag) was 1.1-8x slower on the H100: the extra int32
tile spilled. Without a split the epilogue (dynamic_epilogue.epilogue) applies the scales and bias and
stores [BM, BN] in the output dtype; with one, each program writes its raw partial (int32 when the
whole accumulation is integer, else fp32) to a workspace [SPLIT_K, M, N] that
dynamic_epilogue.reduce_splits sums in a fixed order (deterministic).
HBM bytes: K * N (weight, once per band of GROUP_M row tiles while it stays in L2) + M * K (x, from L2
for every column tile) + M * N * out bytes (+ 2 * SPLIT_K * M * N * 4 through the workspace).
Descriptors need 16-byte aligned bases and row strides, unit stride along K (``launch.tma_ready``); the
launchers check that before choosing this kernel.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from .dynamic_epilogue import epilogue, zero_accumulator
from .launch import FastLauncher, KernelCall, cdiv
from .pdl import dependent_meta, launch_dependents, wait_for_prior
from .reduce import tile_coordinates

GROUP_M = 8


@triton.jit
def _tma_gemm_kernel(
    a_desc, b_desc, a_scale_ptr, b_scale_ptr, bias_ptr, c_ptr, ws_ptr,
    M, N, K, K_PER_SPLIT, stride_bs_g, stride_bs_n, stride_cm, stride_cn,
    FP8: tl.constexpr, GROUP_K: tl.constexpr, HAS_BIAS: tl.constexpr, USE_WS: tl.constexpr, SWAP_AB: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    PDL: tl.constexpr = False,
):
    wait_for_prior(PDL)  # the activation codes' kernel (pdl.py)
    i_m, i_n = tile_coordinates(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)
    off_m = i_m * BLOCK_M
    off_n = i_n * BLOCK_N
    o_m = off_m + tl.arange(0, BLOCK_M)
    o_n = off_n + tl.arange(0, BLOCK_N)
    r_n = o_n % N  # group scales of columns past N: any valid column, never stored
    acc = zero_accumulator(BLOCK_M, BLOCK_N, SWAP_AB, FP8 or GROUP_K > 0)
    k_lo = tl.program_id(1) * K_PER_SPLIT
    for k0 in range(k_lo, tl.minimum(k_lo + K_PER_SPLIT, K), BLOCK_K):
        b_a = a_desc.load([off_m, k0])  # [BM, BK]
        b_b = b_desc.load([off_n, k0])  # [BN, BK]
        if SWAP_AB:  # [BN, BK] @ [BK, BM] -> [BN, BM]
            if FP8:
                acc = tl.dot(b_b, tl.trans(b_a), acc, max_num_imprecise_acc=BLOCK_K)
            else:
                acc = tl.dot(b_b, tl.trans(b_a), acc, out_dtype=tl.int32)
        elif FP8:
            acc = tl.dot(b_a, tl.trans(b_b), acc, max_num_imprecise_acc=BLOCK_K)
        elif GROUP_K == 0:
            acc = tl.dot(b_a, tl.trans(b_b), acc, out_dtype=tl.int32)
        else:  # never swapped (the launcher's choice)
            b_p = tl.dot(b_a, tl.trans(b_b), out_dtype=tl.int32)
            b_s = tl.load(b_scale_ptr + (k0 // GROUP_K) * stride_bs_g + r_n * stride_bs_n).to(tl.float32)
            acc += b_p.to(tl.float32) * b_s[None, :]
    launch_dependents(PDL and USE_WS)  # the split reduction may start
    if SWAP_AB:
        acc = tl.trans(acc)  # [BN, BM] -> [BM, BN]
    if USE_WS:
        p_ws = ws_ptr + (tl.program_id(1) * M + o_m.to(tl.int64))[:, None] * N + o_n[None, :]
        tl.store(p_ws, acc, mask=(o_m < M)[:, None] & (o_n < N)[None, :])
    else:
        b_sa = tl.load(a_scale_ptr + o_m, mask=o_m < M, other=0.0)
        epilogue(acc, b_sa, o_m, o_n, M, N, b_scale_ptr, stride_bs_n, bias_ptr, c_ptr, stride_cm, stride_cn,
                 GROUP_K == 0, HAS_BIAS)


_TMA_GEMM = FastLauncher(_tma_gemm_kernel)


class TmaGemmCall:
    """One planned launch of the TMA GEMM; call with the pointer GEMM's tensors (xq [M, K], x_scale [M],
    w [N, K], w_scale [N] or group scales [K / G, N], bias or x_scale, out [M, N], workspace
    [splits, M, N] or out). ``splits`` (at most ``split_k``, on group boundaries) and ``ws_dtype`` say
    what workspace the caller allocates and reduces (dynamic_epilogue.reduce_splits) when splits > 1.
    The descriptors are built per call (their bases are new tensors)."""

    __slots__ = ("call", "block_a", "block_b", "splits", "ws_dtype")

    def __init__(self, m: int, n: int, k: int, stride_bs_g: int, stride_bs_n: int, out_strides: tuple, fp8: bool,
                 group_k: int, has_bias: bool, block_m: int, block_n: int, block_k: int, num_warps: int,
                 num_stages: int, split_k: int = 1, swap_ab: bool = False, pdl: bool = False):
        if group_k and block_k != group_k:
            raise ValueError(f"the TMA GEMM takes one group a step: BLOCK_K={block_k} must equal the group {group_k}")
        if group_k and swap_ab:
            raise ValueError("the TMA GEMM does not swap operands for group-wise scales: use swap_ab=False")
        k_steps = cdiv(k, block_k)
        k_per_split = cdiv(k_steps, max(1, min(split_k, k_steps))) * block_k  # a whole number of steps (groups)
        self.splits = cdiv(k, k_per_split)  # never an empty split
        self.ws_dtype = torch.int32 if not (fp8 or group_k) else torch.float32
        meta = dict(FP8=fp8, GROUP_K=group_k, HAS_BIAS=has_bias, USE_WS=self.splits > 1, SWAP_AB=swap_ab,
                    BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, GROUP_M=GROUP_M, num_warps=num_warps,
                    num_stages=num_stages, **dependent_meta(pdl))
        grid = (cdiv(m, block_m) * cdiv(n, block_n), self.splits)
        self.call = KernelCall(_TMA_GEMM, grid, (m, n, k, k_per_split, stride_bs_g, stride_bs_n, *out_strides), meta)
        self.block_a, self.block_b = [block_m, block_k], [block_n, block_k]

    def __call__(self, tensors: tuple) -> None:
        xq, x_scale, w, w_scale, bias, out, ws = tensors
        self.call((TensorDescriptor.from_tensor(xq, self.block_a), TensorDescriptor.from_tensor(w, self.block_b),
                   x_scale, w_scale, bias, out, ws))
