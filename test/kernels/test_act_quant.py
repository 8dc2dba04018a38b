"""Per-token activation quantization kernel against quant.quantize_rowwise_int8 / _fp8.

Codes and scales must match the reference bit for bit, on each device: the scale follows
PyTorch's ``absmax / 127.0`` (CUDA: times fl(1/127); CPU: a division), x / scale is an IEEE
division, int8 rounds half to even, fp8 casts round to nearest even. There are no documented
exceptions: a single differing code moves the GEMM output by about a thousandth of its
range, which is what made the first GPU run's end-to-end checks fail for M >= 64. Without
CUDA the kernel runs under Triton's interpreter (conftest.py) on fp16 only: the interpreter
computes bf16 wrongly and casts fp32 -> fp8 wrongly, so bf16 and fp8 run on CUDA only.
"""

import pytest
import torch

from torchao_gemlite.kernels.act_quant import FP8_DTYPE, _launch_params, inv_qmax, quantize_per_token, whole_row_pass
from torchao_gemlite.quant import quantize_rowwise_fp8, quantize_rowwise_int8

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
DTYPES = [torch.float16, torch.bfloat16] if CUDA else [torch.float16]
cuda_only = pytest.mark.skipif(not CUDA, reason="needs CUDA (the interpreter gets bf16 / fp32->fp8 wrong)")

# one pass with several rows a program, 3-D input, odd K; K > ONE_PASS_MAX_K: one pass over a whole row at
# small M (the Llama down projection's 14336), two passes of 2048 (20000) and, past M = 1024, 4096 codes (9000).
SHAPES = [(1, 64), (3, 256), (5, 7, 96), (2, 33), (17, 512), (2, 14336), (3, 20000), (1030, 9000)]


def _inputs(shape, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen) * torch.rand(shape[:-1] + (1,), generator=gen) * 8
    x = x.to(dtype)
    x.view(-1, shape[-1])[0].zero_()  # a row of zeros: scale must stay finite and positive
    return x.to(DEVICE)


def _assert_same(q, s, rq, rs):
    assert q.shape == rq.shape and s.shape == rs.shape
    assert q.dtype == rq.dtype and s.dtype == torch.float32
    assert torch.equal(s, rs)
    assert torch.equal(q.view(torch.uint8), rq.view(torch.uint8)), (q.float() - rq.float()).abs().max()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_int8_matches_reference(shape, dtype):
    x = _inputs(shape, dtype)
    q, s = quantize_per_token(x, torch.int8)
    _assert_same(q, s, *quantize_rowwise_int8(x))
    assert (s > 0).all()


def test_int8_ties_round_half_even():
    # absmax 127 -> scale exactly 1, so x / scale hits every .5 tie between -63.5 and 63.5.
    halves = torch.arange(-127, 128, dtype=torch.float32) / 2
    x = torch.cat([halves, torch.tensor([127.0])]).to(torch.float16).reshape(1, -1).to(DEVICE)
    q, s = quantize_per_token(x, torch.int8)
    assert s.item() == 1.0
    _assert_same(q, s, *quantize_rowwise_int8(x))


@pytest.mark.parametrize("dtype", DTYPES)
def test_int8_large_magnitudes_and_zero_rows(dtype):
    big = torch.finfo(dtype).max
    x = torch.randn(4, 128).to(dtype)
    x[0] = big
    x[1] = -big
    x[1, 5] = 1e-3
    x[2].zero_()
    x[3, 7] = big / 3
    x = x.to(DEVICE)
    q, s = quantize_per_token(x, torch.int8)
    _assert_same(q, s, *quantize_rowwise_int8(x))
    assert torch.isfinite(s).all() and (q[2] == 0).all()
    assert q[0].eq(127).all() and q[1, 0].item() == -127


def test_non_contiguous_input():
    base = _inputs((96, 40), torch.float16)
    x = base.t()  # [40, 96], K stride != 1
    q, s = quantize_per_token(x, torch.int8)
    _assert_same(q, s, *quantize_rowwise_int8(x))
    x3 = _inputs((4, 6, 64), torch.float16)[:, ::2]  # leading axes that cannot be viewed flat
    q, s = quantize_per_token(x3, torch.int8)
    _assert_same(q, s, *quantize_rowwise_int8(x3))


def test_outputs_fully_written():
    x = _inputs((9, 200), torch.float16)
    out = torch.full((9, 200), 99, dtype=torch.int8, device=DEVICE)
    out_scale = torch.full((9, 1), float("nan"), device=DEVICE)
    q, s = quantize_per_token(x, torch.int8, out=out, out_scale=out_scale)
    assert q.data_ptr() == out.data_ptr() and s.data_ptr() == out_scale.data_ptr()
    _assert_same(q, s, *quantize_rowwise_int8(x))


def test_empty_rows():
    q, s = quantize_per_token(torch.empty(0, 64, dtype=torch.float16, device=DEVICE))
    assert q.shape == (0, 64) and s.shape == (0, 1)


@cuda_only
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES + [(1024, 4096), (33, 14336)])
def test_fp8_matches_reference(shape, dtype):
    x = _inputs(shape, dtype)
    q, s = quantize_per_token(x, FP8_DTYPE)
    _assert_same(q, s, *quantize_rowwise_fp8(x))


@cuda_only
@pytest.mark.parametrize("dtype", DTYPES)
def test_fp8_saturates_and_large_magnitudes(dtype):
    big = torch.finfo(dtype).max
    x = torch.randn(3, 256, dtype=torch.float32)
    x[0] = big
    x[1, ::2] = -big
    x[2].zero_()
    x = x.to(dtype).to(DEVICE)
    q, s = quantize_per_token(x, FP8_DTYPE)
    _assert_same(q, s, *quantize_rowwise_fp8(x))
    assert not torch.isnan(q.float()).any()
    assert q.float().abs().max().item() == 448.0


@cuda_only
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 4096), (256, 4096), (4096, 4096), (8, 28672), (64, 14336)])
def test_int8_large_shapes(shape, dtype):
    x = _inputs(shape, dtype)
    _assert_same(*quantize_per_token(x, torch.int8), *quantize_rowwise_int8(x))


@pytest.mark.parametrize("qmax,quantizer", [(127.0, quantize_rowwise_int8), (448.0, quantize_rowwise_fp8)])
def test_reference_scale_follows_torch_division(qmax, quantizer):
    """The reference's scale is absmax * fl(1/QMAX) on CUDA and absmax / QMAX on CPU; plain
    randn rows hit both cases, so a kernel that ignored the device would be caught here."""
    x = torch.randn(512, 1024, generator=torch.Generator().manual_seed(7)).half().to(DEVICE)
    amax = x.float().abs().amax(-1, keepdim=True)
    expected = amax * inv_qmax(qmax) if CUDA else amax / torch.full_like(amax, qmax)
    assert torch.equal(quantizer(x)[1], expected)
    assert not torch.equal(amax * inv_qmax(qmax), amax / torch.full_like(amax, qmax))  # the cases differ


def test_errors():
    x = _inputs((2, 64), torch.float16)
    with pytest.raises(TypeError, match="x dtype"):
        quantize_per_token(x.float())
    with pytest.raises(TypeError, match="dtype must be"):
        quantize_per_token(x, torch.int16)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        quantize_per_token([1.0, 2.0])
    with pytest.raises(ValueError, match="out must be"):
        quantize_per_token(x, torch.int8, out=torch.empty(2, 32, dtype=torch.int8, device=DEVICE))
    with pytest.raises(ValueError, match="out_scale must be"):
        quantize_per_token(x, torch.int8, out_scale=torch.empty(2, device=DEVICE))


def test_launch_params():
    """(one_pass, BLOCK_K, ROWS, num_warps): rows of short K several to a program; 4096 codes at 16 warps up to
    M = 256, then 8; a whole row of up to 16384 codes in one pass at M <= 256; two passes beyond, in 4096-code
    chunks past M = 1024."""
    assert _launch_params(64, 512) == (True, 512, 8, 4)
    assert _launch_params(256, 4096) == (True, 4096, 1, 16)
    assert _launch_params(257, 4096) == (True, 4096, 1, 8)
    assert _launch_params(4096, 8192) == (True, 8192, 1, 16)
    assert _launch_params(256, 14336) == (True, 16384, 1, 16) and whole_row_pass(256, 14336)
    assert _launch_params(257, 14336) == (False, 2048, 1, 4) and not whole_row_pass(257, 14336)
    assert _launch_params(1025, 14336) == (False, 4096, 1, 8)
    assert _launch_params(1, 20000) == (False, 2048, 1, 4)


def test_inv_qmax_is_the_fp32_quotient():
    for qmax in (127.0, 448.0):
        fp32_quotient = (torch.tensor(1.0, dtype=torch.float32) / torch.tensor(qmax, dtype=torch.float32)).item()
        assert inv_qmax(qmax) == fp32_quotient
