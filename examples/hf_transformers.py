"""HF transformers: quantize a Llama-architecture model at load time, generate, save, reload.

    python examples/hf_transformers.py [path-or-hub-id]

Without an argument it builds a small random Llama locally (no downloads). The checkpoint is
written as safetensors (transformers' default); reloading it needs only ``import torchao_gemlite``.
"""

import sys
import tempfile

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, TorchAoConfig

import torchao_gemlite  # noqa: F401  (registers our configs and tensors with torchao and transformers)
from torchao_gemlite import GemliteInt4WeightOnlyConfig


def tiny_llama(path: str) -> str:
    config = LlamaConfig(vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def main() -> None:
    torch.manual_seed(0)
    gpu = torch.cuda.is_available()
    device, dtype = ("cuda", torch.float16) if gpu else ("cpu", torch.float32)
    with tempfile.TemporaryDirectory() as tmp:
        source = sys.argv[1] if len(sys.argv) > 1 else tiny_llama(f"{tmp}/float")
        quant = TorchAoConfig(quant_type=GemliteInt4WeightOnlyConfig(group_size=64))
        model = AutoModelForCausalLM.from_pretrained(source, quantization_config=quant, dtype=dtype).to(device)
        print("q_proj weight:", repr(model.model.layers[0].self_attn.q_proj.weight)[:160])

        ids = torch.randint(0, model.config.vocab_size, (1, 8), device=device)
        out = model.generate(ids, max_new_tokens=8, do_sample=False)
        print("generated token ids:", out[0, 8:].tolist())

        model.save_pretrained(f"{tmp}/int4")  # model.safetensors + config.json (with the config)
        reloaded = AutoModelForCausalLM.from_pretrained(f"{tmp}/int4", dtype=dtype).to(device)
        with torch.no_grad():
            same = torch.equal(model(ids).logits, reloaded(ids).logits)
        print("reloaded logits identical:", same)
        if not same:
            raise SystemExit("reloaded model differs")


if __name__ == "__main__":
    main()
