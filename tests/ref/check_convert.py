"""Independent check of `ftune convert llama2c`: read the llama2.c checkpoint with NumPy, apply the
HF rotate-half permutation to wq/wk (as HF's convert_llama_weights_to_hf.py does), and compare every
tensor of the converted model.safetensors for exact equality (a conversion moves bytes, it computes
nothing). Also checks config.json and that no tensor is missing or extra.
usage: check_convert.py CHECKPOINT OFFSET LENGTH MODEL_DIR"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402


def permute(w, heads):
    rows, cols = w.shape
    return w.reshape(heads, rows // heads // 2, 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


def main(ckpt, offset, length, model_dir):
    fails = 0

    def check(name, ok, why=""):
        nonlocal fails
        print(("PASS %s" % name) if ok else ("FAIL %s: %s" % (name, why)))
        fails += 0 if ok else 1

    if not os.path.exists(ckpt) or not os.path.exists(os.path.join(model_dir, "model.safetensors")):
        check("convert_fixture_present", False, "missing %s or %s/model.safetensors (run make fixtures)" % (ckpt, model_dir))
        return 1
    with open(ckpt, "rb") as f:
        f.seek(offset)
        raw = f.read(length)
    dim, hid, L, H, KV, vocab, T = (int(x) for x in np.frombuffer(raw[:28], dtype="<i4"))
    tied = vocab > 0
    V = abs(vocab)
    D = dim // H
    fl = np.frombuffer(raw[28:], dtype="<f4")
    pos = 0

    def take(*shape):
        nonlocal pos
        n = int(np.prod(shape))
        a = fl[pos:pos + n].reshape(shape)
        pos += n
        return a

    emb = take(V, dim)
    rms_att = take(L, dim)
    wq = take(L, H * D, dim)
    wk = take(L, KV * D, dim)
    wv = take(L, KV * D, dim)
    wo = take(L, dim, H * D)
    rms_ffn = take(L, dim)
    w1 = take(L, hid, dim)
    w2 = take(L, dim, hid)
    w3 = take(L, hid, dim)
    rms_final = take(dim)
    take(T, D // 2)
    take(T, D // 2)
    wcls = None if tied else take(V, dim)
    check("convert_sizes_add_up", pos == fl.size and 28 + 4 * pos == length,
          "%d floats read, %d present" % (pos, fl.size))

    want = {"model.embed_tokens.weight": emb, "model.norm.weight": rms_final}
    if not tied:
        want["lm_head.weight"] = wcls
    for l in range(L):
        p = "model.layers.%d." % l
        want[p + "input_layernorm.weight"] = rms_att[l]
        want[p + "self_attn.q_proj.weight"] = permute(wq[l], H)
        want[p + "self_attn.k_proj.weight"] = permute(wk[l], KV)
        want[p + "self_attn.v_proj.weight"] = wv[l]
        want[p + "self_attn.o_proj.weight"] = wo[l]
        want[p + "post_attention_layernorm.weight"] = rms_ffn[l]
        want[p + "mlp.gate_proj.weight"] = w1[l]
        want[p + "mlp.down_proj.weight"] = w2[l]
        want[p + "mlp.up_proj.weight"] = w3[l]

    got = st_io.load(os.path.join(model_dir, "model.safetensors"))
    check("convert_tensor_names", sorted(got) == sorted(want),
          "missing %s, extra %s" % (sorted(set(want) - set(got))[:3], sorted(set(got) - set(want))[:3]))
    bad = []
    for name, w in want.items():
        g = got.get(name)
        if g is None or g.dtype != torch.float32 or list(g.shape) != list(w.shape) or \
                not np.array_equal(g.numpy().view(np.uint32), np.ascontiguousarray(w).view(np.uint32)):
            bad.append(name)
    check("convert_tensors_bit_exact", not bad, "%d differ, first %s" % (len(bad), bad[:1]))
    # the permutation must actually move rows (else the check above could not catch a missing one)
    check("convert_permutation_nontrivial", not np.array_equal(permute(wq[0], H), wq[0]), "identity permutation")

    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    expect = dict(model_type="llama", hidden_size=dim, intermediate_size=hid, num_hidden_layers=L,
                  num_attention_heads=H, num_key_value_heads=KV, vocab_size=V, max_position_embeddings=T,
                  rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=tied, bos_token_id=1,
                  eos_token_id=2, torch_dtype="float32", hidden_act="silu")
    diff = {k: (cfg.get(k), v) for k, v in expect.items() if cfg.get(k) != v}
    check("convert_config_json", not diff and cfg.get("rope_scaling") is None, "differs: %s" % diff)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
