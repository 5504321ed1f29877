#!/usr/bin/env bash
# Whole-training benchmark: ftune (build/rel/bench/bench_train) beside the PyTorch reference
# (bench/ref_train.py: fp32 and bf16 autocast) on the same model, batch, sequence length and
# thread count, full fine-tuning and LoRA (r 8, alpha 16, all linear layers), each configuration
# in its own process (so peak RSS is per configuration). Prints tokens/s, ftune/torch ratios,
# achieved GFLOP/s against the measured bf16 peak, and peak RSS. Full fine-tuning: ftune applies
# AdamW inside the backward (what its trainer does for this recipe: no clipping, one micro-batch
# per optimizer step; same numbers), and the plain order is measured beside it. ftune-bf16 runs
# again after PyTorch's bf16 run, so the two ftune runs bracket it in time (a shared host's slow
# or fast phases show as a difference between them); the ratio is printed for the first run, the
# second and their mean. A ceiling line puts the ratios against the silicon: the tokens/s the
# measured bf16 peak allows at the model's FLOPs per token, as a multiple of PyTorch's, and the
# fraction of that peak a 4x ratio would take.
#   bench/train.sh [MODEL_DIR...]   (default: models/stories15M and the SmolLM-135M shape)
# Env: B (4), T (256), STEPS (timed steps per configuration, default 2), OMP_NUM_THREADS (2),
# OMP_WAIT_POLICY (passive, for both sides: both use libgomp; on a shared machine spinning
# threads waiting for a descheduled sibling cost more than they save; "default" unsets it, so
# each side runs with libgomp's default, a spin of ~300k iterations before sleeping, which is
# what a user gets out of the box), METHODS ("full lora"),
# TORCH_FP32 (1; 0 skips the fp32 PyTorch run, which takes minutes per step on the SmolLM shape).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
[ "$OMP_WAIT_POLICY" = default ] && unset OMP_WAIT_POLICY
PY=${PY:-/usr/bin/python3}
B=${B:-4} T=${T:-256} TORCH_FP32=${TORCH_FP32:-1} STEPS=${STEPS:-2} METHODS=${METHODS:-full lora}
SMOL=models/smollm-135m-random
if [ $# -eq 0 ]; then
    "$PY" bench/make_smollm.py "$SMOL"
    set -- models/stories15M "$SMOL"
fi
peak=$(build/rel/bench/bench_peak)
# the CPU's family/model/stepping tell hosts of one name apart (AMD family 25 is Zen 3/4, whose
# AVX-512 units are 256 bits wide; 26 is Zen 5, with twice the width and so twice the peak)
cpu=$(lscpu | sed -n 's/^Model name: *//p')
cpuid=$(lscpu | awk -F: '/^CPU family/{f=$2} /^Model:/{m=$2} /^Stepping/{s=$2} END{gsub(/ /,"",f); gsub(/ /,"",m); gsub(/ /,"",s); print "family " f " model " m " stepping " s}')
# the BLAS behind PyTorch's fp32 matmuls: the libblas.so.3 alternative (Netlib's reference BLAS
# unless OpenBLAS is installed; tools/install-deps.sh installs it)
blas=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || echo unknown)
case $blas in *openblas*) blas="OpenBLAS ($blas)" ;; *) blas="NOT OpenBLAS: $blas (torch-fp32 is slow)" ;; esac
echo "train: $(date -u '+%Y-%m-%d %H:%M UTC'), $cpu ($cpuid), $(nproc) cpus," \
     "$OMP_NUM_THREADS threads (OMP_WAIT_POLICY ${OMP_WAIT_POLICY:-default}), B $B T $T, $STEPS timed steps; $peak; torch BLAS $blas"
bf16peak=$(echo "$peak" | sed -n 's/.*bf16 \([0-9.]*\).*/\1/p')
for model in "$@"; do
    name=$(basename "$model")
    for method in $METHODS; do
        # raw lines go to stderr as each run ends (a long run can be cut short and still report)
        # full: AdamW fused into the backward, as ftune's trainer runs this recipe (no clipping,
        # one micro-batch per step); the plain order (whole gradient, then AdamW) is shown beside it
        ftm=$method; [ "$method" = full ] && ftm=full-fused
        ft=$(build/rel/bench/bench_train "$model" "$ftm" bf16 "$B" "$T" "$STEPS"); echo "  $name $method ftune-bf16: $ft" >&2
        ftp=""
        if [ "$method" = full ]; then
            ftp=$(build/rel/bench/bench_train "$model" full bf16 "$B" "$T" "$STEPS"); echo "  $name $method ftune-bf16-unfused: $ftp" >&2
        fi
        ft32=$(build/rel/bench/bench_train "$model" "$ftm" f32 "$B" "$T" "$STEPS"); echo "  $name $method ftune-f32: $ft32" >&2
        if [ "$TORCH_FP32" = 1 ]; then
            t32=$("$PY" bench/ref_train.py "$model" "$method" fp32 "$B" "$T" "$STEPS")
        else # not run: its figures print as nan
            t32="torch tok_s nan step_s nan peak_rss_mb nan loss_first nan loss_last nan tok_per_cpu_s nan step_min_s nan step_med_s nan"
        fi
        echo "  $name $method torch-fp32: $t32" >&2
        t16=$("$PY" bench/ref_train.py "$model" "$method" bf16 "$B" "$T" "$STEPS"); echo "  $name $method torch-bf16: $t16" >&2
        # ftune-bf16 once more right after PyTorch's run: the two bracket it in time, so a slow
        # or fast phase of a shared host shows as a difference between them
        ftb=$(build/rel/bench/bench_train "$model" "$ftm" bf16 "$B" "$T" "$STEPS"); echo "  $name $method ftune-bf16-after: $ftb" >&2
        "$PY" - "$name" "$method" "$bf16peak" "$ft" "$ft32" "$t32" "$t16" "$ftp" "$ftb" <<'PYEOF'
import sys
name, method, peak = sys.argv[1], sys.argv[2], float(sys.argv[3] or "nan")
def kv(line):
    f = line.split()
    return {f[i]: float(f[i + 1]) for i in range(1, len(f) - 1, 2)}
ft, ft32, t32, t16 = (kv(a) for a in sys.argv[4:8])
fpt = ft["flop_per_tok"]
def g(r): return r["tok_s"] * fpt / 1e9
print(f"{name} {method}: tok/s ftune-bf16 {ft['tok_s']:.0f}  ftune-f32 {ft32['tok_s']:.0f}  "
      f"torch-fp32 {t32['tok_s']:.0f}  torch-bf16 {t16['tok_s']:.0f} | ftune-bf16 = "
      f"{ft['tok_s'] / t16['tok_s']:.2f}x torch-bf16, {ft['tok_s'] / t32['tok_s']:.2f}x torch-fp32")
print(f"  GFLOP/s ({fpt / 1e6:.0f} MFLOP/token): ftune-bf16 {g(ft):.0f} ({100 * g(ft) / peak:.0f}% "
      f"of bf16 peak {peak:.0f}), ftune-f32 {g(ft32):.0f}, torch-fp32 {g(t32):.0f}, "
      f"torch-bf16 {g(t16):.0f}")
# what the silicon allows: the ratio no kernel can pass on this host, and what 4x would take
cap = peak * 1e9 / fpt
print(f"  ceiling: the bf16 peak is {cap:.0f} tok/s = {cap / t16['tok_s']:.2f}x torch-bf16 "
      f"(torch-bf16 runs at {100 * g(t16) / peak:.0f}% of it); 4x torch-bf16 would take "
      f"{4 * g(t16):.0f} GFLOP/s = {400 * g(t16) / peak:.0f}% of the peak")
print(f"  per CPU-second (load-robust view): ftune-bf16 {ft['tok_per_cpu_s']:.0f}  ftune-f32 "
      f"{ft32['tok_per_cpu_s']:.0f}  torch-fp32 {t32['tok_per_cpu_s']:.0f}  torch-bf16 "
      f"{t16['tok_per_cpu_s']:.0f} tok/cpu-s | ftune-bf16 = "
      f"{ft['tok_per_cpu_s'] / t16['tok_per_cpu_s']:.2f}x torch-bf16")
bt = round(ft["tok_s"] * ft["step_s"])  # tokens per step
print(f"  fastest step (noise-robust view): ftune-bf16 {bt / ft['step_min_s']:.0f}  torch-bf16 "
      f"{bt / t16['step_min_s']:.0f} tok/s | ftune-bf16 = "
      f"{t16['step_min_s'] / ft['step_min_s']:.2f}x torch-bf16")
print(f"  median step (noise-robust view): ftune-bf16 {bt / ft['step_med_s']:.0f}  torch-bf16 "
      f"{bt / t16['step_med_s']:.0f} tok/s | ftune-bf16 = "
      f"{t16['step_med_s'] / ft['step_med_s']:.2f}x torch-bf16")
print(f"  peak RSS MB: ftune-bf16 {ft['peak_rss_mb']:.0f}  ftune-f32 {ft32['peak_rss_mb']:.0f}  "
      f"torch-fp32 {t32['peak_rss_mb']:.0f}  torch-bf16 {t16['peak_rss_mb']:.0f}  "
      f"(ftune-bf16 / torch-bf16 = {ft['peak_rss_mb'] / t16['peak_rss_mb']:.2f})")
if sys.argv[8]:
    fp = kv(sys.argv[8])
    print(f"  ftune-bf16 with AdamW after the backward (whole gradient buffer): tok/s "
          f"{fp['tok_s']:.0f} ({fp['tok_s'] / t16['tok_s']:.2f}x torch-bf16), peak RSS "
          f"{fp['peak_rss_mb']:.0f} MB ({fp['peak_rss_mb'] / t16['peak_rss_mb']:.2f})")
fb = kv(sys.argv[9])
mean = (ft["tok_s"] + fb["tok_s"]) / 2
print(f"  bracketed (ftune-bf16 before and after torch-bf16): tok/s {ft['tok_s']:.0f} / "
      f"{fb['tok_s']:.0f}, mean {mean:.0f} = {mean / t16['tok_s']:.2f}x torch-bf16 (after alone "
      f"{fb['tok_s'] / t16['tok_s']:.2f}x; fastest step after {t16['step_min_s'] / fb['step_min_s']:.2f}x)")
print(f"  loss first->last: ftune-bf16 {ft['loss_first']:.2f}->{ft['loss_last']:.2f}  "
      f"torch-bf16 {t16['loss_first']:.2f}->{t16['loss_last']:.2f}")
PYEOF
    done
done
