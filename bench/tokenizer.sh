#!/usr/bin/env bash
# Tokenizer encode throughput, one thread: ftune vs the JavaScript reference (@huggingface/tokenizers)
# on the same generated corpus (tests/tokenizer/make_corpus.mjs, LINES lines, default 40000), for
# each real tokenizer. Prints both figures and the ratio ftune/JS, cold (first pass) and best of 3,
# as MB per CPU second (the machine is shared: wall-clock time is noise).
# usage: bench/tokenizer.sh [LINES]   (needs tools/fetch-fixtures.sh to have run)
set -euo pipefail
cd "$(dirname "$0")/.."
LINES=${1:-40000}
make --no-print-directory -s build/rel/bench/tokenizer_bench
tmp=$(mktemp -d /tmp/ftune-bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
node tests/tokenizer/make_corpus.mjs "$LINES" > "$tmp/corpus.jsonl"
echo "corpus: $LINES lines, $(wc -c < "$tmp/corpus.jsonl") bytes of JSON; $(date -u +%F) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
printf '%-10s %10s %10s %8s %10s %10s %8s %s\n' tokenizer ftune_cold js_cold ratio ftune_best js_best ratio "tokens(ftune=js?)"
for t in llama3 qwen3 mistral; do
    d=fixtures/npm/tok-$t/package/models
    f=$(OMP_NUM_THREADS=1 build/rel/bench/tokenizer_bench "$d" "$tmp/corpus.jsonl" 3)
    j=$(node bench/tokenizer_ref.mjs "$d" "$tmp/corpus.jsonl" 3)
    node -e '
const f = JSON.parse(process.argv[1]), j = JSON.parse(process.argv[2]);
const r = (a, b) => (a / b).toFixed(1) + "x";
console.log([process.argv[3].padEnd(10), (f.cold_MBps + " MB/s").padStart(10), (j.cold_MBps + " MB/s").padStart(10), r(f.cold_MBps, j.cold_MBps).padStart(8),
  (f.best_MBps + " MB/s").padStart(10), (j.best_MBps + " MB/s").padStart(10), r(f.best_MBps, j.best_MBps).padStart(8), f.tokens + (f.tokens === j.tokens ? " (same)" : " (DIFFERENT: js " + j.tokens + ")")].join(" "));
' "$f" "$j" "$t"
done
