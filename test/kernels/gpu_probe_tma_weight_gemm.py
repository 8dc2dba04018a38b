"""GPU probe (not a test): a weight-only 4-bit g128 (asymmetric) fused GEMM whose operand tiles come
through TMA tensor descriptors, against the prefill route (dequantize to a dense fp16 [K, N] matrix,
then cuBLAS), cuBLAS fp16 itself and the pointer GEMM of kernels/gemm.py, at large M.

    python test/kernels/gpu_probe_tma_weight_gemm.py OUT [--shapes 4096x4096 ...] [--m 256 1024 4096]
        [--only SUBSTRING ...] [--replays 10] [--no-bf16] [--workers 14] [--deadline-s 460]

The experimental kernel (this file) reads per K step
  x tile     [BM, BK]       fp16/bf16 through a descriptor on x [M, K]
  words tile [BK / 8, BN]   int32 through a descriptor on the packed weight [K / 8, N]
  scales and zeros of the step's group, one row [BN] by pointer (BK divides the group)
and dequantizes the words in registers, then one tl.dot. Variants:
  P   plain:    acc[BM, BN] += x [BM, BK] @ w [BK, BN] (w: dequantized in registers, staged to
                shared memory as wgmma's B operand)
  S   swapped:  acc[BN, BM] += trans(w) [BN, BK] (wgmma's register A operand) @ trans(x) [BK, BM]
  TW  swapped, the weight tile built directly as [BN, BK] from the transposed words
dequantization: f32 (unpack.py's bit trick, one FMA a code), h16 (half2.dequant_codes in inline
PTX, two codes an instruction), e16 (dequant_codes with EMULATE=True: the same in plain Triton,
16-bit results); "ws": the K loop as tl.range(..., warp_specialize=True) (Triton's automatic warp
specialization). With the operands swapped the dequantized tile is the register operand of the
asynchronous wgmma, where the h16 inline PTX gave intermittently wrong results in gemm.py: every
variant is checked three times per (shape, M), output poisoned with NaN before each, against a
float64 x @ dequant(W)^T (relative Frobenius error, FAIL above 1e-2); failing variants never count
as "best".
Anchors: cuBLAS F.linear (x @ W^T, W [N, K] dense), the dense route (dequantize_packed +
torch.mm, timed together, as the dispatcher runs it) and gemm.py's kernel at three plain tiles
(16-bit dequantization), all through launch_weight_only.
Every variant is first compiled and checked on a small problem, one spawned process each (a pool of
--workers at a time, each killed after 240 s: a hung warp-specialized kernel cannot stall the
probe); variants that fail there are reported and skipped. Times: CUDA-graph replay over weight
copies beyond L2 (tuning.graph_time_us), us per call. With bf16 on, each (shape, M) also times
cuBLAS bf16 and the best correct non-emulated TMA variant with bf16 activations.
Writes OUT/tma_weight_gemm.log (everything) and OUT/tma_weight_gemm.json, prints a table last.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from torchao_gemlite.kernels.half2 import dequant_codes
from torchao_gemlite.kernels.reduce import tile_coordinates
from torchao_gemlite.kernels.unpack import all_slots_as_float, group_mul_add

BITS = 4
GROUP = 128
E = 32 // BITS
TOL = 1e-2
CHECKS = 3
WORKER_TIMEOUT_S = 240


# ----------------------------------------------------------------------------------------------
# the experimental kernel


@triton.jit
def _tma_step(acc, k0, x_desc, w_desc, scale_ptr, zero_ptr, off_m, off_n, o_n, m_n, stride_sg,
              BITS: tl.constexpr, GROUP_K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
              SWAP: tl.constexpr, DQ: tl.constexpr, TW: tl.constexpr, IS_BF16: tl.constexpr):
    """One K step: both tiles through their descriptors, the weight dequantized in registers, one dot.
    DQ: 0 fp32 bit trick, 1 half2.dequant_codes inline PTX, 2 the same emulated in plain Triton."""
    PER_WORD: tl.constexpr = 32 // BITS
    BLOCK_KW: tl.constexpr = BLOCK_K // PER_WORD
    CODE_MASK: tl.constexpr = (1 << BITS) - 1
    b_x = x_desc.load([off_m, k0])  # [BM, BK]
    b_words = w_desc.load([k0 // PER_WORD, off_n])  # [BKW, BN]
    dt = b_x.dtype
    g_off = (k0 // GROUP_K) * stride_sg  # the step's group (BLOCK_K divides GROUP_K)
    if TW:  # the weight tile as [BN, BKW, E] -> [BN, BK] (k = word row * E + slot along the last axis)
        mul, add = group_mul_add(scale_ptr, zero_ptr, g_off + o_n[:, None], m_n[:, None], False, 0.0, BITS)  # [BN, 1]
        words_t = tl.trans(b_words)  # [BN, BKW]
        SHAPE_T: tl.constexpr = (BLOCK_N, BLOCK_KW, PER_WORD)
        if DQ == 0:
            codes = (words_t[:, :, None] >> (tl.arange(0, PER_WORD) * BITS)[None, None, :]) & CODE_MASK
            f = ((codes << (23 - BITS)) | 0x3F800000).to(tl.float32, bitcast=True)  # 1 + q / 2^BITS
            b_wt = (f * mul[:, :, None] + add[:, :, None]).to(dt)
        else:  # scale and (C - zero) * scale in 16 bits, C = 2^(BITS-1) (as gemm.py)
            scale16 = (mul * (1.0 / (1 << BITS))).to(dt)
            offset16 = (add + mul * (((1 << (BITS - 1)) + (1 << BITS)) / (1 << BITS))).to(dt)
            b_wt = dequant_codes(tl.broadcast_to(words_t[:, :, None], SHAPE_T),
                                 tl.broadcast_to((tl.arange(0, PER_WORD) * BITS)[None, None, :], SHAPE_T),
                                 tl.broadcast_to(scale16[:, :, None], SHAPE_T),
                                 tl.broadcast_to(offset16[:, :, None], SHAPE_T), BITS, IS_BF16, DQ == 2)
        b_wt = tl.reshape(b_wt, (BLOCK_N, BLOCK_K))
        acc = tl.dot(b_wt, tl.trans(b_x), acc)  # [BN, BK] @ [BK, BM] -> [BN, BM]
    else:  # the weight tile as [BKW, E, BN] -> [BK, BN]
        mul, add = group_mul_add(scale_ptr, zero_ptr, g_off + o_n[None, :], m_n[None, :], False, 0.0, BITS)  # [1, BN]
        SHAPE: tl.constexpr = (BLOCK_KW, PER_WORD, BLOCK_N)
        if DQ == 0:
            f3 = all_slots_as_float(b_words, BITS)  # [BKW, E, BN]
            b_w = (f3 * mul[:, None, :] + add[:, None, :]).to(dt)
        else:
            scale16 = (mul * (1.0 / (1 << BITS))).to(dt)
            offset16 = (add + mul * (((1 << (BITS - 1)) + (1 << BITS)) / (1 << BITS))).to(dt)
            b_w = dequant_codes(tl.broadcast_to(b_words[:, None, :], SHAPE),
                                tl.broadcast_to((tl.arange(0, PER_WORD) * BITS)[None, :, None], SHAPE),
                                tl.broadcast_to(scale16[:, None, :], SHAPE),
                                tl.broadcast_to(offset16[:, None, :], SHAPE), BITS, IS_BF16, DQ == 2)
        b_w = tl.reshape(b_w, (BLOCK_K, BLOCK_N))
        if SWAP:
            acc = tl.dot(tl.trans(b_w), tl.trans(b_x), acc)  # [BN, BK] @ [BK, BM] -> [BN, BM]
        else:
            acc = tl.dot(b_x, b_w, acc)  # [BM, BK] @ [BK, BN] -> [BM, BN]
    return acc


@triton.jit
def tma_weight_gemm_kernel(x_desc, w_desc, scale_ptr, zero_ptr, out_ptr, M, N, K, stride_sg, stride_om,
                           BITS: tl.constexpr, GROUP_K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                           BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr, SWAP: tl.constexpr, DQ: tl.constexpr,
                           TW: tl.constexpr, WS: tl.constexpr, NUM_STAGES: tl.constexpr, IS_BF16: tl.constexpr):
    """y [M, N] = x [M, K] @ dequant(W)^T; grid: (output tiles,), bands of GROUP_M row tiles."""
    pid_m, pid_n = tile_coordinates(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)
    off_m = pid_m * BLOCK_M
    off_n = pid_n * BLOCK_N
    o_n = off_n + tl.arange(0, BLOCK_N)
    m_n = o_n < N
    if SWAP:
        acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if WS:
        for k0 in tl.range(0, K, BLOCK_K, num_stages=NUM_STAGES, warp_specialize=True):
            acc = _tma_step(acc, k0, x_desc, w_desc, scale_ptr, zero_ptr, off_m, off_n, o_n, m_n, stride_sg,
                            BITS, GROUP_K, BLOCK_N, BLOCK_K, SWAP, DQ, TW, IS_BF16)
    else:
        for k0 in tl.range(0, K, BLOCK_K, num_stages=NUM_STAGES):
            acc = _tma_step(acc, k0, x_desc, w_desc, scale_ptr, zero_ptr, off_m, off_n, o_n, m_n, stride_sg,
                            BITS, GROUP_K, BLOCK_N, BLOCK_K, SWAP, DQ, TW, IS_BF16)
    if SWAP:
        acc = tl.trans(acc)  # [BN, BM] -> [BM, BN]
    o_m = off_m + tl.arange(0, BLOCK_M)
    p_out = out_ptr + o_m[:, None] * stride_om + o_n[None, :]
    tl.store(p_out, acc.to(out_ptr.dtype.element_ty), mask=(o_m < M)[:, None] & m_n[None, :])


# ----------------------------------------------------------------------------------------------
# variants


@dataclass(frozen=True)
class Variant:
    kind: str  # "tma" or "old" (gemm.py through launch_weight_only)
    bm: int
    bn: int
    bk: int
    warps: int
    stages: int
    swap: bool = False
    dq: str = "h16"  # f32 | h16 | e16
    tw: bool = False
    ws: bool = False

    @property
    def name(self) -> str:
        if self.kind == "old":
            return f"old {self.dq} {self.bm}x{self.bn}x{self.bk} w{self.warps} s{self.stages}"
        fam = "TW" if self.tw else ("S" if self.swap else "P")
        return f"{fam} {self.dq} {self.bm}x{self.bn}x{self.bk} w{self.warps} s{self.stages}{' ws' if self.ws else ''}"

    @property
    def family(self) -> str:
        if self.kind == "old":
            return "old"
        return ("TW" if self.tw else ("S" if self.swap else "P")) + " " + self.dq + (" ws" if self.ws else "")


# (BM, BN, BK, warps, stages); swapped tiles keep the names of the output tile (acc is [BN, BM]).
# A smoke run (4096x4096, M = 1024) put one warpgroup (4 warps) ahead and the transposed-word build
# (TW) 2-3x behind: the field leans to 4-warp plain tiles, one TW is kept as a marker.
PLAIN_TILES = [(128, 128, 64, 8, 4), (128, 256, 64, 8, 3), (128, 128, 128, 8, 3), (256, 128, 64, 8, 3),
               (128, 128, 64, 4, 4)]
PLAIN_H16_TILES = [(128, 128, 64, 4, 3), (128, 128, 64, 4, 5), (128, 128, 32, 4, 5), (64, 256, 64, 4, 4),
                   (128, 128, 128, 4, 3)]
SWAP_TILES = [(128, 128, 64, 8, 4), (256, 128, 64, 8, 3), (128, 128, 64, 4, 4)]
TW_TILES = [(128, 256, 64, 8, 3)]
OLD_TILES = [(128, 128, 64, 8, 4), (128, 256, 64, 8, 3), (128, 256, 128, 8, 3)]


def all_variants() -> list[Variant]:
    out = [Variant("old", *t, dq="h16") for t in OLD_TILES]
    out += [Variant("tma", *t, dq=dq) for t in PLAIN_TILES for dq in ("h16", "f32")]
    out += [Variant("tma", *t, dq="h16") for t in PLAIN_H16_TILES]
    out += [Variant("tma", *t, swap=True, dq=dq) for t in SWAP_TILES for dq in ("f32", "e16", "h16")]
    out += [Variant("tma", *t, swap=True, tw=True, dq="f32") for t in TW_TILES]
    out += [Variant("tma", 128, 128, 64, 4, 4, dq="h16", ws=True),
            Variant("tma", 128, 128, 64, 8, 3, dq="h16", ws=True),
            Variant("tma", 128, 128, 64, 8, 3, dq="f32", ws=True),
            Variant("tma", 128, 256, 64, 8, 3, dq="h16", ws=True),
            Variant("tma", 128, 128, 64, 8, 3, swap=True, dq="f32", ws=True),
            Variant("tma", 128, 128, 64, 8, 3, swap=True, dq="e16", ws=True),
            Variant("tma", 128, 128, 64, 8, 3, swap=True, dq="h16", ws=True)]
    return out


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def make_launch(v: Variant, x, qdata, scale, zero, out):
    """A closure running variant ``v`` once: x [M, K], packed words [K / 8, N], scale/zero [K / G, N]."""
    m, k = x.shape
    n = qdata.shape[1]
    if v.kind == "old":
        from torchao_gemlite.kernels.configs import LaunchConfig
        from torchao_gemlite.kernels.dispatch import launch_weight_only
        cfg = LaunchConfig("gemm", v.bm, v.bn, v.bk, 1, num_warps=v.warps, num_stages=v.stages,
                           half_mac=v.dq == "h16")
        return lambda: launch_weight_only(x, qdata, scale, zero, None, BITS, GROUP, False, cfg, out=out)
    x_desc = TensorDescriptor.from_tensor(x, [v.bm, v.bk])
    w_desc = TensorDescriptor.from_tensor(qdata, [v.bk // E, v.bn])
    grid = (cdiv(m, v.bm) * cdiv(n, v.bn),)
    meta = dict(BITS=BITS, GROUP_K=GROUP, BLOCK_M=v.bm, BLOCK_N=v.bn, BLOCK_K=v.bk, GROUP_M=8, SWAP=v.swap,
                DQ={"f32": 0, "h16": 1, "e16": 2}[v.dq], TW=v.tw, WS=v.ws, NUM_STAGES=v.stages,
                IS_BF16=x.dtype == torch.bfloat16, num_warps=v.warps, num_stages=v.stages)
    stride_sg, stride_om = scale.stride(0), out.stride(0)
    return lambda: tma_weight_gemm_kernel[grid](x_desc, w_desc, scale, zero, out, m, n, k, stride_sg, stride_om,
                                                **meta)


# ----------------------------------------------------------------------------------------------
# reference and checks


def dequant64(qdata, scale, zero) -> torch.Tensor:
    """The [K, N] weight (q - zero) * scale in float64, unpacked here independently of the kernels."""
    kw, n = qdata.shape
    shifts = torch.arange(E, device=qdata.device, dtype=torch.int32) * BITS
    codes = ((qdata[:, None, :] >> shifts[None, :, None]) & ((1 << BITS) - 1)).reshape(kw * E, n).double()
    g = torch.arange(kw * E, device=qdata.device) // GROUP
    return (codes - zero.double()[g]) * scale.double()[g]


def rel_err(out, ref) -> float:
    return ((out.double() - ref).norm() / ref.norm()).item()


def check(fn, out, ref, times=CHECKS) -> list[float]:
    errs = []
    for _ in range(times):
        out.fill_(float("nan"))
        fn()
        torch.cuda.synchronize()
        errs.append(rel_err(out, ref))
    return errs


def passed(errs) -> bool:
    return all(e < TOL for e in errs)  # NaN compares False


def reason(err: BaseException) -> str:
    """One line: the exception type and the most telling line of its message."""
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    tell = [ln for ln in lines if "rror" in ln or "nsupported" in ln or "not " in ln.lower()]
    text = (tell[-1] if tell else (lines[-1] if lines else ""))[:220]
    return f"{type(err).__name__}: {text}"


def _worker(vd: dict, path: str) -> None:
    """Spawned process: compile the variant, run it on a small problem, check it; result to ``path``."""
    import traceback

    from torchao_gemlite.quant import quantize_weight
    err_fd = os.open(path + ".err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)  # compiler dumps: not on the console
    os.dup2(err_fd, 1)
    os.dup2(err_fd, 2)
    res = dict(ok=False)
    try:
        torch.manual_seed(0)
        v = Variant(**vd)
        m, n, k = 256, 1024, 1024  # ints keep the specialization (multiples of 16) of the real shapes
        qw = quantize_weight(torch.randn(n, k, dtype=torch.float16, device="cuda") * 0.02, BITS, GROUP, False)
        x = torch.randn(m, k, dtype=torch.float16, device="cuda")
        ref = x.double() @ dequant64(qw.qdata, qw.scale, qw.zero)
        out = torch.empty(m, n, dtype=torch.float16, device="cuda")
        t0 = time.time()
        fn = make_launch(v, x, qw.qdata, qw.scale, qw.zero, out)
        errs = check(fn, out, ref)
        res = dict(ok=True, errs=errs, compile_s=time.time() - t0)
        try:  # the compiled kernel (Triton's launch returns it): registers, spills, shared memory, WS applied
            kern = fn()
            if hasattr(kern, "asm"):
                res["info"] = dict(regs=getattr(kern, "n_regs", None), spills=getattr(kern, "n_spills", None),
                                   shared=getattr(kern.metadata, "shared", None),
                                   ws_in_ttgir="warp_specialize" in str(kern.asm.get("ttgir", "")))
        except Exception as err:  # noqa: BLE001
            res["info"] = dict(error=reason(err))
    except BaseException as err:  # noqa: BLE001 - reported by the parent
        res = dict(ok=False, reason=reason(err), trace=traceback.format_exc()[-4000:])
    with open(path, "w") as f:
        json.dump(res, f)


def precompile(variants, tmpdir, workers, say) -> dict:
    """name -> worker result; one spawned process a variant, ``workers`` at a time, each killed after
    WORKER_TIMEOUT_S. Fills Triton's disk cache for the main process."""
    ctx = multiprocessing.get_context("spawn")
    pending = list(enumerate(variants))
    running, results = {}, {}
    t_start = time.time()
    while pending or running:
        while pending and len(running) < workers:
            i, v = pending.pop(0)
            path = os.path.join(tmpdir, f"variant{i}.json")
            if os.path.exists(path):
                os.remove(path)
            proc = ctx.Process(target=_worker, args=(asdict(v), path), daemon=True)
            proc.start()
            running[v.name] = (proc, path, time.time())
        time.sleep(0.5)
        for name, (proc, path, t0) in list(running.items()):
            if not proc.is_alive():
                proc.join()
                try:
                    with open(path) as f:
                        results[name] = json.load(f)
                except (OSError, ValueError):
                    results[name] = dict(ok=False, reason=f"worker died (exit code {proc.exitcode})")
                if not results[name]["ok"]:  # the compiler's own words (MLIR diagnostics go to stderr)
                    try:
                        with open(path + ".err", errors="replace") as f:
                            tail = f.read()[-6000:]
                    except OSError:
                        tail = ""
                    said = [ln.strip() for ln in tail.splitlines() if "error:" in ln or "note:" in ln]
                    results[name]["stderr_tail"] = tail
                    if said:
                        results[name]["reason"] += " | " + " | ".join(x.split(": ", 1)[-1] for x in said[-2:])[:300]
                del running[name]
            elif time.time() - t0 > WORKER_TIMEOUT_S:
                proc.terminate()  # this worker only, by its own handle
                proc.join(10)
                if proc.is_alive():
                    proc.kill()
                    proc.join(10)
                results[name] = dict(ok=False, reason=f"timed out after {WORKER_TIMEOUT_S} s (hang or slow compile)")
                del running[name]
    say(f"precompiled {len(variants)} variants in {time.time() - t_start:.0f} s")
    return results


# ----------------------------------------------------------------------------------------------
# main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--shapes", nargs="+", default=["4096x4096", "4096x14336", "14336x4096", "8192x8192"],
                    help="K x N")
    ap.add_argument("--m", nargs="+", type=int, default=[256, 1024, 4096])
    ap.add_argument("--only", nargs="*", default=None, help="keep variants whose name contains one of these")
    ap.add_argument("--replays", type=int, default=10)
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--workers", type=int, default=14)
    ap.add_argument("--deadline-s", type=float, default=460,
                    help="stop timing after this many seconds (the tables are still written)")
    args = ap.parse_args()
    t_start = time.time()
    os.makedirs(args.out, exist_ok=True)
    log = open(os.path.join(args.out, "tma_weight_gemm.log"), "w")

    def say(text, echo=True):
        if echo:
            print(text, flush=True)
        log.write(text + "\n")
        log.flush()

    from torchao_gemlite.kernels.configs import LaunchConfig
    from torchao_gemlite.kernels.dispatch import launch_weight_only
    from torchao_gemlite.kernels.tuning import _weight_copies, graph_time_us

    variants = all_variants()
    if args.only:
        variants = [v for v in variants if any(s in v.name for s in args.only)]
    say(f"{torch.cuda.get_device_name()}  torch {torch.__version__}  triton {triton.__version__}  "
        f"{len(variants)} variants")
    tmpdir = tempfile.mkdtemp(prefix="tma_weight_probe_")  # worker results and compiler dumps
    pre = precompile(variants, tmpdir, args.workers, say)
    broken = {}  # name -> one-line reason; never run in the main process
    for v in variants:
        r = pre.get(v.name, dict(ok=False, reason="no result"))
        if r["ok"]:
            tag = "" if passed(r["errs"]) else "  FAIL (small check)"
            say(f"  compiled {v.name:34s} {r.get('compile_s', 0):6.1f} s  small errs "
                + " ".join(f"{e:.1e}" for e in r["errs"]) + tag + f"  {r.get('info', '')}", echo=bool(tag))
        else:
            broken[v.name] = r["reason"]
            say(f"  COMPILE/RUN FAILED {v.name}: {r['reason']}")
            for key in ("trace", "stderr_tail"):
                if r.get(key):
                    say("    " + r[key][-3000:].replace("\n", "\n    "), echo=False)

    rows = []
    wrong = []  # (shape, M, variant, errs)
    for shape in args.shapes:
        if time.time() - t_start > args.deadline_s:
            say(f"deadline reached: shape {shape} skipped")
            continue
        k, n = map(int, shape.split("x"))
        torch.manual_seed(k + n)
        qw, copies = _weight_copies(n, k, BITS, GROUP, False, torch.float16, "cuda")
        w64 = dequant64(qw.qdata, qw.scale, qw.zero)  # [K, N]
        n_dense = max(2, 160 * 2**20 // (n * k * 2))
        dense = [torch.randn(n, k, dtype=torch.float16, device="cuda") for _ in range(n_dense)]
        dense_b = [d.to(torch.bfloat16) for d in dense] if not args.no_bf16 else []
        for m in args.m:
            if time.time() - t_start > args.deadline_s:
                say(f"deadline reached: {shape} M={m} skipped")
                continue
            x = torch.randn(m, k, dtype=torch.float16, device="cuda")
            ref = x.double() @ w64
            out = torch.empty(m, n, dtype=torch.float16, device="cuda")
            row = dict(k=k, n=n, m=m, variants={})
            row["fp16_us"] = graph_time_us([lambda d=d: F.linear(x, d) for d in dense], replays=args.replays)
            dense_cfg = LaunchConfig("dense", 0, 0, 0)
            dense_fn = lambda c=copies[0]: launch_weight_only(x, c[0], c[1], c[2], None, BITS, GROUP, False,  # noqa: E731
                                                              dense_cfg, out=out)
            row["dense_errs"] = check(dense_fn, out, ref)
            row["dense_us"] = graph_time_us([lambda c=c: launch_weight_only(x, c[0], c[1], c[2], None, BITS, GROUP,
                                                                            False, dense_cfg, out=out)
                                             for c in copies], replays=args.replays)
            say(f"{k}x{n} M={m}: fp16 {row['fp16_us']:.1f} us, dense {row['dense_us']:.1f} us "
                f"(err {max(row['dense_errs']):.1e})")
            for v in variants:
                if v.name in broken:
                    continue
                if time.time() - t_start > args.deadline_s:
                    say(f"  {k}x{n} M={m}: deadline reached, {v.name} and later variants skipped")
                    break
                try:
                    errs = check(make_launch(v, x, *copies[0], out), out, ref)
                    us = graph_time_us([make_launch(v, x, *c, out) for c in copies], replays=args.replays)
                except Exception as err:  # noqa: BLE001
                    broken[v.name] = reason(err)
                    say(f"  {k}x{n} M={m} {v.name}: FAILED {broken[v.name]}")
                    continue
                ok = passed(errs)
                row["variants"][v.name] = dict(us=us, errs=errs, ok=ok, family=v.family)
                if not ok:
                    wrong.append((shape, m, v.name, errs))
                say(f"  {k}x{n} M={m} {v.name:34s} {us:9.1f} us  x{row['fp16_us'] / us:5.2f} fp16  errs "
                    + " ".join(f"{e:.1e}" for e in errs) + ("" if ok else "  FAIL"), echo=not ok)
            good = {name: d for name, d in row["variants"].items() if d["ok"]}
            tma = [(d["us"], name) for name, d in good.items() if not name.startswith("old")]
            old = [(d["us"], name) for name, d in good.items() if name.startswith("old")]
            row["best_tma"] = min(tma) if tma else (float("nan"), "-")
            row["best_old"] = min(old) if old else (float("nan"), "-")
            if not args.no_bf16 and time.time() - t_start < args.deadline_s:
                xb = x.to(torch.bfloat16)
                ref_b = xb.double() @ w64
                out_b = torch.empty(m, n, dtype=torch.bfloat16, device="cuda")
                row["bf16_us"] = graph_time_us([lambda d=d: F.linear(xb, d) for d in dense_b], replays=args.replays)
                cand = sorted((d["us"], name) for name, d in good.items()
                              if not name.startswith("old") and " e16 " not in name)
                row["bf16_tma"] = (float("nan"), "-")
                if cand:
                    name = cand[0][1]
                    v = next(v for v in variants if v.name == name)
                    try:
                        errs = check(make_launch(v, xb, *copies[0], out_b), out_b, ref_b)
                        us = graph_time_us([make_launch(v, xb, *c, out_b) for c in copies], replays=args.replays)
                        row["bf16_tma"] = (us, name, errs)
                        if not passed(errs):
                            wrong.append((shape, m, name + " bf16", errs))
                            row["bf16_tma"] = (float("nan"), name + " FAIL", errs)
                        say(f"  {k}x{n} M={m} bf16: cuBLAS {row['bf16_us']:.1f} us, {name} {us:.1f} us errs "
                            + " ".join(f"{e:.1e}" for e in errs), echo=False)
                    except Exception as err:  # noqa: BLE001
                        say(f"  {k}x{n} M={m} bf16 {name}: FAILED {reason(err)}")
            say(f"  -> best TMA {row['best_tma'][1]} {row['best_tma'][0]:.1f} us, best old {row['best_old'][1]} "
                f"{row['best_old'][0]:.1f} us")
            rows.append(row)
            with open(os.path.join(args.out, "tma_weight_gemm.json"), "w") as f:
                json.dump(dict(rows=rows, broken=broken, wrong=wrong), f, indent=1)
            del ref
        del w64, dense, dense_b, copies
        torch.cuda.empty_cache()

    # ------------------------------------------------------------------------------------------
    say("\nvariants that failed to compile or run:" + ("" if broken else " none"))
    for name, why in broken.items():
        say(f"  {name}: {why}")
    say("correctness failures (rel. Frobenius > 1e-2, any of 3 runs):" + ("" if wrong else " none"))
    for shape, m, name, errs in wrong:
        say(f"  {shape} M={m} {name}: " + " ".join(f"{e:.1e}" for e in errs))

    fams = sorted({d["family"] for r in rows for d in r["variants"].values() if d["family"] != "old"})
    say("\nbest time (us) per TMA family (correct variants only)")
    say(f"{'KxN':>11} {'M':>5} " + " ".join(f"{f:>11}" for f in fams))
    for r in rows:
        cells = []
        for f in fams:
            ts = [d["us"] for d in r["variants"].values() if d["family"] == f and d["ok"]]
            cells.append(f"{min(ts):11.1f}" if ts else f"{'-':>11}")
        say(f"{r['k']:>5}x{r['n']:<5} {r['m']:>5} " + " ".join(cells))

    say("\nus per call; x = fp16 time / best TMA time; bf16: cuBLAS bf16 | the fp16-best non-emulated TMA in bf16")
    say(f"{'KxN':>11} {'M':>5} {'fp16':>7} {'dense':>7} {'old':>7} {'TMA':>7} {'x':>5} {'dense/TMA':>9} "
        f"{'bf16':>7} {'bf16TMA':>7}  best TMA")
    for r in rows:
        t, name = r["best_tma"][:2]
        bf = r.get("bf16_us", float("nan"))
        bft = r.get("bf16_tma", (float("nan"),))[0]
        say(f"{r['k']:>5}x{r['n']:<5} {r['m']:>5} {r['fp16_us']:7.1f} {r['dense_us']:7.1f} {r['best_old'][0]:7.1f} "
            f"{t:7.1f} {r['fp16_us'] / t:5.2f} {r['dense_us'] / t:9.2f} {bf:7.1f} {bft:7.1f}  {name}")
    say("geomean of fp16 time / route time per M:")
    for m in args.m:
        rs = [r for r in rows if r["m"] == m]
        if not rs:
            continue

        def gm(key):
            vals = [r["fp16_us"] / key(r) for r in rs]
            return math.exp(sum(math.log(v) for v in vals) / len(vals)) if all(v == v for v in vals) else float("nan")
        say(f"  M={m:>5}: dense {gm(lambda r: r['dense_us']):.2f}  old fused {gm(lambda r: r['best_old'][0]):.2f}  "
            f"best TMA {gm(lambda r: r['best_tma'][0]):.2f}")


if __name__ == "__main__":
    # run through the module's own name, so that the spawned workers import the same kernels (one
    # Triton cache key for the workers and this process)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import gpu_probe_tma_weight_gemm as probe
    probe.main()
