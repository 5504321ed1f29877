#!/usr/bin/python3
"""PyTorch reference for every CPU kernel (forward output and autograd gradients).

Writes raw little-endian f32 (ids: i32) files $FT_REF/kernels/<case>.<tensor>.bin, read by
tests/kernels/test_kernels.c, which knows each tensor's shape. Inputs are random (seeded), and the
C test runs its kernels on exactly these inputs. The ops are written in plain torch the way Hugging
Face's modeling_llama computes them (nn.Linear, LlamaRMSNorm, rotate_half RoPE, eager attention with
repeat_kv and an additive -inf mask, silu(gate)*up, nn.Embedding).
"""
import os
import sys

import torch

torch.manual_seed(1234)
torch.set_num_threads(1)
out_dir = os.path.join(sys.argv[1], "kernels")
os.makedirs(out_dir, exist_ok=True)


def save(case, name, t):
    t = t.detach().contiguous()
    t = t.to(torch.int32) if t.dtype in (torch.int64, torch.int32) else t.to(torch.float32)
    with open(os.path.join(out_dir, f"{case}.{name}.bin"), "wb") as f:
        f.write(t.numpy().tobytes())


def leaf(*shape):
    return torch.randn(*shape, dtype=torch.float32).requires_grad_(True)


# matmul: out = inp @ w^T + bias, M=7 K=13 N=5
def case_matmul(case, M, K, N):
    inp, w, b = leaf(M, K), leaf(N, K), leaf(N)
    out = torch.nn.functional.linear(inp, w, b)
    dout = torch.randn(M, N)
    out.backward(dout)
    for n, t in [("inp", inp), ("w", w), ("bias", b), ("out", out), ("dout", dout),
                 ("dinp", inp.grad), ("dw", w.grad), ("dbias", b.grad)]:
        save(case, n, t)


case_matmul("matmul", 7, 13, 5)


# rmsnorm: M=5 C=19 eps=1e-5, as LlamaRMSNorm in f32
def rmsnorm(x, w, eps):
    var = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + eps))


x, w = leaf(5, 19), (1.0 + 0.1 * torch.randn(19)).requires_grad_(True)
y = rmsnorm(x, w, 1e-5)
dy = torch.randn(5, 19)
y.backward(dy)
for n, t in [("inp", x), ("w", w), ("out", y), ("dout", dy), ("dinp", x.grad), ("dw", w.grad)]:
    save("rmsnorm", n, t)


# rope: x (M=4, nh=3, D=8) at positions [0,3,7,100], theta 10000
def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


D = 8
inv_freq = 1.0 / (10000.0 ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
pos = torch.tensor([0, 3, 7, 100])
freqs = pos.float()[:, None] * inv_freq[None, :]
emb = torch.cat((freqs, freqs), dim=-1)
cos, sin = emb.cos()[:, None, :], emb.sin()[:, None, :]
x = leaf(4, 3, D)
y = x * cos + rotate_half(x) * sin
dy = torch.randn(4, 3, D)
y.backward(dy)
for n, t in [("inp", x), ("pos", pos), ("inv_freq", inv_freq), ("out", y), ("dout", dy),
             ("dinp", x.grad)]:
    save("rope", n, t)

# swiglu: N=37
g, u = leaf(37), leaf(37)
with torch.no_grad():
    g[0] = 30.0  # saturated sigmoid
    g[1] = -30.0
y = torch.nn.functional.silu(g) * u
dy = torch.randn(37)
y.backward(dy)
for n, t in [("gate", g), ("up", u), ("out", y), ("dout", dy), ("dgate", g.grad), ("dup", u.grad)]:
    save("swiglu", n, t)


# attention: q (B,T,H,D), k, v (B,T,KV,D), causal, optional seg (B,T); eager HF attention
def attention(q, k, v, seg):
    B, T, H, D = q.shape
    KV = k.shape[2]
    qh, kh, vh = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    kh = kh[:, :, None].expand(B, KV, H // KV, T, D).reshape(B, H, T, D)  # repeat_kv
    vh = vh[:, :, None].expand(B, KV, H // KV, T, D).reshape(B, H, T, D)
    s = torch.matmul(qh, kh.transpose(2, 3)) * (D ** -0.5)
    allow = torch.tril(torch.ones(T, T, dtype=torch.bool))[None, None]
    if seg is not None:
        allow = allow & (seg[:, None, :, None] == seg[:, None, None, :])
    s = s.masked_fill(~allow, float("-inf"))
    p = torch.softmax(s, dim=-1, dtype=torch.float32)
    return torch.matmul(p, vh).transpose(1, 2).contiguous()


def case_attention(case, B, T, H, KV, D, with_seg):
    q, k, v = leaf(B, T, H, D), leaf(B, T, KV, D), leaf(B, T, KV, D)
    seg = None
    if with_seg:
        seg = torch.zeros(B, T, dtype=torch.int64)
        for b in range(B):
            cuts = sorted(torch.randperm(T - 1)[:2].add(1).tolist())
            for c in cuts:
                seg[b, c:] += 1
    out = attention(q, k, v, seg)
    dout = torch.randn(B, T, H, D)
    out.backward(dout)
    items = [("q", q), ("k", k), ("v", v), ("out", out), ("dout", dout), ("dq", q.grad),
             ("dk", k.grad), ("dv", v.grad)]
    if seg is not None:
        items.append(("seg", seg))
    for n, t in items:
        save(case, n, t)


case_attention("attn_gqa3", 2, 7, 6, 2, 8, False)
case_attention("attn_seg", 2, 9, 4, 2, 6, True)
case_attention("attn_mha", 1, 5, 2, 2, 4, False)

# embedding: V=11 C=6, ids with repeats
table = leaf(11, 6)
ids = torch.tensor([3, 0, 10, 3, 3, 7, 0, 1, 9])
y = torch.nn.functional.embedding(ids, table)
dy = torch.randn(9, 6)
y.backward(dy)
for n, t in [("table", table), ("ids", ids), ("out", y), ("dout", dy), ("dtable", table.grad)]:
    save("embedding", n, t)

print("PASS gen_kernels (torch %s)" % torch.__version__)
