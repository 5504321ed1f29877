#!/usr/bin/env python3
"""PyTorch reference for the training benchmark (bench/train.sh): a plain-torch Llama (the HF
LlamaForCausalLM computation: RMSNorm, rotate-half RoPE, eager GQA attention with K/V repeated,
SwiGLU MLP, tied or untied head) with optional PEFT-style LoRA on all seven linear projections,
trained with torch.optim.AdamW on random token batches. transformers/peft are not installed here,
so this is the closest a PyTorch user gets on this machine.
  ref_train.py MODEL_DIR full|lora fp32|bf16 B T STEPS [R=8 ALPHA=16]
fp32: plain f32 (OpenBLAS matmuls). bf16: torch.autocast('cpu', dtype=torch.bfloat16) around the
forward and loss (oneDNN bf16 matmuls underneath), master weights and AdamW in f32.
Prints one line: "torch tok_s X step_s Y peak_rss_mb Z loss_first A loss_last B tok_per_cpu_s P
step_min_s S step_med_s D" (P: tokens per second of process CPU time, all threads; S: the fastest
timed step, the one least disturbed by other load on the host; D: the median timed step).
Timing: one warm-up step, then the mean of STEPS timed steps (forward, backward,
optimizer step, zero_grad).
"""
import json
import math
import os
import resource
import struct
import sys
import time

import torch
import torch.nn.functional as Fn

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
model_dir, method, prec = sys.argv[1], sys.argv[2], sys.argv[3]
B, T, STEPS = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
if min(B, T, STEPS) < 1:
    sys.exit("ref_train.py: B, T and STEPS must be at least 1")
R = int(sys.argv[7]) if len(sys.argv) > 7 else 8
ALPHA = float(sys.argv[8]) if len(sys.argv) > 8 else 16.0


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        assert v["dtype"] in ("F32", "BF16"), v["dtype"]
        a, b = v["data_offsets"]
        dt = torch.float32 if v["dtype"] == "F32" else torch.bfloat16
        # master weights in f32, as ftune keeps them (a BF16 checkpoint widens exactly)
        out[k] = torch.frombuffer(bytearray(data[a:b]), dtype=dt).reshape(v["shape"]).float()
    return out


cfg = json.load(open(os.path.join(model_dir, "config.json")))
W = load_safetensors(os.path.join(model_dir, "model.safetensors"))
C, L, H = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"]
KV = cfg.get("num_key_value_heads", H)
D = cfg.get("head_dim", C // H)
V, eps, theta = cfg["vocab_size"], cfg["rms_norm_eps"], cfg.get("rope_theta", 10000.0)


class Lin(torch.nn.Module):
    """nn.Linear (no bias) with an optional LoRA branch: W x + (B (A x)) * alpha / r."""

    def __init__(self, w, lora):
        super().__init__()
        self.weight = torch.nn.Parameter(w.clone(), requires_grad=not lora)
        self.lora = lora
        if lora:
            self.A = torch.nn.Parameter(torch.empty(R, w.shape[1]))
            torch.nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
            self.B = torch.nn.Parameter(torch.zeros(w.shape[0], R))
            self.s = ALPHA / R

    def forward(self, x):
        y = Fn.linear(x, self.weight)
        if self.lora:
            y = y + Fn.linear(Fn.linear(x, self.A), self.B) * self.s
        return y


class Norm(torch.nn.Module):
    def __init__(self, w, train):
        super().__init__()
        self.weight = torch.nn.Parameter(w.clone(), requires_grad=train)

    def forward(self, x):
        dt = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        return self.weight * x.to(dt)


def rot_half(x):
    return torch.cat((-x[..., D // 2:], x[..., : D // 2]), dim=-1)


class Layer(torch.nn.Module):
    def __init__(self, l, lora):
        super().__init__()
        p = f"model.layers.{l}."
        full = not lora
        self.n1 = Norm(W[p + "input_layernorm.weight"], full)
        self.n2 = Norm(W[p + "post_attention_layernorm.weight"], full)
        self.q = Lin(W[p + "self_attn.q_proj.weight"], lora)
        self.k = Lin(W[p + "self_attn.k_proj.weight"], lora)
        self.v = Lin(W[p + "self_attn.v_proj.weight"], lora)
        self.o = Lin(W[p + "self_attn.o_proj.weight"], lora)
        self.g = Lin(W[p + "mlp.gate_proj.weight"], lora)
        self.u = Lin(W[p + "mlp.up_proj.weight"], lora)
        self.d = Lin(W[p + "mlp.down_proj.weight"], lora)

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        h = self.n1(x)
        q = self.q(h).view(b, t, H, D).transpose(1, 2)
        k = self.k(h).view(b, t, KV, D).transpose(1, 2)
        v = self.v(h).view(b, t, KV, D).transpose(1, 2)
        q = q * cos + rot_half(q) * sin
        k = k * cos + rot_half(k) * sin
        k = k.repeat_interleave(H // KV, dim=1)
        v = v.repeat_interleave(H // KV, dim=1)
        s = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(D) + mask
        p = torch.softmax(s, dim=-1, dtype=torch.float32).to(q.dtype)
        a = torch.matmul(p, v).transpose(1, 2).reshape(b, t, H * D)
        x = x + self.o(a)
        h = self.n2(x)
        return x + self.d(Fn.silu(self.g(h)) * self.u(h))


class Model(torch.nn.Module):
    def __init__(self, lora):
        super().__init__()
        self.emb = torch.nn.Parameter(W["model.embed_tokens.weight"].clone(), requires_grad=not lora)
        self.layers = torch.nn.ModuleList([Layer(l, lora) for l in range(L)])
        self.norm = Norm(W["model.norm.weight"], not lora)
        head = W.get("lm_head.weight")
        self.head = None if head is None else torch.nn.Parameter(head.clone(), requires_grad=not lora)
        inv = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.float32) / D))
        f = torch.outer(torch.arange(T, dtype=torch.float32), inv)
        e = torch.cat((f, f), dim=-1)
        self.cos, self.sin = e.cos(), e.sin()
        self.mask = torch.full((T, T), float("-inf")).triu(1)

    def forward(self, ids, labels):
        x = Fn.embedding(ids, self.emb)
        for layer in self.layers:
            x = layer(x, self.cos, self.sin, self.mask)
        x = self.norm(x)
        logits = Fn.linear(x, self.emb if self.head is None else self.head)
        return Fn.cross_entropy(logits.float().view(-1, V), labels.view(-1))


model = Model(method == "lora")
del W
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=1e-4 if method == "full" else 1e-3, weight_decay=0.0)
g = torch.Generator().manual_seed(1234)


def batch():
    ids = torch.randint(3, V, (B, T + 1), generator=g)
    return ids[:, :T].contiguous(), ids[:, 1:].contiguous()


def step():
    ids, labels = batch()
    if prec == "bf16":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(ids, labels)
    else:
        loss = model(ids, labels)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()


first = step()  # warm-up (allocations, oneDNN primitive creation)
t0, c0 = time.time(), time.process_time()
last = first
took = []
for _ in range(STEPS):
    ts = time.time()
    last = step()
    took.append(time.time() - ts)
best = min(took)
took.sort()
med = took[STEPS // 2] if STEPS % 2 else 0.5 * (took[STEPS // 2 - 1] + took[STEPS // 2])
dt = (time.time() - t0) / STEPS
cpu = (time.process_time() - c0) / STEPS
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"torch tok_s {B * T / dt:.1f} step_s {dt:.3f} peak_rss_mb {rss:.0f} "
      f"loss_first {first:.4f} loss_last {last:.4f} tok_per_cpu_s {B * T / cpu:.1f} "
      f"step_min_s {best:.3f} step_med_s {med:.3f}")
