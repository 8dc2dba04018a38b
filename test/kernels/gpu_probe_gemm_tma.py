"""GPU probe (not a test): the weight-only tensor-core GEMM (gemm.py) with x and the words through TMA
descriptors against the same tiles with pointer loads, and against dequantize + cuBLAS, at small and
medium batches.

    python test/kernels/gpu_probe_gemm_tma.py OUT [--m 32,64,128,256] [--formats w4g128,w8pc,...]

For each format, shape and M (time in us per call, CUDA-graph replay over weight copies that exceed the
L2 cache): the heuristic's launch, the same launch with tma=True, and a few more tiles (both loads, the
heuristic's K split, none and those of --splits); from M = 129 also the dense route. Each output is compared with the
pointer launch of the same tile (relative error) and the fp32 reference. Writes OUT/gemm_tma.log and
OUT/gemm_tma.json; prints a table of the best pointer and best TMA launch per case.
"""

import argparse
import json
import math
import os
import re
from dataclasses import replace

import torch
import torch.nn.functional as F

from torchao_gemlite.kernels.configs import GEMM_TILES, LaunchConfig, heuristic_config, m_bucket
from torchao_gemlite.kernels.dispatch import launch_weight_only
from torchao_gemlite.kernels.tuning import _weight_copies, graph_time_us
from torchao_gemlite.quant import reference_linear

FORMATS = {"w4g128": (4, 128, False, torch.float16), "w4g128-bf16": (4, 128, False, torch.bfloat16),
           "w8pc": (8, None, True, torch.float16), "w2g64": (2, 64, False, torch.float16),
           "w1g64": (1, 64, False, torch.float16)}
# extra (block_m, block_n, block_k, warps, stages) tiles beside the heuristic's; the helper probe's best at
# M >= 256: 128x128x64 w4 s4 and 128x128x128 w8 s3
EXTRA_TILES = {32: [(32, 128, 128, 4, 4), (64, 128, 128, 4, 3)], 64: [(64, 128, 128, 4, 4), (64, 128, 64, 4, 4)],
               128: [(128, 128, 64, 4, 4), (128, 128, 128, 8, 3), (64, 128, 128, 4, 4)],
               256: [(128, 128, 64, 4, 4), (128, 128, 128, 8, 3), (128, 128, 64, 8, 4)]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--m", default="32,64,128,256")
    ap.add_argument("--formats", default="w4g128,w4g128-bf16,w8pc,w2g64,w1g64")
    ap.add_argument("--shapes", default="4096x4096,4096x14336,14336x4096,8192x8192")
    ap.add_argument("--splits", default="", help="more K splits to try for every tile, e.g. 2,4")
    ap.add_argument("--tiles", default="", help="tiles instead of EXTRA_TILES, e.g. 256x128x64w8s3,128x128x64w4s4")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    log = open(os.path.join(args.out, "gemm_tma.log"), "w")
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    extra_splits = [int(s) for s in args.splits.split(",") if s]
    tiles_arg = [tuple(map(int, re.fullmatch(r"(\d+)x(\d+)x(\d+)w(\d+)s(\d+)", t).groups()))
                 for t in args.tiles.split(",") if t]

    def say(text):
        print(text, flush=True)
        log.write(text + "\n")
        log.flush()

    rows = []
    for fmt in args.formats.split(","):
        bits, group, sym, dtype = FORMATS[fmt]
        for shape in args.shapes.split(","):
            k, n = map(int, shape.split("x"))
            qw, copies = _weight_copies(n, k, bits, group, sym, dtype, "cuda")
            g = qw.fmt.group_size
            dense = [torch.randn(n, k, dtype=dtype, device="cuda") for _ in range(max(2, math.ceil(2e8 / (2 * n * k))))]
            for m in map(int, args.m.split(",")):
                x = torch.randn(m, k, dtype=dtype, device="cuda")
                ref = reference_linear(x, qw).float()
                heur = heuristic_config(m, n, k, bits, g, sms, mma=False, bf16=dtype == torch.bfloat16)
                if heur.kernel != "gemm":  # dense from M = 129: the tensor-core tile of bucket 128 as the base
                    bm, bn, bk, w, s = GEMM_TILES[128]
                    heur = LaunchConfig("gemm", bm, bn, bk, 1, num_warps=w, num_stages=s)
                bases = [heur] + [LaunchConfig("gemm", bm, bn, bk, sp, num_warps=w, num_stages=s)
                                  for bm, bn, bk, w, s in tiles_arg or EXTRA_TILES.get(min(m_bucket(m), 256), [])
                                  for sp in dict.fromkeys((heur.split_k, 1, *extra_splits))]
                row = dict(fmt=fmt, k=k, n=n, m=m, variants={})
                row["fp16_us"] = graph_time_us([lambda d=d: F.linear(x, d) for d in dense], replays=20)

                def timed(name, cfg):
                    try:
                        out = torch.full((m, n), float("nan"), dtype=dtype, device="cuda")
                        y = launch_weight_only(x, qw.qdata, qw.scale, qw.zero, None, bits, g, sym, cfg, out=out)
                        torch.cuda.synchronize()
                        err = ((y.float() - ref).norm() / ref.norm()).item()
                        us = graph_time_us([lambda c=c: launch_weight_only(x, c[0], c[1], c[2], None, bits, g, sym, cfg)
                                            for c in copies], replays=20)
                    except Exception as e:  # noqa: BLE001 - reported, the probe goes on
                        say(f"  {fmt} {shape} M={m} {name}: failed {type(e).__name__}: {str(e)[:160]}")
                        return None
                    ok = err < (2e-2 if dtype == torch.bfloat16 else 3e-3)
                    row["variants"][name] = dict(us=us, err=err, ok=ok)
                    say(f"  {fmt} {shape} M={m} {name}: {us:8.2f} us err={err:.2e}{'' if ok else ' WRONG'}")
                    return y

                if m > 128:
                    timed("dense", LaunchConfig("dense", 0, 0, 0))
                for cfg in dict.fromkeys(bases):
                    name = f"{cfg.block_m}x{cfg.block_n}x{cfg.block_k} w{cfg.num_warps} s{cfg.num_stages} split{cfg.split_k}"
                    p = timed("ptr " + name, cfg)
                    t = timed("tma " + name, replace(cfg, tma=True))
                    if p is not None and t is not None and not torch.equal(p, t):
                        say(f"    tma vs ptr differ: {((t.float() - p.float()).norm() / p.float().norm()).item():.2e}")
                say(f"  {fmt} {shape} M={m} fp16 {row['fp16_us']:.2f} us")
                rows.append(row)
    json.dump(rows, open(os.path.join(args.out, "gemm_tma.json"), "w"), indent=1)

    def best(row, prefix):
        c = {k: v["us"] for k, v in row["variants"].items() if k.startswith(prefix) and v["ok"]}
        return min(c.items(), key=lambda kv: kv[1]) if c else ("-", float("nan"))

    say("\nfmt          shape        M    fp16  dense  heur-ptr  heur-tma  best-ptr  best-tma  x(fp16/best)")
    geo = {}
    for r in rows:
        v = r["variants"]
        hp = next((x["us"] for k, x in v.items() if k.startswith("ptr ")), float("nan"))
        ht = next((x["us"] for k, x in v.items() if k.startswith("tma ")), float("nan"))
        bp, bt = best(r, "ptr "), best(r, "tma ")
        d = v.get("dense", {}).get("us", float("nan"))
        b = min(x for x in (bp[1], bt[1], d) if x == x)
        geo.setdefault((r["fmt"], r["m"]), []).append((r["fp16_us"] / hp, r["fp16_us"] / b, hp / ht))
        say(f"{r['fmt']:12s} {r['k']}x{r['n']:<6d} {r['m']:4d} {r['fp16_us']:7.1f} {d:6.1f} {hp:8.1f} {ht:9.1f} "
            f"{bp[1]:9.1f} {bt[1]:9.1f}  {r['fp16_us'] / b:.2f}  [{bt[0]}]")
    say("\ngeomean: x fp16 of the heuristic (ptr), of the best of all, heur ptr/tma time")
    for (fmt, m), vals in sorted(geo.items()):
        gm = [math.exp(sum(math.log(v[i]) for v in vals) / len(vals)) for i in range(3)]
        say(f"  {fmt:12s} M={m:4d}: heur {gm[0]:.2f}  best {gm[1]:.2f}  tma gain {gm[2]:.3f}")


if __name__ == "__main__":
    main()
