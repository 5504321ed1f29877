"""Writes crafted model folders for tests/io/test_bad_input.sh into OUT/<case>/ (config.json +
model.safetensors, or other files), one per kind of bad input, plus 'ok' and 'harmless_extra' that
must load. The safetensors bytes are assembled by hand so that each case breaks exactly one rule.
usage: make_bad_inputs.py OUT"""
import json
import os
import struct
import sys

import numpy as np

CFG = {"model_type": "llama", "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 1,
       "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 40, "tie_word_embeddings": True,
       "torch_dtype": "float32"}
SHAPES = {
    "model.embed_tokens.weight": [40, 16], "model.norm.weight": [16],
    "model.layers.0.input_layernorm.weight": [16], "model.layers.0.post_attention_layernorm.weight": [16],
    "model.layers.0.self_attn.q_proj.weight": [16, 16], "model.layers.0.self_attn.k_proj.weight": [8, 16],
    "model.layers.0.self_attn.v_proj.weight": [8, 16], "model.layers.0.self_attn.o_proj.weight": [16, 16],
    "model.layers.0.mlp.gate_proj.weight": [24, 16], "model.layers.0.mlp.up_proj.weight": [24, 16],
    "model.layers.0.mlp.down_proj.weight": [16, 24],
}
SIZES = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4, "I64": 8, "Q4": 1}


def entries(shapes=SHAPES, dtypes=None):
    """Header dict with contiguous offsets (sorted by name) and the data length."""
    h, pos = {}, 0
    for name in sorted(shapes):
        dt = (dtypes or {}).get(name, "F32")
        n = int(np.prod(shapes[name])) * SIZES[dt]
        h[name] = {"dtype": dt, "shape": shapes[name], "data_offsets": [pos, pos + n]}
        pos += n
    return h, pos


def st_bytes(header, data_len, header_text=None, length_field=None):
    text = (header_text if header_text is not None else json.dumps(header)).encode()
    text += b" " * (-len(text) % 8)
    n = len(text) if length_field is None else length_field
    data = np.random.default_rng(0).standard_normal(data_len // 4 + 1).astype("<f4").tobytes()[:data_len]
    return struct.pack("<Q", n) + text + data


def case(out, name, st=None, cfg=CFG, cfg_text=None, files=None):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(cfg_text if cfg_text is not None else json.dumps(cfg, indent=2))
    if st is not None:
        with open(os.path.join(d, "model.safetensors"), "wb") as f:
            f.write(st)
    for fname, content in (files or {}).items():
        with open(os.path.join(d, fname), "wb") as f:
            f.write(content)


def main(out):
    h, n = entries()
    good = st_bytes(h, n)
    case(out, "ok", good)
    case(out, "truncated", good[:-10])
    case(out, "tiny_file", good[:5])
    case(out, "header_past_eof", st_bytes(h, n, length_field=1000000))
    hh = json.loads(json.dumps(h)); hh["model.norm.weight"]["data_offsets"][1] = n + 64
    case(out, "offsets_out_of_range", st_bytes(hh, n))
    # o_proj claims the bytes of mlp.up_proj's neighbour: two tensors share a range, one range is left out
    hh = json.loads(json.dumps(h))
    hh["model.layers.0.self_attn.v_proj.weight"]["data_offsets"] = list(hh["model.layers.0.self_attn.q_proj.weight"]["data_offsets"])
    hh["model.layers.0.self_attn.v_proj.weight"]["shape"] = [16, 16]
    case(out, "overlapping_offsets", st_bytes(hh, n))
    hh = json.loads(json.dumps(h)); a, b = hh["model.norm.weight"]["data_offsets"]
    hh["model.norm.weight"]["data_offsets"] = [b, a]
    case(out, "begin_after_end", st_bytes(hh, n))
    hh = json.loads(json.dumps(h)); hh["model.norm.weight"]["shape"] = [15]
    case(out, "nbytes_mismatch", st_bytes(hh, n))
    case(out, "trailing_data", st_bytes(h, n + 8))
    hh, m = entries(dtypes={"model.norm.weight": "Q4"})
    case(out, "unknown_dtype", st_bytes(hh, m))
    hh, m = entries(dtypes={"model.norm.weight": "I32"})
    case(out, "dtype_mismatch", st_bytes(hh, m))
    shapes = dict(SHAPES); shapes["model.layers.0.self_attn.k_proj.weight"] = [16, 16]
    hh, m = entries(shapes)
    case(out, "shape_mismatch", st_bytes(hh, m))
    shapes = dict(SHAPES); del shapes["model.norm.weight"]
    hh, m = entries(shapes)
    case(out, "missing_tensor", st_bytes(hh, m))
    shapes = dict(SHAPES); shapes["model.layers.0.self_attn.rope_bias"] = [4]
    hh, m = entries(shapes)
    case(out, "extra_tensor", st_bytes(hh, m))
    shapes = dict(SHAPES); shapes["lm_head.weight"] = [40, 16]; shapes["model.layers.0.self_attn.rotary_emb.inv_freq"] = [2]
    hh, m = entries(shapes)
    case(out, "harmless_extra", st_bytes(hh, m))
    # the same name twice in the header JSON
    txt = json.dumps(h)
    dup = '"model.norm.weight": ' + json.dumps(h["model.norm.weight"])
    txt = txt[:-1] + ", " + dup + "}"
    case(out, "duplicate_name", st_bytes(h, n, header_text=txt))
    case(out, "header_not_object", st_bytes(h, n, header_text="[1, 2, 3]"))
    case(out, "header_bad_json", st_bytes(h, n, header_text='{"model.norm.weight": {"dtype": "F32",'))
    hh = json.loads(json.dumps(h)); hh["model.norm.weight"]["shape"] = [-16]
    case(out, "negative_dim", st_bytes(hh, n))
    hh = json.loads(json.dumps(h)); del hh["model.norm.weight"]["data_offsets"]
    case(out, "missing_data_offsets", st_bytes(hh, n))
    case(out, "config_syntax", good, cfg_text='{\n  "model_type": "llama",\n  "hidden_size": 16,,\n  "vocab_size": 40\n}\n')
    case(out, "config_model_type", good, cfg=dict(CFG, model_type="gpt_neox"))
    case(out, "config_model_type_newline", good, cfg=dict(CFG, model_type="llama\nmistral"))
    case(out, "config_rope_yarn", good, cfg=dict(CFG, rope_scaling={"rope_type": "yarn", "factor": 4.0}))
    case(out, "config_rope_dynamic", good, cfg=dict(CFG, rope_scaling={"type": "dynamic", "factor": 2.0}))
    c = dict(CFG); del c["vocab_size"]
    case(out, "config_missing_key", good, cfg=c)
    case(out, "config_wrong_type", good, cfg=dict(CFG, hidden_size="16"))
    case(out, "config_shape_disagrees", good, cfg=dict(CFG, intermediate_size=32))
    # values within double range but not float's, where they are stored: 1e-50 becomes 0, 1e39 inf,
    # 1e-44 a denormal whose inverse frequencies overflow, 1 + 1e-8 equals 1 (a zero span)
    case(out, "config_eps_underflow", good, cfg=dict(CFG, rms_norm_eps=1e-50))
    case(out, "config_eps_overflow", good, cfg=dict(CFG, rms_norm_eps=1e39))
    case(out, "config_theta_denormal", good, cfg=dict(CFG, rope_theta=1e-44))
    case(out, "config_theta_overflow", good, cfg=dict(CFG, rope_theta=1e39))
    case(out, "config_llama3_span", good, cfg=dict(CFG, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 1.00000001,
        "original_max_position_embeddings": 8192}))
    # a key twice: cJSON would read the first value, Python's json (so HF) the last
    case(out, "config_duplicate_key", good,
         cfg_text=json.dumps(CFG)[:-1] + ', "rope_theta": 10000.0, "rope_theta": 0.5}')
    # a LoRA adapter whose config fails after trainable_token_indices was read (it leaked)
    os.makedirs(os.path.join(out, "adapter_bad_tokens"), exist_ok=True)
    with open(os.path.join(out, "adapter_bad_tokens", "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "r": 8, "lora_alpha": 16, "trainable_token_indices": [1, "x"]}, f)
    # sharded: the index names the wrong shard for one tensor
    names = sorted(SHAPES)
    h1, n1 = entries({k: SHAPES[k] for k in names[:5]})
    h2, n2 = entries({k: SHAPES[k] for k in names[5:]})
    wm = {k: "model-00001-of-00002.safetensors" for k in names[:5]}
    wm.update({k: "model-00002-of-00002.safetensors" for k in names[5:]})
    case(out, "sharded_ok", None, files={"model-00001-of-00002.safetensors": st_bytes(h1, n1),
                                         "model-00002-of-00002.safetensors": st_bytes(h2, n2),
                                         "model.safetensors.index.json": json.dumps({"weight_map": wm}).encode()})
    wm[names[0]] = "model-00002-of-00002.safetensors"
    case(out, "sharded_wrong_shard", None, files={"model-00001-of-00002.safetensors": st_bytes(h1, n1),
                                                  "model-00002-of-00002.safetensors": st_bytes(h2, n2),
                                                  "model.safetensors.index.json": json.dumps({"weight_map": wm}).encode()})
    case(out, "no_weights", None)
    # llama2.c checkpoints for convert: a valid tiny one (untied, GQA) inside 5 + 3 bytes of padding
    dim, hid, L, H, KV, V, T = 16, 24, 2, 4, 2, 40, 8
    D = dim // H
    n_floats = V * dim + L * dim + L * dim * dim + 2 * L * KV * D * dim + L * dim * dim + L * dim + 3 * L * hid * dim + dim + T * D + V * dim
    body = struct.pack("<7i", dim, hid, L, H, KV, -V, T) + \
        np.random.default_rng(1).standard_normal(n_floats).astype("<f4").tobytes()
    with open(os.path.join(out, "l2c_tiny.bin"), "wb") as f:
        f.write(b"PAD!!" + body + b"END")
    with open(os.path.join(out, "l2c_tiny.len"), "w") as f:
        f.write(str(len(body)))
    with open(os.path.join(out, "l2c_garbage.bin"), "wb") as f:
        f.write(struct.pack("<7i", 16, -24, 2, 4, 2, 40, 8) + b"\0" * 64)
    # vocab_size INT32_MIN (untied, |V| not an int): negating it in int was undefined behaviour
    with open(os.path.join(out, "l2c_vocab_min.bin"), "wb") as f:
        f.write(struct.pack("<7i", 16, 24, 2, 4, 2, -2**31, 8) + b"\0" * 64)


if __name__ == "__main__":
    main(sys.argv[1])
