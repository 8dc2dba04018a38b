"""Tile ordering and output epilogue shared by the kernels, and the deterministic split-K reduction.

With SPLIT_K == 1 a program adds the bias and writes its tile in the output dtype.
With SPLIT_K > 1 each program writes its fp32 partial tile to a workspace
[SPLIT_K, M, N], then takes a ticket from its tile's counter (one atomic add; the
counters are zeroed per launch). The program that draws the last ticket sums the
partials in the fixed order 0..SPLIT_K-1, adds the bias and casts: no second launch,
and the result is bit-identical from run to run whichever program finishes last.
With FUSED_REDUCE off the sum is left to a second launch (_splitk_reduce_kernel).
Extra traffic: 2 * SPLIT_K * M * N * 4 bytes, small next to the weight at decode sizes.
"""

import torch
import triton
import triton.language as tl


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
def _store_output(result, offs_m, offs_n, mask, N, out_ptr, stride_om, bias_ptr, HAS_BIAS: tl.constexpr):
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_n, mask=offs_n < N, other=0.0).to(tl.float32)
        result = result + bias[None, :]
    out = out_ptr + offs_m[:, None] * stride_om + offs_n[None, :]
    tl.store(out, result.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def store_tile(result, offs_m, offs_n, M, N, out_ptr, stride_om, bias_ptr, ws_ptr, counter_ptr, pid_k,
               HAS_BIAS: tl.constexpr, USE_WORKSPACE: tl.constexpr, FUSED_REDUCE: tl.constexpr):
    """Writes an fp32 [BLOCK_M, BLOCK_N] tile: the finished output, or a split-K partial
    (and, from the program that completes the tile, the reduced output). ``counter_ptr``
    points at this tile's zeroed int32 counter."""
    mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    if not USE_WORKSPACE:
        _store_output(result, offs_m, offs_n, mask, N, out_ptr, stride_om, bias_ptr, HAS_BIAS)
    else:
        partials = ws_ptr + offs_m[:, None] * N + offs_n[None, :]
        tl.store(partials + pid_k * M * N, result, mask=mask)
        if FUSED_REDUCE:
            tl.debug_barrier()  # every thread's partial is written before the ticket (release, gpu scope)
            ticket = tl.atomic_add(counter_ptr, 1, sem="acq_rel")
            split_k = tl.num_programs(1)
            if ticket == split_k - 1:  # the last one here: all partials are visible (acquire)
                total = tl.zeros_like(result)
                for s in range(split_k):  # fixed order: deterministic
                    total += tl.load(partials + s * M * N, mask=mask, other=0.0, cache_modifier=".cg")
                _store_output(total, offs_m, offs_n, mask, N, out_ptr, stride_om, bias_ptr, HAS_BIAS)


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


def splitk_workspace(split_k: int, m: int, n: int, device) -> torch.Tensor | None:
    """The fp32 partials buffer of a split-K launch (None without split-K)."""
    return torch.empty((split_k, m, n), dtype=torch.float32, device=device) if split_k > 1 else None


def splitk_counters(tiles: int, device) -> torch.Tensor:
    """One zeroed int32 ticket counter per output tile of a fused split-K launch."""
    return torch.zeros(tiles, dtype=torch.int32, device=device)


def splitk_reduce(workspace: torch.Tensor, bias: torch.Tensor | None, out: torch.Tensor) -> None:
    split_k, m, n = workspace.shape
    block = 1024
    _splitk_reduce_kernel[(triton.cdiv(m * n, block),)](
        workspace, bias if bias is not None else workspace, out, m, n, out.stride(0),
        HAS_BIAS=bias is not None, SPLIT_K=split_k, BLOCK=block, num_warps=4,
    )
