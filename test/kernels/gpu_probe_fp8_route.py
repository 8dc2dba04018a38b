"""GPU probe (not a test): fp8 linear layers at small M, the Triton GEMM against our activation
quantization + torch._scaled_mm (the route taken from dynamic_gemm.SCALED_MM_MIN_M on).

    python test/kernels/gpu_probe_fp8_route.py

Whole layer, CUDA-graph replay over weight copies rotated beyond L2; prints one line per (shape, M).
"""

import torch
import torch.nn.functional as F

import torchao_gemlite.kernels.dynamic_gemm as dynamic_gemm
from torchao_gemlite.kernels.tuning import graph_time_us
from torchao_gemlite.quant import quantize_rowwise_fp8

ROTATION_BYTES = 200 * 2**20


def main():
    default_min_m = dynamic_gemm.SCALED_MM_MIN_M
    for k, n in ((4096, 4096), (4096, 14336), (14336, 4096), (8192, 8192)):
        wq, ws = quantize_rowwise_fp8(torch.randn(n, k, dtype=torch.float16, device="cuda"))
        copies = [(wq.clone(), ws.reshape(-1).clone()) for _ in range(max(2, ROTATION_BYTES // (n * k)))]
        dense = [torch.randn(n, k, dtype=torch.float16, device="cuda")
                 for _ in range(max(2, ROTATION_BYTES // (2 * n * k)))]
        for m in (1, 4, 16, 64):
            x = torch.randn(m, k, dtype=torch.float16, device="cuda")
            fp16 = graph_time_us([lambda w=w: F.linear(x, w) for w in dense], replays=20)
            times = {}
            for name, min_m in (("triton", default_min_m), ("scaled_mm", 1)):
                dynamic_gemm.SCALED_MM_MIN_M = min_m
                times[name] = graph_time_us([lambda c=c: dynamic_gemm.fp8_dynamic_linear(x, c[0], c[1])
                                             for c in copies], replays=20)
            dynamic_gemm.SCALED_MM_MIN_M = default_min_m
            print(f"fp8 {k}x{n} M={m}: fp16 {fp16:.1f} us, triton {times['triton']:.1f} us "
                  f"({fp16 / times['triton']:.2f}x), act quant + _scaled_mm {times['scaled_mm']:.1f} us "
                  f"({fp16 / times['scaled_mm']:.2f}x)")


if __name__ == "__main__":
    main()
