"""Launch configurations of the dynamic-activation GEMM (dynamic_gemm.py): the config type,
the per-regime tile tables measured on the H200, the split-K rule and the heuristic choice."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from .launch import cdiv

KINDS = ("int8", "fp8", "a8w4")
NUM_SMS_H100 = 132


@dataclass(frozen=True)
class DynamicGemmConfig:
    """Tile sizes and launch parameters. SPLIT_K is an upper bound: the launcher never
    creates empty splits, and for A8W4 splits fall on group boundaries."""

    BLOCK_M: int
    BLOCK_N: int
    BLOCK_K: int
    SPLIT_K: int = 1
    num_warps: int = 4
    num_stages: int = 3
    SWAP_AB: bool = False  # A8W8: y^T = W x^T, the weight tile is the MMA's M operand (ignored for A8W4)
    FUSE_ACT: bool = False  # *_dynamic_linear: quantize x inside the GEMM (one launch); ignored on prequantized xq
    # A8W8 (and per-channel A8W4 codes): operands through TMA descriptors, at most one program an SM looping
    # over the output tiles (dynamic_tma_gemm.py); SPLIT_K and SWAP_AB do not apply. Where the operands
    # cannot back a descriptor, or with FUSE_ACT or packed A8W4 words, the pointer kernel runs the tile.
    TMA: bool = False

    def __post_init__(self):
        for name in ("BLOCK_M", "BLOCK_N", "BLOCK_K"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 16 or v & (v - 1):
                raise ValueError(f"{name}={v!r} must be a power of two >= 16")
        if self.BLOCK_K < 32:
            raise ValueError(f"BLOCK_K={self.BLOCK_K} must be >= 32 (8-bit tensor-core dots need K >= 32)")
        if not isinstance(self.SPLIT_K, int) or self.SPLIT_K < 1:
            raise ValueError(f"SPLIT_K={self.SPLIT_K!r} must be an int >= 1")
        if self.num_warps not in (1, 2, 4, 8, 16):
            raise ValueError(f"num_warps={self.num_warps!r} must be one of 1, 2, 4, 8, 16")
        if not isinstance(self.num_stages, int) or self.num_stages < 1:
            raise ValueError(f"num_stages={self.num_stages!r} must be an int >= 1")
        if not all(isinstance(v, bool) for v in (self.SWAP_AB, self.FUSE_ACT, self.TMA)):
            raise ValueError("SWAP_AB, FUSE_ACT and TMA must be bools")


def _regime(m: int) -> str:
    if m <= 16:
        return "decode"
    if m <= 64:
        return "small"
    if m <= 256:
        return "medium"
    return "prefill"


# (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages, SWAP_AB, FUSE_ACT[, TMA]); the first entry is the
# heuristic's choice, picked from the H200 config search (test/kernels/gpu_bench_dynamic.py); A8W8 prefill
# from the H100 sweep of test/kernels/gpu_probe_tma_gemm.py: the TMA GEMM with 128x256x128 tiles, one program
# a tile, was within 3% of the best of 27 TMA and 5 pointer launches at M = 1024 and 4096 on the four Llama
# shapes, and 1.0-1.8x the pointer GEMM it replaced (whose K split at 128 tiles cost most, 4096x4096 M = 1024:
# 55.1 -> 31.0 us).
# Decode swaps A and B for A8W8, so that the weight tile [BN, BK] is the wgmma's 64-row
# operand and the 16 padded batch rows are its N. FUSE_ACT (act quant inside the GEMM) is
# only a candidate: measured 2.5-4.7x SLOWER than act_quant.py + GEMM at M = 1 (the per-step
# div_rn quantization of a 16-row x tile in every program stalls the weight pipeline). 8-bit K tiles: 128 B (prefill,
# 128x128x128 int8 = 32 KB of smem per stage) up to 256 B per weight row at decode, where the
# weight stream is all that matters. A8W4 K tiles are capped by the group size (128 for the
# usual g128), so A8W4 widens BLOCK_N instead; A8W4 never swaps. A8W4 prefill runs the int8 codes
# (dynamic_gemm.A8W4_CODES_MIN_M): there 8 warps for the 128x128 tile were 3x faster than 4 on the H100
# (the fp32 and the per-group int32 accumulators of 4 warps spill; test/kernels/gpu_probe_a8w4_dense.py).
_TILES = {
    ("decode", False): [(16, 128, 256, 4, 4, True, False), (16, 64, 256, 4, 4, False, False),
                        (16, 256, 128, 8, 3, True, False), (16, 128, 256, 4, 4, True, True)],
    ("decode", True): [(16, 128, 128, 4, 4, False, False), (16, 64, 128, 4, 4, False, False),
                       (16, 256, 128, 4, 3, False, False), (16, 128, 128, 4, 4, False, True)],
    ("small", False): [(64, 64, 256, 4, 3, False, False), (64, 128, 128, 4, 4, False, False),
                       (32, 128, 256, 4, 3, True, False), (64, 128, 128, 4, 4, False, True)],
    ("small", True): [(64, 128, 128, 4, 4, False, False), (32, 128, 128, 4, 4, False, False),
                      (64, 64, 128, 4, 4, False, False), (64, 128, 128, 4, 4, False, True)],
    ("medium", False): [(64, 128, 128, 4, 4, False, False), (128, 64, 128, 4, 4, False, False),
                        (128, 128, 128, 8, 4, False, False), (64, 256, 128, 8, 3, False, False)],
    ("medium", True): [(128, 64, 128, 4, 4, False, False), (64, 128, 128, 4, 4, False, False),
                       (128, 128, 128, 8, 3, False, False), (64, 256, 128, 8, 3, False, False)],
    ("prefill", False): [(128, 256, 128, 8, 3, False, False, True), (256, 128, 128, 8, 3, False, False, True),
                         (128, 256, 128, 8, 3, False, False), (128, 128, 128, 8, 4, False, False, True)],
    ("prefill", True): [(128, 128, 128, 8, 3, False, False), (128, 128, 128, 8, 4, False, False),
                        (64, 128, 128, 4, 4, False, False), (128, 128, 128, 4, 4, False, False)],
}


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not supported: choose one of {KINDS}")


def auto_split_k(m: int, n: int, k: int, block_m: int, block_n: int, block_k: int,
                 num_sms: int = NUM_SMS_H100) -> int:
    """Doubles SPLIT_K while the output tiles alone fill less than one wave of SMs,
    keeping at least 4 K steps per split (so the load pipeline still has work)."""
    tiles = cdiv(m, block_m) * cdiv(n, block_n)
    k_steps = cdiv(k, block_k)
    split = 1
    while tiles * split < num_sms and k_steps >= 4 * split * 2 and split < 16:
        split *= 2
    return split


@lru_cache(maxsize=4096)  # called on every linear: one dict lookup after the first call per shape
def pick_config(M: int, N: int, K: int, kind: str, num_sms: int = NUM_SMS_H100) -> DynamicGemmConfig:
    """Heuristic launch configuration for an H100-class GPU (132 SMs by default).

    decode (M <= 16): BLOCK_M=16, wide N tiles, long K tiles, split-K to fill the SMs,
    A and B swapped for A8W8;
    small (M <= 64) and medium (M <= 256): 64-row tiles with split-K when tiles are few;
    prefill: A8W8 the TMA GEMM with 128x256x128 tiles, 8 warps, 3 stages; A8W4 128x128x128.
    """
    _check_kind(kind)
    return _config(_TILES[(_regime(M), kind == "a8w4")][0], M, N, K, num_sms)


def _config(tile: tuple, M: int, N: int, K: int, num_sms: int, split: int | None = None) -> DynamicGemmConfig:
    """A _TILES entry as a config, with the automatic K split (none for the TMA GEMM) unless one is given."""
    bm, bn, bk, warps, stages, swap, fuse, *tma = tile
    tma = bool(tma and tma[0])
    if split is None:
        split = 1 if tma else auto_split_k(M, N, K, bm, bn, bk, num_sms)
    return DynamicGemmConfig(bm, bn, bk, split, warps, stages, swap, fuse, tma)


def candidate_configs(M: int, N: int, K: int, kind: str, num_sms: int = NUM_SMS_H100) -> list[DynamicGemmConfig]:
    """A short list for a tuner: each tile of M's regime with its automatic split-K, plus the
    no-split and double-split variants. The heuristic's pick comes first."""
    _check_kind(kind)
    out = []
    for tile in _TILES[(_regime(M), kind == "a8w4")]:
        auto = _config(tile, M, N, K, num_sms)
        splits = (1,) if auto.TMA else (auto.SPLIT_K, 1, auto.SPLIT_K * 2)
        for s in splits:
            cfg = _config(tile, M, N, K, num_sms, s)
            if cfg not in out and (s == 1 or cdiv(K, cfg.BLOCK_K) >= 2 * s):
                out.append(cfg)
    return out
