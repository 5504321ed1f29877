/*
 * The fused AdamW (ft_train_options.grad_ready = ft_fused_adamw_ready: each layer's tensors
 * updated inside the backward as soon as the layer's gradients are complete; the layers'
 * gradients share one layer's buffer) against ft_train_step's plain path (whole gradient buffer,
 * then ft_adamw_step), on stories15M (the real model), 4 optimizer steps with weight decay and a
 * changing learning rate: the losses, the reported gradient norms and every trained weight and
 * moment after the steps.
 * Same kernels in the same order on the same values, so the weights and moments must be
 * bit-identical; the gradient norm is summed per tensor instead of over the flat buffer (double
 * accumulation either way), so it may differ in the last bits: 1e-9 relative.
 * Cases: full fine-tuning in f32 and in bf16 (transient trained weights read the updated f32
 * weights at the next step), freeze (layers 2-3 and the final norm trained: layers without
 * trained tensors in between, the non-layer tensors complete only at the end), and full with
 * gradient checkpointing (a layer is recomputed before its backward: from weights not yet updated).
 * Also: the gradient buffer of the fused model is smaller than one layer's tensors + the
 * embedding, not model-size; ft_train_step refuses GA 2 or clipping with the fused model; LoRA
 * refuses grad_ready.
 */
#include "../test.h"

#include "ftune/core.h"
#include "ftune/model.h"
#include "ftune/optim.h"
#include "ftune/train.h"
#include "ftune/trainer.h"

#include <math.h>
#include <string.h>

#define NB 2
#define NT 16
#define STEPS 4

static int ids[STEPS][NB * NT], lab[STEPS][NB * NT];

typedef struct {
    double loss[STEPS], norm[STEPS];
    float *w, *m, *v;
    size_t n;
} run_out;

static ft_model m;      /* loaded once; full fine-tuning writes its weights: restored per run */
static float *pristine; /* (m.n_params) the loaded weights */

static int run(ft_method method, int bf16, int ckpt, int fused, run_out *out) {
    memcpy(m.params, pristine, m.n_params * sizeof(float));
    const char *un[2] = {"model.layers.[23].*", "model.norm.weight"};
    ft_fused_adamw fctx;
    ft_train_options o;
    memset(&o, 0, sizeof o);
    o.method = method;
    if (method == FT_METHOD_FREEZE) o.unfrozen = un, o.n_unfrozen = 2;
    o.B = NB, o.T = NT, o.seed = 3, o.bf16 = bf16, o.grad_checkpointing = ckpt;
    if (fused) o.grad_ready = ft_fused_adamw_ready, o.grad_ctx = &fctx;
    ft_train_model *tm;
    int rc = 1;
    if (ft_train_model_init(&tm, &m, &o)) {
        CHECK("train init", 0, "%s", ft_error_message());
        return 1;
    }
    size_t n, ng;
    float *p = ft_train_params(tm, &n);
    ft_train_grads(tm, &ng);
    ft_adamw opt;
    ft_adamw_hparams h = {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
    ft_adamw_init(&opt, n, &h);
    for (int s = 0; s < STEPS; s++) {
        double lr = 2e-4 * (1.0 + s) / STEPS;
        if (ft_train_step(tm, &opt, ids[s], lab[s], NB, 1, NT, lr, 0.0, &out->loss[s],
                          &out->norm[s])) {
            CHECK("train step", 0, "%s", ft_error_message());
            goto done;
        }
    }
    if (fused) {
        double l, g;
        ft_status a = ft_train_step(tm, &opt, ids[0], lab[0], NB / 2, 2, NT, 1e-4, 0.0, &l, &g);
        ft_status b = ft_train_step(tm, &opt, ids[0], lab[0], NB, 1, NT, 1e-4, 1.0, &l, &g);
        CHECK("fused AdamW: ft_train_step refuses GA 2 and clipping", a != FT_OK && b != FT_OK,
              "accepted");
        /* gradients: at most the non-layer tensors + one layer, far below the model size */
        const ft_config *c = &m.cfg;
        size_t layer = (size_t)c->dim * (c->n_heads * c->head_dim * 2 + c->n_kv_heads * 2 *
                                         c->head_dim + 3 * c->hidden_dim) + 2 * c->dim;
        size_t glob = (size_t)c->vocab_size * c->dim + c->dim;
        CHECK("fused AdamW: the gradient buffer holds one layer, not the model", ng <= glob + layer,
              "%zu floats for %zu parameters (one layer + globals %zu)", ng, n, glob + layer);
    }
    out->n = n;
    out->w = malloc(n * 4), out->m = malloc(n * 4), out->v = malloc(n * 4);
    memcpy(out->w, p, n * 4), memcpy(out->m, opt.m, n * 4), memcpy(out->v, opt.v, n * 4);
    rc = 0;
done:
    ft_adamw_free(&opt);
    ft_train_model_free(tm);
    return rc;
}

static void compare(const char *name, ft_method method, int bf16, int ckpt) {
    char label[200];
    run_out a = {0}, b = {0};
    if (!run(method, bf16, ckpt, 0, &a) && !run(method, bf16, ckpt, 1, &b)) {
        double worst = 0;
        for (int s = 0; s < STEPS; s++) worst = fmax(worst, fabs(a.norm[s] - b.norm[s]) / a.norm[s]);
        snprintf(label, sizeof label, "%s: losses bit-identical, grad norms within 1e-9", name);
        CHECK(label, !memcmp(a.loss, b.loss, sizeof a.loss) && worst <= 1e-9,
              "loss %.9g vs %.9g (last), worst norm rel %.3g", a.loss[STEPS - 1],
              b.loss[STEPS - 1], worst);
        snprintf(label, sizeof label, "%s: weights and moments bit-identical after %d steps", name,
                 STEPS);
        CHECK(label,
              a.n == b.n && !memcmp(a.w, b.w, a.n * 4) && !memcmp(a.m, b.m, a.n * 4) &&
                  !memcmp(a.v, b.v, a.n * 4),
              "they differ");
        snprintf(label, sizeof label, "%s: the steps moved the weights", name);
        CHECK(label, a.loss[STEPS - 1] != a.loss[0], "loss unchanged %.9g", a.loss[0]);
    }
    free(a.w), free(a.m), free(a.v), free(b.w), free(b.m), free(b.v);
}

int main(void) {
    uint64_t r = 0xada3;
    for (int s = 0; s < STEPS; s++)
        for (int i = 0; i < NB * NT; i++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            ids[s][i] = 3 + (int)((r >> 33) % 3000);
        }
    for (int s = 0; s < STEPS; s++)
        for (int i = 0; i < NB * NT; i++)
            lab[s][i] = i % 6 == 4 ? -100 : ids[s][(i + 1) % (NB * NT)];
    if (ft_model_load(&m, "models/stories15M")) {
        CHECK("load stories15M", 0, "%s (run make fixtures)", ft_error_message());
        return ft_test_exit();
    }
    pristine = malloc(m.n_params * sizeof(float));
    memcpy(pristine, m.params, m.n_params * sizeof(float));
    compare("full f32", FT_METHOD_FULL, 0, 0);
    compare("full bf16", FT_METHOD_FULL, 1, 0);
    compare("freeze bf16 (layers 2-3, final norm)", FT_METHOD_FREEZE, 1, 0);
    compare("full f32, gradient checkpointing", FT_METHOD_FULL, 0, 1);

    {
        ft_fused_adamw f;
        ft_train_options o;
        memset(&o, 0, sizeof o);
        o.method = FT_METHOD_LORA, o.lora.r = 4, o.lora.alpha = 8, o.lora.targets = FT_LORA_Q;
        o.B = 1, o.T = 8, o.grad_ready = ft_fused_adamw_ready, o.grad_ctx = &f;
        ft_train_model *tm = NULL;
        ft_status st = ft_train_model_init(&tm, &m, &o);
        CHECK("fused AdamW with LoRA is refused", st != FT_OK, "accepted");
        ft_train_model_free(tm);
    }
    ft_model_free(&m);
    free(pristine);
    return ft_test_exit();
}
