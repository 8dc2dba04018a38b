"""The kernel benchmark loop, the environment record and a tiny progress bar.

Loop order: dtype -> shape -> implementation (built once, R weight copies) -> M (fresh x each).
Each (dtype, shape, impl, M) becomes one record (a plain dict, the JSON row):

    dtype, K, N, M, impl, kind, families, label, graph_us, eager_us, bytes, flops, copies, error

``bytes`` is what one call moves (weights + scales/zeros + x + y), ``flops`` = 2*M*N*K.
A failing case records its error and the run goes on ("n/a" in the tables).
"""

from __future__ import annotations

import datetime
import functools
import importlib.metadata
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, TextIO

import torch

from . import kernels, timing


class Progress:
    """A dependency-free progress bar: redraws one line on a terminal, prints every 10% otherwise."""

    def __init__(self, total: int, stream: Optional[TextIO] = None, enabled: bool = True, width: int = 28):
        self.total, self.done, self.width = max(total, 1), 0, width
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.monotonic()
        self._last_decile = -1

    @staticmethod
    def _clock(seconds: float) -> str:
        seconds = int(max(seconds, 0))
        return f"{seconds // 60:02d}:{seconds % 60:02d}"

    def line(self, note: str = "") -> str:
        frac = self.done / self.total
        filled = int(frac * self.width)
        elapsed = time.monotonic() - self.start
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        bar = "#" * filled + "-" * (self.width - filled)
        return f"[{bar}] {self.done}/{self.total} {frac:4.0%} {self._clock(elapsed)}<{self._clock(eta)} {note}"

    def update(self, n: int = 1, note: str = "") -> None:
        self.done = min(self.done + n, self.total)
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r\033[K" + self.line(note)[:160])
            self.stream.flush()
        else:
            decile = int(10 * self.done / self.total)
            if decile != self._last_decile:
                self._last_decile = decile
                self.stream.write(self.line(note) + "\n")
                self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _version(package: str) -> Optional[str]:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_commit() -> Optional[str]:
    """Short HEAD, with "+uncommitted" when tracked files differ from it (the table then
    describes a tree that no commit holds)."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0 or not head.stdout.strip():
        return None
    return head.stdout.strip() + ("+uncommitted" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def environment(device: Optional[torch.device] = None) -> dict:
    """GPU, software versions, date and commit: what a reader needs to trust or reproduce a table."""
    import torchao_gemlite

    env = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": _version("triton"),
        "torchao": _version("torchao"),
        "gemlite": kernels.gemlite_version(),
        "torchao_gemlite": getattr(torchao_gemlite, "__version__", None),
        "git_commit": _git_commit(),
        "command": " ".join(["torchao-gemlite-bench"] + sys.argv[1:]),
        "gpu": None,
    }
    if device is not None and device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env["gpu"] = props.name
        env["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        env["compute_capability"] = f"{props.major}.{props.minor}"
        env["l2_cache_mib"] = round(timing.l2_cache_bytes(device) / 2**20, 1)
    return env


@dataclass
class KernelRunConfig:
    formats: list[str] = field(default_factory=lambda: list(kernels.DEFAULT_FORMATS))
    shapes: list[tuple[int, int]] = field(default_factory=lambda: list(kernels.DEFAULT_SHAPES))
    m_values: list[int] = field(default_factory=lambda: list(kernels.DEFAULT_M))
    dtypes: list[str] = field(default_factory=lambda: list(kernels.DEFAULT_DTYPES))
    anchors: Optional[list[str]] = None  # None: all
    gemlite: bool = True
    graph: bool = True
    eager: bool = True
    max_copies: int = timing.MAX_COPIES


def _short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


def run_kernel_bench(cfg: KernelRunConfig, timer, device: torch.device, progress: Optional[Progress] = None,
                     l2_bytes: Optional[int] = None) -> list[dict]:
    """Times every (dtype, shape, impl, M) of ``cfg`` with ``timer``; returns the records."""
    gemlite_ok = cfg.gemlite and kernels.gemlite_version() is not None
    impls = kernels.select_impls(cfg.formats, cfg.anchors, gemlite=gemlite_ok)
    on_gpu = device.type == "cuda"
    if l2_bytes is None:
        l2_bytes = timing.l2_cache_bytes(device) if on_gpu else timing.DEFAULT_L2_BYTES
    records: list[dict] = []
    for dtype_name in cfg.dtypes:
        dtype = kernels.DTYPES[dtype_name]
        for k, n in cfg.shapes:
            for impl in impls:
                if not impl.runs_with(dtype):
                    continue
                base = dict(dtype=dtype_name, K=k, N=n, impl=impl.name, kind=impl.kind, families=list(impl.families),
                            label=impl.label or impl.name)
                built, copies, build_error = None, [], None
                try:
                    built = impl.build(k, n, dtype, device)
                    budget = timing.rotation_budget(device) if on_gpu else 2**30
                    r = timing.rotation_copies(built.weight_bytes, l2_bytes, budget, max_copies=cfg.max_copies)
                    copies = [built.make_weights() for _ in range(r)]
                except Exception as exc:  # noqa: BLE001 - reported as n/a, the run goes on
                    build_error = _short_error(exc)
                for m in cfg.m_values:
                    rec = dict(base, M=m, graph_us=None, eager_us=None, flops=kernels.flops(m, k, n), bytes=None,
                               copies=len(copies), error=build_error)
                    if built is not None and build_error is None:
                        rec["bytes"] = built.weight_bytes + built.io_bytes(m)
                        try:
                            x = built.make_input(m)
                            calls = [functools.partial(built.call, x, w) for w in copies]
                            result = timer.measure(calls, graph=cfg.graph, eager=cfg.eager)
                            rec["graph_us"], rec["eager_us"] = result.graph_us, result.eager_us
                            rec["error"] = getattr(result, "graph_error", None)
                        except Exception as exc:  # noqa: BLE001
                            rec["error"] = _short_error(exc)
                    records.append(rec)
                    if progress is not None:
                        progress.update(1, f"{dtype_name} {k}x{n} {impl.name} M={m}")
                del built, copies
                if on_gpu:
                    torch.cuda.synchronize()
                    torch.cuda.empty_cache()
    return records


def count_cases(cfg: KernelRunConfig) -> int:
    gemlite_ok = cfg.gemlite and kernels.gemlite_version() is not None
    impls = kernels.select_impls(cfg.formats, cfg.anchors, gemlite=gemlite_ok)
    per_dtype = {d: sum(1 for i in impls if i.runs_with(kernels.DTYPES[d])) for d in cfg.dtypes}
    return sum(per_dtype.values()) * len(cfg.shapes) * len(cfg.m_values)
