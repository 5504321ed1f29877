#!/usr/bin/env bash
# tokenizer_default on the inference side: `ftune generate --chat` and `ftune chat` without
# --chat-template take the model's tokenizer_config.json template when it renders like a built-in
# (the published Mistral-7B-Instruct-v0.1 one here: the reply equals the one with
# --chat-template mistral), and refuse a look-alike (a Llama-3.1-style date header, written by
# hand in tests/data/test_detect.c's manner) with one line naming the closest template, the probe
# and the names to pass, exiting non-zero.
# Model: stories15M (Llama-2 vocabulary) with its tokenizer_config.json given a chat_template.
set -u
cd "${FT_ROOT:?}"
M=models/stories15M
T=$FT_TMP/chat_default
mkdir -p "$T/ok" "$T/bad"
for f in config.json model.safetensors tokenizer.json tokenizer_config.json; do
    [ -f "$M/$f" ] || { echo "FAIL chat_default_fixtures: $M/$f is missing (make fixtures)"; exit 1; }
done
for d in ok bad; do
    for f in config.json model.safetensors tokenizer.json; do ln -sf "$PWD/$M/$f" "$T/$d/$f"; done
done
l31='{{- bos_token }}{{- "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: " + strftime_now("%d %b %Y") + "\n\n<|eot_id|>" }}{%- for message in messages %}{{- "<|start_header_id|>" + message["role"] + "<|end_header_id|>\n\n" + message["content"] | trim + "<|eot_id|>" }}{%- endfor %}{%- if add_generation_prompt %}{{- "<|start_header_id|>assistant<|end_header_id|>\n\n" }}{%- endif %}'
"$PY" - "$M/tokenizer_config.json" "$T" tests/data/templates/mistral.jinja "$l31" <<'PYEOF' || { echo "FAIL chat_default_setup"; exit 1; }
import json, sys
cfg, out, ok_src, bad_src = sys.argv[1], sys.argv[2], open(sys.argv[3]).read(), sys.argv[4]
for d, src in (("ok", ok_src), ("bad", bad_src)):
    c = json.load(open(cfg))
    c["chat_template"] = src
    json.dump(c, open(f"{out}/{d}/tokenizer_config.json", "w"))
PYEOF
fails=0
args=(--prompt "Where does the cat sleep?" --max-new-tokens 8 --temperature 0)
a=$("$FTUNE" generate --model "$T/ok" --chat "${args[@]}" 2>"$T/a.err"); ra=$?
b=$("$FTUNE" generate --model "$T/ok" --chat --chat-template mistral "${args[@]}" 2>"$T/b.err"); rb=$?
if [ $ra -eq 0 ] && [ $rb -eq 0 ] && [ -n "$a" ] && [ "$a" = "$b" ]; then
    echo "PASS chat_default_generate_recognised (tokenizer_default = mistral: '$a')"
else
    echo "FAIL chat_default_generate_recognised: exit $ra/$rb, '$a' vs '$b': $(tail -n 2 "$T/a.err")"; fails=$((fails + 1))
fi
c=$(printf 'Where does the cat sleep?\n' | "$FTUNE" chat --model "$T/ok" --max-new-tokens 8 --temperature 0 2>"$T/c.err"); rc=$?
if [ $rc -eq 0 ] && [ "$c" = "$a" ]; then
    echo "PASS chat_default_chat_recognised"
else
    echo "FAIL chat_default_chat_recognised: exit $rc, chat '$c' vs generate '$a': $(tail -n 2 "$T/c.err")"; fails=$((fails + 1))
fi
for cmd in generate chat; do
    if [ $cmd = generate ]; then
        "$FTUNE" generate --model "$T/bad" --chat "${args[@]}" >/dev/null 2>"$T/bad.err"; r=$?
    else
        printf 'Hi\n' | "$FTUNE" chat --model "$T/bad" --max-new-tokens 2 >/dev/null 2>"$T/bad.err"; r=$?
    fi
    msg=$(cat "$T/bad.err")
    if [ $r -ne 0 ] && [ "$(wc -l <"$T/bad.err")" -eq 1 ] && [[ $msg == *tokenizer_config.json*"is not one ftune knows"*"closest is llama3"*"Cutting Kn"*"set chat_template: to one of llama3"* ]]; then
        echo "PASS chat_default_${cmd}_lookalike_refused"
    else
        echo "FAIL chat_default_${cmd}_lookalike_refused: exit $r, '$msg'"; fails=$((fails + 1))
    fi
done
[ "$fails" -eq 0 ]
