"""A8W8 prefill GEMM (int8 or fp8) on TMA descriptors, persistent over the output tiles.

    y[m, n] = (sum_k xq[m, k] * w[n, k]) * x_scale[m] * w_scale[n] + bias[n]

The pointer GEMM of dynamic_gemm.py issues each operand tile as thousands of per-thread
cp.async copies, and a 128x128x128 int8 step leaves little issue slack for them next to the
wgmmas. Here both operands come through host-built TMA descriptors: one bulk copy a tile,
zero-filled past M, N and K (no masks, no address arithmetic in the loop), multi-buffered by
Triton's pipeliner over num_stages shared-memory stages.

Grid: min(tiles, programs) programs; program p computes output tiles p, p + programs, ...
(ordered in bands of GROUP_M row tiles so that neighbours share weight tiles in L2). With one
program an SM it is persistent: no CTA launch ramp between tiles. Each tile runs
cdiv(K, BLOCK_K) steps of
  x tile  [BLOCK_M, BLOCK_K] int8/fp8   BLOCK_M * BLOCK_K bytes (TMA)
  w tile  [BLOCK_N, BLOCK_K] int8/fp8   BLOCK_N * BLOCK_K bytes (TMA, K-major: wgmma's B order)
and one tl.dot [BM, BK] @ [BK, BN] into an int32 (int8: exact) or fp32 (fp8, promoted after every
step as in dynamic_gemm.py) accumulator; the epilogue (dynamic_epilogue.epilogue) applies the
scales and bias and stores [BM, BN] in the output dtype.
HBM bytes: K * N (weight, once per row band while it stays in L2) + M * K per column tile from L2
+ M * N * out bytes. No split-K: this kernel is for M large enough to fill the SMs with tiles.

Descriptors need 16-byte aligned bases and row strides with unit stride along K (``tma_ready``);
the launcher checks that before choosing this kernel.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from .dynamic_epilogue import epilogue
from .launch import FastLauncher, KernelCall, cdiv
from .reduce import tile_coordinates

GROUP_M = 8


@triton.jit
def _tma_gemm_kernel(
    a_desc, b_desc, a_scale_ptr, b_scale_ptr, bias_ptr, c_ptr,
    M, N, K, PROGRAMS, stride_bs_n, stride_cm, stride_cn,
    FP8: tl.constexpr, HAS_BIAS: tl.constexpr, FLATTEN: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    tiles = tl.cdiv(M, BLOCK_M) * tl.cdiv(N, BLOCK_N)
    k_steps = tl.cdiv(K, BLOCK_K)
    # FLATTEN: Triton pipelines the tile and K loops as one, so the next tile's loads are in flight
    # during this tile's epilogue
    for tile in tl.range(tl.program_id(0), tiles, PROGRAMS, flatten=FLATTEN):
        i_m, i_n = tile_coordinates(tile, M, N, BLOCK_M, BLOCK_N, GROUP_M)
        off_m = i_m * BLOCK_M
        off_n = i_n * BLOCK_N
        if FP8:
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        else:
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
        for i_k in range(k_steps):
            b_a = a_desc.load([off_m, i_k * BLOCK_K])  # [BM, BK]
            b_b = b_desc.load([off_n, i_k * BLOCK_K])  # [BN, BK]
            if FP8:
                acc = tl.dot(b_a, tl.trans(b_b), acc, max_num_imprecise_acc=BLOCK_K)
            else:
                acc = tl.dot(b_a, tl.trans(b_b), acc, out_dtype=tl.int32)
        o_m = off_m + tl.arange(0, BLOCK_M)
        o_n = off_n + tl.arange(0, BLOCK_N)
        b_sa = tl.load(a_scale_ptr + o_m, mask=o_m < M, other=0.0)
        epilogue(acc, b_sa, o_m, o_n, M, N, b_scale_ptr, stride_bs_n, bias_ptr, c_ptr, stride_cm, stride_cn,
                 True, HAS_BIAS)


_TMA_GEMM = FastLauncher(_tma_gemm_kernel)


def tma_ready(t: torch.Tensor) -> bool:
    """Whether a 2-D int8/fp8 operand [rows, K] can back a TMA descriptor: unit stride along K,
    16-byte aligned base and row stride."""
    return t.dim() == 2 and t.stride(1) == 1 and t.stride(0) % 16 == 0 and t.data_ptr() % 16 == 0


class TmaGemmCall:
    """One planned launch of the TMA GEMM; call with the pointer GEMM's tensors (xq [M, K], x_scale [M],
    w [N, K], w_scale [N], bias or x_scale, out [M, N], and its split-K workspace slot, unused here).
    The descriptors are built per call (their bases are new tensors)."""

    __slots__ = ("call", "block_a", "block_b")

    def __init__(self, m: int, n: int, k: int, stride_bs_n: int, out_strides: tuple, fp8: bool, has_bias: bool,
                 block_m: int, block_n: int, block_k: int, num_warps: int, num_stages: int, programs: int,
                 flatten: bool = True):
        tiles = cdiv(m, block_m) * cdiv(n, block_n)
        grid = min(tiles, programs)
        meta = dict(FP8=fp8, HAS_BIAS=has_bias, FLATTEN=flatten, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, GROUP_M=GROUP_M,
                    num_warps=num_warps, num_stages=num_stages)
        self.call = KernelCall(_TMA_GEMM, (grid,), (m, n, k, grid, stride_bs_n, *out_strides), meta)
        self.block_a, self.block_b = [block_m, block_k], [block_n, block_k]

    def __call__(self, tensors: tuple) -> None:
        xq, x_scale, w, w_scale, bias, out = tensors[:6]
        self.call((TensorDescriptor.from_tensor(xq, self.block_a), TensorDescriptor.from_tensor(w, self.block_b),
                   x_scale, w_scale, bias, out))


_SM_COUNTS: dict = {}


def sm_count(device: torch.device) -> int:
    """Programs for a persistent launch: the device's SM count (2 under the interpreter on CPU, so that tests
    run several tiles a program)."""
    key = (device.type, device.index)
    if key not in _SM_COUNTS:
        _SM_COUNTS[key] = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 2
    return _SM_COUNTS[key]
