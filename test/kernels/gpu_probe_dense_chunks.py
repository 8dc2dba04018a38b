"""GPU probe (not a test): dequantize + cuBLAS for large M, the whole weight at once against column
chunks small enough for the dense copy to stay in L2 (a reused [K, chunk] buffer, one cuBLAS GEMM per
chunk writing its columns of the output in place).

    python test/kernels/gpu_probe_dense_chunks.py OUTDIR [--m 256 1024 4096] [--chunk-mib 8 16 24 32]

Checks each chunked result against the whole-weight one (bit-identical expected: the same GEMM per
output element), then times (CUDA-graph replay over weight copies rotated beyond L2) cuBLAS fp16,
whole-weight dequantize + cuBLAS and each chunk size. Writes OUTDIR/probe_dense_chunks.json; prints a
table last.
"""

import argparse
import json

import torch
import torch.nn.functional as F

from torchao_gemlite.formats import symmetric_zero
from torchao_gemlite.kernels.dequant import dequantize_packed
from torchao_gemlite.kernels.tuning import L2_ROTATION_BYTES, _weight_copies, graph_time_us


def chunk_width(k: int, n: int, chunk_bytes: int) -> int:
    """Columns a chunk: a multiple of 128 whose fp16 [K, chunk] copy fits chunk_bytes (at least 128)."""
    return min(n, max(128, chunk_bytes // (2 * k) // 128 * 128))


def chunked(x, qdata, scale, zero, bits, group, sym, width, buf, out):
    """out = x @ W^T chunk by chunk: dequantize width columns into buf (contiguous, reused), one GEMM each."""
    k, n = buf.shape[0], qdata.shape[1]
    flat = buf.view(-1)
    for n0 in range(0, n, width):
        n1 = min(n, n0 + width)
        part = flat[: k * (n1 - n0)].view(k, n1 - n0)
        dequantize_packed(qdata[:, n0:n1], scale[:, n0:n1], None if zero is None else zero[:, n0:n1], bits, group,
                          sym, symmetric_zero(bits), x.dtype, out=part)
        torch.mm(x, part, out=out[:, n0:n1])
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("outdir")
    p.add_argument("--shapes", nargs="+", default=["4096x4096", "4096x14336", "14336x4096", "8192x8192"])
    p.add_argument("--m", nargs="+", type=int, default=[256, 1024, 4096])
    p.add_argument("--chunk-mib", nargs="+", type=int, default=[8, 16, 24, 32])
    p.add_argument("--bits", type=int, default=4)
    p.add_argument("--group", type=int, default=128)
    a = p.parse_args()
    rows = []
    for shape in a.shapes:
        k, n = (int(v) for v in shape.split("x"))
        qw, copies = _weight_copies(n, k, a.bits, a.group, False, torch.float16, "cuda")
        group = qw.fmt.group_size
        dense = [torch.randn(n, k, dtype=torch.float16, device="cuda")
                 for _ in range(max(2, L2_ROTATION_BYTES // (n * k * 2)))]
        for m in a.m:
            x = torch.randn(m, k, dtype=torch.float16, device="cuda")
            out = torch.empty(m, n, dtype=torch.float16, device="cuda")
            row = dict(k=k, n=n, m=m)
            row["fp16_us"] = graph_time_us([lambda w=w: F.linear(x, w) for w in dense])
            whole = [lambda c=c: torch.mm(x, dequantize_packed(c[0], c[1], c[2], a.bits, group, False,
                                                               symmetric_zero(a.bits), x.dtype), out=out)
                     for c in copies]
            row["whole_us"] = graph_time_us(whole)
            ref = torch.mm(x, dequantize_packed(*copies[0], a.bits, group, False, symmetric_zero(a.bits), x.dtype))
            for mib in a.chunk_mib:
                width = chunk_width(k, n, mib << 20)
                if width >= n:
                    continue
                buf = torch.empty(k, width, dtype=torch.float16, device="cuda")
                got = chunked(x, *copies[0], a.bits, group, False, width, buf, torch.full_like(out, float("nan")))
                same = bool(torch.equal(got, ref))
                us = graph_time_us([lambda c=c: chunked(x, *c, a.bits, group, False, width, buf, out) for c in copies])
                row[f"chunk{mib}"] = dict(width=width, us=us, same=same)
            rows.append(row)
            print(row, flush=True)
    json.dump(rows, open(f"{a.outdir}/probe_dense_chunks.json", "w"), indent=1)
    print(f"{'KxN':>11} {'M':>5} {'fp16':>7} {'whole':>7} " + " ".join(f"{'c' + str(c) + 'MiB':>16}" for c in a.chunk_mib))
    for r in rows:
        cells = []
        for mib in a.chunk_mib:
            c = r.get(f"chunk{mib}")
            cells.append(f"{c['us']:7.1f}/{c['width']:>5}{'' if c['same'] else '!'}" if c else f"{'-':>16}")
        print(f"{r['k']:>5}x{r['n']:<5} {r['m']:>5} {r['fp16_us']:7.1f} {r['whole_us']:7.1f} " + " ".join(
            f"{c:>16}" for c in cells) + f"   x fp16: whole {r['fp16_us'] / r['whole_us']:.2f} best chunk "
            f"{r['fp16_us'] / min([r[f'chunk{c}']['us'] for c in a.chunk_mib if f'chunk{c}' in r] or [float('inf')]):.2f}")


if __name__ == "__main__":
    main()
