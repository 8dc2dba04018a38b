"""End-to-end benchmark: a Llama-3-8B-shaped decoder with random weights (nothing is downloaded).

The model is deliberately small and plain: RMSNorm, rotary embeddings, grouped-query attention
with a static KV cache (``F.scaled_dot_product_attention`` at prefill, two matmuls and a softmax
for the single query token of decode), a SwiGLU MLP; q/k/v and gate/up are fused linears, as
serving stacks run them. Every linear layer except the output head (``quantize_head``: that too)
is quantized with ``torchao.quantization.quantize_(model, config)``.

Measured per config:

* decode tokens/s at each batch size: one CUDA graph holds a whole step (forward of one token
  per sequence, greedy argmax fed back as the next token, position += 1), replayed ``steps`` times;
  with ``compile`` the forward inside the graph is ``torch.compile(fullgraph=True)``-ed first, so
  that the small ops between the linears are fused as a serving stack would run them;
* prefill tokens/s at each length: eager forward of one sequence (batch 1);
* weight memory (parameters; quantized tensors counted by their inner tensors) and peak GPU memory
  while benchmarking (``torch.cuda.max_memory_allocated``, reset after quantization).
"""

from __future__ import annotations

import gc
import math
import statistics
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .kernels import tensor_nbytes

# -------------------------------------------------------------------------------------------------
# Model
# -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelArgs:
    dim: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: int = 8
    ffn_dim: int = 14336
    vocab_size: int = 128256
    rope_theta: float = 500000.0
    norm_eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @classmethod
    def llama3_8b(cls, n_layers: int = 32) -> "ModelArgs":
        return cls(n_layers=n_layers)

    @classmethod
    def tiny(cls) -> "ModelArgs":
        return cls(dim=128, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=256, vocab_size=96)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, **factory):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, **factory))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


def rope_tables(max_seq: int, head_dim: int, theta: float, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape [max_seq, head_dim / 2] (fp32)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(max_seq, device=device, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotates consecutive pairs of x [B, T, H, D] by the angles of its positions (cos/sin [T, D/2])."""
    pairs = x.float().unflatten(-1, (-1, 2))
    a, b = pairs[..., 0], pairs[..., 1]
    c, s = cos[:, None, :], sin[:, None, :]
    return torch.stack((a * c - b * s, a * s + b * c), dim=-1).flatten(-2).to(x.dtype)


class KVCache(nn.Module):
    """Static cache [B, H_kv, max_seq, D]; ``update`` writes the new positions in place."""

    def __init__(self, batch: int, n_kv_heads: int, max_seq: int, head_dim: int, dtype, device):
        super().__init__()
        shape = (batch, n_kv_heads, max_seq, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def update(self, pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        self.k.index_copy_(2, pos, k)
        self.v.index_copy_(2, pos, v)
        return self.k, self.v


def decode_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Attention of a few query rows per KV head ([B, H_kv, R, D] against the cache [B, H_kv, S, D],
    mask [1, 1, 1, S]) as two batched matmuls and a softmax in fp32. At decode SDPA's fused kernels
    parallelize over query blocks, so one program streams each KV head's whole cache; on the H100 cuDNN's
    took about 24 us a layer at batch 1 and context 1024 (test/bench/gpu_probe_e2e_profile.py)."""
    scores = (q @ k.transpose(-1, -2)).float() * q.shape[-1] ** -0.5
    scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1).to(v.dtype) @ v


class Attention(nn.Module):
    def __init__(self, args: ModelArgs, **factory):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = args.n_heads, args.n_kv_heads, args.head_dim
        self.q_dim, self.kv_dim = args.n_heads * args.head_dim, args.n_kv_heads * args.head_dim
        # q, k and v projections in one linear, as serving stacks fuse them
        self.wqkv = nn.Linear(args.dim, self.q_dim + 2 * self.kv_dim, bias=False, **factory)
        self.wo = nn.Linear(self.q_dim, args.dim, bias=False, **factory)
        self.cache: Optional[KVCache] = None

    def forward(self, x, pos, cos, sin, mask):
        b, t, _ = x.shape
        q, k, v = self.wqkv(x).split([self.q_dim, self.kv_dim, self.kv_dim], dim=-1)
        q = apply_rope(q.view(b, t, self.n_heads, self.head_dim), cos, sin)
        k = apply_rope(k.view(b, t, self.n_kv_heads, self.head_dim), cos, sin)
        v = v.view(b, t, self.n_kv_heads, self.head_dim)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))  # [B, H, T, D]
        k, v = self.cache.update(pos, k, v)  # [B, H_kv, S, D]
        # GQA without repeating the cache: the G = H / H_kv query heads that share a KV head
        # (head h uses KV head h // G) become G*T query rows of that KV head.
        g = self.n_heads // self.n_kv_heads
        q = q.reshape(b, self.n_kv_heads, g * t, self.head_dim)
        if t == 1:
            y = decode_attention(q, k, v, mask)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.repeat(1, 1, g, 1))  # [B, H_kv, G*T, D]
        y = y.view(b, self.n_heads, t, self.head_dim)
        return self.wo(y.transpose(1, 2).reshape(b, t, self.q_dim))


class FeedForward(nn.Module):
    def __init__(self, args: ModelArgs, **factory):
        super().__init__()
        self.w13 = nn.Linear(args.dim, 2 * args.ffn_dim, bias=False, **factory)  # gate and up, fused
        self.w2 = nn.Linear(args.ffn_dim, args.dim, bias=False, **factory)  # down

    def forward(self, x):
        gate, up = self.w13(x).chunk(2, dim=-1)
        return self.w2(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, args: ModelArgs, **factory):
        super().__init__()
        self.attention_norm = RMSNorm(args.dim, args.norm_eps, **factory)
        self.attention = Attention(args, **factory)
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps, **factory)
        self.feed_forward = FeedForward(args, **factory)

    def forward(self, x, pos, cos, sin, mask):
        h = x + self.attention(self.attention_norm(x), pos, cos, sin, mask)
        return h + self.feed_forward(self.ffn_norm(h))


class Decoder(nn.Module):
    """A Llama-3-style decoder. Call :meth:`setup_caches` before :meth:`forward`."""

    def __init__(self, args: ModelArgs, dtype=torch.bfloat16, device=None):
        super().__init__()
        factory = {"dtype": dtype, "device": device}
        self.args = args
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim, **factory)
        self.layers = nn.ModuleList(Block(args, **factory) for _ in range(args.n_layers))
        self.norm = RMSNorm(args.dim, args.norm_eps, **factory)
        self.output = nn.Linear(args.dim, args.vocab_size, bias=False, **factory)
        self.max_seq = 0

    def setup_caches(self, batch: int, max_seq: int) -> None:
        """(Re)allocates the KV caches, rotary tables and causal mask for ``batch`` x ``max_seq``."""
        ref = self.norm.weight
        for layer in self.layers:
            layer.attention.cache = None
        for layer in self.layers:
            layer.attention.cache = KVCache(batch, self.args.n_kv_heads, max_seq, self.args.head_dim, ref.dtype,
                                            ref.device)
        cos, sin = rope_tables(max_seq, self.args.head_dim, self.args.rope_theta, ref.device)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        causal = torch.ones(max_seq, max_seq, dtype=torch.bool, device=ref.device).tril()
        self.register_buffer("causal", causal, persistent=False)
        self.max_seq = max_seq

    def forward(self, tokens: torch.Tensor, pos: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """tokens [B, T] at positions pos [T] -> logits [B, T, vocab] ([B, 1, vocab] if last_only)."""
        if not self.max_seq:
            raise RuntimeError("call setup_caches(batch, max_seq) before forward")
        t = tokens.shape[1]
        h = self.tok_embeddings(tokens)
        cos, sin = self.rope_cos[pos], self.rope_sin[pos]
        mask = self.causal[pos].view(1, 1, t, self.max_seq)
        for layer in self.layers:
            h = layer(h, pos, cos, sin, mask)
        h = self.norm(h)
        if last_only:
            h = h[:, -1:]
        return self.output(h)


def build_model(args: ModelArgs, dtype, device, seed: int = 0) -> Decoder:
    """Random weights scaled so activations stay O(1) through the layers (no NaN at any depth)."""
    torch.manual_seed(seed)
    model = Decoder(args, dtype=dtype, device=device)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                module.weight.normal_(0.0, 1.0 / math.sqrt(module.in_features))
            elif isinstance(module, nn.Embedding):
                module.weight.normal_(0.0, 1.0)
    return model.eval()


def weight_bytes(model: nn.Module) -> int:
    return sum(tensor_nbytes(p) for p in model.parameters())


# -------------------------------------------------------------------------------------------------
# Configs (ours are imported lazily: torchao_gemlite.configs may land after this module)
# -------------------------------------------------------------------------------------------------


def _ours(name: str, **kwargs) -> Callable[[], object]:
    def make():
        from torchao_gemlite import configs

        return getattr(configs, name)(**kwargs)

    return make


def _torchao_int4_tinygemm():
    from torchao.quantization import Int4WeightOnlyConfig
    from torchao.quantization.quantize_.workflows import Int4PackingFormat

    return Int4WeightOnlyConfig(group_size=128, int4_packing_format=Int4PackingFormat.TILE_PACKED_TO_4D)


E2E_CONFIGS: dict[str, Optional[Callable[[], object]]] = {
    "bf16": None,
    "torchao-int4wo-g128": _torchao_int4_tinygemm,
    "gemlite-int4-g128": _ours("GemliteInt4WeightOnlyConfig", group_size=128, symmetric=False),
    "gemlite-w8-pc": _ours("GemliteWeightOnlyConfig", bits=8, group_size=None, symmetric=True),
    "gemlite-w2-g64": _ours("GemliteWeightOnlyConfig", bits=2, group_size=64, symmetric=False),
    "gemlite-a8w8-int8": _ours("GemliteInt8DynamicActivationInt8WeightConfig"),
    "gemlite-a8w8-fp8": _ours("GemliteFloat8DynamicActivationFloat8WeightConfig"),
    "gemlite-a8w4-g128": _ours("GemliteInt8DynamicActivationInt4WeightConfig", group_size=128),
}


def quantize_model(model: nn.Module, config, include_head: bool = False) -> None:
    """Quantizes every linear layer, the output head only with ``include_head``."""
    from torchao.quantization import quantize_

    quantize_(model, config, filter_fn=lambda m, fqn: isinstance(m, nn.Linear) and (include_head or fqn != "output"))


# -------------------------------------------------------------------------------------------------
# Measurements
# -------------------------------------------------------------------------------------------------


@dataclass
class E2ESettings:
    layers: int = 32
    batches: tuple[int, ...] = (1, 8, 32, 64)
    prefills: tuple[int, ...] = (1024, 4096)
    context: int = 1024  # KV cache length for decode
    steps: int = 64  # decode steps per timed replay sequence
    repeats: int = 3
    configs: tuple[str, ...] = tuple(E2E_CONFIGS)
    dtype: str = "bf16"
    compile: bool = False  # decode: torch.compile the forward captured in the CUDA graph
    quantize_head: bool = False  # quantize the output head too (embeddings always stay dense)


@torch.no_grad()
def decode_tokens_per_s(model: Decoder, batch: int, context: int, steps: int, repeats: int,
                        compile: bool = False) -> float:
    """Greedy decode with a CUDA graph per step; returns batch * steps / seconds (median of repeats)."""
    if steps + 4 > context:
        raise ValueError(f"context={context} must exceed steps={steps} + 4")
    device = model.norm.weight.device
    model.setup_caches(batch, context)
    tokens = torch.randint(0, model.args.vocab_size, (batch, 1), device=device)
    pos = torch.zeros(1, dtype=torch.long, device=device)
    forward = torch.compile(model.forward, fullgraph=True, dynamic=False) if compile else model.forward

    def step():
        logits = forward(tokens, pos, last_only=True)
        tokens.copy_(logits.argmax(dim=-1))
        pos.add_(1)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    times = []
    for _ in range(repeats):
        pos.zero_()
        graph.replay()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            graph.replay()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    del graph
    return batch * steps / statistics.median(times)


@torch.no_grad()
def prefill_tokens_per_s(model: Decoder, length: int, repeats: int) -> float:
    device = model.norm.weight.device
    model.setup_caches(1, length)
    tokens = torch.randint(0, model.args.vocab_size, (1, length), device=device)
    pos = torch.arange(length, device=device)
    model(tokens, pos, last_only=True)
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        model(tokens, pos, last_only=True)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return length / statistics.median(times)


def _free(model: Optional[nn.Module]) -> None:
    del model
    gc.collect()
    torch.cuda.empty_cache()


def bench_config(name: str, settings: E2ESettings, device: torch.device, log=print) -> dict:
    """Builds, quantizes and measures one config; errors are recorded, not raised."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[settings.dtype]
    row = {"config": name, "weight_gib": None, "peak_gib": None, "decode_tok_s": {}, "prefill_tok_s": {},
           "error": None}
    model = None
    try:
        model = build_model(ModelArgs.llama3_8b(settings.layers), dtype, device)
        make_config = E2E_CONFIGS[name]
        if make_config is not None:
            quantize_model(model, make_config(), include_head=settings.quantize_head)
        row["weight_gib"] = weight_bytes(model) / 2**30
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        for b in settings.batches:
            row["decode_tok_s"][b] = decode_tokens_per_s(model, b, settings.context, settings.steps, settings.repeats,
                                                         settings.compile)
            log(f"  {name}: decode batch {b}: {row['decode_tok_s'][b]:.0f} tok/s")
        for t in settings.prefills:
            row["prefill_tok_s"][t] = prefill_tokens_per_s(model, t, settings.repeats)
            log(f"  {name}: prefill {t}: {row['prefill_tok_s'][t]:.0f} tok/s")
        row["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    except Exception as exc:  # noqa: BLE001 - one config failing must not stop the others
        text = str(exc).strip().splitlines()
        row["error"] = f"{type(exc).__name__}: {text[0][:200] if text else ''}"
        log(f"  {name}: failed: {row['error']}")
    finally:
        _free(model)
    return row


def run_e2e(settings: E2ESettings, device: torch.device, log=print) -> dict:
    unknown = sorted(set(settings.configs) - set(E2E_CONFIGS))
    if unknown:
        raise ValueError(f"unknown e2e config(s) {unknown}: choose from {list(E2E_CONFIGS)}")
    results = []
    for name in settings.configs:
        log(f"e2e: {name} ({settings.layers} layers)")
        results.append(bench_config(name, settings, device, log))
    s = settings
    return {"settings": {"layers": s.layers, "batches": list(s.batches), "prefills": list(s.prefills),
                         "context": s.context, "steps": s.steps, "repeats": s.repeats, "dtype": s.dtype,
                         "configs": list(s.configs), "compile": s.compile, "quantize_head": s.quantize_head},
            "results": results}
