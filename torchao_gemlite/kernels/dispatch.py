"""Validation and dispatch: picks the kernel and launch configuration for each call.

Everything here runs on every call of a quantized linear, so it stays short: checks
that would otherwise surface as a Triton trace, one cached config lookup, one or two
launches. Outputs and split-K workspaces are fresh allocations from PyTorch's caching
allocator (safe inside CUDA graph capture).
"""

from __future__ import annotations

import torch

from ..formats import ACTIVATION_DTYPES, FLOAT_WEIGHT_DTYPES, PackedFormat, codes_per_word, symmetric_zero
from .configs import LaunchConfig, choose_config, heuristic_config, mma_supported
from .dequant import dequantize_packed
from .gemm import gemm_kernel
from .gemv import gemv_kernel
from .half2 import half_mac_supported, pair_kshift, pairs_per_flush
from .launch import INTERPRETED as _INTERPRETED
from .launch import FastLauncher
from .mma_gemv import mma_gemv_kernel, mma_launch
from .reduce import splitk_reduce, splitk_workspace


_GEMV = FastLauncher(gemv_kernel)
_GEMM = FastLauncher(gemm_kernel)
_MMA_GEMV = FastLauncher(mma_gemv_kernel)


def mma_gemv_supported(bits: int, dtype: torch.dtype) -> bool:
    """configs.mma_supported, and fp16 only under Triton's interpreter (it computes bf16 wrongly)."""
    return mma_supported(bits, str(dtype)[6:]) and (not _INTERPRETED or dtype == torch.float16)


def _device_facts(device: torch.device) -> tuple[str, int]:
    if device.type != "cuda":
        return "cpu-interpreter", 4
    props = torch.cuda.get_device_properties(device)
    return props.name, props.multi_processor_count


_DEVICE_FACTS: dict = {}


def _facts(device: torch.device) -> tuple[str, int]:
    key = (device.type, device.index)
    if key not in _DEVICE_FACTS:
        _DEVICE_FACTS[key] = _device_facts(device)
    return _DEVICE_FACTS[key]


def check_weight_only_inputs(x, qdata, scale, zero, bias, bits, group_size, symmetric) -> None:
    """Clear errors for everything the kernels cannot take."""
    fmt = PackedFormat(bits, group_size, symmetric)
    if x.dtype not in ACTIVATION_DTYPES:
        raise TypeError(f"input dtype {x.dtype} is not supported by the kernels: use one of {ACTIVATION_DTYPES}")
    if qdata.dtype != torch.int32 or qdata.dim() != 2:
        raise TypeError(f"qdata must be a 2-D int32 tensor [K / {fmt.codes_per_word}, N], got {qdata.dtype} {tuple(qdata.shape)}")
    k = qdata.shape[0] * fmt.codes_per_word
    n = qdata.shape[1]
    if x.shape[-1] != k:
        raise ValueError(f"input has {x.shape[-1]} features in its last axis, the weight expects K={k}")
    if k % group_size:
        raise ValueError(f"group_size={group_size} does not divide K={k}")
    if scale.shape != (k // group_size, n):
        raise ValueError(f"scale must have shape {(k // group_size, n)} [K / group_size, N], got {tuple(scale.shape)}")
    if scale.dtype not in FLOAT_WEIGHT_DTYPES:  # the kernels read scales in any float dtype as fp32
        raise TypeError(f"scale dtype {scale.dtype} is not supported: use one of {FLOAT_WEIGHT_DTYPES}")
    if symmetric != (zero is None):
        raise ValueError("zero must be None for symmetric formats and a tensor for asymmetric ones")
    if zero is not None and (zero.shape != scale.shape or zero.dtype != scale.dtype):
        raise ValueError(f"zero must match scale's shape {tuple(scale.shape)} and dtype {scale.dtype}")
    if bias is not None and (bias.shape != (n,)):
        raise ValueError(f"bias must have shape ({n},), got {tuple(bias.shape)}")
    for name, t in (("qdata", qdata), ("scale", scale), ("zero", zero), ("bias", bias)):
        if t is not None and t.device != x.device:
            raise ValueError(f"{name} is on {t.device} but the input is on {x.device}: move both to one device")


def _unit_stride_rows(t: torch.Tensor | None) -> torch.Tensor | None:
    """Kernels index [rows, N] tensors as row * stride + n: N must be the unit-stride axis."""
    if t is None or t.stride(-1) == 1:
        return t
    return t.contiguous()


def launch_weight_only(x2: torch.Tensor, qdata, scale, zero, bias, bits: int, group_size: int, symmetric: bool,
                       config: LaunchConfig, out: torch.Tensor | None = None) -> torch.Tensor:
    """Runs one configuration on a 2-D input [M, K]; returns [M, N] in x's dtype (into ``out`` if given)."""
    m, k = x2.shape
    n = qdata.shape[1]
    if out is None:
        out = torch.empty((m, n), dtype=x2.dtype, device=x2.device)
    elif out.shape != (m, n) or out.dtype != x2.dtype or out.stride(1) != 1:
        raise ValueError(f"out must be a row-major {(m, n)} {x2.dtype} tensor, got {out.dtype} {tuple(out.shape)}")
    if m == 0:
        return out
    qdata, scale = _unit_stride_rows(qdata), _unit_stride_rows(scale)
    if bias is not None and not bias.is_contiguous():  # the kernels index the bias as bias[n]
        bias = bias.contiguous()
    if zero is not None:
        zero = _unit_stride_rows(zero)
        if zero.stride() != scale.stride():
            zero, scale = zero.contiguous(), scale.contiguous()
    c = config
    if c.kernel == "mma":
        _launch_mma_gemv(x2, qdata, scale, zero, bias, out, bits, group_size, symmetric, c)
        return out
    if c.kernel == "dense":
        dense = dequantize_packed(qdata, scale, zero, bits, group_size, symmetric, symmetric_zero(bits), x2.dtype)
        if bias is None:
            return torch.mm(x2, dense, out=out)
        return torch.addmm(bias.to(x2.dtype), x2, dense, out=out)
    k_tiles = -(-k // c.block_k)
    split = max(1, min(c.split_k, k_tiles))
    tiles_per_split = -(-k_tiles // split)
    split = -(-k_tiles // tiles_per_split)  # no empty splits
    ws = splitk_workspace(split, m, n, x2.device)
    # the packed 16-bit arithmetic of half2.py (gemv loop, gemm dequantization); under Triton's
    # interpreter its emulation, which is fp16 only (the interpreter computes bf16 wrongly). Never
    # with swapped operands: there the dequantized tile is the register operand of the asynchronous
    # wgmma, and with the inline PTX the H100 gave wrong results in split-K launches, some of them
    # intermittent (docs/kernels.md, test/kernels/gpu_probe_swap_race.py); fp32 never did.
    half = (c.half_mac and not (c.kernel == "gemm" and c.swap_ab) and x2.dtype in (torch.float16, torch.bfloat16)
            and half_mac_supported(bits, x2.dtype == torch.bfloat16)
            and (not _INTERPRETED or x2.dtype == torch.float16))
    if half and c.kernel == "gemv" and (x2.stride(1) != 1 or (m > 1 and x2.stride(0) % 2) or x2.data_ptr() % 4):
        x2 = x2.clone(memory_format=torch.contiguous_format)  # it reads x as int32 pairs
    if c.kernel == "gemv":
        if c.block_m < m:
            raise ValueError(f"gemv config block_m={c.block_m} is smaller than M={m}")
        grid = (-(-n // c.block_n), split)
    else:
        if c.block_k < 16 or c.block_k % codes_per_word(bits):
            raise ValueError(f"gemm config block_k={c.block_k} is not supported for {bits}-bit weights: the tensor "
                             f"cores need block_k >= 16, a multiple of the {codes_per_word(bits)} codes in a word")
        grid = (-(-m // c.block_m) * -(-n // c.block_n), split)
    args = (x2, qdata, scale, zero if zero is not None else scale, bias if bias is not None else scale, out,
            ws if ws is not None else out, m, n, k, tiles_per_split,
            x2.stride(0), x2.stride(1), qdata.stride(0), scale.stride(0), out.stride(0))
    meta = dict(BITS=bits, GROUP_K=0 if group_size == k else group_size, SYMMETRIC=symmetric,
                SYM_ZERO=symmetric_zero(bits), HAS_BIAS=bias is not None and split == 1,
                BLOCK_M=c.block_m, BLOCK_N=c.block_n, BLOCK_K=c.block_k, USE_WORKSPACE=split > 1,
                NUM_STAGES=c.num_stages, num_warps=c.num_warps)
    if c.kernel == "gemv":
        _GEMV(grid, args, dict(meta, EVEN_K=k % c.block_k == 0, EVEN_N=n % c.block_n == 0, HALF_MAC=half,
                               PF=pairs_per_flush(bits), KSHIFT=pair_kshift(bits), EMULATE=_INTERPRETED))
    else:
        _GEMM(grid, args, dict(meta, GROUP_M=c.group_m, SWAP_AB=c.swap_ab, HALF=half, EMULATE=_INTERPRETED))
    if ws is not None:
        splitk_reduce(ws, bias, out)
    return out


def _launch_mma_gemv(x2, qdata, scale, zero, bias, out, bits, group_size, symmetric, c: LaunchConfig) -> None:
    """The tensor-core decode kernel (mma_gemv.py): 32 columns a warp, block_n // 32 warps along N and
    the rest of num_warps along K, block_k codes a warp step; one 8-row batch tile up to M = 8, two up to 16."""
    m, k = x2.shape
    n = qdata.shape[1]
    group_k = 0 if group_size == k else group_size
    if not mma_gemv_supported(bits, x2.dtype):
        raise ValueError(f"the mma kernel does not take {bits}-bit weights with {x2.dtype} activations"
                         + (" under Triton's interpreter" if _INTERPRETED else ""))
    launch = mma_launch(c, m, n, k, group_k)
    if x2.stride(1) != 1 or (m > 1 and x2.stride(0) % 4) or x2.data_ptr() % 8:
        x2 = x2.clone(memory_format=torch.contiguous_format)  # it reads x as 8-byte int32 pairs
    ws = splitk_workspace(launch.split, m, n, x2.device)
    args = (x2, qdata, scale, zero if zero is not None else scale, bias if bias is not None else scale, out,
            ws if ws is not None else out, m, n, k, launch.steps_per_split,
            x2.stride(0), qdata.stride(0), scale.stride(0), out.stride(0))
    meta = dict(launch.meta, BITS=bits, GROUP_K=group_k, SYMMETRIC=symmetric, SYM_ZERO=symmetric_zero(bits),
                HAS_BIAS=bias is not None and ws is None, NUM_STAGES=c.num_stages, EMULATE=_INTERPRETED)
    _MMA_GEMV(launch.grid, args, meta)
    if ws is not None:
        splitk_reduce(ws, bias, out)


def weight_only_linear(x, qdata, scale, zero, bias, bits: int, group_size: int, symmetric: bool,
                       config: LaunchConfig | None = None) -> torch.Tensor:
    """y = x @ dequant(W).T + bias for x [..., K] (any strides) -> [..., N] in x's dtype."""
    check_weight_only_inputs(x, qdata, scale, zero, bias, bits, group_size, symmetric)
    k = qdata.shape[0] * codes_per_word(bits)
    n = qdata.shape[1]
    lead = x.shape[:-1]
    x2 = x.reshape(-1, k)
    if config is None:
        device_name, sm_count = _facts(x.device)
        config = choose_config(x2.shape[0], n, k, bits, group_size, str(x.dtype)[6:], device_name, sm_count)
        if config.kernel == "mma" and not mma_gemv_supported(bits, x.dtype):  # bf16 under the interpreter
            config = heuristic_config(x2.shape[0], n, k, bits, group_size, sm_count, mma=False)
    return launch_weight_only(x2, qdata, scale, zero, bias, bits, group_size, symmetric, config).reshape(*lead, n)


# Dynamic-activation formats: per-token activation quantization + int8/fp8 tensor-core GEMM
# (dynamic_gemm.py validates its inputs and picks its own configuration per regime).
from .dynamic_gemm import a8w4_dynamic_linear as dynamic_a8w4_linear  # noqa: E402
from .dynamic_gemm import fp8_dynamic_linear as dynamic_fp8_linear  # noqa: E402
from .dynamic_gemm import int8_dynamic_linear as dynamic_int8_linear  # noqa: E402
