/*
 * Attention lab: causal GQA attention forward and backward at the training shape (SmolLM-135M:
 * B 4, T 256, H 9, KV 3, D 64; stories15M: H 6, KV 6, D 48), variants:
 *   exact   attention_forward/_backward (saves the (B,H,T,T) probabilities)
 *   flash   attention_flash_forward/_backward (online softmax, saves (B,H,T) logsumexp)
 *   flash-bf16  attention_flash_forward/_backward_bf16 (bf16 q, k, v, f32 arithmetic)
 *   flash-dp    attention_flash_forward/_backward_dp (AVX512-BF16 dot products: the bf16 step's)
 * Both are checked against the naive double-accumulated twin first. Prints time, GFLOP/s
 * (forward 4 T^2/2 D H B flops: QK^T and PV over the causal half; backward 2.5x that: 5 products
 * with the recomputed QK^T) and the bytes each saves for backward.
 *   bench_attention [REPS=5]
 */
#include "lab.h"

#include "ftune/kernels.h"

static void run(const char *model, int B, int T, int H, int KV, int D, int reps, double peak) {
    size_t nq = (size_t)B * T * H * D, nk = (size_t)B * T * KV * D, na = (size_t)B * H * T * T;
    float *q = lab_rand(nq, 1), *k = lab_rand(nk, 1), *v = lab_rand(nk, 1), *dy = lab_rand(nq, 1);
    float *o1 = ft_calloc(nq, 4), *o2 = ft_calloc(nq, 4), *att = ft_calloc(na, 4),
          *lse = ft_calloc((size_t)B * H * T, 4);
    float *gq1 = ft_calloc(nq, 4), *gk1 = ft_calloc(nk, 4), *gv1 = ft_calloc(nk, 4);
    float *gq2 = ft_calloc(nq, 4), *gk2 = ft_calloc(nk, 4), *gv2 = ft_calloc(nk, 4);
    printf(" %s B%d T%d H%d KV%d D%d\n", model, B, T, H, KV, D);
    /* check on the first batch row only (the naive loop is slow) */
    size_t nq1 = nq / B, nk1 = nk / B;
    float *natt = ft_calloc(na / B, 4);
    attention_forward_naive(o2, natt, q, k, v, NULL, 1, T, H, KV, D);
    attention_flash_forward(o1, lse, q, k, v, NULL, B, T, H, KV, D);
    lab_check("flash forward vs naive", o1, o2, nq1, 2e-5, 1e-4);
    attention_forward(o1, att, q, k, v, NULL, B, T, H, KV, D);
    lab_check("exact forward vs naive", o1, o2, nq1, 2e-5, 1e-4);
    attention_backward_naive(gq2, gk2, gv2, dy, q, k, v, natt, 1, T, H, KV, D);
    attention_flash_backward(gq1, gk1, gv1, dy, o1, q, k, v, lse, NULL, B, T, H, KV, D);
    lab_check("flash dq vs naive", gq1, gq2, nq1, 5e-5, 2e-4);
    lab_check("flash dk vs naive", gk1, gk2, nk1, 5e-5, 2e-4);
    lab_check("flash dv vs naive", gv1, gv2, nk1, 5e-5, 2e-4);
    ft_free(natt);

    double fl = 4.0 * T * (T + 1) / 2 * D * H * B, t;
    LAB_TIME(t, reps, attention_forward(o1, att, q, k, v, NULL, B, T, H, KV, D));
    printf("  %-8s forward  %8.2f ms %6.1f GFLOP/s %5.1f%% of f32 peak  saves %6.1f MB\n", "exact",
           t * 1e3, fl / t / 1e9, 100 * fl / t / 1e9 / peak, na * 4 / 1e6);
    LAB_TIME(t, reps, attention_flash_forward(o1, lse, q, k, v, NULL, B, T, H, KV, D));
    printf("  %-8s forward  %8.2f ms %6.1f GFLOP/s %5.1f%% of f32 peak  saves %6.3f MB\n", "flash",
           t * 1e3, fl / t / 1e9, 100 * fl / t / 1e9 / peak, (double)B * H * T * 4 / 1e6);
    LAB_TIME(t, reps, attention_backward(gq2, gk2, gv2, dy, q, k, v, att, B, T, H, KV, D));
    printf("  %-8s backward %8.2f ms %6.1f GFLOP/s\n", "exact", t * 1e3, 2.5 * fl / t / 1e9);
    LAB_TIME(t, reps,
             attention_flash_backward(gq1, gk1, gv1, dy, o1, q, k, v, lse, NULL, B, T, H, KV, D));
    printf("  %-8s backward %8.2f ms %6.1f GFLOP/s\n", "flash", t * 1e3, 2.5 * fl / t / 1e9);
    /* bf16 forms (the bf16 step's): q, k, v as bf16, f32 arithmetic on the widened values, so
     * checked bit for bit against the f32 flash kernels on the rounded inputs */
    uint16_t *qb = ft_calloc(nq, 2), *kb = ft_calloc(nk, 2), *vb = ft_calloc(nk, 2);
    bf16_from_f32(qb, q, nq), bf16_from_f32(kb, k, nk), bf16_from_f32(vb, v, nk);
    bf16_to_f32(q, qb, nq), bf16_to_f32(k, kb, nk), bf16_to_f32(v, vb, nk);
    attention_flash_forward(o2, lse, q, k, v, NULL, B, T, H, KV, D);
    attention_flash_backward(gq2, gk2, gv2, dy, o2, q, k, v, lse, NULL, B, T, H, KV, D);
    attention_flash_forward_bf16(o1, lse, qb, kb, vb, NULL, B, T, H, KV, D);
    lab_check("flash-bf16 forward == f32 on rounded", o1, o2, nq, 0, 0);
    attention_flash_backward_bf16(gq1, gk1, gv1, dy, o1, qb, kb, vb, lse, NULL, B, T, H, KV, D);
    lab_check("flash-bf16 dq == f32 on rounded", gq1, gq2, nq, 0, 0);
    lab_check("flash-bf16 dk == f32 on rounded", gk1, gk2, nk, 0, 0);
    lab_check("flash-bf16 dv == f32 on rounded", gv1, gv2, nk, 0, 0);
    LAB_TIME(t, reps, attention_flash_forward_bf16(o1, lse, qb, kb, vb, NULL, B, T, H, KV, D));
    printf("  %-8s forward  %8.2f ms %6.1f GFLOP/s\n", "flash-bf16", t * 1e3, fl / t / 1e9);
    LAB_TIME(t, reps,
             attention_flash_backward_bf16(gq1, gk1, gv1, dy, o1, qb, kb, vb, lse, NULL, B, T, H,
                                           KV, D));
    printf("  %-8s backward %8.2f ms %6.1f GFLOP/s\n", "flash-bf16", t * 1e3, 2.5 * fl / t / 1e9);
    /* dp forms (AVX512-BF16 dot products; P, dS, dout rounded to bf16): not bit-identical,
     * checked against the f32 kernels on the rounded inputs at bf16 level (2^-7 relative, an
     * absolute floor for the cancelling sums; the tests bound them element by element) */
    if (attention_flash_dp_ok(D)) {
        attention_flash_forward_dp(o1, NULL, lse, qb, kb, vb, NULL, B, T, H, KV, D);
        lab_check("flash-dp forward ~ f32 on rounded", o1, o2, nq, 2e-3, 1e-2);
        attention_flash_backward_dp(gq1, gk1, gv1, dy, o1, NULL, qb, kb, vb, lse, NULL, B, T, H, KV,
                                    D);
        lab_check("flash-dp dq ~ f32 on rounded", gq1, gq2, nq, 1e-2, 2e-2);
        lab_check("flash-dp dk ~ f32 on rounded", gk1, gk2, nk, 1e-2, 2e-2);
        lab_check("flash-dp dv ~ f32 on rounded", gv1, gv2, nk, 1e-2, 2e-2);
        LAB_TIME(t, reps,
                 attention_flash_forward_dp(o1, NULL, lse, qb, kb, vb, NULL, B, T, H, KV, D));
        printf("  %-8s forward  %8.2f ms %6.1f GFLOP/s\n", "flash-dp", t * 1e3, fl / t / 1e9);
        LAB_TIME(t, reps,
                 attention_flash_backward_dp(gq1, gk1, gv1, dy, o1, NULL, qb, kb, vb, lse, NULL, B,
                                             T, H, KV, D));
        printf("  %-8s backward %8.2f ms %6.1f GFLOP/s\n", "flash-dp", t * 1e3, 2.5 * fl / t / 1e9);
    }
    ft_free(qb), ft_free(kb), ft_free(vb);
    ft_free(q), ft_free(k), ft_free(v), ft_free(dy), ft_free(o1), ft_free(o2), ft_free(att);
    ft_free(lse), ft_free(gq1), ft_free(gk1), ft_free(gv1), ft_free(gq2), ft_free(gk2);
    ft_free(gv2);
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    double peak = lab_peak_f32();
    printf("attention lab: %d threads, measured f32 FMA peak %.0f GFLOP/s\n", omp_get_max_threads(),
           peak);
    run("smollm-135m", 4, 256, 9, 3, 64, reps, peak);
    run("stories15M", 4, 256, 6, 6, 48, reps, peak);
    if (lab_failures) printf("attention lab: %d MISMATCH(ES)\n", lab_failures);
    return lab_failures ? 1 : 0;
}
