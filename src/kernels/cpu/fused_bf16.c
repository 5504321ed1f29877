/*
 * Fused kernels of the bf16 mixed-precision step: an f32 kernel whose output is also written as
 * bf16 in the same pass (the bf16 copy feeds the next matmul), so the activation is not read a
 * second time just to convert it. Results are bit-identical to the f32 kernel followed by
 * bf16_from_f32 (their naive twins, which the tests compare with): the same arithmetic per
 * element, then the same round-to-nearest-even.
 *
 *   rmsnorm_forward_bf16   out (M,C) f32 (may be NULL) and outb (M,C) bf16 of rmsnorm; rstd (M)
 *   swiglu_forward_bf16    out (N) f32 (may be NULL) and outb (N) bf16 of silu(gate) * up
 */
#include "ftune/kernels.h"

#include <math.h>
#include <string.h>

static inline uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1)) >> 16;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40 : r);
}

void rmsnorm_forward_bf16(float *out, uint16_t *outb, float *rstd, const float *inp,
                          const float *weight, int M, int C, float eps) {
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; m++) {
        const float *x = inp + m * C; // (C)
        double ss = 0.0;
        for (int c = 0; c < C; c++) ss += (double)x[c] * x[c];
        float ms = (float)(ss / C);
        float r = 1.0f / sqrtf(ms + eps);
        uint16_t *yb = outb + m * C;
        if (out) {
            float *y = out + m * C;
            for (int c = 0; c < C; c++) {
                y[c] = (x[c] * r) * weight[c];
                yb[c] = to_bf16(y[c]);
            }
        } else {
            for (int c = 0; c < C; c++) yb[c] = to_bf16((x[c] * r) * weight[c]);
        }
        if (rstd) rstd[m] = r;
    }
}

void swiglu_forward_bf16(float *out, uint16_t *outb, const float *gate, const float *up,
                         size_t N) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < N; i++) {
        float g = gate[i];
        float y = g / (1.0f + expf(-g)) * up[i];
        if (out) out[i] = y;
        outb[i] = to_bf16(y);
    }
}
