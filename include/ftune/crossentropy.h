/*
 * Masked cross-entropy fused with the LM head (src/kernels/cpu/crossentropy.c).
 *
 * For M tokens with final hidden states x (M,C), head weight w (V,C) and labels (M) (-100 = no
 * loss), the loss is  L = scale * sum_{m: label[m] != -100} ( logsumexp(z_m) - z_m[label[m]] )
 * with z_m = w · x_m (M,V). The logits are computed `chunk` rows at a time into a caller-owned
 * scratch (chunk,V), so the (M,V) logits never exist at once; each chunk goes logits -> softmax
 * -> dlogits -> head matmul backward before the next chunk overwrites the scratch.
 *
 * Labels outside [0,V) other than -100 are a programmer error (the data pipeline checks them).
 */
#ifndef FTUNE_CROSSENTROPY_H
#define FTUNE_CROSSENTROPY_H

#include "ftune/kernels.h"

#include <stddef.h>
#include <stdint.h>

#define FT_IGNORE_INDEX (-100)

/* Head rows replaced by trained values (PEFT trainable tokens, src/train/step.c): logit column
 * ids[k] is x · rows[k] (f32) instead of x · w[ids[k]]. The gradient of scale * NLL-sum with
 * respect to rows[k] is ADDED into drows[k] (may be NULL), dx gets rows[k]'s share, and w's own
 * rows ids[k] get no gradient (they do not take part). ids are distinct, in [0,V). */
typedef struct {
    const int *ids;    /* (n) */
    const float *rows; /* (n,C) */
    float *drows;      /* (n,C) or NULL */
    int n;
} ft_head_rows;

/* Forward only. Returns the NLL sum over target rows (double); *n_targets gets their count.
 * logits: scratch (chunk,V). */
double crossentropy_forward(int64_t *n_targets, float *logits, const float *x, const float *w,
                            const int *labels, int M, int C, int V, int chunk);

/* Forward and backward in one pass over the chunks (the logits are needed by both).
 * Returns the NLL sum (unscaled) and *n_targets like crossentropy_forward, and ADDS the
 * gradient of scale * NLL-sum into dx (M,C) and dw (V,C); either may be NULL (skip that work). */
double crossentropy_forward_backward(float *dx, float *dw, int64_t *n_targets, float *logits,
                                     const float *x, const float *w, const int *labels, float scale,
                                     int M, int C, int V, int chunk);

/* crossentropy_forward_backward with head rows replaced (hr may be NULL: no rows). */
double crossentropy_rows_forward_backward(float *dx, float *dw, int64_t *n_targets, float *logits,
                                          const float *x, const float *w, const ft_head_rows *hr,
                                          const int *labels, float scale, int M, int C, int V,
                                          int chunk);

/* bf16 mixed-precision form (same contract otherwise): xb (M,C) the hidden states as bf16, w the
 * head weight (V,C) packed for bf16 (the caller refreshes it when it changes). Logits, softmax,
 * the NLL and dlogits stay f32; dlogits are rounded to bf16 into the scratch dlogb for the two
 * backward products (f32 accumulation into dx and dw). The M rows are cut into equal chunks of at
 * most `chunk` rows; dlogb holds max(chunk, dlog_rows) rows of V: with dw, the weight-gradient
 * product runs once per run of consecutive chunks of at most that many rows, runs of equal size
 * too (fewer, deeper products: dW (V,C) f32 is read and written once per product, and oneDNN
 * runs a product over 512 rows ~30% faster per row than over 170). xpk (may be NULL) is a pack
 * for that product's xb rows (matmul_bf16_backward_weight; repacked at each product, so the
 * caller's next use of it must pass fresh). NULL dx/dw skip their work; with both NULL it is the
 * forward only (dlogb may then be NULL). */
double crossentropy_bf16_forward_backward(float *dx, float *dw, int64_t *n_targets, float *logits,
                                          uint16_t *dlogb, const uint16_t *xb, ft_bf16_weight *w,
                                          ft_bf16_pack *xpk, const int *labels, float scale, int M,
                                          int C, int V, int chunk, int dlog_rows);
/* ... with head rows replaced: their logits and gradients are computed in f32 from x32 (M,C), the
 * f32 hidden states xb was rounded from; their dlogits are taken out of the bf16 products. */
double crossentropy_bf16_rows_forward_backward(float *dx, float *dw, int64_t *n_targets,
                                               float *logits, uint16_t *dlogb, const uint16_t *xb,
                                               const float *x32, ft_bf16_weight *w,
                                               ft_bf16_pack *xpk, const ft_head_rows *hr,
                                               const int *labels, float scale, int M, int C, int V,
                                               int chunk, int dlog_rows);

/* Plain-loop twin of crossentropy_forward_backward (all M rows at once, double accumulation,
 * no oneDNN): the reference the kernel test compares with. dx/dw may be NULL. */
double crossentropy_forward_backward_naive(float *dx, float *dw, int64_t *n_targets, const float *x,
                                           const float *w, const int *labels, float scale, int M,
                                           int C, int V);

/* A chunk size (rows) that keeps the (chunk,V) logits scratch near 16 MiB, within [1, M]. */
int crossentropy_chunk_rows(int M, int V);

#endif
