"""torch.compile(fullgraph=True) of a quantized decoder block: no graph breaks, no
recompilation across batch sizes (dynamic batch dimension), same outputs as eager.
CUDA graphs (GPU only): capture and replay of a quantized decode step gives the eager result."""

import pytest
import torch
from torch._dynamo.utils import counters
from torchao.quantization import quantize_

import torchao_gemlite as tg

from ._blocks import DecoderBlock

CONFIGS = {
    "int4-g64": lambda: tg.GemliteInt4WeightOnlyConfig(group_size=64),
    "a8w8-int8": tg.GemliteInt8DynamicActivationInt8WeightConfig,
    "a8w8-fp8": tg.GemliteFloat8DynamicActivationFloat8WeightConfig,
    "a8w4-g64": lambda: tg.GemliteInt8DynamicActivationInt4WeightConfig(group_size=64),
}


def _quantized_block(name, device="cpu", dtype=torch.float32):
    torch.manual_seed(0)
    block = DecoderBlock().to(device=device, dtype=dtype).eval()
    quantize_(block, CONFIGS[name]())
    assert isinstance(block.qkv_proj.weight, tg.tensors.ALL_TENSOR_CLASSES)
    return block


@pytest.mark.parametrize("name", ["int4-g64", "a8w8-int8"])
def test_compile_fullgraph_no_recompile_across_batch_sizes(name):
    block = _quantized_block(name)
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(block, fullgraph=True)
    with torch.no_grad(), torch._dynamo.config.patch(error_on_recompile=True):
        for batch in (2, 3, 7, 16):
            x = torch.randn(batch, 4, 128)
            torch._dynamo.mark_dynamic(x, 0)
            torch.testing.assert_close(compiled(x), block(x), atol=1e-5, rtol=1e-5)
    assert counters["stats"]["unique_graphs"] == 1
    assert not counters["graph_break"]


def _capture(fn, x):
    """Warm up on a side stream, capture one call, return (graph, static output)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            fn(x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn(x)
    return graph, out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("batch", [1, 4, 64])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_cuda_graph_decode_step_matches_eager(name, batch):
    block = _quantized_block(name, "cuda", torch.float16)
    x = torch.randn(batch, 1, 128, device="cuda", dtype=torch.float16)
    with torch.no_grad():
        graph, out = _capture(block, x)
        for _ in range(3):  # new inputs copied into the static buffer, as a decode loop does
            x.copy_(torch.randn_like(x))
            graph.replay()
            torch.testing.assert_close(out, block(x), atol=2e-3, rtol=2e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_compiled_block_on_gpu_matches_eager():
    block = _quantized_block("int4-g64", "cuda", torch.float16)
    compiled = torch.compile(block, fullgraph=True, mode="reduce-overhead")
    with torch.no_grad():
        for batch in (1, 8):
            x = torch.randn(batch, 1, 128, device="cuda", dtype=torch.float16)
            for _ in range(3):
                out = compiled(x)
            torch.testing.assert_close(out, block(x), atol=2e-3, rtol=2e-3)
