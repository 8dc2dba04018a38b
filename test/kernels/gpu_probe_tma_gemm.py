"""GPU probe (not a test): the TMA-descriptor GEMM (dynamic_tma_gemm.py) against the pointer GEMM of
dynamic_gemm.py, torch._int_mm / torch._scaled_mm and cuBLAS fp16, on quantized inputs.

    python test/kernels/gpu_probe_tma_gemm.py OUT [--m 256,1024,4096] [--kinds int8,fp8,a8w4] [--shapes 4096x4096,...]

For each kind, shape and M (time in us per call, CUDA-graph replay over weight copies that exceed the
L2 cache):
  * int8 / fp8: the heuristic's launch (pick_config), the pointer GEMM unsplit for a few tiles, the TMA
    GEMM for each candidate tile (M <= 64: swapped and plain tiles, each with the automatic K split,
    none and twice that; up to M = 512 also split in two), the torch anchor and the activation
    quantization alone;
  * a8w4 (g128): the GEMM on int8 codes [N, K] with group scales (what dequant.w4_codes gives; the unpack is
    not timed): the heuristic's launch (pick_codes_config), the pointer GEMM unsplit for a few tiles and the
    TMA GEMM for each tile.
Every output is checked against the heuristic's (int8: bit-identical; a8w4: within 1e-5, fp32 group sums
summed in another order where a split differs; fp8: within 1e-2); the torch._int_mm anchor is not.
Writes OUT/tma_gemm.log and OUT/tma_gemm.json and prints a table of the best of each family.
"""

import argparse
import json
import math
import os

import torch

from torchao_gemlite.kernels.act_quant import quantize_per_token
from torchao_gemlite.kernels.dequant import w4_codes
from torchao_gemlite.kernels.dynamic_configs import DynamicGemmConfig, auto_split_k, pick_codes_config, pick_config
from torchao_gemlite.kernels.dynamic_gemm import _launch, dynamic_gemm
from torchao_gemlite.kernels.tuning import graph_time_us
from torchao_gemlite.quant import quantize_rowwise_fp8, quantize_rowwise_int8, quantize_weight

POINTER_TILES = [(128, 256, 128, 8, 3), (128, 128, 128, 8, 4), (64, 128, 128, 4, 4)]
TMA_TILES = [(128, 256, 128, 8, 3), (256, 128, 128, 8, 3), (128, 128, 128, 8, 4), (128, 128, 128, 4, 4),
             (64, 256, 128, 4, 4), (64, 128, 128, 4, 4)]
# M <= 64 (--small): (BLOCK_M, BLOCK_N, BLOCK_K, warps, stages, swapped), each with the automatic split,
# none and twice the automatic one; the pointer kernel's decode and small tiles are the reference
SMALL_TMA_TILES = [(16, 128, 256, 4, 4, True), (16, 64, 256, 4, 4, True), (16, 256, 128, 8, 3, True),
                   (32, 128, 256, 4, 3, True), (64, 64, 256, 4, 3, False), (64, 128, 128, 4, 4, False)]
GROUP = 128


def _name(c: DynamicGemmConfig) -> str:
    return (f"{'tma' if c.TMA else 'ptr'} {c.BLOCK_M}x{c.BLOCK_N}x{c.BLOCK_K} w{c.num_warps} s{c.num_stages} "
            f"split{c.SPLIT_K}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--m", default="256,1024,4096")
    ap.add_argument("--kinds", default="int8,fp8,a8w4")
    ap.add_argument("--shapes", default="4096x4096,4096x14336,14336x4096,8192x8192")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    log = open(os.path.join(args.out, "tma_gemm.log"), "w")

    def say(text):
        print(text, flush=True)
        log.write(text + "\n")

    dev = torch.device("cuda")
    results = []
    for kind in args.kinds.split(","):
        qdtype = torch.float8_e4m3fn if kind == "fp8" else torch.int8
        for shape in args.shapes.split(","):
            k, n = map(int, shape.split("x"))
            w = torch.randn(n, k, device=dev) * 0.02
            if kind == "a8w4":
                qw = quantize_weight(w.half(), 4, GROUP, True)
                wq, ws = w4_codes(qw.qdata), qw.scale  # int8 codes (q - 8) [N, K], scales [K / G, N]
                sg, sn = ws.stride(0), ws.stride(1)
            else:
                wq, ws = (quantize_rowwise_fp8 if kind == "fp8" else quantize_rowwise_int8)(w)
                ws = ws.reshape(n)
                sg, sn = 0, 1
            group_k = GROUP if kind == "a8w4" else 0
            wqs = [wq.clone() for _ in range(max(2, math.ceil(200e6 / (n * k))))]
            dense = [w.half() for _ in range(max(2, math.ceil(200e6 / (2 * n * k))))]
            for m in map(int, args.m.split(",")):
                x = torch.randn(m, k, dtype=torch.half, device=dev)
                xq, xs = quantize_per_token(x, qdtype)
                xs1 = xs.reshape(m)
                out = torch.empty(m, n, dtype=torch.half, device=dev)
                row = dict(kind=kind, k=k, n=n, m=m, variants={})

                def gemm(c, cfg):
                    return lambda: _launch(xq, xs1, c, ws, sg, sn, None, out, n, k, cfg, fp8=kind == "fp8",
                                           w4=False, group_k=group_k)

                heur = pick_codes_config(m, n, k, GROUP) if kind == "a8w4" else pick_config(m, n, k, kind)
                gemm(wq, heur)()
                ref = out.clone()

                def timed(name, make):  # make(weight) -> closure writing `out`
                    try:
                        out.fill_(float("nan"))
                        make(wq)()
                        torch.cuda.synchronize()
                        err = ((out.float() - ref.float()).norm() / ref.float().norm()).item()
                        same = torch.equal(out, ref)
                        t = graph_time_us([make(c) for c in wqs], replays=20)
                    except Exception as e:  # noqa: BLE001 - a variant that does not compile is reported
                        say(f"  {kind} {shape} M={m} {name}: failed {type(e).__name__}: {str(e)[:200]}")
                        return
                    if name.startswith("torch._int_mm"):
                        ok = True  # an anchor: int32 out, no scaling, not compared
                    else:  # int8: exact sums; a8w4: fp32 group sums, in another order where a split differs
                        ok = same if kind == "int8" else err < (1e-5 if kind == "a8w4" else 1e-2)
                    row["variants"][name] = dict(us=t, err=err, same=same, ok=ok)
                    say(f"  {kind} {shape} M={m} {name}: {t:8.2f} us err={err:.2e} same={same}{'' if ok else ' WRONG'}")

                timed("heur " + _name(heur), lambda c: gemm(c, heur))
                for bm, bn, bk, wp, st in POINTER_TILES if m > 64 else ():
                    cfg = DynamicGemmConfig(bm, bn, bk, 1, wp, st)
                    timed(_name(cfg), lambda c, cfg=cfg: gemm(c, cfg))
                if m <= 64:
                    for bm, bn, bk, wp, st, swap in SMALL_TMA_TILES:
                        if bm < m and not swap:
                            continue
                        auto = auto_split_k(m, n, k, bm, bn, bk)
                        for split in dict.fromkeys((auto, 1, 2 * auto)):
                            cfg = DynamicGemmConfig(bm, bn, bk, split, wp, st, SWAP_AB=swap, TMA=True)
                            timed(_name(cfg) + (" swap" if swap else ""), lambda c, cfg=cfg: gemm(c, cfg))
                else:
                    for bm, bn, bk, wp, st in TMA_TILES:
                        for split in (1, 2) if m <= 512 else (1,):
                            cfg = DynamicGemmConfig(bm, bn, bk, split, wp, st, TMA=True)
                            timed(_name(cfg), lambda c, cfg=cfg: gemm(c, cfg))
                if kind == "int8":
                    timed("torch._int_mm (int32 out, no scaling)", lambda c: lambda: torch._int_mm(xq, c.t()))
                if kind == "fp8":
                    timed("torch._scaled_mm rowwise", lambda c: lambda: out.copy_(torch._scaled_mm(
                        xq, c.t(), scale_a=xs, scale_b=ws.reshape(1, n), out_dtype=torch.half)))
                row["fp16_us"] = graph_time_us([lambda d=d: torch.nn.functional.linear(x, d) for d in dense],
                                               replays=20)
                row["quant_us"] = graph_time_us([lambda: quantize_per_token(x, qdtype)] * 4, replays=20)
                say(f"  {kind} {shape} M={m} fp16 {row['fp16_us']:.2f} us, act quant {row['quant_us']:.2f} us")
                results.append(row)
    with open(os.path.join(args.out, "tma_gemm.json"), "w") as f:
        json.dump(results, f, indent=1)

    say("\nkind KxN M | fp16 | quant | heuristic | best ptr | best tma (variant) | torch | fp16/(quant+heuristic)")
    for r in results:
        v = {k: d for k, d in r["variants"].items() if d["ok"]}

        def best(prefix):
            cand = [(d["us"], k) for k, d in v.items() if k.startswith(prefix)]
            return min(cand) if cand else (float("nan"), "-")
        heur = best("heur")[0]
        say(f"{r['kind']} {r['k']}x{r['n']} {r['m']} | {r['fp16_us']:.1f} | {r['quant_us']:.1f} | {heur:.1f} | "
            f"{best('ptr')[0]:.1f} | {best('tma')[0]:.1f} ({best('tma')[1]}) | {best('torch')[0]:.1f} | "
            f"{r['fp16_us'] / (r['quant_us'] + heur):.2f}x")


if __name__ == "__main__":
    main()
