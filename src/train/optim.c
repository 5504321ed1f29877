/*
 * AdamW, gradient-norm clipping and LR schedules (contract in include/ftune/optim.h).
 *
 * AdamW follows torch 1.13's _single_tensor_adamw operation by operation: the scalars (1-lr*wd,
 * bias corrections, step size) are computed in double as Python does and rounded to float where
 * torch hands them to a float32 kernel; the tensor arithmetic is float32:
 *   p *= 1 - lr*wd                      (decoupled decay, only for decay tensors)
 *   m  = m*b1 + (1-b1)*g
 *   v  = v*b2 + (1-b2)*g*g
 *   p += -(lr / (1-b1^t)) * m / (sqrt(v) / sqrt(1-b2^t) + eps)
 * torch's vectorised kernels may fuse a multiply-add where we round twice, so results agree to a
 * few float ulps per step rather than bit for bit (see tests/train/test_optim.c).
 * Not here: amsgrad, maximize, foreach/fused variants (same maths), other optimizers.
 */
#include "ftune/optim.h"

#include <math.h>
#include <string.h>

ft_status ft_adamw_init(ft_adamw *o, size_t n, const ft_adamw_hparams *h) {
    memset(o, 0, sizeof *o);
    o->h = *h;
    o->n = n;
    o->m = ft_calloc(n ? n : 1, sizeof(float));
    o->v = ft_calloc(n ? n : 1, sizeof(float));
    if (!o->m || !o->v) {
        ft_adamw_free(o);
        return ft_errorf(FT_ERR_NOMEM, "AdamW: out of memory for moments of %zu floats", n);
    }
    return FT_OK;
}

void ft_adamw_free(ft_adamw *o) {
    if (!o) return;
    ft_free(o->m);
    ft_free(o->v);
    o->m = o->v = NULL;
    o->n = 0;
}

#define OPTIM_GRAIN 32768 /* as FT_OMP_GRAIN (src/kernels/cpu/grain.h) */

/* ft_adamw_update's loop as the calling thread's share of a parallel region (an orphaned omp for
 * without a barrier; outside a region, all of it) */
static void adamw_part(float *p, const float *g, float *m, float *v, size_t n,
                       const ft_adamw_hparams *h, int64_t step, double lr, int decay,
                       float gscale) {
    const int scaled = gscale != 1.0f;
    const float keep = (float)(1.0 - lr * h->weight_decay);
    const float b1 = (float)h->beta1, b2 = (float)h->beta2;
    const float a1 = (float)(1.0 - h->beta1), a2 = (float)(1.0 - h->beta2);
    const double bc1 = 1.0 - pow(h->beta1, (double)step);
    const double bc2 = 1.0 - pow(h->beta2, (double)step);
    const float neg_step_size = (float)(-(lr / bc1));
    const float bc2_sqrt = (float)sqrt(bc2);
    const float eps = (float)h->eps;
    const int do_decay = decay && h->weight_decay != 0.0;
#pragma omp for simd schedule(static) nowait
    for (size_t i = 0; i < n; i++) {
        float pi = p[i];
        if (do_decay) pi = pi * keep;
        float gi = g[i];
        if (scaled) gi = gi * gscale; /* as ft_clip_grad_norm's g[i] *= coef */
        float mi = m[i] * b1 + a1 * gi;
        float vi = v[i] * b2 + a2 * (gi * gi);
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        p[i] = pi + neg_step_size * (mi / denom);
        m[i] = mi;
        v[i] = vi;
    }
}

void ft_adamw_update(float *p, const float *g, float *m, float *v, size_t n,
                     const ft_adamw_hparams *h, int64_t step, double lr, int decay) {
    /* one thread below OPTIM_GRAIN: a LoRA run's tensors (r x K, N x r) and the norms are all
     * smaller, and a parallel region costs ~40 us with passive waiting (the wake-up at its start,
     * the barrier at its end: bench/bench_regions.c), more than such an update takes */
#pragma omp parallel if (n >= OPTIM_GRAIN)
    adamw_part(p, g, m, v, n, h, step, lr, decay, 1.0f);
}

/* The update of tensor t[ks[i]] (ks NULL: t[i]), i < n, all in one parallel region, each
 * tensor's loop without a barrier after it; its gradient at the same offset in `grads` as its
 * param in `params`, or at its grad (grads NULL), times gscale as it is read */
static void adamw_tensors(ft_adamw *o, float *params, const float *grads, const ft_trainable *t,
                          const int *ks, int n, double lr, float gscale) {
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        const ft_trainable *ti = &t[ks ? ks[i] : i];
        FT_ASSERT(ti->param >= params && (size_t)(ti->param - params) + ti->numel <= o->n);
        total += ti->numel;
    }
    /* one region: a region per tensor cost ~40 us each with passive waiting (bench_regions) */
#pragma omp parallel if (total >= OPTIM_GRAIN)
    for (int i = 0; i < n; i++) {
        const ft_trainable *ti = &t[ks ? ks[i] : i];
        const size_t off = (size_t)(ti->param - params);
        adamw_part(ti->param, grads ? grads + off : ti->grad, o->m + off, o->v + off, ti->numel,
                   &o->h, o->step, lr, ti->decay, gscale);
    }
}

void ft_adamw_tensors(ft_adamw *o, float *params, const ft_trainable *t, const int *ks, int n,
                      double lr) {
    adamw_tensors(o, params, NULL, t, ks, n, lr, 1.0f);
}

void ft_adamw_step(ft_adamw *o, float *params, const float *grads, const ft_trainable *t, int n_t,
                   double lr) {
    ft_adamw_step_scaled(o, params, grads, t, n_t, lr, 1.0f);
}

void ft_adamw_step_scaled(ft_adamw *o, float *params, const float *grads, const ft_trainable *t,
                          int n_t, double lr, float grad_scale) {
    o->step++;
    adamw_tensors(o, params, grads, t, NULL, n_t, lr, grad_scale);
}

#define FT_NORM_CHUNK 65536
#define NORM_BATCH 256 /* chunk sums made in parallel at a time (a stack array) */

typedef float norm_v8f __attribute__((vector_size(32)));
typedef double norm_v8d __attribute__((vector_size(64)));

/* sum of g[i]^2 over one chunk in double: 16 lanes (two vectors of 8), element i into lane i % 16
 * while 16 remain, then the tail into lanes 0.., the lanes added in a fixed tree. One dependent
 * chain of double adds ran at ~5 GB/s on one core; 16 independent ones are memory-bound. */
static double chunk_sumsq(const float *g, size_t n) {
    norm_v8d a0 = {0}, a1 = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        norm_v8f x0, x1;
        memcpy(&x0, g + i, sizeof x0);
        memcpy(&x1, g + i + 8, sizeof x1);
        const norm_v8d d0 = __builtin_convertvector(x0, norm_v8d);
        const norm_v8d d1 = __builtin_convertvector(x1, norm_v8d);
        a0 += d0 * d0;
        a1 += d1 * d1;
    }
    double lane[16];
    memcpy(lane, &a0, sizeof a0);
    memcpy(lane + 8, &a1, sizeof a1);
    for (size_t l = 0; i < n; i++, l++)
        lane[l] += (double)g[i] * g[i];
    for (int w = 8; w >= 1; w /= 2)
        for (int l = 0; l < w; l++)
            lane[l] += lane[l + w];
    return lane[0];
}

double ft_grad_norm(const float *g, size_t n) {
    const size_t n_chunks = (n + FT_NORM_CHUNK - 1) / FT_NORM_CHUNK;
    double total = 0, part[NORM_BATCH];
    /* fixed chunks (each summed as chunk_sumsq does), their sums added in chunk order: the same
     * bits whatever the thread count */
    for (size_t c0 = 0; c0 < n_chunks; c0 += NORM_BATCH) {
        const size_t nc = n_chunks - c0 < NORM_BATCH ? n_chunks - c0 : NORM_BATCH;
#pragma omp parallel for schedule(static) if (nc > 1)
        for (size_t c = 0; c < nc; c++) {
            const size_t lo = (c0 + c) * FT_NORM_CHUNK;
            part[c] = chunk_sumsq(g + lo, n - lo < FT_NORM_CHUNK ? n - lo : FT_NORM_CHUNK);
        }
        for (size_t c = 0; c < nc; c++)
            total += part[c];
    }
    return sqrt(total);
}

float ft_clip_coef(double norm, double max_norm) {
    if (!(max_norm > 0)) return 1.0f;
    /* torch: clip_coef = max_norm / (total_norm + 1e-6), all float32 tensors; clamp(max=1) */
    float coef = (float)max_norm / ((float)norm + 1e-6f);
    return coef > 1.0f ? 1.0f : coef;
}

double ft_clip_grad_norm(float *g, size_t n, double max_norm) {
    double norm = ft_grad_norm(g, n);
    if (!(max_norm > 0)) return norm;
    const float coef = ft_clip_coef(norm, max_norm);
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) g[i] *= coef;
    return norm;
}

double ft_schedule_factor(ft_schedule s, int64_t step, int64_t warmup, int64_t total) {
    if (s == FT_SCHED_CONSTANT) return 1.0;
    if (step < warmup) return (double)step / (double)(warmup > 1 ? warmup : 1);
    double span = (double)(total - warmup > 1 ? total - warmup : 1);
    switch (s) {
    case FT_SCHED_CONSTANT:
    case FT_SCHED_CONSTANT_WITH_WARMUP: return 1.0;
    case FT_SCHED_LINEAR: {
        double f = (double)(total - step) / span;
        return f > 0.0 ? f : 0.0;
    }
    case FT_SCHED_COSINE: {
        double progress = (double)(step - warmup) / span;
        double f = 0.5 * (1.0 + cos(M_PI * 0.5 * 2.0 * progress)); /* num_cycles = 0.5 */
        return f > 0.0 ? f : 0.0;
    }
    }
    return 1.0;
}

int ft_schedule_parse(const char *name, ft_schedule *out) {
    if (!strcmp(name, "constant")) *out = FT_SCHED_CONSTANT;
    else if (!strcmp(name, "constant_with_warmup")) *out = FT_SCHED_CONSTANT_WITH_WARMUP;
    else if (!strcmp(name, "linear")) *out = FT_SCHED_LINEAR;
    else if (!strcmp(name, "cosine")) *out = FT_SCHED_COSINE;
    else return -1;
    return 0;
}

const char *ft_schedule_name(ft_schedule s) {
    switch (s) {
    case FT_SCHED_CONSTANT: return "constant";
    case FT_SCHED_CONSTANT_WITH_WARMUP: return "constant_with_warmup";
    case FT_SCHED_LINEAR: return "linear";
    case FT_SCHED_COSINE: return "cosine";
    }
    return "?";
}
