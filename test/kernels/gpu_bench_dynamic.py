"""GPU benchmark of the dynamic-activation kernels: A8W8 int8, A8W8 fp8 and A8W4 (g128).

Not a test (no test_ prefix): run it by hand on an H100,

    python test/kernels/gpu_bench_dynamic.py            # correctness + timings + config search, < 6 min
    python test/kernels/gpu_bench_dynamic.py --no-tune  # correctness + timings only (~2 min)

For K x N in {4096x4096, 4096x14336, 14336x4096, 8192x8192} and M in {1, 16, 64, 256, 1024, 4096}:
  1. checks, separately: (a) the activation codes and scales of quantize_per_token against the
     reference quantizers (count of differing codes / scales, must be 0); (b) each format's GEMM
     (heuristic config, fused or not) against float64 on the SAME codes, with the bound
     eps(out) |ref| + acc_rel * mass (mass = sum_k |xq w| * scales; acc_rel 2^-21 int8, 2^-20
     A8W4, 2^-11 fp8 on Hopper tensor cores), printed as err / bound (<= 1 passes); the fp8
     column also shows max err / mass, the measured accumulation precision;
  2. times, with CUDA-graph replay, our three formats (activation quantization included) and the
     anchors cuBLAS fp16 F.linear, torch._int_mm (int8 x int8 -> int32, no act quant, no scaling;
     M <= 16 padded to 32 rows, its minimum) and torch._scaled_mm (fp8 row-wise scales, bf16 out, no
     act quant). A graph holds one call per weight copy, with enough copies (>= 2 x the 50 MB L2)
     that every call streams its weight from HBM; the time is the median replay / copies;
  3. searches candidate_configs() per (shape, M, format), each candidate checked for correctness,
     and prints the best one next to the heuristic's, until the time budget runs out;
  4. prints time ratios vs fp16 (geomean over the shapes, per M): < 1 is faster than fp16.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from torchao_gemlite.kernels.act_quant import quantize_per_token  # noqa: E402
from torchao_gemlite.kernels.dynamic_configs import candidate_configs, pick_config  # noqa: E402
from torchao_gemlite.kernels.dynamic_gemm import (  # noqa: E402
    a8w4_dynamic_linear,
    fp8_dynamic_linear,
    int8_dynamic_linear,
)
from torchao_gemlite.quant import (  # noqa: E402
    FP8_DTYPE,
    dequantize_weight,
    quantize_rowwise_fp8,
    quantize_rowwise_int8,
    quantize_weight,
    reference_linear_a8w4,
    reference_linear_dynamic,
)

SHAPES = [(4096, 4096), (4096, 14336), (14336, 4096), (8192, 8192)]  # (K, N)
MS = [1, 16, 64, 256, 1024, 4096]
ROTATE_BYTES = 2 * 50 * 2**20  # twice the H100's L2
GROUP = 128
OURS = ("int8", "fp8", "a8w4")
ANCHORS = ("_int_mm", "_scaled_mm", "smm+aq")
DTYPE = torch.float16
DEVICE = "cuda"


def graph_time_us(fns, reps: int = 20) -> float:
    """Median time of one call (us): fns are the same op on different weight copies, all in one graph."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up (compiles, cuBLAS workspaces) outside the capture
        for _ in range(2):
            for f in fns:
                f()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for f in fns:
            f()
    graph.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / len(fns))
    del graph
    return statistics.median(times)


def copies_for(nbytes: int) -> int:
    return max(1, min(32, math.ceil(ROTATE_BYTES / nbytes)))


ACC_REL = {"int8": 2.0**-21, "a8w4": 2.0**-20, "fp8": 2.0**-11}


def max_violation(y: torch.Tensor, ref_mass, kind: str) -> tuple[float, float]:
    """(max |y - ref| / (eps |ref| + acc_rel mass), max |y - ref| / mass): the first <= 1 passes."""
    ref, mass = ref_mass
    if torch.isnan(y).any():
        return float("inf"), float("inf")
    err = (y.double() - ref).abs()
    bound = torch.finfo(y.dtype).eps * ref.abs() + ACC_REL[kind] * mass + 1e-30
    return (err / bound).max().item(), (err / (mass + 1e-30)).max().item()


def code_mismatches(x: torch.Tensor) -> str:
    """Differing codes / scales of quantize_per_token vs the reference quantizers (must be 0)."""
    cells = []
    for name, dtype, ref_fn in (("int8", torch.int8, quantize_rowwise_int8), ("fp8", FP8_DTYPE, quantize_rowwise_fp8)):
        q, s = quantize_per_token(x, dtype)
        rq, rs = ref_fn(x)
        dq = (q.view(torch.uint8) != rq.view(torch.uint8)).sum().item()
        ds = (s != rs).sum().item()
        cells.append(f"{name} {dq}/{ds}")
    return " ".join(cells)


class Weights:
    """One random weight in every format, with enough copies of each to defeat the L2."""

    def __init__(self, k: int, n: int, gen: torch.Generator):
        w = (torch.randn(n, k, generator=gen, device=DEVICE) * 0.02).to(DTYPE)
        self.k, self.n = k, n
        self.fp16 = [w] + [w.clone() for _ in range(copies_for(w.numel() * 2) - 1)]
        wq, ws = quantize_rowwise_int8(w)
        self.int8 = [(wq, ws)] + [(wq.clone(), ws.clone()) for _ in range(copies_for(wq.numel()) - 1)]
        w8, ws8 = quantize_rowwise_fp8(w)
        self.fp8 = [(w8, ws8)] + [(w8.clone(), ws8.clone()) for _ in range(copies_for(w8.numel()) - 1)]
        self.fp8_t = [(w, s.reshape(1, -1).contiguous()) for w, s in self.fp8]  # _scaled_mm wants scale_b [1, N]
        qw = quantize_weight(w, bits=4, group_size=GROUP, symmetric=True)
        nbytes = qw.qdata.numel() * 4 + qw.scale.numel() * 2
        self.qw = qw
        self.a8w4 = [(qw.qdata, qw.scale)] + [(qw.qdata.clone(), qw.scale.clone()) for _ in range(copies_for(nbytes) - 1)]

    def bytes_of(self, kind: str) -> int:
        return {"fp16": self.n * self.k * 2, "int8": self.n * self.k + 4 * self.n, "fp8": self.n * self.k + 4 * self.n,
                "a8w4": self.n * self.k // 2 + 2 * self.n * self.k // GROUP}[kind]

    def ours(self, kind: str, x: torch.Tensor, config=None):
        if kind == "int8":
            return [lambda wq=wq, ws=ws: int8_dynamic_linear(x, wq, ws, None, config) for wq, ws in self.int8]
        if kind == "fp8":
            return [lambda wq=wq, ws=ws: fp8_dynamic_linear(x, wq, ws, None, config) for wq, ws in self.fp8]
        return [lambda q=q, s=s: a8w4_dynamic_linear(x, q, s, None, GROUP, config) for q, s in self.a8w4]

    def reference(self, kind: str, x: torch.Tensor) -> torch.Tensor:
        """End-to-end reference (the reference quantizer's codes): informative only."""
        if kind == "a8w4":
            return reference_linear_a8w4(x, self.qw)
        wq, ws = (self.int8 if kind == "int8" else self.fp8)[0]
        return reference_linear_dynamic(x, wq, ws, None, act=kind)

    def ref_on_codes(self, kind: str, x: torch.Tensor):
        """(ref, mass) in float64 from quantize_per_token's codes (shared by the fused prologue)."""
        xq, xs = quantize_per_token(x, FP8_DTYPE if kind == "fp8" else torch.int8)
        if kind == "a8w4":
            wd = dequantize_weight(self.qw, torch.float64)
        else:
            wq, ws = (self.int8 if kind == "int8" else self.fp8)[0]
            wd = wq.double() * ws.double().reshape(-1, 1)
        xd, xs = xq.double(), xs.double()
        return (xd @ wd.t()) * xs, (xd.abs() @ wd.abs().t()) * xs

    def anchors(self, x: torch.Tensor) -> dict:
        m = x.shape[0]
        xq, _ = quantize_per_token(x if m > 16 else torch.cat([x, x.new_ones(32 - m, self.k)]), torch.int8)
        x8, xs8 = quantize_rowwise_fp8(x)

        def smm_aq(w8, ws):  # our act quant + row-wise _scaled_mm (bf16 out: its supported dtype)
            q, s = quantize_per_token(x, FP8_DTYPE)
            return torch._scaled_mm(q, w8.t(), scale_a=s, scale_b=ws, out_dtype=torch.bfloat16)
        out = {"smm+aq": [lambda w8=w8, ws=ws: smm_aq(w8, ws) for w8, ws in self.fp8_t],"fp16": [lambda w=w: F.linear(x, w) for w in self.fp16],
               "_int_mm": [lambda wq=wq: torch._int_mm(xq, wq.t()) for wq, _ in self.int8],
               "_scaled_mm": [lambda w8=w8, ws=ws: torch._scaled_mm(x8, w8.t(), scale_a=xs8, scale_b=ws,
                                                                    out_dtype=torch.bfloat16) for w8, ws in self.fp8_t]}
        return out


def fmt_cfg(c) -> str:
    return (f"{c.BLOCK_M}x{c.BLOCK_N}x{c.BLOCK_K} sk{c.SPLIT_K} w{c.num_warps} s{c.num_stages}"
            + (" swap" if c.SWAP_AB else "") + (" fuse" if c.FUSE_ACT else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-tune", action="store_true", help="skip the config search")
    parser.add_argument("--budget-s", type=float, default=330.0, help="stop the config search after this many seconds")
    parser.add_argument("--ms", type=int, nargs="*", default=MS)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("needs a CUDA GPU")
        return 1
    t0 = time.time()
    print(f"{torch.cuda.get_device_name()}  torch {torch.__version__}  triton {__import__('triton').__version__}")
    probe_a = torch.randn(64, 256, device=DEVICE).to(FP8_DTYPE)
    probe_b = torch.randn(128, 256, device=DEVICE).to(FP8_DTYPE)
    for od in (torch.float16, torch.bfloat16, torch.float32):  # which outputs row-wise _scaled_mm supports
        try:
            torch._scaled_mm(probe_a, probe_b.t(), scale_a=torch.ones(64, 1, device=DEVICE),
                             scale_b=torch.ones(1, 128, device=DEVICE), out_dtype=od)
            print(f"_scaled_mm row-wise out {od}: ok")
        except RuntimeError as err:
            print(f"_scaled_mm row-wise out {od}: {str(err).splitlines()[0][:90]}")
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    results = {}  # (shape, m) -> {name: us}
    failures = []
    weights = {}

    print("\n== correctness (heuristic config) and CUDA-graph times in us; ratio = time / fp16 time ==")
    print(f"{'K x N':>12} {'M':>5} {'fp16':>8} | " + " | ".join(f"{n:>15}" for n in OURS + ANCHORS)
          + f" | {'actq':>6} | GEMM on same codes: err/bound [fp8 err/mass] | act codes/scales differing")
    for k, n in SHAPES:
        wts = Weights(k, n, gen)
        weights[(k, n)] = wts
        for m in args.ms:
            x = torch.randn(m, k, generator=gen, device=DEVICE, dtype=DTYPE)
            row = {}
            checks = []
            for kind in OURS:
                try:
                    y = wts.ours(kind, x)[0]()
                except Exception as err:  # noqa: BLE001 - report and go on (a config that fails to compile)
                    print(f"   {kind} M={m} failed: {type(err).__name__}: {str(err).splitlines()[0][:150]}")
                    failures.append(((k, n), m, kind, "error"))
                    checks.append(f"{kind} ERR")
                    continue
                v, rel = max_violation(y, wts.ref_on_codes(kind, x), kind)
                checks.append(f"{kind} {v:.2f}" + (f" [{rel:.1e}]" if kind == "fp8" else ""))
                if not v <= 1.0:
                    failures.append(((k, n), m, kind, v))
            mism = code_mismatches(x)
            if mism != "int8 0/0 fp8 0/0":
                failures.append(((k, n), m, "act codes", mism))
            anchors = wts.anchors(x)
            row["fp16"] = graph_time_us(anchors["fp16"])
            for kind in OURS:
                try:
                    row[kind] = graph_time_us(wts.ours(kind, x))
                except Exception:  # noqa: BLE001 - already reported above
                    row[kind] = float("nan")
            for name in ANCHORS:
                try:
                    row[name] = graph_time_us(anchors[name])
                except RuntimeError as err:  # an anchor that does not support this shape
                    row[name] = float("nan")
                    print(f"   {name} unavailable for M={m}: {str(err).splitlines()[0][:100]}")
            # 16 calls in one graph, so that the graph launch itself is amortized as for the GEMMs
            row["actq"] = graph_time_us([lambda: quantize_per_token(x, torch.int8)] * 16)
            results[((k, n), m)] = row
            cells = " | ".join(f"{row[nm]:8.1f} ({row[nm] / row['fp16']:4.2f})" for nm in OURS + ANCHORS)
            print(f"{k:>5} x{n:>6} {m:>5} {row['fp16']:8.1f} | {cells} | {row['actq']:6.1f} | {', '.join(checks)}"
                  f" | {mism}",
                  flush=True)
        first = results[((k, n), args.ms[0])]
        print(f"{'':>12} M={args.ms[0]} weight stream GB/s (3000 = HBM copy rate): "
              + ", ".join(f"{kd} {wts.bytes_of(kd) / first[kd] / 1e3:.0f}" for kd in ("fp16",) + OURS))

    print(f"\n(main phase took {time.time() - t0:.0f} s)")
    if not args.no_tune:
        print("\n== config search: heuristic vs best candidate (us); every candidate is checked first ==")
        print(f"{'K x N':>12} {'M':>5} {'kind':>5} {'heuristic':>36} {'best':>36} {'gain':>5}")
        done = True
        for m in args.ms:  # M-major, so that an early stop still covers whole regimes
            for k, n in SHAPES:
                wts = weights[(k, n)]
                x = torch.randn(m, k, generator=gen, device=DEVICE, dtype=DTYPE)
                for kind in OURS:
                    if time.time() - t0 > args.budget_s:
                        done = False
                        break
                    heur = pick_config(m, n, k, kind)
                    ref = wts.ref_on_codes(kind, x)
                    best_cfg, best_us = heur, results[((k, n), m)][kind]
                    for cfg in candidate_configs(m, n, k, kind):
                        if cfg == heur:
                            continue
                        try:
                            v, _ = max_violation(wts.ours(kind, x, cfg)[0](), ref, kind)
                        except Exception as err:  # noqa: BLE001
                            v = f"error {type(err).__name__}"
                        if not (isinstance(v, float) and v <= 1.0):
                            failures.append(((k, n), m, f"{kind} {fmt_cfg(cfg)}", v))
                            continue
                        us = graph_time_us(wts.ours(kind, x, cfg), reps=10)
                        if us < best_us:
                            best_cfg, best_us = cfg, us
                    h_us = results[((k, n), m)][kind]
                    print(f"{k:>5} x{n:>6} {m:>5} {kind:>5} {fmt_cfg(heur):>36} {h_us:8.1f} "
                          f"{fmt_cfg(best_cfg):>36} {best_us:8.1f} {h_us / best_us:5.2f}", flush=True)
        if not done:
            print(f"(config search stopped at the {args.budget_s:.0f} s budget; use --ms to search the rest)")

    print("\n== time / fp16 time, geomean over the shapes (lower is better); fp16 column in us ==")
    names = OURS + ANCHORS
    print(f"{'M':>5} {'fp16 us':>9} " + " ".join(f"{nm:>11}" for nm in names))
    for m in args.ms:
        rows = [results[(s, m)] for s in SHAPES]
        fp16 = math.exp(statistics.fmean(math.log(r["fp16"]) for r in rows))
        cells = []
        for nm in names:
            ratios = [r[nm] / r["fp16"] for r in rows if not math.isnan(r[nm])]
            cells.append(f"{math.exp(statistics.fmean(map(math.log, ratios))):11.3f}" if ratios else f"{'n/a':>11}")
        print(f"{m:>5} {fp16:9.1f} " + " ".join(cells))
    if failures:
        print("\nCORRECTNESS FAILURES:")
        for f in failures:
            print("  ", f)
    print(f"\ntotal {time.time() - t0:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
