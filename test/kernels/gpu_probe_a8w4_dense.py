"""GPU probe (not a test): A8W4 at large M through int8 codes ([N, K], unpacked once per call by
dequant.w4_codes) and the int8 GEMM with group scales, against the W4 path that unpacks in the GEMM.

    python test/kernels/gpu_probe_a8w4_dense.py [M,M,...]   (default 64,256,1024,4096)

Prints, per shape and M: the W4 path, the unpack alone, the int8-codes GEMM for each candidate tile
(bit-identical to the W4 path is checked), the A8W8 int8 GEMM and cuBLAS fp16, in us (CUDA graphs).
"""

import sys

import torch

from torchao_gemlite.kernels.act_quant import quantize_per_token
from torchao_gemlite.kernels.dequant import w4_codes
from torchao_gemlite.kernels.dynamic_configs import _TILES, DynamicGemmConfig, _regime, auto_split_k, pick_config
from torchao_gemlite.kernels.dynamic_gemm import _launch, a8w4_gemm, dynamic_gemm
from torchao_gemlite.kernels.tuning import graph_time_us
from torchao_gemlite.quant import quantize_rowwise_int8, quantize_weight

SHAPES = [(4096, 4096), (4096, 14336), (14336, 4096), (8192, 8192)]
M_VALUES = [int(v) for v in sys.argv[1].split(",")] if len(sys.argv) > 1 else [64, 256, 1024, 4096]


def candidates(m, n, k):
    tiles = _TILES[(_regime(m), True)] + _TILES[(_regime(m), False)]
    out = []
    for bm, bn, bk, warps, stages, *_ in tiles:
        cfg = DynamicGemmConfig(bm, bn, bk, auto_split_k(m, n, k, bm, bn, min(bk, 128)), warps, stages)
        if cfg not in out:
            out.append(cfg)
    return out


def main() -> None:
    rows = []
    for k, n in SHAPES:
        w = torch.randn(n, k, device="cuda") * 0.02
        qw = quantize_weight(w.half(), 4, 128, True)
        wq, ws = quantize_rowwise_int8(w)
        dense = w.half()
        for m in M_VALUES:
            x = torch.randn(m, k, dtype=torch.half, device="cuda")
            xq, xs = quantize_per_token(x, torch.int8)
            xs1 = xs.reshape(m)
            w4_cfg = pick_config(m, n, k, "a8w4")  # a config keeps a8w4_gemm on the packed words
            ref = a8w4_gemm(xq, xs, qw.qdata, qw.scale, None, 128, torch.half, w4_cfg)
            codes = w4_codes(qw.qdata)
            t_w4 = graph_time_us([lambda: a8w4_gemm(xq, xs, qw.qdata, qw.scale, None, 128, torch.half, w4_cfg)] * 5)
            t_unpack = graph_time_us([lambda: w4_codes(qw.qdata)] * 5)
            best = best_w4 = None
            for cfg in candidates(m, n, k):
                try:
                    t = graph_time_us([lambda c=cfg: a8w4_gemm(xq, xs, qw.qdata, qw.scale, None, 128, torch.half, c)] * 5)
                    print(f"{k}x{n} M={m} W4 path {cfg} {t:8.1f} us", flush=True)
                    if best_w4 is None or t < best_w4[0]:
                        best_w4 = (t, cfg)
                except Exception as e:  # noqa: BLE001 - a tile that does not compile is skipped
                    print("skip W4", cfg, type(e).__name__, str(e)[:80])
                out = torch.full((m, n), float("nan"), dtype=torch.half, device="cuda")
                try:
                    _launch(xq, xs1, codes, qw.scale, qw.scale.stride(0), qw.scale.stride(1), None, out, n, k, cfg,
                            fp8=False, w4=False, group_k=128)
                except Exception as e:  # noqa: BLE001 - a tile that does not compile is skipped
                    print("skip", cfg, type(e).__name__, str(e)[:80])
                    continue
                same = torch.equal(out, ref)
                t = graph_time_us([lambda c=cfg, o=out: _launch(xq, xs1, codes, qw.scale, qw.scale.stride(0),
                                                                qw.scale.stride(1), None, o, n, k, c, fp8=False,
                                                                w4=False, group_k=128)] * 5)
                print(f"{k}x{n} M={m} {cfg} {t:8.1f} us equal={same}", flush=True)
                if best is None or t < best[0]:
                    best = (t, cfg, same)
            t_int8 = graph_time_us([lambda: dynamic_gemm(xq, xs, wq, ws, None, torch.half)] * 5)
            t_fp16 = graph_time_us([lambda: torch.nn.functional.linear(x, dense)] * 5)
            rows.append((k, n, m, t_fp16, t_w4, t_unpack, best, t_int8, best_w4))
    def tile(c):
        return f"{c.BLOCK_M}x{c.BLOCK_N}x{c.BLOCK_K} w{c.num_warps} s{c.num_stages} split{c.SPLIT_K}"

    print("\nK x N, M: fp16 | W4 path heuristic | W4 path best (tile) | unpack + best codes GEMM (tile) | A8W8 int8 | "
          "fp16 over: W4 heuristic, W4 best, unpack+codes")
    for k, n, m, t16, tw4, tun, best, ti8, best_w4 in rows:
        t, cfg, same = best
        print(f"{k}x{n} M={m:5d}: {t16:7.1f} | {tw4:7.1f} | {best_w4[0]:7.1f} ({tile(best_w4[1])}) | {tun:5.1f} + {t:7.1f} "
              f"({tile(cfg)}, equal={same}) | {ti8:7.1f} | {t16 / tw4:.2f} {t16 / best_w4[0]:.2f} {t16 / (tun + t):.2f}")


if __name__ == "__main__":
    main()
