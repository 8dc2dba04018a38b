#!/usr/bin/env bash
# GPU validation in one go, for the device machine: first-call latency and host overhead,
# the tests that need CUDA, then the benchmark harness (regenerates docs/benchmarks.md).
#   bash test/run_gpu.sh OUTDIR
set -u
out=${1:-gpu-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/gpu.txt"

# 1. First call on a never-seen shape (Triton compile included; run before anything warms the cache)
#    in two fresh processes: the machine's first (Triton hashes its library for its compile key) and a
#    second on another shape with an empty Triton cache (the key saved by the first, kernels/triton_key.py);
#    then the per-call host overhead of an eager call at M=1 (eager wall time minus graph time).
first_call() {
python3 - "$1" "$2" <<'PY'
import sys, time, torch
from torchao_gemlite.quant import quantize_weight
from torchao_gemlite.kernels.tuning import graph_time_us
import torchao_gemlite.ops  # noqa: F401
op = torch.ops.torchao_gemlite.linear_weight_only
k, n = int(sys.argv[1]), int(sys.argv[2])
qw = quantize_weight(torch.randn(n, k, dtype=torch.half, device="cuda"), 4, 128)
args = (qw.qdata, qw.scale, qw.zero, None, 4, 128, False)
for m in (1, 16, 300):
    x = torch.randn(m, k, dtype=torch.half, device="cuda")
    torch.cuda.synchronize(); t = time.perf_counter(); op(x, *args); torch.cuda.synchronize()
    print(f"first call, new shape {k}x{n}, M={m}: {time.perf_counter() - t:.2f} s (compile included)")
if k != 5120:
    sys.exit()
for n in (4096, 14336):
    q = quantize_weight(torch.randn(n, 4096, dtype=torch.half, device="cuda"), 4, 128)
    a = (q.qdata, q.scale, q.zero, None, 4, 128, False)
    x = torch.randn(1, 4096, dtype=torch.half, device="cuda")
    graph = graph_time_us([lambda: op(x, *a)], replays=50)
    for _ in range(20): op(x, *a)
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(500): op(x, *a)
    torch.cuda.synchronize(); eager = (time.perf_counter() - t) / 500 * 1e6
    print(f"M=1 4096x{n}: eager {eager:.1f} us/call, graph {graph:.1f} us, host overhead {eager - graph:.1f} us")
PY
}
{ first_call 5120 13824; TRITON_CACHE_DIR=$(mktemp -d) first_call 6144 11008; } 2>&1 | tee "$out/first_call.log"

# 2. Tests that need CUDA (the CPU ones run in CI).
# -v prints each result as it lands, so a run cut by the time limit still names its failures.
timeout 300 python3 -m pytest -v -rf --tb=line -n 16 -p no:cacheprovider test/kernels test/bench \
    test/tensors test/integrations test/test_serialization.py test/test_configs.py > "$out/pytest.log" 2>&1 \
    || echo "pytest: exit $? (124 = cut by the time limit)"
grep -E " FAILED | ERROR |^FAILED|^ERROR|passed|failed" "$out/pytest.log" | tail -25

# 3. Benchmarks: the issue's shapes and formats, fp16, CUDA graphs + eager; writes docs/benchmarks.md.
timeout 320 python3 -m torchao_gemlite.bench --quiet --no-gemlite --dtypes fp16 --graph-ms 5 --eager-ms 2 \
    --formats a16w4-asym-g128,a16w8-sym-pc,a16w2-asym-g64,a16w1-asym-g64,a8w8-int8,a8w8-fp8,a8w4-g128 \
    --shapes 4096x4096,4096x14336,14336x4096,8192x8192 --m 1,4,16,64,256,1024,4096 \
    --json "$out/bench.json" --write-docs > "$out/bench.log" 2>&1
tail -60 "$out/bench.log"
tar czf "$out/docs_benchmarks.tgz" docs/benchmarks.md docs/benchmarks 2>/dev/null
