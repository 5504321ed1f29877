#!/usr/bin/env bash
# Tokenizer against the independent reference (@huggingface/tokenizers under node) on a generated
# hostile corpus, for every real tokenizer (Llama-3, Qwen3, Mistral-7B v0.1, and two rewritten to
# other Hub layouts: Metaspace SentencePiece, Llama-3 with its BOS template) and the default model's (llama2.c tokenizer.bin converted by ftune, also
# checked against llama-tokenizer-js):
# ids with and without special tokens (100% of lines), decode, decode(encode(x)) == x where the
# reference round-trips; malformed tokenizer.json and bad input lines give one clear error line.
# Prints PASS/FAIL lines; exits non-zero on any failure.
set -uo pipefail
cd "${FT_ROOT:?}"
FTUNE=${FTUNE:-build/test/ftune}
T=${FT_TMP:?}/tok
mkdir -p "$T"
fails=0
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; fails=$((fails + 1)); }
NPM=fixtures/npm
LLAMA2C=$NPM/llama2c/package/dist/llama2.data
for f in "$NPM/tok-llama3/package/models/tokenizer.json" "$NPM/tok-qwen3/package/models/tokenizer.json" \
    "$NPM/tok-mistral/package/models/tokenizer.json" "$LLAMA2C" fixtures/node/node_modules/@huggingface/tokenizers/package.json \
    "$NPM/llama-tokenizer-js/package/llama-tokenizer.js"; do
    [ -f "$f" ] || { fail fixtures "missing $f (run tools/fetch-fixtures.sh)"; exit 1; }
done

node tests/tokenizer/make_corpus.mjs > "$T/corpus.jsonl" || fail corpus "make_corpus.mjs failed"
n=$(wc -l < "$T/corpus.jsonl")
node tests/tokenizer/make_corpus.mjs > "$T/corpus2.jsonl"
if [ "$n" -ge 2000 ] && cmp -s "$T/corpus.jsonl" "$T/corpus2.jsonl"; then pass "tok_corpus ($n lines, deterministic)"
else fail tok_corpus "$n lines (need >= 2000) or not deterministic"; fi

# the default model's tokenizer: llama2.c tokenizer.bin is bytes [60816028, 61248745) of llama2.data
mkdir -p "$T/llama2c"
if $FTUNE tokenize --convert-llama2c "$LLAMA2C" --offset 60816028 --length 432717 --out "$T/llama2c" 2> "$T/conv.err"; then
    pass tok_llama2c_convert
    node tests/tokenizer/check_llama2c_merges.mjs "$T/llama2c/tokenizer.json" || fails=$((fails + 1))
else
    fail tok_llama2c_convert "$(head -1 "$T/conv.err")"
fi

# its numeric options are whole decimal numbers in range (atoll took "60816028abc" as 60816028,
# "abc" as 0, and --vocab-size "32000x" as 32000)
mkdir -p "$T/l2c_opts"
for bad in "--offset 60816028abc" "--offset abc" "--offset 99999999999999999999" "--length 432717x" "--length -5" \
    "--vocab-size 32000x" "--vocab-size 99999999999"; do
    set -- $bad
    $FTUNE tokenize --convert-llama2c "$LLAMA2C" --offset 60816028 --length 432717 "$1" "$2" --out "$T/l2c_opts" \
        > /dev/null 2> "$T/opt.err"; rc=$?
    if [ $rc -ne 0 ] && [ "$(wc -l < "$T/opt.err")" -eq 1 ] && grep -qF -- "ftune: $1: '$2' is not an integer" "$T/opt.err"; then
        pass "tok_llama2c_option $1 $2"
    else
        fail "tok_llama2c_option $1 $2" "rc=$rc: $(head -c 300 "$T/opt.err")"
    fi
done

# the same through `ftune convert llama2c --tokenizer-offset/--tokenizer-length` (next to the model)
if $FTUNE convert llama2c --in "$LLAMA2C" --offset 0 --length 60816028 --tokenizer-offset 60816028 \
    --tokenizer-length 432717 --out "$T/stories15M" > /dev/null 2> "$T/conv2.err" &&
    cmp -s "$T/stories15M/tokenizer.json" "$T/llama2c/tokenizer.json" && [ -f "$T/stories15M/tokenizer_config.json" ]; then
    pass tok_convert_llama2c_hook
else
    fail tok_convert_llama2c_hook "$(head -1 "$T/conv2.err") (tokenizer.json differs from tokenize --convert-llama2c's or missing)"
fi
# a bad tokenizer range or tokenizer is refused before anything is written (the model was written
# first, leaving a folder without its tokenizer)
for c in "61000000|--tokenizer-offset 61000000 --tokenizer-length 432717 runs past the end of the file" \
    "60816000|tokenizer at bytes [60816000, 61248717): llama2.c tokenizer: token 0 length" "0|tokenizer at bytes [0, 432717)"; do
    if $FTUNE convert llama2c --in "$LLAMA2C" --offset 0 --length 60816028 --tokenizer-offset "${c%%|*}" \
        --tokenizer-length 432717 --out "$T/stories-bad" > /dev/null 2> "$T/conv3.err"; then
        fail "tok_convert_llama2c_bad_tokenizer ${c%%|*}" "accepted"
    elif [ "$(wc -l < "$T/conv3.err")" -eq 1 ] && grep -qF -- "${c#*|}" "$T/conv3.err" && [ ! -e "$T/stories-bad" ]; then
        pass "tok_convert_llama2c_bad_tokenizer ${c%%|*}"
    else
        fail "tok_convert_llama2c_bad_tokenizer ${c%%|*}" "$(head -c 300 "$T/conv3.err") $(ls "$T/stories-bad" 2>&1)"
    fi
done

run_one() { # name dir [--llama-js]
    local name=$1 dir=$2 r=$T/ref-$1 o=$T/ft-$1
    mkdir -p "$o"
    if ! node tests/tokenizer/ref_tokenize.mjs "$dir" "$T/corpus.jsonl" "$r" ${3:-} 2> "$T/ref.err"; then
        fail "tok_${name}_reference" "$(tail -1 "$T/ref.err")"; return
    fi
    $FTUNE tokenize --tokenizer "$dir" < "$T/corpus.jsonl" > "$o/special.txt" 2> "$o/err1" || fail "tok_${name}_encode" "$(head -1 "$o/err1")"
    $FTUNE tokenize --no-special --tokenizer "$dir" < "$T/corpus.jsonl" > "$o/plain.txt" 2> "$o/err2" || fail "tok_${name}_encode_nospecial" "$(head -1 "$o/err2")"
    node tests/tokenizer/compare.mjs "tok_${name}_ids_special" ids "$o/special.txt" "$r/special.txt" || fails=$((fails + 1))
    node tests/tokenizer/compare.mjs "tok_${name}_ids_nospecial" ids "$o/plain.txt" "$r/plain.txt" || fails=$((fails + 1))
    # decode the reference's ids, so decode is judged on its own
    $FTUNE tokenize --decode --tokenizer "$dir" < "$r/plain.txt" > "$o/decode.jsonl" 2> "$o/err3" || fail "tok_${name}_decode" "$(head -1 "$o/err3")"
    $FTUNE tokenize --decode --skip-special --tokenizer "$dir" < "$r/special.txt" > "$o/decode_skip.jsonl" 2> "$o/err4" || fail "tok_${name}_decode_skip" "$(head -1 "$o/err4")"
    node tests/tokenizer/compare.mjs "tok_${name}_decode" json "$o/decode.jsonl" "$r/decode.jsonl" || fails=$((fails + 1))
    node tests/tokenizer/compare.mjs "tok_${name}_decode_skip_special" json "$o/decode_skip.jsonl" "$r/decode_skip.jsonl" || fails=$((fails + 1))
    # round trip on ftune's own ids
    $FTUNE tokenize --decode --tokenizer "$dir" < "$o/plain.txt" > "$o/roundtrip.jsonl" 2> "$o/err5" || fail "tok_${name}_roundtrip_decode" "$(head -1 "$o/err5")"
    node tests/tokenizer/compare.mjs "tok_${name}_roundtrip" roundtrip "$o/roundtrip.jsonl" "$r/decode.jsonl" "$T/corpus.jsonl" || fails=$((fails + 1))
    if [ -n "${3:-}" ]; then
        node tests/tokenizer/compare.mjs "tok_${name}_vs_llama_tokenizer_js" ids "$o/special.txt" "$r/llamajs.txt" "$r/llamajs.txt" || fails=$((fails + 1))
    fi
}
run_one llama3 "$NPM/tok-llama3/package/models"
run_one qwen3 "$NPM/tok-qwen3/package/models"
run_one mistral "$NPM/tok-mistral/package/models"
node tests/tokenizer/make_variant.mjs metaspace "$NPM/tok-mistral/package/models" "$T/mistral-metaspace" &&
    run_one mistral_metaspace "$T/mistral-metaspace"
node tests/tokenizer/make_variant.mjs llama3-bos "$NPM/tok-llama3/package/models" "$T/llama3-bos" &&
    run_one llama3_bos "$T/llama3-bos"
[ -f "$T/llama2c/tokenizer.json" ] && run_one llama2c "$T/llama2c" --llama-js

# negative control: the comparison must notice one changed id and one changed decoded string
o=$T/ft-llama3
if [ -f "$o/plain.txt" ]; then
    awk 'NR == 1500 { $1 = $1 + 1 } { print }' "$o/plain.txt" > "$T/perturbed.txt"
    sed '1700s/"$/x"/' "$o/decode.jsonl" > "$T/perturbed.jsonl"
    if ! node tests/tokenizer/compare.mjs control ids "$T/perturbed.txt" "$T/ref-llama3/plain.txt" > "$T/ctl.out" &&
        grep -q "line 1500" "$T/ctl.out" &&
        ! node tests/tokenizer/compare.mjs control json "$T/perturbed.jsonl" "$T/ref-llama3/decode.jsonl" > /dev/null; then
        pass tok_compare_detects_differences
    else
        fail tok_compare_detects_differences "a perturbed id or string was not reported: $(cat "$T/ctl.out")"
    fi
fi

# malformed tokenizer.json: one clear error line naming the key, non-zero exit
node tests/tokenizer/make_malformed.mjs "$NPM/tok-mistral/package/models/tokenizer.json" "$T/bad" > "$T/bad.list"
while IFS=$'\t' read -r case key; do
    $FTUNE tokenize --tokenizer "$T/bad/$case" < /dev/null > /dev/null 2> "$T/bad.err"; rc=$?
    lines=$(wc -l < "$T/bad.err")
    if [ $rc -ne 0 ] && [ "$lines" -eq 1 ] && grep -qF -- "$key" "$T/bad.err" && grep -qE 'tokenizer(_config)?\.json' "$T/bad.err"; then
        pass "tok_malformed_$case"
    else
        fail "tok_malformed_$case" "rc=$rc, $lines stderr lines, want one naming '$key': $(head -c 300 "$T/bad.err")"
    fi
done < "$T/bad.list"

# bad input lines: the error names the line; invalid Unicode is rejected, not guessed
M=$NPM/tok-mistral/package/models
check_line_err() { # name input want
    printf '%s\n' "$2" | $FTUNE tokenize $4 --tokenizer "$M" > /dev/null 2> "$T/in.err"; rc=$?
    if [ $rc -ne 0 ] && [ "$(wc -l < "$T/in.err")" -eq 1 ] && grep -qF -- "$3" "$T/in.err"; then pass "$1"
    else fail "$1" "rc=$rc: $(head -c 300 "$T/in.err")"; fi
}
check_line_err tok_input_lone_surrogate $'"ok"\n"a\\ud800b"' "<stdin>:2" ""
check_line_err tok_input_raw_invalid_utf8 $'"ok"\n"ok"\n"\xff\xfe"' "<stdin>:3: tokenizer: input is not valid UTF-8" ""
check_line_err tok_input_nul_escape $'"ok"\n"a\\u0000b"' "<stdin>:2: the string holds U+0000" ""
check_line_err tok_input_not_a_string $'"ok"\n[1, 2]' "<stdin>:2: expected one JSON string" ""
# the whole line is one string: text after it was dropped, and a NUL byte cut the string there
check_line_err tok_input_text_after_string $'"ok"\n"abc" garbage' "<stdin>:2: expected one JSON string" ""
check_line_err tok_input_two_strings $'"ok"\n"a" "b"' "<stdin>:2: expected one JSON string" ""
printf '"ok"\n"a\0b"\n' | $FTUNE tokenize --tokenizer "$M" > /dev/null 2> "$T/in.err"; rc=$?
if [ $rc -ne 0 ] && [ "$(wc -l < "$T/in.err")" -eq 1 ] && grep -qF "<stdin>:2: the string holds U+0000" "$T/in.err"; then
    pass tok_input_nul_byte
else
    fail tok_input_nul_byte "rc=$rc: $(head -c 300 "$T/in.err")"
fi
if [ "$(printf '"abc" \t\r\n' | $FTUNE tokenize --tokenizer "$M" 2>&1)" = "$(printf '"abc"\n' | $FTUNE tokenize --tokenizer "$M" 2>&1)" ]; then
    pass tok_input_trailing_whitespace
else
    fail tok_input_trailing_whitespace "whitespace after the string changed the result"
fi
check_line_err tok_decode_bad_id $'1 2\n1 99999' "<stdin>:2: tokenizer: id 99999 at position 1" "--decode"
check_line_err tok_decode_not_ids $'1 2 x' "<stdin>:1: expected space-separated" "--decode"

echo "tokenizer: $fails failure(s)"
[ $fails -eq 0 ]
