"""Format/shape parsing and the bytes / FLOPs accounting of the kernel benchmark (CPU)."""

import pytest
import torch

from torchao_gemlite.bench import kernels

K, N = 256, 64


@pytest.mark.parametrize("name, kind, bits, group, symmetric", [
    ("a16w4-asym-g128", "weight_only", 4, 128, False),
    ("A16W8-sym-pc", "weight_only", 8, None, True),
    ("a16w1-sym-g64", "weight_only", 1, 64, True),
    ("a8w8-int8", "int8", 8, None, True),
    ("a8w8-fp8", "fp8", 8, None, True),
    ("a8w4-g128", "a8w4", 4, 128, True),
])
def test_parse_format(name, kind, bits, group, symmetric):
    spec = kernels.parse_format(name)
    assert (spec.kind, spec.bits, spec.group_size, spec.symmetric) == (kind, bits, group, symmetric)
    assert spec.name == name.lower()
    assert spec.family in kernels.FAMILIES


@pytest.mark.parametrize("name", ["a16w3-asym-g128", "a16w4-g128", "a8w8", "w4", "a8w4-sym"])
def test_parse_format_rejects(name):
    with pytest.raises(ValueError, match="unknown format"):
        kernels.parse_format(name)


def test_default_formats_parse_and_cover_every_family():
    families = {kernels.parse_format(f).family for f in kernels.DEFAULT_FORMATS}
    assert families == set(kernels.FAMILIES)


def test_parse_shape():
    assert kernels.parse_shape("4096x14336") == (4096, 14336)
    assert kernels.parse_shape(" 5120X13824 ") == (5120, 13824)
    for bad in ("4096", "0x5", "axb"):
        with pytest.raises(ValueError):
            kernels.parse_shape(bad)


def _build(name):
    impl = next(i for i in kernels.select_impls(["a16w4-asym-g128"]) if i.name == name) \
        if name in kernels.ANCHOR_NAMES else kernels.ours(kernels.parse_format(name))
    return impl.build(K, N, torch.float16, torch.device("cpu"))


@pytest.mark.parametrize("name, weight_bytes", [
    # qdata int32 [K/8, N] + scale and zero fp16 [K/128, N]
    ("a16w4-asym-g128", (K // 8) * N * 4 + 2 * (K // 128) * N * 2),
    ("a16w4-sym-g128", (K // 8) * N * 4 + (K // 128) * N * 2),
    ("a16w2-asym-g64", (K // 16) * N * 4 + 2 * (K // 64) * N * 2),
    ("a16w8-sym-pc", (K // 4) * N * 4 + N * 2),
    # int8 / fp8 [N, K] + fp32 scale [N]
    ("a8w8-int8", N * K + N * 4),
    ("a8w8-fp8", N * K + N * 4),
    ("a8w4-g128", (K // 8) * N * 4 + (K // 128) * N * 2),
    ("cublas", N * K * 2),
])
def test_bytes_accounting(name, weight_bytes):
    built = _build(name)
    assert built.weight_bytes == weight_bytes
    assert built.io_bytes(3) == 3 * K * 2 + 3 * N * 2  # fp16 x read + fp16 y written
    x = built.make_input(3)
    assert x.abs().sum() > 0  # random, never zeros
    y = built.call(x, built.make_weights())
    assert y.shape == (3, N) and y.dtype == torch.float16


def test_int_mm_accounting():
    built = _build("torch-int-mm")
    assert built.weight_bytes == N * K
    assert built.io_bytes(32) == 32 * K + 32 * N * 4  # int8 x, int32 y


def test_weight_copies_are_distinct_tensors():
    built = _build("a16w4-asym-g128")
    a, b = built.make_weights(), built.make_weights()  # the weight tensor subclass, as a model holds it
    assert type(a[0]).__name__ == "Int4GemliteTensor"
    assert a[0].qdata.data_ptr() != b[0].qdata.data_ptr()
    assert torch.equal(a[0].qdata, b[0].qdata) and torch.equal(a[0].scale, b[0].scale)


def test_flops():
    assert kernels.flops(16, 4096, 14336) == 2 * 16 * 4096 * 14336


def test_select_impls_always_has_the_baseline():
    names = [i.name for i in kernels.select_impls(["a8w8-int8"], anchors=["torch-int-mm"], gemlite=False)]
    assert names == ["a8w8-int8", "torch-int-mm", "cublas"]
    with pytest.raises(ValueError, match="unknown anchor"):
        kernels.select_impls([], anchors=["nope"])
    tinygemm = next(i for i in kernels.ANCHORS if i.name == "tinygemm-w4-g128")
    assert tinygemm.runs_with(torch.bfloat16) and not tinygemm.runs_with(torch.float16)


def test_tensor_nbytes():
    t = torch.zeros(4, 8, dtype=torch.float16)
    assert kernels.tensor_nbytes(t) == 64
    assert kernels.tensor_nbytes((t, None, torch.zeros(3, dtype=torch.int32))) == 76
    lin = torch.nn.Linear(8, 4, bias=True)
    assert kernels.tensor_nbytes(lin) == (32 + 4) * 4
