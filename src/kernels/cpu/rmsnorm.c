/*
 * RMSNorm as HF's LlamaRMSNorm computes it in f32: y = (x * rsqrt(mean(x^2) + eps)) * w.
 * The mean of squares is accumulated in double (one rounding), so it matches torch's f32 reduction
 * to within an ulp or two. Rows are independent: OpenMP over groups of 4 rows, whose double sums
 * run as 4 independent chains (ft_sumsq_rows / ft_dotw_rows: the same bits as row by row); the
 * dweight sums over rows run 16 channels side by side (each channel's sum in row order).
 */
#include "ftune/kernels.h"

#include "grain.h"
#include "rmsnorm.h"
#include "vec.h"

#include <math.h>

void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int M, int C,
                     float eps) {
    const int64_t ng = ((int64_t)M + 3) / 4;
#pragma omp parallel for schedule(static) if ((int64_t)M * C >= FT_OMP_GRAIN)
    for (int64_t g = 0; g < ng; g++) {
        const int nr = M - 4 * g < 4 ? (int)(M - 4 * g) : 4;
        double ss[4];
        ft_sumsq_rows(ss, inp + 4 * g * C, C, C, nr);
        for (int j = 0; j < nr; j++) {
            const int64_t m = 4 * g + j;
            const float *x = inp + m * C; // (C)
            float *y = out + m * C;       // (C)
            float ms = (float)(ss[j] / C);
            float r = 1.0f / sqrtf(ms + eps);
#pragma omp simd
            for (int c = 0; c < C; c++) y[c] = (x[c] * r) * weight[c];
            if (rstd) rstd[m] = r;
        }
    }
}

/*
 * Backward. Per row, with r = (ms + eps)^(-1/2), ms = (1/C) sum_j x_j^2, y_i = w_i x_i r:
 *   dy_i/dw_i = x_i r                       -> dweight_i += sum_rows dout_i x_i r
 *   dr/dx_j   = -(1/2)(ms+eps)^(-3/2) * 2 x_j / C = -r^3 x_j / C
 *   dx_j = sum_i dout_i dy_i/dx_j
 *        = dout_j w_j r            (direct term, i == j through x_i)
 *        + sum_i dout_i w_i x_i * (-r^3 x_j / C)   (through r)
 *        = r * (dout_j w_j - x_j * r^2 * (1/C) sum_i dout_i w_i x_i)
 * dinp is ADDED to (residual streams share a buffer). rstd is the forward's saved r.
 * dweight accumulates across rows, so it runs as a separate loop parallel over channels (in the
 * same region: neither reads what the other writes, no barrier between them).
 */
void rmsnorm_dweight_part(float *dweight, const float *dout, const float *inp, const float *rstd,
                          int M, int C) {
#pragma omp for schedule(static) nowait
    for (int c0 = 0; c0 < C; c0 += 16) { /* 16 channels' sums side by side, each over m */
        const int nc = C - c0 < 16 ? C - c0 : 16;
        double s[16] = {0};
        for (int64_t m = 0; m < M; m++) {
            const float *dy = dout + m * C + c0, *x = inp + m * C + c0;
#pragma omp simd
            for (int c = 0; c < nc; c++)
                s[c] += (double)dy[c] * x[c] * rstd[m];
        }
        for (int c = 0; c < nc; c++)
            dweight[c0 + c] += (float)s[c];
    }
}

void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                      const float *weight, const float *rstd, int M, int C) {
    const int64_t ng = ((int64_t)M + 3) / 4;
    /* one parallel region for both loops, no barrier between them (a region costs ~40 us with
     * passive waiting: bench_regions) */
#pragma omp parallel if ((int64_t)M * C >= FT_OMP_GRAIN)
    {
        if (dinp) {
#pragma omp for schedule(static) nowait
            for (int64_t g = 0; g < ng; g++) {
                const int nr = M - 4 * g < 4 ? (int)(M - 4 * g) : 4;
                double dots[4];
                ft_dotw_rows(dots, dout + 4 * g * C, weight, inp + 4 * g * C, C, C, nr);
                for (int j = 0; j < nr; j++) {
                    const int64_t m = 4 * g + j;
                    const float *x = inp + m * C, *dy = dout + m * C;
                    float *dx = dinp + m * C;
                    float r = rstd[m];
                    float k = (float)(dots[j] / C) * r * r;
#pragma omp simd
                    for (int c = 0; c < C; c++)
                        dx[c] += r * (dy[c] * weight[c] - x[c] * k);
                }
            }
        }
        if (dweight) rmsnorm_dweight_part(dweight, dout, inp, rstd, M, C);
    }
}
