#!/usr/bin/env bash
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
t0=$(date +%s)
timeout 420 python3 test/kernels/gpu_probe_mma_gemv.py $OUT --no-accuracy --m 24 32 48 64 --other-m 32 64 --formats w4g128 w8pc w2g64 w1g64 w4g128-bf16 --block-k 128 256 > $OUT/wo.txt 2>&1; tail -50 $OUT/wo.txt
echo "wo $(( $(date +%s) - t0 )) s"
grep ": fp16" $OUT/probe_mma_gemv.log | tail -60
