"""Warp-level tensor-core instructions on tensors that hold one value per thread: ``mma.sync.m16n8k16``
(fp16 or bf16 in, fp32 accumulate) and ``mma.sync.m16n8k32`` (u8 x s8 in, s32 accumulate).

Triton's ``tl.dot`` chooses its own register layouts. The decode kernel (mma_gemv.py) needs the
PTX fragment layout itself, so it keeps every operand register as a 1-D tensor of 32 * num_warps
elements, element i in thread i (Triton's layout for such a tensor), and issues the instruction
through inline PTX, one per thread. Fragments (PTX ISA, lane = 4 g + t, g = lane // 4, t = lane % 4):

    A (16 x 16, row-major), four registers of two 16-bit lanes:
        a0: row g,     cols 2t, 2t+1     a1: row g + 8, cols 2t, 2t+1
        a2: row g,     cols 2t+8, 2t+9   a3: row g + 8, cols 2t+8, 2t+9
    B (16 x 8), two registers:  b0: rows 2t, 2t+1 of col g   b1: rows 2t+8, 2t+9 of col g
    C, D (16 x 8 fp32):  c0, c1: row g, cols 2t, 2t+1   c2, c3: row g + 8, cols 2t, 2t+1

m16n8k32 with 8-bit inputs: four bytes a register, a0: row g, cols 4t..4t+3; a1: row g + 8, the same
cols; a2, a3: cols 4t+16..4t+19; b0: rows 4t..4t+3 of col g; b1: rows 4t+16..4t+19; C and D as above.

Under Triton's interpreter (EMULATE) the instructions are rebuilt from the same registers with
reshapes and a multiply-sum per warp (fp32 for fp16, int32 for bytes; fp16 only: the interpreter
computes bf16 wrongly).
"""

import triton
import triton.language as tl

from .half2 import _lane


@triton.jit
def _operand(reg):
    """Emulation: [32 W] registers of 16-bit pairs -> fp32 [W, 8, 8], [w, g, 2t + lane]."""
    W: tl.constexpr = reg.shape[0] // 32
    return tl.reshape(tl.join(_lane(reg, 0), _lane(reg, 1)), (W, 8, 8))


@triton.jit
def _rows(a_lo, a_hi, b_lo, b_hi):
    """Emulation: 8 rows of A (k 0..7 in a_lo, 8..15 in a_hi) times B -> [W, 8 rows, 8 cols]."""
    prod = _operand(a_lo)[:, :, None, :] * _operand(b_lo)[:, None, :, :]
    prod += _operand(a_hi)[:, :, None, :] * _operand(b_hi)[:, None, :, :]
    return tl.sum(prod, axis=3)


@triton.jit
def _fragment(d, T: tl.constexpr):
    """Emulation: [W, 8 rows, 8 cols] -> the per-thread registers (row g, cols 2t and 2t + 1)."""
    W: tl.constexpr = T // 32
    even, odd = tl.split(tl.reshape(d, (W, 8, 4, 2)))
    return tl.reshape(even, (T,)), tl.reshape(odd, (T,))


@triton.jit
def mma_16816(a0, a1, a2, a3, b0, b1, c0, c1, c2, c3, IS_BF16: tl.constexpr, EMULATE: tl.constexpr):
    """D = A @ B + C for one m16n8k16 tile per warp; returns (d0, d1, d2, d3)."""
    if EMULATE:
        tl.static_assert(not IS_BF16, "the emulation is fp16 only (the interpreter computes bf16 wrongly)")
        T: tl.constexpr = a0.shape[0]
        d0, d1 = _fragment(_rows(a0, a2, b0, b1), T)
        d2, d3 = _fragment(_rows(a1, a3, b0, b1), T)
        return d0 + c0, d1 + c1, d2 + c2, d3 + c3
    elif IS_BF16:
        return tl.inline_asm_elementwise(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {$0, $1, $2, $3}, {$4, $5, $6, $7}, {$8, $9}, "
            "{$10, $11, $12, $13};", "=f,=f,=f,=f,r,r,r,r,r,r,f,f,f,f", [a0, a1, a2, a3, b0, b1, c0, c1, c2, c3],
            dtype=(tl.float32, tl.float32, tl.float32, tl.float32), is_pure=True, pack=1)
    else:
        return tl.inline_asm_elementwise(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {$0, $1, $2, $3}, {$4, $5, $6, $7}, {$8, $9}, "
            "{$10, $11, $12, $13};", "=f,=f,=f,=f,r,r,r,r,r,r,f,f,f,f", [a0, a1, a2, a3, b0, b1, c0, c1, c2, c3],
            dtype=(tl.float32, tl.float32, tl.float32, tl.float32), is_pure=True, pack=1)


@triton.jit
def _byte_operand(reg, SIGNED: tl.constexpr):
    """Emulation: [32 W] registers of four bytes -> int32 [W, 8, 16], [w, g, 4t + byte]."""
    W: tl.constexpr = reg.shape[0] // 32
    if SIGNED:
        v0, v1, v2, v3 = (reg << 24) >> 24, (reg << 16) >> 24, (reg << 8) >> 24, reg >> 24
    else:
        v0, v1, v2, v3 = reg & 0xFF, (reg >> 8) & 0xFF, (reg >> 16) & 0xFF, (reg >> 24) & 0xFF
    quad = tl.reshape(tl.join(tl.join(v0, v2), tl.join(v1, v3)), (reg.shape[0], 4))  # [T, byte]
    return tl.reshape(quad, (W, 8, 16))


@triton.jit
def _byte_rows(a_lo, a_hi, b_lo, b_hi):
    """Emulation: 8 rows of u8 A (k 0..15 in a_lo, 16..31 in a_hi) times s8 B -> int32 [W, 8 rows, 8 cols]."""
    prod = _byte_operand(a_lo, False)[:, :, None, :] * _byte_operand(b_lo, True)[:, None, :, :]
    prod += _byte_operand(a_hi, False)[:, :, None, :] * _byte_operand(b_hi, True)[:, None, :, :]
    return tl.sum(prod, axis=3)


@triton.jit
def mma_16832_u8s8(a0, a1, a2, a3, b0, b1, c0, c1, c2, c3, EMULATE: tl.constexpr):
    """D = A @ B + C for one m16n8k32 tile per warp, A unsigned bytes, B signed bytes, int32 C and D."""
    if EMULATE:
        T: tl.constexpr = a0.shape[0]
        d0, d1 = _fragment(_byte_rows(a0, a2, b0, b1), T)
        d2, d3 = _fragment(_byte_rows(a1, a3, b0, b1), T)
        return d0 + c0, d1 + c1, d2 + c2, d3 + c3
    else:
        return tl.inline_asm_elementwise(
            "mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32 {$0, $1, $2, $3}, {$4, $5, $6, $7}, {$8, $9}, "
            "{$10, $11, $12, $13};", "=r,=r,=r,=r,r,r,r,r,r,r,r,r,r,r", [a0, a1, a2, a3, b0, b1, c0, c1, c2, c3],
            dtype=(tl.int32, tl.int32, tl.int32, tl.int32), is_pure=True, pack=1)
