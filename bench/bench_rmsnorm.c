/*
 * RMSNorm lab at the training shape (B*T = 1024 rows, C = 576 / 288): variants
 *   f32          rmsnorm_forward
 *   f32+convert  rmsnorm_forward then bf16_from_f32 (what a bf16 matmul needs, unfused)
 *   fused-bf16   rmsnorm_forward_bf16 (bf16 copy written in the same pass; f32 output kept)
 *   bf16-only    rmsnorm_forward_bf16 with no f32 output (the bf16 non-LoRA step)
 *   backward     rmsnorm_backward (dinp and dweight)
 * checked against a naive double loop; prints time and effective memory bandwidth (bytes each
 * variant must move / time): the kernel is memory-bound, GFLOP/s would say nothing.
 *   bench_rmsnorm [REPS=20]
 */
#include "lab.h"

#include "ftune/kernels.h"

#include <string.h>

static void naive(float *y, const float *x, const float *w, int M, int C, float eps) {
    for (int m = 0; m < M; m++) {
        double ss = 0;
        for (int c = 0; c < C; c++) ss += (double)x[m * C + c] * x[m * C + c];
        double r = 1.0 / sqrt(ss / C + eps);
        for (int c = 0; c < C; c++) y[m * C + c] = (float)(x[m * C + c] * r * w[c]);
    }
}

static void run(int M, int C, int reps) {
    size_t n = (size_t)M * C;
    float *x = lab_rand(n, 2), *w = lab_rand(C, 1), *y = ft_calloc(n, 4), *ref = ft_calloc(n, 4);
    float *r = ft_calloc(M, 4), *dy = lab_rand(n, 1), *dx = ft_calloc(n, 4), *dw = ft_calloc(C, 4);
    uint16_t *yb = ft_calloc(n, 2);
    float *yb32 = ft_calloc(n, 4);
    naive(ref, x, w, M, C, 1e-5f);
    rmsnorm_forward(y, r, x, w, M, C, 1e-5f);
    lab_check("f32 vs naive", y, ref, n, 1e-6, 1e-5);
    rmsnorm_forward_bf16(NULL, yb, r, x, w, M, C, 1e-5f);
    bf16_to_f32(yb32, yb, n);
    lab_check("bf16 vs naive (2^-8 relative)", yb32, ref, n, 1e-6, 1.01 / 256);
    double t, mb = n * 4 / 1e6;
    printf(" M%d C%d\n", M, C);
    LAB_TIME(t, reps, rmsnorm_forward(y, r, x, w, M, C, 1e-5f));
    printf("  %-12s %8.3f ms %6.1f GB/s\n", "f32", t * 1e3, 2 * mb / t / 1e3);
    LAB_TIME(t, reps, (rmsnorm_forward(y, r, x, w, M, C, 1e-5f), bf16_from_f32(yb, y, n)));
    printf("  %-12s %8.3f ms %6.1f GB/s\n", "f32+convert", t * 1e3, 3.5 * mb / t / 1e3);
    LAB_TIME(t, reps, rmsnorm_forward_bf16(y, yb, r, x, w, M, C, 1e-5f));
    printf("  %-12s %8.3f ms %6.1f GB/s\n", "fused-bf16", t * 1e3, 2.5 * mb / t / 1e3);
    LAB_TIME(t, reps, rmsnorm_forward_bf16(NULL, yb, r, x, w, M, C, 1e-5f));
    printf("  %-12s %8.3f ms %6.1f GB/s\n", "bf16-only", t * 1e3, 1.5 * mb / t / 1e3);
    LAB_TIME(t, reps, rmsnorm_backward(dx, dw, dy, x, w, r, M, C));
    printf("  %-12s %8.3f ms %6.1f GB/s\n", "backward", t * 1e3, 4 * mb / t / 1e3);
    ft_free(x), ft_free(w), ft_free(y), ft_free(ref), ft_free(r), ft_free(dy), ft_free(dx);
    ft_free(dw), ft_free(yb), ft_free(yb32);
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 20;
    printf("rmsnorm lab: %d threads\n", omp_get_max_threads());
    run(1024, 576, reps);
    run(1024, 288, reps);
    return lab_failures ? 1 : 0;
}
