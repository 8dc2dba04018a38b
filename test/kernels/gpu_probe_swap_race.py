"""GPU probe (not a test): repeats identical tensor-core calls to catch nondeterministic results.

    python test/kernels/gpu_probe_swap_race.py [REPEATS]

Swapped operands with 16-bit dequantization (half2.dequant_codes as the register operand of the
asynchronous wgmma) gave intermittently wrong outputs on the H100 with Triton 3.6, so the dispatcher
never combines them (dispatch.py). This probe forces that combination (bypassing the dispatcher's
guard) next to the safe variants, so the question can be re-asked on a new Triton: for each format it
prints the min-max relative error over REPEATS calls per variant.
"""

import itertools
import sys
from dataclasses import replace

import torch

from torchao_gemlite.formats import symmetric_zero
from torchao_gemlite.kernels.configs import LaunchConfig
from torchao_gemlite.kernels.dispatch import launch_weight_only
from torchao_gemlite.kernels.gemm import gemm_kernel
from torchao_gemlite.kernels.reduce import splitk_reduce, splitk_workspace
from torchao_gemlite.quant import quantize_weight, reference_linear


def forced_swap16(x, qw, cfg):
    """The gemm kernel with SWAP_AB and HALF both on (what the dispatcher refuses), split-K as in cfg."""
    m, k = x.shape
    n = qw.qdata.shape[1]
    out = torch.full((m, n), float("nan"), dtype=x.dtype, device=x.device)
    k_tiles = -(-k // cfg.block_k)
    per_split = -(-k_tiles // cfg.split_k)
    split = -(-k_tiles // per_split)
    ws = splitk_workspace(split, m, n, x.device)
    zero = qw.zero if qw.zero is not None else qw.scale
    args = (x, qw.qdata, qw.scale, zero, qw.scale, out, ws if ws is not None else out, m, n, k, per_split,
            x.stride(0), x.stride(1), qw.qdata.stride(0), qw.scale.stride(0), out.stride(0))
    g = qw.fmt.group_size
    gemm_kernel[(-(-m // cfg.block_m) * -(-n // cfg.block_n), split)](
        *args, BITS=qw.fmt.bits, GROUP_K=0 if g == k else g, SYMMETRIC=qw.fmt.symmetric,
        SYM_ZERO=symmetric_zero(qw.fmt.bits), HAS_BIAS=False, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n,
        BLOCK_K=cfg.block_k, USE_WORKSPACE=ws is not None, NUM_STAGES=cfg.num_stages, GROUP_M=8, SWAP_AB=True,
        HALF=True, EMULATE=False, num_warps=cfg.num_warps)
    if ws is not None:
        splitk_reduce(ws, None, out)
    return out


def main():
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    k, n = 4096, 1376
    for bits, sym, group, m, dtype in itertools.product((1, 4), (True, False), (None, 128), (8, 16),
                                                        (torch.bfloat16, torch.float16)):
        gen = torch.Generator().manual_seed(bits * 10 + m)
        qw = quantize_weight(torch.randn(n, k, generator=gen).to(dtype).cuda(), bits, group, sym)
        x = torch.randn(m, k, generator=gen).to(dtype).cuda()
        ref = reference_linear(x, qw, None).float()
        variants = {}
        for tile in (LaunchConfig("gemm", 16, 256, 128, 16, num_warps=8, num_stages=3),
                     LaunchConfig("gemm", 16, 128, 128, 16, num_warps=4, num_stages=3)):
            name = f"bn{tile.block_n}-w{tile.num_warps}-split16"
            variants[f"{name} plain16"] = lambda t=tile: launch_weight_only(x, qw.qdata, qw.scale, qw.zero, None,
                                                                             bits, qw.fmt.group_size, sym, t)
            variants[f"{name} swap32"] = lambda t=tile: launch_weight_only(x, qw.qdata, qw.scale, qw.zero, None,
                                                                            bits, qw.fmt.group_size, sym,
                                                                            replace(t, swap_ab=True))
            variants[f"{name} swap16 (forced)"] = lambda t=tile: forced_swap16(x, qw, t)
        line = []
        for name, fn in variants.items():
            errs = [((fn().float() - ref).norm() / ref.norm()).item() for _ in range(repeats)]
            line.append(f"{name} {min(errs):.1e}-{max(errs):.1e}")
        print(f"bits={bits} sym={sym} group={group} M={m} {str(dtype)[6:]}: " + "  ".join(line), flush=True)


if __name__ == "__main__":
    main()
