#!/usr/bin/env bash
# `ftune convert llama2c`: stories15M (the fixture, converted by `make fixtures`) compared tensor by
# tensor, bit for bit, with an independent NumPy reading of the checkpoint (tests/ref/check_convert.py);
# the sanitizer build must produce byte-identical files; a tiny untied GQA checkpoint at a non-zero
# offset exercises the other branches; `ftune inspect` on the result reports the exact parameter count.
# A missing fixture is a FAIL, never a skip.
set -u
cd "${FT_ROOT:?}"
L2C=fixtures/npm/llama2c/package/dist/llama2.data LEN=60816028 M=models/stories15M
if [ ! -f "$L2C" ] || [ ! -f "$M/model.safetensors" ]; then
    echo "FAIL convert_fixture_present: $L2C or $M/model.safetensors missing (run make fixtures)"
    exit 1
fi
"$PY" tests/ref/check_convert.py "$L2C" 0 "$LEN" "$M"

if "$FTUNE" convert llama2c --in "$L2C" --offset 0 --length "$LEN" --out "$FT_TMP/s15" >/dev/null 2>"$FT_TMP/conv.err" &&
   cmp -s "$FT_TMP/s15/model.safetensors" "$M/model.safetensors" && cmp -s "$FT_TMP/s15/config.json" "$M/config.json"; then
    echo "PASS convert_sanitizer_build_identical"
else
    echo "FAIL convert_sanitizer_build_identical: $(head -c 400 "$FT_TMP/conv.err")"
fi
rm -rf "$FT_TMP/s15"

if "$FTUNE" inspect "$M" >"$FT_TMP/inspect.out" 2>"$FT_TMP/inspect.err"; then
    # 32000*288 + 288 + 6 * (2*288 + 4*288*288 + 3*288*768)
    grep -q '^parameters   15,191,712 ' "$FT_TMP/inspect.out" && grep -q 'tied to the embeddings' "$FT_TMP/inspect.out" &&
        echo "PASS inspect_stories15M_parameters" ||
        { echo "FAIL inspect_stories15M_parameters: unexpected output"; head -20 "$FT_TMP/inspect.out"; }
    # freeze: last 2 layers = 2 * 995,904; LoRA r=8: 6 * 8 * (4 * (288+288) + 3 * (768+288)) = 262,656
    # full: 16 B/param = 15,191,712 * 16 B = 231.8 MiB before activations
    grep -q 'freeze (last 2 layers) 1,991,808, LoRA r=8 262,656' "$FT_TMP/inspect.out" &&
        grep -qE '^  full +58\.0 MiB +58\.0 MiB +115\.9 MiB' "$FT_TMP/inspect.out" &&
        echo "PASS inspect_stories15M_memory" ||
        { echo "FAIL inspect_stories15M_memory: unexpected output"; tail -12 "$FT_TMP/inspect.out"; }
else
    echo "FAIL inspect_stories15M_parameters: $(cat "$FT_TMP/inspect.err")"
fi

# tiny untied GQA checkpoint between padding bytes (from the bad-input generator's good case)
"$PY" tests/io/make_bad_inputs.py "$FT_TMP/gen" >/dev/null
len=$(cat "$FT_TMP/gen/l2c_tiny.len")
if "$FTUNE" convert llama2c --in "$FT_TMP/gen/l2c_tiny.bin" --offset 5 --length "$len" --out "$FT_TMP/tiny" >/dev/null 2>"$FT_TMP/tiny.err"; then
    echo "PASS convert_tiny_untied_gqa_runs"
    "$PY" tests/ref/check_convert.py "$FT_TMP/gen/l2c_tiny.bin" 5 "$len" "$FT_TMP/tiny" | sed 's/^\(PASS\|FAIL\) convert_/\1 convert_tiny_/'
    "$FTUNE" inspect "$FT_TMP/tiny" >"$FT_TMP/tiny.out" 2>&1 && grep -q 'separate lm_head' "$FT_TMP/tiny.out" &&
        echo "PASS convert_tiny_loads" || echo "FAIL convert_tiny_loads: $(tail -3 "$FT_TMP/tiny.out")"
else
    echo "FAIL convert_tiny_untied_gqa_runs: $(cat "$FT_TMP/tiny.err")"
fi
