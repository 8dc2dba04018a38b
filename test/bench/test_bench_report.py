"""Derived metrics, tables, JSON, plots and the docs page, on fake timings (CPU)."""

import builtins

import pytest

from torchao_gemlite.bench import report

SHAPES = [(4096, 4096), (4096, 14336)]
M_VALUES = [1, 16, 256]
IMPLS = [("a16w4-asym-g128", "ours", ["a16w4"], 0.5), ("a8w8-int8", "ours", ["a8"], 0.8),
         ("cublas", "anchor", ["a16w4", "a8"], 1.0), ("torch-int-mm", "anchor", ["a8"], 0.7)]


def fake_doc(with_e2e=True):
    records = []
    for dtype in ("fp16", "bf16"):
        for k, n in SHAPES:
            for name, kind, families, factor in IMPLS:
                for m in M_VALUES:
                    t = factor * (10.0 + m / 8)
                    records.append(dict(dtype=dtype, K=k, N=n, M=m, impl=name, kind=kind, families=families,
                                        label=name, graph_us=t, eager_us=t + 20.0, bytes=k * n // 2 + 2 * m * (k + n),
                                        flops=2 * m * n * k, copies=4, error=None))
    records.append(dict(records[-1], impl="broken", kind="ours", families=["a16w4"], graph_us=None,
                        eager_us=None, error="RuntimeError: no kernel"))
    doc = {"schema": report.SCHEMA, "env": {"gpu": "Fake GPU", "torch": "0.0", "command": "torchao-gemlite-bench"},
           "settings": {}, "copy_bandwidth_gbps": 3000.0, "kernels": records, "e2e": None}
    if with_e2e:
        doc["e2e"] = {"settings": {"layers": 2, "context": 256},
                      "results": [{"config": "bf16", "weight_gib": 1.5, "peak_gib": 2.0,
                                   "decode_tok_s": {1: 100.0, 8: 700.0}, "prefill_tok_s": {1024: 9000.0},
                                   "error": None},
                                  {"config": "gemlite-int4-g128", "weight_gib": None, "peak_gib": None,
                                   "decode_tok_s": {}, "prefill_tok_s": {}, "error": "ImportError: x"}]}
    return doc


def test_derive_metrics():
    doc = report.derive(fake_doc())
    by = {(r["dtype"], r["K"], r["N"], r["M"], r["impl"]): r for r in doc["kernels"]}
    ours = by[("fp16", 4096, 14336, 16, "a16w4-asym-g128")]
    assert ours["time_us"] == ours["graph_us"]
    assert ours["speedup"] == pytest.approx(2.0)
    assert ours["tflops"] == pytest.approx(ours["flops"] / (ours["graph_us"] * 1e-6) / 1e12)
    assert ours["bw_frac"] == pytest.approx(ours["bytes"] / (ours["graph_us"] * 1e-6) / 3000e9)
    assert ours["host_us"] == pytest.approx(20.0)
    broken = next(r for r in doc["kernels"] if r["impl"] == "broken")
    assert broken["speedup"] is None and broken["time_us"] is None


def test_derive_eager_only_compares_eager_times():
    doc = fake_doc()
    for r in doc["kernels"]:
        r["graph_us"] = None
    report.derive(doc)
    r = next(r for r in doc["kernels"] if r["impl"] == "a8w8-int8" and r["M"] == 1)
    base = next(b for b in doc["kernels"] if b["impl"] == "cublas" and b["M"] == 1 and b["dtype"] == r["dtype"]
                and b["K"] == r["K"] and b["N"] == r["N"])
    assert r["speedup"] == pytest.approx(base["eager_us"] / r["eager_us"])
    assert r["host_us"] is None


def test_tables_text_and_markdown():
    doc = report.derive(fake_doc())
    tables = report.kernel_tables(doc)
    # per dtype: one table per shape + bandwidth, TFLOP/s and host-overhead summaries
    assert len(tables) == 2 * (len(SHAPES) + 3)
    first = tables[0]
    assert first.title.startswith("fp16  K=4096 N=4096")
    assert first.headers == ["impl \\ M"] + [str(m) for m in M_VALUES]
    assert [r[0] for r in first.rows] == ["a16w4-asym-g128", "a8w8-int8", "cublas", "torch-int-mm"]
    assert "(2.00x)" in first.rows[0][1]
    text = first.to_text().splitlines()
    assert len({len(line) for line in text[1:]}) == 1  # aligned columns
    md = first.to_markdown().splitlines()
    assert md[0].startswith("| impl \\ M |") and md[1].startswith("|:---|")
    assert len(md) == 2 + len(first.rows)
    out = report.terminal_report(doc)
    assert "3000 GB/s" in out and "host overhead" in out and "End to end" in out and "n/a" in out


def test_json_round_trip(tmp_path):
    doc = report.derive(fake_doc())
    path = report.write_json(doc, tmp_path / "sub" / "r.json")
    back = report.load_json(path)
    assert back["kernels"] == doc["kernels"]
    assert back["e2e"]["results"][0]["decode_tok_s"] == {1: 100.0, 8: 700.0}
    path.write_text('{"schema": 99}')
    with pytest.raises(ValueError, match="schema"):
        report.load_json(path)


def test_plots(tmp_path):
    pytest.importorskip("matplotlib")
    doc = report.derive(fake_doc(with_e2e=False))
    files = report.make_plots(doc, tmp_path, ["png", "svg"])
    # per dtype and shape: one chart for a16w4 and one for a8, each as png and svg
    assert len(files) == 2 * len(SHAPES) * 2 * 2
    assert all(f.exists() and f.stat().st_size > 1000 for f in files)
    assert (tmp_path / "bf16_4096x14336_a8.svg").exists()


def test_plots_without_matplotlib(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    messages = []
    assert report.make_plots(report.derive(fake_doc()), tmp_path, log=messages.append) == []
    assert "matplotlib" in messages[0]


def test_docs_without_measurements():
    text = report.render_markdown(None)
    assert "No GPU measurements yet" in text
    assert report.DOCS_MARKER in text and "torchao-gemlite-bench --quick" in text and "## Method" in text


def test_docs_with_measurements(tmp_path):
    doc = report.derive(fake_doc())
    plots = []
    try:
        import matplotlib  # noqa: F401

        plots = report.make_plots(doc, tmp_path / "benchmarks", ["png"])
    except ImportError:
        pass
    path = report.write_docs(tmp_path / "benchmarks.md", doc, plots)
    text = path.read_text()
    assert "No GPU measurements yet" not in text
    assert "Fake GPU" in text and "3000 GB/s" in text
    assert "### fp16  K=4096 N=14336" in text and "## End to end" in text
    assert "gemlite-int4-g128 (error: ImportError: x)" in text
    assert "broken: RuntimeError: no kernel" in text
    if plots:
        assert "](benchmarks/fp16_4096x14336_a16w4.png)" in text


def test_the_benchmarks_page_is_the_harness_output_of_its_saved_runs():
    """docs/benchmarks.md is what `--from-json docs/benchmarks/results/*.json --write-docs` writes: the page
    is regenerated from the runs behind it, never edited by hand."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    runs = sorted((root / "docs" / "benchmarks" / "results").glob("*.json"))
    assert runs, "the JSON of the runs behind docs/benchmarks.md is kept in docs/benchmarks/results/"
    doc = report.merge_runs([report.load_json(path) for path in runs])
    plots = sorted((root / "docs" / "benchmarks").glob("*.png"))
    page = report.render_markdown(doc, plots, docs_dir=root / "docs") + "\n"
    assert (root / "docs" / "benchmarks.md").read_text() == page
