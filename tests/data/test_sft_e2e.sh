#!/usr/bin/env bash
# End to end: LoRA SFT of stories15M on real quiz data (the capitals of Europe from bsdgames'
# quiz tables, alpaca format, packed rows) lowers the validation loss, and after training
# `ftune chat` / `ftune generate --chat` answer training questions with their trained answers and
# stop at the end of the turn.
# Template: alpaca. stories15M (llama2.c's TinyStories model) has no chat tokens at all, so the
# template must be made of plain text its Llama-2 vocabulary covers; alpaca's "### Instruction /
# ### Response" headers are, and its turns close with EOS (</s>), which the model already has.
set -u
cd "${FT_ROOT:?}"
S15=models/stories15M
for f in "$S15/model.safetensors" "$S15/tokenizer.json" fixtures/data/quiz_small.jsonl; do
    [ -f "$f" ] || { echo "FAIL sft_e2e_fixtures: $f missing (make fixtures)"; exit 1; }
done
T=$FT_TMP/sft_e2e
M=$T/model
mkdir -p "$M"
for f in config.json model.safetensors tokenizer.json; do ln -sf "$PWD/$S15/$f" "$M/$f"; done
if [ -f "$S15/tokenizer_config.json" ]; then
    ln -sf "$PWD/$S15/tokenizer_config.json" "$M/tokenizer_config.json"
else
    # Llama-2's special tokens (llama2.c's tokenizer is Llama-2's): <s> BOS, </s> EOS
    printf '{"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": true, "add_eos_token": false, "clean_up_tokenization_spaces": false}\n' >"$M/tokenizer_config.json"
fi
cat >"$T/sft.yaml" <<EOF
base_model: $M
datasets:
  - path: fixtures/data/quiz_small.jsonl
    type: alpaca
chat_template: alpaca
sequence_len: 128
sample_packing: true
adapter: lora
lora_r: 16
lora_alpha: 32
lora_target_linear: true
micro_batch_size: 2
num_epochs: ${FT_SFT_EPOCHS:-12}
learning_rate: 0.003
lr_scheduler: constant
warmup_steps: 3
val_set_size: 6
eval_steps: 0.5
logging_steps: 10
save_steps: 0
seed: 3
output_dir: $T/out
EOF
fails=0
t0=$SECONDS
if ! OMP_NUM_THREADS=2 "$FTUNE_REL" train "$T/sft.yaml" >"$T/train.log" 2>&1; then
    echo "FAIL sft_e2e_train: $(tail -n 5 "$T/train.log")"; exit 1
fi
echo "# training took $((SECONDS - t0))s"
"$PY" - "$T/out/metrics.jsonl" <<'EOF'
import json, math, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if "eval_loss" in l]
if len(ev) < 2:
    print("FAIL sft_e2e_val_loss_drops: fewer than 2 evaluations in metrics.jsonl"); sys.exit(1)
a, b = ev[0]["eval_loss"], ev[-1]["eval_loss"]
ok = b < 0.6 * a
print(f"{'PASS' if ok else 'FAIL'} sft_e2e_val_loss_drops: eval_loss {a:.4f} (step {ev[0]['step']}) -> {b:.4f} (step {ev[-1]['step']})")
ppl = all("eval_ppl" in e and abs(e["eval_ppl"] - math.exp(e["eval_loss"])) <= 1e-6 * e["eval_ppl"] for e in ev)
print(f"{'PASS' if ppl else 'FAIL'} sft_e2e_eval_perplexity_logged")
sys.exit(0 if ok and ppl else 1)
EOF
[ $? -eq 0 ] || fails=$((fails + 1))

# Ask every question of the file (one conversation each). The held-out ones (val_set_size) may be
# wrong; the trained ones must mostly come back word for word, ending at </s>.
"$PY" -c '
import json, sys
for l in open(sys.argv[1]):
    print(json.loads(l)["instruction"]); print("/reset")' fixtures/data/quiz_small.jsonl >"$T/questions.txt"
OMP_NUM_THREADS=2 "$FTUNE_REL" chat --model "$M" --adapter "$T/out" --chat-template alpaca \
    --max-new-tokens 24 <"$T/questions.txt" >"$T/answers.txt" 2>"$T/chat.err"
"$PY" - fixtures/data/quiz_small.jsonl "$T/answers.txt" "$T/chat.err" <<'EOF'
import json, sys
want = [json.loads(l)["output"] for l in open(sys.argv[1])]
got = [l.rstrip("\n") for l in open(sys.argv[2])]
cut = open(sys.argv[3]).read().count("reply cut")
right = sum(1 for w, g in zip(want, got) if g.strip() == w)
ok = len(got) == len(want) and right >= 0.75 * len(want) and cut == 0
print(f"{'PASS' if ok else 'FAIL'} sft_e2e_chat_answers: {right}/{len(want)} answers exactly right, {cut} replies cut at the token limit (every reply must stop at </s>)")
for w, g in list(zip(want, got))[:5]:
    print(f"#   want {w!r:24} got {g!r}")
sys.exit(0 if ok else 1)
EOF
[ $? -eq 0 ] || fails=$((fails + 1))

# generate --chat: the same template code, one turn
q=$(head -1 fixtures/data/quiz_small.jsonl | "$PY" -c 'import json,sys; print(json.loads(sys.stdin.readline())["instruction"])')
a=$(head -1 fixtures/data/quiz_small.jsonl | "$PY" -c 'import json,sys; print(json.loads(sys.stdin.readline())["output"])')
out=$(OMP_NUM_THREADS=2 "$FTUNE_REL" generate --model "$M" --adapter "$T/out" --chat --chat-template alpaca \
      --prompt "$q" --max-new-tokens 24 2>"$T/gen.err")
c=$(OMP_NUM_THREADS=2 "$FTUNE_REL" chat --model "$M" --adapter "$T/out" --chat-template alpaca --max-new-tokens 24 <<<"$q" 2>/dev/null)
if [ "$out" = "$c" ] && [ -n "$out" ] && ! grep -q "reply cut" "$T/gen.err"; then
    echo "PASS sft_e2e_generate_chat_equals_chat: '$q' -> '$out' (trained: '$a')"
else
    echo "FAIL sft_e2e_generate_chat_equals_chat: generate --chat '$out' vs chat '$c' ($(head -c 300 "$T/gen.err"))"
    fails=$((fails + 1))
fi
[ "$fails" -eq 0 ]
