#!/usr/bin/env bash
# End to end on stories15M with real quiz data (the first 16 capitals of Europe from bsdgames' quiz
# tables, alpaca format, 4 held out): SFT lowers the validation loss, and after training
# `ftune generate --chat` / `ftune chat` answer training questions with their trained answers and
# stop at the end of the turn.
#
# Template: mistral ("<s>[INST] question [/INST]answer</s>"). stories15M (llama2.c's TinyStories
# model) has no chat tokens; its vocabulary is Llama-2's, in which Mistral's/Llama-2's [INST]
# markers are plain text, and the turn closes with EOS, which the vocabulary has. (alpaca works too
# but its long system prompt costs 3x the tokens on this shared machine.)
#
# Two runs. LoRA (lora_target_linear, r 8): the validation loss must drop and trained answers must
# come back. LoRA does not teach stories15M to emit EOS:
# id 2 never occurs in TinyStories, its tied embedding row is untrained, and the frozen
# embedding cannot be moved by adapters on the linear layers (after 200 steps the answer tokens have
# nll < 0.4 but EOS ~9.8), so the stop-at-end-of-turn check runs on a full fine-tune of the same
# data, where ftune chat must answer most training questions word for word and stop at </s>.
set -u
cd "${FT_ROOT:?}"
S15=models/stories15M
for f in "$S15/model.safetensors" "$S15/tokenizer.json" fixtures/data/quiz_small.jsonl; do
    [ -f "$f" ] || { echo "FAIL sft_e2e_fixtures: $f missing (make fixtures)"; exit 1; }
done
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive # 2 spinning threads crawl on a loaded machine
T=$FT_TMP/sft_e2e
M=$T/model
mkdir -p "$M"
for f in config.json model.safetensors tokenizer.json; do ln -sf "$PWD/$S15/$f" "$M/$f"; done
if [ -f "$S15/tokenizer_config.json" ]; then
    ln -sf "$PWD/$S15/tokenizer_config.json" "$M/tokenizer_config.json"
else # Llama-2's special tokens (llama2.c's tokenizer is Llama-2's)
    printf '{"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": true}\n' >"$M/tokenizer_config.json"
fi
head -16 fixtures/data/quiz_small.jsonl >"$T/quiz16.jsonl"
common="base_model: $M
datasets:
  - path: $T/quiz16.jsonl
    type: alpaca
chat_template: mistral
sequence_len: 64
sample_packing: true
micro_batch_size: 1
lr_scheduler: constant
val_set_size: 4
eval_steps: 0.25
logging_steps: 20
save_steps: 0
seed: 3"
printf '%s\nadapter: lora\nlora_r: 8\nlora_alpha: 16\nlora_target_linear: true\nnum_epochs: 30\nlearning_rate: 0.001\nmax_grad_norm: 0\noutput_dir: %s\n' \
    "$common" "$T/lora" >"$T/lora.yaml"
printf '%s\nnum_epochs: 20\nlearning_rate: 0.0003\nwarmup_steps: 5\noutput_dir: %s\n' "$common" "$T/full" >"$T/full.yaml"
fails=0
for run in lora full; do
    t0=$SECONDS
    if ! "$FTUNE_REL" train "$T/$run.yaml" >"$T/$run.log" 2>&1; then
        echo "FAIL sft_e2e_${run}_train: $(tail -n 5 "$T/$run.log")"; exit 1
    fi
    echo "# $run training took $((SECONDS - t0))s"
done

"$PY" - "$T/lora/metrics.jsonl" <<'EOF' || fails=$((fails + 1))
import json, math, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if "eval_loss" in l]
ok = len(ev) >= 3
a, b, lo = ev[0]["eval_loss"], ev[-1]["eval_loss"], min(e["eval_loss"] for e in ev[1:])
ok = ok and b < a and lo < 0.9 * a
print(f"{'PASS' if ok else 'FAIL'} sft_e2e_lora_val_loss_drops: eval_loss {a:.4f} at step 0, best {lo:.4f}, final {b:.4f} (step {ev[-1]['step']})")
ppl = all(abs(e["eval_ppl"] - math.exp(e["eval_loss"])) <= 1e-6 * e["eval_ppl"] for e in ev)
print(f"{'PASS' if ppl else 'FAIL'} sft_e2e_eval_perplexity_logged")
sys.exit(0 if ok and ppl else 1)
EOF

# LoRA: every question of the file, one conversation each (4 are held out); a trained answer must
# come back at the start of at least 3 replies (the replies run on: no EOS, as explained above)
"$PY" - "$T/quiz16.jsonl" >"$T/questions.txt" <<'EOF'
import json, sys
for l in open(sys.argv[1]):
    print(json.loads(l)["instruction"]); print("/reset")
EOF
"$FTUNE_REL" chat --model "$M" --adapter "$T/lora" --chat-template mistral --max-new-tokens 6 \
    <"$T/questions.txt" >"$T/lora_answers.txt" 2>"$T/lora_chat.err"
"$PY" - "$T/quiz16.jsonl" "$T/lora_answers.txt" <<'EOF' || fails=$((fails + 1))
import json, sys
want = [json.loads(l)["output"] for l in open(sys.argv[1])]
got = [l.rstrip("\n") for l in open(sys.argv[2])]
right = [w for w, g in zip(want, got) if g.startswith(w)]
ok = len(got) == len(want) and len(right) >= 3
print(f"{'PASS' if ok else 'FAIL'} sft_e2e_lora_chat_answers: {len(right)}/{len(want)} replies start with the trained answer ({', '.join(right)})")
sys.exit(0 if ok else 1)
EOF
q=$("$PY" -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["instruction"])' "$T/quiz16.jsonl")
a=$("$PY" -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["output"])' "$T/quiz16.jsonl")

# full fine-tune: ask every training question (one conversation each), replies must stop at </s>
"$FTUNE_REL" chat --model "$T/full" --chat-template mistral --max-new-tokens 16 <"$T/questions.txt" \
    >"$T/answers.txt" 2>"$T/chat.err"
"$PY" - "$T/quiz16.jsonl" "$T/answers.txt" "$T/chat.err" <<'EOF' || fails=$((fails + 1))
import json, sys
want = [json.loads(l)["output"] for l in open(sys.argv[1])]
got = [l.rstrip("\n") for l in open(sys.argv[2])]
cut = open(sys.argv[3]).read().count("reply cut")
right = sum(1 for w, g in zip(want, got) if g.strip() == w)
# a reply equal to its answer has stopped at </s> (else it would go on up to the token limit)
ok = len(got) == len(want) and right >= len(want) // 3 and cut <= len(want) // 4
print(f"{'PASS' if ok else 'FAIL'} sft_e2e_full_chat_answers_and_stops: {right}/{len(want)} replies are the trained answer word for word and stopped at </s> (4 questions are held out); {cut} of {len(want)} replies ran to the token limit")
first = next(i for i, (w, g) in enumerate(zip(want, got)) if g.strip() == w) if right else 0
open(sys.argv[3] + ".first", "w").write(str(first))
for w, g in list(zip(want, got))[:4]:
    print(f"#   trained {w!r:22} chat {g!r}")
sys.exit(0 if ok else 1)
EOF
# generate --chat on a question chat answered right: the same reply (same template and code)
k=$(cat "$T/chat.err.first" 2>/dev/null || echo 0)
q=$(sed -n "$((2 * k + 1))p" "$T/questions.txt")
a=$("$PY" -c 'import json,sys; print(json.loads(open(sys.argv[1]).readlines()[int(sys.argv[2])])["output"])' "$T/quiz16.jsonl" "$k")
gen=$("$FTUNE_REL" generate --model "$T/full" --chat --chat-template mistral --prompt "$q" --max-new-tokens 16 2>/dev/null)
first=$(sed -n "$((k + 1))p" "$T/answers.txt")
if [ "$gen" = "$first" ] && [ -n "$gen" ]; then
    echo "PASS sft_e2e_generate_chat_equals_chat: '$q' -> '$gen' (trained: '$a')"
else
    echo "FAIL sft_e2e_generate_chat_equals_chat: generate --chat '$gen' vs chat '$first'"; fails=$((fails + 1))
fi
[ "$fails" -eq 0 ]
