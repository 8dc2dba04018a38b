"""GPU probe (not a test): how fast the per-token activation quantization streams, and what the
IEEE division x / scale costs. Variants of the one-pass kernel (act_quant.py), DIV:
  0  tl.math.div_rn(x, scale)                           (the kernel's exact division)
  1  q = x * r, r = div_rn(1, scale) per row; q += fma(-q, scale, x) * r   (one correction step)
  2  x * r only                                          (not exact: the speed of light)
with the codes of 1 and 2 compared against 0 on the same rows.

    python test/kernels/gpu_probe_act_quant.py
"""

import torch
import triton
import triton.language as tl

from torchao_gemlite.kernels.act_quant import INT8_MAX, _launch_params, act_quant_call, inv_qmax, row_scale
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


if __name__ == "__main__":
    main()
