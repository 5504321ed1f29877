/*
 * SwiGLU lab at the training shape (B*T = 1024 rows, F = 1536): variants
 *   f32          swiglu_forward
 *   f32+convert  swiglu_forward then bf16_from_f32 (unfused)
 *   fused-bf16   swiglu_forward_bf16 (f32 and bf16 outputs in one pass)
 *   bf16-only    swiglu_forward_bf16 without the f32 output (bf16 non-LoRA step)
 *   backward     swiglu_backward
 * checked against a naive double loop; prints time and effective bandwidth (memory-bound).
 *   bench_swiglu [REPS=20]
 */
#include "lab.h"

#include "ftune/kernels.h"

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 20;
    const size_t n = (size_t)1024 * 1536;
    float *g = lab_rand(n, 4), *u = lab_rand(n, 1), *y = ft_calloc(n, 4), *ref = ft_calloc(n, 4);
    float *dy = lab_rand(n, 1), *dg = ft_calloc(n, 4), *du = ft_calloc(n, 4), *yb32 = ft_calloc(n, 4);
    uint16_t *yb = ft_calloc(n, 2);
    for (size_t i = 0; i < n; i++) ref[i] = (float)(g[i] / (1.0 + exp(-(double)g[i])) * u[i]);
    printf("swiglu lab: %d threads, N = 1024 x 1536\n", omp_get_max_threads());
    swiglu_forward(y, g, u, n);
    lab_check("f32 vs naive", y, ref, n, 1e-6, 1e-5);
    swiglu_forward_bf16(NULL, yb, g, u, n);
    bf16_to_f32(yb32, yb, n);
    lab_check("bf16 vs naive (2^-8 relative)", yb32, ref, n, 1e-6, 1.01 / 256);
    double t, mb = n * 4 / 1e6;
    LAB_TIME(t, reps, swiglu_forward(y, g, u, n));
    printf("  %-12s %8.3f ms %6.1f GB/s\n", "f32", t * 1e3, 3 * mb / t / 1e3);
    LAB_TIME(t, reps, (swiglu_forward(y, g, u, n), bf16_from_f32(yb, y, n)));
    printf("  %-12s %8.3f ms %6.1f GB/s\n", "f32+convert", t * 1e3, 4.5 * mb / t / 1e3);
    LAB_TIME(t, reps, swiglu_forward_bf16(y, yb, g, u, n));
    printf("  %-12s %8.3f ms %6.1f GB/s\n", "fused-bf16", t * 1e3, 3.5 * mb / t / 1e3);
    LAB_TIME(t, reps, swiglu_forward_bf16(NULL, yb, g, u, n));
    printf("  %-12s %8.3f ms %6.1f GB/s\n", "bf16-only", t * 1e3, 2.5 * mb / t / 1e3);
    LAB_TIME(t, reps, swiglu_backward(dg, du, dy, g, u, n));
    printf("  %-12s %8.3f ms %6.1f GB/s\n", "backward", t * 1e3, 5 * mb / t / 1e3);
    ft_free(g), ft_free(u), ft_free(y), ft_free(ref), ft_free(dy), ft_free(dg), ft_free(du);
    ft_free(yb32), ft_free(yb);
    return lab_failures ? 1 : 0;
}
