"""Reference for tests/train/test_optim.c: torch.optim.AdamW + clip_grad_norm_ + HF LR schedules.

Writes $1/optim_ref.txt, one array per line: "<name> <count> v0 v1 ..." (float32 printed with
9 significant digits, which round-trips exactly). Small on purpose: a few tensors, six steps.
The schedule lambdas are HF transformers' get_*_schedule_with_warmup formulas (transformers is
not installed here), driven through torch's LambdaLR so the step indexing is torch's own.
"""
import math
import os
import sys

import torch

out_dir = sys.argv[1]
os.makedirs(out_dir, exist_ok=True)
lines = []


def put(name, t):
    """float32 tensors with 9 digits (exact round trip); Python floats (doubles) with repr."""
    if torch.is_tensor(t):
        vals = ["%.9g" % v for v in t.detach().reshape(-1).tolist()]
    else:
        vals = [repr(float(v)) for v in t]
    lines.append("%s %d %s" % (name, len(vals), " ".join(vals)))


def hf_lambda(kind, warmup, total):
    def f(step):
        if kind == "constant":
            return 1.0
        if step < warmup:
            return float(step) / float(max(1, warmup))
        if kind == "constant_with_warmup":
            return 1.0
        if kind == "linear":
            return max(0.0, float(total - step) / float(max(1, total - warmup)))
        progress = float(step - warmup) / float(max(1, total - warmup))
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(0.5) * 2.0 * progress)))
    return f


torch.manual_seed(1234)
shapes = [("w1", (7, 5), True), ("b1", (5,), False), ("w2", (3, 11), True)]
params = [torch.randn(*s, dtype=torch.float32).requires_grad_() for _, s, _ in shapes]
for (name, _, _), p in zip(shapes, params):
    put("init." + name, p)

lr, wd, betas, eps, max_norm = 1e-2, 0.1, (0.9, 0.95), 1e-8, 1.0
steps, warmup = 6, 2
groups = [{"params": [p for p, (_, _, d) in zip(params, shapes) if d], "weight_decay": wd},
          {"params": [p for p, (_, _, d) in zip(params, shapes) if not d], "weight_decay": 0.0}]
opt = torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, weight_decay=wd, foreach=False)
sched = torch.optim.lr_scheduler.LambdaLR(opt, hf_lambda("cosine", warmup, steps))
# gradient scales: some steps clipped (norm > 1), some not
scales = [0.05, 3.0, 0.1, 10.0, 0.02, 1.5]
for s in range(steps):
    for (name, _, _), p in zip(shapes, params):
        p.grad = torch.randn_like(p) * scales[s]
        put("step%d.grad.%s" % (s, name), p.grad)
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    put("step%d.norm" % s, [norm.item()])
    put("step%d.lr" % s, [opt.param_groups[0]["lr"]])
    opt.step()
    sched.step()
    for (name, _, _), p in zip(shapes, params):
        put("step%d.param.%s" % (s, name), p)
        st = opt.state[p]
        put("step%d.m.%s" % (s, name), st["exp_avg"])
        put("step%d.v.%s" % (s, name), st["exp_avg_sq"])

# schedules through LambdaLR: lr factor at optimizer steps 0..total
for kind in ["constant", "constant_with_warmup", "linear", "cosine"]:
    for warmup, total in [(0, 10), (3, 10), (5, 7), (4, 4)]:
        p = torch.zeros(1, requires_grad=True)
        o = torch.optim.SGD([p], lr=1.0)
        sc = torch.optim.lr_scheduler.LambdaLR(o, hf_lambda(kind, warmup, total))
        vals = []
        for _ in range(total + 2):
            vals.append(o.param_groups[0]["lr"])
            o.step()
            sc.step()
        lines.append("sched.%s.%d.%d %d %s" % (kind, warmup, total, len(vals),
                                             " ".join(repr(v) for v in vals)))

with open(os.path.join(out_dir, "optim_ref.txt"), "w") as f:
    f.write("\n".join(lines) + "\n")
print("PASS gen_optim")
