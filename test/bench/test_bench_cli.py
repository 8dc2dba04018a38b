"""Argument parsing and whole CLI runs on CPU (fake timings, placeholder docs, --from-json)."""

import json

import pytest
import torch

from torchao_gemlite.bench import cli, kernels, report


def test_defaults():
    args = cli.parse_args([])
    assert args.formats == kernels.DEFAULT_FORMATS
    assert args.shapes == kernels.DEFAULT_SHAPES
    assert args.m_values == [1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096]
    assert args.dtypes == ["fp16", "bf16"]
    assert args.graph and args.eager and not args.e2e
    assert args.anchors is None and args.batch == [1, 8, 32, 64] and args.prefill == [1024, 4096]


def test_quick_keeps_explicit_choices():
    args = cli.parse_args(["--quick", "--formats", "a16w2-sym-g64"])
    assert args.formats == ["a16w2-sym-g64"]
    assert args.shapes == kernels.QUICK_SHAPES and args.m_values == kernels.QUICK_M
    assert args.dtypes == kernels.QUICK_DTYPES


def test_lists_and_flags():
    args = cli.parse_args(["--shapes", "4096x14336,5120x13824", "--m", "1,3,4096", "--dtypes", "bf16",
                           "--eager", "--anchors", "none", "--e2e", "--layers", "2", "--batch", "1,8",
                           "--prefill", "128", "--compile", "--quantize-head", "--json", "out.json"])
    assert args.shapes == [(4096, 14336), (5120, 13824)]
    assert args.m_values == [1, 3, 4096] and args.dtypes == ["bf16"]
    assert not args.graph and args.eager
    assert args.anchors == ["cublas"]
    assert args.e2e and args.layers == 2 and args.batch == [1, 8] and args.prefill == [128]
    assert args.compile and args.quantize_head
    assert str(args.json) == "out.json"
    assert cli.parse_args(["--shapes", "llama3-8b"]).shapes == kernels.LLAMA3_8B_SHAPES
    assert cli.parse_args(["--formats", "none"]).formats == []


@pytest.mark.parametrize("argv", [["--shapes", "4096"], ["--formats", "a16w3-asym-g64"], ["--m", "0"],
                                  ["--m", "a"], ["--dtypes", "fp32"], ["--anchors", "cutlass"],
                                  ["--no-graph", "--no-eager"], ["--layers", "0"]])
def test_bad_arguments_exit(argv, capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(argv)


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_without_gpu_writes_placeholder_docs(no_gpu, tmp_path):
    path = tmp_path / "docs" / "benchmarks.md"
    assert cli.main(["--write-docs", "--docs-path", str(path)]) == 0
    assert "No GPU measurements yet" in path.read_text()
    assert cli.main([]) == 2


def test_fake_timing_run(no_gpu, tmp_path, capsys):
    out = tmp_path / "r.json"
    argv = ["--fake-timings", "--quiet", "--formats", "a16w4-asym-g128,a8w8-int8", "--shapes", "256x64",
            "--m", "1,5", "--dtypes", "fp16", "--anchors", "torch-int-mm", "--no-gemlite", "--json", str(out)]
    try:
        import matplotlib  # noqa: F401

        argv += ["--plots", str(tmp_path / "plots")]
    except ImportError:
        pass
    assert cli.main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["settings"]["fake_timings"] is True
    assert {r["impl"] for r in doc["kernels"]} == {"a16w4-asym-g128", "a8w8-int8", "torch-int-mm", "cublas"}
    assert len(doc["kernels"]) == 4 * 2
    assert all(r["error"] is None and r["speedup"] is not None for r in doc["kernels"])
    assert "fp16  K=256 N=64" in capsys.readouterr().out
    # fake numbers never reach the docs
    assert cli.main(argv + ["--write-docs", "--docs-path", str(tmp_path / "b.md")]) == 2
    assert not (tmp_path / "b.md").exists()


def test_from_json_regenerates_docs(tmp_path):
    from .test_bench_report import fake_doc

    saved = report.write_json(fake_doc(), tmp_path / "all.json")
    docs = tmp_path / "docs" / "benchmarks.md"
    assert cli.main(["--from-json", str(saved), "--write-docs", "--docs-path", str(docs)]) == 0
    text = docs.read_text()
    assert "Fake GPU" in text and "## End to end" in text


def test_from_json_merges_a_kernel_run_and_an_end_to_end_run(tmp_path):
    from .test_bench_report import fake_doc

    kernels_run = fake_doc()
    kernels_run["e2e"] = None
    e2e_run = fake_doc()
    e2e_run["kernels"] = []
    e2e_run["env"] = dict(e2e_run["env"], git_commit="e2e0001", command="torchao-gemlite-bench --e2e")
    a = report.write_json(kernels_run, tmp_path / "kernels.json")
    b = report.write_json(e2e_run, tmp_path / "e2e.json")
    docs = tmp_path / "benchmarks.md"
    assert cli.main(["--from-json", str(a), str(b), "--write-docs", "--docs-path", str(docs)]) == 0
    text = docs.read_text()
    assert "## Kernels" in text and "## End to end" in text
    assert "From a separate run: git_commit `e2e0001`" in text and "command `torchao-gemlite-bench --e2e`" in text
    # one run with both parts names no separate run
    both = report.merge_runs([fake_doc()])
    assert "env" not in both["e2e"]
    assert "From a separate run" not in report.render_markdown(both)


def test_from_json_joins_end_to_end_runs_split_by_config():
    """A long end-to-end matrix run in parts (same settings, GPU and software, other configs) makes one table
    in the benchmark's config order; a run with other settings is not mixed in, rows of another commit name
    their commit, and a config measured twice keeps its later row unless that one failed."""
    from .test_bench_report import fake_doc

    def e2e_part(configs, command, layers=32):
        doc = fake_doc()
        doc["kernels"] = []
        doc["env"] = dict(doc["env"], command=command, git_commit="1111111")
        rows = {row["config"]: row for row in doc["e2e"]["results"]}
        doc["e2e"] = dict(doc["e2e"], settings=dict(doc["e2e"]["settings"], configs=configs, layers=layers),
                          results=[dict(rows["bf16"], config=c, error=None) for c in configs])
        return doc

    kernels_run = fake_doc()
    kernels_run["e2e"] = None
    other = e2e_part(["bf16"], "run 0", layers=2)
    older = e2e_part(["gemlite-w2-g64"], "run 0")
    older["env"]["git_commit"] = "0000000"
    first = e2e_part(["bf16", "gemlite-int4-g128"], "run 1")
    second = e2e_part(["gemlite-w8-pc", "bf16"], "run 2")
    second["e2e"]["results"][1]["decode_tok_s"] = {1: 1.5}
    failed = e2e_part(["gemlite-int4-g128"], "run 3")
    failed["e2e"]["results"][0]["error"] = "out of memory"
    merged = report.merge_runs([kernels_run, other, first, second, failed])
    assert [row["config"] for row in merged["e2e"]["results"]] == ["bf16", "gemlite-int4-g128", "gemlite-w8-pc"]
    assert merged["e2e"]["settings"]["configs"] == ["bf16", "gemlite-int4-g128", "gemlite-w8-pc"]
    assert merged["e2e"]["results"][0]["decode_tok_s"] == {1: 1.5}
    assert merged["e2e"]["settings"]["layers"] == 32
    assert merged["e2e"]["results"][1]["error"] is None
    assert merged["e2e"]["env"]["command"] == "run 1 ; run 2"  # run 3 supplied no row
    assert "git_commit" not in merged["e2e"]["results"][0]  # one commit: no commit column
    assert "| config | weights GiB |" in report.render_markdown(merged)
    # a part from another commit joins, in the config order, and every row names its commit
    older["env"]["gemlite"] = None  # the kernel benchmark's peer: not part of what the end-to-end rows share
    replaced = e2e_part(["gemlite-w2-g64"], "run 5")  # its only row is measured again later: no commit, no command
    replaced["env"]["git_commit"] = "2222222"
    mixed = report.merge_runs([kernels_run, other, replaced, older, first, second])
    assert [row["config"] for row in mixed["e2e"]["results"]] == ["bf16", "gemlite-int4-g128", "gemlite-w8-pc",
                                                                    "gemlite-w2-g64"]
    assert [row["git_commit"] for row in mixed["e2e"]["results"]] == ["1111111"] * 3 + ["0000000"]
    assert mixed["e2e"]["env"]["git_commit"] == "0000000, 1111111"
    assert "run 5" not in mixed["e2e"]["env"]["command"]
    text = report.render_markdown(mixed)
    assert "| config | commit | weights GiB |" in text and "| gemlite-w2-g64 | 0000000 |" in text
