/*
 * Masked cross-entropy fused with the LM head, in chunks of tokens (contract in
 * include/ftune/crossentropy.h). The head matmuls go through matmul_forward/matmul_backward
 * (oneDNN); the softmax is plain C (expf once per logit, the sum in double).
 * crossentropy_bf16_forward_backward is the same loop with bf16 operands for the head products
 * (matmul_bf16.c) and a vectorized softmax (ft_exp_simd, within 1 ulp of expf; f32 lane sums
 * per block of 512 logits, added in double) that, without replaced rows, writes the bf16 dlogits
 * directly in the pass that would otherwise store the f32 ones — the f32 path keeps libm's expf
 * and the sequential sum as its exact reference. The _rows forms replace a few head rows by
 * trained values (PEFT trainable tokens) without touching w or its bf16 pack. Not implemented here:
 * label smoothing, z-loss, logit soft-capping (no supported family uses them).
 *
 * Derivation (per target row m with label y, logits z = w · x_m, p = softmax(z)):
 *   nll_m = logsumexp(z) - z_y = max(z) + log(sum_j exp(z_j - max(z))) - z_y
 *   d(scale * nll_m)/dz_j = scale * (p_j - [j == y])             (dlogits, written over the logits)
 *   z_j = sum_c w[j,c] x_m[c]  =>  dx_m[c] += sum_j dz_j w[j,c]   (dlogits · w)
 *                                  dw[j,c] += dz_j x_m[c]         (dlogits^T · x)
 * Ignored rows (label -100) get dz = 0, so they add nothing to dx or dw.
 */
#include "ftune/crossentropy.h"

#include "ftune/core.h"
#include "ftune/kernels.h"

#include "vec.h"

#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

int crossentropy_chunk_rows(int M, int V) {
    int64_t rows = ((int64_t)4 << 20) / (V > 0 ? V : 1); /* 4 Mi floats = 16 MiB */
    if (rows < 1) rows = 1;
    if (rows > M) rows = M;
    return (int)(rows > 0 ? rows : 1);
}

/* NLL of one row of logits z (V) with target y; with `grad`, overwrite z with
 * scale * (softmax(z) - onehot(y)). exp is evaluated once per logit (expf, kept in z), the sum
 * in double. */
static double xent_row(float *z, int y, int V, float scale, int grad) {
    float mx = z[0];
    for (int j = 1; j < V; j++)
        mx = z[j] > mx ? z[j] : mx;
    double zy = (double)z[y] - mx, sum = 0;
    for (int j = 0; j < V; j++) {
        float e = expf(z[j] - mx);
        z[j] = e;
        sum += e;
    }
    if (grad) {
        float inv = (float)(1.0 / sum) * scale;
        for (int j = 0; j < V; j++)
            z[j] *= inv;
        z[y] -= scale;
    }
    return log(sum) - zy; /* logsumexp(z) - z_y, both relative to max(z) */
}

/* bf16 mode's row: NLL of logits z (V) with target y, as xent_row but vectorized (ft_exp_simd;
 * the sum in f32 SIMD lanes over blocks of 512 logits, ~32 terms per lane, then in double); with
 * `grad`, dlogits scale * (softmax(z) - onehot(y)): rounded to bf16 into db (V) when db is given
 * (z then holds exp(z - max)), else written over z as f32. */
static double xent_row_fast(float *z, uint16_t *db, int y, int V, float scale, int grad) {
    float mx = z[0];
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < V; j++)
        mx = z[j] > mx ? z[j] : mx;
    double zy = (double)z[y] - mx, sum = 0;
#if !defined(__AVX512F__)
#pragma omp simd
    for (int j = 0; j < V; j++)
        z[j] = ft_exp_simd(z[j] - mx);
#endif
    for (int j0 = 0; j0 < V; j0 += 512) { /* 16 f32 lane sums per 512 logits, then double */
        int j1 = V - j0 < 512 ? V : j0 + 512, j = j0;
        ft_v16f acc = {0}, v;
#if defined(__AVX512F__) /* exp and sum in one pass (ft_exp16 = ft_exp_simd): the same bits */
        const __m512 vmx = _mm512_set1_ps(mx);
        for (; j + 16 <= j1; j += 16) {
            v = (ft_v16f)ft_exp16(_mm512_sub_ps(_mm512_loadu_ps(z + j), vmx));
            memcpy(z + j, &v, sizeof v);
            acc += v;
        }
        for (int t = j; t < j1; t++)
            z[t] = ft_exp_simd(z[t] - mx);
#else
        for (; j + 16 <= j1; j += 16) {
            memcpy(&v, z + j, sizeof v);
            acc += v;
        }
#endif
        float part = 0.0f;
        for (int i = 0; i < 16; i++)
            part += acc[i];
        for (; j < j1; j++)
            part += z[j];
        sum += part;
    }
    if (grad && db) {
        float inv = (float)(1.0 / sum) * scale;
#pragma omp simd
        for (int j = 0; j < V; j++)
            db[j] = ft_bf16_round(z[j] * inv);
        db[y] = ft_bf16_round(z[y] * inv - scale);
    } else if (grad) {
        float inv = (float)(1.0 / sum) * scale;
#pragma omp simd
        for (int j = 0; j < V; j++)
            z[j] *= inv;
        z[y] -= scale;
    }
    return log(sum) - zy;
}

/* Over n rows of logits z (n,V): return the NLL sum of target rows and add their count to
 * *n_targets; with `grad`, turn z into dlogits (0 for ignored rows) — or, with db (n,V) given,
 * write them as bf16 there (z is then scratch). `fast` (the bf16 mode) picks xent_row_fast,
 * also without db, so every bf16 call computes the same NLL. Rows are split into one contiguous block per thread and the per-thread sums
 * are added in thread order, so the result is deterministic for a given thread count (no OpenMP
 * reduction, whose order is not). */
static double softmax_xent_rows(float *z, uint16_t *db, const int *labels, int n, int V,
                                float scale, int grad, int fast, int64_t *n_targets) {
    enum { MAX_THREADS = 256 };
    double part[MAX_THREADS] = {0};
    int64_t cnt[MAX_THREADS] = {0};
    int nth = 1;
#pragma omp parallel if ((size_t)n * (size_t)V >= 65536)
    {
        int tid = 0, nt = 1;
#ifdef _OPENMP
        tid = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        if (nt > MAX_THREADS) nt = MAX_THREADS;
        if (tid == 0) nth = nt;
        if (tid < nt) {
            int lo = (int)((int64_t)n * tid / nt), hi = (int)((int64_t)n * (tid + 1) / nt);
            for (int i = lo; i < hi; i++) {
                float *zi = z + (size_t)i * V;
                uint16_t *dbi = db ? db + (size_t)i * V : NULL;
                int y = labels[i];
                if (y == FT_IGNORE_INDEX) {
                    if (grad && dbi) memset(dbi, 0, (size_t)V * sizeof(uint16_t));
                    else if (grad) memset(zi, 0, (size_t)V * sizeof(float));
                    continue;
                }
                FT_ASSERT(y >= 0 && y < V);
                part[tid] += fast ? xent_row_fast(zi, dbi, y, V, scale, grad)
                                  : xent_row(zi, y, V, scale, grad);
                cnt[tid]++;
            }
        }
    }
    double nll = 0;
    for (int t = 0; t < nth; t++)
        nll += part[t], *n_targets += cnt[t];
    return nll;
}

/* Rows [r0, r0+n) of a chunk all ignored? Then the chunk's matmuls can be skipped. */
static int all_ignored(const int *labels, int n) {
    for (int i = 0; i < n; i++)
        if (labels[i] != FT_IGNORE_INDEX) return 0;
    return 1;
}

/* Replaced head rows, forward: z (n,V) column ids[k] = x_i · rows[k] for the n rows x (n,C). */
static void rows_logits(float *z, const float *x, const ft_head_rows *hr, int n, int C, int V) {
#pragma omp parallel for schedule(static) if ((size_t)n * (size_t)hr->n * (size_t)C >= 65536)
    for (int i = 0; i < n; i++)
        for (int k = 0; k < hr->n; k++) {
            const float *xi = x + (size_t)i * C, *r = hr->rows + (size_t)k * C;
            float s = 0;
            for (int c = 0; c < C; c++)
                s += xi[c] * r[c];
            z[(size_t)i * V + hr->ids[k]] = s;
        }
}

/* Replaced head rows, backward, with z holding dlogits: z_i,id = x_i · rows[k] gives
 *   drows[k] += sum_i dz_i,id x_i      dx_i += dz_i,id rows[k]
 * then the columns are zeroed so the head products that follow skip them (the base rows ids[k]
 * take no part in the output, so they get no gradient either). Serial over k, i: a fixed order. */
static void rows_backward(float *dx, float *z, const float *x, const ft_head_rows *hr, int n,
                          int C, int V) {
    for (int k = 0; k < hr->n; k++) {
        const float *r = hr->rows + (size_t)k * C;
        float *dr = hr->drows ? hr->drows + (size_t)k * C : NULL;
        for (int i = 0; i < n; i++) {
            float *zi = z + (size_t)i * V + hr->ids[k];
            float d = *zi;
            *zi = 0;
            if (d == 0) continue;
            const float *xi = x + (size_t)i * C;
            if (dr)
                for (int c = 0; c < C; c++)
                    dr[c] += d * xi[c];
            if (dx)
                for (int c = 0; c < C; c++)
                    dx[(size_t)i * C + c] += d * r[c];
        }
    }
}

double crossentropy_forward(int64_t *n_targets, float *logits, const float *x, const float *w,
                            const int *labels, int M, int C, int V, int chunk) {
    return crossentropy_rows_forward_backward(NULL, NULL, n_targets, logits, x, w, NULL, labels,
                                              0.f, M, C, V, chunk);
}

double crossentropy_forward_backward(float *dx, float *dw, int64_t *n_targets, float *logits,
                                     const float *x, const float *w, const int *labels, float scale,
                                     int M, int C, int V, int chunk) {
    return crossentropy_rows_forward_backward(dx, dw, n_targets, logits, x, w, NULL, labels, scale,
                                              M, C, V, chunk);
}

double crossentropy_rows_forward_backward(float *dx, float *dw, int64_t *n_targets, float *logits,
                                          const float *x, const float *w, const ft_head_rows *hr,
                                          const int *labels, float scale, int M, int C, int V,
                                          int chunk) {
    FT_ASSERT(chunk >= 1);
    int grad = dx || dw || (hr && hr->drows);
    if (hr && hr->n == 0) hr = NULL;
    double nll = 0;
    *n_targets = 0;
    for (int r0 = 0; r0 < M; r0 += chunk) {
        int n = M - r0 < chunk ? M - r0 : chunk;
        if (all_ignored(labels + r0, n)) continue;
        const float *xc = x + (size_t)r0 * C;         /* (n,C) */
        float *dxc = dx ? dx + (size_t)r0 * C : NULL; /* (n,C) */
        matmul_forward(logits, xc, w, NULL, n, C, V); /* (n,V) */
        if (hr) rows_logits(logits, xc, hr, n, C, V);
        nll += softmax_xent_rows(logits, NULL, labels + r0, n, V, scale, grad, 0, n_targets);
        if (!grad) continue;
        if (hr) rows_backward(dxc, logits, xc, hr, n, C, V);
        if (dx || dw) matmul_backward(dxc, dw, NULL, logits, xc, w, n, C, V);
    }
    return nll;
}

/* dw (V,C) += dlogb (n,V)^T · xb (n,C): with a pack, xb goes into oneDNN's blocked layout by
 * matmul_bf16.c's pass first (one (n,C) bf16 pass; the SmolLM head's product over 512 rows
 * 57 -> 48 ms, since oneDNN otherwise reorders xb inside the product) */
static void head_weight_grad(float *dw, const uint16_t *dlogb, const uint16_t *xb,
                             ft_bf16_pack *xpk, int n, int C, int V) {
    if (xpk)
        matmul_bf16_backward_weight(dw, dlogb, xb, xpk, 1, n, C, V, 1);
    else
        matmul_bf16_backward(NULL, dw, dlogb, xb, NULL, n, C, V);
}

double crossentropy_bf16_forward_backward(float *dx, float *dw, int64_t *n_targets, float *logits,
                                          uint16_t *dlogb, const uint16_t *xb, ft_bf16_weight *w,
                                          ft_bf16_pack *xpk, const int *labels, float scale, int M,
                                          int C, int V, int chunk, int dlog_rows) {
    return crossentropy_bf16_rows_forward_backward(dx, dw, n_targets, logits, dlogb, xb, NULL, w,
                                                   xpk, NULL, labels, scale, M, C, V, chunk,
                                                   dlog_rows);
}

double crossentropy_bf16_rows_forward_backward(float *dx, float *dw, int64_t *n_targets,
                                               float *logits, uint16_t *dlogb, const uint16_t *xb,
                                               const float *x32, ft_bf16_weight *w,
                                               ft_bf16_pack *xpk, const ft_head_rows *hr,
                                               const int *labels, float scale, int M, int C, int V,
                                               int chunk, int dlog_rows) {
    FT_ASSERT(chunk >= 1);
    int grad = dx || dw || (hr && hr->drows);
    if (hr && hr->n == 0) hr = NULL;
    FT_ASSERT(!hr || x32);
    if (M < 1) {
        *n_targets = 0;
        return 0;
    }
    /* chunks of equal size (<= chunk rows: no short tail chunk, which would stream the whole
     * head weight twice for a few rows; a function of M and chunk alone, so the NLL and dx have
     * the same bits whatever dlog_rows), and dW's product over a run of consecutive chunks
     * gathered in dlogb: rows [g0, g0+gn), at most `group` chunks */
    const int nch = (M + chunk - 1) / chunk;
    chunk = (M + nch - 1) / nch;
    int rows = dlog_rows > chunk ? dlog_rows : chunk, group = rows / chunk;
    int g0 = 0, gn = 0;
    double nll = 0;
    *n_targets = 0;
    for (int r0 = 0; r0 < M; r0 += chunk) {
        int n = M - r0 < chunk ? M - r0 : chunk;
        if (all_ignored(labels + r0, n)) continue;
        if (gn && (g0 + gn != r0 || gn == group * chunk)) { /* not contiguous, or full: flush */
            head_weight_grad(dw, dlogb, xb + (size_t)g0 * C, xpk, gn, C, V);
            gn = 0;
        }
        const uint16_t *xc = xb + (size_t)r0 * C; /* (n,C) */
        float *dxc = dx ? dx + (size_t)r0 * C : NULL;
        uint16_t *dlc = dlogb ? dlogb + (size_t)gn * V : NULL; /* this chunk's dlogits */
        matmul_bf16w_forward(logits, xc, w, NULL, n, 0);       /* (n,V) */
        if (!hr && (dx || dw)) { /* the softmax pass writes the bf16 dlogits */
            nll += softmax_xent_rows(logits, dlc, labels + r0, n, V, scale, 1, 1, n_targets);
        } else {
            if (hr) rows_logits(logits, x32 + (size_t)r0 * C, hr, n, C, V);
            nll += softmax_xent_rows(logits, NULL, labels + r0, n, V, scale, grad, 1, n_targets);
            if (!grad) continue;
            if (hr) rows_backward(dxc, logits, x32 + (size_t)r0 * C, hr, n, C, V);
            if (!dx && !dw) continue;
            bf16_from_f32(dlc, logits, (size_t)n * V);
        }
        if (dx) matmul_bf16w_backward_input(dxc, dlc, w, n, 1);
        if (dw) {
            if (!gn) g0 = r0;
            gn += n;
        }
    }
    if (gn) head_weight_grad(dw, dlogb, xb + (size_t)g0 * C, xpk, gn, C, V);
    return nll;
}

double crossentropy_forward_backward_naive(float *dx, float *dw, int64_t *n_targets, const float *x,
                                           const float *w, const int *labels, float scale, int M,
                                           int C, int V) {
    double nll = 0;
    *n_targets = 0;
    double *z = ft_calloc((size_t)V, sizeof(double));
    FT_ASSERT(z);
    for (int m = 0; m < M; m++) {
        int y = labels[m];
        if (y == FT_IGNORE_INDEX) continue;
        FT_ASSERT(y >= 0 && y < V);
        const float *xm = x + (size_t)m * C;
        double mx = -INFINITY;
        for (int j = 0; j < V; j++) {
            double s = 0;
            for (int c = 0; c < C; c++)
                s += (double)w[(size_t)j * C + c] * xm[c];
            z[j] = s;
            if (s > mx) mx = s;
        }
        double sum = 0;
        for (int j = 0; j < V; j++)
            sum += exp(z[j] - mx);
        double lse = mx + log(sum);
        nll += lse - z[y];
        (*n_targets)++;
        for (int j = 0; j < V; j++) {
            double dz = scale * (exp(z[j] - lse) - (j == y));
            for (int c = 0; c < C; c++) {
                if (dx) dx[(size_t)m * C + c] += (float)(dz * w[(size_t)j * C + c]);
                if (dw) dw[(size_t)j * C + c] += (float)(dz * xm[c]);
            }
        }
    }
    ft_free(z);
    return nll;
}
