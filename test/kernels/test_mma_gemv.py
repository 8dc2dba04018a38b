"""The tensor-core decode kernel (mma_gemv.py) against the reference linear: one and two batch tiles, and
past M = 16 several 16-row M tiles.

Without CUDA it runs under Triton's interpreter (conftest.py) with the mma.sync, LOP3, FMA and PRMT
instructions emulated (fp16 only: the interpreter computes bf16 wrongly); with CUDA the inline PTX
runs, fp16 and bf16. Outputs are NaN-poisoned before every call.
"""

import itertools

import pytest
import torch

from torchao_gemlite.kernels.configs import LaunchConfig, choose_config, decode_config
from torchao_gemlite.kernels.dispatch import launch_weight_only, weight_only_linear
from torchao_gemlite.quant import quantize_weight, reference_linear

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
DTYPES = [torch.float16, torch.bfloat16] if CUDA else [torch.float16]
TOLERANCE = {torch.float16: 2e-3, torch.bfloat16: 1.2e-2}
# (bits, symmetric, group size): every bit width, both zero conventions, groups of one and several
# 32-code sub-blocks and per-channel (1-bit symmetric: zero 0.5, the one symmetric format with an x-sum term)
FORMATS = [(8, True, None), (8, False, 64), (4, False, 32), (4, True, 128), (2, False, 64), (2, True, 32),
           (1, False, 32), (1, True, None)]
# launch shapes: (block_n, num_warps, block_k, split_k): one warp; warps along N and K with split-K;
# warps along K only, a split that leaves some warps' last step past K; the two-tile shape of the
# tuned tables (4 warps along N, 2 along K, 256-code steps); the 8-bit and bf16 launch past M = 16
# (4 warps along K)
LAUNCHES = [(32, 1, 128, 1), (64, 4, 128, 2), (32, 2, 64, 3), (128, 8, 256, 2), (32, 4, 128, 2)]


def _case(bits, symmetric, group, m, k, n, dtype, bias=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    qw = quantize_weight(torch.randn(n, k, generator=gen).to(dtype).to(DEVICE), bits, group, symmetric)
    x = torch.randn(m, k, generator=gen).to(dtype).to(DEVICE)
    b = torch.randn(n, generator=gen).to(dtype).to(DEVICE) if bias else None
    return qw, x, b


def _run(qw, x, b, config):
    out = torch.full((x.shape[0], qw.shape[0]), float("nan"), dtype=x.dtype, device=x.device)
    return launch_weight_only(x, qw.qdata, qw.scale, qw.zero, b, qw.fmt.bits, qw.fmt.group_size, qw.fmt.symmetric,
                              config, out=out)


def _check(qw, x, b, y):
    ref = reference_linear(x, qw, b).float()
    assert not torch.isnan(y).any(), "unwritten (NaN-poisoned) outputs remain"
    err = ((y.float() - ref).norm() / ref.norm()).item()
    assert err < TOLERANCE[x.dtype], err


if CUDA:
    MATRIX = list(itertools.product(FORMATS, LAUNCHES, (1, 2, 3, 5, 8, 9, 16, 17, 40), DTYPES))
else:  # every format x launch shape once, M spread over them
    MATRIX = [(f, launch, (1, 3, 8, 13, 16, 21, 40)[i % 7], torch.float16)
              for i, (f, launch) in enumerate(itertools.product(FORMATS, LAUNCHES))]


@pytest.mark.parametrize("fmt,launch,m,dtype", MATRIX)
def test_mma_kernel_matches_reference(fmt, launch, m, dtype):
    """Ragged N (72: not a multiple of 32 or 64) and K (416 or 448: 3.25 or 3.5 steps of 128), bias on odd M."""
    bits, symmetric, group = fmt
    block_n, warps, block_k, split = launch
    block_k = max(block_k, group or 0)
    k = {None: 416, 32: 416, 64: 448, 128: 384}[group]
    qw, x, b = _case(bits, symmetric, group, m, k, 72, dtype, bias=m % 2 == 1)
    _check(qw, x, b, _run(qw, x, b, LaunchConfig("mma", 8, block_n, block_k, split, num_warps=warps)))


def test_mma_kernel_even_shapes_take_the_unmasked_path():
    """K and N multiples of the step and of the CTA width (EVEN_K, EVEN_N: no masks, no clamps)."""
    qw, x, b = _case(4, False, 64, 4, 512, 128, torch.float16)
    _check(qw, x, b, _run(qw, x, b, LaunchConfig("mma", 8, 64, 128, 2, num_warps=4)))


@pytest.mark.parametrize("m", [1, 6, 11, 21])
def test_mma_kernel_reads_x_of_any_layout(m):
    """A row stride that is not a multiple of 4, an x not 8-byte aligned (both copied: the kernel reads
    x as 8-byte pairs) and a 3-D input through the dispatcher."""
    qw, _, b = _case(2, False, 32, 1, 256, 40, torch.float16)
    cfg = LaunchConfig("mma", 8, 32, 128, 1, num_warps=2)
    strided = torch.randn(m, 258, dtype=torch.float16, device=DEVICE)[:, :256]
    misaligned = torch.randn(m * 256 + 2, dtype=torch.float16, device=DEVICE)[2:].view(m, 256)
    for x in (strided, misaligned):
        _check(qw, x, b, _run(qw, x, b, cfg))
    x3 = torch.randn(2, 3, 256, dtype=torch.float16, device=DEVICE)
    y3 = weight_only_linear(x3, qw.qdata, qw.scale, qw.zero, b, 2, 32, False, cfg)
    _check(qw, x3.reshape(6, 256), b, y3.reshape(6, 40))


def test_the_dispatcher_sends_m_up_to_16_to_the_mma_kernel_and_narrower_codes_up_to_32():
    """4-bit codes past 16 rows and 2- and 1-bit codes past 24: the small-batch kernel (test_mma_batch.py)."""
    assert [choose_config(m, 4096, 4096, 4, 128, "float16", "NVIDIA H100 80GB HBM3", 132).kernel
            for m in (1, 2, 3, 8, 9, 16, 17, 32, 33)] == ["mma", "mma", "mma", "mma", "mma", "mma", "mma_batch",
                                                          "mma_batch", "gemm"]
    assert [choose_config(m, 4096, 4096, bits, 64, "float16", "NVIDIA H100 80GB HBM3", 132).kernel
            for bits in (8, 2, 1) for m in (16, 17, 32, 33)] == ["mma", "gemm", "gemm", "gemm"] + ["mma", "mma",
                                                                                              "mma_batch", "gemm"] * 2
    qw, x, b = _case(4, False, 128, 5, 256, 64, torch.float16)
    y = weight_only_linear(x, qw.qdata, qw.scale, qw.zero, b, 4, 128, False)
    _check(qw, x, b, y)
    assert torch.equal(y, _run(qw, x, b, decode_config(64, 256, 128, 4)))


@pytest.mark.skipif(not CUDA, reason="run-to-run bit identity is a GPU property")
def test_mma_kernel_is_deterministic():
    for m in (8, 16):
        qw, x, b = _case(4, False, 128, m, 4096, 1376, torch.bfloat16)
        cfg = LaunchConfig("mma", 16, 64, 128, 3, num_warps=8)
        first = _run(qw, x, b, cfg)
        assert all(torch.equal(first, _run(qw, x, b, cfg)) for _ in range(5))


def test_mma_kernel_errors_name_the_problem():
    qw, x, b = _case(4, False, 64, 129, 256, 64, torch.float16)
    with pytest.raises(ValueError, match="M < 129"):
        _run(qw, x, b, LaunchConfig("mma", 16, 32, 128, 1, num_warps=2))
    x = x[:2]
    for bad in (LaunchConfig("mma", 8, 48, 128, 1, num_warps=2), LaunchConfig("mma", 8, 64, 128, 1, num_warps=3),
                LaunchConfig("mma", 8, 32, 96, 1, num_warps=2)):
        with pytest.raises(ValueError, match="block_n a multiple of 32"):
            _run(qw, x, b, bad)
    with pytest.raises(ValueError, match="num_stages=3 is not supported: 1 .* or 2"):
        _run(qw, x, b, LaunchConfig("mma", 8, 32, 128, 1, num_warps=2, num_stages=3))
    if not CUDA:  # the interpreter computes bf16 wrongly: refused there
        q8, x8, b8 = _case(8, True, None, 2, 256, 64, torch.bfloat16)
        with pytest.raises(ValueError, match="8-bit weights with torch.bfloat16 activations under Triton's interp"):
            _run(q8, x8, b8, LaunchConfig("mma", 8, 32, 128, 1, num_warps=2))


@pytest.mark.parametrize("stages", [1, 2])
def test_both_load_schedules_match_the_reference_and_each_other(stages):
    """num_stages = 1 (a step's loads at its top) and 2 (the next step's too, read nothing past the split's last
    step): ragged K (a warp's last steps past K read x, scales and zeros as 0), a split, two batch tiles."""
    for m in (1, 11):
        qw, x, b = _case(4, False, 32, m, 416, 72, torch.float16, seed=m)
        cfg = LaunchConfig("mma", 8, 32, 64, 2, num_warps=2, num_stages=stages)
        y = _run(qw, x, b, cfg)
        _check(qw, x, b, y)
        assert torch.equal(y, _run(qw, x, b, LaunchConfig("mma", 8, 32, 64, 2, num_warps=2, num_stages=3 - stages)))


def test_weights_its_vector_loads_cannot_read_take_another_kernel():
    """The mma kernel reads 4 columns of a word row with one 16-byte load and of a scale row with one 8-byte
    load: N not a multiple of 4, or a weight narrowed to an odd first column (vLLM-style shards), goes to the
    GEMV or the GEMM instead, with the right result."""
    from torchao_gemlite.kernels import dispatch

    cfg = LaunchConfig("mma", 8, 32, 128, 1, num_warps=2)
    qw, x, b = _case(4, False, 64, 3, 256, 70, torch.float16)  # N = 70
    assert not dispatch.mma_operands_aligned(qw.qdata, qw.scale, qw.zero)
    plan = dispatch.WeightOnlyPlan(x, qw.qdata, qw.scale, qw.zero, b, 4, 64, False, cfg)
    assert plan.config.kernel == "gemv"
    _check(qw, x, b, plan(x, qw.qdata, qw.scale, qw.zero, b))
    wide, _, _ = _case(4, False, 64, 3, 256, 73, torch.float16)
    q, s, z = (t.narrow(1, 1, 72) for t in (wide.qdata, wide.scale, wide.zero))  # first column 1: misaligned
    assert q.shape[1] % 4 == 0 and not dispatch.mma_operands_aligned(q, s, z)
    shard = dispatch.launch_weight_only(x, q, s, z, None, 4, 64, False, cfg)
    ref = dispatch.launch_weight_only(x, q.contiguous(), s.contiguous(), z.contiguous(), None, 4, 64, False, cfg)
    assert ((shard.float() - ref.float()).norm() / ref.float().norm()).item() < TOLERANCE[torch.float16]
