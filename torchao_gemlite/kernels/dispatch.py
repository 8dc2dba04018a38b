"""Validation and dispatch: picks the kernel and launch configuration for each call.

The first call of a call key (``_plan_key``: the tensors' dtypes, shapes, strides, alignment and
devices, the format) validates it (checks that would otherwise surface as a Triton trace), looks up
the launch configuration and plans its launches (``WeightOnlyPlan``); later calls with the same key
replay the plan: the key, the output allocation, one or two launches. Outputs and split-K workspaces
are fresh allocations from PyTorch's caching allocator (safe inside CUDA graph capture).
"""

from __future__ import annotations

import math

import torch
from triton.tools.tensor_descriptor import TensorDescriptor

from ..formats import ACTIVATION_DTYPES, FLOAT_WEIGHT_DTYPES, PackedFormat, codes_per_word, symmetric_zero
from .configs import LaunchConfig, choose_config, heuristic_config, mma_supported, register_derived_cache
from .dequant import dequantize_packed
from .gemm import gemm_kernel
from .gemv import gemv_kernel
from .half2 import half_mac_supported, pair_kshift, pairs_per_flush
from .launch import INTERPRETED as _INTERPRETED
from .launch import FastLauncher, KernelCall, PlanCache, cdiv, device_facts, tensor_key, tma_ready
from .mma_batch import mma_batch_kernel
from .mma_gemv import mma_gemv_kernel, mma_launch, mma_operands_aligned
from .reduce import splitk_reduce_call


_GEMV = FastLauncher(gemv_kernel)
_GEMM = FastLauncher(gemm_kernel)
_MMA_GEMV = FastLauncher(mma_gemv_kernel)
_MMA_BATCH = FastLauncher(mma_batch_kernel)


def mma_gemv_supported(bits: int, dtype: torch.dtype) -> bool:
    """configs.mma_supported, and fp16 only under Triton's interpreter (it computes bf16 wrongly)."""
    return mma_supported(bits, str(dtype)[6:]) and (not _INTERPRETED or dtype == torch.float16)


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


def _kernel_operands(qdata, scale, zero, bias) -> tuple:
    """The weight tensors as the kernels index them: [rows, N] with unit stride along N, zero with
    scale's strides (one offset for both), a contiguous bias (read as bias[n])."""
    qdata, scale = _unit_stride_rows(qdata), _unit_stride_rows(scale)
    if bias is not None and not bias.is_contiguous():
        bias = bias.contiguous()
    if zero is not None:
        zero = _unit_stride_rows(zero)
        if zero.stride() != scale.stride():
            zero, scale = zero.contiguous(), scale.contiguous()
    return qdata, scale, zero, bias


class WeightOnlyPlan:
    """How one call shape runs, decided once: the kernel and its launches (grid, int arguments,
    constexprs, compiled binary after the first run), the copies the kernels need, the split-K
    reduction. ``weight_only_linear`` keeps one per ``_plan_key`` and replays it, so an eager call
    of a known shape costs the key, the output allocation and the launches (docs/kernels.md, host
    overhead). Built from a validated call; ``out`` (row-major, given by the caller) fixes its row stride."""

    def __init__(self, x, qdata, scale, zero, bias, bits: int, group_size: int, symmetric: bool,
                 config: LaunchConfig, out: torch.Tensor | None = None):
        k, n = x.shape[-1], qdata.shape[1]
        x2 = x.reshape(-1, k)
        m = x2.shape[0]
        self.m, self.n, self.k, self.dtype, self.config = m, n, k, x.dtype, config
        self.lead, self.flatten = tuple(x.shape[:-1]), x.dim() != 2
        # a call on another GPU than the current one runs under a device guard (Triton launches on the current one)
        self.guard = x.get_device() if x.is_cuda and x.get_device() != torch.cuda.current_device() else None
        operands = _kernel_operands(qdata, scale, zero, bias)
        self.fix_operands = any(a is not b for a, b in zip(operands, (qdata, scale, zero, bias)))
        qdata, scale, zero, bias = operands
        self.format = (bits, group_size, symmetric)
        self.kernel = self.reduce = None
        self.copy_x, self.split, self.tma_blocks = False, 1, None
        if m == 0 or config.kernel == "dense":
            return
        out_stride = n if out is None else out.stride(0)
        c = config
        if c.kernel in ("mma", "mma_batch") and not mma_operands_aligned(qdata, scale, zero):
            c = self.config = heuristic_config(m, n, k, bits, group_size, device_facts(x.device)[1], mma=False)
        if c.kernel in ("mma", "mma_batch"):
            group_k = 0 if group_size == k else group_size
            if not mma_gemv_supported(bits, x.dtype):
                raise ValueError(f"the mma kernel does not take {bits}-bit weights with {x.dtype} activations"
                                 + (" under Triton's interpreter" if _INTERPRETED else ""))
            if c.num_stages not in (1, 2):
                raise ValueError(f"mma config num_stages={c.num_stages} is not supported: 1 (a step's loads at its top) "
                                 "or 2 (and the next step's: mma_gemv.py)")
            launch = mma_launch(c, m, n, k, group_k)
            # it reads x as int32 pairs, 8 or 16 bytes a load (per-channel 8-bit with one batch tile keeps 8:
            # 0.92x with 16 on the H100, where every other format gained up to 1.12x), rows aligned to the load
            wide_x = not (bits == 8 and group_k == 0 and m <= 8)
            x_align = 16 if wide_x and bits >= 4 else 8
            self.copy_x = (x2.stride(1) != 1 or (m > 1 and (2 * x2.stride(0)) % x_align != 0)
                           or x2.data_ptr() % x_align != 0)
            x_stride = k if self.copy_x else x2.stride(0)
            self.split = launch.split
            ints = (m, n, k, launch.steps_per_split, launch.m_tiles, x_stride, qdata.stride(0), scale.stride(0), out_stride)
            meta = dict(launch.meta, BITS=bits, GROUP_K=group_k, SYMMETRIC=symmetric, SYM_ZERO=symmetric_zero(bits),
                        HAS_BIAS=bias is not None and self.split == 1, NUM_STAGES=c.num_stages,
                        WIDE_X=wide_x, EMULATE=_INTERPRETED)
            self.kernel = KernelCall(_MMA_GEMV if c.kernel == "mma" else _MMA_BATCH, launch.grid, ints, meta)
        else:
            self._tiled_kernel(x2, qdata, scale, bias, bits, group_size, symmetric, out_stride)
        if self.split > 1:
            self.reduce = splitk_reduce_call(self.split, m, n, bias is not None, out_stride)

    def _tiled_kernel(self, x2, qdata, scale, bias, bits, group_size, symmetric, out_stride) -> None:
        """The GEMV or the tensor-core GEMM (same arguments)."""
        c, m, n, k = self.config, self.m, self.n, self.k
        k_tiles = cdiv(k, c.block_k)
        split = max(1, min(c.split_k, k_tiles))
        tiles_per_split = cdiv(k_tiles, split)
        self.split = cdiv(k_tiles, tiles_per_split)  # no empty splits
        # the packed 16-bit arithmetic of half2.py (gemv loop, gemm dequantization); under Triton's
        # interpreter its emulation, which is fp16 only (the interpreter computes bf16 wrongly). Never
        # with swapped operands: there the dequantized tile is the register operand of the asynchronous
        # wgmma, and with the inline PTX the H100 gave wrong results in split-K launches, some of them
        # intermittent (docs/kernels.md, test/kernels/gpu_probe_swap_race.py); fp32 never did.
        half = (c.half_mac and not (c.kernel == "gemm" and c.swap_ab) and x2.dtype in (torch.float16, torch.bfloat16)
                and half_mac_supported(bits, x2.dtype == torch.bfloat16)
                and (not _INTERPRETED or x2.dtype == torch.float16))
        if c.kernel == "gemv":  # it reads x as int32 pairs: rows contiguous and 4-byte aligned, a row stride only
            self.copy_x = x2.stride(1) != 1 or (m > 1 and x2.stride(0) % 2 != 0) or x2.data_ptr() % 4 != 0
            x_strides = (k if self.copy_x else x2.stride(0),)
            if c.block_m < m:
                raise ValueError(f"gemv config block_m={c.block_m} is smaller than M={m}")
            grid = (cdiv(n, c.block_n), self.split)
        else:
            x_strides = x2.stride()
            if c.block_k < 16 or c.block_k % codes_per_word(bits):
                raise ValueError(f"gemm config block_k={c.block_k} is not supported for {bits}-bit weights: the tensor "
                                 f"cores need block_k >= 16, a multiple of the {codes_per_word(bits)} codes in a word")
            grid = (cdiv(m, c.block_m) * cdiv(n, c.block_n), self.split)
        ints = (m, n, k, tiles_per_split, *x_strides, qdata.stride(0), scale.stride(0), out_stride)
        meta = dict(BITS=bits, GROUP_K=0 if group_size == k else group_size, SYMMETRIC=symmetric,
                    SYM_ZERO=symmetric_zero(bits), HAS_BIAS=bias is not None and self.split == 1,
                    BLOCK_M=c.block_m, BLOCK_N=c.block_n, BLOCK_K=c.block_k, USE_WORKSPACE=self.split > 1,
                    NUM_STAGES=c.num_stages, num_warps=c.num_warps)
        if c.kernel == "gemv":
            meta.update(EVEN_K=k % c.block_k == 0, EVEN_N=n % c.block_n == 0, HALF_MAC=half,
                        PF=pairs_per_flush(bits), KSHIFT=pair_kshift(bits), EMULATE=_INTERPRETED)
            self.kernel = KernelCall(_GEMV, grid, ints, meta)
        else:
            tma = c.tma and tma_ready(x2) and tma_ready(qdata)  # x [M, K], words [K / E, N]
            if tma:  # the descriptors' blocks: x [BM, BK], words [BK / E, BN]
                self.tma_blocks = ([c.block_m, c.block_k], [c.block_k // codes_per_word(bits), c.block_n])
            meta.update(GROUP_M=c.group_m, SWAP_AB=c.swap_ab, HALF=half, EMULATE=_INTERPRETED, TMA=tma)
            self.kernel = KernelCall(_GEMM, grid, ints, meta)

    def __call__(self, x, qdata, scale, zero, bias, out: torch.Tensor | None = None) -> torch.Tensor:
        if self.guard is not None:
            with torch.cuda.device(self.guard):
                return self._run(x, qdata, scale, zero, bias, out)
        return self._run(x, qdata, scale, zero, bias, out)

    def _run(self, x, qdata, scale, zero, bias, out) -> torch.Tensor:
        m, n = self.m, self.n
        x2 = x.reshape(m, self.k) if self.flatten else x
        if self.fix_operands:
            qdata, scale, zero, bias = _kernel_operands(qdata, scale, zero, bias)
        if self.config.kernel == "dense" and m:
            bits, group_size, symmetric = self.format
            dense = dequantize_packed(qdata, scale, zero, bits, group_size, symmetric, symmetric_zero(bits), x2.dtype)
            out = torch.mm(x2, dense, out=out) if bias is None else torch.addmm(bias.to(x2.dtype), x2, dense, out=out)
        else:
            if out is None:
                out = torch.empty((m, n), dtype=self.dtype, device=x.device)
            if self.kernel is not None:
                if self.copy_x:
                    x2 = x2.clone(memory_format=torch.contiguous_format)
                ws = torch.empty((self.split, m, n), dtype=torch.float32, device=x.device) if self.split > 1 else out
                if self.tma_blocks is not None:  # built per call: x is a new tensor each time
                    x2 = TensorDescriptor.from_tensor(x2, self.tma_blocks[0])
                    qdata = TensorDescriptor.from_tensor(qdata, self.tma_blocks[1])
                self.kernel((x2, qdata, scale, zero if zero is not None else scale,
                             bias if bias is not None else scale, out, ws))
                if self.reduce is not None:
                    self.reduce((ws, bias if bias is not None else ws, out))
        return out.view(*self.lead, n) if self.flatten else out


def launch_weight_only(x2: torch.Tensor, qdata, scale, zero, bias, bits: int, group_size: int, symmetric: bool,
                       config: LaunchConfig, out: torch.Tensor | None = None) -> torch.Tensor:
    """Runs one configuration on a 2-D input [M, K]; returns [M, N] in x's dtype (into ``out`` if given).
    Plans the call afresh each time (tuning, tests): the model path is ``weight_only_linear``."""
    m, n = x2.shape[0], qdata.shape[1]
    if out is not None and (out.shape != (m, n) or out.dtype != x2.dtype or out.stride(1) != 1):
        raise ValueError(f"out must be a row-major {(m, n)} {x2.dtype} tensor, got {out.dtype} {tuple(out.shape)}")
    return WeightOnlyPlan(x2, qdata, scale, zero, bias, bits, group_size, symmetric, config, out)(
        x2, qdata, scale, zero, bias, out)


def _plan_key(x, qdata, scale, zero, bias, bits, group_size, symmetric) -> tuple:
    """Everything validation and planning read: calls with equal keys pass the same checks and
    run the same launches. The current device is part of it (the compiled kernels are per device)."""
    return (tensor_key(x), tensor_key(qdata), tensor_key(scale), tensor_key(zero), tensor_key(bias),
            bits, group_size, symmetric, type(bits), type(group_size),
            torch.cuda.current_device() if isinstance(x, torch.Tensor) and x.is_cuda else -1)


# configs.clear_caches() empties it with the config caches (after tuning)
_PLANS = PlanCache()
register_derived_cache(_PLANS)


def weight_only_linear(x, qdata, scale, zero, bias, bits: int, group_size: int, symmetric: bool,
                       config: LaunchConfig | None = None) -> torch.Tensor:
    """y = x @ dequant(W).T + bias for x [..., K] (any strides) -> [..., N] in x's dtype."""
    if config is not None:
        check_weight_only_inputs(x, qdata, scale, zero, bias, bits, group_size, symmetric)
        return WeightOnlyPlan(x, qdata, scale, zero, bias, bits, group_size, symmetric, config)(
            x, qdata, scale, zero, bias)
    key = _plan_key(x, qdata, scale, zero, bias, bits, group_size, symmetric)
    plan = _PLANS.get(key)
    if plan is None:
        check_weight_only_inputs(x, qdata, scale, zero, bias, bits, group_size, symmetric)
        k, n = x.shape[-1], qdata.shape[1]
        device_name, sm_count = device_facts(x.device)
        m = math.prod(x.shape[:-1])
        config = choose_config(m, n, k, bits, group_size, str(x.dtype)[6:], device_name, sm_count)
        if config.kernel in ("mma", "mma_batch") and not mma_gemv_supported(bits, x.dtype):  # bf16 under the interpreter
            config = heuristic_config(m, n, k, bits, group_size, sm_count, mma=False)
        plan = _PLANS.keep(key, WeightOnlyPlan(x, qdata, scale, zero, bias, bits, group_size, symmetric, config))
    return plan(x, qdata, scale, zero, bias)


# Dynamic-activation formats: per-token activation quantization + int8/fp8 tensor-core GEMM
# (dynamic_gemm.py validates its inputs and picks its own configuration per regime).
from .dynamic_gemm import a8w4_dynamic_linear as dynamic_a8w4_linear  # noqa: E402
from .dynamic_gemm import fp8_dynamic_linear as dynamic_fp8_linear  # noqa: E402
from .dynamic_gemm import int8_dynamic_linear as dynamic_int8_linear  # noqa: E402
