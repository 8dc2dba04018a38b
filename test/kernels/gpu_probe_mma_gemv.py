"""GPU probe for the tensor-core decode kernel (not a test): accuracy, then a timing sweep.

    python test/kernels/gpu_probe_mma_gemv.py OUTDIR [--shapes 4096x4096 ...] [--m 1 4 8]

1. Accuracy against the reference linear (relative Frobenius error) for every bit width x asym/sym
   x fp16/bf16 (no 8-bit bf16) at M = 1, 3, 8, 40 (three M tiles), ragged N, with three launch shapes; and whether two
   identical calls give bit-identical outputs.
2. Time (CUDA-graph replay over weight copies rotated beyond L2) of cuBLAS fp16, the current
   default (``choose_config``) and a sweep of mma configurations, per format, shape and M. The
   candidates are compiled first by a pool of processes (Triton's disk cache).
Writes OUTDIR/probe_mma_gemv.json and .log; prints a table last.
"""

import argparse
import itertools
import json
import math
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor

import torch
import torch.nn.functional as F

from torchao_gemlite.kernels.configs import LaunchConfig, choose_config
from torchao_gemlite.kernels.dispatch import launch_weight_only
from torchao_gemlite.kernels.tuning import _weight_copies, graph_time_us
from torchao_gemlite.quant import quantize_weight, reference_linear

FORMATS = {  # name: (bits, group size, symmetric, dtype)
    "w4g128": (4, 128, False, torch.float16),
    "w4g128-bf16": (4, 128, False, torch.bfloat16),
    "w8pc": (8, None, True, torch.float16),
    "w8g128": (8, 128, False, torch.float16),
    "w8g128-bf16": (8, 128, False, torch.bfloat16),
    "w2g64": (2, 64, False, torch.float16),
    "w1g64": (1, 64, False, torch.float16),
    "w2g64-bf16": (2, 64, False, torch.bfloat16),
    "w1g64-bf16": (1, 64, False, torch.bfloat16),
}


def accuracy(log):
    rows = []
    cfgs = (LaunchConfig("mma", 8, 32, 128, 1, num_warps=4, num_stages=2),
            LaunchConfig("mma", 8, 64, 256, 3, num_warps=8, num_stages=1),
            LaunchConfig("mma", 8, 128, 128, 2, num_warps=4, num_stages=2))
    for bits, sym, dtype, m, gs in itertools.product((1, 2, 4, 8), (False, True), (torch.float16, torch.bfloat16),
                                                     (1, 3, 8, 40), (64, None)):
        if bits == 8 and dtype == torch.bfloat16:
            continue
        gen = torch.Generator().manual_seed(bits * 100 + m)
        k, n = 2048 + 96 * (gs is None), 1000
        w = torch.randn(n, k, generator=gen).to(dtype).cuda()
        qw = quantize_weight(w, bits, gs, sym)
        x = torch.randn(m, k, generator=gen).to(dtype).cuda()
        bias = torch.randn(n, generator=gen).to(dtype).cuda()
        ref = reference_linear(x, qw, bias).float()
        for cfg in cfgs:
            group = qw.fmt.group_size
            outs = []
            for _ in range(2):
                out = torch.full((m, n), float("nan"), dtype=dtype, device="cuda")
                outs.append(launch_weight_only(x, qw.qdata, qw.scale, qw.zero, bias, bits, group, sym, cfg, out=out))
            y = outs[0].float()
            err = float("inf") if torch.isnan(y).any() else ((y - ref).norm() / ref.norm()).item()
            same = bool(torch.equal(outs[0], outs[1]))
            rows.append((bits, sym, str(dtype)[6:], m, str(gs), cfg.block_n, cfg.num_warps, err, same))
            log(f"acc bits={bits} sym={sym} {dtype} M={m} g={gs} bn{cfg.block_n} w{cfg.num_warps}: {err:.2e} "
                f"deterministic={same}")
    return rows


def candidates(n, k, bits, group, sms, wide, stages=(1,), block_ks=None, m=1):
    """Launch shapes around what fills the SMs: 32-128 columns a CTA, 4-32 warps (the rest of them along K);
    past M = 16 each column tile has one CTA per 16 rows."""
    out = []
    bks = block_ks or ((128, 256, 512) if bits < 4 else (128, 256))
    shapes = ((32, 4), (32, 8), (32, 16), (32, 32), (64, 8), (64, 16), (128, 8), (128, 16)) if wide else (
        (32, 8), (32, 16), (64, 16))
    for (bn, warps), bk, stages in itertools.product(shapes, bks, stages):
        if group and bk % group:
            continue
        ctas = math.ceil(n / bn) * math.ceil(m / 16)
        warp_steps = math.ceil(k / bk)
        warps_k = warps // (bn // 32)
        if warps_k > warp_steps:
            continue
        splits = [s for s in (1, 2, 3, 4, 6, 8) if s * warps_k <= warp_steps and 4 * sms <= ctas * s * warps <= 48 * sms]
        for split in sorted({1, *splits[:2]}):
            out.append(LaunchConfig("mma", 8, bn, bk, split, num_warps=warps, num_stages=stages))
    return out


def _compile_job(job):
    k, n, m, fmt, cfgs = job
    bits, gs, sym, dtype = FORMATS[fmt]
    qw = quantize_weight(torch.randn(n, k, dtype=torch.float16, device="cuda"), bits, gs, sym)
    x = torch.randn(m, k, dtype=dtype, device="cuda")
    for cfg in cfgs:
        try:
            launch_weight_only(x, qw.qdata, qw.scale, qw.zero, None, bits, qw.fmt.group_size, sym, cfg)
        except Exception:  # reported by the timing pass
            pass
    torch.cuda.synchronize()
    return len(cfgs)


def timing(shapes, m_values, other_m, formats, log, stages=(1, 2), block_ks=None, jobs_at_once=16):
    props = torch.cuda.get_device_properties(0)
    sms = props.multi_processor_count
    cases = [(k, n, m, f) for k, n in shapes for f in formats for m in (m_values if f == "w4g128" else other_m)]
    jobs = []
    for k, n, m, f in cases:
        bits, gs, sym, dtype = FORMATS[f]
        cands = candidates(n, k, bits, gs or 0, sms, wide=m <= 2 or m > 8, stages=stages,
                           block_ks=block_ks, m=m)
        for i in range(0, len(cands), 8):
            jobs.append((k, n, m, f, cands[i:i + 8]))
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs_at_once, mp_context=ctx) as pool:
        log(f"precompiled {sum(pool.map(_compile_job, jobs))} launches")
    results = []
    for k, n in shapes:
        dense = [torch.randn(n, k, dtype=torch.float16, device="cuda") for _ in range(max(2, 160 * 2**20 // (n * k * 2)))]
        for f in formats:
            bits, gs, sym, dtype = FORMATS[f]
            qw, copies = _weight_copies(n, k, bits, gs, sym, torch.float16, "cuda")
            group = qw.fmt.group_size
            nbytes = sum(t.numel() * t.element_size() for t in copies[0] if t is not None)
            for m in m_values if f == "w4g128" else other_m:
                x = torch.randn(m, k, dtype=dtype, device="cuda")

                def run(cfg, x=x):
                    return graph_time_us([lambda c=c: launch_weight_only(x, c[0], c[1], c[2], None, bits, group, sym,
                                                                         cfg) for c in copies], replays=20)

                fp16 = graph_time_us([lambda w=w: F.linear(x.half(), w) for w in dense], replays=20)
                default_cfg = choose_config(m, n, k, bits, group, str(dtype)[6:], props.name, sms)
                default = run(default_cfg)
                best, by_block_k, by_stages = None, {}, {}
                for cfg in candidates(n, k, bits, gs or 0, sms, wide=m <= 2 or m > 8, stages=stages,
                                      block_ks=block_ks, m=m):
                    try:
                        us = run(cfg)
                    except Exception as err:
                        log(f"  skip {cfg}: {type(err).__name__}: {str(err)[:200]}")
                        continue
                    log(f"  {f} {k}x{n} M={m} {us:7.2f} us {cfg}")
                    if best is None or us < best[1]:
                        best = (cfg, us)
                    if cfg.block_k not in by_block_k or us < by_block_k[cfg.block_k][0]:
                        by_block_k[cfg.block_k] = (us, cfg.to_dict())
                    if cfg.num_stages not in by_stages or us < by_stages[cfg.num_stages][0]:
                        by_stages[cfg.num_stages] = (us, cfg.to_dict())
                row = dict(fmt=f, k=k, n=n, m=m, fp16_us=fp16, default_us=default, default_cfg=default_cfg.to_dict(),
                           mma_us=best[1], mma_cfg=best[0].to_dict(), mma_tb_s=nbytes / best[1] / 1e6,
                           by_block_k={bk: v for bk, v in sorted(by_block_k.items())},
                           by_stages={st: v for st, v in sorted(by_stages.items())})
                results.append(row)
                log(f"{f} {k}x{n} M={m}: fp16 {fp16:.2f} default {default:.2f} mma {best[1]:.2f} ({best[0]})")
    return results


def main():
    p = argparse.ArgumentParser()
    p.add_argument("outdir")
    p.add_argument("--shapes", nargs="+", default=["4096x4096", "4096x14336", "14336x4096", "8192x8192"])
    p.add_argument("--m", nargs="+", type=int, default=[1, 4, 8], help="M values of w4g128")
    p.add_argument("--other-m", nargs="+", type=int, default=[1], help="M values of the other formats")
    p.add_argument("--formats", nargs="+", default=list(FORMATS))
    p.add_argument("--no-accuracy", dest="accuracy", action="store_false")
    p.add_argument("--stages", nargs="+", type=int, default=[1, 2], help="steps of loads in flight tried (1: a step's "
                   "loads at its top; 2: also the next step's)")
    p.add_argument("--block-k", nargs="+", type=int, help="codes a warp step tried (default 128, 256 and, below "
                   "4-bit, 512); the table shows the best time of each")
    p.add_argument("--compile-jobs", type=int, default=16, help="processes that precompile the candidates (fewer "
                   "for very large shapes: each quantizes its own weight on the GPU)")
    a = p.parse_args()
    logf = open(f"{a.outdir}/probe_mma_gemv.log", "w")

    def log(msg):
        print(msg, file=logf, flush=True)

    acc = accuracy(log) if a.accuracy else []
    shapes = [tuple(int(v) for v in s.split("x")) for s in a.shapes]
    res = timing(shapes, a.m, a.other_m, a.formats, log, tuple(a.stages), a.block_k, a.compile_jobs)
    json.dump(dict(device=torch.cuda.get_device_name(), accuracy=acc, timing=res),
              open(f"{a.outdir}/probe_mma_gemv.json", "w"), indent=1)
    if acc:
        worst = {}
        for bits, sym, dt, m, gs, bn, w, err, same in acc:
            worst[(bits, dt)] = max(worst.get((bits, dt), 0), err)
        print("worst rel. error:", {f"{b}b/{d}": f"{e:.1e}" for (b, d), e in sorted(worst.items())},
              "all deterministic:", all(r[-1] for r in acc))
    print(f"{'fmt':>12} {'KxN':>11} {'M':>2} {'fp16':>7} {'default':>7} {'mma':>7} {'x fp16':>6} {'x dflt':>6} "
          f"{'TB/s':>5}  best")
    for r in res:
        c = r["mma_cfg"]
        print(f"{r['fmt']:>12} {r['k']:>5}x{r['n']:<5} {r['m']:>2} {r['fp16_us']:7.2f} {r['default_us']:7.2f} "
              f"{r['mma_us']:7.2f} {r['fp16_us'] / r['mma_us']:6.2f} {r['default_us'] / r['mma_us']:6.2f} "
              f"{r['mma_tb_s']:5.2f}  bn{c['block_n']} bk{c['block_k']} s{c['split_k']} w{c['num_warps']} "
              f"st{c['num_stages']}  " + " ".join(f"bk{bk} {us:.2f}" for bk, (us, _) in r["by_block_k"].items())
              + "  " + " ".join(f"st{st} {us:.2f}" for st, (us, _) in r["by_stages"].items()))


if __name__ == "__main__":
    sys.exit(main())
