#!/usr/bin/python3
"""PyTorch reference for tests/train/test_train_ref.c: five optimizer steps of the trainer.

Reuses the plain-torch Llama model of tests/ref/gen_grads.py (forward_loss, make_params,
config_json, st_write). On its tiny `llama_mha` shape with fresh random weights it runs, exactly
as ftune's trainer does and as HF Trainer does with num_items_in_batch:
  for each of 5 steps: 2 micro-batches of 2 rows (T=8, some labels -100 so the two micro-batches
  have different target counts); each micro-batch adds grad of (sum of its NLL) / (targets of
  the whole step); clip_grad_norm_; torch.optim.AdamW (decay / no-decay groups by HF's
  get_decay_parameter_names rule); LambdaLR with HF's cosine-with-warmup (warmup 2 of 5).
for full fine-tuning and for LoRA (r=4, alpha=8, q_proj+v_proj; A and B start from given random
values so every LoRA term moves). Writes OUT/train/model/ (the HF folder) and
OUT/train/ref_{full,lora}.safetensors with inputs, labels, per-step loss / grad norm / lr, the
initial LoRA tensors and every trained tensor after the last step ("final.<name>").
Hyper-parameters are repeated as constants in the C test.
"""
import math
import os
import re
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_grads as G  # noqa: E402

torch.set_num_threads(1)
STEPS, GA, B, T = 5, 2, 2, 8
LR, WARMUP, WD, BETAS, EPS = 1e-2, 2, 0.1, (0.9, 0.999), 1e-8
# max_grad_norm inside the range of the step norms of each run, so some steps clip, some not
MAX_NORM_FULL, MAX_NORM_LORA = 30.0, 6.0
LORA_R, LORA_ALPHA = 4, 8.0
LORA_MODS = ["self_attn.q_proj", "self_attn.v_proj"]


def decays(name):
    """HF Trainer get_decay_parameter_names: no decay for biases and norms."""
    low = name.lower()
    if "bias" in low or "layernorm" in low or "rmsnorm" in low:
        return False
    return not re.search(r"(?:^|\.)norm(?:$|\.)", low) and not re.search(r"_norm(?:$|\.)", low)


def cosine(step):
    if step < WARMUP:
        return float(step) / float(max(1, WARMUP))
    progress = float(step - WARMUP) / float(max(1, STEPS - WARMUP))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(0.5) * 2.0 * progress)))


def train(c, frozen, trainable, inputs, labels, max_norm, lora_scale=None):
    """trainable: name -> leaf tensor. Returns per-step (loss, grad_norm, lr)."""
    groups = [{"params": [t for n, t in trainable.items() if decays(n)], "weight_decay": WD},
              {"params": [t for n, t in trainable.items() if not decays(n)], "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    opt = torch.optim.AdamW(groups, lr=LR, betas=BETAS, eps=EPS, weight_decay=WD, foreach=False)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine)
    rec = []
    for s in range(STEPS):
        opt.zero_grad()
        lab = labels[s]
        n_step = int((lab != -100).sum())
        total = 0.0
        for m in range(GA):
            x, y = inputs[s, m * B:(m + 1) * B], lab[m * B:(m + 1) * B]
            n_micro = int((y != -100).sum())
            if lora_scale is None:
                params = trainable
            else:
                params = frozen
            lora = None
            if lora_scale is not None:
                ab = {}
                for pre in {n[len("base_model.model."):-len(".lora_A.weight")] for n in trainable
                            if n.endswith("lora_A.weight")}:
                    ab[pre] = (trainable[f"base_model.model.{pre}.lora_A.weight"],
                               trainable[f"base_model.model.{pre}.lora_B.weight"])
                lora = {"scale": lora_scale, "ab": ab}
            nll_sum = G.forward_loss(c, params, x, y, lora=lora) * n_micro
            (nll_sum / n_step).backward()
            total += nll_sum.item()
        norm = torch.nn.utils.clip_grad_norm_(list(trainable.values()), max_norm)
        lr = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
        rec.append((total / n_step, norm.item(), lr))
    return rec


def main():
    out = os.path.join(sys.argv[1], "train")
    mdir = os.path.join(out, "model")
    os.makedirs(mdir, exist_ok=True)
    c = G.MODELS[0]
    gen = torch.Generator().manual_seed(4321)
    p = G.make_params(c, gen)
    import json
    with open(os.path.join(mdir, "config.json"), "w") as f:
        json.dump(G.config_json(c), f, indent=2)
    G.st_write(os.path.join(mdir, "model.safetensors"), p)

    inputs = torch.randint(0, c.vocab_size, (STEPS, GA * B, T), generator=gen)
    labels = torch.randint(0, c.vocab_size, (STEPS, GA * B, T), generator=gen)
    labels[:, :, -1] = -100
    mask = torch.rand((STEPS, GA * B, T), generator=gen) < 0.25
    labels[mask] = -100
    labels[:, 0, :3] = -100  # the first micro-batch of every step has fewer targets
    common = {"inputs": inputs.reshape(-1, T).to(torch.int32),
              "labels": labels.reshape(-1, T).to(torch.int32)}

    def record(rec, trainable, extra):
        d = dict(common)
        d["loss"] = torch.tensor([r[0] for r in rec], dtype=torch.float32)
        d["grad_norm"] = torch.tensor([r[1] for r in rec], dtype=torch.float32)
        d["lr"] = torch.tensor([r[2] for r in rec], dtype=torch.float32)
        d.update(extra)
        d.update({"final." + n: t.detach() for n, t in trainable.items()})
        return d

    # full fine-tuning
    trainable = {n: t.clone().requires_grad_(True) for n, t in p.items()}
    rec = train(c, None, trainable, inputs, labels, MAX_NORM_FULL)
    G.st_write(os.path.join(out, "ref_full.safetensors"), record(rec, trainable, {}))
    clipped = sum(r[1] > MAX_NORM_FULL for r in rec)

    # LoRA on q_proj and v_proj
    frozen = {n: t.clone() for n, t in p.items()}
    trainable, init = {}, {}
    for l in range(c.num_hidden_layers):
        for mod in LORA_MODS:
            pre = f"model.layers.{l}.{mod}"
            W = frozen[pre + ".weight"]
            bound = 1.0 / math.sqrt(W.shape[1])
            A = torch.empty(LORA_R, W.shape[1]).uniform_(-bound, bound, generator=gen)
            Bm = torch.randn(W.shape[0], LORA_R, generator=gen) * 0.05
            for n, t in ((f"base_model.model.{pre}.lora_A.weight", A),
                         (f"base_model.model.{pre}.lora_B.weight", Bm)):
                init["init." + n] = t.clone()
                trainable[n] = t.clone().requires_grad_(True)
    rec_l = train(c, frozen, trainable, inputs, labels, MAX_NORM_LORA,
                  lora_scale=LORA_ALPHA / LORA_R)
    G.st_write(os.path.join(out, "ref_lora.safetensors"), record(rec_l, trainable, init))
    clipped_l = sum(r[1] > MAX_NORM_LORA for r in rec_l)
    print("losses full", [round(r[0], 4) for r in rec], "lora", [round(r[0], 4) for r in rec_l])
    ok = 0 < clipped < STEPS and 0 < clipped_l < STEPS
    print("%s gen_train: clipped steps full %d/5, lora %d/5 (both must be mixed)"
          % ("PASS" if ok else "FAIL", clipped, clipped_l))


if __name__ == "__main__":
    main()
