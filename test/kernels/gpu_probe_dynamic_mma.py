"""GPU probe for the A8W4 int8 tensor-core decode kernel (not a test): accuracy, then timing.

    python test/kernels/gpu_probe_dynamic_mma.py OUTDIR [--shapes 4096x4096 ...] [--m 1 2 4 8 16]

1. Accuracy of dynamic_mma_gemv against a float64 evaluation of the A8W4 math on the same
   quantized activations (relative Frobenius error), group sizes 32 / 128 / per-channel, M = 1..40.
2. Time of the whole layer (activation quantization included; CUDA-graph replay over weight copies
   rotated beyond L2): cuBLAS fp16, the int8 tensor-core GEMM (what A8W4 runs with an explicit config,
   and past M = 16) and the mma kernel at its heuristic configuration and a few others.
Writes OUTDIR/probe_dynamic_mma.json and prints a table last.
"""

import argparse
import itertools
import json
import sys

import torch
import torch.nn.functional as F

from torchao_gemlite.kernels.act_quant import quantize_per_token
from torchao_gemlite.kernels.configs import LaunchConfig, decode_config
from torchao_gemlite.kernels.dynamic_configs import pick_config
from torchao_gemlite.kernels.dynamic_gemm import a8w4_dynamic_linear
from torchao_gemlite.kernels.dynamic_mma_gemv import dynamic_mma_gemv
from torchao_gemlite.kernels.tuning import graph_time_us
from torchao_gemlite.quant import quantize_weight


def _reference(xq, xs, qw, bias):
    k, n = qw.qdata.shape[0] * 8, qw.qdata.shape[1]
    q = torch.stack([(qw.qdata >> (4 * s)) & 15 for s in range(8)], 1).reshape(k, n).double() - 8
    scale = qw.scale.double().repeat_interleave(qw.fmt.group_size, 0)[:k]
    return (xq.double() @ (q * scale)) * xs.double().reshape(-1, 1) + bias.double()


def accuracy(log):
    rows = []
    for group in (32, 128, None):
        for m in (1, 2, 3, 8, 9, 16, 17, 40):
            gen = torch.Generator().manual_seed(m)
            k, n = 4096, 1000
            qw = quantize_weight(torch.randn(n, k, generator=gen).cuda(), 4, group, True)
            x = torch.randn(m, k, generator=gen).half().cuda()
            bias = torch.randn(n, generator=gen).half().cuda()
            xq, xs = quantize_per_token(x, torch.int8)
            ref = _reference(xq, xs, qw, bias)
            g = 0 if qw.fmt.group_size == k else qw.fmt.group_size
            for cfg in (None, LaunchConfig("mma", 16, 64, 256, 3, num_warps=8)):
                outs = [dynamic_mma_gemv(xq, xs, qw.qdata, qw.scale, qw.scale.stride(0), bias,
                                         torch.full((m, n), float("nan"), dtype=torch.float16, device="cuda"),
                                         n, k, g, cfg) for _ in range(2)]
                err = ((outs[0].double() - ref).norm() / ref.norm()).item()
                rows.append((str(group), m, cfg is None, err, bool(torch.equal(outs[0], outs[1]))))
                log(f"acc g={group} M={m} heuristic={cfg is None}: {err:.2e} deterministic={rows[-1][-1]}")
    return rows


def timing(shapes, m_values, log):
    results = []
    for k, n in shapes:
        qw = quantize_weight(torch.randn(n, k, device="cuda", dtype=torch.float16), 4, 128, True)
        nbytes = qw.qdata.numel() * 4 + qw.scale.numel() * 2
        copies = [(qw.qdata.clone(), qw.scale.clone()) for _ in range(max(2, 160 * 2**20 // nbytes))]
        dense = [torch.randn(n, k, dtype=torch.float16, device="cuda") for _ in range(max(2, 160 * 2**20 // (n * k * 2)))]
        for m in m_values:
            x = torch.randn(m, k, dtype=torch.float16, device="cuda")

            def run(fn):
                return graph_time_us([lambda c=c: fn(*c) for c in copies], replays=20)

            def mma(cfg):
                def call(qd, sc):
                    xq, xs = quantize_per_token(x, torch.int8)
                    out = torch.empty((m, n), dtype=torch.float16, device="cuda")
                    return dynamic_mma_gemv(xq, xs, qd, sc, sc.stride(0), None, out, n, k, 128, cfg)
                return call

            def previous(qd, sc):
                return a8w4_dynamic_linear(x, qd, sc, None, 128, pick_config(m, n, k, "a8w4"))

            fp16 = graph_time_us([lambda w=w: F.linear(x, w) for w in dense], replays=20)
            prev = run(previous)
            cands = [None] + [LaunchConfig("mma", 16, bn, bk, s, num_warps=w, num_stages=st) for (bn, w, bk, s), st in
                              itertools.product(((32, 8, 128, 1), (32, 16, 128, 1), (64, 16, 128, 1), (128, 16, 128, 1),
                                                 (32, 8, 256, 2), (64, 8, 128, 2), (32, 4, 128, 2), (64, 8, 128, 1),
                                                 (128, 8, 128, 1), (64, 16, 128, 2), (32, 4, 128, 1)), (1, 2))]
            times = []
            for cfg in cands:
                try:
                    times.append((run(mma(cfg)), cfg or decode_config(n, k, 128)))
                except Exception as err:
                    log(f"  skip {cfg}: {type(err).__name__}: {str(err)[:150]}")
            heur = times[0]
            best = min(times, key=lambda t: t[0])
            for us, cfg in times:
                log(f"  {k}x{n} M={m} {us:.2f} bn{cfg.block_n} bk{cfg.block_k} s{cfg.split_k} w{cfg.num_warps} "
                    f"st{cfg.num_stages}")
            results.append(dict(k=k, n=n, m=m, fp16_us=fp16, previous_us=prev, heuristic_us=heur[0],
                                best_us=best[0], best_cfg=best[1].to_dict(), tb_s=nbytes / best[0] / 1e6))
            log(f"{k}x{n} M={m}: fp16 {fp16:.2f} previous {prev:.2f} mma {heur[0]:.2f} best {best[0]:.2f}")
    return results


def main():
    p = argparse.ArgumentParser()
    p.add_argument("outdir")
    p.add_argument("--shapes", nargs="+", default=["4096x4096", "4096x14336", "14336x4096", "8192x8192"])
    p.add_argument("--m", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    a = p.parse_args()
    logf = open(f"{a.outdir}/probe_dynamic_mma.log", "w")

    def log(msg):
        print(msg, file=logf, flush=True)

    acc = accuracy(log)
    res = timing([tuple(int(v) for v in s.split("x")) for s in a.shapes], a.m, log)
    json.dump(dict(device=torch.cuda.get_device_name(), accuracy=acc, timing=res),
              open(f"{a.outdir}/probe_dynamic_mma.json", "w"), indent=1)
    print("worst rel. error:", f"{max(r[3] for r in acc):.1e}", "all deterministic:", all(r[4] for r in acc))
    print(f"{'KxN':>11} {'M':>2} {'fp16':>7} {'gemm':>7} {'mma':>7} {'best':>7} {'x fp16':>6} {'x gemm':>6}  best")
    for r in res:
        c = r["best_cfg"]
        print(f"{r['k']:>5}x{r['n']:<5} {r['m']:>2} {r['fp16_us']:7.2f} {r['previous_us']:7.2f} {r['heuristic_us']:7.2f} "
              f"{r['best_us']:7.2f} {r['fp16_us'] / r['heuristic_us']:6.2f} {r['previous_us'] / r['heuristic_us']:6.2f}"
              f"  bn{c['block_n']} bk{c['block_k']} s{c['split_k']} w{c['num_warps']} st{c['num_stages']}")


if __name__ == "__main__":
    sys.exit(main())
