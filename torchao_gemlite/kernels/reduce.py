"""Tile ordering and output epilogue shared by the kernels, and the deterministic split-K reduction.

With SPLIT_K == 1 a program adds the bias and writes its tile in the output dtype.
With SPLIT_K > 1 each program writes its fp32 partial tile to a workspace
[SPLIT_K, M, N]; a second launch sums the partials in the fixed order 0..SPLIT_K-1,
adds the bias and casts. No atomics: the result is bit-identical from run to run.
Extra traffic: 2 * SPLIT_K * M * N * 4 bytes, small next to the weight at decode sizes.
"""

import torch
import triton
import triton.language as tl

from .launch import FastLauncher, KernelCall, cdiv


@triton.jit
def tile_coordinates(pid, M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    """(row tile, column tile) of program ``pid``, ordered in bands of GROUP_M row tiles so that
    programs running at the same time share weight (column) tiles in L2."""
    tiles_m = tl.cdiv(M, BLOCK_M)
    tiles_n = tl.cdiv(N, BLOCK_N)
    per_band = GROUP_M * tiles_n
    first_m = (pid // per_band) * GROUP_M
    band_rows = tl.minimum(tiles_m - first_m, GROUP_M)
    return first_m + (pid % per_band) % band_rows, (pid % per_band) // band_rows


@triton.jit
def store_tile(result, offs_m, offs_n, M, N, out_ptr, stride_om, bias_ptr, ws_ptr, pid_k,
               HAS_BIAS: tl.constexpr, USE_WORKSPACE: tl.constexpr):
    """Writes an fp32 [BLOCK_M, BLOCK_N] tile: finished output, or a split-K partial."""
    mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    if not USE_WORKSPACE:
        if HAS_BIAS:
            bias = tl.load(bias_ptr + offs_n, mask=offs_n < N, other=0.0).to(tl.float32)
            result = result + bias[None, :]
        out = out_ptr + offs_m[:, None] * stride_om + offs_n[None, :]
        tl.store(out, result.to(out_ptr.dtype.element_ty), mask=mask)
    else:
        part = ws_ptr + pid_k * M * N + offs_m[:, None] * N + offs_n[None, :]
        tl.store(part, result, mask=mask)


@triton.jit
def _splitk_reduce_kernel(ws_ptr, bias_ptr, out_ptr, M, N, stride_om,
                          HAS_BIAS: tl.constexpr, SPLIT_K: tl.constexpr, BLOCK: tl.constexpr):
    # Grid: cdiv(M * N, BLOCK). Reads SPLIT_K * BLOCK fp32, writes BLOCK outputs.
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M * N
    acc = tl.load(ws_ptr + offs, mask=mask, other=0.0)
    for s in tl.static_range(1, SPLIT_K):
        acc += tl.load(ws_ptr + s * M * N + offs, mask=mask, other=0.0)
    n = offs % N
    if HAS_BIAS:
        acc += tl.load(bias_ptr + n, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + (offs // N) * stride_om + n, acc.to(out_ptr.dtype.element_ty), mask=mask)


_REDUCE = FastLauncher(_splitk_reduce_kernel)


def splitk_workspace(split_k: int, m: int, n: int, device) -> torch.Tensor | None:
    """The fp32 partials buffer of a split-K launch (None without split-K)."""
    return torch.empty((split_k, m, n), dtype=torch.float32, device=device) if split_k > 1 else None


def splitk_reduce_call(split_k: int, m: int, n: int, has_bias: bool, out_stride: int) -> KernelCall:
    """The reduction launch of a split-K call; run it with (workspace, bias or workspace, out)."""
    block = 1024
    return KernelCall(_REDUCE, (cdiv(m * n, block),), (m, n, out_stride),
                      dict(HAS_BIAS=has_bias, SPLIT_K=split_k, BLOCK=block, num_warps=4))


def splitk_reduce(workspace: torch.Tensor, bias: torch.Tensor | None, out: torch.Tensor) -> None:
    split_k, m, n = workspace.shape
    splitk_reduce_call(split_k, m, n, bias is not None, out.stride(0))(
        (workspace, bias if bias is not None else workspace, out))
