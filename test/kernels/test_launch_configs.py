"""Launch configurations (CPU): regimes of the heuristic, the lookup order of the tables, the cache file."""

import itertools
import json

import pytest

from torchao_gemlite.kernels import configs
from torchao_gemlite.kernels.configs import (LaunchConfig, choose_config, clear_caches, heuristic_config, m_bucket,
                                             table_key, write_table_atomically)
from torchao_gemlite.kernels.tuning import candidate_configs

H100 = "NVIDIA H100 80GB HBM3"
LLAMA = [(4096, 4096), (4096, 14336), (14336, 4096), (8192, 8192)]  # (K, N)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(configs.CACHE_ENV, str(tmp_path))
    clear_caches()
    yield tmp_path
    clear_caches()


def test_buckets_and_keys():
    assert [m_bucket(m) for m in (1, 2, 3, 5, 100, 129, 5000)] == [1, 2, 4, 8, 128, 256, 4096]
    assert table_key(3, 14336, 4096, 4, 128, "float16") == "4b/g128/float16/k4096/n14336/m4"
    assert table_key(1, 4096, 4096, 8, 4096, "bfloat16") == "8b/gpc/bfloat16/k4096/n4096/m1"


@pytest.mark.parametrize("m,kernel", [(1, "mma"), (2, "mma"), (3, "mma"), (8, "mma"), (16, "mma"), (17, "mma_batch"),
                                      (24, "mma_batch"), (32, "mma_batch"),
                                      (33, "gemm"), (64, "gemm"), (128, "gemm"), (129, "gemm"), (256, "gemm"),
                                      (257, "dense"), (4096, "dense")])
def test_heuristic_regimes(m, kernel):
    assert heuristic_config(m, 4096, 4096, 4, 128).kernel == kernel


def test_one_batch_tile_takes_the_decode_launch():
    """M <= 8: 32 columns, up to 8 warps along K, 128-code steps (or one group), loads a step ahead, a K split
    only where the column tiles leave SMs idle; layers of 4.5 column tiles an SM: 4 warps, no prefetch; 8-bit
    codes at M <= 2 and formats the mma kernel does not take: the GEMV."""
    for m, bits, group in itertools.product((1, 2, 5, 8), (8, 4, 2, 1), (64, 4096)):
        c = heuristic_config(m, 14336, 4096, bits, group)
        if bits == 8 and m <= 2:
            assert c.kernel == "gemv"
        else:
            assert (c.kernel, c.block_n, c.num_warps, c.block_k, c.split_k, c.num_stages) == ("mma", 32, 8, 128, 1, 2)
        wide = heuristic_config(m, 28672, 4096, bits, group)
        if not (bits == 8 and m <= 2):
            assert (wide.num_warps, wide.split_k, wide.num_stages) == (4, 1, 1)
        assert heuristic_config(m, 14336, 4096, bits, group, mma=False).kernel == ("gemv" if m <= 4 else "gemm")
    assert heuristic_config(1, 28672, 4096, 4, 128, sm_count=264).num_warps == 8  # relative to the SM count
    assert configs.decode_config(4096, 4096, 512).block_k == 512  # a step holds a whole group
    assert configs.decode_config(4096, 256, 128).num_warps == 2  # two steps: two warps along K
    narrow = configs.decode_config(1024, 4096, 128)  # 32 column tiles on 132 SMs: split until 0.8 CTAs an SM
    assert (narrow.num_warps, narrow.split_k) == (8, 4)
    assert configs.decode_config(1024, 4096, 128, sm_count=16).split_k == 1


def test_tuning_candidates_keep_the_gemv_and_both_stage_counts():
    for m in (1, 2):
        cands = candidate_configs(m, 28672, 4096, 4, 128, 132)
        assert {"mma", "gemv"} <= {c.kernel for c in cands}
        assert {1, 2} == {c.num_stages for c in cands if c.kernel == "mma"}


def test_8bit_codes_take_the_mma_kernel_up_to_m_16():
    assert [heuristic_config(m, 4096, 4096, 8, 4096).kernel for m in (2, 3, 8, 9, 16, 17)] == [
        "gemv", "mma", "mma", "mma", "mma", "gemm"]
    assert [heuristic_config(m, 4096, 4096, 8, 128).kernel for m in (2, 3, 8, 9, 16, 17)] == [
        "gemv", "mma", "mma", "mma", "mma", "gemm"]


def test_group_wise_8bit_decode_takes_the_fp32_gemv_loop():
    """The packed 16-bit loop handles group-wise 8-bit codes pair by pair (0.67x cuBLAS on the H100, the
    fp32 loop 1.5x); per-channel 8-bit and the narrower codes keep the packed loop (the GEMV's decode regime:
    where the mma kernel cannot run)."""
    assert not heuristic_config(1, 4096, 4096, 8, 128).half_mac
    assert heuristic_config(1, 4096, 4096, 8, 4096).half_mac
    assert heuristic_config(1, 4096, 4096, 4, 128, mma=False).half_mac


@pytest.mark.parametrize("m,kernel", [(3, "gemv"), (4, "gemv"), (5, "gemm"), (8, "gemm")])
def test_without_the_mma_kernel_decode_falls_back_to_gemv_and_gemm(m, kernel):
    """Formats the mma kernel does not take (configs.mma_supported: fp32 activations) decode on the GEMV
    and the GEMM; 8-bit codes with bf16 take the mma kernel like fp16."""
    assert configs.mma_supported(8, "bfloat16") and configs.mma_supported(8, "float16")
    assert configs.mma_supported(4, "bfloat16") and not configs.mma_supported(4, "float32")
    assert heuristic_config(m, 4096, 4096, 8, 4096, mma=False).kernel == kernel
    assert choose_config(m, 4096, 4096, 8, 4096, "bfloat16", "cpu-interpreter", 4).kernel == "mma"


def test_mma_config_follows_the_h100_sweep():
    """Two batch tiles (M > 8): 64 columns, 8 warps, 128-code steps, a K split to fill (1.5 CTAs an SM past
    M = 16, one CTA per 16-row M tile); 8-bit codes, and bf16 past M = 16: 32 columns, 4 warps, about three
    CTAs an SM (docs/kernels.md); one batch tile is decode_config's."""
    two_tiles = {(k, n): configs.mma_config(n, k, 128, 132, m=16) for k, n in LLAMA}
    assert {kn: (c.block_n, c.block_k, c.split_k, c.num_warps) for kn, c in two_tiles.items()} == {
        (4096, 4096): (64, 128, 2, 8), (4096, 14336): (64, 128, 1, 8), (14336, 4096): (64, 128, 2, 8),
        (8192, 8192): (64, 128, 1, 8)}
    m_tiles = {(k, n): configs.mma_config(n, k, 128, 132, m=32) for k, n in LLAMA}  # 2 M tiles: CTAs x 2
    assert {kn: (c.block_n, c.block_k, c.split_k, c.num_warps) for kn, c in m_tiles.items()} == {
        (4096, 4096): (64, 128, 2, 8), (4096, 14336): (64, 128, 1, 8), (14336, 4096): (64, 128, 2, 8),
        (8192, 8192): (64, 128, 1, 8)}
    assert configs.mma_config(2048, 4096, 128, 132, m=32).split_k == 4  # 64 CTAs: 1.5 an SM wants a split of 4
    bf16 = {(k, n): configs.mma_config(n, k, 128, 132, m=32, bf16=True) for k, n in LLAMA + [(4096, 6144)]}
    assert {kn: (c.block_n, c.block_k, c.split_k, c.num_warps) for kn, c in bf16.items()} == {
        (4096, 4096): (32, 128, 2, 4), (4096, 14336): (32, 128, 1, 4), (14336, 4096): (32, 128, 2, 4),
        (8192, 8192): (32, 128, 1, 4), (4096, 6144): (32, 128, 1, 4)}
    assert configs.mma_config(4096, 4096, 128, 132, m=16, bf16=True).block_n == 64  # one M tile: as fp16
    eight_bit = {(k, n): configs.mma_config(n, k, 128, 132, m=16, bits=8) for k, n in LLAMA}
    assert {kn: (c.block_n, c.block_k, c.split_k, c.num_warps) for kn, c in eight_bit.items()} == {
        (4096, 4096): (32, 128, 3, 4), (4096, 14336): (32, 128, 1, 4), (14336, 4096): (32, 128, 3, 4),
        (8192, 8192): (32, 128, 2, 4)}
    short = configs.mma_config(64, 256, 32, 132)  # two steps of K: two warps along K (of 2 x 2), none idle
    assert (short.num_warps, short.split_k) == (4, 1)
    assert configs.mma_config(4096, 4096, 256, 132).block_k == 256  # one group a step at least
    with pytest.raises(ValueError, match="use decode_config"):
        configs.mma_config(4096, 4096, 128, 132, m=8)


def test_heuristic_reproduces_the_h100_winners():
    """The splits of the H100 sweeps (docs/kernels.md): GEMV M=1 and tensor-core M=16/64."""
    gemv = {(k, n): heuristic_config(1, n, k, 4, 128, mma=False).split_k for k, n in LLAMA}
    assert gemv == {(4096, 4096): 1, (4096, 14336): 1, (14336, 4096): 2, (8192, 8192): 1}
    gemm = {(k, n): heuristic_config(16, n, k, 4, 128, mma=False).split_k for k, n in LLAMA}
    assert gemm == {(4096, 4096): 12, (4096, 14336): 3, (14336, 4096): 12, (8192, 8192): 6}
    gemm = {(k, n): heuristic_config(64, n, k, 4, 128).split_k for k, n in LLAMA}
    assert gemm == {(4096, 4096): 6, (4096, 14336): 2, (14336, 4096): 6, (8192, 8192): 3}
    tiles = {m: heuristic_config(m, 4096, 4096, 4, 128, mma=False) for m in (9, 16, 17, 64, 128)}
    assert {m: (c.block_m, c.block_n, c.block_k, c.num_warps, c.num_stages, c.swap_ab, c.half_mac, c.tma)
            for m, c in tiles.items()} == {9: (16, 256, 128, 8, 3, False, True, False),
                                          16: (16, 256, 128, 8, 3, False, True, False),
                                          17: (64, 128, 128, 4, 3, False, True, True),
                                          64: (64, 128, 128, 4, 3, False, True, True),
                                          128: (128, 128, 64, 4, 4, False, True, True)}


def test_the_fused_kernel_takes_m_up_to_256():
    """From M = 129 dequantize + cuBLAS, except up to M = 256 where 128x128 tiles make 0.45 of a wave: the
    tensor-core kernel with TMA loads, 128x128x64 tiles with a K split to 1.5 waves of programs, for 8-bit
    codes 256x128x64 tiles with a split to 0.8 of a wave (the H100 probe, docs/kernels.md)."""
    def tile(m, k, n, bits=4):
        c = heuristic_config(m, n, k, bits, 128 if bits < 8 else k, 132)
        return c.kernel if c.kernel == "dense" else (c.block_m, c.block_n, c.block_k, c.num_warps, c.split_k, c.tma)
    assert tile(256, 4096, 14336) == (128, 128, 64, 4, 1, True)  # 224 tiles
    assert tile(256, 8192, 8192) == tile(200, 8192, 8192) == (128, 128, 64, 4, 2, True)  # 128 tiles
    assert tile(256, 4096, 4096) == tile(256, 14336, 4096) == (128, 128, 64, 4, 4, True)  # 64 tiles
    assert tile(256, 4096, 14336, 8) == (256, 128, 64, 8, 1, True)  # 112 tiles of 256x128
    assert tile(256, 8192, 8192, 8) == (256, 128, 64, 8, 2, True)
    assert tile(256, 4096, 4096, 8) == (256, 128, 64, 8, 4, True)
    assert tile(256, 4096, 1024) == "dense"  # 16 tiles
    assert tile(257, 4096, 14336) == tile(1024, 8192, 8192) == "dense"


def test_batch_config_follows_the_h100_sweep():
    """4-bit codes at M = 17..32 take the small-batch kernel: up to 24 rows 32 columns, 4 warps, loads a step ahead,
    a split to 2.9 CTAs an SM; 25..32 rows 64 columns, 8 warps, loads at the step's top, the largest split within one
    wave of two CTAs an SM;
    2- and 1-bit codes take it from M = 25 with 32-code steps a step ahead; 8-bit codes keep the GEMM; the tuning
    candidates hold it for every bit width."""
    assert {kn: tuple(getattr(heuristic_config(24, kn[1], kn[0], 4, 128), f) for f in
                      ("block_m", "block_n", "num_warps", "block_k", "split_k", "num_stages")) for kn in LLAMA} == {
        (4096, 4096): (32, 32, 4, 64, 3, 2), (4096, 14336): (32, 32, 4, 64, 1, 2), (14336, 4096): (32, 32, 4, 64, 3, 2),
        (8192, 8192): (32, 32, 4, 64, 2, 2)}
    assert {kn: tuple(getattr(heuristic_config(32, kn[1], kn[0], 4, 128), f) for f in
                      ("block_m", "block_n", "num_warps", "block_k", "split_k", "num_stages")) for kn in LLAMA} == {
        (4096, 4096): (32, 64, 8, 64, 4, 1), (4096, 14336): (32, 64, 8, 64, 1, 1), (14336, 4096): (32, 64, 8, 64, 4, 1),
        (8192, 8192): (32, 64, 8, 64, 2, 1)}
    assert [heuristic_config(m, 4096, 4096, bits, 64).kernel for bits in (8, 2, 1) for m in (24, 32)] == [
        "gemm", "gemm", "mma", "mma_batch", "mma", "mma_batch"]
    narrow = heuristic_config(32, 4096, 4096, 2, 64)
    assert (narrow.block_n, narrow.num_warps, narrow.block_k, narrow.split_k, narrow.num_stages) == (64, 8, 32, 4, 2)
    assert heuristic_config(32, 4096, 4096, 4, 128, mma=False).kernel == "gemm"
    for bits in (8, 4, 2, 1):
        assert any(c.kernel == "mma_batch" and c.block_m == 64 for c in candidate_configs(48, 4096, 4096, bits, 64, 132))


@pytest.mark.parametrize("bits", [8, 4, 2, 1])
def test_heuristic_and_candidates_respect_the_kernels_limits(bits):
    per_word = 32 // bits
    for m in (1, 3, 8, 24, 64, 200):
        for cfg in candidate_configs(m, 1000, 2048, bits, 64, 132):
            if cfg.kernel == "gemm":
                assert cfg.block_k >= 16 and cfg.block_k % per_word == 0
            if cfg.kernel == "gemv":
                assert cfg.block_m >= m and cfg.block_k % per_word == 0
            if cfg.kernel in ("mma", "mma_batch"):
                warps_n = cfg.block_n // 32
                assert m <= (32 if cfg.kernel == "mma" else 64) and cfg.block_n % 32 == 0
                assert cfg.num_warps % warps_n == 0 and cfg.block_k % (64 if cfg.kernel == "mma" else 32) == 0
                assert cfg.split_k * cfg.num_warps // warps_n <= 2048 // cfg.block_k
            if cfg.kernel == "mma_batch":
                assert cfg.block_m in (32, 64) and m > 16
        assert candidate_configs(m, 1000, 2048, bits, 64, 132)[0] == heuristic_config(m, 1000, 2048, bits, 64, 132)
    assert any(c.kernel == "dense" for c in candidate_configs(64, 1000, 2048, bits, 64, 132))
    assert any(c.block_m == 32 and c.kernel == "gemm" for c in candidate_configs(24, 1000, 2048, bits, 64, 132))


def test_lookup_order_user_cache_then_shipped_table_then_heuristic(cache_dir):
    key_args = (16, 4096, 4096, 4, 128, "float16", H100, 132)
    shipped = choose_config(*key_args)
    assert shipped == LaunchConfig.from_dict(configs.shipped_table(H100)[table_key(16, 4096, 4096, 4, 128, "float16")])
    assert choose_config(16, 4096, 5120, 4, 128, "float16", H100, 132) == heuristic_config(16, 4096, 5120, 4, 128, 132)
    mine = LaunchConfig("mma", 16, 64, 256, 2, num_warps=8)
    write_table_atomically(configs.user_cache_path(H100), {table_key(16, 4096, 4096, 4, 128, "float16"): mine.to_dict()},
                           H100)
    clear_caches()
    assert choose_config(*key_args) == mine


def test_a_gemv_entry_too_narrow_for_m_is_not_used(cache_dir):
    narrow = LaunchConfig("gemv", 2, 32, 256, 1)
    write_table_atomically(configs.user_cache_path(H100), {table_key(3, 512, 512, 4, 128, "float16"): narrow.to_dict()},
                           H100)
    clear_caches()
    assert choose_config(3, 512, 512, 4, 128, "float16", H100, 132).block_m >= 3


def test_cache_writes_merge_and_leave_no_temporary_files(cache_dir):
    path = configs.user_cache_path(H100)
    write_table_atomically(path, {"a": LaunchConfig("dense", 0, 0, 0).to_dict()}, H100)
    write_table_atomically(path, {"b": LaunchConfig("gemm", 16, 128, 128, 2).to_dict()}, H100)
    doc = json.loads(path.read_text())
    assert doc["device"] == H100 and set(doc["configs"]) == {"a", "b"}
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_a_corrupt_cache_gives_a_clear_error(cache_dir):
    configs.user_cache_path(H100).write_text("{ not json")
    with pytest.raises(ValueError, match="delete it or re-run torchao_gemlite.tune"):
        choose_config(1, 64, 64, 4, 32, "float16", H100, 132)

