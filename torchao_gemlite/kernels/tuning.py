"""Explicit tuning: measure launch configurations for your shapes and save the best.

    python -m torchao_gemlite.kernels.tuning --shapes 4096x14336 14336x4096 --bits 4 --group-size 128
    # or, from Python:
    torchao_gemlite.tune(shapes=[(4096, 14336)], m_values=[1, 16, 256], bits=4, group_size=128)

Each (shape, M bucket) tries a short list of candidates around the heuristic choice,
timed by CUDA-graph replay over enough weight copies to defeat the L2 cache. The best
ones are merged into the user cache (configs.user_cache_path, keyed by GPU model),
written atomically. Nothing is ever tuned implicitly at run time.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ..quant import quantize_weight
from .configs import (
    BATCH_MAX_M,
    FUSED_TILE,
    FUSED_TILE_8BIT,
    GEMM_TILES,
    GEMV_MAX_M,
    MMA_MAX_M,
    MMA_SUB8_MAX_M,
    MMA_TILE_M,
    LaunchConfig,
    batch_config,
    clear_caches,
    heuristic_config,
    m_bucket,
    mma_supported,
    table_key,
    user_cache_path,
    write_table_atomically,
)
from .dispatch import launch_weight_only

L2_ROTATION_BYTES = 160 * 2**20  # rotate over at least this many bytes of weights
SMALL_GEMM_TILE = (32, 128, 128, 4, 3)


def graph_time_us(launches, replays: int = 10) -> float:
    """Median time of one launch: ``launches`` (closures, one per weight copy) captured
    in one CUDA graph, replayed ``replays`` times."""
    for fn in launches:  # compile and warm up outside the capture
        fn()
    torch.cuda.synchronize()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for fn in launches:
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for fn in launches:
            fn()
    graph.replay()
    times = []
    for _ in range(replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000 / len(launches))
    return statistics.median(times)


def _splits(programs: int, k_tiles: int, sm_count: int) -> list[int]:
    """Split-K factors that put between one and about eight programs on every SM."""
    out = [s for s in (1, 2, 3, 4, 6, 8, 12, 16) if s <= k_tiles and sm_count <= programs * s <= 8 * sm_count]
    return out or [max(1, min(k_tiles, -(-sm_count // programs)))]


# GEMV (block_n, word rows a step, warps, stages): the H100 sweep's field (test/kernels/gpu_probe_gemv.py)
GEMV_CANDIDATES = ((16, 32, 2, 3), (16, 64, 4, 3), (32, 16, 4, 3), (32, 32, 4, 3), (32, 32, 4, 4), (32, 64, 4, 3),
                   (32, 64, 8, 3), (64, 16, 4, 3), (64, 32, 4, 3), (64, 32, 8, 3), (32, 128, 8, 3))


# mma decode kernel (block_n, num_warps): the H100 sweep's field (test/kernels/gpu_probe_mma_gemv.py)
MMA_CANDIDATES = ((32, 4), (32, 8), (32, 16), (64, 8), (64, 16), (128, 16))


def candidate_configs(m: int, n: int, k: int, bits: int, group_size: int, sm_count: int,
                      mma: bool = True, bf16: bool = False) -> list[LaunchConfig]:
    """Candidates around the heuristic choice (BLOCK_K = word rows per step * codes per word); ``mma``:
    whether the tensor-core decode kernel takes the format (a candidate for every bit width up to the M where
    4-bit codes use it by default: its sweep found shapes where it beat the GEMM there for the others too)."""
    base = heuristic_config(m, n, k, bits, group_size, sm_count, mma=mma, bf16=bf16)
    per_word = 32 // bits
    out = [base]
    if mma and m <= MMA_SUB8_MAX_M:
        for (bn, warps), bk in itertools.product(MMA_CANDIDATES, (128, 256)):
            bk = max(bk, group_size if group_size < k else 0)
            warps_k = warps // (bn // 32)
            for split, stages in itertools.product((1, 2, 4), (1, 2)):
                if warps_k * split <= -(-k // bk):
                    out.append(LaunchConfig("mma", MMA_TILE_M, bn, bk, split, num_warps=warps, num_stages=stages))
    if mma and MMA_MAX_M < m <= 2 * BATCH_MAX_M:  # the small-batch kernel, every bit width, both row tiles
        for rows, (bn, warps), stages in itertools.product((32, 64), ((32, 4), (64, 8)), (1, 2)):
            if rows <= 32 or m > 32:
                batch = replace(batch_config(m, n, k, sm_count, bits), block_m=rows, block_n=bn,
                                num_warps=warps, num_stages=stages)
                for split in {1, batch.split_k, 2 * batch.split_k}:
                    if (warps // (bn // 32)) * split <= -(-k // batch.block_k):
                        out.append(replace(batch, split_k=split))
    if m <= GEMV_MAX_M:  # around the H100 sweep's winners (docs/kernels.md), also where the heuristic takes mma
        gemv = heuristic_config(m, n, k, bits, group_size, sm_count, mma=False, bf16=bf16)
        out.append(gemv)
        for bn, rows, warps, stages in GEMV_CANDIDATES:
            bk = rows * per_word
            for split in _splits(-(-n // bn), -(-k // bk), sm_count):
                out.append(replace(gemv, block_n=bn, block_k=bk, split_k=split, num_warps=warps, num_stages=stages))
    if 2 < m <= 256:  # the tensor-core tiles of M's bucket and its neighbours (H100 probe): plain with pointer
        # and TMA loads, swapped (pointer loads); past M = 128 also the fused tiles of the dense regime
        bucket = min(m_bucket(m), 128)
        tiles = {GEMM_TILES[b] for b in (bucket // 2, bucket, bucket * 2) if b in GEMM_TILES}
        if 16 < m <= 32:  # the 32-row tile GEMM_TILES had for M <= 32 before M = 64's took its place
            tiles.add(SMALL_GEMM_TILE)
        if m > 128:
            tiles |= {FUSED_TILE, FUSED_TILE_8BIT}
        for block_m, bn, bk, warps, stages in sorted(tiles):
            bk = max(bk, per_word)
            for split in _splits(-(-n // bn) * -(-m // block_m), -(-k // bk), sm_count)[:2]:
                for swap, tma in ((False, False), (False, True), (True, False)):
                    out.append(LaunchConfig("gemm", block_m, bn, bk, split, num_warps=warps, num_stages=stages,
                                            swap_ab=swap, tma=tma))
    if m >= 64:
        out.append(LaunchConfig("dense", 0, 0, 0))
    return _unique(out)


def _unique(configs):
    seen, unique = set(), []
    for c in configs:
        if c not in seen:
            seen.add(c)
            unique.append(c)
    return unique


def _weight_copies(n: int, k: int, bits: int, group_size, symmetric: bool, dtype, device):
    w = torch.randn(n, k, dtype=dtype, device=device)
    qw = quantize_weight(w, bits, group_size, symmetric)
    nbytes = sum(t.numel() * t.element_size() for t in (qw.qdata, qw.scale, qw.zero) if t is not None)
    copies = max(2, min(64, L2_ROTATION_BYTES // nbytes))
    # Distinct storage per copy; values need not differ.
    return qw, [(qw.qdata.clone(), qw.scale.clone(), None if qw.zero is None else qw.zero.clone())
                for _ in range(copies)]


def tune_shape(n: int, k: int, m_values, bits: int, group_size, symmetric: bool, dtype=torch.float16,
               device="cuda", log=print) -> dict:
    """Times the candidates for one weight shape; returns {table key: (config, us, fp16 us)}."""
    props = torch.cuda.get_device_properties(device)
    qw, copies = _weight_copies(n, k, bits, group_size, symmetric, dtype, device)
    group = qw.fmt.group_size
    dense = [torch.randn(n, k, dtype=dtype, device=device) for _ in range(max(2, L2_ROTATION_BYTES // (n * k * 2)))]
    results = {}
    for m in m_values:
        x = torch.randn(m, k, dtype=dtype, device=device)
        fp16_us = graph_time_us([lambda w=w: F.linear(x, w) for w in dense])
        best = None
        for cfg in candidate_configs(m, n, k, bits, group, props.multi_processor_count,
                                     mma=mma_supported(bits, str(dtype)[6:]), bf16=dtype == torch.bfloat16):
            launches = [lambda c=c, cfg=cfg: launch_weight_only(x, c[0], c[1], c[2], None, bits, group, symmetric, cfg)
                        for c in copies]
            try:
                us = graph_time_us(launches)
            except Exception as err:  # a candidate that does not compile on this GPU is skipped
                log(f"  skip {cfg}: {type(err).__name__}: {str(err)[:120]}")
                continue
            if best is None or us < best[1]:
                best = (cfg, us)
        key = table_key(m, n, k, bits, group, str(dtype)[6:])
        results[key] = (best[0], best[1], fp16_us)
        log(f"{key}: {best[1]:8.1f} us  fp16 {fp16_us:8.1f} us  x{fp16_us / best[1]:.2f}  {best[0]}")
    return results


def tune(shapes, m_values=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096), bits: int = 4, group_size=128,
         symmetric: bool = False, dtype=torch.float16, output: str | Path | None = None, log=print) -> Path:
    """Tunes every (K, N) in ``shapes`` for each M and merges the winners into a JSON table.

    output: the table to write (default: the user cache for this GPU, which the dispatcher
    reads before the shipped tables). Returns its path.
    """
    if not torch.cuda.is_available():
        raise RuntimeError("tuning measures kernels on the GPU: CUDA is not available")
    device_name = torch.cuda.get_device_name()
    found = {}
    for k, n in shapes:
        for key, (cfg, _, _) in tune_shape(n, k, m_values, bits, group_size, symmetric, dtype, log=log).items():
            found[key] = cfg.to_dict()
    path = Path(output) if output else user_cache_path(device_name)
    write_table_atomically(path, found, device_name)
    clear_caches()
    return path


def parse_shape(text: str) -> tuple[int, int]:
    """'4096x14336' -> (K, N), the command lines' shape argument."""
    k, n = text.lower().split("x")
    return int(k), int(n)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", nargs="+", type=parse_shape, required=True, help="K x N, e.g. 4096x14336")
    p.add_argument("--m", nargs="+", type=int, default=[1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096])
    p.add_argument("--bits", type=int, default=4)
    p.add_argument("--group-size", type=int, default=128, help="-1 for per-channel")
    p.add_argument("--symmetric", action="store_true")
    p.add_argument("--dtype", choices=["float16", "bfloat16"], default="float16")
    p.add_argument("--output", help="table to write (default: the user cache for this GPU)")
    a = p.parse_args(argv)
    path = tune(a.shapes, a.m, a.bits, None if a.group_size == -1 else a.group_size, a.symmetric,
                getattr(torch, a.dtype), a.output)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
