"""GPU probe for the small-batch regime (not a test): candidates of the tensor-core kernel (one dot
per K step over the whole dequantized tile) against its heuristic configuration (for M > 128: a
64x128 tile), dequantize + cuBLAS and cuBLAS fp16, for 4-bit g128 at M = 4..256.

    python test/kernels/gpu_probe_gemm.py OUTDIR [--shapes 4096x4096 ...] [--m 16 64 256]

Candidates are compiled first by a pool of processes; prints a table last, the log under OUTDIR.
"""

import argparse
import sys
from dataclasses import replace

import torch
import torch.nn.functional as F

from gpu_probe_gemv import precompile
from torchao_gemlite.kernels.configs import LaunchConfig, heuristic_config
from torchao_gemlite.kernels.dispatch import launch_weight_only
from torchao_gemlite.kernels.tuning import _splits, _weight_copies, graph_time_us

# (block_m, block_n, word rows a step, warps, stages)
CANDIDATES = {4: ((16, 128, 16, 4, 3), (16, 64, 16, 4, 3)), 8: ((16, 128, 16, 4, 3), (16, 64, 16, 4, 3)),
             32: ((32, 128, 16, 4, 3), (16, 128, 16, 4, 3), (32, 64, 16, 4, 3)),
             16: ((16, 128, 16, 4, 3), (16, 128, 32, 4, 3), (16, 64, 16, 4, 3), (16, 256, 16, 8, 3)),
             64: ((64, 128, 16, 4, 3), (64, 128, 32, 8, 3), (64, 256, 16, 8, 3), (64, 64, 16, 4, 4)),
             128: ((128, 128, 16, 8, 3), (64, 128, 16, 4, 3), (128, 256, 16, 8, 3), (128, 128, 32, 8, 3)),
             256: ((128, 128, 16, 8, 3), (128, 256, 16, 8, 3), (128, 128, 32, 8, 3), (64, 256, 16, 8, 3))}


def candidates(m, n, k, sms):
    out = []
    for bm, bn, rows, warps, stages in CANDIDATES[m]:
        tiles = -(-m // bm) * -(-n // bn)
        for split in sorted({1, _splits(tiles, -(-k // (rows * 8)), sms)[0]}):
            out.append(LaunchConfig("gemm", bm, bn, rows * 8, split, num_warps=warps, num_stages=stages))
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("outdir")
    p.add_argument("--shapes", nargs="+", default=["4096x4096", "4096x14336", "14336x4096", "8192x8192"])
    p.add_argument("--m", nargs="+", type=int, default=[4, 8, 16, 32, 64, 128, 256])
    a = p.parse_args()
    log = open(f"{a.outdir}/probe_gemm.log", "w")
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    shapes = [tuple(int(v) for v in s.split("x")) for s in a.shapes]
    jobs = [(k, n, m, torch.float16, candidates(m, n, k, sms)[i:i + 3]) for k, n in shapes for m in a.m
            for i in range(0, 9, 3)]
    print(f"precompiled {precompile(jobs)} launches", file=log, flush=True)
    rows = []
    for k, n in shapes:
        _, copies = _weight_copies(n, k, 4, 128, False, torch.float16, "cuda")
        dense = [torch.randn(n, k, dtype=torch.float16, device="cuda") for _ in range(max(2, 160 * 2**20 // (n * k * 2)))]
        for m in a.m:
            x = torch.randn(m, k, dtype=torch.float16, device="cuda")

            def run(cfg):
                return graph_time_us([lambda c=c: launch_weight_only(x, c[0], c[1], c[2], None, 4, 128, False, cfg)
                                      for c in copies], replays=20)

            fp16 = graph_time_us([lambda w=w: F.linear(x, w) for w in dense], replays=20)
            base_cfg = heuristic_config(m, n, k, 4, 128, sms)
            if base_cfg.kernel == "dense":
                base_cfg = LaunchConfig("gemm", 64, 128, 128, 1, num_warps=4, num_stages=3)
            base = run(base_cfg)
            dense_us = run(LaunchConfig("dense", 0, 0, 0))
            best = None
            for cfg in candidates(m, n, k, sms):
                try:
                    us = run(cfg)
                except Exception as err:
                    print(f"  skip {cfg}: {type(err).__name__}: {str(err)[:200]}", file=log, flush=True)
                    continue
                print(f"  {k}x{n} M={m} {us:8.2f} us {cfg}", file=log, flush=True)
                if best is None or us < best[1]:
                    best = (cfg, us)
            rows.append((k, n, m, fp16, base, dense_us, best[1], best[0]))
            print(f"{k}x{n} M={m}: fp16 {fp16:.1f} heuristic {base:.1f} dense {dense_us:.1f} best {best[1]:.1f} {best[0]}",
                  file=log, flush=True)
    print(f"{'KxN':>11} {'M':>4} {'fp16':>7} {'heur.':>7} {'dense':>7} {'best':>7} {'x fp16':>6}  best config")
    for k, n, m, fp16, base, dense_us, best_us, cfg in rows:
        print(f"{k:>5}x{n:<5} {m:>4} {fp16:7.1f} {base:7.1f} {dense_us:7.1f} {best_us:7.1f} {fp16 / best_us:6.2f}  "
              f"bm{cfg.block_m} bn{cfg.block_n} bk{cfg.block_k} s{cfg.split_k} w{cfg.num_warps} st{cfg.num_stages}")


if __name__ == "__main__":
    sys.exit(main())
