/*
 * The inference forward against PyTorch, for every tiny random model tests/ref/gen_models.py built
 * (llama MHA/GQA/untied/llama3 rope/explicit head_dim/biases, mistral, qwen2, qwen3, BF16 and F16
 * storage):
 *   - all positions' logits from one batched pass: max |Δ| <= 1e-4
 *   - the same through the KV cache: a 5-token prompt, then one token at a time: max |Δ| <= 1e-4
 *     and against the batched pass: |Δ| <= 2e-5 + 1e-6 |ref| (same arithmetic, other summation order)
 *   - the same with a chunk of 4 tokens (prompts longer than a chunk are processed in pieces)
 *   - greedy generation from the first 5 ids equals the reference's greedy continuation
 *   - bad arguments (id out of range, positions past the cache) are errors, not crashes
 * Tolerance 1e-4 absolute on logits up to ~45 in magnitude: f32 forward in a different summation
 * order (oneDNN blocking vs torch/OpenBLAS) gives relative differences ~1e-7..1e-6 per op, a few
 * ulp of the largest logits (ulp(32) = 3.8e-6); 1e-4 is the bound, with room for two layers.
 * BF16/F16 storage: the reference runs on the stored weights upcast to f32 — exactly what ftune
 * computes with — so the same bound applies.
 */
#include "../test.h"

#include "ftune/model.h"
#include "ftune/safetensors.h"

#include <string.h>

#define LOGIT_ATOL 1e-4

static const char *cases[] = {"llama_mha",  "llama_gqa", "llama_untied", "llama3_rope",
                              "llama_head_dim", "llama_bias", "mistral",  "qwen2",
                              "qwen3",      "llama_bf16", "qwen2_f16"};

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d; /* NaN propagates */
    }
    return m;
}

static void run_case(const char *ref_dir, const char *name) {
    char dir[512], refpath[512], label[256];
    snprintf(dir, sizeof dir, "%s/models/%s", ref_dir, name);
    snprintf(refpath, sizeof refpath, "%s/models/%s.ref.safetensors", ref_dir, name);
    ft_model m;
    ft_st_set ref = {0};
    if (ft_model_load(&m, dir) != FT_OK) {
        snprintf(label, sizeof label, "%s load", name);
        CHECK(label, 0, "%s", ft_error_message());
        return;
    }
    if (ft_st_open(&ref, refpath) != FT_OK) {
        snprintf(label, sizeof label, "%s reference", name);
        CHECK(label, 0, "%s", ft_error_message());
        ft_model_free(&m);
        return;
    }
    const ft_st_tensor *tids = ft_st_find(&ref, "ids"), *tlog = ft_st_find(&ref, "logits"),
                       *tgr = ft_st_find(&ref, "greedy");
    const int V = m.cfg.vocab_size;
    if (!tids || !tlog || !tgr || tids->dtype != FT_DTYPE_I32 || tlog->dtype != FT_DTYPE_F32 ||
        tlog->shape[1] != V || tlog->shape[0] != tids->shape[0]) {
        snprintf(label, sizeof label, "%s reference", name);
        CHECK(label, 0, "reference file lacks ids/logits/greedy of the expected shape");
        goto done;
    }
    const int T = (int)tids->shape[0], G = (int)tgr->shape[0];
    int *ids = malloc((size_t)T * sizeof(int)), *greedy = malloc((size_t)G * sizeof(int));
    float *want = malloc((size_t)T * V * sizeof(float)), *got = calloc((size_t)T * V, sizeof(float));
    memcpy(ids, tids->data, (size_t)T * sizeof(int));
    memcpy(greedy, tgr->data, (size_t)G * sizeof(int));
    memcpy(want, tlog->data, (size_t)T * V * sizeof(float));

    ft_kv_cache kc;
    /* 1. one batched pass over every position */
    FT_ASSERT(ft_kv_cache_init(&kc, &m.cfg, T) == FT_OK);
    ft_status st = ft_model_forward(&m, &kc, ids, T, 0, got, 1);
    snprintf(label, sizeof label, "%s logits (batched, max|d| %.2g)", name,
             max_abs_diff(got, want, (size_t)T * V));
    if (st) CHECK(label, 0, "%s", ft_error_message());
    else check_close(label, got, want, (size_t)T * V, LOGIT_ATOL, 0);

    /* 2. KV cache: 5-token prompt (all logits), then one token at a time (last logits) */
    float *batched = malloc((size_t)T * V * sizeof(float));
    memcpy(batched, got, (size_t)T * V * sizeof(float));
    memset(got, 0, (size_t)T * V * sizeof(float));
    st = ft_model_forward(&m, &kc, ids, 5, 0, got, 1);
    for (int t = 5; !st && t < T; t++)
        st = ft_model_forward(&m, &kc, ids + t, 1, t, got + (size_t)t * V, 0);
    snprintf(label, sizeof label, "%s logits (kv-cache decode, max|d| %.2g)", name,
             max_abs_diff(got, want, (size_t)T * V));
    if (st) CHECK(label, 0, "%s", ft_error_message());
    else check_close(label, got, want, (size_t)T * V, LOGIT_ATOL, 0);
    /* decode vs batched, both ftune: the same f32 arithmetic except the summation order of the
     * one-row products (dot products vs oneDNN), so a tighter bound than against torch */
    snprintf(label, sizeof label, "%s kv-cache decode == batched forward", name);
    if (!st) check_close(label, got, batched, (size_t)T * V, 2e-5, 1e-6);
    free(batched);

    /* 3. chunks of 4 (the chunk may be lowered after init; buffers were sized for the larger) */
    kc.chunk = 4;
    memset(got, 0, (size_t)T * V * sizeof(float));
    st = ft_model_forward(&m, &kc, ids, T, 0, got, 1);
    snprintf(label, sizeof label, "%s logits (chunks of 4, max|d| %.2g)", name,
             max_abs_diff(got, want, (size_t)T * V));
    if (st) CHECK(label, 0, "%s", ft_error_message());
    else check_close(label, got, want, (size_t)T * V, LOGIT_ATOL, 0);
    /* last-position-only output over several chunks */
    float *last = calloc((size_t)V, sizeof(float));
    st = ft_model_forward(&m, &kc, ids, T, 0, last, 0);
    snprintf(label, sizeof label, "%s last logits (chunks of 4)", name);
    if (st) CHECK(label, 0, "%s", ft_error_message());
    else check_close(label, last, want + (size_t)(T - 1) * V, (size_t)V, LOGIT_ATOL, 0);
    free(last);

    /* 4. bad arguments */
    int bad = V;
    st = ft_model_forward(&m, &kc, &bad, 1, 0, got, 0);
    snprintf(label, sizeof label, "%s rejects id out of range", name);
    CHECK(label, st == FT_ERR_ARG && strstr(ft_error_message(), "token id"), "status %d: %s", st,
          ft_error_message());
    st = ft_model_forward(&m, &kc, ids, 2, T - 1, got, 0);
    snprintf(label, sizeof label, "%s rejects positions past the cache", name);
    CHECK(label, st == FT_ERR_ARG, "status %d", st);
    ft_kv_cache_free(&kc);

    /* 5. greedy generation: the reference does not stop at EOS, so compare up to it */
    int out[16], n_out = -1, n_want = 0;
    while (n_want < G && greedy[n_want] != m.cfg.eos_id) n_want++;
    ft_sample_params sp = {.temperature = 0, .top_k = 0, .top_p = 1, .seed = 0};
    st = ft_generate(&m, ids, 5, G, &sp, out, &n_out, NULL, NULL);
    snprintf(label, sizeof label, "%s greedy generation", name);
    CHECK(label, st == FT_OK && n_out == n_want && !memcmp(out, greedy, (size_t)n_want * sizeof(int)),
          "status %d, %d tokens (want %d), first %d vs %d", st, n_out, n_want, n_out > 0 ? out[0] : -1,
          G > 0 ? greedy[0] : -1);

    free(ids), free(greedy), free(want), free(got);
done:
    ft_st_close(&ref);
    ft_model_free(&m);
}

int main(void) {
    const char *ref_dir = getenv("FT_REF");
    if (!ref_dir) ref_dir = "build/ref";
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(ref_dir, cases[i]);
    return ft_test_exit();
}
