/*
 * Packing without cross-contamination, through the data pipeline: real quiz questions (chatml
 * template, Llama-2 tokenizer) packed into rows by ft_sft_pack/ft_sft_row give the same NLL sum,
 * target count and LoRA gradients on stories15M as the same samples run one per row at their own
 * length (no padding, no seg ids), and as one per row padded to T. Without the seg ids the packed
 * loss must change (the mask is what makes them equal).
 * Needs models/stories15M and fixtures (make fixtures); the Llama-2 tokenizer has the vocabulary
 * of stories15M (llama2.c's is Llama-2's).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "ftune/instruct.h"
#include "ftune/tokenizer.h"
#include "ftune/train.h"

enum { T = 128, N_SAMPLES = 6 };

/* Run rows and return the NLL sum, the target count and a copy of the gradients. */
typedef struct {
    double nll;
    int64_t n;
    float *g;
} run_out;

static ft_status step(ft_train_model *tm, const int *in, const int *lab, const int *pos,
                      const int *seg, int len, float scale, run_out *o) {
    double nll;
    int64_t n;
    ft_status st = ft_train_micro_step(tm, in, lab, pos, seg, 1, len, scale, &nll, &n);
    o->nll += nll;
    o->n += n;
    return st;
}

static void grab(ft_train_model *tm, run_out *o) {
    size_t n;
    float *g = ft_train_grads(tm, &n);
    o->g = malloc(n * sizeof(float));
    memcpy(o->g, g, n * sizeof(float));
}

int main(void) {
    const char *root = getenv("FT_ROOT") ? getenv("FT_ROOT") : ".";
    char mdir[1024], tdir[1024], data[1024];
    snprintf(mdir, sizeof mdir, "%s/models/stories15M", root);
    snprintf(tdir, sizeof tdir, "%s/fixtures/npm/tok-mistral/package/models", root);
    snprintf(data, sizeof data, "%s/fixtures/data/quiz_alpaca.jsonl", root);
    ft_model m;
    ft_tokenizer *tok = NULL;
    if (ft_model_load(&m, mdir) || ft_tokenizer_load(&tok, tdir)) {
        CHECK("packing_setup", 0, "%s (make fixtures)", ft_error_message());
        return ft_test_exit();
    }
    ft_sft_source src = {.path = data, .fmt = {.type = "alpaca"}};
    ft_sft_config c = {.src = &src, .n_src = 1, .chat_template = "chatml", .tokenizer_dir = tdir,
                       .T = T, .truncation = FT_TRUNC_DROP};
    ft_records r;
    ft_sft_dataset ds;
    ft_status st = ft_sft_load(&c, tok, &r, &ds, NULL, NULL, 0);
    CHECK("packing_dataset", !st && ds.n >= N_SAMPLES, "%s", ft_error_message());
    if (st) return ft_test_exit();

    ft_train_options o = {.method = FT_METHOD_LORA,
                          .lora = {.r = 4, .alpha = 8, .targets = FT_LORA_ALL_LINEAR},
                          .B = 1, .T = T, .seed = 3};
    ft_train_model *tm;
    if (ft_train_model_init(&tm, &m, &o)) {
        CHECK("packing_model", 0, "%s", ft_error_message());
        return ft_test_exit();
    }
    /* B starts at zero, which would make every A gradient zero: give all LoRA weights values */
    size_t np;
    float *p = ft_train_params(tm, &np);
    uint64_t s = 88172645463325252ull;
    for (size_t i = 0; i < np; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        p[i] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5) * 0.05f;
    }

    int64_t order[N_SAMPLES];
    int64_t targets = 0;
    for (int i = 0; i < N_SAMPLES; i++) {
        order[i] = i;
        for (int t = 1; t < ds.samples[i].n; t++) targets += ds.samples[i].labels[t] != -100;
    }
    float scale = 1.0f / (float)targets;
    int in[T], lab[T], pos[T], seg[T];
    run_out sep = {0}, pad = {0}, pk = {0}, noseg = {0};

    /* 1. one sample per row at its own length: no padding, no seg, default positions */
    ft_train_zero_grad(tm);
    for (int i = 0; !st && i < N_SAMPLES; i++) {
        ft_sft_row(&ds, &order[i], 1, T, 0, in, lab, pos, seg);
        st = step(tm, in, lab, NULL, NULL, ds.samples[i].n, scale, &sep);
    }
    grab(tm, &sep);
    /* 2. one sample per row, padded to T (the trainer's unpacked path) */
    ft_train_zero_grad(tm);
    for (int i = 0; !st && i < N_SAMPLES; i++) {
        ft_sft_row(&ds, &order[i], 1, T, 0, in, lab, pos, seg);
        st = step(tm, in, lab, pos, seg, T, scale, &pad);
    }
    grab(tm, &pad);
    /* 3. packed */
    int64_t *rs = NULL, nr = 0;
    if (!st) st = ft_sft_pack(&ds, order, N_SAMPLES, T, 1, &rs, &nr);
    ft_train_zero_grad(tm);
    int max_per_row = 0;
    for (int64_t i = 0; !st && i < nr; i++) {
        int k = (int)(rs[i + 1] - rs[i]);
        if (k > max_per_row) max_per_row = k;
        ft_sft_row(&ds, order + rs[i], k, T, 0, in, lab, pos, seg);
        st = step(tm, in, lab, pos, seg, T, scale, &pk);
    }
    grab(tm, &pk);
    /* 4. packed rows without seg ids: samples see each other */
    ft_train_zero_grad(tm);
    for (int64_t i = 0; !st && i < nr; i++) {
        int k = (int)(rs[i + 1] - rs[i]);
        ft_sft_row(&ds, order + rs[i], k, T, 0, in, lab, pos, seg);
        st = step(tm, in, lab, pos, NULL, T, scale, &noseg);
    }
    CHECK("packing_steps_run", !st, "%s", ft_error_message());
    if (!st) {
        size_t ng;
        ft_train_grads(tm, &ng);
        printf("# %d samples, %lld targets, %lld packed rows (up to %d samples per row)\n",
               N_SAMPLES, (long long)targets, (long long)nr, max_per_row);
        CHECK("packing_rows_hold_several_samples", nr < N_SAMPLES && max_per_row >= 2,
              "%lld rows", (long long)nr);
        CHECK("packed_loss_equals_separate",
              pk.n == sep.n && pk.n == targets && fabs(pk.nll - sep.nll) <= 1e-5 * fabs(sep.nll),
              "nll %.9g vs %.9g, targets %lld vs %lld", pk.nll, sep.nll, (long long)pk.n,
              (long long)sep.n);
        double e = rel_l2(pk.g, sep.g, ng);
        CHECK("packed_grads_equal_separate", e <= 1e-5, "rel l2 %.3g", e);
        CHECK("padded_loss_equals_separate",
              pad.n == sep.n && fabs(pad.nll - sep.nll) <= 1e-5 * fabs(sep.nll), "nll %.9g vs %.9g",
              pad.nll, sep.nll);
        e = rel_l2(pad.g, sep.g, ng);
        CHECK("padded_grads_equal_separate", e <= 1e-5, "rel l2 %.3g", e);
        CHECK("packing_without_seg_differs", fabs(noseg.nll - pk.nll) > 1e-4 * fabs(pk.nll),
              "nll %.9g with seg, %.9g without", pk.nll, noseg.nll);
    }
    free(rs);
    free(sep.g);
    free(pad.g);
    free(pk.g);
    ft_train_model_free(tm);
    ft_sft_dataset_free(&ds);
    ft_records_free(&r);
    ft_tokenizer_free(tok);
    ft_model_free(&m);
    return ft_test_exit();
}
