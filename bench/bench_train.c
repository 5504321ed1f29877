/*
 * Whole-training benchmark of ftune (a lab, not a test; bench/train.sh runs it beside
 * bench/ref_train.py): optimizer steps of ft_train_micro_step (forward, loss, backward) plus an
 * AdamW update of the trainable buffer, on random token batches (ids uniform in [3,V), labels
 * the next token), the same recipe as the PyTorch reference.
 *   bench_train MODEL_DIR full|full-fused|lora bf16|f32 B T STEPS [R=8 ALPHA=16]
 * full-fused: the same AdamW applied to each layer's tensors inside the backward as soon as the
 * layer's gradients are complete (ft_train_options.grad_ready, what the trainer does for full
 * fine-tuning when an optimizer step is one micro-step without gradient clipping): the same
 * numbers, no model-size gradient buffer.
 * One warm-up step (primitive creation, weight packing), then STEPS timed steps (mean).
 * Prints one line: "ftune tok_s X step_s Y peak_rss_mb Z loss_first A loss_last B gflop_s G
 * flop_per_tok F tok_per_cpu_s P step_min_s S step_med_s D" (P: tokens per second of process CPU
 * time, all threads — a second view on a loaded machine, where wall time also counts time spent
 * descheduled; S, D: the fastest and the median timed step), where F counts 6 N (full) or 4 N
 * (LoRA: no base-weight gradient) per token,
 * N = the parameters of every matmul weight (q k v o gate up down per layer and the head; a tied
 * embedding counted once, as the head), plus causal attention 3 x 2 x 2 HD (T+1)/2 per layer
 * (QK^T and PV over the causal half; backward twice the forward).
 * The AdamW here is ftune's own (ft_adamw_update, the trainer's: torch 1.13's _single_tensor_adamw
 * operation by operation; lr 1e-4 full / 1e-3 LoRA, no weight decay, as bench/ref_train.py sets
 * torch.optim.AdamW) on the flat buffer, so its cost is in the step as in torch.
 */
#include "ftune/core.h"
#include "ftune/model.h"
#include "ftune/optim.h"
#include "ftune/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static int rand_id(int V) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return 3 + (int)((rng * 0x2545F4914F6CDD1Dull >> 33) % (uint64_t)(V - 3));
}

/* ftune's AdamW (src/train/optim.c, the trainer's), with torch.optim.AdamW's settings in
 * bench/ref_train.py: betas (0.9, 0.999), eps 1e-8, weight_decay 0 */
static const ft_adamw_hparams adamw_h = {0.9, 0.999, 1e-8, 0.0};

static void adamw(float *p, const float *g, float *m, float *v, size_t n, int64_t step, float lr) {
    ft_adamw_update(p, g, m, v, n, &adamw_h, step, lr, 0);
}

typedef struct {
    float *p, *m, *v;
    size_t n;
    const ft_trainable *t;
    int64_t step;
    float lr;
} fused_ctx;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* the same AdamW on a layer's tensors at once, as the trainer's fused hook runs it (no weight
 * decay here, so the tensors' decay flags change nothing) */
static void fused_update(void *ctx, const int *ks, int n) {
    fused_ctx *f = ctx;
    ft_adamw o = {adamw_h, f->n, f->m, f->v, f->step};
    ft_adamw_tensors(&o, f->p, f->t, ks, n, f->lr);
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: bench_train MODEL_DIR full|lora bf16|f32 B T STEPS [R ALPHA]\n");
        return 2;
    }
    const char *dir = argv[1];
    int lora = !strcmp(argv[2], "lora"), fused = !strcmp(argv[2], "full-fused");
    int bf16 = !strcmp(argv[3], "bf16");
    int B = atoi(argv[4]), T = atoi(argv[5]), steps = atoi(argv[6]);
    if (B < 1 || T < 1 || steps < 1) {
        fprintf(stderr, "bench_train: B, T and STEPS must be at least 1\n");
        return 2;
    }
    int R = argc > 7 ? atoi(argv[7]) : 8;
    float alpha = argc > 8 ? (float)atof(argv[8]) : 16.0f;
    ft_model m;
    if (ft_model_load(&m, dir)) {
        fprintf(stderr, "bench_train: %s\n", ft_error_message());
        return 1;
    }
    ft_train_options o;
    memset(&o, 0, sizeof o);
    o.method = lora ? FT_METHOD_LORA : FT_METHOD_FULL;
    o.lora.r = R;
    o.lora.alpha = alpha;
    o.lora.targets = FT_LORA_ALL_LINEAR;
    o.B = B;
    o.T = T;
    o.seed = 1;
    o.bf16 = bf16;
    fused_ctx fc = {0};
    if (fused) o.grad_ready = fused_update, o.grad_ctx = &fc;
    ft_train_model *tm;
    if (ft_train_model_init(&tm, &m, &o)) {
        fprintf(stderr, "bench_train: %s\n", ft_error_message());
        return 1;
    }
    size_t n;
    int n_t;
    float *p = ft_train_params(tm, &n), *g = ft_train_grads(tm, NULL);
    float *mom = ft_calloc(n, sizeof(float)), *vel = ft_calloc(n, sizeof(float));
    fc = (fused_ctx){p, mom, vel, n, ft_train_tensors(tm, &n_t), 0, lora ? 1e-3f : 1e-4f};
    int *ids = malloc((size_t)B * T * sizeof(int)), *lab = malloc((size_t)B * T * sizeof(int));
    double *took_s = malloc((size_t)(steps > 0 ? steps : 1) * sizeof(double));
    const ft_config *c = &m.cfg;
    double first = 0, last = 0, t0 = 0, ts = 0, best = 1e30;
    clock_t c0 = 0;
    for (int s = 0; s <= steps; s++) {
        if (s == 1) t0 = ft_time_s(), c0 = clock();
        ts = ft_time_s();
        for (int b = 0; b < B; b++) {
            int prev = rand_id(c->vocab_size);
            for (int t = 0; t < T; t++) {
                int nx = rand_id(c->vocab_size);
                ids[b * T + t] = prev;
                lab[b * T + t] = nx;
                prev = nx;
            }
        }
        double nll;
        int64_t nt;
        ft_train_zero_grad(tm);
        fc.step = s + 1;
        if (ft_train_micro_step(tm, ids, lab, NULL, NULL, B, T, 1.0f / (B * T), &nll, &nt)) {
            fprintf(stderr, "bench_train: %s\n", ft_error_message());
            return 1;
        }
        if (!fused) adamw(p, g, mom, vel, n, s + 1, lora ? 1e-3f : 1e-4f);
        last = nll / (double)nt;
        if (s == 0) first = last;
        double took = ft_time_s() - ts;
        if (s >= 1 && took < best) best = took; /* timed steps only */
        if (s >= 1) took_s[s - 1] = took;
    }
    double dt = (ft_time_s() - t0) / steps;
    double cpu = (double)(clock() - c0) / CLOCKS_PER_SEC / steps; /* CPU s per step, all threads */
    qsort(took_s, (size_t)steps, sizeof(double), cmp_double);
    double med = steps % 2 ? took_s[steps / 2] : 0.5 * (took_s[steps / 2 - 1] + took_s[steps / 2]);
    double HD = (double)c->n_heads * c->head_dim, KVD = (double)c->n_kv_heads * c->head_dim;
    double Nmm = (double)c->n_layers *
                     (c->dim * (HD + 2 * KVD) + HD * c->dim + 3.0 * c->dim * c->hidden_dim) +
                 (double)c->vocab_size * c->dim;
    double fpt = (lora ? 4 : 6) * Nmm + c->n_layers * 3.0 * 2 * 2 * HD * (T + 1) / 2;
    printf("ftune tok_s %.1f step_s %.3f peak_rss_mb %.0f loss_first %.4f loss_last %.4f "
           "gflop_s %.1f flop_per_tok %.4g tok_per_cpu_s %.1f step_min_s %.3f step_med_s %.3f\n",
           B * T / dt, dt, ft_peak_rss_bytes() / 1048576.0, first, last, fpt * B * T / dt / 1e9,
           fpt, B * T / cpu, best, med);
    ft_free(mom), ft_free(vel), free(ids), free(lab), free(took_s);
    ft_train_model_free(tm);
    ft_model_free(&m);
    return 0;
}
