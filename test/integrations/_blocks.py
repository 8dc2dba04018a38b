"""Small model pieces shared by the integration tests (and matching the examples)."""

import torch
import torch.nn.functional as F


class DecoderBlock(torch.nn.Module):
    """A pre-norm Llama-style block: fused QKV attention (GQA-free) and a SwiGLU MLP."""

    def __init__(self, dim: int = 128, hidden: int = 256, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = torch.nn.RMSNorm(dim), torch.nn.RMSNorm(dim)
        self.qkv_proj = torch.nn.Linear(dim, 3 * dim, bias=False)
        self.o_proj = torch.nn.Linear(dim, dim, bias=False)
        self.gate_up_proj = torch.nn.Linear(dim, 2 * hidden, bias=False)
        self.down_proj = torch.nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv_proj(self.norm1(x)).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        attn = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        x = x + self.o_proj(attn)
        gate, up = self.gate_up_proj(self.norm2(x)).chunk(2, dim=-1)
        return x + self.down_proj(F.silu(gate) * up)
