"""Reference RoPE inverse frequencies, computed the way Hugging Face transformers does
(modeling_rope_utils: _compute_default_rope_parameters and _compute_llama3_parameters, float32 torch
ops), for a few configs. Writes OUT/rope/<case>.json (a config.json) and OUT/rope/inv_freq.safetensors
(tensor <case> per config). tests/model/test_rope_ref compares ft_rope_inv_freq with these."""
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

BASE = {"hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 1, "vocab_size": 32}
CASES = {
    "llama_default_d48": dict(model_type="llama", num_attention_heads=6, hidden_size=288),
    "qwen2_theta1e6_d128": dict(model_type="qwen2", num_attention_heads=1, hidden_size=128, rope_theta=1e6),
    "llama31_d128": dict(model_type="llama", num_attention_heads=1, hidden_size=128, rope_theta=500000.0,
                         rope_scaling=dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                           original_max_position_embeddings=8192, rope_type="llama3")),
    "llama32_d64": dict(model_type="llama", num_attention_heads=2, hidden_size=128, head_dim=64,
                        rope_theta=500000.0,
                        rope_scaling=dict(factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                          original_max_position_embeddings=8192, rope_type="llama3")),
    # small original context so that all three regions (kept, smoothed, divided) occur at D=16
    "llama3_small_d16": dict(model_type="llama", num_attention_heads=2, hidden_size=32, rope_theta=10000.0,
                             rope_scaling=dict(type="llama3", factor=4, low_freq_factor=1, high_freq_factor=2,
                                               original_max_position_embeddings=64)),
}


def default_inv_freq(base, dim):
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).to(dtype=torch.float) / dim))


def llama3_inv_freq(base, dim, rs):
    inv_freq = default_inv_freq(base, dim)
    factor = rs["factor"]
    low_freq_factor = rs["low_freq_factor"]
    high_freq_factor = rs["high_freq_factor"]
    old_context_len = rs["original_max_position_embeddings"]
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)


def main(out):
    d = os.path.join(out, "rope")
    os.makedirs(d, exist_ok=True)
    tensors = {}
    for name, over in CASES.items():
        cfg = dict(BASE, **over)
        with open(os.path.join(d, name + ".json"), "w") as f:
            json.dump(cfg, f, indent=2)
        dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
        base = cfg.get("rope_theta", 10000.0)
        rs = cfg.get("rope_scaling")
        tensors[name] = llama3_inv_freq(base, dim, rs) if rs else default_inv_freq(base, dim)
    st_io.save(os.path.join(d, "inv_freq.safetensors"), tensors)
    print("PASS gen_rope (%d cases)" % len(tensors))


if __name__ == "__main__":
    main(sys.argv[1])
