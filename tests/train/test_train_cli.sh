#!/usr/bin/env bash
# `ftune train` from the command line: config and data errors are one line naming the file, the
# line and the key; usage errors exit 2, runtime errors 1; --set overrides are applied and checked.
set -uo pipefail
D=$FT_TMP/train_cli
mkdir -p "$D"
expect() { # name, expected exit status, expected message part, args...
    local name=$1 want_rc=$2 want=$3; shift 3
    local out rc
    out=$("$FTUNE" train "$@" 2>&1); rc=$?
    if [ "$rc" -eq "$want_rc" ] && [[ $out == *"$want"* ]]; then echo "PASS $name"
    else echo "FAIL $name: exit $rc, output: $(echo "$out" | head -3)"; fi
}
printf 'base_model: models/stories15M\ndatasets:\n  - path: %s/d.jsonl\n    type: text\nlora_rr: 8\n' "$D" > "$D/typo.yaml"
expect cli_unknown_key_names_line 1 "typo.yaml:5: unknown key 'lora_rr' (did you mean 'lora_r'?)" "$D/typo.yaml"
printf 'base_model: m\nlearning_rate: fast\n' > "$D/type.yaml"
expect cli_wrong_type_names_line 1 "type.yaml:2: key 'learning_rate': expected a number, got 'fast'" "$D/type.yaml"
printf 'base_model: m\nmicro_batch_size: 0\n' > "$D/range.yaml"
expect cli_impossible_value_names_line 1 "range.yaml:2: key 'micro_batch_size': 0 is out of range" "$D/range.yaml"
printf 'base_model: models/stories15M\ndatasets: [{path: %s/d.jsonl, type: text}]\n' "$D" > "$D/ok.yaml"
expect cli_set_unknown_key 1 "--set lora_rr=8: unknown key 'lora_rr'" "$D/ok.yaml" --set lora_rr=8
expect cli_set_bad_value 1 "--set max_steps=abc: key 'max_steps': expected an integer" "$D/ok.yaml" --set max_steps=abc
expect cli_missing_config 1 "nonexistent.yaml" "$D/nonexistent.yaml"
expect cli_usage 2 "usage: ftune train" --bogus-flag "$D/ok.yaml"
expect cli_no_args 2 "usage: ftune train"
printf '{"text": "fine"}\n{"text": "broken"\n' > "$D/d.jsonl"
expect cli_bad_dataset_line 1 "d.jsonl:2: invalid JSON" "$D/ok.yaml" --set output_dir="$D/out"
printf '{"text": "fine"}\n{"body": "x"}\n' > "$D/d.jsonl"
expect cli_missing_text_field 1 "d.jsonl:2: no string field 'text'" "$D/ok.yaml" --set output_dir="$D/out"

# a tokenizer with more ids than the model's vocab_size (stories15M's weights, Llama-3's tokenizer) is
# refused before training, naming both files (it failed at step 1 on a label past 32000)
TP=$D/tok_past_vocab
mkdir -p "$TP"
ln -sf "$FT_ROOT/models/stories15M/config.json" "$FT_ROOT/models/stories15M/model.safetensors" \
    "$FT_ROOT/fixtures/npm/tok-llama3/package/models/tokenizer.json" "$TP/"
printf '{"text": "Hello world, a tokenizer of another model: Übermensch, ñandú, 東京"}\n' > "$D/tp.jsonl"
printf 'base_model: %s\ndatasets: [{path: %s/tp.jsonl, type: text}]\nsequence_len: 16\nmax_steps: 1\noutput_dir: %s/tp_out\n' "$TP" "$D" "$D" > "$D/tp.yaml"
expect cli_tokenizer_past_vocab 1 "$TP/tokenizer.json has 128256 ids but $TP/config.json's vocab_size is 32000" "$D/tp.yaml"

# a model with a sliding window shorter than sequence_len is refused (windowed attention is not
# implemented, full causal attention equals it only within the window), as are prompts beyond it
SW=$D/sw_model
mkdir -p "$SW"
for f in model.safetensors tokenizer.json; do ln -sf "$FT_ROOT/models/stories15M/$f" "$SW/$f"; done
"$PY" - "$FT_ROOT/models/stories15M/config.json" "$SW/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["model_type"] = "mistral"; c["architectures"] = ["MistralForCausalLM"]
c["sliding_window"] = 16
json.dump(c, open(sys.argv[2], "w"))
PY
printf '{"text": "Once upon a time there was a little dog who liked to run in the park with his friends."}\n' > "$D/d.jsonl"
printf 'base_model: %s\ndatasets: [{path: %s/d.jsonl, type: text}]\nsequence_len: 32\nmax_steps: 1\noutput_dir: %s/sw_out\n' "$SW" "$D" "$D" > "$D/sw.yaml"
expect cli_sliding_window_caps_sequence_len 1 "sequence_len 32 exceeds the model's sliding_window 16" "$D/sw.yaml"
out=$("$FTUNE" generate --model "$SW" --prompt-ids "$(seq -s, 1 20)" --max-new-tokens 1 2>&1); rc=$?
if [ $rc -eq 1 ] && [[ $out == *"exceeds the model's 16 positions (its sliding window)"* ]]; then
    echo "PASS cli_sliding_window_caps_generate"
else
    echo "FAIL cli_sliding_window_caps_generate: exit $rc: $out"
fi

# full fine-tuning without clipping and with one micro-batch per step runs AdamW inside the
# backward (no gradient buffer; the numbers are those of the plain path: test_fused_adamw):
# the trainer says so, trains, and logs a finite gradient norm; with clipping it does not
printf 'base_model: models/stories15M\ndatasets: [{path: %s/d.jsonl, type: text}]\nsequence_len: 16\nmicro_batch_size: 1\nmax_steps: 2\nlogging_steps: 1\nval_set_size: 0\noutput_dir: %s/fused_out\n' "$D" "$D" > "$D/fused.yaml"
out=$("$FTUNE" train "$D/fused.yaml" --set max_grad_norm=0 2>&1); rc=$?
norm=$(grep -o '"grad_norm": [0-9.e+-]*' "$D/fused_out/metrics.jsonl" 2>/dev/null | tail -1 | awk '{print $2}')
if [ $rc -eq 0 ] && [[ $out == *"AdamW runs inside the backward"* ]] && [ -n "$norm" ] &&
    awk -v g="$norm" 'BEGIN { exit !(g > 0 && g < 1e6) }'; then
    echo "PASS cli_fused_adamw_without_clipping"
else
    echo "FAIL cli_fused_adamw_without_clipping: exit $rc, grad_norm '$norm': $(echo "$out" | tail -2)"
fi
out=$("$FTUNE" train "$D/fused.yaml" --set max_grad_norm=1 --set output_dir="$D/fused_out2" 2>&1); rc=$?
if [ $rc -eq 0 ] && [[ $out != *"inside the backward"* ]]; then echo "PASS cli_no_fused_adamw_with_clipping"
else echo "FAIL cli_no_fused_adamw_with_clipping: exit $rc: $(echo "$out" | tail -2)"; fi

# metrics.jsonl that cannot be written (here a file size limit of 1 KiB, SIGXFSZ ignored so the
# write fails with EFBIG) fails the run naming the file; it ended with exit 0 and a truncated log
printf 'base_model: models/stories15M\ndatasets: [{path: %s/d.jsonl, type: text}]\nsequence_len: 16\nmicro_batch_size: 1\nmax_steps: 30\nlogging_steps: 1\nval_set_size: 0\nadapter: lora\nlora_r: 1\noutput_dir: %s/xfsz_out\n' "$D" "$D" > "$D/xfsz.yaml"
out=$(bash -c "trap '' XFSZ; ulimit -f 1; exec \"$FTUNE_REL\" train \"$D/xfsz.yaml\"" 2>&1); rc=$?
if [ $rc -eq 1 ] && [[ $out == *"xfsz_out/metrics.jsonl: write failed: File too large"* ]]; then
    echo "PASS cli_metrics_write_failure"
else
    echo "FAIL cli_metrics_write_failure: exit $rc: $(echo "$out" | tail -1)"
fi

# output_dir = the base model's folder (by inode: "base/." too) is refused before anything is
# written: it overwrote the base's model.safetensors
BM=$D/base_model
mkdir -p "$BM"
for f in model.safetensors tokenizer.json config.json; do ln -sf "$FT_ROOT/models/stories15M/$f" "$BM/$f"; done
expect cli_output_dir_is_base_model 1 "output_dir $BM/. is the base model's folder" "$D/xfsz.yaml" \
    --set base_model="$BM" --set output_dir="$BM/." --set max_steps=1
[ -z "$(ls "$BM" | grep -v -e model.safetensors -e tokenizer.json -e config.json)" ] &&
    echo "PASS cli_output_dir_is_base_model_untouched" || echo "FAIL cli_output_dir_is_base_model_untouched: $(ls "$BM")"
# a fresh run into a folder with another run's checkpoint-N is refused (its checkpoints were
# pruned by number against the old ones), telling how to resume
mkdir -p "$D/old_run/checkpoint-3"
echo '{}' > "$D/old_run/checkpoint-3/trainer_state.json"
expect cli_fresh_run_refuses_old_checkpoints 1 "output_dir $D/old_run already holds checkpoints of a run ($D/old_run/checkpoint-3): continue it with resume_from_checkpoint: auto" \
    "$D/xfsz.yaml" --set output_dir="$D/old_run" --set max_steps=1

# long output_dir paths: an error about a ~1000-character path keeps its end, the reason (it was
# cut at 1024 bytes); one too long for the paths of the run's files is refused before training
# (a 4085-character one created "metrics.j", 4095 unlink()ed output_dir itself)
long=$D/$(printf 'x%.0s' $(seq 1 1000))
expect cli_long_path_error_keeps_reason 1 "xxxx/config.json: cannot open: File name too long" \
    "$D/xfsz.yaml" --set base_model="$long" --set output_dir="$D/long_out"
expect cli_long_output_dir_error_keeps_reason 1 "xxxx: File name too long" \
    "$D/xfsz.yaml" --set output_dir="$long"
very_long=$D/$(for i in $(seq 1 20); do printf '%0200d/' 0; done)
expect cli_output_dir_too_long 1 "characters long, more than the 3968 that leave room" \
    "$D/xfsz.yaml" --set output_dir="$very_long"
[ ! -e "$D/$(printf "%0200d" 0)" ] && echo "PASS cli_output_dir_too_long_creates_nothing" ||
    echo "FAIL cli_output_dir_too_long_creates_nothing"
