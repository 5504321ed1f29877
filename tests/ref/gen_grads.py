#!/usr/bin/python3
"""PyTorch reference for the gradient engine (tests/train/test_grads.c).

Builds tiny random Llama-family models (llama MHA tied; llama GQA untied with llama3 rope
scaling and explicit head_dim; qwen2 with q/k/v biases; qwen3 with q/k norm; llama with
attention and MLP biases), writes each as a Hugging Face folder (config.json + model.safetensors,
F32) that ft_model_load reads, and for a fixed batch (labels with -100 positions) writes the mean cross-entropy loss and the gradient of EVERY trainable tensor for:
  full   : all model tensors                            -> <model>/ref_full.safetensors
  lora   : PEFT-style LoRA (plain and rsLoRA, dropout 0, all-linear and a subset), with random
           non-zero A and B so every term of the LoRA backward is exercised
                                                        -> <model>/ref_lora_<name>.safetensors
  freeze : only the tensors matching Axolotl-style unfrozen_parameters patterns
                                                        -> <model>/ref_freeze.safetensors
  tokens : LoRA (all-linear) plus PEFT trainable tokens (LoraConfig.trainable_token_indices):
           chosen embedding rows (tied model: also the head's, PEFT ties the adapters) and, in
           the dict form on an untied model, chosen lm_head rows; each trained tensor holds the
           rows' new values, which replace the base rows by index_copy (PEFT's
           TrainableTokensLayer.get_merged_weights). Rows start away from the base rows so the
           forward shows whether they are used.     -> <model>/ref_tokens.safetensors

The forward mirrors transformers' modeling_llama / modeling_qwen2 / modeling_qwen3 (eager
attention): RMSNorm computed in f32, rotate_half RoPE with cos/sin of cat(freqs, freqs), llama3
rope scaling of inv_freq, repeat_kv for GQA, causal softmax(q k^T / sqrt(D)), SiLU-gated MLP,
qwen2 q/k/v biases, qwen3 per-head q_norm/k_norm before RoPE, tied or untied lm_head. LoRA is
PEFT's: result + lora_B(lora_A(dropout(x))) * scaling with scaling alpha/r (alpha/sqrt(r) for
rsLoRA). Safetensors are written by hand (u64 LE header length, JSON header, raw bytes).

Usage: gen_grads.py OUT_DIR   (writes OUT_DIR/grads/...). Prints PASS lines for the runner.
"""
import json
import math
import os
import re
import struct
import sys

import torch
import torch.nn.functional as F

torch.set_num_threads(1)
DT = torch.float32

# ---------------------------------------------------------------------------------------------
# safetensors by hand


def st_write(path, tensors):
    """tensors: dict name -> torch tensor (float32 or int32). Written atomically."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        dtype = {torch.float32: "F32", torch.int32: "I32"}[t.dtype]
        b = t.numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# the model


class Cfg:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def inv_freq_of(c):
    D = c.head_dim
    inv = 1.0 / (c.rope_theta ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    rs = c.rope_scaling
    if rs and rs.get("rope_type") == "llama3":
        factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        lo_wl, hi_wl = old / lo, old / hi
        wl = 2 * math.pi / inv
        inv_l = torch.where(wl > lo_wl, inv / factor, inv)
        smooth = (old / wl - lo) / (hi - lo)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        medium = ~(wl < hi_wl) * ~(wl > lo_wl)
        inv = torch.where(medium, smoothed, inv_l)
    return inv


def rmsnorm(x, w, eps):
    xf = x.to(torch.float32)
    var = xf.pow(2).mean(-1, keepdim=True)
    xf = xf * torch.rsqrt(var + eps)
    return w * xf.to(x.dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def make_params(c, gen):
    """Random weights, HF names -> tensors (requires_grad set later)."""
    p = {}

    def rnd(*shape, std=0.3):
        return torch.randn(*shape, generator=gen, dtype=DT) * std

    C, HD, KVD, F_ = c.hidden_size, c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim, c.intermediate_size
    p["model.embed_tokens.weight"] = rnd(c.vocab_size, C, std=1.0)
    for l in range(c.num_hidden_layers):
        pre = f"model.layers.{l}."
        p[pre + "input_layernorm.weight"] = 1.0 + rnd(C, std=0.1)
        p[pre + "self_attn.q_proj.weight"] = rnd(HD, C)
        p[pre + "self_attn.k_proj.weight"] = rnd(KVD, C)
        p[pre + "self_attn.v_proj.weight"] = rnd(KVD, C)
        if c.qkv_bias or c.attn_bias:
            p[pre + "self_attn.q_proj.bias"] = rnd(HD, std=0.1)
            p[pre + "self_attn.k_proj.bias"] = rnd(KVD, std=0.1)
            p[pre + "self_attn.v_proj.bias"] = rnd(KVD, std=0.1)
        if c.qk_norm:
            p[pre + "self_attn.q_norm.weight"] = 1.0 + rnd(c.head_dim, std=0.1)
            p[pre + "self_attn.k_norm.weight"] = 1.0 + rnd(c.head_dim, std=0.1)
        p[pre + "self_attn.o_proj.weight"] = rnd(C, HD)
        if c.attn_bias:
            p[pre + "self_attn.o_proj.bias"] = rnd(C, std=0.1)
        p[pre + "post_attention_layernorm.weight"] = 1.0 + rnd(C, std=0.1)
        p[pre + "mlp.gate_proj.weight"] = rnd(F_, C)
        p[pre + "mlp.up_proj.weight"] = rnd(F_, C)
        p[pre + "mlp.down_proj.weight"] = rnd(C, F_)
        if c.mlp_bias:
            p[pre + "mlp.gate_proj.bias"] = rnd(F_, std=0.1)
            p[pre + "mlp.up_proj.bias"] = rnd(F_, std=0.1)
            p[pre + "mlp.down_proj.bias"] = rnd(C, std=0.1)
    p["model.norm.weight"] = 1.0 + rnd(C, std=0.1)
    if not c.tie_word_embeddings:
        p["lm_head.weight"] = rnd(c.vocab_size, C)
    return p


LORA_MODULES = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def forward_loss(c, p, inputs, labels, lora=None, tok=None):
    """Mean CE over labels != -100. lora: dict(scale, ab={module path: (A, B)}).
    tok: PEFT trainable tokens, {"embed": (ids, rows), "head": (ids, rows)} (either optional)."""
    B, T = inputs.shape
    H, KV, D = c.num_attention_heads, c.num_key_value_heads, c.head_dim
    eps = c.rms_norm_eps

    def linear(x, l, mod):
        pre = f"model.layers.{l}.{mod}"
        y = F.linear(x, p[pre + ".weight"], p.get(pre + ".bias"))
        if lora is not None and pre in lora["ab"]:
            A, Bm = lora["ab"][pre]
            y = y + F.linear(F.linear(x, A), Bm) * lora["scale"]  # dropout p=0: identity
        return y

    pos = torch.arange(T).unsqueeze(0).expand(B, T)
    inv = inv_freq_of(c)
    freqs = (inv[None, :, None].float() @ pos[:, None, :].float()).transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos().unsqueeze(1), emb.sin().unsqueeze(1)  # (B,1,T,D)
    causal = torch.full((T, T), float("-inf")).triu(1)

    E = p["model.embed_tokens.weight"]
    if tok and "embed" in tok:
        E = E.index_copy(0, tok["embed"][0], tok["embed"][1])
    h = F.embedding(inputs, E)
    for l in range(c.num_hidden_layers):
        pre = f"model.layers.{l}."
        x = rmsnorm(h, p[pre + "input_layernorm.weight"], eps)
        q = linear(x, l, "self_attn.q_proj").view(B, T, H, D)
        k = linear(x, l, "self_attn.k_proj").view(B, T, KV, D)
        v = linear(x, l, "self_attn.v_proj").view(B, T, KV, D).transpose(1, 2)
        if c.qk_norm:
            q = rmsnorm(q, p[pre + "self_attn.q_norm.weight"], eps)
            k = rmsnorm(k, p[pre + "self_attn.k_norm.weight"], eps)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = H // KV
        k = k[:, :, None].expand(B, KV, rep, T, D).reshape(B, H, T, D)  # repeat_kv
        v = v[:, :, None].expand(B, KV, rep, T, D).reshape(B, H, T, D)
        att = torch.matmul(q, k.transpose(2, 3)) * (D ** -0.5) + causal
        att = F.softmax(att, dim=-1, dtype=torch.float32).to(q.dtype)
        o = torch.matmul(att, v).transpose(1, 2).reshape(B, T, H * D)
        h = h + linear(o, l, "self_attn.o_proj")
        x = rmsnorm(h, p[pre + "post_attention_layernorm.weight"], eps)
        g = F.silu(linear(x, l, "mlp.gate_proj")) * linear(x, l, "mlp.up_proj")
        h = h + linear(g, l, "mlp.down_proj")
    h = rmsnorm(h, p["model.norm.weight"], eps)
    head = E if c.tie_word_embeddings else p["lm_head.weight"]  # tied: the tokens' rows too
    if tok and "head" in tok and not c.tie_word_embeddings:
        head = head.index_copy(0, tok["head"][0], tok["head"][1])
    logits = F.linear(h, head).float()
    return F.cross_entropy(logits.view(-1, c.vocab_size), labels.view(-1), ignore_index=-100)


def config_json(c):
    j = {
        "architectures": [c.arch],
        "model_type": c.model_type,
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads,
        "num_key_value_heads": c.num_key_value_heads,
        "vocab_size": c.vocab_size,
        "max_position_embeddings": c.max_position_embeddings,
        "rms_norm_eps": c.rms_norm_eps,
        "rope_theta": c.rope_theta,
        "rope_scaling": c.rope_scaling,
        "tie_word_embeddings": c.tie_word_embeddings,
        "hidden_act": "silu",
        "torch_dtype": "float32",
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    if c.explicit_head_dim:
        j["head_dim"] = c.head_dim
    if c.model_type == "llama":
        j["attention_bias"] = c.attn_bias
        j["mlp_bias"] = c.mlp_bias
    if c.model_type == "qwen3":
        j["attention_bias"] = False
    return j


MODELS = [
    # llama, multi-head attention, tied embeddings
    Cfg(name="llama_mha", arch="LlamaForCausalLM", model_type="llama", hidden_size=32,
        intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
        head_dim=8, explicit_head_dim=False, vocab_size=61, max_position_embeddings=64,
        rms_norm_eps=1e-5, rope_theta=10000.0, rope_scaling=None, tie_word_embeddings=True,
        qkv_bias=False, qk_norm=False),
    # llama 3 style: GQA, untied head, llama3 rope scaling, explicit head_dim != hidden/heads
    Cfg(name="llama_gqa", arch="LlamaForCausalLM", model_type="llama", hidden_size=32,
        intermediate_size=40, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=12, explicit_head_dim=True, vocab_size=67, max_position_embeddings=64,
        rms_norm_eps=1e-5, rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8},
        tie_word_embeddings=False, qkv_bias=False, qk_norm=False),
    # qwen2: q/k/v biases, GQA, tied
    Cfg(name="qwen2", arch="Qwen2ForCausalLM", model_type="qwen2", hidden_size=24,
        intermediate_size=56, num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=2,
        head_dim=4, explicit_head_dim=False, vocab_size=53, max_position_embeddings=64,
        rms_norm_eps=1e-6, rope_theta=1000000.0, rope_scaling=None, tie_word_embeddings=True,
        qkv_bias=True, qk_norm=False),
    # qwen3: per-head q/k norm, explicit head_dim, untied
    Cfg(name="qwen3", arch="Qwen3ForCausalLM", model_type="qwen3", hidden_size=32,
        intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=16, explicit_head_dim=True, vocab_size=59, max_position_embeddings=64,
        rms_norm_eps=1e-6, rope_theta=1000000.0, rope_scaling=None, tie_word_embeddings=False,
        qkv_bias=False, qk_norm=True),
    # llama with attention_bias (q/k/v/o biases) and mlp_bias (gate/up/down biases)
    Cfg(name="llama_bias", arch="LlamaForCausalLM", model_type="llama", hidden_size=16,
        intermediate_size=40, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=4, explicit_head_dim=False, vocab_size=41, max_position_embeddings=64,
        rms_norm_eps=1e-5, rope_theta=10000.0, rope_scaling=None, tie_word_embeddings=False,
        qkv_bias=False, qk_norm=False, attn_bias=True, mlp_bias=True),
]
for _c in MODELS:
    _c.__dict__.setdefault("attn_bias", False)
    _c.__dict__.setdefault("mlp_bias", False)

# LoRA variants: name, r, alpha, rslora, target module indices (FT_LORA_* bit order)
LORAS = [
    ("all", 4, 8.0, False, list(range(7))),
    ("rs_qv", 4, 16.0, True, [0, 2]),
    ("rs_mlp_o", 2, 6.0, True, [3, 4, 5, 6]),
]

# Axolotl-style unfrozen_parameters ('.' literal, anchored at the start) and its Python meaning
FREEZE = ["lm_head", "model.layers.1.mlp.*", "model.norm.weight"]


# trainable tokens per model: "list" = LoraConfig(trainable_token_indices=[...]) (embedding; a
# tied head follows), "dict" = {"embed_tokens": [...], "lm_head": [...]} on an untied model
TOKENS = {"llama_mha": "list", "llama_gqa": "dict", "qwen3": "list"}
TOK_EMBED_KEY = "base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta"
TOK_HEAD_KEY = "base_model.model.lm_head.token_adapter.trainable_tokens_delta"


def axolotl_match(pattern, name):
    return re.match(pattern.replace(".", "\\."), name) is not None


B, T = 2, 9


def batch(c, gen):
    inputs = torch.randint(0, c.vocab_size, (B, T), generator=gen)
    labels = torch.randint(0, c.vocab_size, (B, T), generator=gen)
    labels[0, 0] = labels[0, 4] = labels[1, 2] = -100
    labels[1, 7:] = -100
    return inputs, labels


def grads_of(loss, named):
    names = list(named)
    gs = torch.autograd.grad(loss, [named[n] for n in names])
    return {"grad." + n: g for n, g in zip(names, gs)}


def write_tokens_ref(c, d, frozen, inputs, labels, common, gen, form):
    """LoRA r 4 alpha 8 on all projections plus trainable tokens; ids taken from the batch so
    rows are looked up (some twice), predicted as targets, or only competing in the softmax."""
    ab, named = {}, {}
    for l in range(c.num_hidden_layers):
        for j in range(7):
            pre = f"model.layers.{l}.{LORA_MODULES[j]}"
            W = frozen[pre + ".weight"]
            bound = 1.0 / math.sqrt(W.shape[1])
            A = torch.empty(4, W.shape[1], dtype=DT).uniform_(-bound, bound, generator=gen)
            Bm = torch.randn(W.shape[0], 4, generator=gen, dtype=DT) * 0.2
            ab[pre] = (A.requires_grad_(True), Bm.requires_grad_(True))
            named[f"base_model.model.{pre}.lora_A.weight"] = ab[pre][0]
            named[f"base_model.model.{pre}.lora_B.weight"] = ab[pre][1]
    seen = set(inputs.flatten().tolist())
    absent = next(v for v in range(c.vocab_size - 1, -1, -1) if v not in seen)
    ids_e = list(dict.fromkeys([int(inputs[1, 3]), absent, int(inputs[0, 1]), int(labels[1, 1])]))
    ids_h = list(dict.fromkeys([int(labels[0, 2]), int(inputs[0, 1]), int(labels[1, 4])]))
    tok, ids = {}, {"embed": ids_e}
    if form == "dict":
        ids["head"] = ids_h
    for part, key in (("embed", TOK_EMBED_KEY), ("head", TOK_HEAD_KEY)):
        if part not in ids:
            continue
        base = frozen["model.embed_tokens.weight" if part == "embed" else "lm_head.weight"]
        ix = torch.tensor(ids[part])
        rows = (base[ix] + torch.randn(len(ix), base.shape[1], generator=gen, dtype=DT) * 0.5)
        rows.requires_grad_(True)
        tok[part] = (ix, rows)
        named[key] = rows
    loss = forward_loss(c, frozen, inputs, labels, lora={"scale": 2.0, "ab": ab}, tok=tok)
    rec = dict(common, loss=loss.detach().reshape(1))
    rec.update({n: t.detach() for n, t in named.items()})
    rec.update(grads_of(loss, named))
    rec["lora.r"] = torch.tensor([4], dtype=torch.int32)
    rec["lora.alpha"] = torch.tensor([8.0], dtype=DT)
    rec["lora.rslora"] = torch.tensor([0], dtype=torch.int32)
    rec["lora.targets"] = torch.tensor([127], dtype=torch.int32)
    rec["tok.embed"] = torch.tensor(ids_e, dtype=torch.int32)
    if form == "dict":
        rec["tok.head"] = torch.tensor(ids_h, dtype=torch.int32)
    rec["tok.dict"] = torch.tensor([int(form == "dict")], dtype=torch.int32)
    st_write(os.path.join(d, "ref_tokens.safetensors"), rec)


def main():
    out = os.path.join(sys.argv[1], "grads")
    os.makedirs(out, exist_ok=True)
    for mi, c in enumerate(MODELS):
        gen = torch.Generator().manual_seed(1234 + mi)
        d = os.path.join(out, c.name)
        os.makedirs(d, exist_ok=True)
        p = make_params(c, gen)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(config_json(c), f, indent=2)
        st_write(os.path.join(d, "model.safetensors"), p)
        inputs, labels = batch(c, gen)
        common = {"inputs": inputs.to(torch.int32), "labels": labels.to(torch.int32)}

        # full fine-tuning
        params = {n: t.clone().requires_grad_(True) for n, t in p.items()}
        loss = forward_loss(c, params, inputs, labels)
        rec = dict(common, loss=loss.detach().reshape(1))
        rec.update(grads_of(loss, params))
        st_write(os.path.join(d, "ref_full.safetensors"), rec)

        # freeze: only tensors matching the patterns are trained (others have requires_grad off)
        params = {n: t.clone().requires_grad_(any(axolotl_match(q, n) for q in FREEZE))
                  for n, t in p.items()}
        loss = forward_loss(c, params, inputs, labels)
        rec = dict(common, loss=loss.detach().reshape(1))
        rec.update(grads_of(loss, {n: t for n, t in params.items() if t.requires_grad}))
        st_write(os.path.join(d, "ref_freeze.safetensors"), rec)

        # LoRA
        frozen = {n: t.clone() for n, t in p.items()}
        for name, r, alpha, rs, mods in LORAS:
            ab, named = {}, {}
            for l in range(c.num_hidden_layers):
                for j in mods:
                    pre = f"model.layers.{l}.{LORA_MODULES[j]}"
                    W = frozen[pre + ".weight"]
                    A = torch.empty(r, W.shape[1], dtype=DT)
                    # PEFT's init for A; B random instead of zero so dA and dx are non-trivial
                    bound = 1.0 / math.sqrt(W.shape[1])  # kaiming_uniform_(a=sqrt(5))
                    A.uniform_(-bound, bound, generator=gen)
                    Bm = torch.randn(W.shape[0], r, generator=gen, dtype=DT) * 0.2
                    A.requires_grad_(True)
                    Bm.requires_grad_(True)
                    ab[pre] = (A, Bm)
                    named[f"base_model.model.{pre}.lora_A.weight"] = A
                    named[f"base_model.model.{pre}.lora_B.weight"] = Bm
            scale = alpha / math.sqrt(r) if rs else alpha / r
            loss = forward_loss(c, frozen, inputs, labels, lora={"scale": scale, "ab": ab})
            rec = dict(common, loss=loss.detach().reshape(1))
            rec.update({n: t.detach() for n, t in named.items()})
            rec.update(grads_of(loss, named))
            rec["lora.r"] = torch.tensor([r], dtype=torch.int32)
            rec["lora.alpha"] = torch.tensor([alpha], dtype=DT)
            rec["lora.rslora"] = torch.tensor([int(rs)], dtype=torch.int32)
            rec["lora.targets"] = torch.tensor([sum(1 << j for j in mods)], dtype=torch.int32)
            st_write(os.path.join(d, f"ref_lora_{name}.safetensors"), rec)
        if c.name in TOKENS:
            write_tokens_ref(c, d, frozen, inputs, labels, common, gen, TOKENS[c.name])
        print(f"PASS gen_grads_{c.name}")
    with open(os.path.join(out, "freeze_patterns.txt"), "w") as f:
        f.write("\n".join(FREEZE) + "\n")


if __name__ == "__main__":
    main()
