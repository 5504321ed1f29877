#!/usr/bin/env bash
# Benchmarks (a lab, not tests): each section runs ftune and its PyTorch reference side by side on
# the same model, inputs and thread count, and prints tokens/s and ftune/torch ratios. Absolute
# numbers on a shared 2-core machine are noise; the ratios are the result. Record them, with date
# and machine, in bench/RESULTS.md. Add new sections below.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
PY=${PY:-/usr/bin/python3}
MODEL=${MODEL:-models/stories15M}
[ -f "$MODEL/config.json" ] || { echo "bench: $MODEL missing (run 'make fixtures')" >&2; exit 1; }
echo "bench: $(date -u '+%Y-%m-%d %H:%M UTC'), $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cpus, $OMP_NUM_THREADS threads"

# ---- inference: prompt processing (128 tokens, one batched pass) and greedy generation (128 tokens)
P=128 G=128 R=3
ft=$(build/rel/bench/bench_generate "$MODEL" $P $G $R)
pt=$("$PY" bench/ref_generate.py "$MODEL" $P $G $R)
echo "$ft"; echo "$pt"
"$PY" - "$ft" "$pt" <<'PYEOF'
import sys
f = sys.argv[1].split(); t = sys.argv[2].split()
fp, fg, tp, tg = float(f[2]), float(f[4]), float(t[2]), float(t[4])
same = "same" if f[6] == t[6] else "DIFFERENT (check the forward!)"
print(f"inference stories15M: first 16 greedy ids {same}")
print(f"inference stories15M: prompt {fp:.0f} vs {tp:.0f} tok/s = {fp / tp:.2f}x torch; "
      f"generation {fg:.0f} vs {tg:.0f} tok/s = {fg / tg:.2f}x torch")
PYEOF

# ---- tokenizer: encode throughput, one thread, ftune vs the JavaScript reference (MB per CPU second)
echo
bench/tokenizer.sh 20000

# ---- training: ftune (bf16 and f32) vs PyTorch (fp32 and bf16 autocast), full and LoRA,
# stories15M and the SmolLM-135M shape (bench/train.sh; set TRAIN=0 to skip, it takes minutes)
if [ "${TRAIN:-1}" != 0 ]; then
    bench/train.sh
fi

# ---- kernel lab (LABS=1): each variant checked against its naive twin, then timed
if [ "${LABS:-0}" != 0 ]; then
    for lab in matmul attention rmsnorm swiglu xent lora regions; do build/rel/bench/bench_$lab; done
fi
