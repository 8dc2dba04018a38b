"""Command line: ``torchao-gemlite-bench`` / ``python -m torchao_gemlite.bench``.

Examples (on a CUDA GPU)::

    torchao-gemlite-bench --quick
    torchao-gemlite-bench --formats a16w4-asym-g128,a8w8-fp8 --shapes 4096x14336 --m 1,16,256 --dtypes bf16
    torchao-gemlite-bench --json out/kernels.json --plots out/plots
    torchao-gemlite-bench --e2e --skip-kernels --layers 8 --batch 1,8 --prefill 1024
    torchao-gemlite-bench --e2e --json out/all.json --write-docs
    torchao-gemlite-bench --from-json out/all.json --write-docs
    torchao-gemlite-bench --from-json out/kernels.json out/e2e.json --write-docs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

from . import kernels, report

DEFAULT_DOCS = Path("docs/benchmarks.md")


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _int_list(text: str) -> list[int]:
    try:
        values = [int(t) for t in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: need positive integers")
    return values


def _formats(text: str) -> list[str]:
    if text in ("all", "default"):
        return list(kernels.DEFAULT_FORMATS)
    if text == "none":
        return []
    try:
        return [kernels.parse_format(f).name for f in _csv(text)]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _shapes(text: str) -> list[tuple[int, int]]:
    if text == "default":
        return list(kernels.DEFAULT_SHAPES)
    if text == "llama3-8b":
        return list(kernels.LLAMA3_8B_SHAPES)
    try:
        return [kernels.parse_shape(s) for s in _csv(text)]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _dtypes(text: str) -> list[str]:
    values = _csv(text)
    bad = [v for v in values if v not in kernels.DTYPES]
    if bad or not values:
        raise argparse.ArgumentTypeError(f"dtypes {bad or text!r}: choose from {list(kernels.DTYPES)}")
    return values


def _anchors(text: str) -> Optional[list[str]]:
    if text == "all":
        return None
    if text == "none":
        return [kernels.BASELINE]
    values = _csv(text)
    bad = [v for v in values if v not in kernels.ANCHOR_NAMES]
    if bad:
        raise argparse.ArgumentTypeError(f"anchors {bad}: choose from {kernels.ANCHOR_NAMES}, 'all' or 'none'")
    return values


def build_parser() -> argparse.ArgumentParser:
    from .e2e import E2E_CONFIGS

    p = argparse.ArgumentParser(
        prog="torchao-gemlite-bench",
        description="Kernel and end-to-end benchmarks of torchao-gemlite against cuBLAS, tinygemm, "
                    "torch._int_mm, torch._scaled_mm and GemLite (when installed). Shapes are K x N.",
    )
    g = p.add_argument_group("kernel benchmark")
    g.add_argument("--formats", type=_formats, default=None,
                   help=f"comma list of our formats, 'all' or 'none' (default: {','.join(kernels.DEFAULT_FORMATS)})")
    g.add_argument("--shapes", type=_shapes, default=None,
                   help="comma list of KxN, e.g. 4096x14336, or 'default' / 'llama3-8b' "
                        f"(default: {','.join(kernels.shape_name(*s) for s in kernels.DEFAULT_SHAPES)})")
    g.add_argument("--m", type=_int_list, default=None, dest="m_values",
                   help=f"comma list of M (tokens) (default: {','.join(map(str, kernels.DEFAULT_M))})")
    g.add_argument("--dtypes", type=_dtypes, default=None, help="comma list of fp16,bf16 (default: both)")
    g.add_argument("--anchors", type=_anchors, default=None,
                   help=f"comma list of {kernels.ANCHOR_NAMES}, 'all' (default) or 'none' (cuBLAS only)")
    g.add_argument("--no-gemlite", action="store_true", help="skip the GemLite anchors even when installed")
    g.add_argument("--quick", action="store_true",
                   help="small subset (< 2 min on an H100): formats, shapes, M and dtypes not given explicitly "
                        "take the quick defaults")
    g.add_argument("--no-graph", "--eager", dest="graph", action="store_false",
                   help="time eager calls only (no CUDA graphs)")
    g.add_argument("--no-eager", dest="eager", action="store_false", help="time CUDA-graph replay only")
    g.add_argument("--graph-ms", type=float, default=10.0, help="measuring time per case, graph mode (ms)")
    g.add_argument("--eager-ms", type=float, default=5.0, help="measuring time per case, eager mode (ms)")
    g.add_argument("--skip-kernels", action="store_true", help="do not run the kernel benchmark")

    e = p.add_argument_group("end-to-end benchmark (Llama-3-8B-shaped decoder, random weights)")
    e.add_argument("--e2e", action="store_true", help="run the end-to-end benchmark")
    e.add_argument("--layers", type=int, default=32, help="decoder layers (default 32, as Llama-3-8B)")
    e.add_argument("--batch", type=_int_list, default=[1, 8, 32, 64], help="decode batch sizes (default 1,8,32,64)")
    e.add_argument("--prefill", type=_int_list, default=[1024, 4096], help="prefill lengths (default 1024,4096)")
    e.add_argument("--context", type=int, default=1024, help="KV-cache length for decode (default 1024)")
    e.add_argument("--steps", type=int, default=64, help="decode steps per timed run (default 64)")
    e.add_argument("--e2e-configs", type=_csv, default=list(E2E_CONFIGS),
                   help=f"comma list of {list(E2E_CONFIGS)} (default: all)")
    e.add_argument("--compile", action="store_true",
                   help="decode: torch.compile(fullgraph=True) the forward inside the CUDA graph")
    e.add_argument("--quantize-head", action="store_true", help="quantize the output head too")

    o = p.add_argument_group("output")
    o.add_argument("--json", type=Path, default=None, help="write all results as JSON to this path")
    o.add_argument("--plots", type=Path, default=None, help="write PNG/SVG plots into this directory")
    o.add_argument("--plot-formats", type=_csv, default=["png", "svg"], help="plot file types (default png,svg)")
    o.add_argument("--write-docs", action="store_true",
                   help=f"regenerate {DEFAULT_DOCS} (tables, plots under docs/benchmarks/, environment, commands)")
    o.add_argument("--docs-path", type=Path, default=DEFAULT_DOCS, help=f"markdown path (default {DEFAULT_DOCS})")
    o.add_argument("--from-json", type=Path, nargs="+", default=None,
                   help="report from saved JSON runs instead of measuring: kernel records from every run that has "
                        "them, end-to-end results from the last that has them joined with earlier runs of the same "
                        "settings, GPU and software (each part keeps its environment; rows of other commits name "
                        "their commit)")
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    o.add_argument("--fake-timings", action="store_true",
                   help="dry run with fake timings on any device (checks every case runs; numbers are meaningless)")
    return p


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    quick = args.quick
    if args.formats is None:
        args.formats = list(kernels.QUICK_FORMATS if quick else kernels.DEFAULT_FORMATS)
    if args.shapes is None:
        args.shapes = list(kernels.QUICK_SHAPES if quick else kernels.DEFAULT_SHAPES)
    if args.m_values is None:
        args.m_values = list(kernels.QUICK_M if quick else kernels.DEFAULT_M)
    if args.dtypes is None:
        args.dtypes = list(kernels.QUICK_DTYPES if quick else kernels.DEFAULT_DTYPES)
    if not args.graph and not args.eager:
        build_parser().error("--no-graph and --no-eager together leave nothing to time")
    if args.layers < 1:
        build_parser().error("--layers must be >= 1")
    return args


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def measure(args: argparse.Namespace) -> dict:
    """Runs the requested benchmarks and returns the results doc (see report.py)."""
    from . import runner, timing

    fake = args.fake_timings
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    doc = {"schema": report.SCHEMA, "env": runner.environment(device), "settings": {}, "copy_bandwidth_gbps": None,
           "kernels": [], "e2e": None}
    doc["settings"] = {"formats": args.formats, "shapes": [kernels.shape_name(*s) for s in args.shapes],
                       "m": args.m_values, "dtypes": args.dtypes, "graph": args.graph, "eager": args.eager,
                       "graph_ms": args.graph_ms, "eager_ms": args.eager_ms, "quick": args.quick,
                       "fake_timings": fake}
    if not args.skip_kernels:
        cfg = runner.KernelRunConfig(formats=args.formats, shapes=args.shapes, m_values=args.m_values,
                                     dtypes=args.dtypes, anchors=args.anchors, gemlite=not args.no_gemlite,
                                     graph=args.graph, eager=args.eager, max_copies=2 if fake else timing.MAX_COPIES)
        if fake:
            timer = timing.FakeTimer()
            doc["copy_bandwidth_gbps"] = 3000.0
        else:
            timer = timing.CudaTimer(graph_ms=args.graph_ms, eager_ms=args.eager_ms)
            doc["copy_bandwidth_gbps"] = timing.copy_bandwidth_gbps(device)
            _log(f"device copy bandwidth: {doc['copy_bandwidth_gbps']:.0f} GB/s (read+write)")
        progress = runner.Progress(runner.count_cases(cfg), enabled=not args.quiet)
        try:
            doc["kernels"] = runner.run_kernel_bench(cfg, timer, device, progress)
        finally:
            progress.close()
    if args.e2e:
        if fake or device.type != "cuda":
            _log("e2e skipped: it needs a CUDA GPU (no fake mode)")
        else:
            from .e2e import E2ESettings, run_e2e

            settings = E2ESettings(layers=args.layers, batches=tuple(args.batch), prefills=tuple(args.prefill),
                                   context=args.context, steps=args.steps, configs=tuple(args.e2e_configs),
                                   compile=args.compile, quantize_head=args.quantize_head)
            doc["e2e"] = run_e2e(settings, device, log=_log)
    return doc


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.from_json is not None:
        doc = report.merge_runs([report.load_json(path) for path in args.from_json])
    elif not torch.cuda.is_available() and not args.fake_timings:
        if args.write_docs:
            path = report.write_docs(args.docs_path, None)
            _log(f"no CUDA GPU: wrote {path} with a 'no GPU measurements yet' note and the commands")
            return 0
        _log("torchao-gemlite-bench needs a CUDA GPU (use --fake-timings for a dry run of the harness)")
        return 2
    else:
        doc = measure(args)
    report.derive(doc)
    print(report.terminal_report(doc))
    if args.json is not None and args.from_json is None:
        _log(f"wrote {report.write_json(doc, args.json)}")
    plot_files = []
    if args.plots is not None:
        plot_files = report.make_plots(doc, args.plots, args.plot_formats, log=_log)
        _log(f"wrote {len(plot_files)} plot files to {args.plots}")
    if args.write_docs:
        if doc.get("settings", {}).get("fake_timings"):
            _log("--write-docs refused: fake timings never go into the docs")
            return 2
        docs_plots = report.make_plots(doc, args.docs_path.parent / "benchmarks", ["png"], log=_log)
        _log(f"wrote {report.write_docs(args.docs_path, doc, docs_plots)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
