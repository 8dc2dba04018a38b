"""The small-batch tensor-core kernel (mma_batch.py) against the reference linear: 1, 2, 4 and 8 batch tiles a
CTA, several M tiles, the group's scale and zero folded into the weight operand.

Without CUDA it runs under Triton's interpreter (conftest.py) with the PTX emulated (fp16 only: the interpreter
computes bf16 wrongly); with CUDA the inline PTX runs, fp16 and bf16. Outputs are NaN-poisoned before every call.
"""

import itertools

import pytest
import torch

from test_mma_gemv import CUDA, DEVICE, DTYPES, FORMATS, _case, _check, _run  # the same cases and checks

from torchao_gemlite.kernels.configs import LaunchConfig, batch_config
from torchao_gemlite.kernels.dispatch import weight_only_linear

# launch shapes: (block_m, block_n, num_warps, block_k, split_k, num_stages): rows a CTA from one to eight batch
# tiles, warps along N and K, splits that leave some warps' last step past K, both load schedules
LAUNCHES = [(32, 64, 8, 64, 2, 1), (64, 32, 2, 32, 3, 2), (16, 128, 4, 64, 1, 2), (8, 32, 1, 32, 1, 1)]


if CUDA:
    MATRIX = list(itertools.product(FORMATS, LAUNCHES, (1, 7, 17, 32, 40, 64, 100), DTYPES))
else:  # every format x launch shape once, M spread over them
    MATRIX = [(f, launch, (3, 17, 40, 64, 29)[i % 5], torch.float16)
              for i, (f, launch) in enumerate(itertools.product(FORMATS, LAUNCHES))]


@pytest.mark.parametrize("fmt,launch,m,dtype", MATRIX)
def test_batch_kernel_matches_reference(fmt, launch, m, dtype):
    """Ragged N (72: not a multiple of 32 or 64) and K (416 or 448: not a whole number of steps), bias on odd M,
    M not a multiple of the CTA's rows."""
    bits, symmetric, group = fmt
    block_m, block_n, warps, block_k, split, stages = launch
    k = {None: 416, 32: 416, 64: 448, 128: 384}[group]
    qw, x, b = _case(bits, symmetric, group, m, k, 72, dtype, bias=m % 2 == 1)
    _check(qw, x, b, _run(qw, x, b, LaunchConfig("mma_batch", block_m, block_n, block_k, split, num_warps=warps,
                                                 num_stages=stages)))


def test_batch_kernel_even_shapes_and_both_schedules_agree():
    """K and N multiples of the step and of the CTA width (no masks, no clamps); loads at a step's top and a step
    ahead give the same bits."""
    qw, x, b = _case(4, False, 64, 24, 512, 128, torch.float16)
    ys = [_run(qw, x, b, LaunchConfig("mma_batch", 32, 64, 64, 2, num_warps=4, num_stages=s)) for s in (1, 2)]
    _check(qw, x, b, ys[0])
    assert torch.equal(ys[0], ys[1])


def test_batch_kernel_reads_x_of_any_layout():
    """A row stride that is not a multiple of 8 and an x not 16-byte aligned (both copied) and a 3-D input."""
    qw, _, b = _case(4, False, 32, 1, 256, 40, torch.float16)
    cfg = LaunchConfig("mma_batch", 32, 32, 64, 1, num_warps=2)
    m = 19
    strided = torch.randn(m, 258, dtype=torch.float16, device=DEVICE)[:, :256]
    misaligned = torch.randn(m * 256 + 2, dtype=torch.float16, device=DEVICE)[2:].view(m, 256)
    for x in (strided, misaligned):
        _check(qw, x, b, _run(qw, x, b, cfg))
    x3 = torch.randn(2, 9, 256, dtype=torch.float16, device=DEVICE)
    y3 = weight_only_linear(x3, qw.qdata, qw.scale, qw.zero, b, 4, 32, False, cfg)
    _check(qw, x3.reshape(18, 256), b, y3.reshape(18, 40))


@pytest.mark.skipif(not CUDA, reason="run-to-run bit identity is a GPU property")
def test_batch_kernel_is_deterministic():
    qw, x, b = _case(4, False, 128, 40, 4096, 1376, torch.bfloat16)
    cfg = LaunchConfig("mma_batch", 32, 64, 64, 3, num_warps=8)
    first = _run(qw, x, b, cfg)
    assert all(torch.equal(first, _run(qw, x, b, cfg)) for _ in range(5))


def test_batch_kernel_errors_name_the_problem():
    qw, x, b = _case(4, False, 64, 20, 256, 64, torch.float16)
    for bad in (LaunchConfig("mma_batch", 24, 32, 64, 1, num_warps=2),
                LaunchConfig("mma_batch", 128, 32, 64, 1, num_warps=2)):
        with pytest.raises(ValueError, match="block_m 8, 16, 32 or 64"):
            _run(qw, x, b, bad)
    with pytest.raises(ValueError, match="a divisor or a multiple of the group size 64"):
        _run(qw, x, b, LaunchConfig("mma_batch", 32, 32, 96, 1, num_warps=2))


def test_batch_config_fits_every_group_size():
    """batch_config's launch takes every group size the formats do (powers of two from 32, per-channel) and ragged
    K, N and M."""
    for group in (32, 64, 128, 256, None):
        k = 416 if group is None else 2 * group
        qw, x, b = _case(4, False, group, 17, k, 68, torch.float16)
        _check(qw, x, b, _run(qw, x, b, batch_config(17, 68, k, 132)))
