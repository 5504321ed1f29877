/*
 * Flash-style causal grouped-query attention, f32: the same function as attention_forward /
 * attention_backward (attention.c) without the (B,H,T,T) probability buffer. Forward keeps, per
 * query row, a running max m, running sum l and an unnormalised output o over blocks of FA_BLOCK
 * keys (online softmax), and saves only the row logsumexp lse = m + log(l). Backward recomputes
 * each probability from lse blockwise. Query head h reads KV head h / (H/KV): K/V are never
 * repeated. seg (B,T), when non-NULL, restricts key s to seg[s] == seg[t] (packed samples).
 *
 * Forward, per (b, h, t), scale c = 1/sqrt(D), keys s <= t visible:
 *   for each block: x_s = c q_t·k_s ; m' = max(m, max_s x_s) ; l = l e^(m-m') + sum_s e^(x_s-m')
 *                   o = o e^(m-m') + sum_s e^(x_s-m') v_s ; m = m'
 *   out_t = o / l ; lse_t = m + log l            (so P_ts = exp(x_s - lse_t))
 * Backward (FlashAttention-2's), per (b, kv-head) task, which owns dk, dv of that KV head and dq
 * of the G query heads that read it (no two threads write the same row):
 *   delta_t = dout_t · out_t   (= sum_s P_ts dP_ts, since out_t = sum_s P_ts v_s)
 *   P_ts = exp(c q_t·k_s - lse_t) ; dP_ts = dout_t · v_s ; dS_ts = P_ts (dP_ts - delta_t)
 *   dv_s += P_ts dout_t ; dq_t += c dS_ts k_s ; dk_s += c dS_ts q_t
 * Work is O(T^2 D) like the exact kernel; memory beyond inputs/outputs is O(B H T) (lse).
 * Parallelism: forward over (b, h, t); backward over (b, kv-head) — B*KV tasks.
 *
 * Not here: bf16 operands (softmax and its gradients stay f32 in the mixed-precision mode), the
 * KV-cache inference form (attention_forward_cached).
 */
#include "ftune/kernels.h"

#include "ftune/core.h"

#include <math.h>
#include <string.h>

#define FA_BLOCK 64

static inline int seen(const int *seg, int64_t b, int64_t T, int64_t s, int64_t t) {
    return !seg || seg[b * T + s] == seg[b * T + t];
}

static inline float dotf(const float *a, const float *b, int D) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int d = 0; d < D; d++) s += a[d] * b[d];
    return s;
}

void attention_flash_forward(float *out, float *lse, const float *q, const float *k,
                             const float *v, const int *seg, int B, int T, int H, int KV, int D) {
    FT_ASSERT(H % KV == 0);
    const int G = H / KV;
    const float scale = 1.0f / sqrtf((float)D);
#pragma omp parallel for collapse(3) schedule(dynamic, 16)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t t = 0; t < T; t++) {
                const int64_t kh = h / G;
                const float *qt = q + ((b * T + t) * H + h) * D; // (D)
                float *o = out + ((b * T + t) * H + h) * D;      // (D)
                float x[FA_BLOCK];
                float m = -INFINITY, l = 0.0f;
                for (int d = 0; d < D; d++) o[d] = 0.0f;
                for (int64_t s0 = 0; s0 <= t; s0 += FA_BLOCK) {
                    int64_t s1 = s0 + FA_BLOCK <= t + 1 ? s0 + FA_BLOCK : t + 1;
                    float bm = -INFINITY;
                    for (int64_t s = s0; s < s1; s++) {
                        float xs = -INFINITY;
                        if (seen(seg, b, T, s, t))
                            xs = dotf(qt, k + ((b * T + s) * KV + kh) * D, D) * scale;
                        x[s - s0] = xs;
                        if (xs > bm) bm = xs;
                    }
                    if (bm == -INFINITY) continue; /* whole block masked */
                    float mn = bm > m ? bm : m;
                    float corr = expf(m - mn); /* 0 on the first visible block (m = -inf) */
                    l *= corr;
#pragma omp simd
                    for (int d = 0; d < D; d++) o[d] *= corr;
                    for (int64_t s = s0; s < s1; s++) {
                        if (x[s - s0] == -INFINITY) continue;
                        float p = expf(x[s - s0] - mn);
                        l += p;
                        const float *vs = v + ((b * T + s) * KV + kh) * D;
#pragma omp simd
                        for (int d = 0; d < D; d++) o[d] += p * vs[d];
                    }
                    m = mn;
                }
                float inv = 1.0f / l;
#pragma omp simd
                for (int d = 0; d < D; d++) o[d] *= inv;
                if (lse) lse[(b * H + h) * T + t] = m + logf(l);
            }
}

void attention_flash_backward(float *dq, float *dk, float *dv, const float *dout,
                              const float *out, const float *q, const float *k, const float *v,
                              const float *lse, const int *seg, int B, int T, int H, int KV,
                              int D) {
    FT_ASSERT(H % KV == 0);
    const int G = H / KV;
    const float scale = 1.0f / sqrtf((float)D);
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; b++)
        for (int64_t kh = 0; kh < KV; kh++) {
            for (int64_t s = 0; s < T; s++) {
                if (dk) memset(dk + ((b * T + s) * KV + kh) * D, 0, (size_t)D * sizeof(float));
                if (dv) memset(dv + ((b * T + s) * KV + kh) * D, 0, (size_t)D * sizeof(float));
            }
            for (int64_t h = kh * G; h < (kh + 1) * G; h++)
                for (int64_t t = 0; t < T; t++) {
                    const float *qt = q + ((b * T + t) * H + h) * D;    // (D)
                    const float *go = dout + ((b * T + t) * H + h) * D; // (D)
                    float *gq = dq ? dq + ((b * T + t) * H + h) * D : NULL;
                    if (gq) memset(gq, 0, (size_t)D * sizeof(float));
                    const float delta = dotf(go, out + ((b * T + t) * H + h) * D, D);
                    const float L = lse[(b * H + h) * T + t];
                    for (int64_t s0 = 0; s0 <= t; s0 += FA_BLOCK) {
                        int64_t s1 = s0 + FA_BLOCK <= t + 1 ? s0 + FA_BLOCK : t + 1;
                        float p[FA_BLOCK], ds[FA_BLOCK];
                        for (int64_t s = s0; s < s1; s++) {
                            int i = (int)(s - s0);
                            p[i] = ds[i] = 0.0f;
                            if (!seen(seg, b, T, s, t)) continue;
                            const float *ks = k + ((b * T + s) * KV + kh) * D;
                            const float *vs = v + ((b * T + s) * KV + kh) * D;
                            p[i] = expf(dotf(qt, ks, D) * scale - L);
                            ds[i] = p[i] * (dotf(go, vs, D) - delta) * scale;
                        }
                        for (int64_t s = s0; s < s1; s++) {
                            int i = (int)(s - s0);
                            if (p[i] == 0.0f) continue;
                            const float *ks = k + ((b * T + s) * KV + kh) * D;
                            if (gq) {
                                float c = ds[i];
#pragma omp simd
                                for (int d = 0; d < D; d++) gq[d] += c * ks[d];
                            }
                            if (dk) {
                                float *gk = dk + ((b * T + s) * KV + kh) * D, c = ds[i];
#pragma omp simd
                                for (int d = 0; d < D; d++) gk[d] += c * qt[d];
                            }
                            if (dv) {
                                float *gv = dv + ((b * T + s) * KV + kh) * D, c = p[i];
#pragma omp simd
                                for (int d = 0; d < D; d++) gv[d] += c * go[d];
                            }
                        }
                    }
                }
        }
}
