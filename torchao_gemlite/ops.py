"""torch.library custom ops: the one place where tensors and layers call kernels.

Each op has a fake (meta) implementation, so it works under ``torch.compile(fullgraph=True)``
and inside CUDA graphs. fp16/bf16 CUDA inputs go to the Triton kernels through the dispatcher;
CPU inputs, and fp32 inputs on any device, take the reference path (dequantize + fp32 matmul),
so a model quantized on a machine without a GPU, or kept in fp32, still runs.

The ops are declared with ``torch.library.Library`` (schema + one Python kernel for the CPU and
CUDA keys + a fake) rather than ``torch.library.custom_op``: the latter wraps every call in
Python autograd and aliasing checks, about 30 us per call that an eager decode step pays for
every linear. The ops have no backward (inference only). Tensors call them through ``call``,
which skips the dispatcher for eager calls on plain CUDA tensors.
"""

from __future__ import annotations

import functools

import torch

from .formats import ACTIVATION_DTYPES, PackedFormat
from .quant import QuantizedWeight, reference_linear, reference_linear_a8w4, reference_linear_dynamic


def _on_kernels(x: torch.Tensor) -> bool:
    """The Triton kernels take fp16/bf16 activations on CUDA; everything else runs the reference."""
    return x.is_cuda and x.dtype in ACTIVATION_DTYPES


@functools.cache
def _dispatch():
    """The kernel dispatcher, imported on the first kernel call (``import torchao_gemlite`` does not
    load Triton); cached, because an import statement costs about 1 us on every call."""
    from .kernels import dispatch

    return dispatch


def _packed_weight(qdata, scale, zero, bits, group_size, symmetric) -> QuantizedWeight:
    k = qdata.shape[0] * (32 // bits)
    return QuantizedWeight(qdata, scale, zero, PackedFormat(bits, group_size, symmetric), (qdata.shape[1], k))


def _linear_weight_only(x, qdata, scale, zero, bias, bits, group_size, symmetric):
    """y = x @ dequant(W).T + bias for a packed weight (docs/formats.md). x: [..., K] -> [..., N]."""
    if _on_kernels(x):
        return _dispatch().weight_only_linear(x, qdata, scale, zero, bias, bits, group_size, symmetric)
    return reference_linear(x, _packed_weight(qdata, scale, zero, bits, group_size, symmetric), bias)


def _linear_dynamic_int8(x, weight_q, weight_scale, bias):
    """A8W8 int8: x quantized per token to int8 on the fly; weight_q int8 [N, K], weight_scale fp32 [N]."""
    if _on_kernels(x):
        return _dispatch().dynamic_int8_linear(x, weight_q, weight_scale, bias)
    return reference_linear_dynamic(x, weight_q, weight_scale, bias, act="int8")


def _linear_dynamic_fp8(x, weight_q, weight_scale, bias):
    """A8W8 fp8: x quantized per token to float8_e4m3fn; weight_q e4m3 [N, K], weight_scale fp32 [N]."""
    if _on_kernels(x):
        return _dispatch().dynamic_fp8_linear(x, weight_q, weight_scale, bias)
    return reference_linear_dynamic(x, weight_q, weight_scale, bias, act="fp8")


def _linear_dynamic_a8w4(x, qdata, scale, bias, group_size):
    """A8W4: x quantized per token to int8; a packed 4-bit symmetric weight (docs/formats.md)."""
    if _on_kernels(x):
        return _dispatch().dynamic_a8w4_linear(x, qdata, scale, bias, group_size)
    return reference_linear_a8w4(x, _packed_weight(qdata, scale, None, 4, group_size, True), bias)


def _rows_from_qdata_cols(x, qdata, *args):  # packed layouts: N is qdata's last axis
    return x.new_empty(*x.shape[:-1], qdata.shape[1])


def _rows_from_weight_rows(x, weight_q, *args):  # row-wise layouts: N is weight_q's first axis
    return x.new_empty(*x.shape[:-1], weight_q.shape[0])


def call(name: str, x: torch.Tensor, *args) -> torch.Tensor:
    """Runs op ``name``. Eager calls on plain CUDA tensors go straight to its implementation:
    the dispatcher adds about 17 us a call, as much as a decode GEMV runs. Everything else
    (torch.compile and export tracing, fake tensors, other subclasses) goes through torch.ops."""
    if type(x) is torch.Tensor and x.is_cuda and not torch.compiler.is_compiling():
        return _IMPLS[name](x, *args)
    return getattr(torch.ops.torchao_gemlite, name)(x, *args)


_LIB = torch.library.Library("torchao_gemlite", "DEF")
_OPS = {
    "linear_weight_only(Tensor x, Tensor qdata, Tensor scale, Tensor? zero, Tensor? bias, int bits, "
    "int group_size, bool symmetric) -> Tensor": (_linear_weight_only, _rows_from_qdata_cols),
    "linear_dynamic_int8(Tensor x, Tensor weight_q, Tensor weight_scale, Tensor? bias) -> Tensor":
        (_linear_dynamic_int8, _rows_from_weight_rows),
    "linear_dynamic_fp8(Tensor x, Tensor weight_q, Tensor weight_scale, Tensor? bias) -> Tensor":
        (_linear_dynamic_fp8, _rows_from_weight_rows),
    "linear_dynamic_a8w4(Tensor x, Tensor qdata, Tensor scale, Tensor? bias, int group_size) -> Tensor":
        (_linear_dynamic_a8w4, _rows_from_qdata_cols),
}
_IMPLS = {}
for _schema, (_impl, _fake) in _OPS.items():
    _name = _schema.split("(")[0]
    _IMPLS[_name] = _impl
    _LIB.define(_schema)
    for _key in ("CPU", "CUDA"):
        _LIB.impl(_name, _impl, _key)
    torch.library.register_fake(f"torchao_gemlite::{_name}", _fake, lib=_LIB)

linear_weight_only = torch.ops.torchao_gemlite.linear_weight_only
linear_dynamic_int8 = torch.ops.torchao_gemlite.linear_dynamic_int8
linear_dynamic_fp8 = torch.ops.torchao_gemlite.linear_dynamic_fp8
linear_dynamic_a8w4 = torch.ops.torchao_gemlite.linear_dynamic_a8w4
