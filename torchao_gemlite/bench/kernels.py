"""What the kernel benchmark times: our formats and the anchors, with the bytes and FLOPs of one call.

Every implementation is an :class:`Impl`: a name, whether it is ours or an anchor, the plot
families it belongs to, and a ``build(K, N, dtype, device)`` that returns a :class:`Built`:

* ``make_weights()``: one weight bundle (a tuple of tensors, or a module for GemLite). The timer
  calls it R times to get R copies at distinct addresses, so a replay cycles through more bytes
  than the L2 cache holds;
* ``make_input(M)``: fresh random activations (never zeros);
* ``call(x, weights)``: the timed call;
* ``weight_bytes``: bytes of one bundle that one call reads (packed weights + scales/zeros);
* ``io_bytes(M)``: bytes of x read and y written.

Bytes per call = ``weight_bytes + io_bytes(M)``; FLOPs per call = 2 * M * N * K. Shapes are
K x N (in_features x out_features): the weight is [N, K], x is [M, K], y is [M, N].

Anchors measure only their matmul: ``torch._int_mm`` and ``torch._scaled_mm`` take already
quantized activations (no activation quantization in the timed call), while our A8W8/A8W4 ops
quantize x inside the call. That is the comparison a user faces: our op against the best case
of the raw library call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

# -------------------------------------------------------------------------------------------------
# Shapes, M values, dtypes
# -------------------------------------------------------------------------------------------------

LLAMA3_8B_SHAPES = [(4096, 4096), (4096, 1024), (4096, 14336), (14336, 4096)]
DEFAULT_SHAPES = LLAMA3_8B_SHAPES + [(8192, 8192), (8192, 28672), (5120, 13824)]
QUICK_SHAPES = [(4096, 4096), (4096, 14336)]
DEFAULT_M = [1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096]
QUICK_M = [1, 4, 16, 64, 256, 4096]
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
DEFAULT_DTYPES = ["fp16", "bf16"]
QUICK_DTYPES = ["fp16"]


def parse_shape(text: str) -> tuple[int, int]:
    """'4096x14336' (K x N) -> (4096, 14336)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX*,]\s*(\d+)\s*", text)
    if not match:
        raise ValueError(f"shape {text!r} is not K x N, e.g. 4096x14336")
    k, n = int(match.group(1)), int(match.group(2))
    if k < 1 or n < 1:
        raise ValueError(f"shape {text!r} must have positive K and N")
    return k, n


def shape_name(k: int, n: int) -> str:
    return f"{k}x{n}"


# -------------------------------------------------------------------------------------------------
# Our formats
# -------------------------------------------------------------------------------------------------

FAMILIES = ("a16w8", "a16w4", "a16w2", "a16w1", "a8")
FAMILY_TITLES = {
    "a16w8": "A16W8 (8-bit weight-only)",
    "a16w4": "A16W4 (4-bit weight-only)",
    "a16w2": "A16W2 (2-bit weight-only)",
    "a16w1": "A16W1 (1-bit weight-only)",
    "a8": "A8W8 / A8W4 (dynamic 8-bit activations)",
}


@dataclass(frozen=True)
class FormatSpec:
    """One of our formats, parsed from its name.

    kind: "weight_only" | "int8" | "fp8" | "a8w4".
    bits: weight bits. group_size: None means per-channel (group = K). symmetric: zero-point mode.
    """

    name: str
    kind: str
    bits: int
    group_size: Optional[int]
    symmetric: bool

    @property
    def family(self) -> str:
        return f"a16w{self.bits}" if self.kind == "weight_only" else "a8"


_WEIGHT_ONLY_RE = re.compile(r"a16w(8|4|2|1)-(asym|sym)-(pc|g(\d+))")
_A8W4_RE = re.compile(r"a8w4-g(\d+)")


def parse_format(name: str) -> FormatSpec:
    """Parses a format name.

    Weight-only: ``a16w{8,4,2,1}-{asym,sym}-{g<group>,pc}`` (pc = per-channel), e.g. a16w4-asym-g128.
    Dynamic activations: ``a8w8-int8``, ``a8w8-fp8``, ``a8w4-g<group>`` (4-bit symmetric weight).
    """
    text = name.strip().lower()
    match = _WEIGHT_ONLY_RE.fullmatch(text)
    if match:
        group = None if match.group(3) == "pc" else int(match.group(4))
        return FormatSpec(text, "weight_only", int(match.group(1)), group, match.group(2) == "sym")
    if text == "a8w8-int8":
        return FormatSpec(text, "int8", 8, None, True)
    if text == "a8w8-fp8":
        return FormatSpec(text, "fp8", 8, None, True)
    match = _A8W4_RE.fullmatch(text)
    if match:
        return FormatSpec(text, "a8w4", 4, int(match.group(1)), True)
    raise ValueError(
        f"unknown format {name!r}: use a16w<8|4|2|1>-<asym|sym>-<g<group>|pc> (e.g. a16w4-asym-g128), "
        f"a8w8-int8, a8w8-fp8 or a8w4-g<group>"
    )


DEFAULT_FORMATS = [
    "a16w8-sym-pc",
    "a16w8-asym-g128",
    "a16w4-asym-g128",
    "a16w4-sym-g128",
    "a16w4-asym-g64",
    "a16w2-asym-g64",
    "a16w2-asym-g128",
    "a16w1-asym-g64",
    "a16w1-sym-g64",
    "a8w8-int8",
    "a8w8-fp8",
    "a8w4-g128",
]
QUICK_FORMATS = ["a16w8-sym-pc", "a16w4-asym-g128", "a8w8-int8", "a8w8-fp8"]

# -------------------------------------------------------------------------------------------------
# Implementations
# -------------------------------------------------------------------------------------------------


@dataclass
class Built:
    """A ready-to-time implementation at one (K, N, dtype); see the module docstring."""

    make_weights: Callable[[], Any]
    make_input: Callable[[int], Any]
    call: Callable[[Any, Any], Any]
    weight_bytes: int
    io_bytes: Callable[[int], int]


@dataclass(frozen=True)
class Impl:
    name: str
    kind: str  # "ours" | "anchor"
    families: tuple[str, ...]
    build: Callable[[int, int, torch.dtype, torch.device], Built] = field(compare=False)
    dtypes: Optional[tuple[torch.dtype, ...]] = None  # None: every dtype
    label: str = ""

    def runs_with(self, dtype: torch.dtype) -> bool:
        return self.dtypes is None or dtype in self.dtypes


def flops(m: int, k: int, n: int) -> int:
    return 2 * m * n * k


def tensor_nbytes(obj: Any) -> int:
    """Bytes held by a tensor, a tensor subclass (its inner tensors), or a tuple/list of them."""
    if obj is None:
        return 0
    if isinstance(obj, (tuple, list)):
        return sum(tensor_nbytes(o) for o in obj)
    if isinstance(obj, torch.Tensor):
        if hasattr(obj, "__tensor_flatten__") and type(obj) is not torch.Tensor and not isinstance(
            obj, torch.nn.Parameter
        ):
            names, _ = obj.__tensor_flatten__()
            return sum(tensor_nbytes(getattr(obj, n)) for n in names)
        if isinstance(obj, torch.nn.Parameter) and type(obj.data) is not torch.Tensor:
            return tensor_nbytes(obj.data)
        return obj.numel() * obj.element_size()
    if isinstance(obj, torch.nn.Module):
        seen, total = set(), 0
        tensors = list(obj.parameters()) + list(obj.buffers())
        tensors += [v for v in vars(obj).values() if isinstance(v, torch.Tensor)]
        for t in tensors:
            key = (t.data_ptr(), t.numel(), t.dtype) if t.device.type != "meta" else id(t)
            if key not in seen:
                seen.add(key)
                total += tensor_nbytes(t)
        return total
    raise TypeError(f"cannot count bytes of {type(obj).__name__}")


def _clone_bundle(bundle: tuple) -> tuple:
    return tuple(t.clone() if isinstance(t, torch.Tensor) else t for t in bundle)


def _cached_copies(first: Callable[[], tuple]) -> Callable[[], tuple]:
    """make_weights that quantizes once and returns clones afterwards (distinct addresses)."""
    state: dict = {}

    def make():
        if "base" not in state:
            state["base"] = first()
            return state["base"]
        return _clone_bundle(state["base"])

    return make


def _random_weight(n: int, k: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.randn(n, k, dtype=torch.float32, device=device).mul_(0.02).to(dtype)


def _float_input(k: int, dtype: torch.dtype, device: torch.device) -> Callable[[int], torch.Tensor]:
    return lambda m: torch.randn(m, k, dtype=dtype, device=device)


def _io(k: int, n: int, x_elt: int, y_elt: int) -> Callable[[int], int]:
    return lambda m: m * k * x_elt + m * n * y_elt


def _build_ours(spec: FormatSpec) -> Callable[[int, int, torch.dtype, torch.device], Built]:
    """Our formats as a model runs them: ``F.linear`` with the weight tensor subclass (its eager time
    includes the subclass dispatch). Weights are quantized without refinement (speed only)."""

    def build(k: int, n: int, dtype: torch.dtype, device: torch.device) -> Built:
        from torchao_gemlite.quant import quantize_weight
        from torchao_gemlite.tensors import (WEIGHT_ONLY_TENSOR_CLASSES, Float8DynActFloat8GemliteTensor,
                                             Int8DynActInt4GemliteTensor, Int8DynActInt8GemliteTensor)

        elt = torch.finfo(dtype).bits // 8
        if spec.kind == "weight_only":
            def first():
                qw = quantize_weight(_random_weight(n, k, dtype, device), spec.bits, spec.group_size, spec.symmetric)
                return (WEIGHT_ONLY_TENSOR_CLASSES[spec.bits](qw.qdata, qw.scale, spec.bits, qw.fmt.group_size,
                                                              spec.symmetric, qw.shape, zero_point=qw.zero),)
        elif spec.kind in ("int8", "fp8"):
            cls = Int8DynActInt8GemliteTensor if spec.kind == "int8" else Float8DynActFloat8GemliteTensor

            def first():
                return (cls.from_hp(_random_weight(n, k, dtype, device)),)
        elif spec.kind == "a8w4":
            def first():
                qw = quantize_weight(_random_weight(n, k, dtype, device), 4, spec.group_size, True)
                return (Int8DynActInt4GemliteTensor(qw.qdata, qw.scale, 4, qw.fmt.group_size, True, qw.shape),)
        else:  # pragma: no cover - parse_format only makes the kinds above
            raise ValueError(spec.kind)

        def call(x, w):
            return torch.nn.functional.linear(x, w[0])

        make = _cached_copies(first)
        weight_bytes = tensor_nbytes(make())
        return Built(make, _float_input(k, dtype, device), call, weight_bytes, _io(k, n, elt, elt))

    return build


def ours(spec: FormatSpec) -> Impl:
    return Impl(spec.name, "ours", (spec.family,), _build_ours(spec), label=spec.name)


# ---- anchors --------------------------------------------------------------------------------------


def _build_cublas(k, n, dtype, device) -> Built:
    elt = torch.finfo(dtype).bits // 8
    make = _cached_copies(lambda: (_random_weight(n, k, dtype, device),))
    return Built(make, _float_input(k, dtype, device), lambda x, w: F.linear(x, w[0]), n * k * elt, _io(k, n, elt, elt))


TINYGEMM_GROUP = 128
TINYGEMM_INNER_K_TILES = 8


def _build_tinygemm(k, n, dtype, device) -> Built:
    """torch's int4 tinygemm (``aten._weight_int4pack_mm``), bf16 only, group 128.

    Packing, as torchao's tile-packed layout does it: codes [N, K] in 0..15 -> uint8 [N, K/2]
    (even k in the high nibble) -> ``_convert_weight_to_int4pack(.., innerKTiles=8)``.
    scales_and_zeros: [K / group, N, 2] (scale, zero) in bf16.
    """
    if k % (TINYGEMM_INNER_K_TILES * 16) or n % 8:
        raise ValueError(f"tinygemm needs K % {TINYGEMM_INNER_K_TILES * 16} == 0 and N % 8 == 0")

    def first():
        codes = torch.randint(0, 16, (n, k), dtype=torch.int32, device=device)
        nibbles = (codes[:, ::2] << 4 | codes[:, 1::2]).to(torch.uint8).contiguous()
        packed = torch.ops.aten._convert_weight_to_int4pack(nibbles, TINYGEMM_INNER_K_TILES)
        groups = k // TINYGEMM_GROUP
        scales = torch.rand(groups, n, 1, device=device).mul_(0.01).add_(0.001)
        zeros = torch.randn(groups, n, 1, device=device).mul_(0.01)
        return (packed, torch.cat([scales, zeros], dim=2).to(torch.bfloat16).contiguous())

    def call(x, w):
        return torch.ops.aten._weight_int4pack_mm(x, w[0], TINYGEMM_GROUP, w[1])

    make = _cached_copies(first)
    return Built(make, _float_input(k, dtype, device), call, tensor_nbytes(make()), _io(k, n, 2, 2))


def _build_int_mm(k, n, dtype, device) -> Built:
    """torch._int_mm: int8 x int8 -> int32, activations already int8 (no quantization timed)."""

    def first():
        return (torch.randint(-127, 128, (n, k), dtype=torch.int8, device=device),)

    def make_input(m):
        return torch.randint(-127, 128, (m, k), dtype=torch.int8, device=device)

    make = _cached_copies(first)
    return Built(make, make_input, lambda x, w: torch._int_mm(x, w[0].t()), n * k, _io(k, n, 1, 4))


def _build_scaled_mm(k, n, dtype, device) -> Built:
    """torch._scaled_mm fp8 e4m3, activations already fp8 (no quantization timed).

    bf16: row-wise scales (x [M, 1], w [1, N]); fp16: tensor-wise scales (row-wise scaling needs
    a bf16 output in cuBLAS/CUTLASS).
    """
    fp8 = torch.float8_e4m3fn
    rowwise = dtype == torch.bfloat16

    def first():
        w = _random_weight(n, k, torch.float32, device).mul_(10).to(fp8)
        scale = torch.rand(1, n, device=device).add_(0.5) if rowwise else torch.tensor(1.0, device=device)
        return (w, scale)

    def make_input(m):
        x = torch.randn(m, k, device=device).to(fp8)
        scale = torch.rand(m, 1, device=device).add_(0.5) if rowwise else torch.tensor(1.0, device=device)
        return (x, scale)

    def call(x, w):
        return torch._scaled_mm(x[0], w[0].t(), scale_a=x[1], scale_b=w[1], out_dtype=dtype)

    make = _cached_copies(first)
    return Built(make, make_input, call, tensor_nbytes(make()), lambda m: m * k + m * 4 * rowwise + m * n * 2)


# ---- GemLite (optional peer) ------------------------------------------------------------------------


def gemlite_version() -> Optional[str]:
    """The installed gemlite version, or None. Never imports gemlite itself."""
    import importlib.metadata
    import importlib.util

    if importlib.util.find_spec("gemlite") is None:
        return None
    try:
        return importlib.metadata.version("gemlite")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _gemlite_processor(names: tuple[str, ...], dtype: torch.dtype, device: torch.device, **extra):
    """Instantiates the first of ``names`` found in ``gemlite.helper`` (gemlite 0.6 API)."""
    import gemlite.helper as helper  # optional peer: ImportError is reported as n/a

    for name in names:
        cls = getattr(helper, name, None)
        if cls is None:
            continue
        device_name = f"cuda:{device.index or 0}" if device.type == "cuda" else str(device)
        for kwargs in ({"device": device_name, "dtype": dtype, **extra}, {"device": device_name, **extra}):
            try:
                return cls(**kwargs)
            except TypeError:
                continue
    raise RuntimeError(f"gemlite.helper has none of {names} with a known signature")


def _build_gemlite(mode: str) -> Callable[[int, int, torch.dtype, torch.device], Built]:
    """GemLite layers built through ``gemlite.helper`` processors; the call is ``layer(x)``.

    mode "a16w4": ``A16W4_HQQ_INT(...).from_weights(W_q uint8 [N, K], scales [N, K/128], zeros)``;
    "a16w8" / "a8w8-int8" / "a8w8-fp8": ``<processor>.from_linear(nn.Linear)``.
    """

    def build(k, n, dtype, device) -> Built:
        elt = torch.finfo(dtype).bits // 8
        if mode == "a16w4":
            group = 128

            def make():
                proc = _gemlite_processor(("A16W4_HQQ_INT",), dtype, device)
                w_q = torch.randint(0, 16, (n, k), dtype=torch.uint8, device=device)
                scales = torch.rand(n, k // group, device=device).mul_(0.01).add_(0.001).to(dtype)
                zeros = torch.full((n, k // group), 7.5, device=device).to(dtype)
                return proc.from_weights(w_q, scales, zeros)
        else:
            names = {
                "a16w8": ("A16W8_INT8", "A16W8"),
                "a8w8-int8": ("A8W8_INT8_dynamic", "A8W8_int8_dynamic"),
                "a8w8-fp8": ("A8W8_FP8_dynamic", "A8W8_fp8_dynamic"),
            }[mode]

            def make():
                linear = torch.nn.Linear(k, n, bias=False, dtype=dtype, device=device)
                with torch.no_grad():
                    linear.weight.copy_(_random_weight(n, k, dtype, device))
                return _gemlite_processor(names, dtype, device).from_linear(linear)

        first = make()
        state = {"first": first}

        def make_weights():
            return state.pop("first") if "first" in state else make()

        return Built(make_weights, _float_input(k, dtype, device), lambda x, layer: layer(x), tensor_nbytes(first),
                     _io(k, n, elt, elt))

    return build


# ---- the registry ------------------------------------------------------------------------------------

ANCHORS = [
    Impl("cublas", "anchor", FAMILIES, _build_cublas, label="cuBLAS (F.linear)"),
    Impl("tinygemm-w4-g128", "anchor", ("a16w4",), _build_tinygemm, (torch.bfloat16,),
         label="torch tinygemm int4 g128"),
    Impl("torch-int-mm", "anchor", ("a8",), _build_int_mm, label="torch._int_mm (x pre-quantized)"),
    Impl("torch-scaled-mm-fp8", "anchor", ("a8",), _build_scaled_mm, label="torch._scaled_mm fp8 (x pre-quantized)"),
]
GEMLITE_ANCHORS = [
    Impl("gemlite-a16w4-g128", "anchor", ("a16w4",), _build_gemlite("a16w4"), label="GemLite A16W4 g128"),
    Impl("gemlite-a16w8", "anchor", ("a16w8",), _build_gemlite("a16w8"), label="GemLite A16W8"),
    Impl("gemlite-a8w8-int8", "anchor", ("a8",), _build_gemlite("a8w8-int8"), label="GemLite A8W8 int8"),
    Impl("gemlite-a8w8-fp8", "anchor", ("a8",), _build_gemlite("a8w8-fp8"), label="GemLite A8W8 fp8"),
]
ANCHOR_NAMES = [a.name for a in ANCHORS + GEMLITE_ANCHORS]
BASELINE = "cublas"


def select_impls(formats: list[str], anchors: Optional[list[str]] = None, gemlite: bool = True) -> list[Impl]:
    """Our formats (in order) followed by the anchors. anchors=None: every anchor available."""
    impls = [ours(parse_format(f)) for f in formats]
    wanted = ANCHOR_NAMES if anchors is None else anchors
    unknown = sorted(set(wanted) - set(ANCHOR_NAMES))
    if unknown:
        raise ValueError(f"unknown anchor(s) {unknown}: choose from {ANCHOR_NAMES}")
    pool = ANCHORS + (GEMLITE_ANCHORS if gemlite else [])
    impls += [a for a in pool if a.name in wanted]
    if BASELINE not in [i.name for i in impls]:  # speedups need the baseline in the same run
        impls.append(ANCHORS[0])
    return impls
