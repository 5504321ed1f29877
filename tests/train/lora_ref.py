#!/usr/bin/python3
"""Mean NLL of ids[1:] under a Hugging Face Llama folder, optionally with a PEFT LoRA adapter
applied the way PEFT does (unmerged: y = W x + B(A x) * scaling, scaling = lora_alpha / r, or
lora_alpha / sqrt(r) with use_rslora; keys base_model.model.<module>.lora_{A,B}.weight), and
PEFT's trainable tokens when adapter_config.json has trainable_token_indices (a list: embedding
rows; a dict: per module, embed_tokens / lm_head): the saved rows (...token_adapter.
trainable_tokens_delta, the rows' new values) replace the base rows by index_copy, a tied head
using the embedding's (PEFT: tuners/trainable_tokens/layer.py, utils/other.py). Only the modules
adapter_config.json's target_modules / exclude_modules select get their pair (peft_targets).
The model is tests/ref/gen_grads.py's plain-torch Llama; tensors are read with tests/ref/st_io.py.

usage: lora_ref.py MODEL_DIR ADAPTER_DIR|- ID,ID,...    prints "loss <float>"
"""
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ref"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_grads as G  # noqa: E402
import st_io  # noqa: E402
from peft_targets import peft_targets  # noqa: E402

torch.set_num_threads(2)
model_dir, adapter_dir, ids_s = sys.argv[1:4]
j = json.load(open(os.path.join(model_dir, "config.json")))
heads = j["num_attention_heads"]
c = G.Cfg(hidden_size=j["hidden_size"], intermediate_size=j["intermediate_size"],
          num_hidden_layers=j["num_hidden_layers"], num_attention_heads=heads,
          num_key_value_heads=j.get("num_key_value_heads") or heads,
          head_dim=j.get("head_dim") or j["hidden_size"] // heads, vocab_size=j["vocab_size"],
          rms_norm_eps=j.get("rms_norm_eps", 1e-6), rope_theta=j.get("rope_theta", 10000.0),
          rope_scaling=j.get("rope_scaling"), tie_word_embeddings=j.get("tie_word_embeddings", False),
          qkv_bias=False, qk_norm=False)
p = {n: t.float() for n, t in st_io.load(os.path.join(model_dir, "model.safetensors")).items()}
lora = tok = None
if adapter_dir != "-":
    a = json.load(open(os.path.join(adapter_dir, "adapter_config.json")))
    assert a["peft_type"] == "LORA" and not a.get("fan_in_fan_out") and a.get("bias", "none") == "none"
    r, alpha = a["r"], a["lora_alpha"]
    scale = alpha / math.sqrt(r) if a.get("use_rslora") else alpha / r
    w = st_io.load(os.path.join(adapter_dir, "adapter_model.safetensors"))
    ab = {}
    for n in w:
        if n.endswith(".lora_A.weight"):
            pre = n[len("base_model.model."):-len(".lora_A.weight")]
            if peft_targets(a, pre):  # PEFT loads no tensor of a module it did not wrap
                ab[pre] = (w[n], w[n.replace(".lora_A.", ".lora_B.")])
    lora = {"scale": scale, "ab": ab}
    tti = a.get("trainable_token_indices")
    parts = {}
    if isinstance(tti, list):
        parts["embed"] = tti
    elif isinstance(tti, dict):
        for k, v in tti.items():
            assert k.endswith("embed_tokens") or k.endswith("lm_head"), k
            parts["embed" if k.endswith("embed_tokens") else "head"] = v
    if c.tie_word_embeddings and "head" in parts:
        assert parts["head"] == parts.get("embed"), "tied model: lm_head ids must be embed_tokens'"
        del parts["head"]
    keys = {"embed": "base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta",
            "head": "base_model.model.lm_head.token_adapter.trainable_tokens_delta"}
    tok = {k: (torch.tensor(v), w[keys[k]].float()) for k, v in parts.items()}
    assert ab or tok, "no LoRA or trainable-token tensors"
ids = torch.tensor([[int(x) for x in ids_s.split(",")]])
labels = torch.cat([ids[:, 1:], torch.full((1, 1), -100)], dim=1)
with torch.no_grad():
    loss = G.forward_loss(c, p, ids, labels, lora=lora, tok=tok)
print("loss %.8f" % loss.item())
