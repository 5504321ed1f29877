/* Small f32 vector helpers shared by the CPU kernels (internal). GCC/Clang vector extensions: they
 * compile to AVX-512 / AVX2 / SSE as -march allows, with no intrinsics and no -ffast-math. */
#ifndef FTUNE_KERNELS_CPU_VEC_H
#define FTUNE_KERNELS_CPU_VEC_H

#include <stdint.h>
#include <string.h>

typedef float ft_v16f __attribute__((vector_size(64)));

/* sum_k a[k] b[k] in f32: two 16-lane partial sums over blocks of 32, one more block of 16, then a
 * scalar tail; a fixed association for a given K (deterministic, thread-count independent). */
static inline float ft_dot_f32(const float *a, const float *b, int64_t K) {
    ft_v16f s0 = {0}, s1 = {0}, x0, x1, y0, y1;
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
        memcpy(&x0, a + k, sizeof x0);
        memcpy(&x1, a + k + 16, sizeof x1);
        memcpy(&y0, b + k, sizeof y0);
        memcpy(&y1, b + k + 16, sizeof y1);
        s0 += x0 * y0;
        s1 += x1 * y1;
    }
    if (k + 16 <= K) {
        memcpy(&x0, a + k, sizeof x0);
        memcpy(&y0, b + k, sizeof y0);
        s0 += x0 * y0;
        k += 16;
    }
    s0 += s1;
    float s = 0.0f;
    for (int j = 0; j < 16; j++) s += s0[j];
    for (; k < K; k++) s += a[k] * b[k];
    return s;
}

#endif
