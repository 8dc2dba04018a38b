"""Benchmark a few torchao-gemlite kernels against cuBLAS (a quick subset of torchao-gemlite-bench).

    python examples/benchmark.py

On a machine without a CUDA GPU it says so and exits 0. The full harness:
``torchao-gemlite-bench --help`` (docs/benchmarks.md lists the commands).
"""

import sys

import torch


def main() -> int:
    if not torch.cuda.is_available():
        print("examples/benchmark.py: timing needs a CUDA GPU; none found, nothing to do.")
        print("On a GPU machine: torchao-gemlite-bench --quick")
        return 0
    from torchao_gemlite.bench.cli import main as bench

    return bench([
        "--formats", "a16w4-asym-g128,a16w8-sym-pc,a8w8-fp8",
        "--shapes", "4096x14336",
        "--m", "1,16,256,4096",
        "--dtypes", "fp16",
        "--anchors", "cublas,torch-scaled-mm-fp8",
        "--no-gemlite",
    ])


if __name__ == "__main__":
    sys.exit(main())
