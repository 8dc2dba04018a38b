"""GPU probe (not a test): the tensor-core GEMM before and after a change, same launches, same run.

    python test/kernels/gpu_probe_gemm_ab.py OUTDIR

Needs test/kernels/_gemm_before.py (the previous gemm.py with absolute imports, not committed).
Times each launch with the previous kernel and the current one (CUDA-graph replay over weight copies
rotated beyond L2) for 8/4/2/1-bit at M = 16..256 on the Llama shapes, against cuBLAS fp16.
"""

import math
import sys

import torch
import torch.nn.functional as F

import _gemm_before
from torchao_gemlite.kernels import dispatch
from torchao_gemlite.kernels.configs import LaunchConfig, heuristic_config
from torchao_gemlite.kernels.launch import FastLauncher
from torchao_gemlite.kernels.tuning import _weight_copies, graph_time_us

FORMATS = {"w4g128": (4, 128, False), "w8pc": (8, None, True), "w2g64": (2, 64, False), "w1g64": (1, 64, False)}


def main():
    out = sys.argv[1]
    log = open(f"{out}/probe_gemm_ab.log", "w")
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    after = dispatch._GEMM
    before = FastLauncher(_gemm_before.gemm_kernel)
    rows = []
    for k, n in ((4096, 4096), (4096, 14336), (14336, 4096), (8192, 8192)):
        dense = [torch.randn(n, k, dtype=torch.float16, device="cuda") for _ in range(max(2, 160 * 2**20 // (n * k * 2)))]
        for name, (bits, gs, sym) in FORMATS.items():
            qw, copies = _weight_copies(n, k, bits, gs, sym, torch.float16, "cuda")
            group = qw.fmt.group_size
            for m in (16, 32, 64, 128, 256):
                x = torch.randn(m, k, dtype=torch.float16, device="cuda")
                fp16 = graph_time_us([lambda w=w: F.linear(x, w) for w in dense], replays=20)
                cfgs = [heuristic_config(m, n, k, bits, group, sms, mma=False)] if m <= 128 else [
                    LaunchConfig("gemm", 128, 128, 64, 1, num_warps=8, num_stages=4),
                    LaunchConfig("gemm", 128, 128, 128, 1, num_warps=8, num_stages=3),
                    LaunchConfig("gemm", 128, 256, 64, 1, num_warps=8, num_stages=3)]
                for cfg in cfgs:
                    times = {}
                    for label, launcher in (("before", before), ("after", after)):
                        dispatch._GEMM = launcher
                        try:
                            times[label] = graph_time_us([lambda c=c: dispatch.launch_weight_only(
                                x, c[0], c[1], c[2], None, bits, group, sym, cfg) for c in copies], replays=20)
                        except Exception as err:  # noqa: BLE001 - a probe reports and goes on
                            times[label] = math.nan
                            print(f"{name} {k}x{n} M={m} {label}: {type(err).__name__}: {str(err)[:300]}", file=log)
                    dispatch._GEMM = after
                    row = (name, k, n, m, cfg.block_m, cfg.block_n, cfg.block_k, cfg.split_k, fp16, times["before"],
                           times["after"])
                    rows.append(row)
                    print(row, file=log, flush=True)
    print(f"{'fmt':>7} {'KxN':>11} {'M':>4} {'tile':>14} {'fp16':>7} {'before':>7} {'after':>7} {'gain':>5} {'x fp16':>6}")
    gains = {}
    for name, k, n, m, bm, bn, bk, sp, fp16, b, a in rows:
        print(f"{name:>7} {k:>5}x{n:<5} {m:>4} {bm:>3}x{bn:<3}x{bk:<3}s{sp} {fp16:7.1f} {b:7.1f} {a:7.1f} {b / a:5.2f} "
              f"{fp16 / a:6.2f}")
        gains.setdefault((name, m), []).append(b / a)
    for key, g in sorted(gains.items()):
        print(key, "geomean gain", round(math.exp(sum(map(math.log, g)) / len(g)), 3))


if __name__ == "__main__":
    main()
