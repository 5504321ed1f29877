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
 * rounded into y */
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
        const float *vr = v + m * ikv;
        uint16_t *vo = vb + m * okv;
#pragma omp simd
        for (int64_t i = 0; i < KVD; i++)
            vo[i] = ft_bf16_round(vr[i]);
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
