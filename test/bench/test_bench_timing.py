"""Rotation sizing, the fake timer and the progress bar (CPU); a real timing smoke test on GPU."""

import io
import math

import pytest

import torch

from torchao_gemlite.bench import runner, timing

MB = 2**20


def test_rotation_copies():
    l2 = 50 * MB
    assert timing.rotation_copies(10 * MB, l2, 10**12) == 13  # ceil(2.5 * 50 / 10)
    assert timing.rotation_copies(500 * MB, l2, 10**12) == 1  # already far beyond L2
    assert timing.rotation_copies(1024, l2, 10**12) == timing.MAX_COPIES
    assert timing.rotation_copies(10 * MB, l2, 30 * MB) == 3  # memory budget wins
    assert timing.rotation_copies(0, l2, 10**12) == 1


def test_fake_timer_runs_each_call_once():
    seen = []
    calls = [lambda i=i: seen.append(i) for i in range(3)]
    m = timing.FakeTimer(host_overhead_us=7.0).measure(calls)
    assert seen == [0, 1, 2]
    assert m.eager_us - m.graph_us == pytest.approx(7.0)
    m = timing.FakeTimer().measure(calls, graph=False)
    assert m.graph_us is None and m.eager_us is not None


def test_progress_bar_non_tty_prints_deciles():
    out = io.StringIO()
    bar = runner.Progress(20, stream=out)
    for _ in range(20):
        bar.update(1, "case")
    bar.close()
    lines = out.getvalue().splitlines()
    assert 10 <= len(lines) <= 11
    assert lines[-1].startswith("[" + "#" * 28 + "] 20/20 100%")


def test_progress_bar_disabled_is_silent():
    out = io.StringIO()
    bar = runner.Progress(5, stream=out, enabled=False)
    bar.update(5)
    bar.close()
    assert out.getvalue() == ""


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_timer_smoke():
    w = [torch.randn(1024, 1024, device="cuda", dtype=torch.float16) for _ in range(4)]
    x = torch.randn(8, 1024, device="cuda", dtype=torch.float16)
    calls = [lambda wi=wi: torch.nn.functional.linear(x, wi) for wi in w]
    m = timing.CudaTimer(graph_ms=2, eager_ms=2).measure(calls)
    assert math.isfinite(m.graph_us) and m.graph_us > 0 and math.isfinite(m.eager_us) and m.eager_us > 0
    bandwidth = timing.copy_bandwidth_gbps(torch.device("cuda"), nbytes=64 * MB, reps=3)
    assert math.isfinite(bandwidth) and bandwidth > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_kernel_run_smoke():
    cfg = runner.KernelRunConfig(formats=["a16w4-asym-g128", "a8w8-int8"], shapes=[(1024, 512)], m_values=[1, 32],
                                 dtypes=["bf16"], anchors=["tinygemm-w4-g128"], gemlite=False)
    timer = timing.CudaTimer(graph_ms=1, eager_ms=1, min_reps=3, max_reps=5)
    records = runner.run_kernel_bench(cfg, timer, torch.device("cuda"))
    assert len(records) == 4 * 2
    for rec in records:
        assert rec["error"] is None, rec
        assert rec["graph_us"] > 0 and rec["eager_us"] > 0 and rec["copies"] >= 1
