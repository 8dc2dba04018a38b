"""GPU probe (not a test): where the host time of one eager M=1 weight-only call goes.

    python test/kernels/gpu_probe_overhead.py
"""

import time

import torch

import torchao_gemlite.ops  # noqa: F401
from torchao_gemlite.kernels.configs import choose_config
from torchao_gemlite.kernels.dispatch import _facts, check_weight_only_inputs, launch_weight_only, weight_only_linear
from torchao_gemlite.kernels.gemv import gemv_kernel
from torchao_gemlite.configs import GemliteInt4WeightOnlyConfig
from torchao_gemlite.quant import quantize_weight
from torchao.quantization import quantize_


def host_us(fn, n: int = 300) -> float:
    """Mean wall time per call when the GPU is not the bottleneck (tiny shape)."""
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    qw = quantize_weight(torch.randn(256, 1024, dtype=torch.half, device="cuda"), 4, 128)
    x = torch.randn(1, 1024, dtype=torch.half, device="cuda")
    a = (qw.qdata, qw.scale, qw.zero, None, 4, 128, False)
    name, sms = _facts(x.device)
    cfg = choose_config(1, 256, 1024, 4, 128, "float16", name, sms)
    one = cfg.__class__(**{**cfg.to_dict(), "split_k": 1})
    out = torch.empty(1, 256, dtype=torch.half, device="cuda")
    dense = torch.randn(256, 1024, dtype=torch.half, device="cuda")
    linear = torch.nn.Linear(1024, 256, bias=False, dtype=torch.half, device="cuda")
    quantize_(linear, GemliteInt4WeightOnlyConfig(group_size=128))
    rows = {
        "torch.ops op (custom_op)": lambda: torch.ops.torchao_gemlite.linear_weight_only(x, *a),
        "weight_only_linear (no custom op)": lambda: weight_only_linear(x, *a),
        f"launch_weight_only split={cfg.split_k}": lambda: launch_weight_only(x, *a, cfg),
        "launch_weight_only split=1": lambda: launch_weight_only(x, *a, one),
        "check_weight_only_inputs": lambda: check_weight_only_inputs(x, *a),
        "torch.empty": lambda: torch.empty(1, 256, dtype=torch.half, device="cuda"),
        "quantized nn.Linear module call": lambda: linear(x),
        "raw gemv_kernel[grid] launch": lambda: gemv_kernel[(4, 1)](
            x, qw.qdata, qw.scale, qw.zero, qw.scale, out, out, 1, 256, 1024, 8, 1024, 1, 256, 256, 256,
            BITS=4, GROUP_K=128, SYMMETRIC=False, SYM_ZERO=8.0, HAS_BIAS=False, BLOCK_M=1, BLOCK_N=64, BLOCK_K=128,
            EVEN_K=True, EVEN_N=True, USE_WORKSPACE=False, NUM_STAGES=2, HALF_MAC=True, PF=4,
            KSHIFT=5, EMULATE=False, num_warps=4),
        "F.linear fp16 (reference point)": lambda: torch.nn.functional.linear(x, dense),
    }
    for label, fn in rows.items():
        print(f"{label:40s} {host_us(fn):7.1f} us")


if __name__ == "__main__":
    main()
