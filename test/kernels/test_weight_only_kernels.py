"""Weight-only kernels against the reference linear.

Without CUDA the kernels run on CPU tensors under Triton's interpreter (conftest.py), on
small shapes and fp16 only (the interpreter computes bf16 wrongly). With CUDA the full
matrix of the issue runs: every bit width x fp16/bf16 x group sizes x M x shapes.
"""

import itertools
import json
from dataclasses import replace

import pytest
import torch

from torchao_gemlite.kernels import configs
from torchao_gemlite.kernels.configs import LaunchConfig, heuristic_config, mma_supported
from torchao_gemlite.kernels.dispatch import WeightOnlyPlan, launch_weight_only, weight_only_linear
from torchao_gemlite.kernels.launch import device_facts
from torchao_gemlite.formats import PackedFormat
from torchao_gemlite.quant import QuantizedWeight, quantize_weight, reference_linear

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
DTYPES = [torch.float16, torch.bfloat16] if CUDA else [torch.float16]
# Relative Frobenius error against the fp32 reference: the kernels round the dequantized
# weight tile to the activation dtype before the tensor-core product.
TOLERANCE = {torch.float16: 2e-3, torch.bfloat16: 1.2e-2}
GROUPS = [32, 64, 128, 256, None]
FORMATS = list(itertools.product([8, 4, 2, 1], [False, True]))
M_GPU = [1, 2, 3, 4, 7, 8, 16, 33, 64, 127, 256, 1024]
SHAPES_GPU = [(768, 1000), (4096, 1376)]  # (K, N): ragged N, K not a power of two


def _rel_err(y, ref):
    return ((y.float() - ref.float()).norm() / ref.float().norm()).item()


def _case(bits, symmetric, group, m, k, n, dtype, bias=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=gen).to(dtype)
    qw = quantize_weight(w.to(DEVICE), bits, group, symmetric)
    x = torch.randn(m, k, generator=gen).to(dtype).to(DEVICE)
    b = torch.randn(n, generator=gen).to(dtype).to(DEVICE) if bias else None
    return qw, x, b


def _run(qw, x, b, config=None):
    out = torch.full((x.shape[0], qw.shape[0]), float("nan"), dtype=x.dtype, device=x.device)
    cfg = config or heuristic_config(x.shape[0], qw.shape[0], qw.shape[1], qw.fmt.bits, qw.fmt.group_size,
                                     mma=mma_supported(qw.fmt.bits, str(x.dtype)[6:]), bf16=x.dtype == torch.bfloat16)
    return launch_weight_only(x, qw.qdata, qw.scale, qw.zero, b, qw.fmt.bits, qw.fmt.group_size, qw.fmt.symmetric,
                              cfg, out=out)


def _check(qw, x, b, y):
    ref = reference_linear(x, qw, b)
    assert not torch.isnan(y).any(), "unwritten (NaN-poisoned) outputs remain"
    assert _rel_err(y, ref) < TOLERANCE[x.dtype]


if CUDA:
    MATRIX = [(bits, sym, g, m, k, n, dt) for (bits, sym), g, m, (k, n), dt
              in itertools.product(FORMATS, GROUPS, M_GPU, SHAPES_GPU, DTYPES)]
else:
    # Interpreter: every format x group size once, the M values spread across them.
    M_CPU = [1, 2, 3, 4, 7, 8, 16, 33]
    MATRIX = [(bits, sym, g, M_CPU[i % len(M_CPU)], 256, 200, torch.float16)
              for i, ((bits, sym), g) in enumerate(itertools.product(FORMATS, GROUPS))]


@pytest.mark.parametrize("bits,symmetric,group,m,k,n,dtype", MATRIX)
def test_dispatched_kernel_matches_reference(bits, symmetric, group, m, k, n, dtype):
    qw, x, b = _case(bits, symmetric, group, m, k, n, dtype, bias=m % 2 == 1)
    _check(qw, x, b, _run(qw, x, b))


@pytest.mark.parametrize("m", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_decode_dispatch_matches_reference(m, dtype):
    """M <= 2 takes the mma kernel with its loads a step ahead (ragged N here), but for bf16 under the
    interpreter (which computes it wrongly), where the dispatcher falls back to the GEMV."""
    from torchao_gemlite.kernels import dispatch

    qw, x, b = _case(4, False, 128, m, 256, 200, dtype)
    args = (qw.qdata, qw.scale, qw.zero, b, 4, 128, False)
    _check(qw, x, b, weight_only_linear(x, *args))
    plan = dispatch._PLANS[dispatch._plan_key(x, *args)]
    assert plan.config.kernel == ("mma" if CUDA or dtype == torch.float16 else "gemv")


# Every kernel variant; BLOCK_K is given in word rows (x codes per word) so that each
# slot's tl.dot gets the 16 rows it needs on the GPU.
EXPLICIT = [
    dict(kernel="gemv", block_m=1, block_n=64, rows=16, split_k=1),
    dict(kernel="gemv", block_m=4, block_n=32, rows=8, split_k=4),
    dict(kernel="gemm", block_m=16, block_n=64, rows=16, split_k=1, swap_ab=True),
    dict(kernel="gemm", block_m=16, block_n=64, rows=16, split_k=3, swap_ab=True),
    dict(kernel="gemm", block_m=32, block_n=64, rows=16, split_k=2),
    dict(kernel="gemm", block_m=64, block_n=32, rows=16, split_k=1, group_m=2),
    dict(kernel="gemm", block_m=32, block_n=32, rows=4, split_k=1, swap_ab=True),
    dict(kernel="dense", block_m=0, block_n=0, rows=0),
]


@pytest.mark.parametrize("spec", EXPLICIT, ids=lambda d: "-".join(f"{v}" for v in d.values()))
@pytest.mark.parametrize("bits,group", [(4, 64), (2, None), (8, 128), (1, 32)])
def test_every_kernel_variant(spec, bits, group):
    spec = dict(spec)
    rows = spec.pop("rows")
    config = LaunchConfig(block_k=rows * (32 // bits), **spec)
    m = min(config.block_m, 3) if config.kernel == "gemv" else 37
    k = 32 * (32 // bits) + 32 if group is None else 1024  # per-channel: a ragged last K tile
    qw, x, b = _case(bits, False, group, m, k, 72, torch.float16)
    _check(qw, x, b, _run(qw, x, b, config))


@pytest.mark.parametrize("half_mac", [True, False], ids=["packed16", "fp32"])
@pytest.mark.parametrize("bits,symmetric,group", [(8, False, None), (4, False, 32), (4, True, 128), (2, False, 64),
                                                  (1, True, None)])
def test_gemv_packed_and_fp32_inner_loops(half_mac, bits, symmetric, group):
    """Both GEMV inner loops: half2.py's packed 16-bit pairs (emulated under the interpreter) and
    unpack.py's fp32 loop (which 8-bit x bf16 always takes), with and without split-K, from an
    aligned x with a row stride (read in place) and from one that is not 4-byte aligned (copied:
    the packed loop reads x as int32 pairs)."""
    for dtype in DTYPES:
        qw, _, b = _case(bits, symmetric, group, 1, 384, 72, dtype)
        for m, cfg in ((1, LaunchConfig("gemv", 1, 32, 16 * (32 // bits), split_k=1, half_mac=half_mac)),
                       (3, LaunchConfig("gemv", 4, 64, 8 * (32 // bits), split_k=2, half_mac=half_mac))):
            strided = torch.randn(m, 400, dtype=dtype, device=DEVICE)[:, :384]
            misaligned = torch.randn(m * 384 + 1, dtype=dtype, device=DEVICE)[1:].view(m, 384)
            for x in (strided, misaligned):
                _check(qw, x, b, _run(qw, x, b, cfg))


def test_gemv_packed_loop_is_the_default_and_differs_from_fp32():
    """The packed loop runs by default in the GEMV (its 16-bit roundings make it differ from the fp32 loop)."""
    qw, x, b = _case(4, False, 128, 1, 1024, 96, torch.float16)
    cfg = heuristic_config(1, 96, 1024, 4, 128, mma=False)
    assert cfg.kernel == "gemv" and cfg.half_mac
    packed, fp32 = _run(qw, x, b, cfg), _run(qw, x, b, replace(cfg, half_mac=False))
    assert not torch.equal(packed, fp32)
    _check(qw, x, b, packed)


@pytest.mark.parametrize("bits,symmetric,group", [(8, False, None), (4, False, 32), (4, True, 128), (2, False, 64),
                                                  (1, True, None)])
def test_gemm_16bit_and_fp32_dequantization(bits, symmetric, group):
    """The tensor-core kernel's two dequantizations: half2.py's 16-bit pairs (the default; emulated
    under the interpreter, and fp32 for 8-bit x bf16) and unpack.py's fp32 codes. Both match the
    reference; with asymmetric formats they differ by the 16-bit rounding of the (C - zero) * scale
    term, which shows that the 16-bit path ran. Swapped operands always take the fp32 path (a
    16-bit register operand raced with the asynchronous wgmma on the H100): bit-identical results."""
    for dtype in DTYPES:
        qw, x, b = _case(bits, symmetric, group, 19, 512, 72, dtype)
        cfg = LaunchConfig("gemm", 32, 64, 128, split_k=2)
        half, fp32 = _run(qw, x, b, cfg), _run(qw, x, b, replace(cfg, half_mac=False))
        _check(qw, x, b, half)
        _check(qw, x, b, fp32)
        if not symmetric and not (bits == 8 and dtype == torch.bfloat16):
            assert not torch.equal(half, fp32)
        swapped = replace(cfg, swap_ab=True)
        assert torch.equal(_run(qw, x, b, swapped), _run(qw, x, b, replace(swapped, half_mac=False)))


@pytest.mark.parametrize("bits,symmetric,group", [(8, True, None), (4, False, 128), (4, False, 32), (2, False, 64),
                                                  (1, True, None)])
@pytest.mark.parametrize("split_k,swap_ab", [(1, False), (3, False), (2, True)])
def test_gemm_tma_loads(bits, symmetric, group, split_k, swap_ab):
    """x and the words through TMA descriptors (zero-filled past M, N and K) give the pointer loads'
    result: ragged M and N, a K that is not a multiple of the step, splits, swapped operands."""
    k = 1024 if group else 32 * (32 // bits) + 32
    qw, x, b = _case(bits, symmetric, group, 37, k, 72, torch.float16)
    cfg = LaunchConfig("gemm", 32, 64, 4 * (32 // bits) if bits < 8 else 64, split_k=split_k, swap_ab=swap_ab)
    assert WeightOnlyPlan(x, qw.qdata, qw.scale, qw.zero, b, bits, qw.fmt.group_size, symmetric,
                          replace(cfg, tma=True)).tma_blocks is not None  # the descriptors, not the fallback
    tma = _run(qw, x, b, replace(cfg, tma=True))
    _check(qw, x, b, tma)
    pointer = _run(qw, x, b, cfg)
    assert torch.equal(tma, pointer) if not CUDA else _rel_err(tma, pointer) < 1e-3


@pytest.mark.parametrize("bits,symmetric,group", [(8, True, None), (4, False, 128), (2, False, 64), (1, True, 64)])
@pytest.mark.parametrize("waves", [0.5, 1, 2])
def test_fused_regime_up_to_m_256_matches_reference(bits, symmetric, group, waves):
    """M = 129..256 on layers of half a wave of 128x128 tiles, one and two: the dispatcher's tensor-core kernel
    with TMA loads and K splits (ragged M and N) instead of dequantize + cuBLAS; 8-bit codes in 256-row tiles."""
    name, sms = device_facts(torch.device(DEVICE))
    n = 128 * (round(sms * waves / 2) - 1) + 40  # sms * waves / 2 column tiles (two row tiles), the last ragged
    for dtype in DTYPES:
        qw, x, b = _case(bits, symmetric, group, 200, 512, n, dtype)
        cfg = configs.choose_config(200, n, 512, bits, qw.fmt.group_size, str(dtype)[6:], name, sms)
        assert cfg.kernel == "gemm" and cfg.tma and cfg.block_m == (256 if bits == 8 else 128)
        assert (cfg.split_k > 1) == (waves < 2)
        _check(qw, x, b, weight_only_linear(x, qw.qdata, qw.scale, qw.zero, b, bits, qw.fmt.group_size, symmetric))


def test_gemm_tma_falls_back_to_pointer_loads():
    """Operands that cannot back a descriptor (x strided along K, words not 16-byte aligned) take the
    pointer loads with the same tile."""
    qw, x, b = _case(4, False, 64, 5, 256, 96, torch.float16)
    cfg = LaunchConfig("gemm", 16, 32, 64, tma=True)
    x_strided = torch.randn(5, 512, dtype=torch.float16, device=DEVICE)[:, ::2]
    _check(qw, x_strided, b, _run(qw, x_strided, b, cfg))
    assert WeightOnlyPlan(x_strided, qw.qdata, qw.scale, qw.zero, b, 4, 64, False, cfg).tma_blocks is None
    x_expanded = torch.randn(1, 256, dtype=torch.float16, device=DEVICE).expand(5, 256)  # row stride 0
    assert WeightOnlyPlan(x_expanded, qw.qdata, qw.scale, qw.zero, b, 4, 64, False, cfg).tma_blocks is None
    _check(qw, x_expanded, b, _run(qw, x_expanded, b, cfg))
    cols = slice(1, 81)  # a 4-byte offset
    y = launch_weight_only(x, qw.qdata[:, cols], qw.scale[:, cols], qw.zero[:, cols], None, 4, 64, False, cfg)
    assert _rel_err(y, reference_linear(x, qw)[:, cols]) < TOLERANCE[torch.float16]


@pytest.mark.parametrize("bits,symmetric", [(4, False), (4, True), (8, False), (1, True)])
def test_gemv_packed_loop_large_activations_do_not_overflow(bits, symmetric):
    """fp16 activations near the top of fp16's range: the 16-bit partial sums stay below max |x|."""
    gen = torch.Generator().manual_seed(bits)
    w = (torch.randn(40, 256, generator=gen) * 1e-3).half().to(DEVICE)  # keeps y well inside fp16
    qw = quantize_weight(w, bits, None, symmetric)
    x = torch.randn(1, 256, generator=gen).half().to(DEVICE)
    x[:, :16] = 30000.0
    b = None
    cfg = LaunchConfig("gemv", 1, 32, 8 * (32 // bits), split_k=1)
    y = _run(qw, x, b, cfg)
    assert torch.isfinite(y).all()
    _check(qw, x, b, y)


def test_gemm_config_with_an_unusable_step_is_refused():
    qw, x, b = _case(4, False, 64, 5, 256, 40, torch.float16)
    with pytest.raises(ValueError, match="block_k=8 is not supported"):
        _run(qw, x, b, LaunchConfig("gemm", 16, 32, 8))
    with pytest.raises(ValueError, match="multiple of the 8 codes"):
        _run(qw, x, b, LaunchConfig("gemm", 16, 32, 20))


def test_split_k_is_deterministic():
    qw, x, b = _case(4, False, 32, 5, 1024, 96, torch.float16)
    cfg = LaunchConfig("gemm", 16, 32, 128, split_k=4, swap_ab=True)
    first = _run(qw, x, b, cfg)
    assert torch.equal(first, _run(qw, x, b, cfg))


def test_3d_noncontiguous_and_empty_inputs():
    qw, _, b = _case(4, True, 64, 1, 256, 40, torch.float16)
    x3 = torch.randn(2, 3, 512, dtype=torch.float16, device=DEVICE)[..., ::2]  # stride 2 along K
    y = weight_only_linear(x3, qw.qdata, qw.scale, qw.zero, b, 4, 64, True)
    assert y.shape == (2, 3, 40)
    assert _rel_err(y, reference_linear(x3, qw, b)) < TOLERANCE[torch.float16]
    empty = weight_only_linear(x3[:0], qw.qdata, qw.scale, qw.zero, b, 4, 64, True)
    assert empty.shape == (0, 3, 40)


def test_sliced_weight_views():
    """Column and K-group slices of the packed tensors (strided views) give the sliced layer."""
    qw, x, _ = _case(4, False, 64, 3, 256, 96, torch.float16, bias=False)
    cols = slice(32, 80)
    y = weight_only_linear(x, qw.qdata[:, cols], qw.scale[:, cols], qw.zero[:, cols], None, 4, 64, False)
    assert _rel_err(y, reference_linear(x, qw)[:, cols]) < TOLERANCE[torch.float16]
    # K slice at group boundaries (a row-parallel shard): words 8..24 hold k = 64..191, groups 1..2
    k_part = QuantizedWeight(qw.qdata[8:24], qw.scale[1:3], qw.zero[1:3], qw.fmt, (96, 128))
    y = weight_only_linear(x[:, 64:192], k_part.qdata, k_part.scale, k_part.zero, None, 4, 64, False)
    assert _rel_err(y, reference_linear(x[:, 64:192], k_part)) < TOLERANCE[torch.float16]


def test_strided_bias_mixed_scale_dtype_and_uneven_groups():
    """A bias view with a stride, bf16/fp32 scales under fp16 activations, and a group size that
    is not a power of two (K slices concatenated along K) all give the reference result."""
    halves = [_case(4, False, None, 5, 96, 40, torch.float16, bias=False, seed=s)[0] for s in (1, 2)]
    qw = QuantizedWeight(torch.cat([h.qdata for h in halves]), torch.cat([h.scale for h in halves]),
                         torch.cat([h.zero for h in halves]), PackedFormat(4, 96, False), (40, 192))
    x = torch.randn(5, 192, dtype=torch.float16, device=DEVICE)
    bias = torch.randn(80, dtype=torch.float16, device=DEVICE)[::2]
    for scale_dtype in (torch.float16, torch.float32):
        scale, zero = qw.scale.to(scale_dtype), qw.zero.to(scale_dtype)
        for cfg in (LaunchConfig("gemv", 8, 32, 128, split_k=2), LaunchConfig("gemv", 8, 32, 64, split_k=1),
                    LaunchConfig("gemm", 16, 32, 128, split_k=1),
                    LaunchConfig("gemm", 16, 32, 256, split_k=1), LaunchConfig("dense", 0, 0, 0)):
            y = launch_weight_only(x, qw.qdata, scale, zero, bias, 4, 96, False, cfg)
            assert _rel_err(y, reference_linear(x, qw, bias)) < TOLERANCE[torch.float16], (scale_dtype, cfg)


def _good():
    qw, x, b = _case(4, False, 64, 2, 256, 40, torch.float16)
    return dict(x=x, qdata=qw.qdata, scale=qw.scale, zero=qw.zero, bias=b, bits=4, group_size=64, symmetric=False)


@pytest.mark.parametrize("change,match", [
    (lambda a: a.update(x=a["x"].float()), "input dtype"),
    (lambda a: a.update(x=a["x"][:, :128]), "features"),
    (lambda a: a.update(scale=a["scale"].to(torch.int16), zero=a["zero"].to(torch.int16)), "scale dtype"),
    (lambda a: a.update(zero=None), "zero must be None"),
    (lambda a: a.update(bias=a["bias"][:10]), "bias must have shape"),
    (lambda a: a.update(qdata=a["qdata"].to(torch.int64)), "qdata must be"),
    (lambda a: a.update(scale=a["scale"][:2], zero=a["zero"][:2]), "scale must have shape"),
    (lambda a: a.update(bits=3), "bits"),
    (lambda a: a.update(group_size=48), "group_size"),
])
def test_bad_input_gets_clear_error(change, match):
    args = _good()
    change(args)
    with pytest.raises((ValueError, TypeError), match=match):
        weight_only_linear(**args)


@pytest.mark.skipif(not CUDA, reason="device mismatch needs a GPU")
def test_device_mismatch_error():
    args = _good()
    args["bias"] = args["bias"].cpu()
    with pytest.raises(ValueError, match="bias is on cpu"):
        weight_only_linear(**args)


def _check_graph_replay(linear, x):
    """``linear`` captured in a CUDA graph on a static input gives the eager result for new input values."""
    static_x = x.clone()
    linear(static_x)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_y = linear(static_x)
    static_x.copy_(torch.randn_like(x))
    graph.replay()
    assert torch.equal(static_y, linear(static_x))


@pytest.mark.skipif(not CUDA, reason="the custom op routes CUDA inputs to the kernels")
def test_custom_op_eager_compile_and_cuda_graph():
    qw, x, b = _case(4, False, 128, 4, 1024, 512, torch.float16)
    op = torch.ops.torchao_gemlite.linear_weight_only
    args = (qw.qdata, qw.scale, qw.zero, b, 4, 128, False)
    eager = op(x, *args)
    _check(qw, x, b, eager)
    compiled = torch.compile(lambda t: op(t, *args), fullgraph=True)
    assert torch.equal(compiled(x), eager)
    _check_graph_replay(lambda t: op(t, *args), x)


@pytest.mark.skipif(not CUDA, reason="direct launches run on CUDA only (the interpreter takes Triton's path)")
def test_direct_launch_matches_triton_and_respecializes():
    """FastLauncher: the second call launches the kept binary; a change that Triton specializes
    on (here x 4 bytes off 16-byte alignment, then M == 1) gets its own compiled kernel."""
    from torchao_gemlite.kernels.dispatch import _GEMV

    qw, x, b = _case(4, False, 128, 2, 1024, 256, torch.float16)
    # a configuration no other test uses
    cfg = LaunchConfig("gemv", 2, 32, 256, split_k=2, num_warps=2, num_stages=2, half_mac=False)
    before = len(_GEMV.compiled)
    first = _run(qw, x, b, cfg)
    again = _run(qw, x, b, cfg)
    assert torch.equal(first, again)
    _check(qw, x, b, again)
    # same values, x.data_ptr() % 16 == 4: the GEMV still reads x in place (it copies x off 4-byte alignment)
    shifted = torch.empty(2 * 1024 + 2, dtype=x.dtype, device=x.device)[2:].view(2, 1024)
    shifted.copy_(x)
    assert torch.equal(_run(qw, shifted, b, cfg), first)
    _check(qw, x[:1], b, _run(qw, x[:1], b, cfg))
    assert len(_GEMV.compiled) == before + 3


@pytest.mark.skipif(not CUDA, reason="the eager shortcut is for CUDA tensors")
def test_eager_call_skips_the_dispatcher_but_traced_calls_do_not():
    from torchao_gemlite import ops

    qw, x, b = _case(4, False, 128, 3, 512, 128, torch.float16)
    args = (qw.qdata, qw.scale, qw.zero, b, 4, 128, False)
    direct = ops.call("linear_weight_only", x, *args)
    assert torch.equal(direct, torch.ops.torchao_gemlite.linear_weight_only(x, *args))
    compiled = torch.compile(lambda t: ops.call("linear_weight_only", t, *args), fullgraph=True)
    assert torch.equal(compiled(x), direct)


def _shipped_configs():
    from torchao_gemlite.kernels.configs import TUNED_DIR

    seen = {}
    for path in sorted(TUNED_DIR.glob("*.json")):
        for key, cfg in json.loads(path.read_text())["configs"].items():
            if not key[0].isdigit():  # a dynamic-activation GEMM's entry ("int8/...", "a8w4-codes/...")
                continue
            fmt = key.split("/")[:2]  # bits and group: a launch is checked once per format it is shipped for
            seen.setdefault((*fmt, json.dumps(cfg, sort_keys=True)), (path.name, key, cfg))
    return list(seen.values())


@pytest.mark.parametrize("name,key,cfg", _shipped_configs(), ids=lambda v: v if isinstance(v, str) else "")
def test_shipped_table_configs_are_correct(name, key, cfg):
    """Every distinct configuration in the shipped tables computes the reference linear for its
    format (on a small shape: the launch parameters, not the shape, are what can be wrong)."""
    bits, group = int(key.split("b/")[0]), key.split("/g")[1].split("/")[0]
    config = LaunchConfig.from_dict(cfg)
    bucket = int(key.rsplit("/m", 1)[1])
    m = {"gemv": min(config.block_m, 2), "mma": min(bucket, 13)}.get(config.kernel, 17)  # mma: one or two batch tiles
    qw, x, b = _case(bits, False, None if group == "pc" else int(group), m, 1024, 200, torch.float16)
    _check(qw, x, b, _run(qw, x, b, config))


def test_launch_plans_are_kept_per_call_key_and_replayed():
    """weight_only_linear plans a call shape once and replays the plan: new values give new results,
    and every fact the plan depends on (M, 3-D shape, x alignment, bias) gets its own plan.
    configs.clear_caches() forgets them (after tuning)."""
    from torchao_gemlite.kernels import dispatch
    from torchao_gemlite.kernels.configs import clear_caches

    clear_caches()
    assert not dispatch._PLANS
    qw, x, b = _case(4, False, 64, 3, 256, 40, torch.float16)
    args = (qw.qdata, qw.scale, qw.zero, b, 4, 64, False)
    _check(qw, x, b, weight_only_linear(x, *args))
    plan = next(iter(dispatch._PLANS.values()))
    x_new = torch.randn_like(x)
    _check(qw, x_new, b, weight_only_linear(x_new, *args))
    assert list(dispatch._PLANS.values()) == [plan]
    shifted = torch.empty(x.numel() + 1, dtype=x.dtype, device=x.device)[1:].view_as(x)
    shifted.copy_(x_new)  # 2 bytes off 16-byte alignment
    variants = [shifted, x_new[:1], x_new.view(1, 3, 256)]
    for v in variants:
        y = weight_only_linear(v, *args)
        assert y.shape == (*v.shape[:-1], 40)
        _check(qw, v.reshape(-1, 256), b, y.reshape(-1, 40))
    _check(qw, x_new, None, weight_only_linear(x_new, *args[:3], None, *args[4:]))
    assert len(dispatch._PLANS) == 1 + len(variants) + 1
    clear_caches()
    assert not dispatch._PLANS


@pytest.mark.skipif(not CUDA, reason="kept binaries and CUDA graphs need a GPU")
def test_replayed_plans_launch_kept_binaries_and_capture_in_cuda_graphs():
    """A replayed plan (split-K: the kernel and the reduction) launches the binaries its first run
    compiled, gives the same bits as a fresh plan, and records into a CUDA graph."""
    from torchao_gemlite.kernels import dispatch

    qw, x, b = _case(4, False, 128, 1, 4096, 512, torch.float16)
    args = (qw.qdata, qw.scale, qw.zero, b, 4, 128, False)
    first = weight_only_linear(x, *args)
    plan = dispatch._PLANS[dispatch._plan_key(x, *args)]
    assert plan.kernel.entry is not None
    assert torch.equal(weight_only_linear(x, *args), first)
    cfg = plan.config
    assert torch.equal(launch_weight_only(x, *args, cfg), first)
    _check_graph_replay(lambda t: weight_only_linear(t, *args), x)
