#!/usr/bin/python3
"""PyTorch reference for bench_generate: the same model, prompt and steps, plain torch (no_grad,
f32, eager attention with a KV cache that grows by concatenation as HF's DynamicCache does).
    ref_generate.py MODEL_DIR [PROMPT_LEN=128] [GEN_LEN=128] [REPS=3]
Plain Llama/Mistral layers only (no biases, no q/k norm, default RoPE): what stories15M needs.
Threads: torch.set_num_threads(OMP_NUM_THREADS).
Prints "torch prompt_tok_s <x> gen_tok_s <y> ids <first 16 generated ids>"."""
import json
import os
import struct
import sys
import time

import torch

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
d = sys.argv[1]
P = int(sys.argv[2]) if len(sys.argv) > 2 else 128
G = int(sys.argv[3]) if len(sys.argv) > 3 else 128
R = int(sys.argv[4]) if len(sys.argv) > 4 else 3
cfg = json.load(open(os.path.join(d, "config.json")))
raw = open(os.path.join(d, "model.safetensors"), "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
DT = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
W = {}
for k, v in hdr.items():
    if k == "__metadata__":
        continue
    a, b = v["data_offsets"]
    W[k] = torch.frombuffer(bytearray(raw[8 + n + a:8 + n + b]), dtype=DT[v["dtype"]]).reshape(v["shape"]).float()

assert cfg["model_type"] in ("llama", "mistral") and not cfg.get("rope_scaling") \
    and not cfg.get("attention_bias") and not cfg.get("mlp_bias"), "ref_generate: unsupported variant"
C, H, KV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
D = cfg.get("head_dim") or C // H
L, eps, V = cfg["num_hidden_layers"], cfg["rms_norm_eps"], cfg["vocab_size"]
inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
head = W.get("lm_head.weight", W["model.embed_tokens.weight"])
lin = torch.nn.functional.linear


def rms(x, w):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rot(x):
    return torch.cat((-x[..., D // 2:], x[..., :D // 2]), -1)


def forward(ids, pos0, cache):
    T = len(ids)
    x = W["model.embed_tokens.weight"][torch.tensor(ids)]
    f = torch.arange(pos0, pos0 + T).float()[:, None] * inv_freq[None]
    e = torch.cat((f, f), -1)
    cos, sin = e.cos(), e.sin()
    for l in range(L):
        p = f"model.layers.{l}."
        h = rms(x, W[p + "input_layernorm.weight"])
        q = lin(h, W[p + "self_attn.q_proj.weight"]).view(T, H, D).transpose(0, 1)
        k = lin(h, W[p + "self_attn.k_proj.weight"]).view(T, KV, D).transpose(0, 1)
        v = lin(h, W[p + "self_attn.v_proj.weight"]).view(T, KV, D).transpose(0, 1)
        q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
        if l in cache:
            k, v = torch.cat((cache[l][0], k), 1), torch.cat((cache[l][1], v), 1)
        cache[l] = (k, v)
        S = k.shape[1]
        k = k[:, None].expand(KV, H // KV, S, D).reshape(H, S, D)
        v = v[:, None].expand(KV, H // KV, S, D).reshape(H, S, D)
        s = torch.matmul(q, k.transpose(1, 2)) * D ** -0.5
        if T > 1:
            s = s + torch.full((T, S), float("-inf")).triu(S - T + 1)
        o = torch.matmul(torch.softmax(s, -1), v).transpose(0, 1).reshape(T, H * D)
        x = x + lin(o, W[p + "self_attn.o_proj.weight"])
        h = rms(x, W[p + "post_attention_layernorm.weight"])
        x = x + lin(torch.nn.functional.silu(lin(h, W[p + "mlp.gate_proj.weight"])) * lin(h, W[p + "mlp.up_proj.weight"]),
                    W[p + "mlp.down_proj.weight"])
    return lin(rms(x[-1:], W["model.norm.weight"]), head)[0]


ids = [1 if i == 0 else (i * 7919) % (V - 3) + 3 for i in range(P)]
bp = bg = 1e30
gen = []
with torch.no_grad():
    for r in range(R):
        cache = {}
        t0 = time.perf_counter()
        lg = forward(ids, 0, cache)
        t1 = time.perf_counter()
        for i in range(G):
            nxt = int(lg.argmax())
            if r == 0 and len(gen) < 16:
                gen.append(nxt)
            lg = forward([nxt], P + i, cache)
        t2 = time.perf_counter()
        bp, bg = min(bp, t1 - t0), min(bg, t2 - t1)
print(f"torch prompt_tok_s {P / bp:.1f} gen_tok_s {G / bg:.1f} ids {','.join(map(str, gen))}")
