"""The end-to-end decoder on CPU in fp32 with tiny dims: shapes, KV-cache consistency, configs."""

import pytest
import torch

from torchao_gemlite.bench import e2e

ARGS = e2e.ModelArgs.tiny()


@pytest.fixture
def model():
    return e2e.build_model(ARGS, torch.float32, torch.device("cpu"))


def test_llama3_8b_shapes():
    args = e2e.ModelArgs.llama3_8b()
    assert (args.dim, args.n_layers, args.head_dim, args.n_kv_heads, args.ffn_dim) == (4096, 32, 128, 8, 14336)
    assert e2e.ModelArgs.llama3_8b(n_layers=2).n_layers == 2


@torch.no_grad()
def test_decode_step_shapes(model):
    model.setup_caches(batch=2, max_seq=16)
    tokens = torch.randint(0, ARGS.vocab_size, (2, 1))
    logits = model(tokens, torch.tensor([3]), last_only=True)
    assert logits.shape == (2, 1, ARGS.vocab_size)
    assert torch.isfinite(logits).all()
    assert model.layers[0].attention.cache.k.shape == (2, ARGS.n_kv_heads, 16, ARGS.head_dim)


@torch.no_grad()
def test_incremental_decode_matches_prefill(model):
    model.setup_caches(batch=1, max_seq=12)
    tokens = torch.randint(0, ARGS.vocab_size, (1, 6))
    full = model(tokens, torch.arange(6))
    assert full.shape == (1, 6, ARGS.vocab_size)
    model.setup_caches(batch=1, max_seq=12)
    steps = [model(tokens[:, i:i + 1], torch.tensor([i])) for i in range(6)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-4, atol=1e-4)


def test_forward_needs_caches(model):
    with pytest.raises(RuntimeError, match="setup_caches"):
        model(torch.zeros(1, 1, dtype=torch.long), torch.tensor([0]))


def test_weight_bytes(model):
    assert e2e.weight_bytes(model) == sum(p.numel() for p in model.parameters()) * 4


def test_configs_build():
    assert e2e.E2E_CONFIGS["bf16"] is None
    from torchao.core.config import AOBaseConfig

    for name, make in e2e.E2E_CONFIGS.items():
        if make is not None:
            assert isinstance(make(), AOBaseConfig), name


@torch.no_grad()
def test_quantized_decode_step_on_cpu():
    model = e2e.build_model(ARGS, torch.float32, torch.device("cpu"))
    dense = e2e.weight_bytes(model)
    e2e.quantize_model(model, e2e.E2E_CONFIGS["gemlite-int4-g128"]())
    assert type(model.output.weight) is torch.nn.Parameter and model.output.weight.dtype == torch.float32
    assert e2e.weight_bytes(model) < dense
    model.setup_caches(batch=2, max_seq=8)
    logits = model(torch.randint(0, ARGS.vocab_size, (2, 1)), torch.tensor([0]), last_only=True)
    assert logits.shape == (2, 1, ARGS.vocab_size) and torch.isfinite(logits).all()


@torch.no_grad()
def test_quantize_head_option():
    model = e2e.build_model(ARGS, torch.float32, torch.device("cpu"))
    e2e.quantize_model(model, e2e.E2E_CONFIGS["gemlite-int4-g128"](), include_head=True)
    assert type(model.output.weight) is not torch.nn.Parameter or model.output.weight.dtype != torch.float32
    assert "Gemlite" in type(model.output.weight).__name__


def test_run_e2e_rejects_unknown_configs():
    with pytest.raises(ValueError, match="unknown e2e config"):
        e2e.run_e2e(e2e.E2ESettings(configs=("nope",)), torch.device("cpu"))


def _reference_attention(attn, x, cos, sin):
    """Causal attention over all of x with every KV head repeated for its query heads."""
    b, t, _ = x.shape
    h, d = ARGS.n_heads, ARGS.head_dim
    q, k, v = attn.wqkv(x).split([attn.q_dim, attn.kv_dim, attn.kv_dim], dim=-1)
    q = e2e.apply_rope(q.view(b, t, h, d), cos, sin).transpose(1, 2)
    k = e2e.apply_rope(k.view(b, t, -1, d), cos, sin).transpose(1, 2)
    v = v.view(b, t, -1, d).transpose(1, 2)
    rep = h // ARGS.n_kv_heads
    ref = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1), is_causal=True)
    return attn.wo(ref.transpose(1, 2).reshape(b, t, h * d))


@torch.no_grad()
@pytest.mark.parametrize("decode_steps", [0, 2])
def test_gqa_attention_matches_repeated_kv_heads(decode_steps):
    """Prefill of 5 tokens (SDPA), then single-token decode steps (decode_attention) on the cache."""
    torch.manual_seed(0)
    attn = e2e.Attention(ARGS, dtype=torch.float32)
    attn.cache = e2e.KVCache(2, ARGS.n_kv_heads, 8, ARGS.head_dim, torch.float32, "cpu")
    total = 5 + decode_steps
    x, pos = torch.randn(2, total, ARGS.dim), torch.arange(total)
    cos, sin = e2e.rope_tables(8, ARGS.head_dim, ARGS.rope_theta)
    causal = torch.ones(8, 8, dtype=torch.bool).tril()
    ys = [attn(x[:, :5], pos[:5], cos[:5], sin[:5], causal[:5].view(1, 1, 5, 8))]
    for i in range(5, total):
        ys.append(attn(x[:, i:i + 1], pos[i:i + 1], cos[i:i + 1], sin[i:i + 1], causal[i:i + 1].view(1, 1, 1, 8)))
    ref = _reference_attention(attn, x, cos[:total], sin[:total])
    torch.testing.assert_close(torch.cat(ys, dim=1), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_decode_and_prefill_smoke():
    model = e2e.build_model(ARGS, torch.bfloat16, torch.device("cuda"))
    assert e2e.decode_tokens_per_s(model, batch=2, context=32, steps=8, repeats=1) > 0
    assert e2e.decode_tokens_per_s(model, batch=2, context=32, steps=8, repeats=1, compile=True) > 0
    assert e2e.prefill_tokens_per_s(model, 16, repeats=1) > 0
