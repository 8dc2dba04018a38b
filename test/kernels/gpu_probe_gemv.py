"""GPU probe for the decode kernel (not a test): the packed 16-bit GEMV path against the fp32 one.

    python test/kernels/gpu_probe_gemv.py OUTDIR [--shapes 4096x4096 ...]

1. Accuracy of the GEMV, packed path and fp32 path, against the reference linear for
   every bit width x asym/sym x fp16/bf16 at M = 1, 3, 4 (relative Frobenius error).
2. Time (CUDA-graph replay over weight copies rotated beyond L2) of cuBLAS fp16, the
   best GEMV configuration of a candidate sweep with the packed path, the same with bf16
   activations, the fp32 path
   at the shipped configuration, and the tensor-core kernel, for 4-bit g128 at M = 1..8.
   The candidates are compiled first by a pool of processes (Triton's disk cache).
Writes OUTDIR/probe_gemv.json (best configs, timings) and prints a table last.
"""

import argparse
import itertools
import json
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import torch
import torch.nn.functional as F

from torchao_gemlite.kernels.configs import LaunchConfig, choose_config, heuristic_config
from torchao_gemlite.kernels.dispatch import launch_weight_only
from torchao_gemlite.kernels.tuning import GEMV_CANDIDATES, _splits, _weight_copies, graph_time_us
from torchao_gemlite.quant import quantize_weight, reference_linear


def accuracy(log):
    rows = []
    for bits, sym, dtype, m in itertools.product((1, 2, 4, 8), (False, True), (torch.float16, torch.bfloat16),
                                                  (1, 3, 4)):
        gen = torch.Generator().manual_seed(bits * 100 + m)
        k, n = 2048, 1000
        w = torch.randn(n, k, generator=gen).to(dtype).cuda()
        qw = quantize_weight(w, bits, 64 if bits < 8 else None, sym)
        x = torch.randn(m, k, generator=gen).to(dtype).cuda()
        ref = reference_linear(x, qw, None).float()
        cfg = heuristic_config(max(m, 1), n, k, bits, qw.fmt.group_size)
        cfg = LaunchConfig("gemv", 4 if m > 2 else cfg.block_m, cfg.block_n, cfg.block_k, cfg.split_k)
        errs = []
        for half in (True, False):
            out = torch.full((m, n), float("nan"), dtype=dtype, device="cuda")
            y = launch_weight_only(x, qw.qdata, qw.scale, qw.zero, None, bits, qw.fmt.group_size, sym,
                                   replace(cfg, half_mac=half), out=out).float()
            errs.append(float("inf") if torch.isnan(y).any() else ((y - ref).norm() / ref.norm()).item())
        rows.append((bits, sym, str(dtype)[6:], m, *errs))
        log(f"acc bits={bits} sym={sym} {dtype} M={m}: packed {errs[0]:.2e}  fp32 {errs[1]:.2e}")
    return rows


def gemv_candidates(m, n, k, sm_count):
    bm = 1 << max(0, (m - 1).bit_length())
    out = []
    for bn, rows, warps, stages in GEMV_CANDIDATES:
        bk = rows * 8
        if bm * rows * bn > 16384 * warps // 4:
            continue
        splits = _splits(-(-n // bn), -(-k // bk), sm_count)
        for split in sorted({1, splits[0], splits[len(splits) // 2]}):
            out.append(LaunchConfig("gemv", bm, bn, bk, split, num_warps=warps, num_stages=stages))
    return out


def _compile_job(job):
    """Worker: run each config once on a fresh weight of the shape (fills Triton's disk cache)."""
    k, n, m, dtype, cfgs = job
    qw = quantize_weight(torch.randn(n, k, dtype=torch.float16, device="cuda"), 4, 128, False)  # as the timing
    x = torch.randn(m, k, dtype=dtype, device="cuda")
    for cfg in cfgs:
        try:
            launch_weight_only(x, qw.qdata, qw.scale, qw.zero, None, 4, 128, False, cfg)
        except Exception:  # reported by the timing pass
            pass
    torch.cuda.synchronize()
    return len(cfgs)


def precompile(jobs, workers=16):
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        return sum(pool.map(_compile_job, jobs))


def timing(shapes, m_values, log):
    props = torch.cuda.get_device_properties(0)
    sms = props.multi_processor_count
    jobs = []
    for k, n in shapes:
        for m in m_values:
            cands = gemv_candidates(m, n, k, sms)
            cands += [LaunchConfig("gemm", 16, 128, 256, heuristic_config(16, n, k, 4, 128).split_k)]
            for i in range(0, len(cands), 4):
                jobs.append((k, n, m, torch.float16, cands[i:i + 4]))
        jobs.append((k, n, 1, torch.bfloat16, gemv_candidates(1, n, k, sms)))
    log(f"precompiled {precompile(jobs)} launches")
    results = []
    for k, n in shapes:
        qw, copies = _weight_copies(n, k, 4, 128, False, torch.float16, "cuda")
        nbytes = sum(t.numel() * t.element_size() for t in copies[0] if t is not None)
        dense = [torch.randn(n, k, dtype=torch.float16, device="cuda") for _ in range(max(2, 160 * 2**20 // (n * k * 2)))]
        for m in m_values:
            x = torch.randn(m, k, dtype=torch.float16, device="cuda")

            def run(cfg, x=x):
                return graph_time_us([lambda c=c: launch_weight_only(x, c[0], c[1], c[2], None, 4, 128, False, cfg)
                                      for c in copies], replays=20)

            fp16 = graph_time_us([lambda w=w: F.linear(x, w) for w in dense], replays=20)
            best = None
            for cfg in gemv_candidates(m, n, k, sms):
                try:
                    us = run(cfg)
                except Exception as err:
                    log(f"  skip {cfg}: {type(err).__name__}: {str(err)[:200]}")
                    continue
                log(f"  {k}x{n} M={m} {us:7.2f} us {cfg}")
                if best is None or us < best[1]:
                    best = (cfg, us)
            bf16 = None
            if m == 1:  # bf16 activations at the fp16 winner and its neighbours
                xb = x.to(torch.bfloat16)
                bf16 = min(run(replace(c, block_m=1), xb) for c in gemv_candidates(1, n, k, sms)
                           if (c.block_n, c.num_warps) == (best[0].block_n, best[0].num_warps))
            shipped = choose_config(m, n, k, 4, 128, "float16", props.name, sms)
            fp32_cfg = shipped if shipped.kernel == "gemv" else heuristic_config(min(m, 2), n, k, 4, 128)
            fp32_cfg = replace(fp32_cfg, block_m=1 << max(0, (m - 1).bit_length()), half_mac=False)
            fp32 = run(fp32_cfg)
            gemm_cfg = LaunchConfig("gemm", 16, 128, 256, heuristic_config(16, n, k, 4, 128).split_k)
            gemm = run(gemm_cfg)
            row = dict(k=k, n=n, m=m, fp16_us=fp16, packed_us=best[1], packed_cfg=best[0].to_dict(), fp32_us=fp32,
                       fp32_cfg=fp32_cfg.to_dict(), gemm_us=gemm, bf16_us=bf16,
                       tb_s=nbytes / best[1] / 1e6)
            results.append(row)
            log(f"{k}x{n} M={m}: fp16 {fp16:.2f} packed {best[1]:.2f}  ({best[0]}) "
                f"bf16 {bf16} fp32 {fp32:.2f} gemm {gemm:.2f}")
    return results


def main():
    p = argparse.ArgumentParser()
    p.add_argument("outdir")
    p.add_argument("--shapes", nargs="+", default=["4096x4096", "4096x14336", "14336x4096", "8192x8192"])
    p.add_argument("--m", nargs="+", type=int, default=[1, 2, 4])
    p.add_argument("--no-accuracy", dest="accuracy", action="store_false", help="timing only (the GPU tests check accuracy)")
    a = p.parse_args()
    logf = open(f"{a.outdir}/probe_gemv.log", "w")

    def log(msg):
        print(msg, file=logf, flush=True)

    acc = accuracy(log) if a.accuracy else []
    shapes = [tuple(int(v) for v in s.split("x")) for s in a.shapes]
    res = timing(shapes, a.m, log)
    json.dump(dict(device=torch.cuda.get_device_name(), accuracy=acc, timing=res),
              open(f"{a.outdir}/probe_gemv.json", "w"), indent=1)
    worst = {}
    for bits, sym, dt, m, packed, fp32 in acc:
        worst[(bits, dt)] = max(worst.get((bits, dt), 0), packed)
    print("worst packed-path rel. error:", {f"{b}b/{d}": f"{e:.1e}" for (b, d), e in worst.items()})
    print(f"{'KxN':>11} {'M':>2} {'fp16':>7} {'packed':>7} {'bf16':>7} {'fp32':>7} {'gemm':>7} "
          f"{'x fp16':>6} {'TB/s':>5}  best")
    for r in res:
        c = r["packed_cfg"]
        bf16 = f"{r['bf16_us']:7.2f}" if r["bf16_us"] else f"{'-':>7}"
        print(f"{r['k']:>5}x{r['n']:<5} {r['m']:>2} {r['fp16_us']:7.2f} {r['packed_us']:7.2f} "
              f"{bf16} {r['fp32_us']:7.2f} {r['gemm_us']:7.2f} {r['fp16_us'] / r['packed_us']:6.2f} {r['tb_s']:5.2f}  "
              f"bn{c['block_n']} bk{c['block_k']} s{c['split_k']} w{c['num_warps']} st{c['num_stages']}")


if __name__ == "__main__":
    sys.exit(main())
