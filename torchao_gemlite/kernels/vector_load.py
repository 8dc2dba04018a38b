"""Vector loads that stay where the kernel issues them: 2 or 4 consecutive 32-bit words a thread.

A ``tl.load`` whose result is used only in the next loop iteration does not stay at the top of the
iteration: the compiler moves it down to the end of the loop body, next to its first use, and the load's
latency is exposed again (the register double buffer in docs/kernels.md). These loads are inline-PTX
statements with side effects, which the compiler neither moves past each other nor sinks, so a kernel can
issue a whole step's loads one step ahead (mma_gemv.py). Each thread loads from its own address, which
must be aligned to the load's size (8 or 16 bytes; the callers check the tensors' alignment on the host).

``ok`` ([T] int32, with ``PRED``) predicates the load: where it is 0 nothing is read and, with ``FILL``,
the words are 0; without ``FILL`` they are undefined, for loads whose results are never used (a prefetch
past the last step). ``CACHE``: the PTX qualifiers after ``ld.global``, e.g. ``.nc.L1::no_allocate`` for a
weight read once through the read-only path; data that a kernel running at the same time may still write (x
behind a PDL wait, pdl.py) must not take ``.nc``, whose cache need not see those writes. Under Triton's
interpreter (``EMULATE``) they are masked ``tl.load`` calls with the same results.
"""

import triton
import triton.language as tl


@triton.jit
def load4(ptrs, ok, CACHE: tl.constexpr, PRED: tl.constexpr, FILL: tl.constexpr, EMULATE: tl.constexpr):
    """Four words at each address ([T] pointers to 32-bit values, 16-byte aligned) as four [T] int32 tensors."""
    if EMULATE:
        offs = tl.arange(0, 4)[None, :]
        if PRED:
            v = tl.load(ptrs[:, None] + offs, mask=(ok != 0)[:, None], other=0)
        else:
            v = tl.load(ptrs[:, None] + offs)
        a, b = tl.split(tl.reshape(v.to(tl.int32, bitcast=True), (v.shape[0], 2, 2)))
        w0, w2 = tl.split(a)
        w1, w3 = tl.split(b)
    else:
        LD: tl.constexpr = "ld.global" + CACHE + ".v4.b32 {$0, $1, $2, $3}, [$4];"
        if PRED:
            ZERO: tl.constexpr = "mov.b32 $0, 0; mov.b32 $1, 0; mov.b32 $2, 0; mov.b32 $3, 0; " if FILL else ""
            w0, w1, w2, w3 = tl.inline_asm_elementwise(
                "{ .reg .pred p; setp.ne.b32 p, $5, 0; " + ZERO + "@p " + LD + " }", "=r,=r,=r,=r,l,r", [ptrs, ok],
                dtype=(tl.int32, tl.int32, tl.int32, tl.int32), is_pure=False, pack=1)
        else:
            w0, w1, w2, w3 = tl.inline_asm_elementwise(
                LD, "=r,=r,=r,=r,l", [ptrs], dtype=(tl.int32, tl.int32, tl.int32, tl.int32), is_pure=False, pack=1)
    return w0, w1, w2, w3


@triton.jit
def load2(ptrs, ok, CACHE: tl.constexpr, PRED: tl.constexpr, FILL: tl.constexpr, EMULATE: tl.constexpr):
    """Two words at each address ([T] pointers to 32-bit values, 8-byte aligned) as two [T] int32 tensors."""
    if EMULATE:
        offs = tl.arange(0, 2)[None, :]
        if PRED:
            v = tl.load(ptrs[:, None] + offs, mask=(ok != 0)[:, None], other=0)
        else:
            v = tl.load(ptrs[:, None] + offs)
        w0, w1 = tl.split(v.to(tl.int32, bitcast=True))
    else:
        LD: tl.constexpr = "ld.global" + CACHE + ".v2.b32 {$0, $1}, [$2];"
        if PRED:
            ZERO: tl.constexpr = "mov.b32 $0, 0; mov.b32 $1, 0; " if FILL else ""
            w0, w1 = tl.inline_asm_elementwise(
                "{ .reg .pred p; setp.ne.b32 p, $3, 0; " + ZERO + "@p " + LD + " }", "=r,=r,l,r", [ptrs, ok],
                dtype=(tl.int32, tl.int32), is_pure=False, pack=1)
        else:
            w0, w1 = tl.inline_asm_elementwise(LD, "=r,=r,l", [ptrs], dtype=(tl.int32, tl.int32), is_pure=False,
                                               pack=1)
    return w0, w1
