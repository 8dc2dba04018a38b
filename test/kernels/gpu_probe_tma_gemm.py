"""GPU probe (not a test): the A8W8 GEMM on TMA descriptors (dynamic_tma_gemm.py) against the pointer
GEMM of dynamic_gemm.py, torch._int_mm / torch._scaled_mm and cuBLAS fp16, on quantized inputs.

    python test/kernels/gpu_probe_tma_gemm.py OUT [--m 64,256,1024,4096] [--kinds int8,fp8] [--shapes 4096x4096,...]

For each kind, shape and M: the pointer GEMM with the heuristic's config and with each prefill tile
unsplit, the TMA GEMM for each candidate tile, persistent (one program an SM, flattened loops or not)
and one program a tile, the torch anchors and the activation quantization alone; time in us per call
(CUDA-graph replay over weight copies that exceed the L2 cache). Each variant's output is checked
against the heuristic pointer GEMM (int8: bit-identical; fp8: within 1e-2 relative). Writes
OUT/tma_gemm.log and OUT/tma_gemm.json and prints a table of the best variant of each family.
"""

import argparse
import json
import math
import os

import torch

from torchao_gemlite.kernels.act_quant import quantize_per_token
from torchao_gemlite.kernels.dynamic_configs import DynamicGemmConfig, pick_config
from torchao_gemlite.kernels.dynamic_gemm import dynamic_gemm
from torchao_gemlite.kernels.dynamic_tma_gemm import TmaGemmCall, sm_count
from torchao_gemlite.kernels.tuning import graph_time_us
from torchao_gemlite.quant import quantize_rowwise_fp8, quantize_rowwise_int8

POINTER_TILES = [(128, 256, 128, 8, 3), (256, 128, 128, 8, 3), (128, 128, 128, 8, 4), (64, 128, 128, 4, 4)]
TMA_TILES = [(128, 256, 128, 8, 3), (128, 256, 64, 8, 4), (128, 128, 128, 8, 4), (128, 128, 128, 4, 4),
             (256, 128, 128, 8, 3), (128, 128, 64, 4, 5), (64, 256, 128, 4, 4), (64, 128, 128, 4, 4),
             (128, 64, 128, 4, 4)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--m", default="64,256,1024,4096")
    ap.add_argument("--kinds", default="int8,fp8")
    ap.add_argument("--shapes", default="4096x4096,4096x14336,14336x4096,8192x8192")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    log = open(os.path.join(args.out, "tma_gemm.log"), "w")

    def say(text):
        print(text, flush=True)
        log.write(text + "\n")

    dev = torch.device("cuda")
    sms = sm_count(dev)
    results = []
    for kind in args.kinds.split(","):
        quant = quantize_rowwise_fp8 if kind == "fp8" else quantize_rowwise_int8
        qdtype = torch.float8_e4m3fn if kind == "fp8" else torch.int8
        for shape in args.shapes.split(","):
            k, n = map(int, shape.split("x"))
            w = torch.randn(n, k, device=dev) * 0.02
            wq, ws = quant(w)
            ws1 = ws.reshape(n)
            copies = max(2, math.ceil(200e6 / (n * k)))
            wqs = [wq.clone() for _ in range(copies)]
            dense = [w.half() for _ in range(max(2, math.ceil(200e6 / (2 * n * k))))]
            for m in map(int, args.m.split(",")):
                x = torch.randn(m, k, dtype=torch.half, device=dev)
                xq, xs = quantize_per_token(x, qdtype)
                xs1 = xs.reshape(m)
                out = torch.empty(m, n, dtype=torch.half, device=dev)
                ref = dynamic_gemm(xq, xs, wq, ws, None, torch.half)
                row = dict(kind=kind, k=k, n=n, m=m, variants={})

                def timed(name, make):  # make(weight) -> closure
                    try:
                        got = make(wq)()
                        got = out if got is None else got
                        torch.cuda.synchronize()
                        err = ((got.float() - ref.float()).norm() / ref.float().norm()).item()
                        same = torch.equal(got, ref)
                        t = graph_time_us([make(c) for c in wqs], replays=20)
                    except Exception as e:  # noqa: BLE001 - a variant that does not compile is reported
                        say(f"  {kind} {shape} M={m} {name}: failed {type(e).__name__}: {str(e)[:200]}")
                        return
                    ok = same if kind == "int8" else err < 1e-2
                    row["variants"][name] = dict(us=t, err=err, same=same, ok=ok)
                    say(f"  {kind} {shape} M={m} {name}: {t:8.2f} us err={err:.2e} same={same}{'' if ok else ' WRONG'}")

                cfg = pick_config(m, n, k, kind)
                timed(f"ptr-heur {cfg.BLOCK_M}x{cfg.BLOCK_N}x{cfg.BLOCK_K} w{cfg.num_warps} s{cfg.num_stages} "
                      f"split{cfg.SPLIT_K}", lambda c: lambda: dynamic_gemm(xq, xs, c, ws, None, torch.half, out=out))
                for bm, bn, bk, wp, st in POINTER_TILES:
                    c1 = DynamicGemmConfig(bm, bn, bk, 1, wp, st)
                    timed(f"ptr {bm}x{bn}x{bk} w{wp} s{st}",
                          lambda c, c1=c1: lambda: dynamic_gemm(xq, xs, c, ws, None, torch.half, c1, out=out))
                for bm, bn, bk, wp, st in TMA_TILES:
                    tiles = -(-m // bm) * -(-n // bn)
                    for label, programs, flat in (("pers-flat", sms, True), ("pers", sms, False),
                                                  ("per-tile", tiles, False)):
                        if label != "per-tile" and tiles <= sms:
                            continue  # same grid as per-tile
                        call = TmaGemmCall(m, n, k, 1, (n, 1), kind == "fp8", False, bm, bn, bk, wp, st, programs,
                                           flatten=flat)
                        timed(f"tma {label} {bm}x{bn}x{bk} w{wp} s{st}",
                              lambda c, call=call: lambda: call((xq, xs1, c, ws1, xs1, out, out)))
                if kind == "int8" and m > 16:
                    timed("torch._int_mm (int32 out, no scaling)", lambda c: lambda: torch._int_mm(xq, c.t()))
                if kind == "fp8":
                    timed("torch._scaled_mm rowwise", lambda c: lambda: torch._scaled_mm(
                        xq, c.t(), scale_a=xs, scale_b=ws1.reshape(1, n), out_dtype=torch.half))
                row["fp16_us"] = graph_time_us([lambda d=d: torch.nn.functional.linear(x, d) for d in dense],
                                               replays=20)
                row["quant_us"] = graph_time_us([lambda: quantize_per_token(x, qdtype)] * 4, replays=20)
                say(f"  {kind} {shape} M={m} fp16 {row['fp16_us']:.2f} us, act quant {row['quant_us']:.2f} us")
                results.append(row)
    with open(os.path.join(args.out, "tma_gemm.json"), "w") as f:
        json.dump(results, f, indent=1)

    say("\nkind KxN M | fp16 | quant | ptr heur | best ptr | best tma (variant) | torch | fp16/(quant+best)")
    for r in results:
        v = {k: d for k, d in r["variants"].items() if d["ok"]}
        def best(prefix):
            cand = [(d["us"], k) for k, d in v.items() if k.startswith(prefix)]
            return min(cand) if cand else (float("nan"), "-")
        heur = best("ptr-heur")[0]
        bp = best("ptr ")
        bt = best("tma")
        torch_t = best("torch")[0]
        ours = min(bp[0], bt[0], heur)
        say(f"{r['kind']} {r['k']}x{r['n']} {r['m']} | {r['fp16_us']:.1f} | {r['quant_us']:.1f} | {heur:.1f} | "
            f"{bp[0]:.1f} | {bt[0]:.1f} ({bt[1]}) | {torch_t:.1f} | {r['fp16_us'] / (r['quant_us'] + ours):.2f}x")


if __name__ == "__main__":
    main()
