/*
 * The gradient engine against PyTorch (tests/ref/gen_grads.py): for tiny random models of each
 * family (llama MHA tied, llama GQA untied with llama3 rope scaling and explicit head_dim,
 * qwen2 with q/k/v biases, qwen3 with q/k norm, llama with attention and MLP biases), the loss and the gradient of every trainable
 * tensor for full fine-tuning, LoRA (plain and rsLoRA, all-linear and subsets) and a freeze
 * pattern, and LoRA with PEFT trainable tokens (tied list form, untied dict form with lm_head rows,
 * untied list form; also their adapter round trip: ft_lora_save -> ft_adapter_apply gives the
 * same loss, rows in place, trainable_token_indices in PEFT's form). Plus engine properties that need no reference: gradient checkpointing gives
 * bit-identical gradients (also with LoRA dropout), micro-steps ADD into the gradients, eval's
 * loss equals the training loss, a packed batch of two samples equals the two run separately,
 * a freeze pattern matching nothing is an error naming it, LoRA init, decay flags, and
 * ft_lora_save's files.
 *
 * Metric and tolerances (why):
 *   loss: |got-ref| <= 1e-5*|ref|. Both sides are f32 forward passes summing ~10^2..10^3 terms
 *     in different orders; observed ~1e-7.
 *   gradients: per tensor, ||got-ref||_2 / ||ref||_2 <= 1e-4 (the bound). Norm-wise,
 *     not elementwise: single entries that are sums of cancelling terms (e.g. attention-softmax
 *     and cross-entropy gradients) are small and carry the absolute rounding error of their big
 *     terms, so their elementwise relative error says nothing about correctness, while an error
 *     in any term of a derivation moves the whole tensor by O(1). Observed ~1e-6.
 *   packed vs separate: the same tolerances (different matmul shapes round differently).
 *   checkpointing on/off, eval vs train loss: exact (same kernels, same inputs).
 *   two micro-steps vs twice one, B rows as B one-row micro-steps: rel l2 1e-6 (repeated-token
 *     embedding rows sum in another order; other matmul shapes round differently); observed 7e-8.
 */
#include "../test.h"
#include "ftune/core.h"
#include "ftune/kernels.h"
#include "ftune/model.h"
#include "ftune/peft.h"
#include "ftune/safetensors.h"
#include "ftune/train.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#define LOSS_RTOL 1e-5
#define GRAD_RTOL 1e-4

static const char *ref_dir;
static char tmp_dir[512];

/* Copy a tensor of the reference file as f32 (F32) or int (I32); NULL + FAIL line if absent. */
static const ft_st_tensor *need(const ft_st_set *s, const char *name, ft_dtype dt, size_t numel) {
    const ft_st_tensor *t = ft_st_find(s, name);
    if (!t || t->dtype != dt || t->nbytes != numel * ft_dtype_size(dt)) {
        CHECK(name, 0, "reference tensor missing or of the wrong dtype/size");
        return NULL;
    }
    return t;
}

/* Copy the reference's value of every trainable tensor (by name) into the trainable buffer; 0 if
 * one is missing or has another shape (need() reports which). */
static int load_trainables(const ft_st_set *ref, const ft_trainable *t, int n) {
    int loaded = 1;
    for (int i = 0; i < n; i++) {
        const ft_st_tensor *v = need(ref, t[i].name, FT_DTYPE_F32, t[i].numel);
        if (!v)
            loaded = 0;
        else
            memcpy(t[i].param, v->data, t[i].numel * sizeof(float));
    }
    return loaded;
}

static size_t st_numel(const ft_st_tensor *t) {
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= (size_t)t->shape[i];
    return n;
}

typedef struct {
    int B, T;
    int *inputs, *labels;
    float loss;
    int64_t n_targets;
} batch;

static int read_batch(const ft_st_set *s, batch *b) {
    const ft_st_tensor *ti = ft_st_find(s, "inputs"), *tl = ft_st_find(s, "labels"),
                       *tloss = ft_st_find(s, "loss");
    if (!ti || !tl || !tloss || ti->ndim != 2 || ti->dtype != FT_DTYPE_I32 ||
        tl->dtype != FT_DTYPE_I32 || tl->nbytes != ti->nbytes || tloss->dtype != FT_DTYPE_F32) {
        CHECK("reference_batch", 0, "inputs/labels/loss missing or malformed");
        return 0;
    }
    b->B = (int)ti->shape[0];
    b->T = (int)ti->shape[1];
    size_t n = (size_t)b->B * b->T;
    b->inputs = malloc(n * sizeof(int));
    b->labels = malloc(n * sizeof(int));
    memcpy(b->inputs, ti->data, n * sizeof(int));
    memcpy(b->labels, tl->data, n * sizeof(int));
    memcpy(&b->loss, tloss->data, sizeof(float));
    b->n_targets = 0;
    for (size_t i = 0; i < n; i++)
        b->n_targets += b->labels[i] != -100;
    return 1;
}

static void free_batch(batch *b) {
    free(b->inputs);
    free(b->labels);
}

/* zero_grad + one micro-step with loss_scale 1/n_targets (the mean loss PyTorch differentiates) */
static int step(ft_train_model *tm, const batch *b, double *loss) {
    double nll;
    int64_t n;
    ft_train_zero_grad(tm);
    ft_status st = ft_train_micro_step(tm, b->inputs, b->labels, NULL, NULL, b->B, b->T,
                                       1.0f / (float)b->n_targets, &nll, &n);
    if (st != FT_OK) {
        CHECK("micro_step", 0, "%s", ft_error_message());
        return 0;
    }
    if (n != b->n_targets)
        CHECK("micro_step_targets", 0, "%lld targets, want %lld", (long long)n,
              (long long)b->n_targets);
    *loss = nll / (double)n;
    return 1;
}

/* Compare every trainable's gradient with "grad.<name>" and require the reference to hold no
 * gradient we did not produce. */
static void compare_grads(const char *label, ft_train_model *tm, const ft_st_set *ref) {
    int n;
    const ft_trainable *tr = ft_train_tensors(tm, &n);
    int n_ref = 0;
    for (int i = 0; i < ref->n_tensors; i++)
        n_ref += strncmp(ref->tensors[i].name, "grad.", 5) == 0;
    char name[320];
    snprintf(name, sizeof name, "%s_trainable_set", label);
    CHECK(name, n == n_ref, "%d trainable tensors, reference has %d gradients", n, n_ref);
    double worst = 0;
    const char *worst_name = "";
    int bad = 0;
    for (int i = 0; i < n; i++) {
        char key[256];
        snprintf(key, sizeof key, "grad.%s", tr[i].name);
        const ft_st_tensor *t = need(ref, key, FT_DTYPE_F32, tr[i].numel);
        if (!t) {
            bad++;
            continue;
        }
        double e = rel_l2(tr[i].grad, (const float *)t->data, tr[i].numel);
        if (!(e <= GRAD_RTOL)) {
            bad++;
            printf("  %s %s: rel l2 error %.3g\n", label, tr[i].name, e);
        }
        if (!(e <= worst)) worst = e, worst_name = tr[i].name;
    }
    snprintf(name, sizeof name, "%s_grads", label);
    CHECK(name, bad == 0 && n > 0, "%d of %d tensors off; worst %s rel l2 %.3g (tol %.0e)", bad, n,
          worst_name, worst, GRAD_RTOL);
    printf("  %s: worst gradient rel l2 error %.3g (%s)\n", label, worst, worst_name);
}

static void check_loss(const char *label, double got, float ref) {
    char name[256];
    snprintf(name, sizeof name, "%s_loss", label);
    double e = fabs(got - ref) / fabs((double)ref);
    CHECK(name, e <= LOSS_RTOL, "loss %.9g ref %.9g (rel %.3g)", got, (double)ref, e);
    printf("  %s: loss rel error %.3g\n", label, e);
}

static int open_ref(ft_st_set *s, const char *model, const char *file) {
    char path[1024];
    snprintf(path, sizeof path, "%s/grads/%s/%s", ref_dir, model, file);
    if (ft_st_open(s, path) != FT_OK) {
        CHECK(file, 0, "%s", ft_error_message());
        return 0;
    }
    return 1;
}

static ft_train_options base_opts(ft_method method, const batch *b) {
    ft_train_options o;
    memset(&o, 0, sizeof o);
    o.method = method;
    o.B = b->B;
    o.T = b->T;
    o.seed = 42;
    return o;
}

/* grads of tm with checkpointing on must be bit-identical to `ref` (checkpointing off) */
static void check_ckpt_identical(const char *label, ft_model *m, ft_train_options o, const batch *b,
                                 const float *ref_grads, size_t n_ref, const float *lora_params,
                                 uint64_t rng) {
    o.grad_checkpointing = 1;
    ft_train_model *tm;
    char name[256];
    snprintf(name, sizeof name, "%s_checkpointing_identical", label);
    if (ft_train_model_init(&tm, m, &o) != FT_OK) {
        CHECK(name, 0, "%s", ft_error_message());
        return;
    }
    size_t n;
    float *p = ft_train_params(tm, &n);
    if (lora_params) memcpy(p, lora_params, n * sizeof(float));
    ft_train_set_rng_state(tm, rng);
    double loss;
    if (step(tm, b, &loss)) {
        float *g = ft_train_grads(tm, &n);
        CHECK(name, n == n_ref && memcmp(g, ref_grads, n * sizeof(float)) == 0,
              "gradients differ (n %zu vs %zu, rel l2 %.3g)", n, n_ref, rel_l2(g, ref_grads, n));
    }
    ft_train_model_free(tm);
}

/* copy of the trainable gradient (which=0) or parameter (which=1) buffer; *n gets its length */
static float *dup_buf(ft_train_model *tm, int which, size_t *n) {
    const float *p = which ? ft_train_params(tm, n) : ft_train_grads(tm, n);
    float *d = malloc(*n * sizeof(float));
    memcpy(d, p, *n * sizeof(float));
    return d;
}

static void test_full(const char *model, ft_model *m) {
    ft_st_set ref;
    if (!open_ref(&ref, model, "ref_full.safetensors")) return;
    batch b;
    if (read_batch(&ref, &b)) {
        char label[128];
        snprintf(label, sizeof label, "%s_full", model);
        ft_train_options o = base_opts(FT_METHOD_FULL, &b);
        ft_train_model *tm;
        if (ft_train_model_init(&tm, m, &o) != FT_OK) {
            CHECK(label, 0, "%s", ft_error_message());
        } else {
            double loss;
            if (step(tm, &b, &loss)) {
                check_loss(label, loss, b.loss);
                compare_grads(label, tm, &ref);
                size_t n;
                float *g0 = dup_buf(tm, 0, &n);
                check_ckpt_identical(label, m, o, &b, g0, n, NULL, 0);
                /* a second micro-step without zero_grad ADDS the same gradient again. g + g == 2g
                 * exactly for tensors that get one addition per step; embedding rows of repeated
                 * tokens (and the tied head) get several, summed in a different order the second
                 * time, so the check is rel l2 <= 1e-6 (a few f32 roundings) */
                double nll;
                int64_t nt;
                ft_train_micro_step(tm, b.inputs, b.labels, NULL, NULL, b.B, b.T,
                                    1.0f / (float)b.n_targets, &nll, &nt);
                float *g = ft_train_grads(tm, &n);
                for (size_t i = 0; i < n; i++)
                    g0[i] *= 2.0f;
                double e = rel_l2(g, g0, n);
                char name[160];
                snprintf(name, sizeof name, "%s_micro_steps_add", label);
                CHECK(name, e <= 1e-6, "two steps vs twice one step: rel l2 %.3g", e);
                /* accumulation: the rows as B micro-steps of one row each (B < the B sized for)
                 * with the same loss_scale give the same gradient as one B-row step */
                ft_train_zero_grad(tm);
                double nll1 = 0;
                for (int r = 0; r < b.B; r++) {
                    double x;
                    int64_t nx;
                    ft_train_micro_step(tm, b.inputs + r * b.T, b.labels + r * b.T, NULL, NULL, 1,
                                        b.T, 1.0f / (float)b.n_targets, &x, &nx);
                    nll1 += x;
                }
                for (size_t i = 0; i < n; i++)
                    g0[i] *= 0.5f; /* back to one step's gradient */
                e = rel_l2(ft_train_grads(tm, &n), g0, n);
                snprintf(name, sizeof name, "%s_rows_as_micro_steps", label);
                CHECK(name, e <= 1e-6 && fabs(nll1 - nll) <= 1e-6 * fabs(nll),
                      "grads rel l2 %.3g, nll %.9g vs %.9g", e, nll1, nll);
                /* eval: same forward, no backward */
                double enll;
                int64_t en;
                ft_status st =
                    ft_train_eval(tm, b.inputs, b.labels, NULL, NULL, b.B, b.T, &enll, &en);
                snprintf(name, sizeof name, "%s_eval_equals_train_loss", label);
                CHECK(name, st == FT_OK && enll == nll && en == nt,
                      "eval %.17g (%lld) vs train %.17g (%lld)", enll, (long long)en, nll,
                      (long long)nt);
                free(g0);
            }
            ft_train_model_free(tm);
        }
        free_batch(&b);
    }
    ft_st_close(&ref);
}

static void test_freeze(const char *model, ft_model *m) {
    ft_st_set ref;
    if (!open_ref(&ref, model, "ref_freeze.safetensors")) return;
    /* the patterns the reference used, one a line */
    char path[1024], *text = NULL;
    snprintf(path, sizeof path, "%s/grads/freeze_patterns.txt", ref_dir);
    const char *pats[16];
    int np = 0;
    if (ft_read_file(path, &text, NULL) == FT_OK)
        for (char *s = strtok(text, "\n"); s && np < 16; s = strtok(NULL, "\n"))
            pats[np++] = s;
    batch b;
    if (np > 0 && read_batch(&ref, &b)) {
        char label[128];
        snprintf(label, sizeof label, "%s_freeze", model);
        ft_train_options o = base_opts(FT_METHOD_FREEZE, &b);
        o.unfrozen = pats;
        o.n_unfrozen = np;
        ft_train_model *tm;
        if (ft_train_model_init(&tm, m, &o) != FT_OK) {
            CHECK(label, 0, "%s", ft_error_message());
        } else {
            double loss;
            if (step(tm, &b, &loss)) {
                check_loss(label, loss, b.loss);
                compare_grads(label, tm, &ref);
                size_t n;
                float *g0 = dup_buf(tm, 0, &n);
                check_ckpt_identical(label, m, o, &b, g0, n, NULL, 0);
                free(g0);
            }
            /* sync writes the (here unchanged) trainable copy back: the model must be intact */
            ft_train_sync_model(tm);
            ft_train_model_free(tm);
        }
        free_batch(&b);
    } else if (np == 0) {
        CHECK("freeze_patterns", 0, "cannot read %s", path);
    }
    free(text);
    ft_st_close(&ref);
}

/* bf16 against f32 on the same model and batch: gradients rel l2 <= 0.15 per tensor (the bf16
 * tolerance of test_tokens, same random models). A wrong term, layout or input is off by O(1).
 *   full: every bf16 path of full fine-tuning — q/k/v as one product where the model allows it
 *     (plain llama: no bias, no q/k norm) and three otherwise (qwen2's biases, qwen3's norms),
 *     gate/up rounded by their products, o_proj's and down's residual added in their epilogues,
 *     the tied / untied head; observed 0.025-0.057 (v shifted by one element in the fused q/k/v
 *     rows: 1.5-1.9).
 *   lora (all linear; q and v only), LoRA B set non-zero: the bf16 LoRA branch on each model,
 *     frozen q/k/v as one kept weight (plain llama) or three (qwen2's biases, qwen3's norms), the
 *     group passes with and without holes (k untargeted), the folded RMSNorm, SwiGLU and RoPE
 *     passes, the B sides' backward on bf16 operands; observed 0.023-0.073 (q/k/v's LoRA terms
 *     added to packed rows where they sit side by side: 0.28-0.65).
 *   freeze (k, up trained): each layer input is packed once for the weight gradients of the
 *     modules that read it (q/k/v, gate/up) and the pack reused within the group; with the
 *     group's first module frozen (q, gate) and a later one trained (k, up), the pack must still
 *     be made from this group's input, not left over from the last group; observed 0.017-0.051
 *     (1.0-1.3 when the pack was left from the other group). */
/* LoRA B set to the same non-zero values in both runs (at init B = 0, and every dA would be 0) */
static void set_lora_b(ft_train_model *tm) {
    int n;
    const ft_trainable *t = ft_train_tensors(tm, &n);
    uint64_t r = 0x5eed;
    for (int i = 0; i < n; i++)
        if (strstr(t[i].name, "lora_B"))
            for (size_t k = 0; k < t[i].numel; k++) {
                r = r * 6364136223846793005ull + 1442695040888963407ull;
                t[i].param[k] = ((float)(r >> 40) / 16777216.0f - 0.5f) * 0.05f;
            }
}

static void test_bf16_close(const char *model, ft_model *m, ft_method method, unsigned targets) {
    if (!ft_cpu_has_bf16()) return;
    ft_st_set ref;
    if (!open_ref(&ref, model, "ref_freeze.safetensors")) return; /* for its batch */
    batch b;
    if (read_batch(&ref, &b)) {
        const char *pats[] = {"model.layers.[0-9]+.self_attn.k_proj.weight",
                              "model.layers.[0-9]+.mlp.up_proj.weight"};
        ft_train_options o = base_opts(method, &b);
        if (method == FT_METHOD_FREEZE) {
            o.unfrozen = pats;
            o.n_unfrozen = 2;
        }
        if (method == FT_METHOD_LORA)
            o.lora = (ft_lora_config){.r = 4, .alpha = 8, .targets = targets};
        ft_train_model *t32, *t16;
        char label[128];
        snprintf(label, sizeof label, "%s_%s_bf16_close_to_f32", model,
                 method == FT_METHOD_FREEZE ? "freeze_k_up"
                 : method == FT_METHOD_LORA
                     ? (targets == FT_LORA_ALL_LINEAR ? "lora_all" : "lora_qv")
                     : "full");
        if (ft_train_model_init(&t32, m, &o) != FT_OK) {
            CHECK(label, 0, "%s", ft_error_message());
        } else {
            o.bf16 = 1;
            if (ft_train_model_init(&t16, m, &o) != FT_OK) {
                CHECK(label, 0, "%s", ft_error_message());
            } else {
                double l32, l16;
                if (method == FT_METHOD_LORA) set_lora_b(t32), set_lora_b(t16);
                if (step(t32, &b, &l32) && step(t16, &b, &l16)) {
                    int n32, n16;
                    const ft_trainable *a = ft_train_tensors(t32, &n32),
                                       *c = ft_train_tensors(t16, &n16);
                    double worst = n32 == n16 && n32 > 0 ? 0 : INFINITY;
                    const char *wn = "";
                    for (int i = 0; i < n32 && n32 == n16; i++) {
                        double e = rel_l2(c[i].grad, a[i].grad, a[i].numel);
                        if (!(e <= worst)) worst = e, wn = a[i].name;
                    }
                    printf("  %s: worst tensor rel l2 %.3g (%s), loss %.6f vs %.6f\n", label, worst,
                           wn, l16, l32);
                    CHECK(label, worst <= 0.15 && fabs(l16 - l32) <= 0.01 * fabs(l32),
                          "worst tensor rel l2 %.3g (%s) of %d tensors, loss %.6f vs %.6f", worst,
                          wn, n32, l16, l32);
                }
                ft_train_model_free(t16);
            }
            ft_train_model_free(t32);
        }
        free_batch(&b);
    }
    ft_st_close(&ref);
}

static void test_lora(const char *model, ft_model *m, const char *variant) {
    ft_st_set ref;
    char file[128];
    snprintf(file, sizeof file, "ref_lora_%s.safetensors", variant);
    if (!open_ref(&ref, model, file)) return;
    const ft_st_tensor *tr_ = need(&ref, "lora.r", FT_DTYPE_I32, 1),
                       *ta = need(&ref, "lora.alpha", FT_DTYPE_F32, 1),
                       *trs = need(&ref, "lora.rslora", FT_DTYPE_I32, 1),
                       *tt = need(&ref, "lora.targets", FT_DTYPE_I32, 1);
    batch b;
    if (tr_ && ta && trs && tt && read_batch(&ref, &b)) {
        char label[128];
        snprintf(label, sizeof label, "%s_lora_%s", model, variant);
        ft_train_options o = base_opts(FT_METHOD_LORA, &b);
        int32_t iv;
        memcpy(&iv, tr_->data, 4), o.lora.r = iv;
        memcpy(&o.lora.alpha, ta->data, 4);
        memcpy(&iv, trs->data, 4), o.lora.use_rslora = iv;
        memcpy(&iv, tt->data, 4), o.lora.targets = (unsigned)iv;
        ft_train_model *tm;
        if (ft_train_model_init(&tm, m, &o) != FT_OK) {
            CHECK(label, 0, "%s", ft_error_message());
        } else {
            /* PEFT init as promised: A in [-1/sqrt(in), 1/sqrt(in)] and not all equal, B = 0 */
            int n;
            const ft_trainable *t = ft_train_tensors(tm, &n);
            int init_ok = n > 0, dec_ok = 1;
            for (int i = 0; i < n; i++) {
                int is_a = strstr(t[i].name, "lora_A") != NULL;
                float bound = 1.0f / sqrtf((float)t[i].cols);
                float mn = INFINITY, mx = -INFINITY;
                for (size_t k = 0; k < t[i].numel; k++) {
                    float v = t[i].param[k];
                    mn = v < mn ? v : mn, mx = v > mx ? v : mx;
                }
                if (is_a && !(mn >= -bound && mx <= bound && mx - mn > bound)) init_ok = 0;
                if (!is_a && !(mn == 0 && mx == 0)) init_ok = 0;
                if (!t[i].decay) dec_ok = 0;
            }
            char name[160];
            snprintf(name, sizeof name, "%s_init", label);
            CHECK(name, init_ok, "A not kaiming-uniform(a=sqrt 5) or B not zero");
            snprintf(name, sizeof name, "%s_decay_flags", label);
            CHECK(name, dec_ok, "LoRA A/B must all be decayed (HF: no 'bias'/'norm' in the name)");
            /* load the reference A and B by PEFT name */
            int loaded = load_trainables(&ref, t, n);
            double loss;
            if (loaded && step(tm, &b, &loss)) {
                check_loss(label, loss, b.loss);
                compare_grads(label, tm, &ref);
                size_t np;
                float *p0 = dup_buf(tm, 1, &np);
                /* with dropout on: checkpointing must reproduce the masks bit-exactly */
                ft_train_model_free(tm);
                o.lora.dropout = 0.25f;
                if (ft_train_model_init(&tm, m, &o) == FT_OK) {
                    memcpy(ft_train_params(tm, &np), p0, np * sizeof(float));
                    uint64_t rng = ft_train_rng_state(tm);
                    double dl;
                    if (step(tm, &b, &dl)) {
                        float *g = dup_buf(tm, 0, &np);
                        char lab2[160];
                        snprintf(lab2, sizeof lab2, "%s_dropout", label);
                        check_ckpt_identical(lab2, m, o, &b, g, np, p0, rng);
                        /* dropout changes the gradient, and replaying the rng state repeats it */
                        snprintf(name, sizeof name, "%s_dropout_changes_grads", label);
                        CHECK(name, fabs(dl - loss) > 1e-6 * fabs(loss),
                              "loss %.9g with dropout, %.9g without", dl, loss);
                        ft_train_set_rng_state(tm, rng);
                        step(tm, &b, &dl);
                        snprintf(name, sizeof name, "%s_dropout_rng_replay", label);
                        CHECK(name, memcmp(g, ft_train_grads(tm, &np), np * sizeof(float)) == 0,
                              "same rng state, different gradients");
                        free(g);
                    }
                } else {
                    tm = NULL;
                    CHECK(label, 0, "%s", ft_error_message());
                }
                free(p0);
            }
            ft_train_model_free(tm);
        }
        free_batch(&b);
    }
    ft_st_close(&ref);
}

/* A packed row [sample a | sample b] with seg ids and restarting positions must give the same
 * NLL sum and gradients as the two samples run as their own rows. */
static void test_packed(const char *model, ft_model *m) {
    enum { TA = 4, TB = 5, T = TA + TB };
    int in[T], lab[T], seg[T], pos[T];
    for (int t = 0; t < T; t++) {
        in[t] = (7 * t + 3) % m->cfg.vocab_size;
        lab[t] = t == 2 ? -100 : (5 * t + 1) % m->cfg.vocab_size;
        seg[t] = t < TA ? 0 : 1;
        pos[t] = t < TA ? t : t - TA;
    }
    ft_train_options o;
    memset(&o, 0, sizeof o);
    o.method = FT_METHOD_FULL;
    o.B = 1, o.T = T;
    ft_train_model *tm;
    char name[128];
    snprintf(name, sizeof name, "%s_packed_equals_separate", model);
    if (ft_train_model_init(&tm, m, &o) != FT_OK) {
        CHECK(name, 0, "%s", ft_error_message());
        return;
    }
    double nll_p, nll_a, nll_b;
    int64_t n_p, n_a, n_b;
    ft_train_zero_grad(tm);
    ft_status st = ft_train_micro_step(tm, in, lab, pos, seg, 1, T, 0.125f, &nll_p, &n_p);
    size_t n;
    float *gp = dup_buf(tm, 0, &n);
    ft_train_zero_grad(tm);
    if (st == FT_OK) st = ft_train_micro_step(tm, in, lab, NULL, NULL, 1, TA, 0.125f, &nll_a, &n_a);
    if (st == FT_OK)
        st = ft_train_micro_step(tm, in + TA, lab + TA, NULL, NULL, 1, TB, 0.125f, &nll_b, &n_b);
    if (st != FT_OK) {
        CHECK(name, 0, "%s", ft_error_message());
    } else {
        double e = rel_l2(gp, ft_train_grads(tm, &n), n);
        double sep = nll_a + nll_b;
        CHECK(name,
              n_p == n_a + n_b && fabs(nll_p - sep) <= LOSS_RTOL * fabs(sep) && e <= GRAD_RTOL,
              "nll %.9g vs %.9g, targets %lld vs %lld, grads rel l2 %.3g", nll_p, sep,
              (long long)n_p, (long long)(n_a + n_b), e);
        /* and without the seg mask the second sample sees the first: the loss must differ */
        double nll_x;
        int64_t n_x;
        ft_train_micro_step(tm, in, lab, pos, NULL, 1, T, 0.125f, &nll_x, &n_x);
        snprintf(name, sizeof name, "%s_seg_mask_matters", model);
        CHECK(name, fabs(nll_x - nll_p) > 1e-6 * fabs(nll_p), "nll %.9g with and without seg",
              nll_p);
    }
    free(gp);
    ft_train_model_free(tm);
}

/* LoRA dropout has no PyTorch twin (different RNGs), so its backward is checked against the
 * loss itself: with the rng state fixed (the same masks), the central difference
 * (L(p + eps u) - L(p - eps u)) / 2eps along u = g/|g| must equal g.u = |g|. A wrong mask, a
 * missing 1/(1-p) or a mask applied on one path only changes the true slope along u, not g.u.
 * L is a mean over targets computed in f32 (rounding ~1e-6 of ~4): with eps = 3e-3 that is
 * ~1e-4 of the slope, the truncation error O(eps^2) was measured at 5e-4 of |g|; tolerance 5e-3
 * of |g|. LoRA B is set to O(1) values so the LoRA input-gradient path carries weight: dropping
 * the 1/(1-p) from the dropout backward alone moves the slope by 5%. */
static void test_dropout_fd(const char *model, ft_model *m) {
    ft_st_set ref;
    if (!open_ref(&ref, model, "ref_lora_all.safetensors")) return;
    batch b;
    if (read_batch(&ref, &b)) {
        ft_train_options o = base_opts(FT_METHOD_LORA, &b);
        o.lora =
            (ft_lora_config){.r = 4, .alpha = 8, .dropout = 0.3f, .targets = FT_LORA_ALL_LINEAR};
        ft_train_model *tm;
        char name[128];
        snprintf(name, sizeof name, "%s_lora_dropout_directional_derivative", model);
        if (ft_train_model_init(&tm, m, &o) != FT_OK) {
            CHECK(name, 0, "%s", ft_error_message());
        } else {
            size_t n;
            float *p = ft_train_params(tm, &n);
            uint64_t rs = 12345;
            float *v = malloc(n * sizeof(float)), *p0 = malloc(n * sizeof(float));
            for (size_t i = 0; i < n; i++) { /* B = 0 at init: give it values too */
                rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
                if (p[i] == 0) p[i] = 1.0f * ((float)(rs >> 40) / 16777216.0f - 0.5f);
                rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
                v[i] = (rs >> 63) ? 1.0f : -1.0f;
            }
            memcpy(p0, p, n * sizeof(float));
            uint64_t s = ft_train_rng_state(tm);
            double l0, lp, lm;
            step(tm, &b, &l0);
            double gn = 0;
            const float *g = ft_train_grads(tm, &n);
            for (size_t i = 0; i < n; i++)
                gn += (double)g[i] * g[i];
            gn = sqrt(gn);
            for (size_t i = 0; i < n; i++)
                v[i] = (float)(g[i] / gn);
            const float eps = 3e-3f;
            for (size_t i = 0; i < n; i++)
                p[i] = p0[i] + eps * v[i];
            ft_train_set_rng_state(tm, s);
            step(tm, &b, &lp);
            for (size_t i = 0; i < n; i++)
                p[i] = p0[i] - eps * v[i];
            ft_train_set_rng_state(tm, s);
            step(tm, &b, &lm);
            double fd = (lp - lm) / (2.0 * eps);
            CHECK(name, fabs(fd - gn) <= 5e-3 * gn,
                  "slope along g/|g|: finite difference %.6g, |g| %.6g", fd, gn);
            printf("  dropout directional derivative: fd %.7g |g| %.7g\n", fd, gn);
            free(v);
            free(p0);
            ft_train_model_free(tm);
        }
        free_batch(&b);
    }
    ft_st_close(&ref);
}

/* Read an I32 vector "name" of the reference (NULL, *n = 0 when absent). */
static const int32_t *ref_ids(const ft_st_set *s, const char *name, int *n) {
    const ft_st_tensor *t = ft_st_find(s, name);
    *n = t && t->dtype == FT_DTYPE_I32 && t->ndim == 1 ? (int)t->shape[0] : 0;
    return *n ? (const int32_t *)t->data : NULL;
}

/* LoRA + PEFT trainable tokens (ref_tokens.safetensors): init to the base rows, loss and every
 * gradient (incl. the token rows: embedding lookup + head parts) vs PyTorch, checkpointing
 * bit-identical, eval == train loss, and the bf16 path close to the f32 one. */
static void test_tokens(const char *model, ft_model *m) {
    ft_st_set ref;
    if (!open_ref(&ref, model, "ref_tokens.safetensors")) return;
    int ne, nh, nd;
    const int32_t *ide = ref_ids(&ref, "tok.embed", &ne), *idh = ref_ids(&ref, "tok.head", &nh),
                  *isdict = ref_ids(&ref, "tok.dict", &nd);
    batch b;
    char label[128], name[192];
    snprintf(label, sizeof label, "%s_lora_tokens", model);
    if (!ide || !isdict || !read_batch(&ref, &b)) {
        CHECK(label, 0, "reference lacks tok.embed / tok.dict or the batch");
        ft_st_close(&ref);
        return;
    }
    int ids_e[64], ids_h[64];
    for (int k = 0; k < ne && k < 64; k++) ids_e[k] = ide[k];
    for (int k = 0; k < nh && k < 64; k++) ids_h[k] = idh[k];
    ft_train_options o = base_opts(FT_METHOD_LORA, &b);
    o.lora = (ft_lora_config){.r = 4, .alpha = 8, .targets = FT_LORA_ALL_LINEAR};
    o.tok_embed = ids_e, o.n_tok_embed = ne;
    o.tok_head = nh ? ids_h : NULL, o.n_tok_head = nh;
    o.tok_as_dict = isdict[0];
    ft_train_model *tm;
    if (ft_train_model_init(&tm, m, &o) != FT_OK) {
        CHECK(label, 0, "%s", ft_error_message());
        free_batch(&b);
        ft_st_close(&ref);
        return;
    }
    /* PEFT's init_weights=True: the token tensors start as copies of the base rows */
    int n, init_ok = 1, n_tok = 0;
    const ft_trainable *t = ft_train_tensors(tm, &n);
    const int C = m->cfg.dim;
    for (int i = 0; i < n; i++) {
        int head = strstr(t[i].name, "lm_head.token_adapter") != NULL;
        if (!head && !strstr(t[i].name, "embed_tokens.token_adapter")) continue;
        n_tok++;
        const float *base = head ? m->w.lm_head : m->w.embed;
        const int *ids = head ? ids_h : ids_e;
        init_ok &= t[i].rows == (head ? nh : ne) && t[i].cols == C && t[i].decay;
        for (int k = 0; init_ok && k < t[i].rows; k++)
            init_ok = !memcmp(t[i].param + (size_t)k * C, base + (size_t)ids[k] * C, C * 4);
    }
    snprintf(name, sizeof name, "%s_init_is_base_rows", label);
    CHECK(name, init_ok && n_tok == 1 + (nh > 0), "%d token tensors; rows, shape or decay wrong",
          n_tok);
    int loaded = load_trainables(&ref, t, n);
    double loss;
    if (loaded && step(tm, &b, &loss)) {
        check_loss(label, loss, b.loss);
        compare_grads(label, tm, &ref);
        size_t np;
        float *g0 = dup_buf(tm, 0, &np), *p0 = dup_buf(tm, 1, &np);
        check_ckpt_identical(label, m, o, &b, g0, np, p0, 0);
        double enll;
        int64_t en;
        ft_status st = ft_train_eval(tm, b.inputs, b.labels, NULL, NULL, b.B, b.T, &enll, &en);
        snprintf(name, sizeof name, "%s_eval_equals_train_loss", label);
        CHECK(name, st == FT_OK && fabs(enll / (double)en - loss) <= 1e-12 * loss,
              "eval %.17g vs train %.17g", enll / (double)en, loss);
        /* bf16 mixed precision: the same rows must take part (their logits and gradients are
         * f32 inside the bf16 head). Tolerance rel l2 0.15 per tensor and 1% on the loss: bf16
         * operands round at 2^-8 through two layers of these random models, whose loss is ~16;
         * a row used in one path only is off by O(1). Observed worst tensor 0.04 when only the
         * matmul operands were bf16; since q, k, v and gate, up are stored as bf16 (autocast's
         * recipe) 0.114, on llama_mha's layer-0 k_proj lora_B (each of the q, k, v roundings
         * alone takes it from 0.072 to 0.09-0.10: k's gradient is the small remainder of
         * softmax's shift invariance, so it amplifies rounding). For scale: torch.autocast
         * (bf16, CPU) on the same model and batch is up to 0.068 per tensor from fp32. */
        if (ft_cpu_has_bf16()) {
            ft_train_model *tb;
            o.bf16 = 1;
            if (ft_train_model_init(&tb, m, &o) == FT_OK) {
                memcpy(ft_train_params(tb, &np), p0, np * sizeof(float));
                double lb;
                if (step(tb, &b, &lb)) {
                    int nb;
                    const ft_trainable *tt = ft_train_tensors(tb, &nb);
                    double worst = 0;
                    const char *wn = "";
                    for (int i = 0; i < nb; i++) {
                        double e = rel_l2(tt[i].grad, g0 + (tt[i].grad - ft_train_grads(tb, &np)),
                                          tt[i].numel);
                        if (strstr(tt[i].name, "token_adapter"))
                            printf("  bf16 %s: rel l2 %.3g\n", tt[i].name, e);
                        if (!(e <= worst)) worst = e, wn = tt[i].name;
                    }
                    printf("  %s bf16: worst tensor rel l2 %.3g (%s)\n", label, worst, wn);
                    snprintf(name, sizeof name, "%s_bf16_close_to_f32", label);
                    CHECK(name, worst <= 0.15 && fabs(lb - loss) <= 1e-2 * loss,
                          "worst tensor rel l2 %.3g (%s), loss %.7g vs %.7g", worst, wn, lb, loss);
                }
                ft_train_model_free(tb);
            } else {
                CHECK(label, 0, "bf16 init: %s", ft_error_message());
            }
        }
        /* the adapter round trip: ft_lora_save, then ft_adapter_apply (what --adapter and
         * `ftune merge` do) on a fresh copy of the model gives the same loss without any adapter
         * in the step, and the token rows land in the embedding / head */
        char dir[700], mdir[1024];
        snprintf(dir, sizeof dir, "%s/tok_adapter_%s", tmp_dir, model);
        snprintf(mdir, sizeof mdir, "%s/grads/%s", ref_dir, model);
        ft_model m2;
        ft_status st2 = ft_lora_save(tm, dir, mdir);
        if (st2 == FT_OK) st2 = ft_model_load(&m2, mdir);
        if (st2 == FT_OK) {
            st2 = ft_adapter_apply(&m2, dir);
            int rows_ok = st2 == FT_OK;
            for (int i = 0; rows_ok && i < n; i++) {
                int head = strstr(t[i].name, "lm_head.token_adapter") != NULL;
                if (!head && !strstr(t[i].name, "embed_tokens.token_adapter")) continue;
                const float *W = head ? m2.w.lm_head : m2.w.embed;
                for (int k = 0; rows_ok && k < t[i].rows; k++)
                    rows_ok = !memcmp(W + (size_t)(head ? ids_h : ids_e)[k] * C,
                                      t[i].param + (size_t)k * C, C * 4);
            }
            ft_train_options of = base_opts(FT_METHOD_FULL, &b);
            ft_train_model *tf = NULL;
            double mnll = 0;
            int64_t mn = 0;
            if (rows_ok && ft_train_model_init(&tf, &m2, &of) == FT_OK)
                ft_train_eval(tf, b.inputs, b.labels, NULL, NULL, b.B, b.T, &mnll, &mn);
            ft_train_model_free(tf);
            snprintf(name, sizeof name, "%s_adapter_merge_round_trip", label);
            CHECK(name, rows_ok && mn == b.n_targets && fabs(mnll / mn - loss) <= 1e-5 * loss,
                  "%s; rows %s; merged loss %.9g vs %.9g", st2 ? ft_error_message() : "loaded",
                  rows_ok ? "in place" : "wrong", mn ? mnll / mn : 0.0, loss);
            ft_model_free(&m2);
        } else {
            CHECK(label, 0, "adapter round trip: %s", ft_error_message());
        }
        /* adapter_config.json: PEFT's list or dict form, as given */
        char path[800], *text = NULL;
        snprintf(path, sizeof path, "%s/adapter_config.json", dir);
        if (ft_read_file(path, &text, NULL) == FT_OK) {
            cJSON *j = cJSON_Parse(text);
            const cJSON *tti = cJSON_GetObjectItem(j, "trainable_token_indices");
            const cJSON *le = isdict[0] ? cJSON_GetObjectItem(tti, "embed_tokens") : tti;
            const cJSON *lh = cJSON_GetObjectItem(tti, "lm_head");
            int ok = cJSON_IsArray(le) && cJSON_GetArraySize(le) == ne &&
                     cJSON_GetArrayItem(le, 0)->valueint == ids_e[0] &&
                     (isdict[0] ? cJSON_IsObject(tti) && cJSON_GetArraySize(lh) == nh
                                : cJSON_IsArray(tti));
            snprintf(name, sizeof name, "%s_adapter_config_tokens", label);
            CHECK(name, ok, "trainable_token_indices in %s", text);
            cJSON_Delete(j);
        }
        free(text);
        free(g0);
        free(p0);
    }
    ft_train_model_free(tm);
    free_batch(&b);
    ft_st_close(&ref);
}

/* Trainable-token options the engine refuses, each with a message naming the problem. */
static void test_tokens_errors(ft_model *m, int tied) {
    ft_train_options o;
    memset(&o, 0, sizeof o);
    o.method = FT_METHOD_LORA;
    o.B = 1, o.T = 4;
    o.lora = (ft_lora_config){.r = 2, .alpha = 4, .targets = FT_LORA_Q};
    int out[1] = {m->cfg.vocab_size}, dup[2] = {3, 3}, a[2] = {1, 2}, b2[2] = {2, 1};
    struct {
        const char *name;
        const int *e, *h;
        int ne, nh;
        ft_method method;
        const char *want;
    } cases[] = {
        {"tokens_id_outside_vocab", out, NULL, 1, 0, FT_METHOD_LORA, "outside the vocabulary"},
        {"tokens_duplicate_id", dup, NULL, 2, 0, FT_METHOD_LORA, "appears twice"},
        {"tokens_need_lora", a, NULL, 2, 0, FT_METHOD_FULL, "need LoRA"},
        {"tokens_tied_head_ids_differ", a, b2, 2, 2, FT_METHOD_LORA, "ties lm_head"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        if (!tied && strstr(cases[i].name, "tied")) continue;
        o.method = cases[i].method;
        o.tok_embed = cases[i].e, o.n_tok_embed = cases[i].ne;
        o.tok_head = cases[i].h, o.n_tok_head = cases[i].nh;
        ft_train_model *tm = NULL;
        ft_status st = ft_train_model_init(&tm, m, &o);
        CHECK(cases[i].name, st != FT_OK && !tm && strstr(ft_error_message(), cases[i].want),
              "status %d, message \"%s\"", (int)st, st ? ft_error_message() : "");
        ft_train_model_free(tm);
    }
}

static void test_errors(ft_model *m) {
    const char *pats[] = {"nomatch.*", "model.layers.99"};
    ft_train_options o;
    memset(&o, 0, sizeof o);
    o.method = FT_METHOD_FREEZE;
    o.B = 1, o.T = 4;
    o.unfrozen = pats;
    o.n_unfrozen = 2;
    ft_train_model *tm = NULL;
    ft_status st = ft_train_model_init(&tm, m, &o);
    const char *msg = ft_error_message();
    CHECK("freeze_no_match_is_error",
          st == FT_ERR_ARG && !tm && strstr(msg, "'nomatch.*'") && strstr(msg, "'model.layers.99'"),
          "status %d, message \"%s\"", (int)st, msg);
    const char *bad[] = {"model.(unclosed"};
    o.unfrozen = bad;
    o.n_unfrozen = 1;
    st = ft_train_model_init(&tm, m, &o);
    CHECK("freeze_bad_regex_is_error", st == FT_ERR_ARG && strstr(ft_error_message(), "unclosed"),
          "status %d, message \"%s\"", (int)st, ft_error_message());
    /* decay flags of a full model: norms and biases not decayed, matrices decayed */
    o.method = FT_METHOD_FULL;
    if (ft_train_model_init(&tm, m, &o) == FT_OK) {
        int n, bad_n = 0;
        const ft_trainable *t = ft_train_tensors(tm, &n);
        for (int i = 0; i < n; i++) {
            int want = !(strstr(t[i].name, "norm") || strstr(t[i].name, "bias"));
            if (t[i].decay != want) bad_n++, printf("  decay %s = %d\n", t[i].name, t[i].decay);
        }
        CHECK("decay_flags_full", bad_n == 0 && n == m->n_tensors, "%d wrong, %d tensors of %d",
              bad_n, n, m->n_tensors);
        /* a batch larger than the buffers is refused, not overrun */
        int in[10] = {0}, lab[10] = {0};
        double nll;
        int64_t nt;
        st = ft_train_micro_step(tm, in, lab, NULL, NULL, 1, 10, 1.f, &nll, &nt);
        CHECK("oversized_batch_refused", st == FT_ERR_ARG, "status %d", (int)st);
        lab[1] = m->cfg.vocab_size;
        st = ft_train_micro_step(tm, in, lab, NULL, NULL, 1, 4, 1.f, &nll, &nt);
        CHECK("bad_label_refused", st == FT_ERR_ARG, "status %d", (int)st);
        ft_train_model_free(tm);
    }
}

static void test_lora_save(ft_model *m) {
    ft_train_options o;
    memset(&o, 0, sizeof o);
    o.method = FT_METHOD_LORA;
    o.B = 1, o.T = 4;
    o.seed = 7;
    o.lora = (ft_lora_config){.r = 2,
                              .alpha = 16,
                              .dropout = 0.05f,
                              .use_rslora = 1,
                              .targets = FT_LORA_Q | FT_LORA_V | FT_LORA_DOWN};
    ft_train_model *tm;
    if (ft_train_model_init(&tm, m, &o) != FT_OK) {
        CHECK("lora_save", 0, "%s", ft_error_message());
        return;
    }
    char dir[700];
    snprintf(dir, sizeof dir, "%s/adapter", tmp_dir);
    ft_status st = ft_lora_save(tm, dir, "some/base");
    CHECK("lora_save_status", st == FT_OK, "%s", ft_error_message());
    char path[800];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    ft_st_set s;
    int n;
    const ft_trainable *t = ft_train_tensors(tm, &n);
    if (st == FT_OK && ft_st_open(&s, path) == FT_OK) {
        int ok = s.n_tensors == n && n == 2 * 3 * m->cfg.n_layers;
        for (int i = 0; i < n && ok; i++) {
            const ft_st_tensor *x = ft_st_find(&s, t[i].name);
            ok = x && x->dtype == FT_DTYPE_F32 && x->ndim == 2 && x->shape[0] == t[i].rows &&
                 x->shape[1] == t[i].cols && st_numel(x) == t[i].numel &&
                 memcmp(x->data, t[i].param, t[i].numel * 4) == 0;
        }
        const ft_st_tensor *x =
            ft_st_find(&s, "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight");
        ok = ok && x && x->shape[0] == m->cfg.dim && x->shape[1] == 2;
        CHECK("lora_save_tensors", ok, "names, shapes or values differ from the trainables");
        ft_st_close(&s);
    } else {
        CHECK("lora_save_tensors", 0, "%s", ft_error_message());
    }
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    char *text = NULL;
    if (ft_read_file(path, &text, NULL) == FT_OK) {
        cJSON *j = cJSON_Parse(text);
        const cJSON *tmods = cJSON_GetObjectItem(j, "target_modules");
        int ok = j && cJSON_GetObjectItem(j, "r")->valueint == 2 &&
                 cJSON_GetObjectItem(j, "lora_alpha")->valuedouble == 16 &&
                 cJSON_IsTrue(cJSON_GetObjectItem(j, "use_rslora")) &&
                 strcmp(cJSON_GetObjectItem(j, "peft_type")->valuestring, "LORA") == 0 &&
                 strcmp(cJSON_GetObjectItem(j, "task_type")->valuestring, "CAUSAL_LM") == 0 &&
                 strcmp(cJSON_GetObjectItem(j, "bias")->valuestring, "none") == 0 &&
                 strcmp(cJSON_GetObjectItem(j, "base_model_name_or_path")->valuestring,
                        "some/base") == 0 &&
                 cJSON_IsFalse(cJSON_GetObjectItem(j, "fan_in_fan_out")) &&
                 cJSON_IsTrue(cJSON_GetObjectItem(j, "inference_mode")) &&
                 cJSON_GetObjectItem(j, "lora_dropout")->valuedouble == 0.05 &&
                 cJSON_GetArraySize(tmods) == 3 &&
                 strcmp(cJSON_GetArrayItem(tmods, 2)->valuestring, "down_proj") == 0;
        CHECK("lora_save_config", ok, "adapter_config.json: %s", text);
        cJSON_Delete(j);
    } else {
        CHECK("lora_save_config", 0, "%s", ft_error_message());
    }
    free(text);
    /* a different seed gives a different A; the same seed the same A */
    ft_train_model *tm2;
    o.seed = 7;
    ft_train_model_init(&tm2, m, &o);
    size_t
        np; /* set by the calls before its use as memcmp's size (argument order is unspecified) */
    const float *p1 = ft_train_params(tm, &np), *p2 = ft_train_params(tm2, &np);
    int same = memcmp(p2, p1, np * 4) == 0;
    ft_train_model_free(tm2);
    o.seed = 8;
    ft_train_model_init(&tm2, m, &o);
    p2 = ft_train_params(tm2, &np);
    int diff = memcmp(p2, p1, np * 4) != 0;
    ft_train_model_free(tm2);
    CHECK("lora_init_seeded", same && diff, "same seed same A: %d, other seed other A: %d", same,
          diff);
    ft_train_model_free(tm);
}

int main(void) {
    ref_dir = getenv("FT_REF");
    const char *tmp = getenv("FT_TMP");
    snprintf(tmp_dir, sizeof tmp_dir, "%s", tmp ? tmp : "/tmp");
    if (!ref_dir) {
        CHECK("FT_REF", 0, "FT_REF not set (run through tests/run.sh)");
        return ft_test_exit();
    }
    const char *models[] = {"llama_mha", "llama_gqa", "qwen2", "qwen3", "llama_bias"};
    const char *loras[] = {"all", "rs_qv", "rs_mlp_o"};
    for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/grads/%s", ref_dir, models[i]);
        ft_model m;
        memset(&m, 0, sizeof m);
        if (ft_model_load(&m, dir) != FT_OK) {
            CHECK(models[i], 0, "load: %s", ft_error_message());
            continue;
        }
        test_full(models[i], &m);
        test_freeze(models[i], &m);
        test_bf16_close(models[i], &m, FT_METHOD_FREEZE, 0);
        test_bf16_close(models[i], &m, FT_METHOD_FULL, 0);
        test_bf16_close(models[i], &m, FT_METHOD_LORA, FT_LORA_ALL_LINEAR);
        test_bf16_close(models[i], &m, FT_METHOD_LORA, FT_LORA_Q | FT_LORA_V);
        for (size_t k = 0; k < sizeof loras / sizeof *loras; k++)
            test_lora(models[i], &m, loras[k]);
        if (i == 0 || i == 1 || i == 3) test_tokens(models[i], &m);
        if (i == 0) test_tokens_errors(&m, 1);
        if (i == 1) {
            test_packed(models[i], &m);
            test_dropout_fd(models[i], &m);
        }
        if (i == 2) {
            test_errors(&m);
            test_lora_save(&m);
        }
        ft_model_free(&m);
    }
    return ft_test_exit();
}
