"""GPU probe (not a test): how fast the per-token activation quantization streams, and what the
IEEE division x / scale costs. Variants of the one-pass kernel (act_quant.py), DIV:
  0  tl.math.div_rn(x, scale)                           (the kernel's exact division)
  1  q = x * r, r = div_rn(1, scale) per row; q += fma(-q, scale, x) * r   (one correction step)
  2  x * r only                                          (not exact: the speed of light)
with the codes of 1 and 2 compared against 0 on the same rows.

    python test/kernels/gpu_probe_act_quant.py
    python test/kernels/gpu_probe_act_quant.py --launches    (act_quant.py's launch parameters)

--launches times act_quant.py's kernel for M = 1..4096 and K = 4096, 8192, 14336 with the launch of
``_launch_params`` and with one pass over whole rows (one row a program, 8 / 16 / 32 warps) or two passes of
4096- or 8192-code chunks (8 / 16 warps); codes and scales must equal the current launch's.
"""

import sys

import torch
import triton
import triton.language as tl

from torchao_gemlite.kernels.act_quant import (
    _ACT_QUANT, INT8_MAX, _launch_params, act_quant_call, inv_qmax, row_scale)
from torchao_gemlite.kernels.launch import KernelCall, next_power_of_2
from torchao_gemlite.kernels.tuning import graph_time_us

_ROUND_MAGIC = tl.constexpr(12582912.0)
_ROUND_MAGIC_BITS = tl.constexpr(0x4B400000)


@triton.jit
def _variant_kernel(x_ptr, q_ptr, s_ptr, M, K, stride_xm, DIV: tl.constexpr, ROWS: tl.constexpr,
                    BLOCK_K: tl.constexpr, INV_QMAX: tl.constexpr):
    o_m = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    o_k = tl.arange(0, BLOCK_K)
    mask = (o_m < M)[:, None] & (o_k < K)[None, :]
    b_x = tl.load(x_ptr + o_m.to(tl.int64)[:, None] * stride_xm + o_k[None, :], mask=mask, other=0.0).to(tl.float32)
    b_s = row_scale(tl.max(tl.abs(b_x), axis=1), 127.0, INV_QMAX, True)
    if DIV == 0:
        b_v = tl.math.div_rn(b_x, b_s[:, None])
    else:
        b_r = tl.math.div_rn(tl.full(b_s.shape, 1.0, tl.float32), b_s)
        b_v = b_x * b_r[:, None]
        if DIV == 1:
            b_v = tl.math.fma(tl.math.fma(-b_v, b_s[:, None], b_x), b_r[:, None], b_v)
    b_v = tl.minimum(tl.maximum(b_v, -127.0), 127.0)
    b_i = (b_v + _ROUND_MAGIC).to(tl.int32, bitcast=True) - _ROUND_MAGIC_BITS
    tl.store(q_ptr + o_m.to(tl.int64)[:, None] * K + o_k[None, :], b_i.to(tl.int8), mask=mask)
    tl.store(s_ptr + o_m, b_s, mask=o_m < M)


def main() -> None:
    print("M x K: kernel us (fraction of 3.0 TB/s) for act_quant.py and DIV = 0 / 1 / 2; codes differing from DIV=0")
    for m, k in ((1, 4096), (16, 4096), (1024, 4096), (4096, 4096), (1024, 8192), (4096, 8192), (1024, 14336),
                 (4096, 14336)):
        x = torch.randn(m, k, dtype=torch.half, device="cuda") * torch.rand(m, 1, device="cuda").half() * 10
        q = torch.empty(m, k, dtype=torch.int8, device="cuda")
        s = torch.empty(m, dtype=torch.float32, device="cuda")
        nbytes = 3 * m * k + 4 * m
        call = act_quant_call(m, k, k, 1, torch.int8, x.device)
        row = [graph_time_us([lambda: call((x, q, s))] * 10)]
        codes = []
        if k <= 8192:
            _, block_k, rows, warps = _launch_params(m, k)
            for div in (0, 1, 2):
                out = torch.empty_like(q)

                def run(d=div, o=out):
                    _variant_kernel[(triton.cdiv(m, rows),)](x, o, s, m, k, k, DIV=d, ROWS=rows, BLOCK_K=block_k,
                                                             INV_QMAX=inv_qmax(INT8_MAX), num_warps=warps)
                run()
                codes.append(out)
                row.append(graph_time_us([run] * 10))
        cells = "  ".join(f"{t:7.1f} ({nbytes / t / 3e6:4.0%})" for t in row)
        diffs = [int((c != codes[0]).sum()) for c in codes[1:]] if codes else []
        print(f"{m:5d} x {k:5d}: {cells}   differing codes: {diffs}", flush=True)


def launches() -> None:
    print("M x K: us for the current launch, then each variant (one/two pass, BLOCK_K, warps); * = codes differ")
    for k in (4096, 8192, 14336):
        for m in (1, 4, 16, 64, 256, 1024, 4096):
            x = torch.randn(m, k, dtype=torch.half, device="cuda") * torch.rand(m, 1, device="cuda").half() * 10
            s = torch.empty(m, dtype=torch.float32, device="cuda")
            q = torch.empty(m, k, dtype=torch.int8, device="cuda")
            call = act_quant_call(m, k, k, 1, torch.int8, x.device)
            call((x, q, s))
            cells = [f"current {_launch_params(m, k)} {graph_time_us([lambda: call((x, q, s))] * 10):.1f}"]
            variants = [(True, next_power_of_2(k), w) for w in (8, 16, 32)]
            variants += [(False, bk, w) for bk in (4096, 8192) for w in (8, 16) if bk < k]
            for one_pass, block_k, warps in variants:
                q2, s2 = torch.empty_like(q), torch.empty_like(s)
                v = KernelCall(_ACT_QUANT, (m,), (m, k, k, 1, k), dict(
                    QMAX=INT8_MAX, INV_QMAX=inv_qmax(INT8_MAX), RECIP=True, FP8=False, ONE_PASS=one_pass, ROWS=1,
                    BLOCK_K=block_k, PDL=False, num_warps=warps))
                v((x, q2, s2))
                same = torch.equal(q2, q) and torch.equal(s2, s)
                t = graph_time_us([lambda v=v, q2=q2, s2=s2: v((x, q2, s2))] * 10)
                cells.append(f"{'one' if one_pass else 'two'} {block_k} w{warps} {t:.1f}{'' if same else '*'}")
            print(f"{m:5d} x {k:5d}: " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    if "--launches" in sys.argv:
        launches()
    else:
        main()
