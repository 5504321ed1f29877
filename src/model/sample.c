/*
 * Sampling the next token, and the generation loop.
 *
 * Order of the transforms, as Hugging Face's generate applies its warpers: temperature, then top-k,
 * then top-p (nucleus), then a draw from the renormalised distribution. temperature == 0 is greedy
 * (argmax; the lowest id wins ties, as torch.argmax). Probabilities are computed in double.
 * top-k keeps every token whose probability equals the k-th largest (HF removes only the tokens
 * strictly below it), so ties at the cut are all candidates.
 *
 * RNG: the seed is expanded by splitmix64 into a non-zero 64-bit state, and each draw advances a
 * xorshift64* generator (Vigna 2016: x ^= x >> 12; x ^= x << 25; x ^= x >> 27; out = x * 2685821657736338717).
 * A uniform u in [0,1) is the top 53 bits of the output divided by 2^53. Same seed, same model,
 * same prompt -> same tokens on every machine (the draw is the only random step).
 */
#include "ftune/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static double rng_uniform(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return (double)((x * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
}

ft_status ft_sampler_init(ft_sampler *s, int vocab, const ft_sample_params *p) {
    memset(s, 0, sizeof *s);
    if (vocab <= 0) return ft_errorf(FT_ERR_ARG, "sampler: vocabulary size %d", vocab);
    if (!(p->temperature >= 0) || p->top_k < 0 || !(p->top_p > 0 && p->top_p <= 1))
        return ft_errorf(FT_ERR_ARG,
                         "sampler: need temperature >= 0, top_k >= 0, 0 < top_p <= 1 (got %g, %d, %g)",
                         p->temperature, p->top_k, p->top_p);
    s->p = *p;
    s->vocab = vocab;
    s->rng = splitmix64(p->seed);
    if (!s->rng) s->rng = 1;
    s->prob = ft_calloc((size_t)vocab, sizeof(float));
    s->idx = ft_calloc((size_t)vocab, sizeof(int));
    if (!s->prob || !s->idx) {
        ft_sampler_free(s);
        return ft_errorf(FT_ERR_NOMEM, "sampler: out of memory");
    }
    return FT_OK;
}

void ft_sampler_free(ft_sampler *s) {
    if (!s) return;
    ft_free(s->prob);
    ft_free(s->idx);
    memset(s, 0, sizeof *s);
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* qsort_r comparator over candidate ids: higher probability first, then lower id. */
static int by_prob_desc(const void *a, const void *b, void *ctx) {
    const float *prob = ctx;
    int i = *(const int *)a, j = *(const int *)b;
    if (prob[i] != prob[j]) return prob[i] > prob[j] ? -1 : 1;
    return i - j;
}

int ft_sampler_next(ft_sampler *s, const float *logits) {
    const int V = s->vocab;
    if (s->p.temperature == 0.0f) return argmax(logits, V);
    /* softmax(logits / T) */
    double mx = -INFINITY;
    for (int i = 0; i < V; i++)
        if (logits[i] / s->p.temperature > mx) mx = logits[i] / s->p.temperature;
    /* logits / T overflowed float (T below ~1e-37): inf - inf would make every probability NaN;
     * the T -> 0 limit is the argmax */
    if (!isfinite(mx)) return argmax(logits, V);
    double sum = 0;
    for (int i = 0; i < V; i++) {
        double e = exp((double)(logits[i] / s->p.temperature) - mx);
        s->prob[i] = (float)e;
        sum += e;
    }
    for (int i = 0; i < V; i++) s->prob[i] = (float)(s->prob[i] / sum);
    /* candidates, sorted by probability when a filter needs the order */
    int n = V;
    for (int i = 0; i < V; i++) s->idx[i] = i;
    int k = s->p.top_k > 0 && s->p.top_k < V ? s->p.top_k : V;
    if (k < V || s->p.top_p < 1.0f) {
        if (k == V && s->p.top_p < 1.0f) {
            /* nucleus only: a token with prob < (1-p)/(V-1) can never be in the nucleus (the
             * tokens above it would already hold more than p), so drop those before sorting */
            double cut = (1.0 - s->p.top_p) / (V - 1);
            n = 0;
            for (int i = 0; i < V; i++)
                if (s->prob[i] >= cut) s->idx[n++] = i;
            if (n == 0) return argmax(logits, V);
        }
        qsort_r(s->idx, (size_t)n, sizeof(int), by_prob_desc, s->prob);
        if (n > k) { /* HF's TopKLogitsWarper keeps every token tied with the k-th */
            const float kth = s->prob[s->idx[k - 1]];
            while (k < n && s->prob[s->idx[k]] == kth) k++;
            n = k;
        }
        if (s->p.top_p < 1.0f) {
            /* renormalise over the top-k, then keep the smallest prefix whose mass reaches p
             * (the token that crosses p is kept, so at least one token always remains) */
            double mass = 0, cum = 0;
            for (int i = 0; i < n; i++) mass += s->prob[s->idx[i]];
            int keep = n;
            for (int i = 0; i < n; i++) {
                cum += s->prob[s->idx[i]] / mass;
                if (cum >= s->p.top_p) {
                    keep = i + 1;
                    break;
                }
            }
            n = keep;
        }
    }
    double mass = 0;
    for (int i = 0; i < n; i++) mass += s->prob[s->idx[i]];
    double u = rng_uniform(&s->rng) * mass, cum = 0;
    for (int i = 0; i < n; i++) {
        cum += s->prob[s->idx[i]];
        if (u < cum) return s->idx[i];
    }
    return s->idx[n - 1]; /* rounding: u landed in the last sliver */
}

ft_status ft_generate(const ft_model *m, const int *prompt, int n_prompt, int max_new,
                      const ft_sample_params *p, int *out, int *n_out,
                      void (*on_token)(int id, void *user), void *user) {
    const ft_config *c = &m->cfg;
    *n_out = 0;
    if (n_prompt < 1) return ft_errorf(FT_ERR_ARG, "generate: the prompt needs at least one token");
    if (max_new < 0) return ft_errorf(FT_ERR_ARG, "generate: max_new_tokens %d < 0", max_new);
    const int ctx = ft_config_context(c);
    int max_seq = ctx > 0 ? ctx : n_prompt + max_new;
    if (n_prompt > max_seq)
        return ft_errorf(FT_ERR_ARG, "generate: prompt of %d tokens exceeds the model's %d positions%s",
                         n_prompt, max_seq, ctx == c->sliding_window ? " (its sliding window)" : "");
    if ((int64_t)n_prompt + max_new < max_seq) max_seq = n_prompt + max_new;
    ft_kv_cache cache;
    ft_sampler smp;
    float *logits = NULL;
    ft_status st = ft_kv_cache_init(&cache, c, max_seq);
    if (st) return st;
    st = ft_sampler_init(&smp, c->vocab_size, p);
    if (st) goto fail;
    logits = ft_calloc((size_t)c->vocab_size, sizeof(float));
    if (!logits) {
        st = FT_ERR_NOMEM;
        goto fail;
    }
    st = ft_model_forward(m, &cache, prompt, n_prompt, 0, logits, 0);
    for (int pos = n_prompt; !st && *n_out < max_new; pos++) {
        int id = ft_sampler_next(&smp, logits);
        if (id == c->eos_id) break;
        out[(*n_out)++] = id;
        if (on_token) on_token(id, user);
        if (pos >= max_seq || *n_out == max_new) break; /* no room / no need for another step */
        st = ft_model_forward(m, &cache, &id, 1, pos, logits, 0);
    }
fail:
    ft_free(logits);
    ft_sampler_free(&smp);
    ft_kv_cache_free(&cache);
    return st;
}
