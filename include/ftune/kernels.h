/*
 * CPU kernels: forward/backward pairs in llm.c's argument order (outputs, inputs, saved
 * activations, sizes). Backward functions ADD into parameter gradients (the caller zeroes them
 * once per step) and WRITE input gradients unless stated otherwise. A NULL gradient pointer
 * means "frozen / not needed: skip that work". Every optimized kernel keeps a *_naive twin,
 * the plain-loop reference the tests compare it with.
 *
 * Letters: M rows (= B*T tokens), K in-features, N out-features, C channels, H heads,
 * KV key/value heads, D head dim, T sequence length, V vocabulary.
 */
#ifndef FTUNE_KERNELS_H
#define FTUNE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* out (M,N) = inp (M,K) · w (N,K)^T + bias (N)   [torch.nn.Linear]; bias may be NULL.
 * Uses oneDNN (primitives cached per shape); matmul_forward_naive is the reference. */
void matmul_forward(float *out, const float *inp, const float *w, const float *bias, int M, int K,
                    int N);
void matmul_forward_naive(float *out, const float *inp, const float *w, const float *bias, int M,
                          int K, int N);
/* dinp (M,K) += dout (M,N) · w (N,K)  (ADDS, so residual branches can share a buffer)
 * dw (N,K) += dout^T · inp ; dbias (N) += sum_m dout. Any of dinp/dw/dbias may be NULL. */
void matmul_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                     const float *w, int M, int K, int N);
void matmul_backward_naive(float *dinp, float *dw, float *dbias, const float *dout,
                           const float *inp, const float *w, int M, int K, int N);

/* out (M,C) = inp / sqrt(mean(inp^2) + eps) * weight ; rstd (M) saved (may be NULL). */
void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int M, int C,
                     float eps);
/* dinp (M,C) += ..., dweight (C) += ... */
void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                      const float *weight, const float *rstd, int M, int C);

/* Rotary embedding in HF "rotate half" layout, in place on x (M, nh, D) where row m sits at
 * position pos[m]: for i < D/2, (x_i, x_{i+D/2}) is rotated by angle pos*inv_freq[i]. */
void rope_forward(float *x, const int *pos, const float *inv_freq, int M, int nh, int D);
/* In place on dx: rotate by the negative angle (the transpose of the forward rotation). */
void rope_backward(float *dx, const int *pos, const float *inv_freq, int M, int nh, int D);

/* out (N) = silu(gate) * up. */
void swiglu_forward(float *out, const float *gate, const float *up, size_t N);
/* dgate, dup (N) are WRITTEN. */
void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                     const float *up, size_t N);

/* Causal grouped-query attention over a batch.
 *   q (B,T,H,D), k, v (B,T,KV,D) -> out (B,T,H,D); att (B,H,T,T) softmax probabilities saved
 *   for backward (may be NULL at inference). Scale 1/sqrt(D). seg (B,T) optional: when non-NULL,
 *   token t attends to s <= t only if seg[b,s] == seg[b,t] (packed samples). */
void attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                       const int *seg, int B, int T, int H, int KV, int D);
/* dq WRITTEN, dk/dv WRITTEN (B,T,KV,D): each KV head sums the gradients of its H/KV query heads. */
void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                        const float *k, const float *v, const float *att, int B, int T, int H,
                        int KV, int D);
/* Plain-loop references of the two above (double accumulation, whole score rows). */
void attention_forward_naive(float *out, float *att, const float *q, const float *k,
                             const float *v, const int *seg, int B, int T, int H, int KV, int D);
void attention_backward_naive(float *dq, float *dk, float *dv, const float *dout, const float *q,
                              const float *k, const float *v, const float *att, int B, int T,
                              int H, int KV, int D);
/* Inference form with a KV cache: q (n,H,D) holds the queries of positions pos0..pos0+n-1;
 * kcache, vcache (pos0+n, KV, D) hold keys/values of positions 0..pos0+n-1 (the new ones already
 * written). Query at position t attends to positions 0..t. out (n,H,D).
 * scratch: omp_get_max_threads() * (pos0+n) floats (the KV cache owns one), or NULL to allocate. */
void attention_forward_cached(float *out, float *scratch, const float *q, const float *kcache,
                              const float *vcache, int n, int pos0, int H, int KV, int D);

/* out (M,C) = table[ids[m]] ; backward: dtable[ids[m]] += dout[m]. */
void embedding_forward(float *out, const int *ids, const float *table, int M, int C);
void embedding_backward(float *dtable, const float *dout, const int *ids, int M, int C);

#endif
