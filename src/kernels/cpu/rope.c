/*
 * Rotary position embedding in HF's rotate-half layout (apply_rotary_pos_emb with rotate_half):
 * for head vector x (D) at position p and i < D/2, with a = (float)p * inv_freq[i] computed in f32
 * as HF does (its freqs are an f32 product), c = cos(a), s = sin(a):
 *   y_i       = x_i c - x_{i+D/2} s
 *   y_{i+D/2} = x_{i+D/2} c + x_i s
 * cos/sin are evaluated in double and rounded once, so they are the correctly rounded f32 values.
 * Rows are independent: OpenMP over rows. When positions x D/2 fit ROPE_TABLE, each distinct
 * position's angles are computed once into a stack table (the B rows of a batch share them) and
 * the rotation is a vector loop per head; otherwise each row's angles are computed once for all
 * heads. The two forms give the same bits (same cos/sin values, same products, no contraction).
 */
#include "ftune/kernels.h"

#include "grain.h"

#include <math.h>

#define ROPE_TABLE 8192 /* cos/sin pairs tabled on the stack (positions x D/2): T 256 at D 64 */

/* cos/sin of position p, frequency i: the same f32 values whether tabled or not */
static inline void rope_angle(float *c, float *s, int p, const float *inv_freq, int i, float sign) {
    float a = (float)p * inv_freq[i];
    *c = (float)cos((double)a);
    *s = sign * (float)sin((double)a);
}

static void rope_rotate(float *x, const int *pos, const float *inv_freq, int M, int nh, int D,
                        float sign) {
    int half = D / 2, P = 0;
    for (int64_t m = 0; m < M && P >= 0; m++) P = pos[m] < 0 ? -1 : (pos[m] >= P ? pos[m] + 1 : P);
    if (P > 0 && (int64_t)P * half <= ROPE_TABLE) {
        /* each distinct position's angles once (B rows share them), then a vector loop per head */
        float ct[ROPE_TABLE], st[ROPE_TABLE];
#pragma omp parallel if ((int64_t)M * nh * D >= FT_OMP_GRAIN)
        {
#pragma omp for schedule(static)
            for (int64_t j = 0; j < (int64_t)P * half; j++)
                rope_angle(&ct[j], &st[j], (int)(j / half), inv_freq, (int)(j % half), sign);
#pragma omp for schedule(static)
            for (int64_t m = 0; m < M; m++) {
                const float *c = ct + (int64_t)pos[m] * half, *sn = st + (int64_t)pos[m] * half;
                for (int h = 0; h < nh; h++) {
                    float *v = x + (m * nh + h) * (int64_t)D; // (D)
#pragma omp simd
                    for (int i = 0; i < half; i++) {
                        float x0 = v[i], x1 = v[i + half];
                        v[i] = x0 * c[i] - x1 * sn[i];
                        v[i + half] = x1 * c[i] + x0 * sn[i];
                    }
                }
            }
        }
        return;
    }
#pragma omp parallel for schedule(static) if ((int64_t)M * nh * D >= FT_OMP_GRAIN)
    for (int64_t m = 0; m < M; m++) {
        for (int i = 0; i < half; i++) {
            float c, s;
            rope_angle(&c, &s, pos[m], inv_freq, i, sign);
            for (int h = 0; h < nh; h++) {
                float *v = x + (m * nh + h) * (int64_t)D; // (D)
                float x0 = v[i], x1 = v[i + half];
                v[i] = x0 * c - x1 * s;
                v[i + half] = x1 * c + x0 * s;
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
