/*
 * Causal grouped-query attention (GQA), exact softmax, f32, as HF's eager attention computes it:
 * scores = (q · k) * scale, masked entries excluded, p = exp(score - max) / sum, out = sum_s p_s v_s.
 * Query head h reads KV head h / (H/KV): K/V are never repeated in memory.
 *
 *   attention_forward / _backward   training form over (B,T) with saved probabilities att (B,H,T,T)
 *   attention_forward_cached        inference form: n new queries at positions pos0.. against a
 *                                   KV cache holding positions 0 .. pos0+n-1
 *   *_naive                         plain-loop references (double accumulation, whole score matrix)
 *
 * Not here: the flash-style (no T×T buffer) kernels of the speed issue.
 */
#include "ftune/kernels.h"

#include "grain.h"

#include "ftune/core.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

static inline float dot(const float *a, const float *b, int D) {
    float s = 0.0f;
    for (int d = 0; d < D; d++) s += a[d] * b[d];
    return s;
}

/* Is key s visible from query t (s <= t assumed)? */
static inline int visible(const int *seg, int64_t b, int64_t T, int64_t s, int64_t t) {
    return !seg || seg[b * T + s] == seg[b * T + t];
}

/* Scratch of `per` floats for each OpenMP thread (NULL when per == 0). Freed by the caller. */
static float *thread_scratch(size_t per) {
    float *p = ft_calloc((size_t)omp_get_max_threads() * per + 1, sizeof(float));
    FT_ASSERT(p != NULL);
    return p;
}

void attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                       const int *seg, int B, int T, int H, int KV, int D) {
    FT_ASSERT(H % KV == 0);
    const int G = H / KV;
    const float scale = 1.0f / sqrtf((float)D);
    float *scratch = att ? NULL : thread_scratch((size_t)T);
    const int64_t work = (int64_t)B * H * T * T * D; /* ~2x the multiply-adds (causal half) */
#pragma omp parallel for collapse(3) schedule(static) if (work >= FT_OMP_GRAIN)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t t = 0; t < T; t++) {
                const int64_t kh = h / G;
                const float *qt = q + ((b * T + t) * H + h) * D; // (D)
                float *p = att ? att + ((b * H + h) * T + t) * T
                               : scratch + (int64_t)omp_get_thread_num() * T; // (T)
                float mx = -INFINITY;
                for (int64_t s = 0; s <= t; s++) {
                    if (!visible(seg, b, T, s, t)) continue;
                    float sc = dot(qt, k + ((b * T + s) * KV + kh) * D, D) * scale;
                    p[s] = sc;
                    if (sc > mx) mx = sc;
                }
                float sum = 0.0f;
                for (int64_t s = 0; s <= t; s++) {
                    if (!visible(seg, b, T, s, t)) {
                        p[s] = 0.0f;
                        continue;
                    }
                    p[s] = expf(p[s] - mx);
                    sum += p[s];
                }
                float inv = 1.0f / sum;
                for (int64_t s = 0; s <= t; s++) p[s] *= inv;
                if (att)
                    for (int64_t s = t + 1; s < T; s++) p[s] = 0.0f;
                float *o = out + ((b * T + t) * H + h) * D; // (D)
                for (int d = 0; d < D; d++) o[d] = 0.0f;
                for (int64_t s = 0; s <= t; s++) {
                    if (p[s] == 0.0f) continue;
                    const float *vs = v + ((b * T + s) * KV + kh) * D;
                    for (int d = 0; d < D; d++) o[d] += p[s] * vs[d];
                }
            }
    ft_free(scratch);
}

/*
 * Backward, per (b, h), with P = att, S = scores, scale c = 1/sqrt(D), all masked P_ts = 0:
 *   out_t  = sum_s P_ts v_s
 *   dv_s  += sum_t P_ts dout_t                         (summed over the G query heads of the group)
 *   dP_ts  = dout_t · v_s
 *   softmax: dS_ts = P_ts (dP_ts - delta_t),  delta_t = sum_s P_ts dP_ts
 *   S_ts   = c q_t · k_s  =>  dq_t = c sum_s dS_ts k_s,  dk_s += c sum_t dS_ts q_t
 * Pass 1 (parallel over b,h,t) computes dP row t into per-thread scratch, delta_t, and dq_t.
 * Pass 2 (parallel over b,kv-head,s) recomputes dP_ts for t >= s and sums dk_s, dv_s over t and the
 * group's heads, so no two threads write the same row. Masked entries (P_ts == 0) contribute 0 to
 * every term and are skipped. dq, dk, dv are WRITTEN; any may be NULL except that pass 2 needs
 * delta, which is always computed. Scratch: (threads × T) + (B·H·T) floats per call.
 */
void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                        const float *k, const float *v, const float *att, int B, int T, int H,
                        int KV, int D) {
    FT_ASSERT(H % KV == 0);
    const int G = H / KV;
    const float scale = 1.0f / sqrtf((float)D);
    float *scratch = thread_scratch((size_t)T);
    float *delta = ft_calloc((size_t)B * H * T, sizeof(float)); // (B,H,T)
    FT_ASSERT(delta != NULL);
    const int64_t work = (int64_t)B * H * T * T * D;
#pragma omp parallel for collapse(3) schedule(static) if (work >= FT_OMP_GRAIN)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t t = 0; t < T; t++) {
                const int64_t kh = h / G;
                const float *p = att + ((b * H + h) * T + t) * T;       // (T)
                const float *go = dout + ((b * T + t) * H + h) * D;     // (D)
                float *dp = scratch + (int64_t)omp_get_thread_num() * T; // (T)
                float dl = 0.0f;
                for (int64_t s = 0; s <= t; s++) {
                    if (p[s] == 0.0f) continue;
                    dp[s] = dot(go, v + ((b * T + s) * KV + kh) * D, D);
                    dl += p[s] * dp[s];
                }
                delta[(b * H + h) * T + t] = dl;
                if (dq) {
                    float *g = dq + ((b * T + t) * H + h) * D;
                    for (int d = 0; d < D; d++) g[d] = 0.0f;
                    for (int64_t s = 0; s <= t; s++) {
                        if (p[s] == 0.0f) continue;
                        float ds = p[s] * (dp[s] - dl) * scale;
                        const float *ks = k + ((b * T + s) * KV + kh) * D;
                        for (int d = 0; d < D; d++) g[d] += ds * ks[d];
                    }
                }
            }
    if (dk || dv) {
#pragma omp parallel for collapse(3) schedule(static) if (work >= FT_OMP_GRAIN)
        for (int64_t b = 0; b < B; b++)
            for (int64_t kh = 0; kh < KV; kh++)
                for (int64_t s = 0; s < T; s++) {
                    const float *vs = v + ((b * T + s) * KV + kh) * D;
                    float *gk = dk ? dk + ((b * T + s) * KV + kh) * D : NULL;
                    float *gv = dv ? dv + ((b * T + s) * KV + kh) * D : NULL;
                    if (gk) memset(gk, 0, (size_t)D * sizeof(float));
                    if (gv) memset(gv, 0, (size_t)D * sizeof(float));
                    for (int64_t h = kh * G; h < (kh + 1) * G; h++)
                        for (int64_t t = s; t < T; t++) {
                            float pts = att[((b * H + h) * T + t) * T + s];
                            if (pts == 0.0f) continue;
                            const float *go = dout + ((b * T + t) * H + h) * D;
                            if (gv)
                                for (int d = 0; d < D; d++) gv[d] += pts * go[d];
                            if (gk) {
                                float dp = dot(go, vs, D);
                                float ds = pts * (dp - delta[(b * H + h) * T + t]) * scale;
                                const float *qt = q + ((b * T + t) * H + h) * D;
                                for (int d = 0; d < D; d++) gk[d] += ds * qt[d];
                            }
                        }
                }
    }
    ft_free(delta);
    ft_free(scratch);
}

void attention_forward_cached(float *out, float *scratch, const float *q, const float *kcache,
                              const float *vcache, int n, int pos0, int H, int KV, int D) {
    FT_ASSERT(H % KV == 0);
    const int G = H / KV;
    const int64_t Tk = (int64_t)pos0 + n;
    const float scale = 1.0f / sqrtf((float)D);
    float *own = scratch ? NULL : thread_scratch((size_t)Tk);
    if (own) scratch = own;
    const int64_t work = (int64_t)n * H * Tk * D * 2;
#pragma omp parallel for collapse(2) schedule(static) if (work >= FT_OMP_GRAIN)
    for (int64_t i = 0; i < n; i++)
        for (int64_t h = 0; h < H; h++) {
            const int64_t kh = h / G, t = pos0 + i;
            const float *qt = q + (i * H + h) * D;
            float *p = scratch + (int64_t)omp_get_thread_num() * Tk;
            float mx = -INFINITY;
            for (int64_t s = 0; s <= t; s++) {
                p[s] = dot(qt, kcache + (s * KV + kh) * D, D) * scale;
                if (p[s] > mx) mx = p[s];
            }
            float sum = 0.0f;
            for (int64_t s = 0; s <= t; s++) {
                p[s] = expf(p[s] - mx);
                sum += p[s];
            }
            float inv = 1.0f / sum;
            float *o = out + (i * H + h) * D;
            for (int d = 0; d < D; d++) o[d] = 0.0f;
            for (int64_t s = 0; s <= t; s++) {
                float ps = p[s] * inv;
                const float *vs = vcache + (s * KV + kh) * D;
                for (int d = 0; d < D; d++) o[d] += ps * vs[d];
            }
        }
    ft_free(own);
}

/* ---- naive twins ---- */

void attention_forward_naive(float *out, float *att, const float *q, const float *k,
                             const float *v, const int *seg, int B, int T, int H, int KV, int D) {
    const int G = H / KV;
    const double scale = 1.0 / sqrt((double)D);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t t = 0; t < T; t++) {
                int64_t kh = h / G;
                double sc[T], mx = -INFINITY, sum = 0; /* T is small in the tests */
                for (int64_t s = 0; s < T; s++) {
                    int ok = s <= t && (!seg || seg[b * T + s] == seg[b * T + t]);
                    double a = 0;
                    for (int d = 0; d < D; d++)
                        a += (double)q[((b * T + t) * H + h) * D + d] *
                             k[((b * T + s) * KV + kh) * D + d];
                    sc[s] = ok ? a * scale : -INFINITY;
                    if (sc[s] > mx) mx = sc[s];
                }
                for (int64_t s = 0; s < T; s++) sum += sc[s] == -INFINITY ? 0 : exp(sc[s] - mx);
                for (int64_t s = 0; s < T; s++) sc[s] = sc[s] == -INFINITY ? 0 : exp(sc[s] - mx) / sum;
                for (int d = 0; d < D; d++) {
                    double o = 0;
                    for (int64_t s = 0; s < T; s++) o += sc[s] * v[((b * T + s) * KV + kh) * D + d];
                    out[((b * T + t) * H + h) * D + d] = (float)o;
                }
                if (att)
                    for (int64_t s = 0; s < T; s++) att[((b * H + h) * T + t) * T + s] = (float)sc[s];
            }
}

void attention_backward_naive(float *dq, float *dk, float *dv, const float *dout, const float *q,
                              const float *k, const float *v, const float *att, int B, int T,
                              int H, int KV, int D) {
    const int G = H / KV;
    const double scale = 1.0 / sqrt((double)D);
    if (dq) memset(dq, 0, (size_t)B * T * H * D * sizeof(float));
    if (dk) memset(dk, 0, (size_t)B * T * KV * D * sizeof(float));
    if (dv) memset(dv, 0, (size_t)B * T * KV * D * sizeof(float));
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            int64_t kh = h / G;
            for (int64_t t = 0; t < T; t++) {
                const float *P = att + ((b * H + h) * T + t) * T;
                double dP[T], delta = 0;
                for (int64_t s = 0; s < T; s++) {
                    double a = 0;
                    for (int d = 0; d < D; d++)
                        a += (double)dout[((b * T + t) * H + h) * D + d] *
                             v[((b * T + s) * KV + kh) * D + d];
                    dP[s] = a;
                    delta += P[s] * a;
                }
                for (int64_t s = 0; s < T; s++) {
                    double dS = P[s] * (dP[s] - delta) * scale;
                    for (int d = 0; d < D; d++) {
                        if (dq)
                            dq[((b * T + t) * H + h) * D + d] +=
                                (float)(dS * k[((b * T + s) * KV + kh) * D + d]);
                        if (dk)
                            dk[((b * T + s) * KV + kh) * D + d] +=
                                (float)(dS * q[((b * T + t) * H + h) * D + d]);
                        if (dv)
                            dv[((b * T + s) * KV + kh) * D + d] +=
                                (float)(P[s] * dout[((b * T + t) * H + h) * D + d]);
                    }
                }
            }
        }
}
