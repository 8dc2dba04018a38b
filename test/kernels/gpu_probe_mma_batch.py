"""GPU probe for the small-batch tensor-core kernel (mma_batch.py; not a test): accuracy, then a timing sweep.

    python test/kernels/gpu_probe_mma_batch.py OUTDIR [--shapes 4096x4096 ...] [--m 32 64 128] [--formats ...]

1. Accuracy against the reference linear (relative Frobenius error, NaN-poisoned outputs) for every bit width x
   asym/sym x fp16/bf16 at M = 17, 40, 64, 100, ragged K and N, four launch shapes; and whether two identical
   calls give bit-identical outputs.
2. Time (CUDA-graph replay over weight copies rotated beyond L2) of cuBLAS fp16, the current default
   (``choose_config``) and a sweep of mma_batch launches (rows a CTA, columns, warps, codes a step, stages,
   K split) per format, shape and M. Candidates are compiled first by a pool of processes.
Writes OUTDIR/probe_mma_batch.json and .log; prints a table last.
"""

import argparse
import itertools
import json
import math
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from gpu_probe_mma_gemv import FORMATS, _compile_job  # noqa: E402

from torchao_gemlite.kernels.configs import LaunchConfig, batch_config, choose_config  # noqa: E402
from torchao_gemlite.kernels.dispatch import launch_weight_only  # noqa: E402
from torchao_gemlite.kernels.tuning import _weight_copies, graph_time_us  # noqa: E402
from torchao_gemlite.quant import quantize_weight, reference_linear  # noqa: E402

ACCURACY_LAUNCHES = (LaunchConfig("mma_batch", 32, 32, 32, 1, num_warps=4, num_stages=2),
                     LaunchConfig("mma_batch", 64, 64, 64, 2, num_warps=8, num_stages=1),
                     LaunchConfig("mma_batch", 64, 128, 32, 3, num_warps=8, num_stages=2),
                     LaunchConfig("mma_batch", 32, 64, 128, 2, num_warps=4, num_stages=1))


def accuracy(log):
    rows = []
    for bits, sym, dtype, m, gs in itertools.product((1, 2, 4, 8), (False, True), (torch.float16, torch.bfloat16),
                                                     (17, 40, 64, 100), (64, None)):
        gen = torch.Generator().manual_seed(bits * 100 + m)
        k, n = 2048 + 96 * (gs is None) + 64, 1000
        w = torch.randn(n, k, generator=gen).to(dtype).cuda()
        qw = quantize_weight(w, bits, gs, sym)
        x = torch.randn(m, k, generator=gen).to(dtype).cuda()
        bias = torch.randn(n, generator=gen).to(dtype).cuda()
        ref = reference_linear(x, qw, bias).float()
        for cfg in ACCURACY_LAUNCHES:
            outs = []
            for _ in range(2):
                out = torch.full((m, n), float("nan"), dtype=dtype, device="cuda")
                outs.append(launch_weight_only(x, qw.qdata, qw.scale, qw.zero, bias, bits, qw.fmt.group_size, sym, cfg,
                                               out=out))
            y = outs[0].float()
            err = float("inf") if torch.isnan(y).any() else ((y - ref).norm() / ref.norm()).item()
            same = bool(torch.equal(outs[0], outs[1]))
            rows.append((bits, sym, str(dtype)[6:], m, str(gs), cfg.block_m, cfg.block_n, err, same))
            log(f"acc bits={bits} sym={sym} {dtype} M={m} g={gs} bm{cfg.block_m} bn{cfg.block_n}: {err:.2e} "
                f"deterministic={same}")
    return rows


def candidates(n, k, m, sms, block_ms=(32,), stages=(1, 2)):
    """Rows a CTA x (columns, warps) x codes a step (32 or 64: the x registers) x stages, each
    with the smallest K split that gives a wave of CTAs and the next one."""
    out = []
    for bm, (bn, warps), bk, st in itertools.product(block_ms, ((32, 4), (64, 4), (64, 8), (128, 8)),
                                                     (32, 64), stages):
        if bm > max(32, m):
            continue
        warps_k = warps // (bn // 32)
        warp_steps = math.ceil(k / bk)
        ctas = math.ceil(n / bn) * math.ceil(m / bm)
        splits = [s for s in (1, 2, 3, 4, 6, 8, 12, 16) if s * warps_k <= warp_steps]
        fill = [s for s in splits if ctas * s >= sms] or splits[-1:]
        for split in sorted({fill[0], *fill[1:2]}):
            out.append(LaunchConfig("mma_batch", bm, bn, bk, split, num_warps=warps, num_stages=st))
    return out


def timing(shapes, cases, log, jobs_at_once=16):
    props = torch.cuda.get_device_properties(0)
    sms = props.multi_processor_count
    jobs = []
    for (k, n), (f, m) in itertools.product(shapes, cases):
        cands = candidates(n, k, m, sms)
        for i in range(0, len(cands), 8):
            jobs.append((k, n, m, f, cands[i:i + 8]))
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs_at_once, mp_context=ctx) as pool:
        log(f"precompiled {sum(pool.map(_compile_job, jobs))} launches")
    results = []
    for k, n in shapes:
        dense = [torch.randn(n, k, dtype=torch.float16, device="cuda") for _ in range(max(2, 160 * 2**20 // (n * k * 2)))]
        for f, m in cases:
            bits, gs, sym, dtype = FORMATS[f]
            qw, copies = _weight_copies(n, k, bits, gs, sym, torch.float16, "cuda")
            group = qw.fmt.group_size
            x = torch.randn(m, k, dtype=dtype, device="cuda")

            def run(cfg, x=x):
                return graph_time_us([lambda c=c: launch_weight_only(x, c[0], c[1], c[2], None, bits, group, sym, cfg)
                                      for c in copies], replays=20)

            fp16 = graph_time_us([lambda w=w: F.linear(x.half(), w) for w in dense], replays=20)
            default_cfg = choose_config(m, n, k, bits, group, str(dtype)[6:], props.name, sms)
            default = run(default_cfg)
            heur_cfg = batch_config(m, n, k, sms, bits)
            heur = run(heur_cfg)
            best, by_bm = None, {}
            for cfg in candidates(n, k, m, sms):
                try:
                    us = run(cfg)
                except Exception as err:
                    log(f"  skip {cfg}: {type(err).__name__}: {str(err)[:200]}")
                    continue
                log(f"  {f} {k}x{n} M={m} {us:7.2f} us {cfg}")
                if best is None or us < best[1]:
                    best = (cfg, us)
                if cfg.block_m not in by_bm or us < by_bm[cfg.block_m][0]:
                    by_bm[cfg.block_m] = (us, cfg.to_dict())
            results.append(dict(fmt=f, k=k, n=n, m=m, fp16_us=fp16, default_us=default,
                                default_cfg=default_cfg.to_dict(), heur_us=heur, heur_cfg=heur_cfg.to_dict(), batch_us=best[1], batch_cfg=best[0].to_dict(),
                                by_block_m=by_bm))
            log(f"{f} {k}x{n} M={m}: fp16 {fp16:.2f} default {default:.2f} heur {heur:.2f} batch {best[1]:.2f} ({best[0]})")
    return results


def main():
    p = argparse.ArgumentParser()
    p.add_argument("outdir")
    p.add_argument("--shapes", nargs="+", default=["4096x4096", "4096x14336", "14336x4096", "8192x8192"])
    p.add_argument("--cases", nargs="+", default=["w4g128:24", "w4g128:32", "w4g128:48", "w4g128-bf16:32",
                                                  "w8pc:32", "w2g64:32", "w1g64:32", "w2g64-bf16:32"],
                   help="FORMAT:M")
    p.add_argument("--no-accuracy", dest="accuracy", action="store_false")
    p.add_argument("--compile-jobs", type=int, default=16)
    a = p.parse_args()
    logf = open(f"{a.outdir}/probe_mma_batch.log", "w")

    def log(msg):
        print(msg, file=logf, flush=True)

    acc = accuracy(log) if a.accuracy else []
    shapes = [tuple(int(v) for v in s.split("x")) for s in a.shapes]
    cases = [(c.split(":")[0], int(c.split(":")[1])) for c in a.cases]
    res = timing(shapes, cases, log, a.compile_jobs)
    json.dump(dict(device=torch.cuda.get_device_name(), accuracy=acc, timing=res),
              open(f"{a.outdir}/probe_mma_batch.json", "w"), indent=1)
    if acc:
        worst = {}
        for bits, sym, dt, m, gs, bm, bn, err, same in acc:
            worst[(bits, dt)] = max(worst.get((bits, dt), 0), err)
        print("worst rel. error:", {f"{b}b/{d}": f"{e:.1e}" for (b, d), e in sorted(worst.items())},
              "all deterministic:", all(r[-1] for r in acc))
    print(f"{'fmt':>12} {'KxN':>11} {'M':>3} {'fp16':>7} {'default':>7} {'heur':>7} {'batch':>7} {'x fp16':>6} "
          f"{'x dflt':>6} {'h/dflt':>6} {'h/best':>6}  best")
    for r in res:
        c = r["batch_cfg"]
        print(f"{r['fmt']:>12} {r['k']:>5}x{r['n']:<5} {r['m']:>3} {r['fp16_us']:7.2f} {r['default_us']:7.2f} "
              f"{r['heur_us']:7.2f} {r['batch_us']:7.2f} {r['fp16_us'] / r['batch_us']:6.2f} {r['default_us'] / r['batch_us']:6.2f} "
              f"{r['default_us'] / r['heur_us']:6.2f} {r['batch_us'] / r['heur_us']:6.2f}  "
              f"bm{c['block_m']} bn{c['block_n']} bk{c['block_k']} s{c['split_k']} w{c['num_warps']} "
              f"st{c['num_stages']}  " + " ".join(f"bm{bm} {us:.2f}" for bm, (us, _) in r["by_block_m"].items()))


if __name__ == "__main__":
    sys.exit(main())
