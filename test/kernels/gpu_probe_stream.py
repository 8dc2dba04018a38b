"""GPU probe (not a test): how fast can a kernel stream a packed weight, with no arithmetic?

    python test/kernels/gpu_probe_stream.py OUTDIR [--shapes 4096x4096 ...]

A decode kernel can go no faster than it can read its weight. This probe times a kernel that only
loads 4-bit packed words and XORs them ([K / 8, N] int32 words), for tilings like the decode
kernels' (BLOCK_N columns a CTA, BLOCK_KW word rows a step, warps, Triton pipeline stages, loads
issued UNROLL steps at a time, K splits), in our N-contiguous layout and in a K-contiguous one
([N, K / 8]), against torch's device copy. CUDA-graph replay over copies rotated beyond L2.
Writes OUTDIR/probe_stream.json and .log; prints the best tilings per shape last.
"""

import argparse
import itertools
import json
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor

import torch
import triton
import triton.language as tl

from torchao_gemlite.kernels.tuning import graph_time_us

L2_ROTATION_BYTES = 256 * 2**20


@triton.jit
def _xor(a, b):
    return a ^ b


@triton.jit
def stream_kernel(w_ptr, out_ptr, KW, N, steps_per_split, stride_k, stride_n,
                  BLOCK_KW: tl.constexpr, BLOCK_N: tl.constexpr, UNROLL: tl.constexpr, NUM_STAGES: tl.constexpr):
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    o_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    o_k = tl.arange(0, BLOCK_KW)
    acc = tl.zeros((BLOCK_KW, BLOCK_N), dtype=tl.int32)
    first = pid_k * steps_per_split
    for step in tl.range(first, first + steps_per_split, num_stages=NUM_STAGES):
        for u in tl.static_range(UNROLL):
            rows = (step * UNROLL + u) * BLOCK_KW + o_k
            acc ^= tl.load(w_ptr + rows[:, None] * stride_k + o_n[None, :] * stride_n, eviction_policy="evict_first")
    tl.store(out_ptr + pid_k * N + o_n, tl.reduce(acc, 0, _xor))


def tilings(kw, n):
    out = []
    for bn, bkw, warps, stages, unroll, split in itertools.product(
            (32, 64, 128), (16, 32, 64), (4, 8), (1, 2, 3, 4), (1, 2, 4), (1, 2)):
        tile = bn * bkw * 4
        if not 4096 <= tile <= 16384 or tile * max(stages - 1, 1) * unroll > 64 * 1024:
            continue
        if stages > 1 and unroll > 1 or warps * 32 * 4 > tile:
            continue
        steps = kw // (bkw * unroll)
        if steps % split or steps // split < 2:
            continue
        ctas = n // bn * split
        if not 100 <= ctas <= 4096:
            continue
        out.append((bn, bkw, warps, stages, unroll, split))
    return out


def launch(w, out, kw, n, layout, tiling):
    bn, bkw, warps, stages, unroll, split = tiling
    stride_k, stride_n = (n, 1) if layout == "n-major" else (1, kw)
    steps = kw // (bkw * unroll)
    stream_kernel[(n // bn, split)](w, out, kw, n, steps // split, stride_k, stride_n, BLOCK_KW=bkw, BLOCK_N=bn,
                                    UNROLL=unroll, NUM_STAGES=stages, num_warps=warps, num_stages=stages)


def _compile_job(job):
    k, n, layout, tils = job
    kw = k // 8
    w = torch.zeros(kw * n, dtype=torch.int32, device="cuda")
    out = torch.empty(4 * n, dtype=torch.int32, device="cuda")
    for t in tils:
        launch(w, out, kw, n, layout, t)
    torch.cuda.synchronize()
    return len(tils)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("outdir")
    p.add_argument("--shapes", nargs="+", default=["4096x4096", "4096x14336", "14336x4096", "8192x8192"])
    a = p.parse_args()
    shapes = [tuple(int(v) for v in s.split("x")) for s in a.shapes]
    logf = open(f"{a.outdir}/probe_stream.log", "w")
    layouts = ("n-major", "k-major")
    jobs = []
    for (k, n), layout in itertools.product(shapes, layouts):
        tils = tilings(k // 8, n)
        jobs += [(k, n, layout, tils[i:i + 12]) for i in range(0, len(tils), 12)]
    with ProcessPoolExecutor(16, mp_context=multiprocessing.get_context("spawn")) as pool:
        print(f"precompiled {sum(pool.map(_compile_job, jobs))} launches", file=logf, flush=True)
    results = []
    for k, n in shapes:
        kw = k // 8
        nbytes = kw * n * 4
        copies = max(2, L2_ROTATION_BYTES // nbytes)
        ws = [torch.randint(-2**31, 2**31 - 1, (kw * n,), dtype=torch.int32, device="cuda") for _ in range(copies)]
        dst = [torch.empty_like(w) for w in ws]
        copy_us = graph_time_us([lambda s=s, d=d: d.copy_(s) for s, d in zip(ws, dst)], replays=20)
        row = dict(k=k, n=n, bytes=nbytes, copy_tb_s=2 * nbytes / copy_us / 1e6, best={})
        out = torch.empty(4 * n, dtype=torch.int32, device="cuda")
        for layout in layouts:
            timed = []
            for t in tilings(kw, n):
                us = graph_time_us([lambda w=w, t=t: launch(w, out, kw, n, layout, t) for w in ws], replays=20)
                timed.append((us, t))
                print(f"{k}x{n} {layout} {t}: {us:.2f} us {nbytes / us / 1e6:.2f} TB/s", file=logf, flush=True)
            timed.sort()
            row["best"][layout] = [(us, nbytes / us / 1e6, t) for us, t in timed[:5]]
        results.append(row)
    json.dump(dict(device=torch.cuda.get_device_name(), results=results), open(f"{a.outdir}/probe_stream.json", "w"),
              indent=1)
    print("tiling: (block_n, block_kw, warps, stages, unroll, split)")
    for r in results:
        print(f"{r['k']}x{r['n']} ({r['bytes'] / 2**20:.1f} MiB): copy (read+write) {r['copy_tb_s']:.2f} TB/s")
        for layout, best in r["best"].items():
            print(f"  {layout}: " + "; ".join(f"{us:.2f} us {tb:.2f} TB/s {t}" for us, tb, t in best[:3]))


if __name__ == "__main__":
    sys.exit(main())
