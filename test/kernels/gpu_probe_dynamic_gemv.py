"""GPU probe for the CUDA-core decode kernel (not a test): A8W8 int8 and fp8 at M = 1..4 (A8W4:
gpu_probe_dynamic_mma.py).

    python test/kernels/gpu_probe_dynamic_gemv.py OUTDIR [--shapes 4096x4096 ...] [--m 1 4] [--kinds int8 fp8]

Times (CUDA-graph replay over weight copies rotated beyond L2, activation quantization
included) the whole linear layer: the GEMV at each candidate configuration, the GEMV at the
heuristic, the tensor-core path (pick_config) and cuBLAS fp16. Also checks the heuristic's
output against the tensor-core path (int8: both exact up to the epilogue; fp8: fp32 sums). Prints a table last;
OUTDIR/probe_dynamic_gemv.json holds every timing.
"""

import argparse
import itertools
import json
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor

import torch
import torch.nn.functional as F

from torchao_gemlite.kernels.act_quant import FP8_DTYPE, quantize_per_token
from torchao_gemlite.kernels.dynamic_configs import pick_config
from torchao_gemlite.kernels.dynamic_gemm import dynamic_gemm
from torchao_gemlite.kernels.dynamic_gemv import GemvConfig, dynamic_gemv, gemv_config
from torchao_gemlite.kernels.tuning import graph_time_us
from torchao_gemlite.quant import quantize_rowwise_fp8, quantize_rowwise_int8

L2_ROTATION = 200 * 2**20


def candidates(m, n, k, sms):
    """Tiles around the heuristic's at 4 and 8 warps, each at half, the same, twice and four times its split."""
    base = gemv_config(m, n, k, sms)
    tiles = ((32, 256), (32, 512), (64, 256), (32, 128))
    out = []
    for (bn, bk), stages, warps in itertools.product(tiles, (3, 4), (4, 8)):
        if m > 2 and bn * bk > 8192:
            continue
        for split in sorted({base.split_k, max(1, base.split_k // 2), base.split_k * 2, base.split_k * 4}):
            if split * bk <= k:
                out.append(GemvConfig(bn, bk, split, warps, stages))
    return out


def _warm(job):
    """Worker: compile a list of configurations (fills Triton's disk cache)."""
    k, n, m, kind, cfgs = job
    qdtype = FP8_DTYPE if kind == "fp8" else torch.int8
    x = torch.randn(m, k, dtype=torch.float16, device="cuda")
    xq, xs = quantize_per_token(x, qdtype)
    w = torch.zeros(n, k, dtype=torch.int8, device="cuda").view(qdtype)
    s = torch.ones(n, dtype=torch.float32, device="cuda")
    out = torch.empty(m, n, dtype=torch.float16, device="cuda")
    for cfg in cfgs:
        try:
            dynamic_gemv(xq, xs, w, s, None, out, n, k, cfg)
        except Exception:  # noqa: BLE001 (reported by the timing pass)
            pass
    torch.cuda.synchronize()
    return len(cfgs)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("outdir")
    p.add_argument("--shapes", nargs="+", default=["4096x4096", "4096x14336", "14336x4096", "8192x8192"])
    p.add_argument("--m", nargs="+", type=int, default=[1, 4])
    p.add_argument("--kinds", nargs="+", default=["int8", "fp8"], choices=["int8", "fp8"])
    a = p.parse_args()
    log = open(f"{a.outdir}/probe_dynamic_gemv.log", "w")
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    shapes = [tuple(int(v) for v in s.split("x")) for s in a.shapes]
    jobs = [(k, n, m, kind, [c]) for (k, n), m, kind in itertools.product(shapes, a.m, a.kinds)
            for c in candidates(m, n, k, sms)]
    with ProcessPoolExecutor(16, mp_context=multiprocessing.get_context("spawn")) as pool:
        print(f"warmed {sum(pool.map(_warm, jobs))} launches", file=log, flush=True)
    rows = []
    for (k, n), kind in itertools.product(shapes, a.kinds):
        qdtype = FP8_DTYPE if kind == "fp8" else torch.int8
        w = torch.randn(n, k, dtype=torch.float16, device="cuda")
        wq, ws = (quantize_rowwise_fp8 if kind == "fp8" else quantize_rowwise_int8)(w)
        one = (wq, ws.reshape(-1))
        nbytes = sum(t.numel() * t.element_size() for t in one)
        copies = [tuple(t.clone() for t in one) for _ in range(max(2, L2_ROTATION // nbytes))]
        dense = [torch.randn(n, k, dtype=torch.float16, device="cuda") for _ in range(max(2, L2_ROTATION // (2 * n * k)))]
        for m in a.m:
            x = torch.randn(m, k, dtype=torch.float16, device="cuda")
            out = torch.empty(m, n, dtype=torch.float16, device="cuda")

            def gemv(cfg, c):
                xq, xs = quantize_per_token(x, qdtype)
                return dynamic_gemv(xq, xs, c[0], c[1], None, out, n, k, cfg)

            def gemm(c):
                xq, xs = quantize_per_token(x, qdtype)
                return dynamic_gemm(xq, xs, c[0], c[1], None, torch.float16, pick_config(m, n, k, kind))

            heur = gemv_config(m, n, k, sms)
            ref = gemm(copies[0]).float()
            got = gemv(heur, copies[0]).float()
            err = ((got - ref).norm() / ref.norm()).item()
            fp16 = graph_time_us([lambda d=d: F.linear(x, d) for d in dense], replays=20)
            tc = graph_time_us([lambda c=c: gemm(c) for c in copies], replays=20)
            heur_us = graph_time_us([lambda c=c: gemv(heur, c) for c in copies], replays=20)
            best = (heur_us, heur)
            for cfg in candidates(m, n, k, sms):
                try:
                    us = graph_time_us([lambda c=c: gemv(cfg, c) for c in copies], replays=20)
                except Exception as e:  # noqa: BLE001 (a probe: log and go on)
                    print(f"  skip {cfg}: {type(e).__name__} {str(e)[:150]}", file=log, flush=True)
                    continue
                print(f"  {kind} {k}x{n} M={m} {us:7.2f} {cfg}", file=log, flush=True)
                best = min(best, (us, cfg), key=lambda t: t[0])
            row = dict(kind=kind, k=k, n=n, m=m, fp16_us=fp16, tensor_core_us=tc,
                       heuristic_us=heur_us, heuristic=heur._asdict(), best_us=best[0], best=best[1]._asdict(),
                       rel_err_vs_tensor_core=err, weight_tb_s=nbytes / best[0] / 1e6)
            rows.append(row)
            print(json.dumps(row), file=log, flush=True)
    json.dump(rows, open(f"{a.outdir}/probe_dynamic_gemv.json", "w"), indent=1)
    print(f"{'kind':>5} {'KxN':>11} {'M':>2} {'fp16':>6} {'tcore':>6} {'heur':>6} {'best':>6} {'x fp16':>6} {'TB/s':>5} "
          f"{'err':>8}  best config")
    for r in rows:
        b = r["best"]
        print(f"{r['kind']:>5} {r['k']:>5}x{r['n']:<5} {r['m']:>2} {r['fp16_us']:6.1f} {r['tensor_core_us']:6.1f} "
              f"{r['heuristic_us']:6.1f} {r['best_us']:6.1f} {r['fp16_us'] / r['best_us']:6.2f} {r['weight_tb_s']:5.2f} "
              f"{r['rel_err_vs_tensor_core']:8.1e}  bn{b['block_n']} bk{b['block_k']} s{b['split_k']} "
              f"w{b['num_warps']} st{b['num_stages']}")


if __name__ == "__main__":
    sys.exit(main())
