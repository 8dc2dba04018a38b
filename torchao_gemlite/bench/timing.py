"""GPU timing: CUDA-graph replay and eager, over weight copies rotated beyond the L2 cache.

A case is a list of R zero-argument callables, one per weight copy (same x, different weights).

* Graph: warm up every callable (compiles Triton kernels, runs autotuners) on a side stream,
  capture ONE graph that calls each of the R callables once, replay it; one replay reads every
  copy once, so with R copies totalling > 2x L2 each launch reads its weight from HBM.
  Per-launch time = replay time / R; the reported value is the median over replays.
* Eager: the same R calls issued from Python between two CUDA events; per-call time = elapsed / R,
  median over repeats. Eager minus graph at M=1 is the per-call host overhead.

Repeat counts adapt like ``triton.testing.do_bench``: one timed replay estimates the cost, then
enough replays to fill ``target_ms`` (between ``min_reps`` and ``max_reps``).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Callable, Optional

import torch

DEFAULT_L2_BYTES = 50 * 2**20  # H100
L2_FACTOR = 2.5  # rotate through at least this many L2 sizes of weights
MAX_COPIES = 64
ROTATION_BUDGET_BYTES = 4 * 2**30


def l2_cache_bytes(device: torch.device) -> int:
    props = torch.cuda.get_device_properties(device)
    return int(getattr(props, "L2_cache_size", 0) or DEFAULT_L2_BYTES)


def rotation_budget(device: torch.device) -> int:
    """Memory the weight copies of one case may take: 30% of free memory, at most 4 GiB."""
    free, _ = torch.cuda.mem_get_info(device)
    return int(min(ROTATION_BUDGET_BYTES, 0.3 * free))


def rotation_copies(weight_bytes: int, l2_bytes: int, budget_bytes: int, factor: float = L2_FACTOR,
                    max_copies: int = MAX_COPIES) -> int:
    """How many weight copies a replay cycles through: enough for factor x L2, within the budget."""
    if weight_bytes <= 0:
        return 1
    wanted = math.ceil(factor * l2_bytes / weight_bytes)
    affordable = max(1, budget_bytes // weight_bytes)
    return int(max(1, min(wanted, affordable, max_copies)))


@dataclass
class Measurement:
    graph_us: Optional[float] = None
    eager_us: Optional[float] = None
    graph_reps: int = 0
    eager_reps: int = 0
    graph_error: Optional[str] = None  # set when the eager time stands alone


def _reps(estimate_ms: float, target_ms: float, min_reps: int, max_reps: int) -> int:
    if estimate_ms <= 0:
        return max_reps
    return int(max(min_reps, min(max_reps, target_ms / estimate_ms)))


def _median_event_ms(run: Callable[[], None], reps: int) -> float:
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for start, end in zip(starts, ends):
        start.record()
        run()
        end.record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends))


class CudaTimer:
    """Times a list of callables on the current CUDA device (see the module docstring)."""

    def __init__(self, graph_ms: float = 10.0, eager_ms: float = 5.0, min_reps: int = 10, max_reps: int = 200,
                 warmup: int = 2):
        self.graph_ms, self.eager_ms = graph_ms, eager_ms
        self.min_reps, self.max_reps, self.warmup = min_reps, max_reps, warmup

    def measure(self, calls: list[Callable[[], object]], graph: bool = True, eager: bool = True) -> Measurement:
        r = len(calls)
        out = Measurement()

        def run_all():
            for call in calls:
                call()

        # Warm up on a side stream (the pattern torch.cuda.graphs documents before capture).
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                run_all()
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()

        if eager:
            estimate = _median_event_ms(run_all, 1)
            reps = _reps(estimate, self.eager_ms, max(3, self.min_reps // 2), self.max_reps)
            out.eager_us = _median_event_ms(run_all, reps) * 1e3 / r
            out.eager_reps = reps
        if graph:
            try:
                cuda_graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(cuda_graph):
                    run_all()
                cuda_graph.replay()
                torch.cuda.synchronize()
                estimate = _median_event_ms(cuda_graph.replay, 1)
                reps = _reps(estimate, self.graph_ms, self.min_reps, self.max_reps)
                out.graph_us = _median_event_ms(cuda_graph.replay, reps) * 1e3 / r
                out.graph_reps = reps
                del cuda_graph
            except Exception as exc:  # noqa: BLE001 - e.g. a host sync inside the op: keep the eager time
                if not eager:
                    raise
                out.graph_error = f"graph capture failed: {type(exc).__name__}: {str(exc).strip()[:160]}"
        return out


class FakeTimer:
    """Deterministic fake timings for tests and ``--fake-timings`` dry runs (any device).

    It still runs every callable once, so a dry run checks that each case executes.
    Time model: a fixed cost plus bytes / bandwidth, from ``cost_us(calls)`` when given.
    """

    def __init__(self, cost_us: Optional[Callable[[list], float]] = None, host_overhead_us: float = 20.0,
                 execute: bool = True):
        self.cost_us = cost_us or (lambda calls: 10.0 + len(calls))
        self.host_overhead_us = host_overhead_us
        self.execute = execute

    def measure(self, calls, graph: bool = True, eager: bool = True) -> Measurement:
        if self.execute:
            for call in calls:
                call()
        t = float(self.cost_us(calls))
        return Measurement(graph_us=t if graph else None, eager_us=t + self.host_overhead_us if eager else None,
                           graph_reps=1 if graph else 0, eager_reps=1 if eager else 0)


def copy_bandwidth_gbps(device: torch.device, nbytes: int = 2**30, reps: int = 20) -> float:
    """Device-to-device copy bandwidth in GB/s, counting read + write (2 x nbytes per copy)."""
    src = torch.randint(0, 255, (nbytes,), dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    torch.cuda.synchronize()
    ms = _median_event_ms(lambda: dst.copy_(src), reps)
    del src, dst
    return 2 * nbytes / (ms * 1e-3) / 1e9
