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
from torchao_gemlite.kernels.tuning import graph_time_us


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


def attention_variants(context: int = 1024) -> None:
    """Decode attention of one layer (Llama-3-8B heads): SDPA with the mask against decode_attention."""
    args = e2e.ModelArgs()
    g = args.n_heads // args.n_kv_heads
    sdpa = torch.compile(lambda q, k, v, mask: torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=mask.repeat(1, 1, g, 1)), fullgraph=True, dynamic=False)
    matmuls = torch.compile(e2e.decode_attention, fullgraph=True, dynamic=False)
    print(f"\n== decode attention of one layer, context {context} (us)")
    for batch in (1, 8, 32):
        q = torch.randn(batch, args.n_kv_heads, g, args.head_dim, dtype=torch.bfloat16, device="cuda")
        k, v = (torch.randn(batch, args.n_kv_heads, context, args.head_dim, dtype=torch.bfloat16, device="cuda")
                for _ in range(2))
        mask = torch.zeros(1, 1, 1, context, dtype=torch.bool, device="cuda")
        mask[..., :900] = True
        torch.testing.assert_close(sdpa(q, k, v, mask), matmuls(q, k, v, mask), rtol=2e-2, atol=2e-2)
        print(f"  batch {batch:3d}: sdpa {graph_time_us([lambda: sdpa(q, k, v, mask)] * 20):6.1f}   "
              f"matmuls {graph_time_us([lambda: matmuls(q, k, v, mask)] * 20):6.1f}")


def main() -> None:
    layers = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    attention_variants()
    for name, head in (("bf16", False), ("gemlite-int4-g128", False), ("gemlite-int4-g128", True)):
        step_profile(name, layers, batch, head)


if __name__ == "__main__":
    main()
