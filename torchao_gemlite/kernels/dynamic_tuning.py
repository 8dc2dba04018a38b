"""Explicit tuning of the dynamic-activation GEMMs (A8W8 int8 / fp8, A8W4): measure launch configurations
for your shapes and save the best to the user cache the weight-only kernels use (configs.user_cache_path).

    python -m torchao_gemlite.kernels.dynamic_tuning --shapes 4096x14336 14336x4096 --kinds int8 a8w4
    # or, from Python:
    torchao_gemlite.tune_dynamic(shapes=[(4096, 14336)], m_values=[16, 64, 1024], kinds=("int8",))

For each (kind, shape, M) the call's route is the dispatcher's (dynamic_gemm.DynamicPlan): only M where it
runs the tensor-core GEMM are tuned (A8W8 from M = 5, fp8 up to M = 127 (torch._scaled_mm past it), A8W4
from M = 17, on int8 codes from M = 256); the others are reported and left alone. The candidates are
dynamic_configs.candidate_configs around the heuristic, each timed as the whole linear layer (activation
quantization included) by CUDA-graph replay over enough weight copies to defeat the L2 cache, and checked
against the heuristic's output; FUSE_ACT candidates (the quantization inside the GEMM: a route, not a launch)
are left out. Winners are stored under dynamic_configs.table_key (by M bucket) and
looked up before the heuristic on the next plan. Nothing is ever tuned implicitly at run time.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from ..quant import quantize_rowwise_fp8, quantize_rowwise_int8, quantize_weight
from .configs import clear_caches, user_cache_path, write_table_atomically
from .dynamic_configs import KINDS, NUM_SMS_H100, candidate_configs, choose_config, table_key
from .dynamic_gemm import DynamicPlan
from .tuning import L2_ROTATION_BYTES, graph_time_us, parse_shape

DEFAULT_M = (8, 16, 32, 64, 128, 256, 1024, 4096)
TUNED_ROUTES = ("gemm", "codes")


def _weights(kind: str, n: int, k: int, group: int | None, device, copies: int = 1) -> list[tuple]:
    """``copies`` (weight, scale) pairs of one random weight in ``kind``'s format, each in its own storage."""
    w = torch.randn(n, k, device=device) * 0.02
    if kind == "a8w4":
        qw = quantize_weight(w.half(), 4, group, True)
        pair = (qw.qdata, qw.scale)
    else:
        wq, ws = (quantize_rowwise_fp8 if kind == "fp8" else quantize_rowwise_int8)(w)
        pair = (wq, ws.reshape(n))
    return [pair] + [tuple(t.clone() for t in pair) for _ in range(copies - 1)]


def tune_kind_shape(kind: str, n: int, k: int, m_values, group_size: int | None = 128, dtype=torch.float16,
                    device="cuda", num_sms: int = NUM_SMS_H100, timer=graph_time_us, log=print) -> dict:
    """Times the GEMM candidates of one (kind, weight shape) for each M; returns {table key: (config, us)} for
    the M whose route is the GEMM. ``timer(launches) -> us`` times a list of closures (one per weight copy)."""
    group = None if kind != "a8w4" else (k if group_size in (None, -1) else group_size)
    per_copy = n * k * (0.5 if kind == "a8w4" else 1.0)
    copies = _weights(kind, n, k, group, device, max(2, min(64, math.ceil(L2_ROTATION_BYTES / per_copy))))
    weight, w_scale = copies[0]
    results = {}
    for m in m_values:
        x = torch.randn(m, k, dtype=dtype, device=device)
        default = DynamicPlan(kind, x, weight, w_scale, None, k, n, group)
        if default.route not in TUNED_ROUTES:
            log(f"{kind} {k}x{n} M={m}: route {default.route}, not a tuned GEMM")
            continue
        codes = default.route == "codes"
        heuristic = choose_config(m, n, k, kind, group, codes, "", num_sms)  # "": not the tables
        ref = DynamicPlan(kind, x, weight, w_scale, None, k, n, group, heuristic)(x, weight, w_scale, None).float()
        best = None
        for cfg in candidate_configs(m, n, k, kind, num_sms, group=group, codes=codes):
            if cfg.FUSE_ACT:  # a route (the quantization inside the GEMM), not a launch: never a table entry
                continue
            try:
                plan = DynamicPlan(kind, x, weight, w_scale, None, k, n, group, cfg)
                y = plan(x, weight, w_scale, None).float()
                err = ((y - ref).norm() / ref.norm().clamp_min(1e-30)).item()
                if not err < 1e-2:  # a wrong or unwritten result never wins
                    log(f"  skip {cfg}: relative error {err:.2e} against the heuristic's output")
                    continue
                us = timer([lambda plan=plan, w=w, s=s: plan(x, w, s, None) for w, s in copies])
            except Exception as err:  # a candidate that does not compile on this GPU is skipped
                log(f"  skip {cfg}: {type(err).__name__}: {str(err)[:120]}")
                continue
            if best is None or us < best[1]:
                best = (cfg, us)
        if best is None:
            log(f"{kind} {k}x{n} M={m}: no candidate ran")
            continue
        key = table_key(m, n, k, kind, group, codes)
        results[key] = best
        log(f"{key}: {best[1]:8.1f} us  {best[0]}")
    return results


def tune_dynamic(shapes, m_values=DEFAULT_M, kinds=KINDS, group_size: int | None = 128, dtype=torch.float16,
                 output: str | Path | None = None, log=print) -> Path:
    """Tunes every (K, N) in ``shapes`` for each kind and M and merges the winners into a JSON table.

    group_size: A8W4's group (None or -1: per-channel). output: the table to write (default: the user cache
    for this GPU, read before the shipped tables). Returns its path.
    """
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown:
        raise ValueError(f"kinds={unknown!r} are not supported: choose from {KINDS}")
    if not torch.cuda.is_available():
        raise RuntimeError("tuning measures kernels on the GPU: CUDA is not available")
    device_name = torch.cuda.get_device_name()
    num_sms = torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count
    found = {}
    for k, n in shapes:
        log(f"{k}x{n}: fp16 F.linear " + ", ".join(f"M={m} {_fp16_us(m, n, k, dtype):.1f} us" for m in m_values))
        for kind in kinds:
            for key, (cfg, _) in tune_kind_shape(kind, n, k, m_values, group_size, dtype, "cuda", num_sms,
                                                 log=log).items():
                found[key] = cfg.to_dict()
    path = Path(output) if output else user_cache_path(device_name)
    write_table_atomically(path, found, device_name)
    clear_caches()
    return path


def _fp16_us(m: int, n: int, k: int, dtype) -> float:
    """cuBLAS F.linear for the same shape, the reference a tuned time is read against."""
    dense = [torch.randn(n, k, dtype=dtype, device="cuda") for _ in range(max(2, L2_ROTATION_BYTES // (2 * n * k)))]
    x = torch.randn(m, k, dtype=dtype, device="cuda")
    return graph_time_us([lambda w=w: F.linear(x, w) for w in dense])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", nargs="+", type=parse_shape, required=True, help="K x N, e.g. 4096x14336")
    p.add_argument("--m", nargs="+", type=int, default=list(DEFAULT_M))
    p.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    p.add_argument("--group-size", type=int, default=128, help="A8W4's group, -1 for per-channel")
    p.add_argument("--dtype", choices=["float16", "bfloat16"], default="float16")
    p.add_argument("--output", help="table to write (default: the user cache for this GPU)")
    a = p.parse_args(argv)
    path = tune_dynamic(a.shapes, a.m, a.kinds, None if a.group_size == -1 else a.group_size,
                        getattr(torch, a.dtype), a.output)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
