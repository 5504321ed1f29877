#!/usr/bin/python3
"""Tiny random Hugging Face models of every supported family/variant, and their reference logits.

For each case writes $FT_REF/models/<case>/config.json + model.safetensors (a HF folder ftune
loads), and $FT_REF/models/<case>.ref.safetensors holding:
  ids (I32, [T])        the input tokens
  logits (F32, [T, V])  the reference logits of every position (float32 forward)
  loss (F64, [1])       mean NLL of ids[1:] given their prefix, from those logits in float64
  next (I32, [1])       argmax of the last position's logits
  greedy (I32, [G])     greedy continuation of ids[:5] (full recompute per step), G tokens
For llama_gqa also a PEFT LoRA adapter, $FT_REF/models/llama_gqa_lora/ (adapter_config.json +
adapter_model.safetensors, PEFT key names, r=4, alpha=8 on q/v/down, plus an rsLoRA variant
llama_gqa_rslora/), with loss_lora / loss_rslora in the reference file: the loss of the base weights
plus scale * B @ A (scale alpha/r, or alpha/sqrt(r) with rsLoRA), as PEFT's merged model computes it.
The forward is plain torch written to mirror transformers' modeling_llama / modeling_mistral /
modeling_qwen2 / modeling_qwen3 (eager attention): LlamaRMSNorm in f32, rotate_half RoPE with
cos/sin of the f32 angles pos*inv_freq, llama3 inv_freq scaling, repeat_kv, additive causal mask,
softmax in f32, SiLU-gated MLP, q_norm/k_norm per head before RoPE (qwen3), tied/untied head.
BF16/F16 storage cases store rounded weights; the reference runs on those weights upcast to f32,
which is exactly what ftune computes with.
"""
import json
import math
import os
import struct
import sys

import torch

torch.set_num_threads(1)
OUT = os.path.join(sys.argv[1], "models")
os.makedirs(OUT, exist_ok=True)

ST_DTYPE = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
            torch.int32: "I32", torch.float64: "F64"}


def tensor_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def write_safetensors(path, tensors):
    """Hand-written safetensors: u64 LE header length, JSON header (padded to 8), raw data."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name]
        b = tensor_bytes(t)
        header[name] = {"dtype": ST_DTYPE[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def inv_freq_of(cfg, D):
    base = cfg["rope_theta"]
    inv = 1.0 / (base ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    rs = cfg.get("rope_scaling")
    if rs:  # llama3: keep high frequencies, divide low ones by factor, blend in between
        factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        lo_wl, hi_wl = old / lo, old / hi
        wl = 2 * math.pi / inv
        scaled = torch.where(wl > lo_wl, inv / factor, inv)
        smooth = (old / wl - lo) / (hi - lo)
        blended = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wl < hi_wl) * ~(wl > lo_wl)
        inv = torch.where(medium, blended, scaled)
    return inv


def rmsnorm(x, w, eps):
    x = x.float()
    var = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def forward(cfg, W, ids):
    C, H, KV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = cfg.get("head_dim") or C // H
    eps = cfg["rms_norm_eps"]
    T = len(ids)
    ids = torch.tensor(ids)
    x = W["model.embed_tokens.weight"][ids]
    pos = torch.arange(T)
    freqs = pos.float()[:, None] * inv_freq_of(cfg, D)[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[None], emb.sin()[None]  # (1, T, D)
    mask = torch.full((T, T), torch.finfo(torch.float32).min).triu(1)

    def lin(h, name):
        return torch.nn.functional.linear(h, W[name + ".weight"], W.get(name + ".bias"))

    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rmsnorm(x, W[p + "input_layernorm.weight"], eps)
        q = lin(h, p + "self_attn.q_proj").view(T, H, D)
        k = lin(h, p + "self_attn.k_proj").view(T, KV, D)
        v = lin(h, p + "self_attn.v_proj").view(T, KV, D)
        if cfg["model_type"] == "qwen3":
            q = rmsnorm(q, W[p + "self_attn.q_norm.weight"], eps)
            k = rmsnorm(k, W[p + "self_attn.k_norm.weight"], eps)
        q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)  # (heads, T, D)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k[:, None].expand(KV, H // KV, T, D).reshape(H, T, D)  # repeat_kv
        v = v[:, None].expand(KV, H // KV, T, D).reshape(H, T, D)
        s = torch.matmul(q, k.transpose(1, 2)) * (D ** -0.5) + mask
        a = torch.softmax(s, dim=-1, dtype=torch.float32)
        o = torch.matmul(a, v).transpose(0, 1).reshape(T, H * D)
        x = x + lin(o, p + "self_attn.o_proj")
        h = rmsnorm(x, W[p + "post_attention_layernorm.weight"], eps)
        x = x + lin(torch.nn.functional.silu(lin(h, p + "mlp.gate_proj")) * lin(h, p + "mlp.up_proj"),
                    p + "mlp.down_proj")
    x = rmsnorm(x, W["model.norm.weight"], eps)
    head = W["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else W["lm_head.weight"]
    return torch.nn.functional.linear(x, head)


def write_adapter(case, W, g, L, rslora):
    """A PEFT LoRA adapter for `case` and the base weights W with the adapter merged in."""
    r, alpha = 4, 8.0
    scale = alpha / math.sqrt(r) if rslora else alpha / r
    d = os.path.join(OUT, case)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": alpha,
                   "lora_dropout": 0.0, "use_rslora": rslora, "bias": "none", "fan_in_fan_out": False,
                   "target_modules": ["q_proj", "v_proj", "down_proj"]}, f, indent=2)
    T, merged = {}, dict(W)
    for l in range(L):
        for mod in ("self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"):
            name = f"model.layers.{l}.{mod}"
            out_f, in_f = W[name + ".weight"].shape
            A = torch.randn(r, in_f, generator=g) * 0.3
            B = torch.randn(out_f, r, generator=g) * 0.3
            T[f"base_model.model.{name}.lora_A.weight"] = A
            T[f"base_model.model.{name}.lora_B.weight"] = B
            merged[name + ".weight"] = W[name + ".weight"] + scale * (B @ A)
    write_safetensors(os.path.join(d, "adapter_model.safetensors"), T)
    return merged


def make(case, model_type, seed, H=4, KV=4, C=32, F=56, L=2, V=97, head_dim=None, tie=True,
         attn_bias=False, mlp_bias=False, rope_scaling=None, theta=10000.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    D = head_dim or C // H
    cfg = {"architectures": [{"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                              "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}[model_type]],
           "model_type": model_type, "hidden_size": C, "intermediate_size": F,
           "num_hidden_layers": L, "num_attention_heads": H, "num_key_value_heads": KV,
           "vocab_size": V, "max_position_embeddings": 64, "rms_norm_eps": 1e-5 if seed % 2 else 1e-6,
           "rope_theta": theta, "tie_word_embeddings": tie, "hidden_act": "silu",
           "torch_dtype": {torch.float32: "float32", torch.float16: "float16",
                           torch.bfloat16: "bfloat16"}[dtype],
           "bos_token_id": 1, "eos_token_id": 2}
    if head_dim:
        cfg["head_dim"] = head_dim
    if model_type == "llama":
        cfg["attention_bias"], cfg["mlp_bias"] = attn_bias, mlp_bias
    if model_type in ("mistral", "qwen2", "qwen3"):
        cfg["sliding_window"] = None
        cfg["use_sliding_window"] = False
    if model_type == "qwen3":
        cfg["attention_bias"] = False
    if rope_scaling:
        cfg["rope_scaling"] = rope_scaling

    def rnd(*shape, std=1.0, mean=0.0):
        return torch.randn(*shape, generator=g) * std + mean

    W = {"model.embed_tokens.weight": rnd(V, C), "model.norm.weight": rnd(C, std=0.1, mean=1.0)}
    if not tie:
        W["lm_head.weight"] = rnd(V, C, std=C ** -0.5)
    qkv_bias = model_type == "qwen2" or attn_bias
    for l in range(L):
        p = f"model.layers.{l}."
        W[p + "input_layernorm.weight"] = rnd(C, std=0.1, mean=1.0)
        W[p + "post_attention_layernorm.weight"] = rnd(C, std=0.1, mean=1.0)
        for n, rows, cols in [("self_attn.q_proj", H * D, C), ("self_attn.k_proj", KV * D, C),
                              ("self_attn.v_proj", KV * D, C), ("self_attn.o_proj", C, H * D),
                              ("mlp.gate_proj", F, C), ("mlp.up_proj", F, C), ("mlp.down_proj", C, F)]:
            W[p + n + ".weight"] = rnd(rows, cols, std=cols ** -0.5)
        if qkv_bias:
            for n, rows in [("q_proj", H * D), ("k_proj", KV * D), ("v_proj", KV * D)]:
                W[p + "self_attn." + n + ".bias"] = rnd(rows, std=0.2)
        if attn_bias:
            W[p + "self_attn.o_proj.bias"] = rnd(C, std=0.2)
        if mlp_bias:
            for n, rows in [("gate_proj", F), ("up_proj", F), ("down_proj", C)]:
                W[p + "mlp." + n + ".bias"] = rnd(rows, std=0.2)
        if model_type == "qwen3":
            W[p + "self_attn.q_norm.weight"] = rnd(D, std=0.1, mean=1.0)
            W[p + "self_attn.k_norm.weight"] = rnd(D, std=0.1, mean=1.0)
    stored = {n: t.to(dtype) for n, t in W.items()}
    W = {n: t.float() for n, t in stored.items()}  # what ftune computes with

    d = os.path.join(OUT, case)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    write_safetensors(os.path.join(d, "model.safetensors"), stored)

    ids = torch.randint(0, V, (13,), generator=g).tolist()
    ids[0] = 1
    with torch.no_grad():
        logits = forward(cfg, W, ids)
        lp = torch.log_softmax(logits.double(), dim=-1)
        loss = -lp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].mean()
        seq = ids[:5]
        for _ in range(6):
            lg = forward(cfg, W, seq)[-1]
            top2 = torch.topk(lg, 2).values
            assert top2[0] - top2[1] > 1e-3, f"{case}: greedy near-tie, pick another seed"
            seq.append(int(lg.argmax()))
    extra = {}
    if case == "llama_gqa":
        for variant, rs in (("lora", False), ("rslora", True)):
            Wm = write_adapter(f"{case}_{variant}", W, g, L, rs)
            with torch.no_grad():
                lp = torch.log_softmax(forward(cfg, Wm, ids).double(), dim=-1)
                la = -lp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].mean()
            assert abs(la - loss) > 1e-2, "the adapter must change the loss measurably"
            extra["loss_" + variant] = la.reshape(1)
    write_safetensors(os.path.join(OUT, case + ".ref.safetensors"), {
        "ids": torch.tensor(ids, dtype=torch.int32), "logits": logits.float(),
        "loss": loss.reshape(1), "next": logits[-1].argmax().reshape(1).to(torch.int32),
        "greedy": torch.tensor(seq[5:], dtype=torch.int32), **extra})
    print(f"PASS gen_models {case} (max |logit| {logits.abs().max():.2f}, loss {loss:.5f})")


L3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
      "original_max_position_embeddings": 32}
make("llama_mha", "llama", 1)                                  # MHA, tied head
make("llama_gqa", "llama", 2, KV=2, tie=False)                 # GQA 2, untied head
make("llama_untied", "llama", 3, tie=False)                    # MHA, untied head
make("llama3_rope", "llama", 4, KV=1, head_dim=16, C=48, H=4, theta=500000.0, rope_scaling=L3)
make("llama_head_dim", "llama", 5, KV=2, head_dim=12)          # H*D = 48 != hidden 32
make("llama_bias", "llama", 6, KV=2, attn_bias=True, mlp_bias=True, tie=False)
make("mistral", "mistral", 7, H=6, KV=2, C=36, tie=False)      # GQA 3
make("qwen2", "qwen2", 8, KV=2)                                # q/k/v biases, tied
make("qwen3", "qwen3", 9, KV=2, head_dim=16)                   # q/k norm, explicit head_dim
make("llama_bf16", "llama", 10, KV=2, tie=False, dtype=torch.bfloat16)
make("qwen2_f16", "qwen2", 11, H=6, KV=3, C=36, dtype=torch.float16)
