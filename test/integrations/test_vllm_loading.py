"""vLLM-style loading: a quantized parameter filled shard by shard with narrow(...).copy_(),
fused QKV / gate-up weights assembled with cat; both match quantizing the whole weight."""

import pytest
import torch
import torch.nn.functional as F

from torchao_gemlite.tensors import (
    Float8DynActFloat8GemliteTensor,
    Int2GemliteTensor,
    Int4GemliteTensor,
    Int8DynActInt4GemliteTensor,
    Int8DynActInt8GemliteTensor,
    Int8GemliteTensor,
)

# name -> (quantize a float [N, K] weight, supports K shards)
FORMATS = {
    "int4-g64": (lambda w: Int4GemliteTensor.from_hp(w, group_size=64), True),
    "int8-sym-g128": (lambda w: Int8GemliteTensor.from_hp(w, group_size=128, symmetric=True), True),
    "int2-g32": (lambda w: Int2GemliteTensor.from_hp(w, group_size=32), True),
    "a8w4-g64": (lambda w: Int8DynActInt4GemliteTensor.from_hp(w, group_size=64), True),
    "a8w8-int8": (Int8DynActInt8GemliteTensor.from_hp, False),
    "a8w8-fp8": (Float8DynActFloat8GemliteTensor.from_hp, False),
}
K = 256
QKV_SIZES = (128, 64, 64)  # GQA: q has twice the rows of k and v


def _assert_same(a, b):
    assert type(a) is type(b)
    for name in a._data_names():
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert torch.equal(x, y), name


@pytest.fixture
def weights():
    torch.manual_seed(0)
    return [torch.randn(n, K) for n in QKV_SIZES]


@pytest.mark.parametrize("name", list(FORMATS))
def test_fused_qkv_narrow_copy(name, weights):
    quantize, _ = FORMATS[name]
    whole = quantize(torch.cat(weights))
    # the parameter as the model builds it (any values), then the checkpoint shards copied in
    param = torch.nn.Parameter(quantize(torch.randn(sum(QKV_SIZES), K)), requires_grad=False)
    offset = 0
    for w in weights:
        param.data.narrow(0, offset, w.shape[0]).copy_(quantize(w))
        offset += w.shape[0]
    _assert_same(param.data, whole)
    x = torch.randn(5, K)
    assert torch.equal(F.linear(x, param), F.linear(x, whole))


@pytest.mark.parametrize("name", list(FORMATS))
def test_fused_qkv_cat(name, weights):
    quantize, _ = FORMATS[name]
    fused = torch.cat([quantize(w) for w in weights], dim=0)
    _assert_same(fused, quantize(torch.cat(weights)))
    # and split back (vLLM's split of a fused output matches per-shard outputs)
    x = torch.randn(3, K)
    outs = F.linear(x, fused).split(QKV_SIZES, dim=-1)
    for w, out in zip(weights, outs):
        assert torch.equal(out, F.linear(x, quantize(w)))


@pytest.mark.parametrize("name", [n for n, (_, k_ok) in FORMATS.items() if k_ok])
def test_row_parallel_shards_along_k(name, weights):
    """A row-parallel layer loads its K slice; slices at group boundaries equal the whole."""
    quantize, _ = FORMATS[name]
    w = weights[0]
    whole = quantize(w)
    param = quantize(torch.randn_like(w))
    for start in range(0, K, 128):
        param.narrow(1, start, 128).copy_(quantize(w[:, start:start + 128]))
    _assert_same(param, whole)


def test_narrow_copy_mismatch_is_a_clear_error(weights):
    param = Int4GemliteTensor.from_hp(torch.randn(256, K), group_size=64)
    with pytest.raises(ValueError, match="group_size"):
        param.narrow(0, 0, 128).copy_(Int4GemliteTensor.from_hp(weights[0], group_size=128))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", list(FORMATS))
def test_linear_on_sliced_views_on_gpu(name, weights):
    """N and K slices are strided views: the kernels must read them without a copy by us."""
    quantize, k_ok = FORMATS[name]
    w = quantize(torch.cat(weights).cuda().half())
    x = torch.randn(4, K, device="cuda", dtype=torch.float16)
    pieces = [(w.narrow(0, 64, 128), x)]
    if k_ok:
        pieces.append((w.narrow(1, 128, 128), x[:, 128:]))
    for view, inp in pieces:
        # the same weight with its own compact storage: same kernels, no strides to get wrong
        compact = view._with_data({n: (None if getattr(view, n) is None else getattr(view, n).contiguous())
                                   for n in view._data_names()})
        torch.testing.assert_close(F.linear(inp, view), F.linear(inp, compact), atol=1e-2, rtol=1e-2)
        if not name.startswith("a8"):  # weight-only: also against the dequantized weight
            ref = inp.float() @ view.dequantize(torch.float32).t()
            torch.testing.assert_close(F.linear(inp, view).float(), ref, atol=0.05, rtol=0.01)
