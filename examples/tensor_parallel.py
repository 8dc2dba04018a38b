"""Tensor parallel (DTensor) with quantized weights: a SwiGLU MLP over 2 ranks vs 1 rank.

    python examples/tensor_parallel.py            # 2 processes on this machine (gloo, CPU)
    torchrun --nproc-per-node 2 examples/tensor_parallel.py   # NCCL when 2+ GPUs are visible

Quantize first, then ``parallelize_module``: up/gate are split by output features
(ColwiseParallel), down by input features (RowwiseParallel, whole groups per rank).
"""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module
from torchao.quantization import quantize_

from torchao_gemlite import GemliteInt4WeightOnlyConfig
from torchao_gemlite.integrations import check_tensor_parallel, tp_group_size


class SwiGLU(torch.nn.Module):
    def __init__(self, dim: int = 256, hidden: int = 768):
        super().__init__()
        self.gate_proj = torch.nn.Linear(dim, hidden, bias=False)
        self.up_proj = torch.nn.Linear(dim, hidden, bias=False)
        self.down_proj = torch.nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        return self.down_proj(torch.nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


def run(rank: int, world: int) -> None:
    gpu = torch.cuda.device_count() >= world
    backend, device = ("nccl", f"cuda:{rank}") if gpu else ("gloo", "cpu")
    if gpu:
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, rank=rank, world_size=world)
    mesh = init_device_mesh("cuda" if gpu else "cpu", (world,))
    dtype = torch.float16 if gpu else torch.float32

    torch.manual_seed(0)
    model = SwiGLU().to(device=device, dtype=dtype)
    # the largest group size that keeps whole groups on each rank of down_proj (768 / 2 = 384)
    group = tp_group_size(model.down_proj.in_features, world, 128)
    quantize_(model, GemliteInt4WeightOnlyConfig(group_size=group))
    x = torch.randn(4, 256, device=device, dtype=dtype)
    with torch.no_grad():
        reference = model(x)  # TP = 1

    plan = {"gate_proj": ColwiseParallel(), "up_proj": ColwiseParallel(), "down_proj": RowwiseParallel()}
    check_tensor_parallel(model, plan, world)  # clear errors before any collective
    parallelize_module(model, mesh, plan)  # rank 0's weights are scattered to the others
    with torch.no_grad():
        out = model(x)
    err = (out - reference).abs().max().item()
    if rank == 0:
        local = model.down_proj.weight.to_local()
        print(f"backend {backend}, group_size {group}, rank 0 down_proj shard: {type(local).__name__} "
              f"{list(local.shape)}; max |TP{world} - TP1| = {err:.2e}")
    dist.destroy_process_group()
    if err > 1e-2:
        raise SystemExit(f"rank {rank}: TP output differs from TP=1 by {err}")


def main() -> None:
    if "RANK" in os.environ:  # launched by torchrun
        run(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]))
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    mp.spawn(run, args=(2,), nprocs=2, join=True)


if __name__ == "__main__":
    main()
