#!/usr/bin/env bash
# Instruction data through the CLI (`ftune preview`, sanitizer build): malformed datasets give one
# error line naming the file and line (bad JSON line, missing field, empty conversation, unknown
# role, a sample longer than sequence_len), never a crash or a silent empty dataset; skip_invalid
# reports its count; truncation drop/truncate are counted; the human view marks exactly the
# reply and its EOS; several datasets are mixed; a config key ftune lacks is named.
set -u
cd "${FT_ROOT:?}"
TOKDIR=fixtures/npm/tok-mistral/package/models
[ -f "$TOKDIR/tokenizer.json" ] || { echo "FAIL data_cli_fixtures: $TOKDIR missing (make fixtures)"; exit 1; }
T=$FT_TMP/data_cli
mkdir -p "$T"
fails=0
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; fails=$((fails + 1)); }

# cfg NAME TYPE DATAFILE [extra yaml lines...] -> path of the config
cfg() {
    local name=$1 type=$2 data=$3; shift 3
    {
        echo "base_model: $TOKDIR"
        echo "datasets:"
        echo "  - path: $data"
        echo "    type: $type"
        for l in "$@"; do echo "$l"; done
    } >"$T/$name.yaml"
    echo "$T/$name.yaml"
}

# expect_error NAME CONFIG SUBSTRING: preview fails with status 1, one "ftune: " line holding it
expect_error() {
    local name=$1 c=$2 want=$3
    "$FTUNE" preview "$c" --jsonl >/dev/null 2>"$T/$name.err"
    local rc=$? msg
    msg=$(cat "$T/$name.err")
    if [ $rc -eq 1 ] && [[ $msg == "ftune: "*"$want"* ]] && [ "$(wc -l <"$T/$name.err")" -eq 1 ]; then
        pass "$name"
    else
        fail "$name" "status $rc, stderr '$msg' (want '$want')"
    fi
}

good='{"instruction": "What is the capital of France?", "input": "", "output": "Paris"}'
printf '%s\n' "$good" >"$T/one.jsonl"
printf '%s\n%s\n{"instruction": "x", "output": }\n' "$good" "$good" >"$T/badjson.jsonl"
expect_error bad_json_line "$(cfg badjson alpaca "$T/badjson.jsonl")" "$T/badjson.jsonl:3: invalid JSON"
printf '%s\n{"instruction": "Q", "input": ""}\n' "$good" >"$T/missing.jsonl"
expect_error missing_field "$(cfg missing alpaca "$T/missing.jsonl")" "$T/missing.jsonl:2: missing field 'output'"
printf '[\n {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]},\n {"messages": []}\n]\n' >"$T/empty.json"
expect_error empty_conversation "$(cfg empty chat_template "$T/empty.json")" "$T/empty.json:3: empty conversation"
printf '{"conversations": [{"from": "human", "value": "Q"}, {"from": "wizard", "value": "A"}]}\n' >"$T/role.jsonl"
expect_error unknown_role "$(cfg role sharegpt "$T/role.jsonl")" "$T/role.jsonl:1: conversations[1]: unknown role 'wizard'"
expect_error too_long "$(cfg long alpaca fixtures/data/quiz_alpaca.jsonl 'sequence_len: 20' 'shuffle_merged_datasets: false')" \
    "fixtures/data/quiz_alpaca.jsonl:1: sample has"
printf '\n\n' >"$T/blank.jsonl"
expect_error empty_file "$(cfg blank alpaca "$T/blank.jsonl")" "$T/blank.jsonl: no records"
expect_error missing_file "$(cfg nofile alpaca "$T/nope.jsonl")" "nope.jsonl"
expect_error unknown_type "$(cfg typ alpacca "$T/missing.jsonl")" "'alpacca' is not supported"
expect_error unknown_template "$(cfg tpl alpaca "$T/one.jsonl" 'chat_template: llama9')" "unknown chat_template 'llama9'"
expect_error preference_for_sft "$(cfg pref preference fixtures/data/quiz_pref.jsonl)" "preference"
# a UTF-8 byte order mark before a JSON array, as before JSON Lines
printf '\xef\xbb\xbf[\n%s\n]\n' "$good" >"$T/bom.json"
"$FTUNE" preview "$(cfg bom alpaca "$T/bom.json")" --jsonl >/dev/null 2>"$T/bom.err" && pass bom_json_array || fail bom_json_array "$(cat "$T/bom.err")"
# an error that echoes input with a line break is still one line (the break escaped)
printf '{"messages": [{"role": "user\\nX", "content": "Q"}, {"role": "assistant", "content": "A"}]}\n' >"$T/role_nl.jsonl"
expect_error role_newline_one_line "$(cfg role_nl chat_template "$T/role_nl.jsonl")" "$T/role_nl.jsonl:1: messages[0]: unknown role 'user\\nX'"
# a key given twice: Python's json (so HF datasets) keeps the last value, cJSON the first
printf '{"instruction": "Say A", "input": "", "output": "first", "output": "second"}\n' >"$T/dup.jsonl"
expect_error duplicate_key "$(cfg dup alpaca "$T/dup.jsonl")" "$T/dup.jsonl:1: key 'output' appears twice"
# \u0000: cJSON's strings end there ("visible" would be trained, the tail lost)
printf '{"instruction": "Q", "input": "", "output": "visible\\u0000hidden tail"}\n' >"$T/nul.jsonl"
expect_error nul_escape "$(cfg nul alpaca "$T/nul.jsonl")" "$T/nul.jsonl:1: a string holds U+0000"
mkdir -p "$T/tokdup" && cp "$TOKDIR/tokenizer.json" "$T/tokdup/"
"$PY" -c 'import json, sys; c = json.load(open(sys.argv[1])); t = json.dumps(c); print(t[:-1] + ", \"eos_token\": \"<x>\", \"eos_token\": \"</s>\"}")' \
    "$TOKDIR/tokenizer_config.json" >"$T/tokdup/tokenizer_config.json"
c=$(cfg tokdup alpaca "$T/one.jsonl" 'chat_template: tokenizer_default')
sed -i "s|^base_model: .*|base_model: $T/tokdup|" "$c"
expect_error duplicate_key_tokenizer_config "$c" "tokenizer_config.json: key 'eos_token' appears twice"

# --n is a whole count: "" was taken as 0 (nothing shown, exit 0), "3x" and "-1" refused
for n in "" 3x -1 99999999999999999999; do
    "$FTUNE" preview "$(cfg one alpaca "$T/one.jsonl")" --n "$n" >/dev/null 2>"$T/n.err"; rc=$?
    msg=$(cat "$T/n.err")
    if [ $rc -ne 0 ] && [[ $msg == "ftune: --n: '$n' is not an integer"* ]] && [ "$(wc -l <"$T/n.err")" -eq 1 ]; then
        pass "preview_n_'$n'"
    else
        fail "preview_n_'$n'" "status $rc, stderr '$msg'"
    fi
done

# skip_invalid: the good records are kept, the count is reported; all invalid is still an error
c=$(cfg skip alpaca "$T/badjson.jsonl")
sed -i 's/    type: alpaca/    type: alpaca\n    skip_invalid: true/' "$c"
out=$("$FTUNE" preview "$c" --n 5 2>&1 >/dev/null)
if [[ $out == *"skipped 1 invalid records"*"badjson.jsonl:3: invalid JSON"* ]] && [[ $out == *"2 records -> 2 samples"* ]]; then
    pass skip_invalid_counts
else
    fail skip_invalid_counts "$out"
fi
printf '{"bad\n{"instruction": 3}\n' >"$T/allbad.jsonl"
c=$(cfg allbad alpaca "$T/allbad.jsonl")
sed -i 's/    type: alpaca/    type: alpaca\n    skip_invalid: true/' "$c"
expect_error skip_invalid_all_bad "$c" "all 2 records are invalid"

# truncation counted
out=$("$FTUNE" preview "$(cfg drop alpaca fixtures/data/quiz_alpaca.jsonl 'sequence_len: 48' 'truncation: drop')" --n 1 2>&1 >/dev/null)
[[ $out == *"dropped "*" samples longer than sequence_len 48"* ]] && pass truncation_drop_reported || fail truncation_drop_reported "$out"
# truncate: long samples cut to sequence_len (counted); one cut before its reply has nothing to
# learn and is dropped (counted too)
c=$(cfg trunc alpaca fixtures/data/quiz_alpaca.jsonl 'sequence_len: 50' 'truncation: truncate')
"$FTUNE" preview "$c" --jsonl --n 1000 >"$T/trunc.jsonl" 2>"$T/trunc.err"
out=$("$FTUNE" preview "$c" --n 1 2>&1 >/dev/null)
"$PY" - "$T/trunc.jsonl" <<'EOF' && [[ $out == *"truncated "*" samples to sequence_len 50"* ]] &&
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
n = [len(r["input_ids"]) for r in rows]
sys.exit(0 if rows and max(n) == 50 and all(len(r["labels"]) == len(r["input_ids"]) for r in rows) else 1)
EOF
    pass truncation_truncate_to_sequence_len || fail truncation_truncate_to_sequence_len "$out $(cat "$T/trunc.err")"

# the human view marks exactly the reply and its EOS (alpaca template, not a terminal: [[ ]])
out=$("$FTUNE" preview "$(cfg one alpaca "$T/one.jsonl")" --n 1 2>/dev/null)
[[ $out == *"### Response:"*"[[Paris</s>]]"* ]] && [ "$(grep -o '\[\[' <<<"$out" | wc -l)" -eq 1 ] &&
    pass preview_marks_reply_and_eos || fail preview_marks_reply_and_eos "$out"
# train_on_inputs: every token marked
out=$("$FTUNE" preview "$(cfg toi alpaca "$T/one.jsonl" 'train_on_inputs: true')" --jsonl --n 1 2>/dev/null)
"$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if d["labels"] == d["input_ids"] else 1)' "$out" &&
    pass preview_train_on_inputs || fail preview_train_on_inputs "$out"

# several datasets mixed (and shuffled with the seed: same seed, same order)
c=$T/mix.yaml
printf 'base_model: %s\ndatasets:\n  - path: fixtures/data/quiz_alpaca.jsonl\n    type: alpaca\n  - path: fixtures/data/riddles_sharegpt.jsonl\n    type: sharegpt\nchat_template: alpaca\nseed: 7\n' "$TOKDIR" >"$c"
a=$("$FTUNE" preview "$c" --n 1000 2>&1 >/dev/null); b=$("$FTUNE" preview "$c" --jsonl --n 1000 | md5sum); b2=$("$FTUNE" preview "$c" --jsonl --n 1000 | md5sum)
n_al=$(wc -l <fixtures/data/quiz_alpaca.jsonl); n_ri=$(wc -l <fixtures/data/riddles_sharegpt.jsonl)
[[ $a == *"$((n_al + n_ri)) records"* ]] && [ "$b" = "$b2" ] && pass datasets_mixed || fail datasets_mixed "$a"

# a column mapping (Axolotl names) on a file with other field names
printf '{"q": "What is the capital of France?", "a": "Paris"}\n' >"$T/cols.jsonl"
c=$(cfg cols alpaca "$T/cols.jsonl")
sed -i 's/    type: alpaca/    type: alpaca\n    field_instruction: q\n    field_output: a/' "$c"
out=$("$FTUNE" preview "$c" --n 1 2>/dev/null)
[[ $out == *"capital of France"*"[[Paris</s>]]"* ]] && pass column_mapping || fail column_mapping "$out"
[ "$fails" -eq 0 ]
