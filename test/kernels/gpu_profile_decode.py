"""GPU probe (not a test): the decode kernels under Nsight Compute, to see what bounds them.

    ncu --clock-control none --section SpeedOfLight --section WarpStateStats --section SchedulerStats \
        --section Occupancy --section LaunchStats -k regex:'gemv|stream' python test/kernels/gpu_profile_decode.py

Runs each kernel a few times at M = 1 on one Llama shape (default 4096x14336, 4-bit g128): the
CUDA-core GEMV and the tensor-core decode kernel at their shipped/best launches, and the weight
stream of gpu_probe_stream.py (loads only) at its best tiling, for the profiler to read.
"""

import sys

import torch

from gpu_probe_stream import launch as stream_launch
from torchao_gemlite.kernels.configs import LaunchConfig, choose_config
from torchao_gemlite.kernels.dispatch import launch_weight_only
from torchao_gemlite.quant import quantize_weight


def main():
    k, n = (int(v) for v in (sys.argv[1] if len(sys.argv) > 1 else "4096x14336").split("x"))
    bits, group = 4, 128
    qw = quantize_weight(torch.randn(n, k, dtype=torch.float16, device="cuda"), bits, group)
    x = torch.randn(1, k, dtype=torch.float16, device="cuda")
    props = torch.cuda.get_device_properties(0)
    configs = [choose_config(1, n, k, bits, group, "float16", props.name, props.multi_processor_count),
               LaunchConfig("mma", 8, 64, 256, 1, num_warps=8, num_stages=1),
               LaunchConfig("mma", 8, 32, 128, 1, num_warps=16, num_stages=1)]
    for cfg in configs:
        print(cfg)
        for _ in range(3):
            launch_weight_only(x, qw.qdata, qw.scale, qw.zero, None, bits, group, False, cfg)
    out = torch.empty(4 * n, dtype=torch.int32, device="cuda")
    for _ in range(3):
        stream_launch(qw.qdata, out, k // 8, n, "n-major", (32, 64, 4, 1, 2, 2))
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
