"""Quick start: quantize a small model to 4-bit, check its error, and (on a GPU) its speed.

    python examples/quickstart.py

Builds its own model (no downloads). Without a GPU it runs the reference path on the CPU
and says so; with one it also times the quantized model against fp16.
"""

import copy

import torch
from torchao.quantization import quantize_

import torchao_gemlite  # noqa: F401  (registers the configs and tensor classes)
from torchao_gemlite import GemliteInt4WeightOnlyConfig


def build_model(dim: int = 1024, hidden: int = 2816) -> torch.nn.Module:
    """A small SwiGLU-style MLP stack: what a decoder layer spends its time on."""
    layers = []
    for _ in range(2):
        layers += [torch.nn.Linear(dim, hidden, bias=False), torch.nn.SiLU(), torch.nn.Linear(hidden, dim, bias=False)]
    return torch.nn.Sequential(*layers)


def sqnr_db(ref: torch.Tensor, out: torch.Tensor) -> float:
    ref, out = ref.float(), out.float()
    return (20 * torch.log10(ref.norm() / (ref - out).norm())).item()


def time_us(fn, x, iters: int = 200) -> float:
    """Mean time of one call, captured once in a CUDA graph and replayed ``iters`` times."""
    fn(x)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn(x)
    graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        graph.replay()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1000 / iters


def main() -> None:
    torch.manual_seed(0)
    gpu = torch.cuda.is_available()
    device = "cuda" if gpu else "cpu"
    dtype = torch.float16 if gpu else torch.float32
    model = build_model().to(device=device, dtype=dtype).eval()
    quantized = copy.deepcopy(model)
    quantize_(quantized, GemliteInt4WeightOnlyConfig(group_size=128))
    print(f"device: {torch.cuda.get_device_name() if gpu else 'CPU (no GPU found: reference path, no timing)'}")
    print(f"first layer weight: {quantized[0].weight!r}"[:200])

    x = torch.randn(16, 1024, device=device, dtype=dtype)
    with torch.no_grad():
        ref, out = model(x), quantized(x)
    print(f"4-bit g128 output SQNR against {dtype}: {sqnr_db(ref, out):.1f} dB "
          f"(relative error {((out - ref).float().norm() / ref.float().norm()).item():.3f})")
    if not gpu:
        return
    with torch.no_grad():
        for batch in (1, 16, 256):
            xb = torch.randn(batch, 1024, device=device, dtype=dtype)
            t_fp16, t_q = time_us(model, xb), time_us(quantized, xb)
            print(f"batch {batch:4d}: fp16 {t_fp16:7.1f} us, 4-bit {t_q:7.1f} us, speedup x{t_fp16 / t_q:.2f}")


if __name__ == "__main__":
    main()
