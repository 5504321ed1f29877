#!/usr/bin/env bash
# `ftune logprobs` and `ftune generate --prompt-ids` (the ASan CLI) against the PyTorch reference of
# every tiny model tests/ref/gen_models.py built: loss within 1e-4 (the logits agree to ~1e-5, and
# the loss is a mean of log-softmax values, so its error is of the same order), next id and greedy
# ids exactly. Then bad input: one clear line on stderr and a non-zero exit, never a crash.
set -uo pipefail
"$PY" - <<'PYEOF'
import json, os, struct, subprocess
ref = os.environ["FT_REF"] + "/models"
ftune = os.environ["FTUNE"]

def read_st(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); d = b[8 + n:]
    out = {}
    for k, v in h.items():
        if k == "__metadata__": continue
        a, e = v["data_offsets"]
        fmt = {"I32": "i", "F32": "f", "F64": "d"}[v["dtype"]]
        out[k] = list(struct.unpack("<%d%s" % ((e - a) // struct.calcsize(fmt), fmt), d[a:e]))
    return out

def result(ok, name, why=""):
    print(("PASS " if ok else "FAIL ") + name + ("" if ok else ": " + why), flush=True)

cases = ["llama_mha", "llama_gqa", "llama_untied", "llama3_rope", "llama_head_dim", "llama_bias",
         "mistral", "qwen2", "qwen3", "llama_bf16", "qwen2_f16"]
for c in cases:
    r = read_st(f"{ref}/{c}.ref.safetensors")
    ids = ",".join(map(str, r["ids"]))
    p = subprocess.run([ftune, "logprobs", "--model", f"{ref}/{c}", "--ids", ids],
                       capture_output=True, text=True)
    lines = p.stdout.split("\n")
    ok = p.returncode == 0 and len(lines) == 3 and lines[0].startswith("loss ") and lines[1].startswith("next ")
    if not ok:
        result(False, f"logprobs {c}", f"exit {p.returncode}, stdout {p.stdout!r}, stderr {p.stderr[-300:]!r}")
        continue
    loss, nxt = float(lines[0][5:]), int(lines[1][5:])
    result(abs(loss - r["loss"][0]) <= 1e-4, f"logprobs {c} loss {loss:.6f}", f"reference {r['loss'][0]:.6f}")
    result(nxt == r["next"][0], f"logprobs {c} next {nxt}", f"reference {r['next'][0]}")
    want = []
    for t in r["greedy"]:
        if t == 2: break  # eos_token_id of every tiny model
        want.append(t)
    p = subprocess.run([ftune, "generate", "--model", f"{ref}/{c}", "--prompt-ids",
                        ",".join(map(str, r["ids"][:5])), "--max-new-tokens", str(len(r["greedy"]))],
                       capture_output=True, text=True)
    got = p.stdout.split()
    result(p.returncode == 0 and got == [str(x) for x in want], f"generate {c} greedy",
           f"exit {p.returncode}, got {got}, want {want}, stderr {p.stderr[-300:]!r}")

# --adapter: a PEFT LoRA adapter written by the reference script (plain and rsLoRA scaling)
r = read_st(f"{ref}/llama_gqa.ref.safetensors")
for variant in ("lora", "rslora"):
    p = subprocess.run([ftune, "logprobs", "--model", f"{ref}/llama_gqa", "--adapter",
                        f"{ref}/llama_gqa_{variant}", "--ids", ",".join(map(str, r["ids"]))],
                       capture_output=True, text=True)
    want = r["loss_" + variant][0]
    got = float(p.stdout.split()[1]) if p.returncode == 0 and p.stdout.startswith("loss ") else float("nan")
    result(abs(got - want) <= 1e-4, f"logprobs --adapter ({variant}) loss {got:.6f}",
           f"reference {want:.6f}, exit {p.returncode}, stderr {p.stderr[-300:]!r}")
p = subprocess.run([ftune, "generate", "--model", f"{ref}/llama_gqa", "--adapter", f"{ref}/llama_gqa_lora",
                    "--prompt-ids", "1,5,7", "--max-new-tokens", "3"], capture_output=True, text=True)
result(p.returncode == 0 and len(p.stdout.split()) >= 1, "generate --adapter runs",
       f"exit {p.returncode}, stderr {p.stderr[-300:]!r}")

# bad input
m = f"{ref}/llama_gqa"
bad = [("missing model folder", ["logprobs", "--model", ref + "/nope", "--ids", "1,2"], "nope"),
       ("id out of range", ["logprobs", "--model", m, "--ids", "1,97"], "97"),
       ("malformed id list", ["logprobs", "--model", m, "--ids", "1,,2"], "--ids"),
       ("ids past the context", ["logprobs", "--model", m, "--ids", ",".join(["5"] * 65)],
        "--ids: 65 ids exceed the model's 64 positions"),
       ("negative temperature", ["generate", "--model", m, "--prompt-ids", "1", "--temperature", "-1"], "temperature"),
       ("top-p out of range", ["generate", "--model", m, "--prompt-ids", "1", "--top-p", "1.5"], "--top-p"),
       ("unknown option", ["generate", "--model", m, "--prompt-ids", "1", "--bogus", "1"], "--bogus"),
       ("adapter of another model", ["logprobs", "--model", f"{ref}/qwen3", "--adapter", f"{ref}/llama_gqa_lora",
                                     "--ids", "1,2"], "llama_gqa_lora")]
for name, args, needle in bad:
    p = subprocess.run([ftune] + args, capture_output=True, text=True)
    err = p.stderr.strip().split("\n")
    ok = p.returncode in (1, 2) and needle in p.stderr and "ERROR: AddressSanitizer" not in p.stderr \
        and "runtime error" not in p.stderr
    result(ok, f"bad input: {name}", f"exit {p.returncode}, stderr {p.stderr[-300:]!r}")
PYEOF
