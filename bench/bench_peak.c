/*
 * The machine's measured peaks on all OpenMP threads (see lab.h): f32 FMA and AVX512-BF16
 * dot-product throughput. Prints one line "peak GFLOP/s: f32 X bf16 Y" (bf16 0 without
 * AVX512-BF16) that bench/train.sh parses.
 *   bench_peak [--dnnl]   --dnnl: also time one large oneDNN bf16 matmul (2048 x 2048 x 2048,
 *                         best of 5) on a second line, as a check that the dot-product loop is
 *                         not below what a real kernel reaches.
 */
#include "lab.h"

#include "ftune/kernels.h"

#include <string.h>

static double dnnl_bf16_gflops(void) {
    const int n = 2048;
    size_t nn = (size_t)n * n;
    float *a = lab_rand(nn, 1.0f), *b = lab_rand(nn, 1.0f), *c = ft_calloc(nn, sizeof(float));
    uint16_t *ab = ft_calloc(nn, 2), *bb = ft_calloc(nn, 2);
    bf16_from_f32(ab, a, nn);
    bf16_from_f32(bb, b, nn);
    double best;
    LAB_TIME(best, 5, matmul_bf16_forward(c, ab, bb, NULL, n, n, n, 0));
    ft_free(a), ft_free(b), ft_free(c), ft_free(ab), ft_free(bb);
    return 2.0 * n * n * n / best / 1e9;
}

int main(int argc, char **argv) {
    printf("peak GFLOP/s: f32 %.0f bf16 %.0f\n", lab_peak_f32(), lab_peak_bf16());
    if (argc > 1 && !strcmp(argv[1], "--dnnl") && ft_cpu_has_bf16())
        printf("oneDNN bf16 matmul 2048^3: %.0f GFLOP/s\n", dnnl_bf16_gflops());
    return 0;
}
