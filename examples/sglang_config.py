"""SGLang-style ``--torchao-config`` strings with our kernels.

    python examples/sglang_config.py

Parses a few strings, applies one with SGLang's default layer filter (linear layers named
``*proj*``) to a small model, and shows the error for an unknown string. With SGLang
installed, ``torchao_gemlite.integrations.patch_sglang()`` makes ``--torchao-config gemlite-4-64``
use this code (docs/integrations.md).
"""

import torch

from torchao_gemlite.integrations import apply_torchao_config_to_model, parse_torchao_config


class TinyMlpModel(torch.nn.Module):
    def __init__(self, dim: int = 256):
        super().__init__()
        self.embed_tokens = torch.nn.Embedding(100, dim)
        self.gate_proj = torch.nn.Linear(dim, 2 * dim, bias=False)
        self.down_proj = torch.nn.Linear(2 * dim, dim, bias=False)
        self.lm_head = torch.nn.Linear(dim, 100, bias=False)

    def forward(self, ids):
        h = self.embed_tokens(ids)
        return self.lm_head(h + self.down_proj(torch.nn.functional.silu(self.gate_proj(h))))


def main() -> None:
    for spec in ("gemlite-4-64", "gemlite-32-8-None", "int4wo-128", "int8dq", "fp8dq-per_row"):
        print(f"{spec:20s} -> {parse_torchao_config(spec)}")

    torch.manual_seed(0)
    model = TinyMlpModel()
    ids = torch.randint(0, 100, (2, 5))
    with torch.no_grad():
        ref = model(ids)
        apply_torchao_config_to_model(model, "gemlite-4-64")
        out = model(ids)
    for name, module in model.named_children():
        print(f"{name:13s} {type(module.weight).__name__}")
    print(f"relative output error: {((out - ref).norm() / ref.norm()).item():.4f}")

    try:
        parse_torchao_config("gemlite-3-64")
    except ValueError as e:
        print("error for 'gemlite-3-64':", str(e).splitlines()[0])


if __name__ == "__main__":
    main()
