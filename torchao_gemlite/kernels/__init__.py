"""Triton kernels, grouped by algorithm, and the dispatcher that picks one per call.

    unpack.py      jit helpers: packed words -> codes -> dequantized tile
    gemv.py        decode (M <= 2; up to 4 where mma_gemv cannot): CUDA-core multiply-accumulate, weight streamed once
    mma_gemv.py    decode and small batches (M = 3..16, 4-bit up to 32): mma.sync tensor-core multiply-accumulate, weight streamed once
    mma_sync.py    the mma.sync m16n8k16 instruction on one-value-per-thread tensors (inline PTX, emulation)
    gemm.py        tensor-core GEMM, 16-bit dequantization, optional swapped operands, split-K (M = 17..128; 4-bit 33..)
    dequant.py     dense dequantization for the dequantize + cuBLAS path (M > 128)
    reduce.py      deterministic split-K reduction (fixed order, no atomics)
    launch.py      direct launches of the compiled kernels (eager host overhead)
    triton_key.py  Triton's compile key saved on disk (a new process skips its 2 s library hash)
    act_quant.py   per-token int8 / fp8 activation quantization
    dynamic_gemv.py  CUDA-core decode GEMV for A8W8 int8 (dp4a) and fp8 (M <= 4)
    dynamic_mma_gemv.py  A8W4 on the int8 tensor cores, mma.sync (M <= 16)
    dynamic_gemm.py  int8 / fp8 tensor-core GEMM for A8W8 and A8W4, and the linear layers' routing
    dynamic_epilogue.py  their epilogue and deterministic split-K reduction
    pdl.py         programmatic dependent launch between a dynamic decode call's launches (sm_90+)
    dynamic_configs.py  its launch configurations (tile tables, split-K rule, heuristic)
    configs.py     launch configurations: heuristics, shipped tables, the user cache
    dispatch.py    validation + choice of kernel and configuration per call
    tuning.py      explicit tuning entry point that writes the user cache
"""
