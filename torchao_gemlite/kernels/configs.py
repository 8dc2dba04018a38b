"""Launch configurations for the weight-only kernels: heuristics, shipped tables, the user cache.

Lookup order for a call (M, N, K, bits, group size, dtype) on a GPU:
  1. the user's tuning cache (written by ``torchao_gemlite.tune``), then
  2. the table shipped in ``tuned/<gpu>.json`` for H100 / H200, then
  3. the shape heuristic below.
Tables are keyed by the M bucket (next power of two, capped at 4096), so a new batch
size never triggers a measurement; nothing is ever tuned implicitly.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

SM_COUNT_DEFAULT = 132
TUNED_DIR = Path(__file__).with_name("tuned")
CACHE_ENV = "TORCHAO_GEMLITE_CACHE_DIR"
MAX_M_BUCKET = 4096
GEMV_MAX_M = 4  # the CUDA-core GEMV takes up to M = 4 (where the mma kernel cannot: bf16 under the interpreter,
# weights whose layout its vector loads cannot read); the heuristic no longer picks it for fp16 / bf16
# the tensor-core decode kernel (one or two 8-row batch tiles) from M = 1: with each step's loads issued a step
# ahead (mma_gemv.py) it streamed 4-bit weights at M = 1 at 1.2-1.5x the GEMV's speed on the Llama shapes, H100
# sweep (test/kernels/gpu_probe_mma_gemv.py); 1.0-1.4x the tensor-core GEMM at M = 9..16 (8-bit, harness at M =
# 12, 16: 1.17-1.27x cuBLAS against the GEMM's 0.88-1.10x)
MMA_MAX_M = 16
MMA_TILE_M = 16  # rows a CTA of the mma kernels takes (two 8-row batch tiles); more rows: more CTAs
# codes of 4 bits and fewer keep the mma kernel up to M = 32 (two M tiles). 4-bit: H100 sweep at M = 24, 32, 1.22x
# the tensor-core GEMM in geomean over the Llama shapes, fp16 and bf16 alike (from M = 48 every format lost;
# test/kernels/gpu_probe_mma_gemv.py, docs/kernels.md). 2- and 1-bit, with the vector loads: mma_config's launch
# 1.15-1.25x (2-bit) and 1.03-1.19x (1-bit) the GEMM at M = 24, 32, fp16 and bf16; 8-bit stays on the GEMM
# (0.87-1.23x with each shape's best launch). The small-batch kernel (BATCH_MAX_M below) now takes 4-bit codes past
# M = 16 and 2- and 1-bit codes past 24 first.
MMA_SUB8_MAX_M = 32
# 4-bit codes at M = 17..BATCH_MAX_M take the small-batch kernel (mma_batch.py, one CTA of up to 32 rows sharing
# each unpacked weight fragment instead of one CTA per 16 rows): H100 sweep, the four Llama shapes, batch_config
# against the previous route (16-row mma CTAs) 1.04-1.12x at M = 24, 1.06-1.28x at M = 32 (bf16 1.08-1.24x).
# M = 48 (two 32-row CTAs against the GEMM): 0.86-1.21x, so the GEMM keeps it. 2- and 1-bit codes at M = 25..32
# with 32-code steps a step ahead: each shape's best launch 1.02-1.22x the previous route, the rule within 0.94-1.0
# of it (M <= 24 not measured: they keep the 16-row CTAs); 8-bit per-channel lost (0.80-1.06x): it keeps the GEMM.
BATCH_MAX_M = 32
BATCH_NARROW_MIN_M = 25  # 2- and 1-bit codes from here (M = 17..24 not swept for them)
# layers of at least WIDE_DECODE_WAVES column tiles of 32 an SM have CTAs enough to hide the load latency: at
# M <= 8 they take 4 warps and no prefetch (H100 sweep, 4096x28672 and 8192x28672, 4-bit M = 1: 26.0 / 48.4 us
# against 31.4 / 54.5 for 8 warps with loads a step ahead; test/kernels/gpu_probe_mma_gemv.py)
WIDE_DECODE_WAVES = 4.5
DENSE_MIN_M = 129  # from here on, dequantize + cuBLAS, except up to FUSED_MAX_M on layers of enough 128x128 tiles
# M = 129..256: the tensor-core kernel with TMA loads beat dequantize + cuBLAS on the four Llama shapes (H100,
# test/kernels/gpu_probe_gemm_tma.py, M = 192 / 256, 4-bit g128 and 8-bit per-channel fp16, tiles x splits):
# 128x128x64 tiles, 4 warps, a K split to 1.5 waves of programs, 31 / 82 / 82 / 95 us on 4096x4096 / 4096x14336 /
# 14336x4096 / 8192x8192 for 4-bit against 30 / 107 / 112 / 122 for dense, within 2% of the best launch on each;
# 8-bit codes: 256x128x64 tiles, 8 warps, a split to 0.8 of a wave, 30 / 75 / 75 / 83 against 34 / 119 / 124 / 132
# (the 128-row tile: 30 / 88 / 83 / 93). Layers of fewer than 0.45 of a wave of 128x128 tiles (not measured)
# keep the dense route.
FUSED_MAX_M = 256
FUSED_MIN_WAVES = 0.45
FUSED_TILE, FUSED_FILL = (128, 128, 64, 4, 4), 1.5
FUSED_TILE_8BIT, FUSED_FILL_8BIT = (256, 128, 64, 8, 4), 0.8
# the tensor-core kernel loads x and the words through TMA descriptors from here: same-run harness A/B (four
# Llama shapes, fp16 / bf16) 1.03-1.13x at M = 64, 1.05-1.67x at M = 128; at M = 24 / 32 (GEMM_TILES below)
TMA_MIN_M = 17


# Tensor-core tile by M bucket: (block_m, block_n, block_k, warps, stages), the H100 probe's best
# tiles with 16-bit dequantization on the four Llama shapes (docs/kernels.md); at M = 128 a 64-code
# step with 4 warps and 4 stages (with TMA loads: 1-5% faster than 8 warps on the Llama shapes, 4/8/2-bit);
# M = 17..32 takes M = 64's 64x128 tile (with TMA loads 1.04-1.18x the 32x128 tile with pointer loads in
# geomean, every format, M = 24 / 32). All plain (not swapped): swapped operands run the fp32 dequantization
# (see dispatch.py), and the plain tiles with 16-bit dequantization matched or beat them.
GEMM_TILES = {8: (16, 256, 128, 8, 3), 16: (16, 256, 128, 8, 3), 32: (64, 128, 128, 4, 3),
              64: (64, 128, 128, 4, 3), 128: (128, 128, 64, 4, 4)}


@dataclass(frozen=True)
class LaunchConfig:
    """One kernel choice. kernel: "gemv" (CUDA cores, M <= GEMV_MAX_M), "mma" (the tensor-core decode
    kernel, M < DENSE_MIN_M in 16-row M tiles: 32-column warps, block_n // 32 of them along N and the rest
    of num_warps along K; block_m unused), "mma_batch" (the small-batch kernel, mma_batch.py: the same warps,
    block_m rows a CTA, 8..64), "gemm" (tensor cores, dequantized in registers) or "dense"
    (dequantize to a dense matrix, then cuBLAS; block sizes unused). ``num_stages``: Triton's pipeline stages
    of the GEMV and the GEMM; for the mma kernels the steps of loads in flight, 1 (a step's loads at its top)
    or 2 (and the next step's, mma_gemv.py). ``tma``: the gemm loads x and the words through TMA descriptors
    where both can back one (launch.tma_ready), else pointer loads."""

    kernel: str
    block_m: int
    block_n: int
    block_k: int
    split_k: int = 1
    num_warps: int = 4
    num_stages: int = 2
    swap_ab: bool = False
    group_m: int = 8
    half_mac: bool = True  # packed 16-bit arithmetic where the format allows it (half2.py)
    tma: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LaunchConfig":
        return cls(**d)


def m_bucket(m: int) -> int:
    return min(MAX_M_BUCKET, 1 << max(0, (m - 1).bit_length()))


def table_key(m: int, n: int, k: int, bits: int, group_size: int, dtype_name: str) -> str:
    group = "pc" if group_size == k else str(group_size)
    return f"{bits}b/g{group}/{dtype_name}/k{k}/n{n}/m{m_bucket(m)}"


def device_file_name(device_name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia_h100_80gb_hbm3' (file-name safe)."""
    return re.sub(r"[^a-z0-9]+", "_", device_name.lower()).strip("_")


def cache_root() -> Path:
    """Where tuned tables (and the saved Triton key, triton_key.py) live: $TORCHAO_GEMLITE_CACHE_DIR or
    ~/.cache/torchao_gemlite."""
    return Path(os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "torchao_gemlite"))


def user_cache_path(device_name: str) -> Path:
    return cache_root() / f"{device_file_name(device_name)}.json"


def _read_table(path: Path) -> dict:
    try:
        return json.loads(path.read_text())["configs"]
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"tuning table {path} is not valid: {err}; delete it or re-run torchao_gemlite.tune") from err


@lru_cache(maxsize=None)
def shipped_table(device_name: str) -> dict:
    """The table shipped for this GPU model: exact file name first, then its family (h100, h200)."""
    name = device_file_name(device_name)
    candidates = [TUNED_DIR / f"{name}.json"]
    for family in ("h100", "h200"):
        if family in name:
            candidates.append(TUNED_DIR / f"{family}.json")
    for path in candidates:
        if path.exists():
            return _read_table(path)
    return {}


# Caches of decisions made from the chosen configs (dispatch.py's launch plans): clear_caches empties them too.
_DERIVED_CACHES: list[dict] = []


def register_derived_cache(cache: dict) -> None:
    _DERIVED_CACHES.append(cache)


def clear_caches() -> None:
    """Forget loaded tables, chosen configs and the launch plans made from them (after tuning, or in tests)."""
    shipped_table.cache_clear()
    _user_table.cache_clear()
    choose_config.cache_clear()
    for cache in _DERIVED_CACHES:
        cache.clear()


@lru_cache(maxsize=None)
def _user_table(device_name: str) -> dict:
    return _read_table(user_cache_path(device_name))


def _pow2_at_least(v: int) -> int:
    return 1 << max(0, (v - 1).bit_length())


def _fill_split(programs: int, k_tiles: int, target_programs: float, k: int = 0, max_k: int | None = None) -> int:
    """The smallest K split that gives at least ``target_programs`` programs and, with ``max_k``,
    leaves each program at most ``max_k`` of K."""
    for split in (1, 2, 3, 4, 6, 8, 12, 16):
        if split >= k_tiles or (programs * split >= target_programs and (max_k is None or k <= max_k * split)):
            return min(split, k_tiles)
    return 16


def mma_config(n: int, k: int, group_size: int, sm_count: int = SM_COUNT_DEFAULT, m: int = 16,
               bits: int = 4, bf16: bool = False) -> LaunchConfig:
    """The weight-only mma kernel's launch for two batch tiles and M tiles (M > 8; one batch tile:
    ``decode_config``; H100 sweeps, test/kernels/gpu_probe_mma_gemv.py): 128-code steps (or one group), 64
    columns and 8 warps (the M = 16 sweep: 1.25x the previous 32-column choice in geomean over 4-, 2- and 1-bit
    on the Llama shapes; 256-code steps ran 6-15% faster but compile in twice the time, 2.9 s against 1.6 for
    4-bit, and a new shape's first call must stay under 2 s: the shipped tables keep the longer steps for the
    shapes they were measured on). Then a K split where the CTAs do not fill the SMs (0.8 CTAs an SM; 1.5 past
    M = 16, where each 16-row M tile is a CTA: the M = 24, 32 sweep), and fewer warps along K when K is short.
    8-bit codes: 32 columns, 4 warps and a K split up to about three CTAs an SM (the g128 M = 16 sweep: 1.0 /
    1.0 / 1.21 / 1.31x the 64-column launch on the four Llama shapes); so do bf16 activations past M = 16
    (4-bit g128 at M = 24, 32, the Llama shapes and the fused q/k/v 4096x6144 and gate/up 4096x28672: within 1%
    of each shape's best launch, where the 64-column one was 0.74-1.0x of it; fp16 keeps 64 columns, 0.82-1.0x
    of the best). These sweeps ran before the vector loads of mma_gemv.py; re-measured at M = 16 with them, no
    single launch came within 0.87 of each shape's best in geomean, and this one stayed at 0.86: the tables
    hold the Llama shapes' winners (tuned/h100.json)."""
    if m <= MMA_TILE_M // 2:
        raise ValueError(f"mma_config is for M > {MMA_TILE_M // 2} (two batch tiles), got M={m}: use decode_config")
    m_tiles = -(-m // MMA_TILE_M)
    block_k = max(128, group_size if group_size < k else 0)
    block_n, warps = 64, 8
    small_ctas = bits == 8 or (bf16 and m_tiles > 1)
    if small_ctas:
        block_n, warps = 32, 4
    steps = -(-k // block_k)
    warps_k = min(warps // (block_n // 32), 1 << (steps.bit_length() - 1))  # no idle warps for a short K
    split = 1
    ctas = -(-n // block_n) * m_tiles
    if small_ctas:  # about three CTAs an SM
        while ctas * split < 2.9 * sm_count and warps_k * (split + 1) <= steps and split < 16:
            split += 1
    fill = 0.8 if m_tiles == 1 else 1.5
    while ctas * split < fill * sm_count and warps_k * split * 2 <= steps and split < 16:
        split *= 2
    return LaunchConfig("mma", MMA_TILE_M, block_n, block_k, split, num_warps=warps_k * (block_n // 32), num_stages=1)


def decode_config(n: int, k: int, group_size: int, sm_count: int = SM_COUNT_DEFAULT) -> LaunchConfig:
    """The mma kernels' launch for one batch tile (M <= 8), and A8W4's up to M = 16: 32 columns and up to 8
    warps along K a CTA,
    128-code steps (or one group), each step's loads issued a step ahead (num_stages=2), and a K split only
    where the column tiles leave SMs idle; on layers of WIDE_DECODE_WAVES column tiles an SM, 4 warps and no
    prefetch. H100 sweep (test/kernels/gpu_probe_mma_gemv.py, the four Llama shapes, M = 1 and 4, 4- and
    2-bit g128 / g64 and 8-bit per-channel, launches of 32-128 columns, 4-16 warps, 128- and 256-code steps,
    splits, 1 or 2 stages): the 8-warp launch ran within 0.95 of each shape's best in geomean (worst 0.89),
    the best single launch of the sweep for every format and M. A8W4 (test/kernels/gpu_probe_dynamic_mma.py,
    M = 1, 4, 16): within 0.94 of the best at M = 1 and 4 and 0.95 at M = 16 (two batch tiles)."""
    block_k = max(128, group_size if group_size < k else 0)
    steps = -(-k // block_k)
    ctas = -(-n // 32)
    if ctas >= WIDE_DECODE_WAVES * sm_count:
        return LaunchConfig("mma", MMA_TILE_M, 32, block_k, 1, num_warps=min(4, 1 << (steps.bit_length() - 1)),
                            num_stages=1)
    warps = min(8, 1 << (steps.bit_length() - 1))  # no idle warps for a short K
    split = 1
    while ctas * split < 0.8 * sm_count and warps * split * 2 <= steps and split < 16:
        split *= 2
    return LaunchConfig("mma", MMA_TILE_M, 32, block_k, split, num_warps=warps, num_stages=2)


def batch_config(m: int, n: int, k: int, sm_count: int = SM_COUNT_DEFAULT, bits: int = 4) -> LaunchConfig:
    """The small-batch mma kernel's launch (mma_batch.py) for 17 <= M <= 32, one CTA of 24 or 32 rows (three or
    four 8-row batch tiles) a column tile, 64-code steps (groups are powers of two from 32: a step holds whole
    groups or lies in one). H100 sweep (test/kernels/gpu_probe_mma_batch.py, 4-bit g128, the four Llama shapes):
    - M <= 24: 32 columns and 4 warps along K, loads a step ahead, the smallest K split that gives 2.9 CTAs an
      SM: within 0.998 of each shape's best launch in geomean (the M = 32 launch: 0.76-0.93);
    - M = 25..32: 64 columns and 8 warps (4 along K), loads at each step's top (four tiles of x a step ahead
      took more registers than they hid), the largest K split that keeps the CTAs within one wave of two an SM:
      0.98-1.0 of the best, fp16 and bf16. 2- and 1-bit codes (more unpacking a byte): 32-code steps with loads
      a step ahead, 0.976-0.998 of the best in geomean (fp16 2- and 1-bit, bf16 2-bit)."""
    block_k = 64
    if m <= 24:
        block_n, warps, stages, fill = 32, 4, 2, 2.9
    else:
        block_n, warps, stages, fill = 64, 8, 1, 2.0
        if bits < 4:
            block_k, stages = 32, 2
    warps_k = warps // (block_n // 32)
    steps = -(-k // block_k)
    ctas = -(-n // block_n) * -(-m // 32)
    if m <= 24:  # the smallest K split that gives `fill` CTAs an SM
        split = 1
        while ctas * split < fill * sm_count and warps_k * (split + 1) <= steps and split < 8:
            split += 1
    else:  # 8-warp CTAs of about 120 registers: two an SM, and a split past that starts a second wave (4096x6144 at
        # M = 32: 22 us with 3 splits, 288 CTAs; 12 us at M = 24)
        split = max(1, min(8, int(fill * sm_count) // ctas, steps // warps_k))
    return LaunchConfig("mma_batch", 32, block_n, block_k, split, num_warps=warps, num_stages=stages)


def heuristic_config(m: int, n: int, k: int, bits: int, group_size: int, sm_count: int = SM_COUNT_DEFAULT,
                     mma: bool = True, bf16: bool = False) -> LaunchConfig:
    """A sound default for any shape, from the H100 tuning runs (docs/kernels.md). ``mma``: whether the
    tensor-core decode kernel takes the format (``mma_supported``); ``bf16``: bf16 activations.

    BLOCK_K is a whole number of word rows per step; steps that span several groups load
    one scale row per word row.
    """
    per_word = 32 // bits
    # 8-bit codes at M <= 2 stay on the GEMV: 1.03-1.33x the decode launch on the Llama and Llama-3 fused shapes
    # (H100 harness A/B, per-channel, fp16 and bf16), within a few % of the best mma launch of the sweep
    if mma and m <= MMA_TILE_M // 2:
        if not (bits == 8 and m <= 2):
            return decode_config(n, k, group_size, sm_count)
    elif mma and bits < 8 and (MMA_MAX_M if bits == 4 else BATCH_NARROW_MIN_M - 1) < m <= BATCH_MAX_M:
        return batch_config(m, n, k, sm_count, bits)
    elif mma and m <= (MMA_SUB8_MAX_M if bits < 8 else MMA_MAX_M):
        return mma_config(n, k, group_size, sm_count, m, bits=bits, bf16=bf16)
    if m <= GEMV_MAX_M:  # H100 sweep of the packed GEMV (docs/kernels.md): 32 word rows a step, 4 stages
        block_k = 32 * per_word
        block_n, warps, stages = (32, 4, 4) if m <= 2 else (64, 8, 3)
        # one long program per column tile beats several short ones, up to 8192 of K (H100 sweep)
        split = _fill_split(-(-n // block_n), -(-k // block_k), 0.9 * sm_count, k=k, max_k=8192)
        # group-wise 8-bit: a thread's four byte rows straddle groups, and the packed loop's per-pair group
        # handling ran at 0.67x cuBLAS fp16 at M = 1 where the fp32 loop runs at 1.5x (H100, g128)
        packed = not (bits == 8 and group_size < k)
        return LaunchConfig("gemv", _pow2_at_least(m), block_n, block_k, split, num_warps=warps, num_stages=stages,
                            half_mac=packed)
    if m < DENSE_MIN_M:  # H100 probe (test/kernels/gpu_probe_gemm.py), 16-bit dequantization throughout
        block_m, block_n, block_k, warps, stages = GEMM_TILES[min(m_bucket(m), 128)]
        split = _fill_split(-(-n // block_n) * -(-m // block_m), -(-k // block_k), sm_count)
        return LaunchConfig("gemm", block_m, block_n, block_k, split, num_warps=warps, num_stages=stages,
                            tma=m >= TMA_MIN_M)
    if m <= FUSED_MAX_M and -(-m // FUSED_TILE[0]) * -(-n // FUSED_TILE[1]) >= FUSED_MIN_WAVES * sm_count:
        (block_m, block_n, block_k, warps, stages), fill = ((FUSED_TILE_8BIT, FUSED_FILL_8BIT) if bits == 8
                                                            else (FUSED_TILE, FUSED_FILL))
        split = _fill_split(-(-m // block_m) * -(-n // block_n), -(-k // block_k), fill * sm_count)
        return LaunchConfig("gemm", block_m, block_n, block_k, split, num_warps=warps, num_stages=stages, tma=True)
    return LaunchConfig("dense", 0, 0, 0)


def mma_supported(bits: int, dtype_name: str) -> bool:
    """Whether the tensor-core decode kernel takes the format: every bit width, fp16 and bf16 activations."""
    return dtype_name in ("float16", "bfloat16")


def tuned_entries(key: str, device_name: str) -> list[dict]:
    """The entries for ``key`` in the user cache, then in the shipped table (each at most once)."""
    return [table[key] for table in (_user_table(device_name), shipped_table(device_name)) if key in table]


def config_from_entry(cls, entry: dict, key: str, device_name: str):
    """A table entry as a ``cls`` config, or an error that names the entry and what to do."""
    try:
        return cls.from_dict(entry)
    except (TypeError, ValueError) as err:
        raise ValueError(f"tuning table entry {key!r} for {device_name!r} is not a valid {cls.__name__}: {err}; "
                         "delete it or re-run torchao_gemlite.tune / torchao_gemlite.tune_dynamic") from err


@lru_cache(maxsize=4096)
def choose_config(m: int, n: int, k: int, bits: int, group_size: int, dtype_name: str, device_name: str,
                  sm_count: int) -> LaunchConfig:
    """The configuration for one call; cached so the per-call cost is one dict lookup."""
    key = table_key(m, n, k, bits, group_size, dtype_name)
    for entry in tuned_entries(key, device_name):
        cfg = config_from_entry(LaunchConfig, entry, key, device_name)
        if cfg.kernel != "gemv" or cfg.block_m >= m:
            return cfg
    return heuristic_config(m, n, k, bits, group_size, sm_count, mma=mma_supported(bits, dtype_name),
                            bf16=dtype_name == "bfloat16")


def write_table_atomically(path: Path, configs: dict, device_name: str) -> None:
    """Merges ``configs`` into the JSON table at ``path`` via a temp file + os.replace.

    Several processes (tensor-parallel ranks) may tune at once: each replace is atomic,
    so readers see a whole file; concurrent writers may drop each other's new keys,
    never corrupt the file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    merged = {**_read_table(path), **configs}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"device": device_name, "configs": merged}, indent=1, sort_keys=True))
    os.replace(tmp, path)
