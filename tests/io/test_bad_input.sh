#!/usr/bin/env bash
# Bad input must fail cleanly: for each crafted folder (tests/io/make_bad_inputs.py) the sanitizer
# build of `ftune inspect` (and `ftune convert` for llama2.c files) must exit non-zero and print
# exactly one line on stderr, "ftune: ...", naming the file and the tensor or key, with no sanitizer
# report. Good folders (ok, harmless extras, sharded) must pass, so a checker that rejects
# everything fails here too.
set -u
cd "${FT_ROOT:?}"
B=$FT_TMP/bad
"$PY" tests/io/make_bad_inputs.py "$B" || { echo "FAIL bad_input_setup: make_bad_inputs.py failed"; exit 1; }

# [IN=FILE] expect_fail NAME FILE-NEEDLE OTHER-NEEDLE -- command...   (standard input: FILE or /dev/null)
expect_fail() {
    local name=$1 file=$2 what=$3; shift 4
    local err=$FT_TMP/$name.err out=$FT_TMP/$name.out
    "$@" <"${IN:-/dev/null}" >"$out" 2>"$err"; local rc=$?
    local lines; lines=$(wc -l <"$err")
    if [ "$rc" -eq 0 ]; then echo "FAIL bad_$name: exit status 0"
    elif grep -qiE 'sanitizer|runtime error|==[0-9]+==' "$err" "$out"; then echo "FAIL bad_$name: sanitizer report"; sed 's/^/    /' "$err" | head -20
    elif [ "$lines" -ne 1 ]; then echo "FAIL bad_$name: $lines lines on stderr"; sed 's/^/    /' "$err" | head -5
    elif ! grep -q '^ftune: ' "$err"; then echo "FAIL bad_$name: no 'ftune: ' prefix: $(cat "$err")"
    elif ! grep -qF -- "$file" "$err"; then echo "FAIL bad_$name: message does not name '$file': $(cat "$err")"
    elif ! grep -qF -- "$what" "$err"; then echo "FAIL bad_$name: message does not mention '$what': $(cat "$err")"
    else echo "PASS bad_$name"; fi
}
expect_ok() {
    local name=$1; shift
    if "$@" >"$FT_TMP/$name.out" 2>"$FT_TMP/$name.err"; then echo "PASS good_$name"
    else echo "FAIL good_$name: $(head -c 300 "$FT_TMP/$name.err")"; fi
}

ST=model.safetensors CFG=config.json
expect_ok ok "$FTUNE" inspect "$B/ok"
expect_ok harmless_extra "$FTUNE" inspect "$B/harmless_extra"
expect_ok sharded "$FTUNE" inspect "$B/sharded_ok"
expect_fail truncated_file "$B/truncated/$ST" "past the end of the data block" -- "$FTUNE" inspect "$B/truncated"
expect_fail file_under_8_bytes "$B/tiny_file/$ST" "shorter than the 8-byte" -- "$FTUNE" inspect "$B/tiny_file"
expect_fail header_length_past_eof "$B/header_past_eof/$ST" "header length 1000000 past the end" -- "$FTUNE" inspect "$B/header_past_eof"
expect_fail offsets_out_of_range "$B/offsets_out_of_range/$ST" "'model.norm.weight'" -- "$FTUNE" inspect "$B/offsets_out_of_range"
expect_fail overlapping_offsets "$B/overlapping_offsets/$ST" "overlap" -- "$FTUNE" inspect "$B/overlapping_offsets"
expect_fail begin_after_end "$B/begin_after_end/$ST" "begin after end" -- "$FTUNE" inspect "$B/begin_after_end"
expect_fail nbytes_not_shape "$B/nbytes_mismatch/$ST" "'model.norm.weight'" -- "$FTUNE" inspect "$B/nbytes_mismatch"
expect_fail trailing_data "$B/trailing_data/$ST" "not covered by any tensor" -- "$FTUNE" inspect "$B/trailing_data"
expect_fail unknown_dtype "$B/unknown_dtype/$ST" "unknown dtype 'Q4'" -- "$FTUNE" inspect "$B/unknown_dtype"
expect_fail dtype_not_float "$B/dtype_mismatch/$ST" "'model.norm.weight' has dtype I32" -- "$FTUNE" inspect "$B/dtype_mismatch"
expect_fail shape_not_config "$B/shape_mismatch/$ST" "'model.layers.0.self_attn.k_proj.weight' has shape [16, 16], config.json implies [8, 16]" -- "$FTUNE" inspect "$B/shape_mismatch"
expect_fail config_disagrees "$B/config_shape_disagrees/$ST" "mlp.gate_proj.weight' has shape [24, 16], config.json implies [32, 16]" -- "$FTUNE" inspect "$B/config_shape_disagrees"
expect_fail missing_tensor "$B/missing_tensor/$ST" "'model.norm.weight' is missing" -- "$FTUNE" inspect "$B/missing_tensor"
expect_fail unexpected_tensor "$B/extra_tensor/$ST" "unexpected tensor 'model.layers.0.self_attn.rope_bias'" -- "$FTUNE" inspect "$B/extra_tensor"
expect_fail duplicate_name "$B/duplicate_name/$ST" "'model.norm.weight' appears twice" -- "$FTUNE" inspect "$B/duplicate_name"
expect_fail header_not_object "$B/header_not_object/$ST" "not a JSON object" -- "$FTUNE" inspect "$B/header_not_object"
expect_fail header_bad_json "$B/header_bad_json/$ST" "not valid JSON" -- "$FTUNE" inspect "$B/header_bad_json"
expect_fail negative_dim "$B/negative_dim/$ST" "'model.norm.weight': shape[0]" -- "$FTUNE" inspect "$B/negative_dim"
expect_fail missing_data_offsets "$B/missing_data_offsets/$ST" "missing 'data_offsets'" -- "$FTUNE" inspect "$B/missing_data_offsets"
expect_fail config_syntax_line "$B/config_syntax/$CFG:3:" "JSON syntax error" -- "$FTUNE" inspect "$B/config_syntax"
expect_fail config_model_type "$B/config_model_type/$CFG" "'gpt_neox' is not supported" -- "$FTUNE" inspect "$B/config_model_type"
expect_fail config_value_newline "$B/config_model_type_newline/$CFG" "'llama?mistral' is not supported" -- "$FTUNE" inspect "$B/config_model_type_newline"
expect_fail config_rope_yarn "$B/config_rope_yarn/$CFG" "'yarn' is not supported" -- "$FTUNE" inspect "$B/config_rope_yarn"
expect_fail config_rope_dynamic "$B/config_rope_dynamic/$CFG" "'dynamic' is not supported" -- "$FTUNE" inspect "$B/config_rope_dynamic"
expect_fail config_missing_key "$B/config_missing_key/$CFG" "'vocab_size' is missing" -- "$FTUNE" inspect "$B/config_missing_key"
expect_fail config_wrong_type "$B/config_wrong_type/$CFG" "'hidden_size' must be an integer" -- "$FTUNE" inspect "$B/config_wrong_type"
expect_fail config_eps_underflow "$B/config_eps_underflow/$CFG" "'rms_norm_eps' = 1e-50 must be > 0 and within float range" -- "$FTUNE" inspect "$B/config_eps_underflow"
expect_fail config_eps_overflow "$B/config_eps_overflow/$CFG" "'rms_norm_eps' = 1e+39 must be > 0" -- "$FTUNE" inspect "$B/config_eps_overflow"
expect_fail config_theta_denormal "$B/config_theta_denormal/$CFG" "'rope_theta' must be > 0 and within float range" -- "$FTUNE" inspect "$B/config_theta_denormal"
expect_fail config_theta_overflow "$B/config_theta_overflow/$CFG" "'rope_theta' must be > 0 and within float range" -- "$FTUNE" inspect "$B/config_theta_overflow"
expect_fail config_llama3_span "$B/config_llama3_span/$CFG" "key 'rope_scaling': llama3 needs" -- "$FTUNE" inspect "$B/config_llama3_span"
expect_fail config_duplicate_key "$B/config_duplicate_key/$CFG" "'rope_theta' appears twice" -- "$FTUNE" inspect "$B/config_duplicate_key"
expect_fail adapter_config_leak "$B/adapter_bad_tokens/adapter_config.json" "'trainable_token_indices'" -- "$FTUNE" generate --model "$B/ok" --adapter "$B/adapter_bad_tokens" --prompt-ids 1 --max-new-tokens 2
# chat sizes its KV cache by the context: 2^31 - 1 positions are refused before any allocation
# (the sanitizer build aborted on the request; the optimized one zeroed pages until out of memory)
mkdir -p "$B/kv_huge" && ln -sf "$FT_ROOT/models/stories15M/model.safetensors" "$FT_ROOT/models/stories15M/tokenizer.json" "$B/kv_huge/" &&
    "$PY" -c 'import json, sys; c = json.load(open(sys.argv[1])); c["max_position_embeddings"] = 2**31 - 1; json.dump(c, open(sys.argv[2], "w"))' \
        "$FT_ROOT/models/stories15M/config.json" "$B/kv_huge/config.json"
expect_fail kv_cache_past_memory "kv cache: 2147483647 positions" "more than this machine's" -- "$FTUNE" generate --model "$B/kv_huge" --chat --chat-template chatml --prompt hi --max-new-tokens 2
# a tokenizer with more ids than the model's vocab_size (stories15M's weights, Llama-3's tokenizer) is
# refused before generating: generate --prompt ran with it (exit 0) while chat refused it
mkdir -p "$B/tok_past_vocab" && ln -sf "$FT_ROOT/models/stories15M/config.json" "$FT_ROOT/models/stories15M/model.safetensors" \
    "$FT_ROOT/fixtures/npm/tok-llama3/package/models/tokenizer.json" "$B/tok_past_vocab/"
expect_fail tokenizer_past_vocab_generate "$B/tok_past_vocab/tokenizer.json" "has 128256 ids but $B/tok_past_vocab/config.json's vocab_size is 32000" -- "$FTUNE" generate --model "$B/tok_past_vocab" --prompt "Hello world, this is" --max-new-tokens 2
expect_fail tokenizer_past_vocab_chat "$B/tok_past_vocab/tokenizer.json" "config.json's vocab_size is 32000" -- "$FTUNE" generate --model "$B/tok_past_vocab" --chat --chat-template chatml --prompt hi --max-new-tokens 2
# a NUL byte in a chat line cut the message there ("hi" was sent)
printf 'hi\0there\n' >"$B/nul_line.txt"
IN=$B/nul_line.txt expect_fail chat_nul_byte "<stdin>:1" "NUL byte" -- "$FTUNE" chat --model "$FT_ROOT/models/stories15M" --chat-template llama2 --max-new-tokens 2
# chat and generate parse the sampling options alike: chat took them with strtod and cast to int
# (1.5 ran as 1, 0x10 as 16, --top-k 2.7 as 2, --seed 1.9 as 1), generate took --temperature 1e300
# (inf as a float) and hexadecimal floats
printf 'hi\n' >"$B/hi.txt"
S15=$FT_ROOT/models/stories15M
for opt in "--max-new-tokens 1.5" "--max-new-tokens 0x10" "--top-k 2.7" "--seed 1.9" "--temperature 1e300" "--temperature 0x10" "--top-p 0x1p-1"; do
    set -- $opt
    want="is not an integer"; [[ $1 == --temperature || $1 == --top-p ]] && want="is not a decimal number within float range"
    for cmd in chat generate; do
        if [ $cmd = chat ]; then args=(chat --model "$S15" --chat-template llama2); else args=(generate --model "$S15" --prompt-ids 1); fi
        IN=$B/hi.txt expect_fail "${cmd}_option_${1#--}_$2" "$1: '$2'" "$want" -- "$FTUNE" "${args[@]}" --max-new-tokens 2 "$1" "$2"
    done
done
# output that cannot be written (/dev/full) is an error, not exit 0, for every command that prints
if [ -w /dev/full ]; then
    printf '{"instruction": "Q", "input": "", "output": "A"}\n' >"$B/one.jsonl"
    printf 'base_model: %s\ndatasets: [{path: %s, type: alpaca}]\n' "$FT_ROOT/fixtures/npm/tok-mistral/package/models" "$B/one.jsonl" >"$B/preview.yaml"
    full() { # name command...: stdout to /dev/full must give status 1 and the one error line
        local name=$1; shift
        "$@" <"$B/hi.txt" >/dev/full 2>"$FT_TMP/full.err"; local rc=$?
        if [ $rc -eq 1 ] && [ "$(cat "$FT_TMP/full.err")" = "ftune: writing standard output failed" ]; then echo "PASS stdout_full_$name"
        else echo "FAIL stdout_full_$name: exit $rc: $(head -c 300 "$FT_TMP/full.err")"; fi
    }
    full logprobs "$FTUNE" logprobs --model "$S15" --ids 1,9038
    full generate "$FTUNE" generate --model "$S15" --prompt-ids 1 --max-new-tokens 2
    full chat "$FTUNE" chat --model "$S15" --chat-template llama2 --max-new-tokens 2
    full inspect "$FTUNE" inspect "$B/ok"
    full preview_jsonl "$FTUNE" preview "$B/preview.yaml" --jsonl
    full version "$FTUNE" version
    full tokenize bash -c 'echo \"hi\" | "$1" tokenize --tokenizer "$2"' _ "$FTUNE" "$S15"
fi
# every command: --help prints its usage on stdout, exit 0 (generate and chat said "option '--help'
# needs a value", inspect and tokenize exited 2); an unknown option is named on the first line of
# stderr, exit 2 (inspect, tokenize and merge printed only the usage, version ignored it)
for cmd in inspect convert generate logprobs tokenize train merge preview chat version; do
    out=$("$FTUNE" $cmd --help 2>"$FT_TMP/help.err"); rc=$?
    if [ $rc -eq 0 ] && [[ $out == "usage: ftune $cmd"* ]] && [ ! -s "$FT_TMP/help.err" ]; then echo "PASS help_$cmd"
    else echo "FAIL help_$cmd: exit $rc, stdout '${out:0:100}', stderr '$(head -c 200 "$FT_TMP/help.err")'"; fi
    "$FTUNE" $cmd --bogus </dev/null >"$FT_TMP/bogus.out" 2>"$FT_TMP/bogus.err"; rc=$?
    if [ $rc -eq 2 ] && [[ $(head -n 1 "$FT_TMP/bogus.err") == "ftune $cmd: "*"'--bogus'"* ]] && [ ! -s "$FT_TMP/bogus.out" ]; then
        echo "PASS unknown_option_$cmd"
    else echo "FAIL unknown_option_$cmd: exit $rc, stderr '$(head -c 200 "$FT_TMP/bogus.err")'"; fi
done
# a generated id the tokenizer cannot decode (a 10-token tokenizer on the 40-id model) is an error;
# the streamed text stopped there and generate exited 0
mkdir -p "$B/tok_small" && ln -sf "$B/ok/config.json" "$B/ok/model.safetensors" "$B/tok_small/" &&
    "$PY" -c 'import json, sys; json.dump({"model": {"type": "BPE", "vocab": {c: i for i, c in enumerate("abcdefghij")}, "merges": []}}, open(sys.argv[1], "w"))' "$B/tok_small/tokenizer.json"
expect_fail decode_error_generate "$B/tok_small/tokenizer.json: decoding the generated ids" "is not in the vocabulary (size 10)" -- "$FTUNE" generate --model "$B/tok_small" --prompt abc --max-new-tokens 20 --temperature 1 --seed 1
expect_fail sharded_wrong_shard "$B/sharded_wrong_shard/model.safetensors.index.json" "'model.embed_tokens.weight'" -- "$FTUNE" inspect "$B/sharded_wrong_shard"
expect_fail no_weights "$B/no_weights" "no model.safetensors" -- "$FTUNE" inspect "$B/no_weights"
expect_fail no_such_dir "$B/nope/$CFG" "cannot open" -- "$FTUNE" inspect "$B/nope"

len=$(cat "$B/l2c_tiny.len")
expect_fail l2c_length_short "$B/l2c_tiny.bin" "implies $len bytes" -- "$FTUNE" convert llama2c --in "$B/l2c_tiny.bin" --offset 5 --length $((len - 4)) --out "$FT_TMP/l2c_x"
expect_fail l2c_length_long "$B/l2c_tiny.bin" "implies $len bytes" -- "$FTUNE" convert llama2c --in "$B/l2c_tiny.bin" --offset 5 --length $((len + 3)) --out "$FT_TMP/l2c_x"
expect_fail l2c_past_eof "$B/l2c_tiny.bin" "runs past the end" -- "$FTUNE" convert llama2c --in "$B/l2c_tiny.bin" --offset 5 --length $((len + 4)) --out "$FT_TMP/l2c_x"
expect_fail l2c_offset_past_eof "$B/l2c_tiny.bin" "past the end of the file" -- "$FTUNE" convert llama2c --in "$B/l2c_tiny.bin" --offset 99999999 --out "$FT_TMP/l2c_x"
expect_fail l2c_bad_header "$B/l2c_garbage.bin" "implausible llama2.c header" -- "$FTUNE" convert llama2c --in "$B/l2c_garbage.bin" --out "$FT_TMP/l2c_x"
expect_fail l2c_vocab_int_min "$B/l2c_vocab_min.bin" "implausible llama2.c header" -- "$FTUNE" convert llama2c --in "$B/l2c_vocab_min.bin" --out "$FT_TMP/l2c_x"
# an empty path is refused by its option: convert's mkdir -p read past the end of "" (a sanitizer
# report), and joined with "/config.json" or "/tokenizer.json" it named a file at the root
expect_fail empty_out_convert "--out" "empty path" -- "$FTUNE" convert llama2c --in "$B/l2c_tiny.bin" --offset 5 --length "$len" --out ""
expect_fail empty_in_convert "--in" "empty path" -- "$FTUNE" convert llama2c --in "" --out "$FT_TMP/l2c_x"
expect_fail empty_out_tokenize "--out" "empty path" -- "$FTUNE" tokenize --convert-llama2c "$B/l2c_tiny.bin" --out ""
expect_fail empty_tokenizer "--tokenizer" "empty path" -- "$FTUNE" tokenize --tokenizer ""
expect_fail empty_model_generate "--model" "empty path" -- "$FTUNE" generate --model "" --prompt-ids 1
expect_fail empty_adapter_generate "--adapter" "empty path" -- "$FTUNE" generate --model "$B/ok" --adapter "" --prompt-ids 1
expect_fail empty_model_logprobs "--model" "empty path" -- "$FTUNE" logprobs --model "" --ids 1
expect_fail empty_adapter_logprobs "--adapter" "empty path" -- "$FTUNE" logprobs --model "$B/ok" --adapter "" --ids 1
expect_fail empty_model_chat "--model" "empty path" -- "$FTUNE" chat --model ""
expect_fail empty_out_merge "--out" "empty path" -- "$FTUNE" merge --model "$B/ok" --adapter "$B/adapter_bad_tokens" --out ""
expect_fail empty_dir_inspect "DIR" "empty path" -- "$FTUNE" inspect ""
expect_fail empty_config_preview "CONFIG.yaml" "empty path" -- "$FTUNE" preview ""
expect_fail empty_config_train "CONFIG.yaml" "empty path" -- "$FTUNE" train ""
if [ -e "$FT_TMP/l2c_x" ]; then echo "FAIL l2c_failed_convert_writes_nothing: $FT_TMP/l2c_x exists"; else echo "PASS l2c_failed_convert_writes_nothing"; fi
