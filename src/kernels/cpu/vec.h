/* Small f32 vector helpers shared by the CPU kernels (internal). GCC/Clang vector extensions: they
 * compile to AVX-512 / AVX2 / SSE as -march allows, with no intrinsics and no -ffast-math. */
#ifndef FTUNE_KERNELS_CPU_VEC_H
#define FTUNE_KERNELS_CPU_VEC_H

#include <math.h>
#include <stdint.h>
#include <string.h>

typedef float ft_v16f __attribute__((vector_size(64)));

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

/* c + a b per lane, rounded once (a fused multiply-add) where the target has FMA. GCC does not
 * contract a * b + c into an FMA in ISO C mode (-std=c11 implies -ffp-contract=off), so kernels
 * that want FMAs ask for them here. Macros, not functions: a function taking 64-byte vectors
 * changes the ABI on targets without AVX-512 (the fuzz build), where this is a * b + c. */
#if defined(__AVX512F__)
#define ft_fma16(a, b, c) ((ft_v16f)_mm512_fmadd_ps((__m512)(a), (__m512)(b), (__m512)(c)))
#else
#define ft_fma16(a, b, c) ((a) * (b) + (c))
#endif

/* s in all 16 lanes */
#define ft_splat16(s) ((ft_v16f){0} + (s))

/* Row reductions in double, NR rows at once (NR <= 4): for each row j < nr, x_j = x + j ld (and
 * y_j, w when given),
 *   ft_sumsq_rows: ss[j] = sum_c (double)x_j[c] * x_j[c]
 *   ft_dotw_rows:  ss[j] = sum_c ((double)y_j[c] * w[c]) * x_j[c]
 * each summed in ascending c exactly as a one-row loop does (the same bits); a double sum cannot
 * be vectorized without reassociating it, so the rows' independent chains are what overlap. */
static inline void ft_sumsq_rows(double *ss, const float *x, int64_t ld, int C, int nr) {
    if (nr == 4) {
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        const float *x0 = x, *x1 = x + ld, *x2 = x + 2 * ld, *x3 = x + 3 * ld;
        for (int c = 0; c < C; c++) {
            s0 += (double)x0[c] * x0[c];
            s1 += (double)x1[c] * x1[c];
            s2 += (double)x2[c] * x2[c];
            s3 += (double)x3[c] * x3[c];
        }
        ss[0] = s0, ss[1] = s1, ss[2] = s2, ss[3] = s3;
        return;
    }
    for (int j = 0; j < nr; j++) {
        double s = 0;
        for (int c = 0; c < C; c++) s += (double)x[j * ld + c] * x[j * ld + c];
        ss[j] = s;
    }
}

static inline void ft_dotw_rows(double *ss, const float *y, const float *w, const float *x,
                                int64_t ld, int C, int nr) {
    if (nr == 4) {
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        const float *x0 = x, *x1 = x + ld, *x2 = x + 2 * ld, *x3 = x + 3 * ld;
        const float *y0 = y, *y1 = y + ld, *y2 = y + 2 * ld, *y3 = y + 3 * ld;
        for (int c = 0; c < C; c++) {
            s0 += (double)y0[c] * w[c] * x0[c];
            s1 += (double)y1[c] * w[c] * x1[c];
            s2 += (double)y2[c] * w[c] * x2[c];
            s3 += (double)y3[c] * w[c] * x3[c];
        }
        ss[0] = s0, ss[1] = s1, ss[2] = s2, ss[3] = s3;
        return;
    }
    for (int j = 0; j < nr; j++) {
        double s = 0;
        for (int c = 0; c < C; c++) s += (double)y[j * ld + c] * w[c] * x[j * ld + c];
        ss[j] = s;
    }
}

/* exp(x) for x <= ~88, written so `omp simd` loops vectorize it (libm's expf does not here):
 * Cephes' expf — n = round(x log2 e), r = x - n ln2 in two parts, a degree-6 polynomial for e^r,
 * scaled by 2^n through the exponent bits. The reduction and the polynomial are fused
 * multiply-adds (fmaf, one rounding each, vectorized into FMA instructions): 9 operations
 * from the reduction on where separate multiplies and adds took 18. Within 1 ulp of expf (every
 * 37th float of the range: 99.2% exact, as the unfused form); x below -87.3 is clamped (e^-87.3 ~
 * 1e-38, a weight no softmax row can notice), so callers map masked entries to 0 themselves. */
static inline float ft_exp_simd(float x) {
    x = x < -87.3f ? -87.3f : (x > 88.0f ? 88.0f : x);
    /* n = rint(x log2 e) by the 1.5 * 2^23 trick (|x log2 e| < 2^22 here): floorf would not
     * vectorize without -fno-trapping-math. The shifted sum's low mantissa bits hold n, so 2^n's
     * exponent bits come from its bits in unsigned arithmetic: no float-to-int conversion, which
     * a NaN x (it passes the clamps) made undefined; NaN then stays NaN through p. */
    const float big = x * 1.44269504088896341f + 12582912.0f;
    float n = big - 12582912.0f;
    float r = fmaf(n, 2.12194440e-4f, fmaf(n, -0.693359375f, x));
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    p = fmaf(p * r, r, r) + 1.0f;
    uint32_t e;
    memcpy(&e, &big, 4);
    e = (e - 0x4b400000u + 127u) << 23; /* bits(1.5 * 2^23 + n) = 0x4b400000 + n */
    float scale;
    memcpy(&scale, &e, 4);
    return p * scale;
}

#if defined(__AVX512F__)
/* ft_exp_simd on 16 lanes with intrinsics, the same bits: the same fused multiply-adds, n
 * rounded by VRNDSCALEPS (the 1.5 * 2^23 trick's rounding: to nearest even, |x log2 e| < 2^22)
 * and p scaled by VSCALEFPS (p 2^n rounded once, as the multiply by the exponent bits' 2^n for
 * the n in [-126, 127] the clamps allow): for a loop that keeps its values in registers, where
 * the scalar form would go through memory */
static inline __m512 ft_exp16(__m512 x) {
#define FT_E16(c) _mm512_set1_ps(c)
    /* the clamps with x second: VMAXPS / VMINPS return their second operand when either is NaN,
     * so a NaN passes as in ft_exp_simd (and stays NaN) instead of becoming e^-87.3 */
    x = _mm512_min_ps(FT_E16(88.0f), _mm512_max_ps(FT_E16(-87.3f), x));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, FT_E16(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 r =
        _mm512_fmadd_ps(n, FT_E16(2.12194440e-4f), _mm512_fmadd_ps(n, FT_E16(-0.693359375f), x));
    __m512 p = FT_E16(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, FT_E16(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, FT_E16(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, FT_E16(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, FT_E16(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, FT_E16(5.0000001201e-1f));
    p = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), FT_E16(1.0f));
    return _mm512_scalef_ps(p, n);
#undef FT_E16
}
#endif

/* f32 -> bf16, round to nearest even, NaN kept quiet: the same bits as ft_f32_to_bf16, inline so
 * `omp simd` loops vectorize it. */
static inline uint16_t ft_bf16_round(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1)) >> 16;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40 : r);
}

/* bf16 bits -> f32 (exact): ft_bf16_to_f32, inline so `omp simd` loops vectorize it */
static inline float ft_bf16_widen(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* 16 bf16 values widened (exact) */
static inline ft_v16f ft_widen16(const uint16_t *p) {
    float t[16];
    for (int j = 0; j < 16; j++)
        t[j] = ft_bf16_widen(p[j]);
    ft_v16f y;
    memcpy(&y, t, sizeof y);
    return y;
}

/* b[k] as f32: from b, or when b is NULL from bb (bf16, widened: exact); one of 16 at k */
static inline __attribute__((always_inline)) ft_v16f ft_load16_fb(const float *b,
                                                                  const uint16_t *bb, int64_t k) {
    ft_v16f y;
    if (b)
        memcpy(&y, b + k, sizeof y);
    else
        y = ft_widen16(bb + k);
    return y;
}

/* sum_k a[k] b[k] in f32, b given as f32 (b) or, with b NULL, as bf16 (bb, widened as read: the
 * bits of passing its f32 widening): two 16-lane partial sums over blocks of 32, one more block of
 * 16, then a scalar tail; a fixed association for a given K (deterministic, thread-count
 * independent). */
static inline __attribute__((always_inline)) float ft_dot_f32_fb(const float *a, const float *b,
                                                                 const uint16_t *bb, int64_t K) {
    ft_v16f s0 = {0}, s1 = {0}, x0, x1;
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
        memcpy(&x0, a + k, sizeof x0);
        memcpy(&x1, a + k + 16, sizeof x1);
        s0 += x0 * ft_load16_fb(b, bb, k);
        s1 += x1 * ft_load16_fb(b, bb, k + 16);
    }
    if (k + 16 <= K) {
        memcpy(&x0, a + k, sizeof x0);
        s0 += x0 * ft_load16_fb(b, bb, k);
        k += 16;
    }
    s0 += s1;
    float s = 0.0f;
    for (int j = 0; j < 16; j++)
        s += s0[j];
    for (; k < K; k++)
        s += a[k] * (b ? b[k] : ft_bf16_widen(bb[k]));
    return s;
}

/* One row of rmsnorm_backward_fast's input gradient: dx (C) += r (dy w - x k), k = (sum_c dy_c
 * w_c x_c) / C r^2, the row dot as two 16-lane partial sums over blocks of 32, the lanes added
 * in order, then the tail: a fixed association (deterministic). Shared by fused_bf16.c and the
 * LoRA-term form (lowrank.c), so both give the same bits. */
static inline void ft_rmsnorm_dx_row(float *dx, const float *dy, const float *x, const float *w,
                                     float r, int64_t C) {
    const int64_t C32 = C / 32 * 32;
    ft_v16f s0 = {0}, s1 = {0}, a, b, wv;
    for (int64_t c = 0; c < C32; c += 32) {
        memcpy(&a, dy + c, sizeof a);
        memcpy(&wv, w + c, sizeof wv);
        memcpy(&b, x + c, sizeof b);
        s0 = ft_fma16(a * wv, b, s0);
        memcpy(&a, dy + c + 16, sizeof a);
        memcpy(&wv, w + c + 16, sizeof wv);
        memcpy(&b, x + c + 16, sizeof b);
        s1 = ft_fma16(a * wv, b, s1);
    }
    s0 += s1;
    float dot = 0.0f;
    for (int j = 0; j < 16; j++)
        dot += s0[j];
    for (int64_t c = C32; c < C; c++)
        dot += dy[c] * w[c] * x[c];
    const float k = dot / (float)C * r * r;
#pragma omp simd
    for (int64_t c = 0; c < C; c++)
        dx[c] += r * (dy[c] * w[c] - x[c] * k);
}

/* sum_k a[k] b[k] in f32 (ft_dot_f32_fb's association) */
static inline float ft_dot_f32(const float *a, const float *b, int64_t K) {
    return ft_dot_f32_fb(a, b, NULL, K);
}

#if defined(__AVX512F__)
/* dst rows j < 16 (stride lddst) = column j of the 16 rows src_i (stride ldsrc), in registers
 * (pure data movement: any 32-bit elements, bf16 pairs included, keep their bits):
 * pairs of rows interleaved by 32 then 64 bits give, in 128-bit lane k of r[4i+j], column 4k+j
 * of rows 4i..4i+3; two rounds of 128-bit lane shuffles gather each column's four lanes. */
static inline void ft_transpose16(float *dst, int64_t lddst, const float *src, int64_t ldsrc) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++)
        r[i] = _mm512_loadu_ps(src + i * ldsrc);
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]),
                c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
        r[4 * i + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int j = 0; j < 4; j++) {
        __m512 u = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x44),
               w = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xEE);
        __m512 u2 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x44),
               w2 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xEE);
        _mm512_storeu_ps(dst + (0 + j) * lddst, _mm512_shuffle_f32x4(u, u2, 0x88));
        _mm512_storeu_ps(dst + (4 + j) * lddst, _mm512_shuffle_f32x4(u, u2, 0xDD));
        _mm512_storeu_ps(dst + (8 + j) * lddst, _mm512_shuffle_f32x4(w, w2, 0x88));
        _mm512_storeu_ps(dst + (12 + j) * lddst, _mm512_shuffle_f32x4(w, w2, 0xDD));
    }
}
#endif

/* silu(g) * u with the vectorized exp: the one formula every swiglu form of the bf16 step uses
 * (fused_bf16.c) */
static inline float ft_swiglu1(float g, float u) {
    return g / (1.0f + ft_exp_simd(-g)) * u;
}

/* swiglu_backward_fast's terms (fused_bf16.c) on widened bf16 gate/up: with s = sigmoid(g),
 * *du = dy g s, *dg = dy up s (1 + g (1 - s)) */
static inline void ft_swiglu_grad1(float *dg, float *du, float dy, uint16_t gb, uint16_t ub) {
    float g = ft_bf16_widen(gb), u = ft_bf16_widen(ub);
    float s = 1.0f / (1.0f + ft_exp_simd(-g));
    *du = dy * (g * s);
    *dg = dy * u * (s * (1.0f + g * (1.0f - s)));
}

#if defined(__AVX512BF16__)
/* ft_bf16_round on 16 lanes, the same bits: VCVTNEPS2BF16 (nearest even, NaN made quiet as
 * ft_bf16_round does) for every lane but denormal ones, which the instruction flushes to zero and
 * ft_bf16_round rounds: those (rare: |x| < 2^-126) take the integer rounding */
static inline __m256i ft_bf16_round16(__m512 x) {
    __m256i r = (__m256i)_mm512_cvtneps_pbh(x);
    const __mmask16 den = _mm512_fpclass_ps_mask(x, 0x20); /* 0x20: denormal */
    if (__builtin_expect(den != 0, 0)) {
        const __m512i u = _mm512_castps_si512(x);
        const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
        const __m512i q = _mm512_srli_epi32(
            _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), odd), 16);
        r = _mm256_mask_mov_epi16(r, den, _mm512_cvtepi32_epi16(q));
    }
    return r;
}

/* 16 bf16 values at p widened (exact) */
static inline __m512 ft_widen16v(const uint16_t *p) {
    return _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}

/* -g on 16 lanes (the sign bit flipped, as the scalar negation) */
static inline __m512 ft_neg16(__m512 g) {
    return _mm512_castsi512_ps(
        _mm512_xor_si512(_mm512_castps_si512(g), _mm512_set1_epi32((int)0x80000000u)));
}

/* ft_swiglu1 on 16 lanes, the same operations (the same bits) */
static inline __m512 ft_swiglu16(__m512 g, __m512 u) {
    return _mm512_mul_ps(
        _mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), ft_exp16(ft_neg16(g)))), u);
}

/* s = sigmoid(g) = 1 / (1 + e^-g) on 16 lanes, as ft_swiglu_grad1 computes it */
static inline __m512 ft_sigmoid16(__m512 g) {
    return _mm512_div_ps(_mm512_set1_ps(1.0f),
                         _mm512_add_ps(_mm512_set1_ps(1.0f), ft_exp16(ft_neg16(g))));
}

/* ft_swiglu_grad1 on 16 lanes, operation by operation (the same bits): dy, g, up as f32 */
static inline void ft_swiglu_grad16(__m512 *dg, __m512 *du, __m512 dy, __m512 g, __m512 u) {
    const __m512 s = ft_sigmoid16(g), one = _mm512_set1_ps(1.0f);
    *du = _mm512_mul_ps(dy, _mm512_mul_ps(g, s));
    *dg = _mm512_mul_ps(
        _mm512_mul_ps(dy, u),
        _mm512_mul_ps(s, _mm512_add_ps(one, _mm512_mul_ps(g, _mm512_sub_ps(one, s)))));
}
#endif

/* swiglu_forward_bf16in's elementwise body over n elements: hb[i] = bf16 of y = swiglu of the
 * widened g[i], u[i] (and y[i] when y is non-NULL); by hand on 16 lanes where the CPU has
 * AVX512-BF16 (~1.4x the `omp simd` loop: the rounding is one instruction, not a dozen), the
 * same bits either way */
static inline void ft_swiglu_bf16_span(float *y, uint16_t *hb, const uint16_t *g, const uint16_t *u,
                                       size_t n) {
    size_t i = 0;
#if defined(__AVX512BF16__)
    for (; i + 16 <= n; i += 16) {
        const __m512 v = ft_swiglu16(ft_widen16v(g + i), ft_widen16v(u + i));
        if (y) _mm512_storeu_ps(y + i, v);
        _mm256_storeu_si256((__m256i *)(hb + i), ft_bf16_round16(v));
    }
#endif
#pragma omp simd
    for (size_t j = i; j < n; j++) {
        const float v = ft_swiglu1(ft_bf16_widen(g[j]), ft_bf16_widen(u[j]));
        if (y) y[j] = v;
        hb[j] = ft_bf16_round(v);
    }
}

/* swiglu_backward_bf16out's elementwise body over n elements, of dy = dout (+ t when t is
 * non-NULL: LoRA's folded term, lowrank.c): dgb, dub = bf16 of ft_swiglu_grad1's dgate, dup; by
 * hand on 16 lanes where the CPU has AVX512-BF16, the same bits either way */
static inline void ft_swiglu_grad_bf16_span(uint16_t *dgb, uint16_t *dub, const float *dout,
                                            const float *t, const uint16_t *g, const uint16_t *u,
                                            size_t n) {
    size_t i = 0;
#if defined(__AVX512BF16__)
    for (; i + 16 <= n; i += 16) {
        __m512 dy = _mm512_loadu_ps(dout + i), dg, du;
        if (t) dy = _mm512_add_ps(dy, _mm512_loadu_ps(t + i));
        ft_swiglu_grad16(&dg, &du, dy, ft_widen16v(g + i), ft_widen16v(u + i));
        _mm256_storeu_si256((__m256i *)(dgb + i), ft_bf16_round16(dg));
        _mm256_storeu_si256((__m256i *)(dub + i), ft_bf16_round16(du));
    }
#endif
#pragma omp simd
    for (size_t j = i; j < n; j++) {
        float dg = 0.0f, du = 0.0f; /* always written; GCC's simd pass cannot tell */
        ft_swiglu_grad1(&dg, &du, t ? dout[j] + t[j] : dout[j], g[j], u[j]);
        dgb[j] = ft_bf16_round(dg);
        dub[j] = ft_bf16_round(du);
    }
}

/* 4 bytes at p as one word (a bf16 pair, the lower-indexed element in the low half) */
static inline uint32_t ft_ld32(const void *p) {
    uint32_t u;
    memcpy(&u, p, 4);
    return u;
}

#if defined(__AVX512F__)
/* the mask of the first n of 16 lanes (n clamped to [0, 16]): a row tail */
static inline __mmask16 ft_lanes16(int64_t n) {
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
}
#endif

#if defined(__AVX512BF16__)
/* permutation indices: (a[i], b[i]) from two 16-element rows side by side (ILV_AB) or from one
 * VCVTNE2PS2BF16 result holding a's 16 bf16 then b's (ILV_LO_HI) */
static const uint16_t ft_ilv_ab[32] = {0,  32, 1,  33, 2,  34, 3,  35, 4,  36, 5,
                                       37, 6,  38, 7,  39, 8,  40, 9,  41, 10, 42,
                                       11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
static const uint16_t ft_ilv_lo_hi[32] = {0,  16, 1,  17, 2,  18, 3,  19, 4,  20, 5,
                                          21, 6,  22, 7,  23, 8,  24, 9,  25, 10, 26,
                                          11, 27, 12, 28, 13, 29, 14, 30, 15, 31};

/* The VDPBF16PS operand layout: 16 pair words (a[j + i], b[j + i]) (the lower-indexed row in the
 * low half) from two rows, lanes not in m zero, a NULL row read as zeros. f32 rows are rounded to
 * bf16 (VCVTNE2PS2BF16: nearest even, denormals flushed), bf16 rows taken as they are. Used by
 * the dp attention (tile layouts) and by matmul_bf16.c's packing into oneDNN's blocked layout. */
/* ft_pair16's f32 form on two registers; *ab (may be NULL) gets the VCVTNE2PS2BF16 result before
 * the interleave: a's 16 bf16 in its low half, b's in its high half */
static inline __m512i ft_pair16v(__m512 va, __m512 vb, __m512i *ab) {
    const __m512i r = (__m512i)_mm512_cvtne2ps_pbh(vb, va);
    if (ab) *ab = r;
    return _mm512_permutexvar_epi16(_mm512_loadu_si512(ft_ilv_lo_hi), r);
}

static inline __m512i ft_pair16(const void *ra, const void *rb, int64_t j, __mmask16 m, int f32) {
    if (f32) {
        const float *a = ra, *b = rb;
        __m512 va = a ? _mm512_maskz_loadu_ps(m, a + j) : _mm512_setzero_ps();
        __m512 vb = b ? _mm512_maskz_loadu_ps(m, b + j) : _mm512_setzero_ps();
        return ft_pair16v(va, vb, NULL);
    }
    const uint16_t *a = ra, *b = rb;
    __m256i va = a ? _mm256_maskz_loadu_epi16(m, a + j) : _mm256_setzero_si256();
    __m256i vb = b ? _mm256_maskz_loadu_epi16(m, b + j) : _mm256_setzero_si256();
    return _mm512_permutex2var_epi16(_mm512_castsi256_si512(va), _mm512_loadu_si512(ft_ilv_ab),
                                     _mm512_castsi256_si512(vb));
}
#endif

#endif
