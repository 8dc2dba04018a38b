"""Offline kernel inspection (not a test, no GPU needed): compile a decode or GEMM kernel for sm_90 with the
installed Triton and its bundled ptxas, and count the SASS instructions of its main loop.

    python test/kernels/offline_sass.py gemv --bits 4 --block-k 256 --block-n 32 --warps 4 --stages 3
    python test/kernels/offline_sass.py mma --bits 4 --block-k 256 --block-n 64 --warps 8 --group 128
    python test/kernels/offline_sass.py batch --bits 4 --block-k 64 --block-n 32 --warps 4 --batch-tiles 4 --stages 2
    python test/kernels/offline_sass.py gemm --bits 4 --block-m 64 --block-n 128 --block-k 128 --warps 4
    PYTHONPATH=/path/to/triton-3.6 python test/kernels/offline_sass.py ...   # the GPU machine's Triton

Prints registers, shared memory, the loop's instruction count per packed word a thread and the opcode
histogram; --dump DIR writes the SASS and the TTGIR. The GPU machine runs Triton 3.6 and CI 3.9; they
choose different layouts and schedules (docs/kernels.md), so check with the version that will run it.
Specializes like a real launch: pointers 16-byte aligned, K, N and the row strides multiples of 16, M = 1
(decode kernels) as a constant.
"""

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
import time

import triton
from triton.backends.compiler import GPUTarget
from triton.backends.nvidia.compiler import CUDABackend
from triton.compiler import ASTSource
from triton.runtime.cache import triton_key

from torchao_gemlite.formats import symmetric_zero
from torchao_gemlite.kernels.gemm import gemm_kernel
from torchao_gemlite.kernels.gemv import gemv_kernel
from torchao_gemlite.kernels.half2 import pair_kshift, pairs_per_flush
from torchao_gemlite.kernels.mma_batch import mma_batch_kernel
from torchao_gemlite.kernels.mma_gemv import mma_gemv_kernel

POINTERS = {"x_ptr": "*fp16", "w_ptr": "*i32", "scale_ptr": "*fp16", "zero_ptr": "*fp16", "bias_ptr": "*fp16",
            "out_ptr": "*fp16", "ws_ptr": "*fp32"}
ALIGNED = [*POINTERS, "N", "K", "stride_xm", "stride_wk", "stride_sg", "stride_om"]


def kernel_spec(a):
    """(jit function, signature, constexprs, packed words a thread handles per loop iteration)."""
    group = 0 if a.group is None else a.group
    common = dict(BITS=a.bits, GROUP_K=group, SYMMETRIC=a.symmetric, SYM_ZERO=symmetric_zero(a.bits),
                  HAS_BIAS=False, EVEN_K=True, USE_WORKSPACE=False, NUM_STAGES=a.stages, EMULATE=False)
    words = a.block_k // (32 // a.bits) * a.block_n
    if a.kernel == "gemv":
        const = dict(common, M=1, BLOCK_M=1, BLOCK_N=a.block_n, BLOCK_K=a.block_k, EVEN_N=True,
                     HALF_MAC=not a.fp32_loop, PF=pairs_per_flush(a.bits), KSHIFT=pair_kshift(a.bits))
        fn, threads = gemv_kernel, 32 * a.warps
    elif a.kernel in ("mma", "batch"):
        warps_n = a.block_n // 32
        const = dict(common, BATCH_TILES=a.batch_tiles, WARPS_N=warps_n, WARPS_K=a.warps // warps_n, BLOCK_K=a.block_k,
                     EVEN_N=True, WIDE_X=True)
        if a.kernel == "mma":  # decode: M = 1 specializes like a real launch
            const["M"] = 1
        fn, threads = (mma_gemv_kernel if a.kernel == "mma" else mma_batch_kernel), a.block_n
        # a warp step: BLOCK_K codes of 32 columns per warp along N
    else:
        const = dict(common, stride_xk=1, BLOCK_M=a.block_m, BLOCK_N=a.block_n, BLOCK_K=a.block_k, GROUP_M=8,
                     SWAP_AB=False, HALF=True)
        del const["EVEN_K"]
        fn, threads = gemm_kernel, 32 * a.warps
    # arguments that are neither pointers nor constants are int32 scalars
    pointers = dict(POINTERS, **({"x_ptr": "*bf16", "out_ptr": "*bf16", "bias_ptr": "*bf16"} if a.bf16 else {}))
    signature = {name: pointers.get(name, "constexpr" if name in const else "i32") for name in fn.arg_names}
    return fn, signature, const, words / threads


def main_loop(sass: str) -> list[str]:
    """The instructions of the longest backward branch's body (the K loop)."""
    labels, instrs = {}, []
    for line in sass.splitlines():
        label = re.match(r"^\s*\.(L\w+):", line)
        if label:
            labels[label.group(1)] = len(instrs)
            continue
        ins = re.search(r"/\*[0-9a-f]{4,}\*/\s+(.*?);", line)
        if ins:
            instrs.append(ins.group(1).strip())
    best = (0, -1)
    for i, ins in enumerate(instrs):
        target = re.search(r"BRA\s+`?\(?\.?(L\w+)", ins)
        if target and labels.get(target.group(1), i + 1) <= i and i - labels[target.group(1)] > best[1] - best[0]:
            best = (labels[target.group(1)], i)
    return instrs[best[0]:best[1] + 1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kernel", choices=("gemv", "mma", "batch", "gemm"))
    p.add_argument("--bits", type=int, default=4)
    p.add_argument("--group", type=int, default=128, help="group size (omit with --per-channel)")
    p.add_argument("--per-channel", dest="group", action="store_const", const=None)
    p.add_argument("--symmetric", action="store_true")
    p.add_argument("--block-m", type=int, default=64)
    p.add_argument("--block-n", type=int, default=32)
    p.add_argument("--block-k", type=int, default=256)
    p.add_argument("--warps", type=int, default=4)
    p.add_argument("--stages", type=int, default=1)
    p.add_argument("--batch-tiles", type=int, default=1, choices=(1, 2, 3, 4, 8),
                   help="8-row batch tiles a CTA: mma 1 or 2 (2: M > 8), batch up to 8")
    p.add_argument("--bf16", action="store_true", help="bf16 activations (default fp16)")
    p.add_argument("--fp32-loop", action="store_true", help="gemv: the fp32 loop instead of the packed 16-bit one")
    p.add_argument("--dump", help="directory for the SASS and TTGIR")
    a = p.parse_args(argv)
    fn, signature, const, words = kernel_spec(a)
    attrs = {(fn.arg_names.index(name),): CUDABackend.parse_attr("D") for name in ALIGNED if name not in const}
    triton_key()  # Triton's 2 s hash of itself, once a process: not part of the kernel's compile time
    start = time.perf_counter()
    compiled = triton.compile(ASTSource(fn=fn, signature=signature, constexprs=const, attrs=attrs),
                              target=GPUTarget("cuda", 90, 32),
                              options={"num_warps": a.warps, "num_stages": a.stages})
    compile_s = time.perf_counter() - start
    tools = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    with tempfile.TemporaryDirectory() as tmp:
        cubin = os.path.join(tmp, "kernel.cubin")
        with open(cubin, "wb") as f:
            f.write(compiled.asm["cubin"])
        sass = subprocess.run([os.path.join(tools, "nvdisasm"), "-c", cubin], capture_output=True, text=True).stdout
        usage = subprocess.run([os.path.join(tools, "cuobjdump"), "-res-usage", cubin], capture_output=True,
                               text=True).stdout
    if a.dump:
        os.makedirs(a.dump, exist_ok=True)
        with open(os.path.join(a.dump, f"{a.kernel}.sass"), "w") as f:
            f.write(sass)
        with open(os.path.join(a.dump, f"{a.kernel}.ttgir"), "w") as f:
            f.write(compiled.asm["ttgir"])
    loop = main_loop(sass)
    ops = collections.Counter(re.sub(r"^@!?U?P\w+\s+", "", ins).split()[0].split(".")[0] for ins in loop)
    regs = re.search(r"REG:(\d+)", usage)
    print(f"triton {triton.__version__}: {a.kernel} {a.bits}-bit, registers {regs.group(1) if regs else '?'}, "
          f"shared {compiled.metadata.shared} B, loop {len(loop)} instructions, {words:g} words a thread an "
          f"iteration, {len(loop) / words:.1f} a word, compiled in {compile_s:.2f} s")
    print(", ".join(f"{op} {count}" for op, count in ops.most_common()))


if __name__ == "__main__":
    sys.exit(main())
