"""Tensor parallel with DTensor: parallelize_module with ColwiseParallel / RowwiseParallel on
quantized weights, TP=2 against TP=1. CPU: two spawned processes on gloo. GPU: two GPUs, NCCL.

Covered: a SwiGLU MLP and an attention block (fused QKV colwise, o_proj rowwise); the default
src_data_rank=0 (rank 0's weights are scattered: rank 1 starts from different weights) and
src_data_rank=None (every rank slices its own full copy); plan checks with clear errors.
"""

import os
import socket
import traceback

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torchao.quantization import quantize_

import torchao_gemlite as tg
from torchao_gemlite.integrations import check_tensor_parallel, tp_group_size

CONFIGS = {
    "int4-g32": lambda: tg.GemliteInt4WeightOnlyConfig(group_size=32),
    "a8w8-int8": tg.GemliteInt8DynamicActivationInt8WeightConfig,
    "a8w4-g32": lambda: tg.GemliteInt8DynamicActivationInt4WeightConfig(group_size=32),
    "w2-sym-pc-colwise": lambda: tg.GemliteWeightOnlyConfig(bits=2, group_size=None, symmetric=True),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Mlp(torch.nn.Module):
    def __init__(self, dim=128, hidden=256):
        super().__init__()
        self.up_proj = torch.nn.Linear(dim, hidden, bias=True)
        self.down_proj = torch.nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        return self.down_proj(torch.nn.functional.silu(self.up_proj(x)))


class _Attention(torch.nn.Module):
    """q, k, v colwise (each rank holds heads/tp heads), o rowwise: the Megatron split."""

    def __init__(self, dim=128, heads=4):
        super().__init__()
        self.heads, self.dim = heads, dim
        self.q_proj = torch.nn.Linear(dim, dim, bias=False)
        self.k_proj = torch.nn.Linear(dim, dim, bias=False)
        self.v_proj = torch.nn.Linear(dim, dim, bias=False)
        self.o_proj = torch.nn.Linear(dim, dim, bias=False)

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        local_heads = q.shape[-1] * self.heads // self.dim  # heads / tp under TP (local shapes)
        q, k, v = (z.reshape(b, t, local_heads, -1).transpose(1, 2) for z in (q, k, v))
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(a.transpose(1, 2).reshape(b, t, -1))


def _worker(rank, world, port, backend, names, errors):
    try:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        device = "cuda" if backend == "nccl" else "cpu"
        if backend == "nccl":
            torch.cuda.set_device(rank)
        dist.init_process_group(backend, rank=rank, world_size=world)
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.tensor import Replicate
        from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

        mesh = init_device_mesh(device, (world,))
        dtype = torch.float16 if device == "cuda" else torch.float32
        for name in names:
            for src_data_rank in (0, None):
                for kind in ("mlp", "attention"):
                    torch.manual_seed(0)
                    if kind == "mlp":
                        model = _Mlp()
                        plan = {"up_proj": ColwiseParallel(), "down_proj": RowwiseParallel()}
                        x = torch.randn(5, 128)
                    else:
                        model = _Attention()
                        plan = {"q_proj": ColwiseParallel(use_local_output=True),
                                "k_proj": ColwiseParallel(), "v_proj": ColwiseParallel(),
                                "o_proj": RowwiseParallel()}
                        x = torch.randn(2, 3, 128)
                    if name == "w2-sym-pc-colwise":
                        # per-channel groups span K, so no row-wise shard: column-wise layers
                        # all-gather their outputs and the rest stays replicated
                        plan = {k: ColwiseParallel(output_layouts=Replicate()) for k, v in plan.items()
                                if isinstance(v, ColwiseParallel)}
                    model = model.to(device=device, dtype=dtype)
                    x = x.to(device=device, dtype=dtype)
                    quantize_(model, CONFIGS[name]())
                    with torch.no_grad():
                        ref = model(x)
                    if src_data_rank == 0 and rank != 0:
                        # rank 0's weights must win: start this rank from different ones
                        torch.manual_seed(1234)
                        other = type(model)().to(device=device, dtype=dtype)
                        quantize_(other, CONFIGS[name]())
                        for fqn in plan:  # only what is sharded comes from rank 0
                            model.get_submodule(fqn).load_state_dict(other.get_submodule(fqn).state_dict())
                    check_tensor_parallel(model, plan, world)
                    parallelize_module(model, mesh, plan, src_data_rank=src_data_rank)
                    with torch.no_grad():
                        out = model(x)
                    out = out.full_tensor() if hasattr(out, "full_tensor") else out
                    # dynamic-activation formats quantize each rank's K slice of the input per
                    # token on their own: close to TP=1, not bit-identical
                    tol = 1e-5 if device == "cpu" and name.startswith(("int4", "w2")) else 3e-2
                    torch.testing.assert_close(out, ref, atol=tol, rtol=tol,
                                               msg=lambda m: f"{name} {kind} src={src_data_rank}: {m}")
        dist.destroy_process_group()
    except Exception:
        errors.put(f"rank {rank}: {traceback.format_exc()}")
        raise


def _spawn(backend, names, attempts=2):
    """Runs the workers; a Python error in either fails the test at once. A worker killed by a
    signal with no Python error (gloo's C++ threads aborted once on a loaded 2-core CI machine:
    'terminate called without an active exception', SIGABRT) gets one more attempt on a new port."""
    ctx = mp.get_context("spawn")
    for attempt in range(attempts):
        errors = ctx.SimpleQueue()
        try:
            mp.spawn(_worker, args=(2, _free_port(), backend, names, errors), nprocs=2, join=True)
            return
        except Exception as err:
            messages = []
            while not errors.empty():
                messages.append(errors.get())
            crashed = isinstance(err, mp.ProcessExitedException) and err.signal_name is not None
            if messages or not crashed or attempt == attempts - 1:
                pytest.fail("\n".join(messages) or f"a TP worker failed: {err}")


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")
def test_tp2_matches_tp1_gloo():
    _spawn("gloo", list(CONFIGS))


@pytest.mark.skipif(torch.cuda.device_count() < 2 or not dist.is_nccl_available(), reason="needs 2 GPUs and NCCL")
def test_tp2_matches_tp1_nccl():
    _spawn("nccl", ["int4-g32", "a8w8-int8", "a8w4-g32"])


# --- checks that need no processes ------------------------------------------------------


def test_check_tensor_parallel_reports_each_layer():
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel

    model = torch.nn.ModuleDict({"up": torch.nn.Linear(256, 96), "down": torch.nn.Linear(384, 256)})
    quantize_(model, tg.GemliteInt4WeightOnlyConfig(group_size=128))
    plan = {"up": ColwiseParallel(), "down": RowwiseParallel()}
    check_tensor_parallel(model, plan, 1)
    check_tensor_parallel(model, plan, 3)  # 96 / 3 rows, 384 / 3 = 128 = one group
    with pytest.raises(ValueError, match=r"(?s)up: ColwiseParallel splits out_features=96.*tp=5.*"
                                         r"down: RowwiseParallel splits in_features=384"):
        check_tensor_parallel(model, plan, 5)
    with pytest.raises(ValueError, match=r"in_features / tp = 384 / 2 = 192, not a multiple of group_size=128: "
                                         r"quantize this layer with group_size <= 64"):
        check_tensor_parallel(model, plan, 2)


@pytest.mark.parametrize("k,tp,group,expected", [
    (4096, 8, 128, 128), (14336, 8, 128, 128), (11008, 2, 128, 128), (11008, 4, 128, 64),
    (1024, 4, None, 256), (1024, 1, None, None), (384, 2, 128, 64), (4096, 2, 256, 256),
])
def test_tp_group_size(k, tp, group, expected):
    assert tp_group_size(k, tp, group) == expected


def test_tp_group_size_errors():
    with pytest.raises(ValueError, match="not divisible"):
        tp_group_size(1000, 3)
    with pytest.raises(ValueError, match="multiple of 32"):
        tp_group_size(96, 2)


def test_uneven_shard_and_mid_group_k_slice_messages():
    w = tg.Int4GemliteTensor.from_hp(torch.randn(96, 256), group_size=128)
    with pytest.raises(ValueError, match="Tensor parallel .* multiple of the group size"):
        w.narrow(1, 0, 64)
    with pytest.raises(ValueError, match="divisible by the TP degree"):
        torch.nn.functional.pad(w, (0, 0, 0, 32))


def test_scatter_asks_for_async_work():
    """NCCL (torch >= 2.8) returns no work object for a synchronous collective, and that null
    pointer crashes every rank (SIGSEGV) once the dispatcher hands it back to Python: the
    per-field scatters must run with async_op=True and wait on the work they get."""
    w = tg.Int4GemliteTensor.from_hp(torch.randn(64, 128), group_size=32)
    out = torch.empty_like(w)
    calls = []

    class _Work:
        def wait(self):
            calls.append("wait")
            return True

    def nccl_like_scatter(outputs, inputs, group, root, async_op=True, timeout=-1):
        calls.append(async_op)
        return outputs, (_Work() if async_op else None)

    handler = type(w)._ATEN_OP_TABLE[type(w)][torch.ops.c10d.scatter_.default]
    result, work = handler(nccl_like_scatter, (), ([out], [], "group", 0, False, -1), {})
    fields = [n for n in out._data_names() if getattr(out, n) is not None]
    assert result[0] is out and isinstance(work, _Work)
    assert calls == [True, "wait"] * len(fields)
