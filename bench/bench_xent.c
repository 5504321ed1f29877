/*
 * Head + cross-entropy lab (chunked, the (M,V) logits never exist at once): M = 1024 tokens,
 * C = 576, V = 49152 (SmolLM-135M) and C = 288, V = 32000 (stories15M); variants
 *   f32   crossentropy_forward_backward (oneDNN f32 head products)
 *   bf16  crossentropy_bf16_forward_backward (bf16 head products on a packed weight), with the
 *         weight gradient's xb rows packed by our pass (bf16-packx, the step's way) and without
 * checked against the naive twin on a 16-row slice (NLL bound and norm-wise gradient error as in
 * test_matmul_bf16), then timed for forward+backward; GFLOP/s counts the three head products
 * (6 M V C). CHUNK: the rows per chunk (default crossentropy_chunk_rows); DLOG_ROWS: the rows of
 * a bf16 weight-gradient product (runs of chunks; default one chunk) — the step's choice for a
 * trained SmolLM head at 1024 rows is 128 / 512.
 *   bench_xent [REPS=3 [CHUNK [DLOG_ROWS]]]
 */
#include "lab.h"

#include "ftune/crossentropy.h"
#include "ftune/kernels.h"

#include <string.h>

static double peak16, peak32;

static double rel(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) num += (double)(a[i] - b[i]) * (a[i] - b[i]), den += (double)b[i] * b[i];
    return sqrt(num / (den > 0 ? den : 1));
}

static void run(int M, int C, int V, int reps, int chunk, int dlog_rows) {
    if (chunk <= 0) chunk = crossentropy_chunk_rows(M, V);
    float *x = lab_rand((size_t)M * C, 1), *w = lab_rand((size_t)V * C, 0.1f);
    int *lab = malloc(M * sizeof(int));
    for (int m = 0; m < M; m++) lab[m] = (m * 7919) % V;
    float *logits = ft_calloc((size_t)chunk * V, 4), *dx = ft_calloc((size_t)M * C, 4),
          *dw = ft_calloc((size_t)V * C, 4), *dx2 = ft_calloc((size_t)M * C, 4),
          *dw2 = ft_calloc((size_t)V * C, 4);
    uint16_t *xb = ft_calloc((size_t)M * C, 2),
             *dlogb = ft_calloc((size_t)(dlog_rows > chunk ? dlog_rows : chunk) * V, 2);
    bf16_from_f32(xb, x, (size_t)M * C);
    ft_bf16_weight *pw = bf16_weight_create(w, C, V);
    ft_bf16_pack *pk = bf16_pack_create();
    int64_t nt;
    printf(" M%d C%d V%d chunk %d\n", M, C, V, chunk);
    /* check on the first 16 rows */
    double ref = crossentropy_forward_backward_naive(dx2, dw2, &nt, x, w, lab, 1.0f, 16, C, V);
    double got = crossentropy_forward_backward(dx, dw, &nt, logits, x, w, lab, 1.0f, 16, C, V, chunk);
    printf("  check f32 nll %.6f vs naive %.6f: %s\n", got, ref, fabs(got - ref) < 1e-4 * fabs(ref) ? "ok" : "MISMATCH");
    lab_failures += !(fabs(got - ref) < 1e-4 * fabs(ref));
    if (peak16 > 0) {
        memset(dx, 0, (size_t)M * C * 4), memset(dw, 0, (size_t)V * C * 4);
        got = crossentropy_bf16_forward_backward(dx, dw, &nt, logits, dlogb, xb, pw, pk, lab, 1.0f,
                                                 16, C, V, chunk, dlog_rows);
        double ex = rel(dx, dx2, (size_t)16 * C), ew = rel(dw, dw2, (size_t)V * C);
        int ok = fabs(got - ref) < 0.02 * fabs(ref) && ex < 1.0 / 64 && ew < 1.0 / 64;
        printf("  check bf16 nll %.6f vs naive %.6f, grads rel l2 %.2g %.2g: %s\n", got, ref, ex, ew,
               ok ? "ok" : "MISMATCH");
        lab_failures += !ok;
    }
    double fl = 6.0 * M * V * C, t;
    LAB_TIME(t, reps,
             crossentropy_forward_backward(dx, dw, &nt, logits, x, w, lab, 1.0f, M, C, V, chunk));
    printf("  %-5s fwd+bwd %8.1f ms %6.1f GFLOP/s (%4.1f%% of f32 peak)\n", "f32", t * 1e3,
           fl / t / 1e9, 100 * fl / t / 1e9 / peak32);
    for (int v = 0; peak16 > 0 && v < 2; v++) { /* dW's xb rows packed by our pass, or not */
        LAB_TIME(t, reps,
                 crossentropy_bf16_forward_backward(dx, dw, &nt, logits, dlogb, xb, pw,
                                                    v ? NULL : pk, lab, 1.0f, M, C, V, chunk,
                                                    dlog_rows));
        printf("  %-11s fwd+bwd %8.1f ms %6.1f GFLOP/s (%4.1f%% of bf16 peak)\n",
               v ? "bf16" : "bf16-packx", t * 1e3, fl / t / 1e9, 100 * fl / t / 1e9 / peak16);
    }
    bf16_weight_free(pw);
    bf16_pack_free(pk);
    ft_free(x), ft_free(w), free(lab), ft_free(logits), ft_free(dx), ft_free(dw), ft_free(dx2);
    ft_free(dw2), ft_free(xb), ft_free(dlogb);
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 3;
    peak32 = lab_peak_f32();
    peak16 = ft_cpu_has_bf16() ? lab_peak_bf16() : 0;
    printf("head+cross-entropy lab: %d threads, peaks f32 %.0f bf16 %.0f GFLOP/s\n",
           omp_get_max_threads(), peak32, peak16);
    int chunk = argc > 2 ? atoi(argv[2]) : 0;
    int dlog_rows = argc > 3 ? atoi(argv[3]) : 0;
    run(1024, 576, 49152, reps, chunk, dlog_rows);
    run(1024, 288, 32000, reps, chunk, dlog_rows);
    return lab_failures ? 1 : 0;
}
