/*
 * The optimizer side of training: AdamW exactly as torch.optim.AdamW (single-tensor path of
 * torch 1.13), global gradient-norm clipping as torch.nn.utils.clip_grad_norm_, and the learning-
 * rate schedules of Hugging Face transformers (get_{constant,linear,cosine}_schedule_with_warmup).
 *
 * Everything works on the flat trainable buffers of include/ftune/train.h: params, grads and the
 * two AdamW moment buffers share one layout, so one offset addresses all four.
 * Not here: other optimizers (SGD, Adafactor, 8-bit Adam), per-group learning rates.
 */
#ifndef FTUNE_OPTIM_H
#define FTUNE_OPTIM_H

#include "ftune/core.h"
#include "ftune/train.h"

typedef struct {
    double beta1, beta2, eps, weight_decay;
} ft_adamw_hparams;

typedef struct {
    ft_adamw_hparams h;
    size_t n;      /* floats in each moment buffer */
    float *m, *v;  /* (n) first and second moments, same layout as the params buffer */
    int64_t step;  /* optimizer steps taken so far */
} ft_adamw;

/* Allocate zeroed moments for n floats. ft_adamw_free(NULL) and double free are safe. */
ft_status ft_adamw_init(ft_adamw *o, size_t n, const ft_adamw_hparams *h);
void ft_adamw_free(ft_adamw *o);

/* The element-wise update of one span (one tensor) for step number `step` (1-based, after the
 * increment torch does first). decay != 0 applies p *= 1 - lr*weight_decay before the moments. */
void ft_adamw_update(float *p, const float *g, float *m, float *v, size_t n,
                     const ft_adamw_hparams *h, int64_t step, double lr, int decay);

/* The update of the tensors t[ks[i]], i < n, for the current step (o->step already counted):
 * each one's moments at the offset of its param in `params`, its gradient at its grad; all in one
 * parallel region (each tensor's loop without a barrier after it). The fused optimizer's
 * per-layer call. */
void ft_adamw_tensors(ft_adamw *o, float *params, const ft_trainable *t, const int *ks, int n,
                      double lr);

/* One optimizer step over every trainable tensor: o->step += 1, then ft_adamw_update on each
 * tensor with its own decay flag. `params` is the base of the flat buffer the tensors point into
 * (the same offset is used for grads, m and v). */
void ft_adamw_step(ft_adamw *o, float *params, const float *grads, const ft_trainable *t, int n_t,
                   double lr);
/* ft_adamw_step on the gradients times grad_scale (each value multiplied in float as it is read,
 * as ft_clip_grad_norm's scaling stores it; 1: unscaled), grads left as they are: the clipped
 * step, ft_clip_coef's factor, without a pass that scales the whole gradient first. */
void ft_adamw_step_scaled(ft_adamw *o, float *params, const float *grads, const ft_trainable *t,
                          int n_t, double lr, float grad_scale);

/* L2 norm of a flat gradient buffer, accumulated in double over fixed-size chunks (16 lanes
 * each, added in a fixed tree) whose sums are added in order, so the result does not depend on
 * the thread count. */
double ft_grad_norm(const float *g, size_t n);
/* clip_grad_norm_: coef = max_norm / (norm + 1e-6) in float, clamped to 1, grads *= coef.
 * Returns the norm before clipping (what HF logs as grad_norm). max_norm <= 0: no clipping. */
double ft_clip_grad_norm(float *g, size_t n, double max_norm);
/* That coef for a norm (ft_grad_norm's), 1 when max_norm <= 0 or the norm is below it. */
float ft_clip_coef(double norm, double max_norm);

/* As HF's get_scheduler names them: "constant" ignores warmup_steps (HF does too),
 * "constant_with_warmup" ramps up then stays; linear and cosine (half a cycle) decay to 0. */
typedef enum {
    FT_SCHED_CONSTANT,
    FT_SCHED_CONSTANT_WITH_WARMUP,
    FT_SCHED_LINEAR,
    FT_SCHED_COSINE
} ft_schedule;

/* The multiplier HF's LambdaLR applies at optimizer step `step` (0-based: the first update uses
 * step 0, which with warmup is lr 0 exactly as in HF). total = number of optimizer steps. */
double ft_schedule_factor(ft_schedule s, int64_t step, int64_t warmup, int64_t total);
/* Parse "constant" | "constant_with_warmup" | "linear" | "cosine"; -1 if unknown. */
int ft_schedule_parse(const char *name, ft_schedule *out);
const char *ft_schedule_name(ft_schedule s);

#endif
