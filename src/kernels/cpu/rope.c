/*
 * Rotary position embedding in HF's rotate-half layout (apply_rotary_pos_emb with rotate_half):
 * for head vector x (D) at position p and i < D/2, with a = (float)p * inv_freq[i] computed in f32
 * as HF does (its freqs are an f32 product), c = cos(a), s = sin(a):
 *   y_i       = x_i c - x_{i+D/2} s
 *   y_{i+D/2} = x_{i+D/2} c + x_i s
 * cos/sin are evaluated in double and rounded once, so they are the correctly rounded f32 values.
 * Rows are independent: OpenMP over rows; each row's angles are computed once for all heads.
 *
 * Table forms (the training step, whose every layer rotates by the same positions): rope_cos_sin
 * evaluates c and s once per row and frequency; rope_forward_cs / rope_backward_cs then only
 * multiply (a contiguous, vectorized loop per head) and give the same bits as rope_forward /
 * rope_backward, since the table holds the same rounded values. The double-precision cos/sin
 * were most of RoPE's time (2.5 ms per layer for q and k at 1024 rows, 9+3 heads of 64).
 */
#include "ftune/kernels.h"

#include "grain.h"
#include "vec.h"

#include <math.h>

/* one pair's rotation, (x0, x1) -> (y0, y1): the arithmetic every form below shares, so they
 * give the same bits */
static inline void rope_pair(float x0, float x1, float c, float s, float *y0, float *y1) {
    *y0 = x0 * c - x1 * s;
    *y1 = x1 * c + x0 * s;
}

static void rope_rotate(float *x, const int *pos, const float *inv_freq, int M, int nh, int D,
                        float sign) {
    int half = D / 2;
#pragma omp parallel for schedule(static) if ((int64_t)M * nh * D >= FT_OMP_GRAIN)
    for (int64_t m = 0; m < M; m++) {
        for (int i = 0; i < half; i++) {
            float a = (float)pos[m] * inv_freq[i];
            float c = (float)cos((double)a), s = sign * (float)sin((double)a);
            for (int h = 0; h < nh; h++) {
                float *v = x + (m * nh + h) * (int64_t)D; // (D)
                rope_pair(v[i], v[i + half], c, s, &v[i], &v[i + half]);
            }
        }
    }
}

void rope_forward(float *x, const int *pos, const float *inv_freq, int M, int nh, int D) {
    rope_rotate(x, pos, inv_freq, M, nh, D, 1.0f);
}

/*
 * Backward. The forward is y = R(a) x with R = [[c, -s], [s, c]] on each pair (x_i, x_{i+D/2}), a
 * linear map, so dx = R(a)^T dy = R(-a) dy:
 *   dx_i       =  dy_i c + dy_{i+D/2} s
 *   dx_{i+D/2} = -dy_i s + dy_{i+D/2} c
 * i.e. the forward rotation with s negated, applied in place.
 */
void rope_backward(float *dx, const int *pos, const float *inv_freq, int M, int nh, int D) {
    rope_rotate(dx, pos, inv_freq, M, nh, D, -1.0f);
}

void rope_cos_sin(float *cs, const int *pos, const float *inv_freq, int M, int D) {
    int half = D / 2;
#pragma omp parallel for schedule(static) if ((int64_t)M * D >= FT_OMP_GRAIN / 8)
    for (int64_t m = 0; m < M; m++)
        for (int i = 0; i < half; i++) {
            float a = (float)pos[m] * inv_freq[i];
            cs[m * D + i] = (float)cos((double)a);
            cs[m * D + half + i] = (float)sin((double)a);
        }
}

/* rope_rotate with the angles from the table; sign -1 rotates back (s negated exactly) */
static void rope_rotate_cs(float *x, const float *cs, int M, int nh, int D, float sign) {
    int half = D / 2;
#pragma omp parallel for schedule(static) if ((int64_t)M * nh * D >= FT_OMP_GRAIN)
    for (int64_t m = 0; m < M; m++) {
        const float *c = cs + m * D, *sn = cs + m * D + half; // (D/2) each
        for (int h = 0; h < nh; h++) {
            float *v = x + (m * nh + h) * (int64_t)D; // (D)
#pragma omp simd
            for (int i = 0; i < half; i++) {
                rope_pair(v[i], v[i + half], c[i], sign * sn[i], &v[i], &v[i + half]);
            }
        }
    }
}

void rope_forward_cs(float *x, const float *cs, int M, int nh, int D) {
    rope_rotate_cs(x, cs, M, nh, D, 1.0f);
}

void rope_backward_cs(float *dx, const float *cs, int M, int nh, int D) {
    rope_rotate_cs(dx, cs, M, nh, D, -1.0f);
}

/* nh heads of row x (D each) rotated as rope_rotate_cs (sign 1, or -1 to rotate back) and
 * rounded into y; with AVX512-BF16 by hand, 16 pairs at a time for every head (the last 16 of
 * a half masked), rounded by VCVTNEPS2BF16 (ft_bf16_round16): the same products, differences and
 * roundings as rope_pair and ft_bf16_round, so the same bits. GCC's `omp simd` form of the loop
 * below took 0.29 ns an element on stories15M's heads (D 48: halves of 24, a vector and a
 * scalar tail each) against 0.11-0.16 for SmolLM's (D 64). */
#if defined(__AVX512BF16__)
static inline void rotate_round_row(uint16_t *y, const float *x, const float *c, const float *sn,
                                    int nh, int D, float sign) {
    const int half = D / 2;
    for (int i = 0; i < half; i += 16) {
        const __mmask16 k = ft_lanes16(half - i);
        const __m512 cv = _mm512_maskz_loadu_ps(k, c + i);
        const __m512 sv = _mm512_mul_ps(_mm512_set1_ps(sign), _mm512_maskz_loadu_ps(k, sn + i));
        for (int h = 0; h < nh; h++) {
            const float *v = x + (int64_t)h * D;
            uint16_t *o = y + (int64_t)h * D;
            const __m512 x0 = _mm512_maskz_loadu_ps(k, v + i);
            const __m512 x1 = _mm512_maskz_loadu_ps(k, v + i + half);
            const __m512 y0 = _mm512_sub_ps(_mm512_mul_ps(x0, cv), _mm512_mul_ps(x1, sv));
            const __m512 y1 = _mm512_add_ps(_mm512_mul_ps(x1, cv), _mm512_mul_ps(x0, sv));
            _mm256_mask_storeu_epi16(o + i, k, ft_bf16_round16(y0));
            _mm256_mask_storeu_epi16(o + i + half, k, ft_bf16_round16(y1));
        }
    }
}

/* y (n) = ft_bf16_round of x (n), 16 at a time */
static inline void round_row(uint16_t *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = ft_lanes16(n - i);
        _mm256_mask_storeu_epi16(y + i, k, ft_bf16_round16(_mm512_maskz_loadu_ps(k, x + i)));
    }
}
#else
static inline void rotate_round_row(uint16_t *y, const float *x, const float *c, const float *sn,
                                    int nh, int D, float sign) {
    int half = D / 2;
    for (int h = 0; h < nh; h++) {
        const float *v = x + (int64_t)h * D;
        uint16_t *o = y + (int64_t)h * D;
#pragma omp simd
        for (int i = 0; i < half; i++) {
            float y0, y1;
            rope_pair(v[i], v[i + half], c[i], sign * sn[i], &y0, &y1);
            o[i] = ft_bf16_round(y0);
            o[i + half] = ft_bf16_round(y1);
        }
    }
}

static inline void round_row(uint16_t *y, const float *x, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        y[i] = ft_bf16_round(x[i]);
}
#endif

void rope_round_qkv_bf16_rows(uint16_t *qb, uint16_t *kb, uint16_t *vb, int64_t ldo, const float *q,
                              const float *k, const float *v, int64_t ldi, const float *cs, int H,
                              int KV, int D, int back, int64_t m0, int64_t m1) {
    const int64_t HD = (int64_t)H * D, KVD = (int64_t)KV * D;
    const int64_t iq = ldi ? ldi : HD, ikv = ldi ? ldi : KVD; /* row strides: inputs */
    const int64_t oq = ldo ? ldo : HD, okv = ldo ? ldo : KVD; /* outputs */
    const float sign = back ? -1.0f : 1.0f;
    for (int64_t m = m0; m < m1; m++) {
        const float *c = cs + m * D, *sn = cs + m * D + D / 2; // (D/2) each
        rotate_round_row(qb + m * oq, q + m * iq, c, sn, H, D, sign);
        rotate_round_row(kb + m * okv, k + m * ikv, c, sn, KV, D, sign);
        round_row(vb + m * okv, v + m * ikv, KVD);
    }
}

void rope_round_qkv_bf16(uint16_t *qb, uint16_t *kb, uint16_t *vb, int64_t ldo, const float *q,
                         const float *k, const float *v, int64_t ldi, const float *cs, int M, int H,
                         int KV, int D, int back) {
    const int64_t HD = (int64_t)H * D, KVD = (int64_t)KV * D;
#pragma omp parallel for schedule(static) if ((int64_t)M * (HD + KVD) >= FT_OMP_GRAIN)
    for (int64_t m = 0; m < M; m++)
        rope_round_qkv_bf16_rows(qb, kb, vb, ldo, q, k, v, ldi, cs, H, KV, D, back, m, m + 1);
}
