"""Benchmarks for torchao-gemlite: kernels against anchors, and a Llama-3-8B-shaped decoder.

Run ``torchao-gemlite-bench --help`` (or ``python -m torchao_gemlite.bench --help``).

Layout:

* ``kernels.py``  what is timed: our formats and the anchors (cuBLAS, tinygemm, ``torch._int_mm``,
  ``torch._scaled_mm``, GemLite when installed), with the bytes and FLOPs of each call;
* ``timing.py``   CUDA-graph and eager timing over weight copies rotated beyond the L2 cache;
* ``e2e.py``      the end-to-end decoder benchmark (decode tok/s with CUDA graphs, prefill);
* ``report.py``   terminal tables, JSON, plots and ``docs/benchmarks.md``;
* ``cli.py``      the command line.

Nothing in the library imports this package: it is a tool, not a runtime path.
"""
