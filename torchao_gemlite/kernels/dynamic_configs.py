"""Launch configurations of the dynamic-activation GEMMs (dynamic_gemm.py, dynamic_tma_gemm.py): the config
type, the per-regime tile tables (H200 and H100 sweeps), the split-K rule, the heuristic choice and the
lookup in the tuning tables they share with the weight-only kernels (configs.py: the user cache written by
``torchao_gemlite.tune_dynamic``, then the shipped table, then the heuristic)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

from .configs import config_from_entry, m_bucket, register_derived_cache, tuned_entries
from .launch import PlanCache, cdiv

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
    # int8/fp8 operands (A8W8, A8W4's int8 codes) through TMA descriptors (dynamic_tma_gemm.py). Where the
    # operands cannot back a descriptor, or with FUSE_ACT or packed A8W4 words, the pointer kernel runs the tile.
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

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DynamicGemmConfig":
        return cls(**d)


def _regime(m: int) -> str:
    if m <= 16:
        return "decode"
    if m <= 64:
        return "small"
    if m <= 256:
        return "medium"
    return "prefill"


# (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages, SWAP_AB, FUSE_ACT[, TMA]): a regime's candidates for a
# tuner. For A8W4 packed words the first entry is the heuristic's choice (H200 config search,
# test/kernels/gpu_bench_dynamic.py); for A8W8 and A8W4 codes ``_small_m_tile`` / ``_large_m_tile`` choose
# (H100 sweeps, below).
# Decode swaps A and B for A8W8, so that the weight tile [BN, BK] is the wgmma's 64-row
# operand and the 16 padded batch rows are its N. FUSE_ACT (act quant inside the GEMM) is
# only a candidate: measured 2.5-4.7x SLOWER than act_quant.py + GEMM at M = 1 (the per-step
# div_rn quantization of a 16-row x tile in every program stalls the weight pipeline). 8-bit K tiles: 128 B
# (prefill, 128x256x128 int8 = 48 KB of smem per stage) up to 256 B per weight row at decode, where the
# weight stream is all that matters. A8W4 K tiles are capped by the group size (128 for the
# usual g128), so A8W4 widens BLOCK_N instead; A8W4 never swaps. A8W4 from M = 256 runs on int8 codes
# (dynamic_gemm.A8W4_CODES_MIN_M, the "codes" tiles).
_TMA_SWAPPED = (16, 64, 256, 4, 4, True, False, True)
_TMA_SMALL = (64, 64, 256, 4, 3, False, False, True)
_TMA_WIDE = (128, 256, 128, 8, 3, False, False, True)
_TMA_NARROW = (64, 128, 128, 4, 4, False, False, True)
_SPLIT_TILE = (64, 128, 128, 4, 4, False, False)
_CODES_SPLIT_TILE = (128, 64, 128, 4, 4, False, False)
_TILES = {
    ("decode", False): [_TMA_SWAPPED, (16, 128, 256, 4, 4, True, False), (16, 64, 256, 4, 4, False, False),
                        (16, 256, 128, 8, 3, True, False), (16, 128, 256, 4, 4, True, True)],
    ("decode", True): [(16, 128, 128, 4, 4, False, False), (16, 64, 128, 4, 4, False, False),
                       (16, 256, 128, 4, 3, False, False), (16, 128, 128, 4, 4, False, True)],
    ("small", False): [_TMA_SWAPPED, _TMA_SMALL, (64, 64, 256, 4, 3, False, False), (64, 128, 128, 4, 4, False, False),
                       (32, 128, 256, 4, 3, True, False), (64, 128, 128, 4, 4, False, True)],
    ("small", True): [(64, 128, 128, 4, 4, False, False), (32, 128, 128, 4, 4, False, False),
                      (64, 64, 128, 4, 4, False, False), (64, 128, 128, 4, 4, False, True)],
    ("medium", False): [_SPLIT_TILE, _TMA_NARROW, _TMA_WIDE, (128, 64, 128, 4, 4, False, False)],
    ("medium", True): [(128, 64, 128, 4, 4, False, False), (64, 128, 128, 4, 4, False, False),
                       (128, 128, 128, 8, 3, False, False), (64, 256, 128, 8, 3, False, False)],
    ("prefill", False): [_TMA_WIDE, (256, 128, 128, 8, 3, False, False, True), _TMA_NARROW, _SPLIT_TILE,
                         (128, 256, 128, 8, 3, False, False)],
    ("prefill", True): [(128, 128, 128, 8, 3, False, False), (128, 128, 128, 8, 4, False, False),
                        (64, 128, 128, 4, 4, False, False), (128, 128, 128, 4, 4, False, False)],
    # A8W4 on int8 codes with group scales (the TMA GEMM takes groups of at most BLOCK_K codes)
    ("codes", True): [_TMA_NARROW, _CODES_SPLIT_TILE, (128, 256, 128, 8, 3, False, False, True),
                      (128, 128, 128, 8, 3, False, False)],
}
# Past M = 64 (H100 sweep of test/kernels/gpu_probe_tma_gemm.py, four Llama shapes, M = 128..4096): the TMA
# GEMM with 128x256 tiles (one CTA an SM) wherever they give 0.75 of a wave (1.0-1.8x the pointer GEMM with
# its K split, e.g. 4096x4096 M = 1024: 55.1 -> 31.0 us), else with 64x128 tiles (two CTAs an SM), unless
# those fill less than 0.75 of two CTAs an SM and K is long (> SPLIT_MIN_K), where the pointer GEMM's K
# split wins (14336x4096 M = 256: 41.0 against 46.0 us).
TILES_FILL = 0.75
SPLIT_MIN_K = 8192
# Up to M = 64 (same sweep, M = 16 / 32 / 64, int8 and fp8): the TMA GEMM with swapped 16x64 tiles (the weight
# tile is the wgmma's 64-row operand; M = 64 runs four row tiles that share each weight tile in L2) while
# they are at most two an SM (M <= 16 always), else 64x64 tiles; a K split (the automatic one) only for
# K > SPLIT_MIN_K. Against the pointer GEMM's decode and small tiles: int8 4096x4096 11.1 / 13.7 / 13.7 ->
# 9.7 / 9.8 / 9.6 us, 14336x4096 31.6 / 29.9 / 31.4 -> 26.6 / 27.4 / 28.3, 8192x8192 32.1 / 31.3 / 32.7 ->
# 27.6 / 27.7 / 30.8, 4096x14336 28.0 / 25.3 / 25.2 -> 24.2 / 25.0 / 24.9.


def _small_m_tile(M: int, N: int, num_sms: int) -> tuple:
    if M <= 16 or cdiv(M, 16) * cdiv(N, 64) <= 2 * num_sms:
        return _TMA_SWAPPED
    return _TMA_SMALL


def _large_m_tile(M: int, N: int, K: int, num_sms: int, split_tile: tuple, wide: bool) -> tuple:
    """wide=False (A8W4 codes): never the 128x256 tile, and few 64x128 tiles take the split at any K
    (4096x4096 M = 256: 31.0 against 34.6 us for the whole layer). The split tile only where its automatic
    split is more than one (between one and 1.5 waves of tiles it is not: 64x128 TMA then)."""
    if wide and cdiv(M, 128) * cdiv(N, 256) >= TILES_FILL * num_sms:
        return _TMA_WIDE
    if cdiv(M, 64) * cdiv(N, 128) >= 2 * TILES_FILL * num_sms or (wide and K <= SPLIT_MIN_K):
        return _TMA_NARROW
    bm, bn, bk = split_tile[:3]
    return split_tile if auto_split_k(M, N, K, bm, bn, bk, num_sms) > 1 else _TMA_NARROW


def _tiles(M: int, N: int, K: int, table: str, a8w4: bool, num_sms: int) -> list[tuple]:
    """The tiles of a regime's table, the heuristic's first."""
    tiles = _TILES[(table, a8w4)]
    if table == "codes":
        first = _large_m_tile(M, N, K, num_sms, _CODES_SPLIT_TILE, wide=False)
    elif a8w4:
        return tiles
    elif M > 64:
        first = _large_m_tile(M, N, K, num_sms, _SPLIT_TILE, wide=True)
    else:
        first = _small_m_tile(M, N, num_sms)
    return [first] + [t for t in tiles if t != first]


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

    A8W8: the TMA GEMM, up to M = 64 with swapped 16x64 or 64x64 tiles (``_small_m_tile``), past it
    with 128x256 or 64x128 tiles or the pointer GEMM's K split (``_large_m_tile``);
    A8W4 on packed words: decode (M <= 16) 16x128 tiles, long K tiles, split-K to fill the SMs;
    small (M <= 64) 64x128 tiles; medium 128x64; prefill 128x128x128 with 8 warps.
    """
    _check_kind(kind)
    return _config(_tiles(M, N, K, _regime(M), kind == "a8w4", num_sms)[0], M, N, K, num_sms)


@lru_cache(maxsize=1024)
def pick_codes_config(M: int, N: int, K: int, group: int, num_sms: int = NUM_SMS_H100) -> DynamicGemmConfig:
    """A8W4 with groups on int8 codes [N, K] (dynamic_gemm's codes route, M >= 256): the TMA GEMM with
    64x128 tiles, or the pointer GEMM's K split where those tiles are few. Groups longer than the TMA GEMM's
    128-code steps take the packed words' heuristic tiles on the pointer GEMM."""
    if group > _TMA_NARROW[2]:
        return pick_config(M, N, K, "a8w4", num_sms)
    return _config(_tiles(M, N, K, "codes", True, num_sms)[0], M, N, K, num_sms)


def _config(tile: tuple, M: int, N: int, K: int, num_sms: int, split: int | None = None) -> DynamicGemmConfig:
    """A _TILES entry as a config, with the automatic K split unless one is given (for the TMA GEMM: none past
    M = 64 or for K <= SPLIT_MIN_K)."""
    bm, bn, bk, warps, stages, swap, fuse, *tma = tile
    tma = bool(tma and tma[0])
    if split is None:
        split = 1 if tma and (M > 64 or K <= SPLIT_MIN_K) else auto_split_k(M, N, K, bm, bn, bk, num_sms)
    return DynamicGemmConfig(bm, bn, bk, split, warps, stages, swap, fuse, tma)


def _codes_as(kind: str, group: int | None, K: int, codes: bool) -> tuple[str, bool]:
    """Which tiles A8W4 on int8 codes takes: per-channel codes are an int8 GEMM, groups longer than the TMA
    GEMM's 128-code step keep the packed words' tiles (pick_codes_config); else the codes tiles."""
    if codes and (group is None or group == K):
        return "int8", False
    if codes and group > _TMA_NARROW[2]:
        return kind, False
    return kind, codes


def candidate_configs(M: int, N: int, K: int, kind: str, num_sms: int = NUM_SMS_H100, *, group: int | None = None,
                      codes: bool = False) -> list[DynamicGemmConfig]:
    """A short list for a tuner: each tile of M's regime with its automatic split-K, plus the
    no-split and double-split variants (the TMA GEMM past M = 64: no split). The heuristic's pick comes
    first. ``codes``: A8W4 on int8 codes (M >= 256) with ``group`` (per-channel codes: int8's list)."""
    _check_kind(kind)
    kind, codes = _codes_as(kind, group, K, codes)
    table = "codes" if codes else _regime(M)
    out = []
    for tile in _tiles(M, N, K, table, kind == "a8w4", num_sms):
        auto = _config(tile, M, N, K, num_sms)
        splits = (1,) if auto.TMA and M > 64 else (auto.SPLIT_K, 1, auto.SPLIT_K * 2)
        for s in splits:
            cfg = _config(tile, M, N, K, num_sms, s)
            if cfg not in out and (s == 1 or cdiv(K, cfg.BLOCK_K) >= 2 * s):
                out.append(cfg)
    return out


def table_key(M: int, N: int, K: int, kind: str, group: int | None = None, codes: bool = False) -> str:
    """The tuning-table key of a dynamic GEMM launch: the kind ("a8w4-codes" for A8W4 on int8 codes
    unpacked per call, M >= 256), the group ("pc" for per-channel and A8W8), K, N and M's bucket
    (configs.m_bucket). The activation dtype is not part of it: it only changes the epilogue's store.
    Weight-only keys start with the bit width ("4b/..."), so both live in one file."""
    group_name = "pc" if group is None or group == K or kind != "a8w4" else str(group)
    return f"{kind}{'-codes' if codes else ''}/g{group_name}/k{K}/n{N}/m{m_bucket(M)}"


_CHOSEN = PlanCache()  # (M, N, K, kind, group, codes, device, SMs) -> config; configs.clear_caches empties it
register_derived_cache(_CHOSEN)


def choose_config(M: int, N: int, K: int, kind: str, group: int | None = None, codes: bool = False,
                  device_name: str = "", num_sms: int = NUM_SMS_H100) -> DynamicGemmConfig:
    """The GEMM launch for one call: the user's tuning cache, then the table shipped for this GPU, then the
    heuristic (``pick_codes_config`` for A8W4 codes with groups, ``pick_config`` otherwise, per-channel
    codes as int8); ``device_name`` "" skips the tables. Only the GEMM's launch is looked up: which route a
    call takes (the GEMV, A8W4's mma kernel, torch._scaled_mm, the GEMM) stays the dispatcher's rule, so an
    entry that asks for FUSE_ACT (a route) is refused."""
    call = (M, N, K, kind, group, codes, device_name, num_sms)
    config = _CHOSEN.get(call)
    if config is None:
        key = table_key(M, N, K, kind, group, codes)
        entries = tuned_entries(key, device_name) if device_name else []
        if entries:
            config = config_from_entry(DynamicGemmConfig, entries[0], key, device_name)
            if config.FUSE_ACT:
                raise ValueError(f"tuning table entry {key!r} for {device_name!r} asks for FUSE_ACT, a route, not a "
                                 "launch: delete it or re-run torchao_gemlite.tune_dynamic")
        else:
            kind, codes = _codes_as(kind, group, K, codes)
            config = pick_codes_config(M, N, K, group, num_sms) if codes else pick_config(M, N, K, kind, num_sms)
        _CHOSEN.keep(call, config)
    return config
