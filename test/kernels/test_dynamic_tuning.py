"""The dynamic-activation GEMMs' tuning: table keys, the lookup order (user cache, shipped table, heuristic)
that the dispatcher's plans follow, and the tuner's search with a stand-in timer.

Without CUDA the kernels run under Triton's interpreter on small shapes; the device is then
"cpu-interpreter" (launch.device_facts), so a user cache written for that name is what the plans read.
"""

import pytest
import torch

from torchao_gemlite.kernels import configs, dynamic_gemm
from torchao_gemlite.kernels.dynamic_configs import (
    DynamicGemmConfig,
    candidate_configs,
    choose_config,
    pick_codes_config,
    pick_config,
    table_key,
)
from torchao_gemlite.kernels.dynamic_tuning import main, tune_dynamic, tune_kind_shape
from torchao_gemlite.kernels.launch import device_facts
from torchao_gemlite.quant import quantize_rowwise_int8, quantize_weight, reference_linear_a8w4, reference_linear_dynamic

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(configs.CACHE_ENV, str(tmp_path))
    configs.clear_caches()
    yield tmp_path
    configs.clear_caches()


def _plan_configs():
    return [(p.route, p.config) for p in dynamic_gemm._PLANS.values() if p.route in ("gemm", "codes")]


def test_table_keys_name_kind_route_group_shape_and_bucket():
    assert table_key(16, 4096, 14336, "int8") == "int8/gpc/k14336/n4096/m16"
    assert table_key(33, 4096, 4096, "fp8", group=128) == "fp8/gpc/k4096/n4096/m64"  # A8W8 has no groups
    assert table_key(300, 4096, 4096, "a8w4", 128) == "a8w4/g128/k4096/n4096/m512"
    assert table_key(300, 4096, 4096, "a8w4", 128, codes=True) == "a8w4-codes/g128/k4096/n4096/m512"
    assert table_key(9000, 4096, 4096, "a8w4", 4096, codes=True) == "a8w4-codes/gpc/k4096/n4096/m4096"
    # one file with the weight-only keys, which start with the bit width
    assert not configs.table_key(16, 4096, 14336, 8, 14336, "float16").startswith("int8")


def test_config_round_trips_through_a_dict():
    cfg = DynamicGemmConfig(16, 64, 256, 4, 4, 4, SWAP_AB=True, TMA=True)
    assert DynamicGemmConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="BLOCK_N"):
        DynamicGemmConfig.from_dict({**cfg.to_dict(), "BLOCK_N": 48})


def test_without_tables_the_choice_is_the_heuristic(cache_dir):
    for m in (8, 64, 1024):
        assert choose_config(m, 4096, 14336, "int8", device_name="NVIDIA H100 80GB HBM3") == pick_config(
            m, 4096, 14336, "int8")
    assert choose_config(256, 4096, 4096, "a8w4", 128, codes=True) == pick_codes_config(256, 4096, 4096, 128)
    assert choose_config(256, 4096, 4096, "a8w4", 4096, codes=True) == pick_config(256, 4096, 4096, "int8")
    assert choose_config(32, 4096, 4096, "a8w4", 128) == pick_config(32, 4096, 4096, "a8w4")


def test_lookup_order_user_cache_then_shipped_table_then_heuristic(cache_dir, monkeypatch):
    name = "NVIDIA H100 80GB HBM3"
    key = table_key(64, 4096, 4096, "int8")
    shipped = DynamicGemmConfig(64, 128, 128, 1, 4, 4)
    mine = DynamicGemmConfig(32, 64, 128, 2, 4, 3)
    tuned_dir = cache_dir / "shipped"
    monkeypatch.setattr(configs, "TUNED_DIR", tuned_dir)
    configs.write_table_atomically(tuned_dir / "h100.json", {key: shipped.to_dict()}, "H100")
    assert choose_config(64, 4096, 4096, "int8", device_name=name) == shipped
    assert choose_config(48, 4096, 4096, "int8", device_name=name) == shipped  # the same M bucket
    configs.write_table_atomically(configs.user_cache_path(name), {key: mine.to_dict()}, name)
    configs.clear_caches()
    assert choose_config(64, 4096, 4096, "int8", device_name=name) == mine
    assert choose_config(65, 4096, 4096, "int8", device_name=name) == pick_config(65, 4096, 4096, "int8")
    assert choose_config(64, 4096, 4096, "int8", device_name="another GPU") == pick_config(64, 4096, 4096, "int8")


def test_invalid_or_fused_entries_get_clear_errors(cache_dir):
    name = "NVIDIA H100 80GB HBM3"
    key = table_key(64, 4096, 4096, "int8")
    for entry, match in (({"BLOCK_M": 64}, "is not a valid DynamicGemmConfig.*re-run"),
                         (DynamicGemmConfig(64, 128, 128, FUSE_ACT=True).to_dict(), "asks for FUSE_ACT")):
        configs.write_table_atomically(configs.user_cache_path(name), {key: entry}, name)
        configs.clear_caches()
        with pytest.raises(ValueError, match=match):
            choose_config(64, 4096, 4096, "int8", device_name=name)
    weight_key = configs.table_key(1, 4096, 4096, 4, 128, "float16")
    configs.write_table_atomically(configs.user_cache_path(name), {weight_key: {"kernel": "gemv"}}, name)
    configs.clear_caches()
    with pytest.raises(ValueError, match="4b/g128.*is not a valid LaunchConfig"):
        configs.choose_config(1, 4096, 4096, 4, 128, "float16", name, 132)


def test_the_heuristic_uses_the_gpus_sm_count(cache_dir, monkeypatch):
    """On CUDA the default launch follows the device's SM count (rules in waves of tiles: a 114-SM H100 PCIe
    gets other splits than the 132-SM SXM); on the CPU (the interpreter) the H100's 132."""
    monkeypatch.setattr(dynamic_gemm, "device_facts", lambda device: ("a 114-SM GPU", 114))
    for m in (16, 256, 1024):
        assert dynamic_gemm.default_config(m, 4096, 14336, "int8", torch.device("cuda")) == pick_config(
            m, 4096, 14336, "int8", 114)
        assert dynamic_gemm.default_config(m, 4096, 14336, "int8", torch.device("cpu")) == pick_config(
            m, 4096, 14336, "int8", 132)
    assert pick_config(16, 4096, 14336, "int8", 114) != pick_config(16, 4096, 14336, "int8", 132)


def test_candidates_for_a8w4_codes_are_the_codes_tiles():
    codes = candidate_configs(1024, 4096, 4096, "a8w4", group=128, codes=True)
    assert codes[0] == pick_codes_config(1024, 4096, 4096, 128) and len(codes) == len(set(codes)) >= 3
    assert candidate_configs(1024, 4096, 4096, "a8w4", group=4096, codes=True) == candidate_configs(
        1024, 4096, 4096, "int8")  # per-channel codes: an int8 GEMM
    assert candidate_configs(1024, 4096, 4096, "a8w4", group=256, codes=True)[0] == pick_config(
        1024, 4096, 4096, "a8w4")  # groups past the TMA step: the packed words' tiles


@pytest.mark.parametrize("kind", ["int8", "a8w4"])
def test_a_tuned_entry_drives_the_plan_and_stays_correct(cache_dir, kind):
    m, k, n, group = 24, 256, 72, 128
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(m, k, generator=gen).half().to(DEVICE)
    w = torch.randn(n, k, generator=gen) * 0.05
    # a tile the heuristic never picks for this call: 32x32 rows, a K split of 2, 64-code steps
    tuned = DynamicGemmConfig(32, 32, 64, 2, 4, 2)
    name, _ = device_facts(DEVICE)
    configs.write_table_atomically(configs.user_cache_path(name), {table_key(m, n, k, kind, group): tuned.to_dict()},
                                   name)
    configs.clear_caches()
    if kind == "int8":
        wq, ws = quantize_rowwise_int8(w)
        wq, ws = wq.to(DEVICE), ws.to(DEVICE)
        y = dynamic_gemm.int8_dynamic_linear(x, wq, ws)
        ref = reference_linear_dynamic(x.float().cpu(), wq.cpu(), ws.cpu())
    else:
        qw = quantize_weight(w.half(), 4, group, True)
        y = dynamic_gemm.a8w4_dynamic_linear(x, qw.qdata.to(DEVICE), qw.scale.to(DEVICE), None, group)
        ref = reference_linear_a8w4(x.float().cpu(), qw)
    assert _plan_configs() == [("gemm", tuned)]
    assert ((y.float().cpu() - ref.float()).norm() / ref.float().norm()).item() < 2e-3


def test_the_tuner_keeps_the_fastest_correct_candidate_and_skips_other_routes(cache_dir):
    m_values, k, n = (2, 24), 256, 72
    lines, times = [], iter(range(1000, 0, -1))  # each timed candidate is faster than the one before

    def timer(launches):
        for launch in launches:
            launch()
        return float(next(times))

    found = tune_kind_shape("int8", n, k, m_values, device=DEVICE, timer=timer, log=lines.append)
    expected = [c for c in candidate_configs(24, n, k, "int8") if not c.FUSE_ACT]  # a route, never tuned
    assert list(found) == [table_key(24, n, k, "int8")]  # M = 2 takes the GEMV: not tuned
    assert found[table_key(24, n, k, "int8")][0] == expected[-1]
    assert any("M=2: route gemv" in line for line in lines)


def test_a8w4_codes_route_is_tuned_under_its_own_key(cache_dir):
    if not CUDA:
        pytest.skip("M = 256 under the interpreter: covered on the GPU")
    found = tune_kind_shape("a8w4", 256, 512, (256,), 128, device=DEVICE, log=lambda line: None)
    assert list(found) == [table_key(256, 256, 512, "a8w4", 128, codes=True)]


def test_tune_dynamic_errors_are_clear(cache_dir):
    with pytest.raises(ValueError, match="kinds=\\['int4'\\] are not supported"):
        tune_dynamic([(256, 256)], kinds=("int4",))
    if not CUDA:
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            tune_dynamic([(256, 256)])
    with pytest.raises(SystemExit):
        main(["--shapes", "256x256", "--kinds", "int4"])
