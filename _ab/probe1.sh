#!/usr/bin/env bash
# device call 1: M-tiled mma kernels against the current dispatch (gemm) at M = 17..128
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
t0=$(date +%s)
timeout 150 python3 -m pytest -q -n 16 -p no:cacheprovider test/kernels/test_mma_gemv.py test/kernels/test_dynamic_mma_gemv.py > $OUT/tests.log 2>&1; tail -3 $OUT/tests.log
echo "tests $(( $(date +%s) - t0 )) s"
timeout 120 python3 test/kernels/gpu_probe_dynamic_mma.py $OUT --m 16 24 32 48 64 96 128 > $OUT/dyn.txt 2>&1; cat $OUT/dyn.txt | tail -32
echo "dyn $(( $(date +%s) - t0 )) s"
timeout 300 python3 test/kernels/gpu_probe_mma_gemv.py $OUT --m 24 32 48 64 96 128 --other-m 32 64 128 --formats w4g128 w4g128-bf16 w8pc w2g64 w1g64 --block-k 128 256 > $OUT/wo.txt 2>&1; tail -80 $OUT/wo.txt
echo "wo $(( $(date +%s) - t0 )) s"
