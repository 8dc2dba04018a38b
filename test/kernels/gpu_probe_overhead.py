"""GPU probe (not a test): where the host time of one eager call goes.

    python test/kernels/gpu_probe_overhead.py [OUT_DIR]

Times each layer of the call chain on a tiny shape (the GPU is never the bottleneck, so wall
time per call is host time), from the user's quantized nn.Linear down to one kept launch, and
writes a cProfile of the W4 F.linear call to OUT_DIR/overhead_profile.txt.
"""

import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torchao.quantization import quantize_

import torchao_gemlite.ops
from torchao_gemlite.configs import (GemliteFloat8DynamicActivationFloat8WeightConfig,
                                     GemliteInt4WeightOnlyConfig, GemliteInt8DynamicActivationInt4WeightConfig,
                                     GemliteInt8DynamicActivationInt8WeightConfig, GemliteWeightOnlyConfig)
from torchao_gemlite.kernels import dispatch


def host_us(fn, n: int = 2000) -> float:
    """Mean wall time per call when the GPU is not the bottleneck (tiny shape)."""
    for _ in range(50):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / n * 1e6


def quantized_linear(config, k=1024, n=256):
    linear = torch.nn.Linear(k, n, bias=False, dtype=torch.half, device="cuda")
    quantize_(linear, config)
    return linear


def main() -> None:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    x1 = torch.randn(1, 1024, dtype=torch.half, device="cuda")
    x4 = torch.randn(4, 1024, dtype=torch.half, device="cuda")
    dense = torch.nn.Linear(1024, 256, bias=False, dtype=torch.half, device="cuda")
    w4 = quantized_linear(GemliteInt4WeightOnlyConfig(group_size=128))
    w = w4.weight
    args = (w.qdata, w.scale, w.zero_point, None, 4, 128, False)
    dispatch.weight_only_linear(x1, *args)
    plan = dispatch._PLANS[dispatch._plan_key(x1, *args)]
    out = torch.empty(1, 256, dtype=torch.half, device="cuda")
    tensors = (x1, w.qdata, w.scale, w.zero_point, w.scale, out, out)
    rows = {
        "nn.Linear fp16 module call (reference)": lambda: dense(x1),
        "F.linear fp16 (reference)": lambda: F.linear(x1, dense.weight),
        "W4 g128 module call, M=1 (gemv)": lambda: w4(x1),
        "W4 g128 F.linear, M=1": lambda: F.linear(x1, w),
        "W4 g128 F.linear, M=4 (mma)": lambda: F.linear(x4, w),
        "  ops.call": lambda: torchao_gemlite.ops.call("linear_weight_only", x1, *args),
        "  torch.ops op (dispatcher)": lambda: torch.ops.torchao_gemlite.linear_weight_only(x1, *args),
        "  weight_only_linear (plan hit)": lambda: dispatch.weight_only_linear(x1, *args),
        "  plan replay": lambda: plan(x1, *args[:4]),
        "  plan key": lambda: dispatch._plan_key(x1, *args),
        "  kept launch (KernelCall)": lambda: plan.kernel(tensors),
        "  torch.empty": lambda: torch.empty((1, 256), dtype=torch.half, device="cuda"),
        "W8 pc module call, M=1": quantized_linear(GemliteWeightOnlyConfig(bits=8, group_size=None, symmetric=True)),
        "A8W4 g128 module call, M=1": quantized_linear(GemliteInt8DynamicActivationInt4WeightConfig(group_size=128)),
        "A8W8 int8 module call, M=1": quantized_linear(GemliteInt8DynamicActivationInt8WeightConfig()),
        "A8W8 fp8 module call, M=1": quantized_linear(GemliteFloat8DynamicActivationFloat8WeightConfig()),
    }
    for label, fn in rows.items():
        call = (lambda m=fn: m(x1)) if isinstance(fn, torch.nn.Module) else fn
        print(f"{label:42s} {host_us(call):7.1f} us", flush=True)
    if out_dir is not None:
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(3000):
            F.linear(x1, w)
        profile.disable()
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(30)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "overhead_profile.txt").write_text(text.getvalue())


if __name__ == "__main__":
    main()
