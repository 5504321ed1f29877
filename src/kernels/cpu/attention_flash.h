/* Pieces shared by the two flash-attention files (internal): attention_flash.c (f32 arithmetic,
 * f32 or widened bf16 inputs) and attention_flash_dp.c (AVX512-BF16 dot products). Same algorithm,
 * so the same per-row online-softmax update and the same backward prologue. */
#ifndef FTUNE_KERNELS_CPU_ATTENTION_FLASH_H
#define FTUNE_KERNELS_CPU_ATTENTION_FLASH_H

#include "vec.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* may query t see key s of batch row b? (seg NULL: one sample per row) */
static inline int fa_seen(const int *seg, int64_t b, int64_t T, int64_t s, int64_t t) {
    return !seg || seg[b * T + s] == seg[b * T + t];
}

/* a + b (mx 0) or max(a, b) (mx 1) */
static inline float fa_op1(float a, float b, const int mx) {
    return mx ? (b > a ? b : a) : a + b;
}

/* The 16 lanes of *pa folded pairwise into their sum (mx 0) or max (mx 1): lane j with j + w for
 * w = 8, 4, 2, 1 (AVX-512 shuffles where available, else the same fold lane by lane). By pointer:
 * a 64-byte vector argument changes the ABI on targets without AVX-512 (see vec.h). */
static inline __attribute__((always_inline)) float fa_fold16(const ft_v16f *pa, const int mx) {
    ft_v16f a = *pa;
#if defined(__AVX512F__)
    const __m512 v = (__m512)a;
    const __m256 lo = _mm512_castps512_ps256(v),
                 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    const __m256 h = mx ? _mm256_max_ps(lo, hi) : _mm256_add_ps(lo, hi);
    const __m128 l4 = _mm256_castps256_ps128(h), h4 = _mm256_extractf128_ps(h, 1);
    __m128 q = mx ? _mm_max_ps(l4, h4) : _mm_add_ps(l4, h4);
    q = mx ? _mm_max_ps(q, _mm_movehl_ps(q, q)) : _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = mx ? _mm_max_ss(q, _mm_movehdup_ps(q)) : _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
#else
    for (int w = 8; w; w /= 2)
        for (int j = 0; j < w; j++)
            a[j] = fa_op1(a[j], a[j + w], mx);
    return a[0];
#endif
}

/* The sum (mx 0) or max (mx 1) of x[0, n) in a fixed order: element i goes to lane i % 16, then
 * the lanes fold (fa_fold16). `omp simd reduction` loops were compiled (GCC, -O2) into a scalar
 * chain over the stored row, one add or max per element at its full latency: a fifth of the dp
 * forward's time at SmolLM's shape. */
static inline __attribute__((always_inline)) float fa_row_reduce(const float *x, int n,
                                                                 const int mx) {
    ft_v16f a = ft_splat16(mx ? -INFINITY : 0.0f), t;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        memcpy(&t, x + i, sizeof t);
#if defined(__AVX512F__)
        a = mx ? (ft_v16f)_mm512_max_ps((__m512)t, (__m512)a) : a + t;
#else
        for (int j = 0; j < 16; j++)
            a[j] = fa_op1(a[j], t[j], mx);
#endif
    }
    for (int j = 0; i + j < n; j++)
        a[j] = fa_op1(a[j], x[i + j], mx);
    return fa_fold16(&a, mx);
}

/* The forward's online-softmax step for query rows t0 + r, r < nr (nr <= FA_MAX_ROWS), over keys
 * [s0, s0 + ns): row r of S (stride ld) holds the raw scores q_t·k_s on entry and e^(c x_s - m')
 * on return (0 for keys t may not see: later ones, or another sample's under seg); the row's
 * running max m[r] and sum l[r] are updated, and corr[r] is the factor e^(m - m') by which the
 * row's output accumulated so far must be rescaled (0 on the row's first block, 1 when the row
 * sees no key of this block; its S row is then all 0 and m, l unchanged). Each row's arithmetic
 * is its own, so the result does not depend on nr; the rows go through each phase (mask and max,
 * exponentials, sums) together, so their dependency chains (a 16-lane fold, then a dozen
 * dependent operations per exponential) overlap: one row at a time, the dp forward spent ~40% of
 * its time waiting on them. */
#define FA_MAX_ROWS 64
static inline void fa_softmax_rows(float *S, int64_t ld, int nr, int ns, int64_t t0, int64_t s0,
                                   const int *seg, int64_t b, int64_t T, float scale, float *m,
                                   float *l, float *corr) {
    float mn[FA_MAX_ROWS];
    unsigned char sees[FA_MAX_ROWS];
    for (int r = 0; r < nr; r++) {
        float *x = S + r * ld;
        const int64_t t = t0 + r;
        if (!seg) { /* keys i < lim visible */
            const int lim = (int)(t - s0 + 1 < ns ? t - s0 + 1 : ns);
#pragma omp simd
            for (int i = 0; i < ns; i++)
                x[i] = i < lim ? x[i] * scale : -INFINITY;
        } else {
            for (int i = 0; i < ns; i++) {
                int64_t s = s0 + i;
                x[i] = (s <= t && fa_seen(seg, b, T, s, t)) ? x[i] * scale : -INFINITY;
            }
        }
        const float bm = fa_row_reduce(x, ns, 1);
        sees[r] = bm != -INFINITY;
        if (!sees[r]) { /* the row sees nothing in this block */
            memset(x, 0, sizeof(float) * (size_t)ns);
            corr[r] = 1.0f;
            mn[r] = m[r]; /* not read (the row is skipped below); defined all the same */
            continue;
        }
        mn[r] = bm > m[r] ? bm : m[r];
        corr[r] = expf(m[r] - mn[r]);
    }
    for (int r = 0; r < nr; r++) {
        if (!sees[r]) continue;
        float *x = S + r * ld;
        const float mr = mn[r];
#pragma omp simd
        for (int i = 0; i < ns; i++)
            x[i] = x[i] == -INFINITY ? 0.0f : ft_exp_simd(x[i] - mr);
    }
    for (int r = 0; r < nr; r++) {
        if (!sees[r]) continue;
        l[r] = l[r] * corr[r] + fa_row_reduce(S + r * ld, ns, 0);
        m[r] = mn[r];
    }
}

/* delta_t = dout_t · out_t for the row at element offset o (D values): out f32, or with out NULL
 * the bf16 outb widened as read (the same bits) */
static inline float fa_delta(const float *dout, const float *out, const uint16_t *outb, int64_t o,
                             int D) {
    return ft_dot_f32_fb(dout + o, out ? out + o : NULL, out ? NULL : outb + o, D);
}

/* The backward task (b, kv-head kh)'s prologue: dq rows of its G query heads zeroed (dq non-NULL),
 * and when G T <= cap, dl[(h - kh G) T + t] = delta_t = dout_t · out_t for those heads, once per
 * row instead of once per key block. Returns whether dl was filled. */
static inline int fa_backward_prologue(float *dl, int cap, float *dq, const float *dout,
                                       const float *out, const uint16_t *outb, int64_t b,
                                       int64_t kh, int G, int64_t T, int64_t H, int D) {
    const int pre = (int64_t)G * T <= cap;
    for (int64_t h = kh * G; h < (kh + 1) * G; h++)
        for (int64_t t = 0; t < T; t++) {
            const int64_t o = ((b * T + t) * H + h) * D;
            if (pre) dl[(h - kh * G) * T + t] = fa_delta(dout, out, outb, o, D);
            if (dq) memset(dq + o, 0, (size_t)D * sizeof(float));
        }
    return pre;
}

/* The backward's row t over keys [s0, s0 + n) (n >= the keys in the block, ns): pr holds the raw
 * scores q_t·k_s and dr the raw dP_ts = dout_t·v_s on entry; on return pr = P_ts =
 * e^(c q_t·k_s - lse_t) and dr = dS_ts = c P_ts (dP_ts - delta_t), both exactly 0 for keys t may
 * not see (later ones, another sample's under seg, or past ns). */
static inline void fa_grad_row(float *pr, float *dr, int n, int ns, int64_t t, int64_t s0,
                               const int *seg, int64_t b, int64_t T, float L, float delta,
                               float scale) {
    const int lim = (int)(t - s0 + 1 < ns ? t - s0 + 1 : ns); /* causal */
#pragma omp simd
    for (int i = 0; i < n; i++) {
        float p = i < lim ? ft_exp_simd(pr[i] * scale - L) : 0.0f;
        pr[i] = p;
        dr[i] = i < lim ? p * (dr[i] - delta) * scale : 0.0f;
    }
    if (seg)
        for (int i = 0; i < lim; i++)
            if (!fa_seen(seg, b, T, s0 + i, t)) pr[i] = dr[i] = 0.0f;
}

#endif
