#!/usr/bin/env bash
# Runs every libFuzzer target build/fuzz/fuzz_* for a bounded time (FT_FUZZ_SECONDS, default 15)
# from a small seed corpus generated into $FT_TMP, and prints PASS/FAIL per target. A crash, leak,
# UB report, timeout or out-of-memory is a FAIL showing the report's tail; the reproducer is left
# in $FT_TMP (copied to build/fuzz/crashes/ so it outlives the run). No targets built is a FAIL.
set -u
cd "${FT_ROOT:?}"
secs=${FT_FUZZ_SECONDS:-15}
targets=$(ls build/fuzz/fuzz_* 2>/dev/null | grep -v '\.' )
[ -n "$targets" ] || { echo "FAIL fuzz_targets_built: no build/fuzz/fuzz_* (make check builds them)"; exit 1; }

# seeds for the model-file parsers: valid and broken safetensors headers and config.json files
seeds=$FT_TMP/fuzz-seeds
"$PY" tests/io/make_bad_inputs.py "$FT_TMP/fuzz-gen" >/dev/null || { echo "FAIL fuzz_seeds: generator failed"; exit 1; }
mkdir -p "$seeds/fuzz_safetensors"
i=0
for f in "$FT_TMP"/fuzz-gen/*/model.safetensors "$FT_TMP"/fuzz-gen/*/config.json "$FT_TMP"/fuzz-gen/*/*.index.json; do
    [ -f "$f" ] || continue
    [ "$(stat -c %s "$f")" -le 65536 ] && cp "$f" "$seeds/fuzz_safetensors/seed$((i++))"
done
printf '{"model_type":"llama","hidden_size":64,"intermediate_size":96,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":50,"rope_scaling":{"rope_type":"llama3","factor":8,"low_freq_factor":1,"high_freq_factor":4,"original_max_position_embeddings":64},"eos_token_id":[1,2]}' >"$seeds/fuzz_safetensors/llama3"
printf '{"model_type":"qwen3","hidden_size":64,"intermediate_size":96,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,"vocab_size":50,"attention_bias":true,"rope_parameters":{"rope_type":"default","rope_theta":1000000.0}}' >"$seeds/fuzz_safetensors/qwen3"

mkdir -p "$seeds/fuzz_st_index"
printf '{"metadata": {"total_size": 24}, "weight_map": {"x": "a.safetensors", "y": "a.safetensors", "z": "b.safetensors"}}' >"$seeds/fuzz_st_index/ok"
printf '{"weight_map": {"x": "b.safetensors", "y": "a.safetensors", "z": "b.safetensors"}}' >"$seeds/fuzz_st_index/wrong_shard"
printf '{"weight_map": {"x": "a.safetensors", "z": "b.safetensors"}}' >"$seeds/fuzz_st_index/unlisted"

# seeds for the Jinja interpreter: the reference chat templates and the fixtures' real ones
mkdir -p "$seeds/fuzz_jinja"
cp tests/data/templates/*.jinja "$seeds/fuzz_jinja"/ 2>/dev/null
for d in fixtures/npm/tok-*/package/models; do
    [ -f "$d/tokenizer_config.json" ] || continue
    "$PY" -c "import json,sys; t=json.load(open(sys.argv[1])).get('chat_template'); t and sys.stdout.write(t)" \
        "$d/tokenizer_config.json" >"$seeds/fuzz_jinja/$(basename "$(dirname "$(dirname "$d")")")"
done

mkdir -p build/fuzz/crashes
for t in $targets; do
    name=$(basename "$t")
    corpus=$FT_TMP/fuzz-corpus/$name
    mkdir -p "$corpus"
    [ -d "$seeds/$name" ] && cp "$seeds/$name"/* "$corpus"/ 2>/dev/null
    [ -d "tests/fuzz/seeds_${name#fuzz_}" ] && cp "tests/fuzz/seeds_${name#fuzz_}"/* "$corpus"/ 2>/dev/null
    dict=(); [ -f "tests/fuzz/$name.dict" ] && dict=(-dict="tests/fuzz/$name.dict")
    log=$FT_TMP/$name.log
    TMPDIR=$FT_TMP ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        "$t" "$corpus" "${dict[@]}" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -max_len=16384 \
        -artifact_prefix="$FT_TMP/$name-" -print_final_stats=1 >"$log" 2>&1
    rc=$?
    runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$')
    if [ "$rc" -eq 0 ] && [ -n "$runs" ] && [ "$runs" -gt 0 ]; then
        echo "PASS fuzz_$name ($runs inputs in ${secs}s, corpus $(ls "$corpus" | wc -l))"
    else
        echo "FAIL fuzz_$name: exit $rc"
        grep -vE '^(#|INFO|MERGE)' "$log" | tail -n 25 | sed 's/^/    /'
        cp "$FT_TMP/$name"-* build/fuzz/crashes/ 2>/dev/null
    fi
done
