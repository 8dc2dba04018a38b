"""GPU probe for the tensor-core kernel (not a test): tile candidates x {plain, swapped operands}
x {fp32, 16-bit dequantization}, against dequantize + cuBLAS and cuBLAS fp16, for 4-bit g128.

    python test/kernels/gpu_probe_gemm.py OUTDIR [--shapes 4096x4096 ...] [--m 16 64 256]

Candidates are compiled first by a pool of processes. For each (shape, M) the best candidate
is also timed with bf16 activations. Writes OUTDIR/probe_gemm.json and prints a table last.
"""

import argparse
import json
import sys
from dataclasses import replace

import torch
import torch.nn.functional as F

from gpu_probe_gemv import precompile
from torchao_gemlite.kernels.configs import LaunchConfig, heuristic_config
from torchao_gemlite.kernels.dispatch import launch_weight_only
from torchao_gemlite.kernels.tuning import _splits, _weight_copies, graph_time_us

# (block_m, block_n, word rows a step, warps, stages); every tile is tried plain and swapped,
# each with fp32 and with 16-bit dequantization
TILES = {8: ((16, 128, 16, 4, 3), (16, 64, 16, 4, 3), (16, 256, 16, 8, 3)),
         16: ((16, 128, 16, 4, 3), (16, 64, 16, 4, 3), (16, 256, 16, 8, 3)),
         32: ((32, 128, 16, 4, 3), (32, 64, 16, 4, 3), (32, 256, 16, 8, 3)),
         64: ((64, 128, 16, 4, 3), (64, 128, 16, 8, 3), (64, 256, 16, 8, 3), (64, 64, 16, 4, 4)),
         128: ((128, 128, 16, 8, 3), (64, 128, 16, 4, 3), (128, 256, 16, 8, 3), (128, 128, 8, 8, 4)),
         256: ((128, 128, 16, 8, 3), (128, 256, 16, 8, 3), (128, 128, 8, 8, 4), (64, 256, 16, 8, 3)),
         1024: ((128, 128, 8, 8, 4), (128, 256, 8, 8, 3), (128, 256, 16, 8, 3), (256, 128, 8, 8, 3))}
TILES[4096] = TILES[1024]


def candidates(m, n, k, sms):
    out = []
    for bm, bn, rows, warps, stages in TILES[m]:
        tiles = -(-m // bm) * -(-n // bn)
        split = _splits(tiles, -(-k // (rows * 8)), sms)[0] if tiles < sms else 1
        for swap in (False, True):
            for half in (True, False):
                out.append(LaunchConfig("gemm", bm, bn, rows * 8, split, num_warps=warps, num_stages=stages,
                                        swap_ab=swap, half_mac=half))
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("outdir")
    p.add_argument("--shapes", nargs="+", default=["4096x4096", "4096x14336", "14336x4096", "8192x8192"])
    p.add_argument("--m", nargs="+", type=int, default=[8, 16, 32, 64, 128, 256, 1024, 4096])
    a = p.parse_args()
    log = open(f"{a.outdir}/probe_gemm.log", "w")
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    shapes = [tuple(int(v) for v in s.split("x")) for s in a.shapes]
    jobs = []
    for k, n in shapes:
        for m in a.m:
            cands = candidates(m, n, k, sms)
            jobs += [(k, n, m, torch.float16, cands[i:i + 4]) for i in range(0, len(cands), 4)]
            jobs += [(k, n, m, torch.bfloat16, [c for c in cands if c.half_mac])]
    print(f"precompiled {precompile(jobs)} launches", file=log, flush=True)
    rows = []
    for k, n in shapes:
        _, copies = _weight_copies(n, k, 4, 128, False, torch.float16, "cuda")
        dense = [torch.randn(n, k, dtype=torch.float16, device="cuda") for _ in range(max(2, 160 * 2**20 // (n * k * 2)))]
        for m in a.m:
            x = torch.randn(m, k, dtype=torch.float16, device="cuda")

            def run(cfg, x=x):
                return graph_time_us([lambda c=c: launch_weight_only(x, c[0], c[1], c[2], None, 4, 128, False, cfg)
                                      for c in copies], replays=20)

            fp16 = graph_time_us([lambda w=w: F.linear(x, w) for w in dense], replays=20)
            heur = heuristic_config(m, n, k, 4, 128, sms)
            heur_us = run(heur)
            dense_us = run(LaunchConfig("dense", 0, 0, 0))
            timed = {}
            for cfg in candidates(m, n, k, sms):
                try:
                    timed[cfg] = run(cfg)
                except Exception as err:
                    print(f"  skip {cfg}: {type(err).__name__}: {str(err)[:200]}", file=log, flush=True)
                    continue
                print(f"  {k}x{n} M={m} {timed[cfg]:8.2f} us {cfg}", file=log, flush=True)

            def best(pred):
                hits = [(us, c) for c, us in timed.items() if pred(c)]
                return min(hits, key=lambda t: t[0]) if hits else (float("nan"), None)

            variants = {name: best(pred) for name, pred in (
                ("plain32", lambda c: not c.swap_ab and not c.half_mac), ("plain16", lambda c: not c.swap_ab and c.half_mac),
                ("swap32", lambda c: c.swap_ab and not c.half_mac), ("swap16", lambda c: c.swap_ab and c.half_mac))}
            top_us, top = min(variants.values(), key=lambda t: t[0])
            bf16_us = run(top, x.to(torch.bfloat16)) if top is not None else float("nan")
            row = dict(k=k, n=n, m=m, fp16_us=fp16, heuristic_us=heur_us, heuristic=heur.to_dict(), dense_us=dense_us,
                       best_us=top_us, best=top.to_dict(), bf16_best_us=bf16_us,
                       variants={name: (us, c.to_dict() if c else None) for name, (us, c) in variants.items()})
            rows.append(row)
            print(json.dumps(row), file=log, flush=True)
    json.dump(rows, open(f"{a.outdir}/probe_gemm.json", "w"), indent=1)
    print(f"{'KxN':>11} {'M':>4} {'fp16':>6} {'heur':>6} {'dense':>6} {'pl32':>6} {'pl16':>6} {'sw32':>6} {'sw16':>6} "
          f"{'bf16':>6} {'x fp16':>6}  best")
    for r in rows:
        v = r["variants"]
        b = r["best"]
        print(f"{r['k']:>5}x{r['n']:<5} {r['m']:>4} {r['fp16_us']:6.1f} {r['heuristic_us']:6.1f} {r['dense_us']:6.1f} "
              + " ".join(f"{v[name][0]:6.1f}" for name in ("plain32", "plain16", "swap32", "swap16"))
              + f" {r['bf16_best_us']:6.1f} {r['fp16_us'] / min(r['best_us'], r['dense_us']):6.2f}  "
              f"bm{b['block_m']} bn{b['block_n']} bk{b['block_k']} s{b['split_k']} w{b['num_warps']} "
              f"st{b['num_stages']}{' swap' if b['swap_ab'] else ''}{' h16' if b['half_mac'] else ''}")


if __name__ == "__main__":
    sys.exit(main())
