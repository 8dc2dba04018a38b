"""GPU probe (not a test): where one decode step of the e2e model spends its GPU time.

    python test/bench/gpu_probe_e2e_profile.py [LAYERS] [BATCH]

Runs the compiled decode step (as the e2e benchmark does, without the CUDA graph so that the
profiler sees each kernel) for bf16 and 4-bit weights (with and without the output head
quantized) and prints the kernel time per step grouped by kernel name, largest first.
"""

import sys
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from torchao_gemlite.bench import e2e


def step_profile(name: str, layers: int, batch: int, head: bool, steps: int = 8) -> None:
    model = e2e.build_model(e2e.ModelArgs.llama3_8b(layers), torch.bfloat16, torch.device("cuda"))
    make = e2e.E2E_CONFIGS[name]
    if make is not None:
        e2e.quantize_model(model, make(), include_head=head)
    model.setup_caches(batch, 1024)
    tokens = torch.randint(0, model.args.vocab_size, (batch, 1), device="cuda")
    pos = torch.full((1,), 900, dtype=torch.long, device="cuda")
    forward = torch.compile(model.forward, fullgraph=True, dynamic=False)
    with torch.no_grad():
        for _ in range(3):
            forward(tokens, pos, last_only=True)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(steps):
                forward(tokens, pos, last_only=True)
            torch.cuda.synchronize()
    per_kernel = defaultdict(float)
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            per_kernel[event.name[:90]] += event.device_time / steps
    total = sum(per_kernel.values())
    print(f"\n== {name} head={'quantized' if head else 'bf16'} layers={layers} batch={batch}: "
          f"{total:.0f} us of kernels a step")
    for kernel, us in sorted(per_kernel.items(), key=lambda kv: -kv[1])[:14]:
        print(f"  {us:8.1f} us  {us / total:5.1%}  {kernel}")
    del model
    torch.cuda.empty_cache()


def main() -> None:
    layers = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    for name, head in (("bf16", False), ("gemlite-int4-g128", False), ("gemlite-int4-g128", True)):
        step_profile(name, layers, batch, head)


if __name__ == "__main__":
    main()
