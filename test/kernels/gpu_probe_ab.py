"""GPU probe (not a test): a weight-only kernel before and after a change, same launches, same run.

    python test/kernels/gpu_probe_ab.py OUTDIR gemm|gemv

Needs the previous kernel file with absolute imports beside this one, not committed: for gemm
``_gemm_before.py``, for gemv ``_gemv_before.py`` and, if the change moved them, ``_before_flush.py``
defining the previous ``pairs_per_flush`` and ``pair_kshift``. Times each launch with the previous kernel
and the current one (CUDA-graph replay over weight copies rotated beyond L2) for 8/4/2/1-bit on the Llama
shapes, against cuBLAS fp16: gemm at M = 16..256 (its heuristic tiles, and three 128-row tiles at 256),
gemv at M = 1 and 2 (the dispatcher's choice).
"""

import importlib
import math
import sys

import torch
import torch.nn.functional as F

from torchao_gemlite.kernels import dispatch
from torchao_gemlite.kernels.configs import LaunchConfig, choose_config, heuristic_config
from torchao_gemlite.kernels.launch import FastLauncher
from torchao_gemlite.kernels.tuning import _weight_copies, graph_time_us

FORMATS = {"w4g128": (4, 128, False), "w8pc": (8, None, True), "w2g64": (2, 64, False), "w1g64": (1, 64, False)}


def configs(kernel, m, n, k, bits, group, props):
    if kernel == "gemv":
        return [choose_config(m, n, k, bits, group, "float16", props.name, props.multi_processor_count)]
    if m <= 128:
        return [heuristic_config(m, n, k, bits, group, props.multi_processor_count, mma=False)]
    return [LaunchConfig("gemm", 128, 128, 64, 1, num_warps=8, num_stages=4),
            LaunchConfig("gemm", 128, 128, 128, 1, num_warps=8, num_stages=3),
            LaunchConfig("gemm", 128, 256, 64, 1, num_warps=8, num_stages=3)]


def main():
    out, kernel = sys.argv[1], sys.argv[2]
    log = open(f"{out}/probe_{kernel}_ab.log", "w")
    props = torch.cuda.get_device_properties(0)
    attr = {"gemm": "_GEMM", "gemv": "_GEMV"}[kernel]
    after = {attr: getattr(dispatch, attr), "pairs_per_flush": dispatch.pairs_per_flush,
             "pair_kshift": dispatch.pair_kshift}
    before = dict(after)
    before[attr] = FastLauncher(getattr(importlib.import_module(f"_{kernel}_before"), f"{kernel}_kernel"))
    try:
        flush = importlib.import_module("_before_flush")
        before.update(pairs_per_flush=flush.pairs_per_flush, pair_kshift=flush.pair_kshift)
    except ImportError:
        pass
    m_values = (1, 2) if kernel == "gemv" else (16, 32, 64, 128, 256)
    rows = []
    for k, n in ((4096, 4096), (4096, 14336), (14336, 4096), (8192, 8192)):
        dense = [torch.randn(n, k, dtype=torch.float16, device="cuda") for _ in range(max(2, 160 * 2**20 // (n * k * 2)))]
        for name, (bits, gs, sym) in FORMATS.items():
            qw, copies = _weight_copies(n, k, bits, gs, sym, torch.float16, "cuda")
            group = qw.fmt.group_size
            for m in m_values:
                x = torch.randn(m, k, dtype=torch.float16, device="cuda")
                fp16 = graph_time_us([lambda w=w: F.linear(x, w) for w in dense], replays=20)
                for cfg in configs(kernel, m, n, k, bits, group, props):
                    if cfg.kernel != kernel:
                        continue
                    times = {}
                    for label, parts in (("before", before), ("after", after)):
                        for key, value in parts.items():
                            setattr(dispatch, key, value)
                        try:
                            times[label] = graph_time_us([lambda c=c: dispatch.launch_weight_only(
                                x, c[0], c[1], c[2], None, bits, group, sym, cfg) for c in copies], replays=20)
                        except Exception as err:  # noqa: BLE001 - a probe reports and goes on
                            times[label] = math.nan
                            print(f"{name} {k}x{n} M={m} {label}: {type(err).__name__}: {str(err)[:300]}", file=log)
                    for key, value in after.items():
                        setattr(dispatch, key, value)
                    row = (name, k, n, m, cfg.block_m, cfg.block_n, cfg.block_k, cfg.split_k, fp16, times["before"],
                           times["after"])
                    rows.append(row)
                    print(row, file=log, flush=True)
    print(f"{'fmt':>7} {'KxN':>11} {'M':>4} {'tile':>14} {'fp16':>7} {'before':>7} {'after':>7} {'gain':>5} {'x fp16':>6}")
    gains = {}
    for name, k, n, m, bm, bn, bk, sp, fp16, b, a in rows:
        print(f"{name:>7} {k:>5}x{n:<5} {m:>4} {bm:>3}x{bn:<3}x{bk:<4}s{sp} {fp16:7.1f} {b:7.1f} {a:7.1f} {b / a:5.2f} "
              f"{fp16 / a:6.2f}")
        gains.setdefault((name, m), []).append(b / a)
    for key, g in sorted(gains.items()):
        print(key, "geomean gain", round(math.exp(sum(map(math.log, g)) / len(g)), 3))


if __name__ == "__main__":
    main()
