#!/usr/bin/env bash
# End to end on stories15M with real quiz data (the first 16 capitals of Europe from bsdgames' quiz
# tables, alpaca format, 4 held out): LoRA SFT lowers the validation loss, and after training
# `ftune chat --adapter` / `ftune generate --chat --adapter` answer training questions with their
# trained answers and stop at the end of the turn.
#
# Template: mistral ("<s>[INST] question [/INST]answer</s>"). stories15M (llama2.c's TinyStories
# model) has no chat tokens; its vocabulary is Llama-2's, in which Mistral's/Llama-2's [INST]
# markers are plain text, and the turn closes with EOS, which the vocabulary has. (alpaca works too
# but its long system prompt costs 3x the tokens on this shared machine.)
#
# Why trainable tokens: EOS (id 2) never occurs in TinyStories, so its tied embedding row is one of
# thousands of near-identical untrained rows (cos to their mean 0.996). LoRA on the linear layers
# only moves the hidden state h, and the logits h·e of near-identical rows stay near-identical, so
# plain LoRA never makes EOS win (it kept an NLL of ~9.8 and replies ran on to the token limit).
# The fix users apply is PEFT's trainable tokens alongside LoRA, Axolotl's
# `peft_trainable_token_indices: [2]`: the EOS row (embedding and tied head) is trained and saved
# in the adapter. One LoRA run (r 8, all linear projections, 150 steps, ~6 s on 1 thread) must:
#   - lower the validation loss (best < 0.9 x the first, last < the first);
#   - write trainable_token_indices [2] into adapter_config.json;
#   - bring the NLL of the </s> closing a sample (teacher-forced, mean of the first 4 samples,
#     from `ftune logprobs` with and without the adapter) from > 5 to < 1 (observed: base 16.4,
#     plain LoRA ~9.8, LoRA + trainable tokens 0.001);
#   - make `ftune chat --adapter` reply to at least 4 of the 12 training questions with the trained
#     answer word for word (observed 6): greedy replies that equal their answer have stopped at
#     </s>, else they would run to the token limit; at most 4 of the 16 replies may be cut there
#     (observed 0). Not all 12 are learned: r 8 and 150 steps leave some multi-token answers
#     half-memorised (and answers spelled with byte tokens suffer EOS's untrained-row problem);
#   - make `ftune generate --chat --adapter` give chat's reply to a question chat answered right.
#   - warn (before training) about trained tokens whose row LoRA cannot change, naming exactly the
#     target ids with >= 100 near-copy rows (checked with torch; observed: EOS and 6 quiz tokens,
#     while the other 43 trained ids have none), and leave out the ids the key already trains.
# The full fine-tune run that used to show the stop (18 s of the old test's 27 s) is gone: the
# LoRA run shows it now, and full fine-tuning has its own tests in tests/train. This test: ~22 s.
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
cat >"$T/lora.yaml" <<YAML
base_model: $M
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
seed: 3
adapter: lora
lora_r: 8
lora_alpha: 16
lora_target_linear: true
peft_trainable_token_indices: [2]
num_epochs: 30
learning_rate: 0.001
max_grad_norm: 0
output_dir: $T/lora
YAML
fails=0
t0=$SECONDS
if ! "$FTUNE_REL" train "$T/lora.yaml" >"$T/lora.log" 2>&1; then
    echo "FAIL sft_e2e_lora_train: $(tail -n 5 "$T/lora.log")"; exit 1
fi
echo "# LoRA + trainable tokens training took $((SECONDS - t0))s"

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
"$PY" -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["trainable_token_indices"] == [2] else 1)' \
    "$T/lora/adapter_config.json" && echo "PASS sft_e2e_adapter_has_trainable_tokens" ||
    { echo "FAIL sft_e2e_adapter_has_trainable_tokens: $(cat "$T/lora/adapter_config.json")"; fails=$((fails + 1)); }

# NLL of the </s> closing each of the first 4 samples (teacher-forced), base vs base + adapter:
# from the mean NLL `ftune logprobs` prints for the sample with and without its final </s>
if "$FTUNE_REL" preview "$T/lora.yaml" --jsonl --n 4 >"$T/preview.jsonl" 2>"$T/preview.err"; then
    "$PY" - "$T/preview.jsonl" "$FTUNE_REL" "$M" "$T/lora" <<'EOF' || fails=$((fails + 1))
import json, subprocess, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ftune, model, adapter = sys.argv[2:5]
def loss(ids, ad):
    cmd = [ftune, "logprobs", "--model", model, "--ids", ",".join(map(str, ids))]
    out = subprocess.run(cmd + (["--adapter", ad] if ad else []), capture_output=True, text=True,
                         check=True).stdout
    return float(out.split("loss")[1].split()[0])
def eos_nll(ids, ad):  # logprobs gives the mean over ids[1:]; EOS's = sum(all) - sum(without it)
    return loss(ids, ad) * (len(ids) - 1) - loss(ids[:-1], ad) * (len(ids) - 2)
nb, na = [], []
for r in rows:
    ids = r["input_ids"]
    if ids[-1] != 2 or r["labels"][-1] != 2:  # preview labels are unshifted
        print("FAIL sft_e2e_eos_learned: a sample does not end with a trained </s>:", r)
        sys.exit(1)
    nb.append(eos_nll(ids, None))
    na.append(eos_nll(ids, adapter))
b, a = sum(nb) / len(nb), sum(na) / len(na)
ok = len(rows) == 4 and a < 1.0 and b > 5.0
print(f"{'PASS' if ok else 'FAIL'} sft_e2e_eos_learned: NLL of the closing </s>, mean of {len(rows)} samples: base {b:.3f}, LoRA + trainable tokens {a:.3f} ({', '.join(f'{x:.3f}' for x in na)})")
sys.exit(0 if ok else 1)
EOF
else
    echo "FAIL sft_e2e_eos_learned: preview: $(tail -n 2 "$T/preview.err")"; fails=$((fails + 1))
fi

# the trainer's warning about trained tokens LoRA cannot learn. Without the key, and with all 16
# samples trained (1 step: it prints before training), it must name exactly the target ids whose
# embedding row has >= 100 near-copies (cos > 0.9999, computed here with torch over all 32000
# rows; stories15M has ~18700 such rows: EOS and a few quiz tokens); with [2] it must leave 2 out.
"$FTUNE_REL" train "$T/lora.yaml" --set peft_trainable_token_indices=null --set max_steps=1 \
    --set val_set_size=0 --set output_dir="$T/warn" >"$T/warn.log" 2>&1 || echo "# warn run failed: $(tail -n 2 "$T/warn.log")"
"$FTUNE_REL" preview "$T/lora.yaml" --jsonl --n 16 >"$T/preview16.jsonl" 2>/dev/null
"$PY" - "$T/warn.log" "$T/lora.log" "$T/preview16.jsonl" "$S15/model.safetensors" <<'EOF' || fails=$((fails + 1))
import json, re, sys
import torch
sys.path.insert(0, "tests/ref")
import st_io
def named(path):
    m = re.search(r"warning: trained token id\(s\) ([0-9, ]+):", open(path).read())
    return [int(x) for x in m.group(1).split(",")] if m else []
without, with2 = named(sys.argv[1]), named(sys.argv[2])
targets = {x for l in open(sys.argv[3]) for x in json.loads(l)["labels"] if x != -100}
E = st_io.load(sys.argv[4])["model.embed_tokens.weight"].double()
E = E / E.norm(dim=1, keepdim=True)
copies = {i: int((E @ E[i] > 0.9999).sum()) - 1 for i in targets}
bad = sorted(i for i in targets if copies[i] >= 100)
ok = without == bad and 2 in without and 2 not in with2 and set(with2) <= set(bad)
print(f"{'PASS' if ok else 'FAIL'} sft_e2e_warns_untrainable_tokens: without the key it names {without}, with [2] {with2}; near-copies {dict((i, copies[i]) for i in sorted(set(without + with2)))}; the other {len(targets) - len(without)} trained ids at most {max([copies[i] for i in targets - set(without)] or [0])}")
sys.exit(0 if ok else 1)
EOF

# every question of the file, one conversation each (4 are held out)
"$PY" - "$T/quiz16.jsonl" >"$T/questions.txt" <<'EOF'
import json, sys
for l in open(sys.argv[1]):
    print(json.loads(l)["instruction"]); print("/reset")
EOF
"$FTUNE_REL" chat --model "$M" --adapter "$T/lora" --chat-template mistral --max-new-tokens 16 \
    <"$T/questions.txt" >"$T/answers.txt" 2>"$T/chat.err"
"$PY" - "$T/quiz16.jsonl" "$T/answers.txt" "$T/chat.err" <<'EOF' || fails=$((fails + 1))
import json, sys
want = [json.loads(l)["output"] for l in open(sys.argv[1])]
got = [l.rstrip("\n") for l in open(sys.argv[2])]
cut = open(sys.argv[3]).read().count("reply cut")
right = [w for w, g in zip(want, got) if g.strip() == w]
ok = len(got) == len(want) and len(right) >= 4 and cut <= len(want) // 4
print(f"{'PASS' if ok else 'FAIL'} sft_e2e_lora_chat_answers_and_stops: {len(right)}/{len(want)} replies are the trained answer word for word, stopped at </s> ({', '.join(right)}; 4 questions are held out); {cut} of {len(want)} replies ran to the token limit")
first = next(i for i, (w, g) in enumerate(zip(want, got)) if g.strip() == w) if right else 0
open(sys.argv[3] + ".first", "w").write(str(first))
for w, g in zip(want, got):
    print(f"#   trained {w!r:22} chat {g!r}")
sys.exit(0 if ok else 1)
EOF
# generate --chat --adapter on a question chat answered right: the same reply (same template and
# code), the trained answer, stopped at </s>
k=$(cat "$T/chat.err.first" 2>/dev/null || echo 0)
q=$(sed -n "$((2 * k + 1))p" "$T/questions.txt")
a=$("$PY" -c 'import json,sys; print(json.loads(open(sys.argv[1]).readlines()[int(sys.argv[2])])["output"])' "$T/quiz16.jsonl" "$k")
gen=$("$FTUNE_REL" generate --model "$M" --adapter "$T/lora" --chat --chat-template mistral \
    --prompt "$q" --max-new-tokens 16 2>/dev/null)
first=$(sed -n "$((k + 1))p" "$T/answers.txt")
if [ -n "$gen" ] && [ "$gen" = "$first" ] && [ "$gen" = "$a" ]; then
    echo "PASS sft_e2e_generate_chat_adapter_equals_chat: '$q' -> '$gen' (trained: '$a')"
else
    echo "FAIL sft_e2e_generate_chat_adapter_equals_chat: generate --chat '$gen', chat '$first', trained '$a'"
    fails=$((fails + 1))
fi
[ "$fails" -eq 0 ]
