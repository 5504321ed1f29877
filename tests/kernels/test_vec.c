/*
 * The internal vector helpers (src/kernels/cpu/vec.h) that kernels rely on for bit-identical
 * results between forms: ft_exp16 (16 lanes, intrinsics) gives ft_exp_simd's bits on every input
 * of a dense sweep, the clamps and the infinities; ft_exp_simd stays within 2 ulp of libm's expf
 * where it is not clamped (its header claims 1 against the exact value; glibc's expf is itself
 * within ~0.5 ulp of it); ft_pair16v gives ft_pair16's f32 form and the
 * rounded halves it exposes are bf16_from_f32's bits. Bit-identical checks: the dp attention's
 * fused softmax and gradient steps (attention_flash_dp.c) depend on them.
 */
#include "../test.h"

#include "../../src/kernels/cpu/vec.h"
#include "ftune/kernels.h"

#include <math.h>
#include <string.h>

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

int main(void) {
    /* inputs: a sweep of [-100, 100] in steps of 2^-10, plus edges */
    enum { NS = 200 * 1024 + 1 };
    static float xs[NS + 16];
    int n = 0;
    for (int i = 0; i < NS; i++) xs[n++] = -100.0f + (float)i / 1024.0f;
    const float edges[] = {-INFINITY, INFINITY, -87.3f, -87.29f, -87.31f, 88.0f, 88.01f, 0.0f,
                           -0.0f,     1e-30f,   -1e-30f, 0.6931472f, -0.6931472f, 1.5f};
    for (size_t i = 0; i < sizeof edges / sizeof *edges; i++) xs[n++] = edges[i];
    while (n % 16) xs[n++] = 0.5f;

    long worst_ulp = 0;
    float worst_x = 0;
    for (int i = 0; i < n; i++) {
        float x = xs[i];
        if (x > -87.3f && x < 88.0f) {
            long d = (long)bits(ft_exp_simd(x)) - (long)bits(expf(x));
            if (labs(d) > worst_ulp) worst_ulp = labs(d), worst_x = x;
        }
    }
    CHECK("ft_exp_simd within 2 ulp of expf on (-87.3, 88)", worst_ulp <= 2, "%ld ulp at x = %.9g",
          worst_ulp, worst_x);

#if defined(__AVX512F__)
    int diff = 0;
    float dx = 0;
    for (int i = 0; i < n; i += 16) {
        float got[16];
        _mm512_storeu_ps(got, ft_exp16(_mm512_loadu_ps(xs + i)));
        for (int j = 0; j < 16; j++)
            if (bits(got[j]) != bits(ft_exp_simd(xs[i + j]))) diff++, dx = xs[i + j];
    }
    CHECK("ft_exp16 == ft_exp_simd bit for bit", diff == 0, "%d lanes differ (e.g. x = %.9g)", diff,
          dx);
#endif
#if defined(__AVX512BF16__)
    int bad = 0;
    for (int i = 0; i + 32 <= n; i += 32) {
        const float *a = xs + i, *b = xs + i + 16;
        float sa[16], sb[16];
        for (int j = 0; j < 16; j++) sa[j] = a[j] * 1e-3f, sb[j] = b[j] * -7e-2f;
        __m512i ab, w1 = ft_pair16v(_mm512_loadu_ps(sa), _mm512_loadu_ps(sb), &ab);
        __m512i w0 = ft_pair16(sa, sb, 0, 0xffff, 1);
        uint16_t ra[16], rb[16], halves[32];
        bf16_from_f32(ra, sa, 16), bf16_from_f32(rb, sb, 16);
        _mm512_storeu_si512(halves, ab);
        bad += memcmp(&w0, &w1, 64) != 0 || memcmp(halves, ra, 32) || memcmp(halves + 16, rb, 32);
    }
    CHECK("ft_pair16v == ft_pair16 (f32), its halves == bf16_from_f32", bad == 0,
          "%d groups differ", bad);
#endif
    return ft_test_exit();
}
