"""GPU probe for the decode kernel (not a test): where does the time of M=1 go?

    python test/kernels/gpu_probe_gemv.py OUTDIR

Times, on K=4096, N=14336, 4-bit g128, CUDA-graph replay over rotated weight copies:
the shipped GEMV at several configs, and stripped variants (stream the words only;
unpack + dequantize without x; the 2-D layout). Dumps the TTGIR/PTX of the shipped
kernel to OUTDIR so layouts and pipelining can be read off-line.
"""

import sys

import torch
import triton
import triton.language as tl

from torchao_gemlite.kernels.configs import LaunchConfig
from torchao_gemlite.kernels.dispatch import launch_weight_only
from torchao_gemlite.kernels.gemv import gemv_kernel
from torchao_gemlite.kernels.tuning import graph_time_us
from torchao_gemlite.kernels.unpack import group_mul_add, slot_as_float
from torchao_gemlite.quant import quantize_weight


@triton.jit
def probe_kernel(x_ptr, w_ptr, scale_ptr, out_ptr, N, K, stride_wk, group_size,
                 MODE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_KW: tl.constexpr, NUM_STAGES: tl.constexpr):
    # MODE 0: stream words (int add); 1: unpack+dequant, no x; 2: full, 2-D layout, x per slot.
    BITS: tl.constexpr = 4
    E: tl.constexpr = 8
    o_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    o_j = tl.arange(0, BLOCK_KW)
    acc_i = tl.zeros((BLOCK_KW, BLOCK_N), dtype=tl.int32)
    acc = tl.zeros((BLOCK_KW, BLOCK_N), dtype=tl.float32)
    for t in tl.range(0, K // (E * BLOCK_KW), num_stages=NUM_STAGES):
        o_kw = t * BLOCK_KW + o_j
        words = tl.load(w_ptr + o_kw[:, None] * stride_wk + o_n[None, :])
        if MODE == 0:
            acc_i += words
        else:
            mul, add = group_mul_add(scale_ptr, scale_ptr, (t * BLOCK_KW * E // group_size) * N + o_n[None, :],
                                     o_n[None, :] < N, True, 8.0, BITS)
            for s in tl.static_range(E):
                w = slot_as_float(words, s, BITS) * mul + add
                if MODE == 1:
                    acc += w
                else:
                    xv = tl.load(x_ptr + o_kw * E + s).to(tl.float32)
                    acc += xv[:, None] * w
    res = tl.sum(acc, axis=0) + tl.sum(acc_i, axis=0).to(tl.float32)
    tl.store(out_ptr + o_n, res)


def main(outdir: str) -> None:
    torch.manual_seed(0)
    k, n = 4096, 14336
    w = torch.randn(n, k, dtype=torch.float16, device="cuda")
    qw = quantize_weight(w, 4, 128, True)
    copies = [(qw.qdata.clone(), qw.scale.clone()) for _ in range(6)]
    x = torch.randn(1, k, dtype=torch.float16, device="cuda")
    out = torch.empty(n, dtype=torch.float32, device="cuda")
    nbytes = qw.qdata.numel() * 4 + qw.scale.numel() * 2
    rows = []
    for cfg in [LaunchConfig("gemv", 1, 64, 256, 8, 4, 2), LaunchConfig("gemv", 1, 128, 128, 8, 4, 3),
                LaunchConfig("gemv", 1, 256, 64, 4, 4, 3), LaunchConfig("gemv", 1, 64, 256, 1, 4, 2),
                LaunchConfig("gemv", 1, 32, 256, 1, 4, 2), LaunchConfig("gemv", 1, 512, 64, 8, 8, 3)]:
        us = graph_time_us([lambda c=c, cfg=cfg: launch_weight_only(x, c[0], c[1], None, None, 4, 128, True, cfg)
                            for c in copies])
        rows.append((f"shipped {cfg.block_n}x{cfg.block_k} split{cfg.split_k} w{cfg.num_warps} s{cfg.num_stages}", us))
    for mode in (0, 1, 2):
        for bn, bkw, warps, stages in ((64, 32, 4, 2), (128, 16, 4, 3), (256, 8, 4, 3), (128, 32, 8, 3)):
            def launch(c, mode=mode, bn=bn, bkw=bkw, warps=warps, stages=stages):
                probe_kernel[(triton.cdiv(n, bn),)](x, c[0], c[1], out, n, k, c[0].stride(0), 128, MODE=mode,
                                                    BLOCK_N=bn, BLOCK_KW=bkw, NUM_STAGES=stages, num_warps=warps)
            us = graph_time_us([lambda c=c: launch(c) for c in copies])
            rows.append((f"probe mode{mode} {bn}x{bkw}w w{warps} s{stages}", us))
    # IR of the shipped kernel, for reading off-line.
    try:
        kernels = [kern for entry in gemv_kernel.device_caches.values() for kern in entry[0].values()]
    except Exception as err:  # the cache layout differs between Triton versions
        print(f"no IR dump: {err!r}")
        kernels = []
    for i, kern in enumerate(kernels[:3]):
        for key in ("ttgir", "ptx"):
            if key in kern.asm:
                with open(f"{outdir}/gemv_{i}.{key}", "w") as f:
                    f.write(kern.asm[key])
        print(f"compiled {i}: regs {kern.n_regs} spills {kern.n_spills}")
    print(f"\nweights {nbytes / 1e6:.1f} MB")
    for name, us in rows:
        print(f"{name:42s} {us:7.1f} us  {nbytes / us / 1e6:6.2f} TB/s")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
