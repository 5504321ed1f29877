#!/usr/bin/env python3
"""Write a SmolLM-135M-shaped Llama with random weights as a Hugging Face folder (config.json +
model.safetensors, BF16 as the released SmolLM checkpoints are, ~270 MB) for the training benchmark: hidden 576, intermediate 1536,
30 layers, 9 heads, 3 KV heads (head_dim 64), vocab 49152, tied embeddings. Weights ~ N(0, 0.02)
(HF's initializer_range), norms 1. Deterministic (seed 0). Not a test fixture; keep it out of git.
  make_smollm.py OUT_DIR
"""
import json
import os
import struct
import sys

import torch

out = sys.argv[1] if len(sys.argv) > 1 else "models/smollm-135m-random"
if os.path.exists(os.path.join(out, "model.safetensors")):
    sys.exit(0)
os.makedirs(out, exist_ok=True)
C, F, L, H, KV, V = 576, 1536, 30, 9, 3, 49152
D = C // H
cfg = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
    "hidden_size": C, "intermediate_size": F, "num_hidden_layers": L,
    "num_attention_heads": H, "num_key_value_heads": KV, "vocab_size": V,
    "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    "rope_scaling": None, "tie_word_embeddings": True, "attention_bias": False,
    "mlp_bias": False, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16",
}
g = torch.Generator().manual_seed(0)
tensors = [("model.embed_tokens.weight", (V, C))]
for l in range(L):
    p = f"model.layers.{l}."
    tensors += [(p + "input_layernorm.weight", (C,)),
                (p + "self_attn.q_proj.weight", (H * D, C)),
                (p + "self_attn.k_proj.weight", (KV * D, C)),
                (p + "self_attn.v_proj.weight", (KV * D, C)),
                (p + "self_attn.o_proj.weight", (C, H * D)),
                (p + "post_attention_layernorm.weight", (C,)),
                (p + "mlp.gate_proj.weight", (F, C)),
                (p + "mlp.up_proj.weight", (F, C)),
                (p + "mlp.down_proj.weight", (C, F))]
tensors.append(("model.norm.weight", (C,)))
header, off = {"__metadata__": {"format": "pt"}}, 0
for name, shape in tensors:
    n = 2
    for s in shape:
        n *= s
    header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + n]}
    off += n
hb = json.dumps(header).encode()
hb += b" " * (-len(hb) % 8)
tmp = os.path.join(out, "model.safetensors.tmp")
with open(tmp, "wb") as f:
    f.write(struct.pack("<Q", len(hb)))
    f.write(hb)
    for name, shape in tensors:
        t = torch.ones(shape) if len(shape) == 1 else torch.randn(shape, generator=g) * 0.02
        f.write(t.to(torch.bfloat16).contiguous().view(torch.int16).numpy().tobytes())
os.replace(tmp, os.path.join(out, "model.safetensors"))
with open(os.path.join(out, "config.json"), "w") as f:
    json.dump(cfg, f, indent=2)
print(f"make_smollm: wrote {out} ({off / 1e6:.0f} MB of weights)")
