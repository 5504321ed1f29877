/*
 * bf16 mode gives the f32 copy of frozen linear weights back to the OS once they are packed
 * (src/train/step.c release_frozen; ft_train_options.bf16_keep_f32 = 0, the default), when bf16
 * holds them exactly (a bf16 checkpoint). Checked here, on stories15M rounded to bf16 in memory
 * (the real model, as a bf16 checkpoint of it would load) and on the llama_bf16 fixture (a BF16
 * file with an untied head, whose frozen head is released too):
 *  - the memory is really given back: the released weights read as zero in the model's buffer
 *    while the train model lives (the pages were dropped), and nothing is released from an f32
 *    checkpoint whose values bf16 cannot hold;
 *  - nothing changes numerically: a LoRA micro-step, an eval at a shorter T (another row count,
 *    so packs reordered from the kept bf16 copy, forward and input-gradient layouts) and a
 *    second micro-step give bit-identical losses and gradients to a run that keeps the f32 copy;
 *  - the model is whole again, bit for bit, after ft_train_model_free, and after
 *    ft_train_sync_model for freeze (frozen layers released, the trained ones synced back).
 * Without AVX512-BF16 there is no bf16 mode: nothing may be released, which is checked instead.
 */
#include "../test.h"

#include "ftune/core.h"
#include "ftune/kernels.h"
#include "ftune/model.h"
#include "ftune/train.h"

#include <string.h>

#define NB 2
#define NT 24

static int ids[NB * NT], lab[NB * NT];

/* floats of layer 0's gate_proj in the model's buffer that read as zero */
static size_t zeros_in_gate0(const ft_model *m) {
    const ft_config *c = &m->cfg;
    size_t n = (size_t)c->hidden_dim * c->dim, z = 0;
    for (size_t i = 0; i < n; i++) z += m->w.layers[0].w_gate[i] == 0.0f;
    return z;
}

typedef struct {
    double nll[3];
    float *g;
    size_t n;
} result;

/* LoRA (or freeze with `unfrozen`): micro-step, eval at T-5, micro-step. With `probe`, the
 * zero count of gate_proj 0 while the train model lives. */
static int run(ft_model *m, ft_method method, const char *unfrozen, int keep, result *out,
               size_t *probe) {
    ft_train_options o;
    memset(&o, 0, sizeof o);
    o.method = method;
    o.lora.r = 4;
    o.lora.alpha = 8;
    o.lora.targets = FT_LORA_ALL_LINEAR;
    const char *un[1] = {unfrozen};
    if (unfrozen) o.unfrozen = un, o.n_unfrozen = 1;
    o.B = NB, o.T = NT, o.seed = 5, o.bf16 = 1, o.bf16_keep_f32 = keep;
    ft_train_model *tm;
    if (ft_train_model_init(&tm, m, &o)) {
        CHECK("train init", 0, "%s", ft_error_message());
        return 1;
    }
    if (probe) *probe = zeros_in_gate0(m);
    size_t n;
    float *p = ft_train_params(tm, &n);
    for (size_t i = 0; i < n; i++) p[i] += 1e-3f * (float)((i * 7919) % 13) - 6e-3f;
    ft_train_params_changed(tm);
    int64_t c;
    int rc = 0;
    ft_train_zero_grad(tm);
    rc |= ft_train_micro_step(tm, ids, lab, NULL, NULL, NB, NT, 0.01f, &out->nll[0], &c) != FT_OK;
    rc |= ft_train_eval(tm, ids, lab, NULL, NULL, NB, NT - 5, &out->nll[1], &c) != FT_OK;
    rc |= ft_train_micro_step(tm, ids, lab, NULL, NULL, NB, NT, 0.01f, &out->nll[2], &c) != FT_OK;
    if (rc) CHECK("micro steps", 0, "%s", ft_error_message());
    float *g = ft_train_grads(tm, &out->n);
    out->g = malloc(out->n * sizeof(float));
    memcpy(out->g, g, out->n * sizeof(float));
    if (method == FT_METHOD_FREEZE) ft_train_sync_model(tm);
    ft_train_model_free(tm);
    return rc;
}

static void case_(const char *name, ft_model *m, ft_method method, const char *unfrozen,
                  int expect_release) {
    char label[200];
    size_t np = m->n_params, zero_keep = 0, zero_rel = 0;
    float *before = malloc(np * sizeof(float));
    memcpy(before, m->params, np * sizeof(float));
    result a = {0}, b = {0};
    size_t z0 = zeros_in_gate0(m);
    if (run(m, method, unfrozen, 1, &a, &zero_keep)) goto done;
    memcpy(m->params, before, np * sizeof(float)); /* freeze synced its trained tensors back */
    if (run(m, method, unfrozen, 0, &b, &zero_rel)) goto done;
    size_t gate = (size_t)m->cfg.hidden_dim * m->cfg.dim;
    size_t want = gate > 2048 ? gate - 2048 : 0; /* whole 4 KiB pages only: two partial ends */
    int bf16 = ft_cpu_has_bf16();
    snprintf(label, sizeof label, "%s: frozen f32 weights %s while training", name,
             expect_release && bf16 ? "given back (read as zero)" : "kept");
    CHECK(label,
          zero_keep == z0 &&
              (expect_release && bf16 ? zero_rel >= want : zero_rel == z0),
          "gate_proj 0 has %zu zeros of %zu (keep_f32: %zu, before: %zu)", zero_rel, gate,
          zero_keep, z0);
    snprintf(label, sizeof label, "%s: losses bit-identical to keeping the f32 copy", name);
    CHECK(label, !memcmp(a.nll, b.nll, sizeof a.nll), "%.9g %.9g %.9g vs %.9g %.9g %.9g",
          b.nll[0], b.nll[1], b.nll[2], a.nll[0], a.nll[1], a.nll[2]);
    snprintf(label, sizeof label, "%s: gradients bit-identical to keeping the f32 copy", name);
    CHECK(label, a.n == b.n && !memcmp(a.g, b.g, a.n * sizeof(float)), "they differ");
    size_t bad = np;
    for (size_t i = 0; i < np && bad == np; i++)
        if (memcmp(&m->params[i], &before[i], sizeof(float))) bad = i;
    if (method == FT_METHOD_FREEZE) {
        /* sync wrote the trained tensors back: compare only what stayed frozen (layer 0) */
        bad = np;
        const float *w0 = m->w.layers[0].w_gate;
        size_t off = (size_t)(w0 - m->params);
        if (memcmp(w0, before + off, gate * sizeof(float))) bad = off;
    }
    snprintf(label, sizeof label, "%s: the model's weights are whole again afterwards", name);
    CHECK(label, bad == np, "parameter %zu differs", bad);
done:
    free(a.g), free(b.g), free(before);
}

int main(void) {
    uint64_t r = 0x5eed;
    for (int i = 0; i < NB * NT; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = 3 + (int)((r >> 33) % 90);
    }
    for (int i = 0; i < NB * NT; i++) lab[i] = i % 5 == 1 ? -100 : ids[(i + 1) % (NB * NT)];

    ft_model m;
    if (ft_model_load(&m, "models/stories15M")) {
        CHECK("load stories15M", 0, "%s (run make fixtures)", ft_error_message());
        return ft_test_exit();
    }
    case_("stories15M f32 checkpoint, LoRA", &m, FT_METHOD_LORA, NULL, 0);
    uint16_t *b = malloc(m.n_params * sizeof(uint16_t));
    bf16_from_f32(b, m.params, m.n_params);
    bf16_to_f32(m.params, b, m.n_params);
    free(b);
    case_("stories15M as bf16, LoRA", &m, FT_METHOD_LORA, NULL, 1);
    case_("stories15M as bf16, freeze (layers 1-5 trained)", &m, FT_METHOD_FREEZE,
          "model.layers.[1-5].*", 1);
    ft_model_free(&m);

    const char *ref = getenv("FT_REF");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/models/llama_bf16", ref ? ref : "build/ref");
    if (ft_model_load(&m, dir)) {
        CHECK("load llama_bf16", 0, "%s", ft_error_message());
        return ft_test_exit();
    }
    for (int i = 0; i < NB * NT; i++) {
        ids[i] %= m.cfg.vocab_size;
        if (lab[i] >= 0) lab[i] %= m.cfg.vocab_size;
    }
    case_("llama_bf16 fixture (untied head), LoRA", &m, FT_METHOD_LORA, NULL, 1);
    ft_model_free(&m);
    return ft_test_exit();
}
