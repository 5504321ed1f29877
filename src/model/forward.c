/*
 * Inference forward pass of the Llama family with a KV cache, in exact f32, mirroring HF's
 * LlamaForCausalLM / Qwen2 / Qwen3 eager forward op for op:
 *   x = embed[ids]
 *   per layer:  h = rmsnorm(x) ; q,k,v = h·Wq^T(+bq), h·Wk^T(+bk), h·Wv^T(+bv)
 *               qwen3: q,k = rmsnorm per head (q_norm, k_norm) ; q,k = rope(q,k)
 *               x = x + attention(q, k, v)·Wo^T(+bo)
 *               h = rmsnorm(x) ; x = x + (silu(h·Wg^T) * (h·Wu^T))·Wd^T   (+ mlp biases)
 *   logits = rmsnorm(x)·W_head^T   (W_head = embed when tied)
 * New keys/values go straight into the cache rows of their positions. A prompt is processed in
 * batched chunks (one matmul per projection per chunk), decoding one token at a time is the same
 * code with n = 1. The training forward with saved activations lives in src/train, not here.
 */
#include "ftune/kernels.h"
#include "ftune/model.h"

#include <omp.h>
#include <string.h>
#include <unistd.h>

ft_status ft_kv_cache_init(ft_kv_cache *cache, const ft_config *c, int max_seq) {
    memset(cache, 0, sizeof *cache);
    if (max_seq <= 0) return ft_errorf(FT_ERR_ARG, "kv cache: max_seq %d must be positive", max_seq);
    cache->max_seq = max_seq;
    cache->chunk = max_seq < 128 ? max_seq : 128;
    cache->n_layers = c->n_layers;
    cache->kv_dim = c->n_kv_heads * c->head_dim;
    size_t kv = (size_t)c->n_layers * (size_t)max_seq * (size_t)cache->kv_dim;
    size_t ch = (size_t)cache->chunk, qd = (size_t)c->n_heads * (size_t)c->head_dim;
    /* ft_calloc zeroes every page: refuse a cache larger than the machine's memory up front rather
     * than being stopped by the OOM killer (chat sizes it by max_position_embeddings) */
    double need = 8.0 * (double)kv + 4.0 * (double)omp_get_max_threads() * max_seq;
    double ram = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    if (ram > 0 && need > ram) {
        memset(cache, 0, sizeof *cache);
        return ft_errorf(FT_ERR_NOMEM,
                         "kv cache: %d positions need %.1f GiB, more than this machine's %.1f "
                         "GiB (chat sizes it by max_position_embeddings or sliding_window)",
                         max_seq, need / (1 << 30), ram / (1 << 30));
    }
    cache->k = ft_calloc(kv, sizeof(float));
    cache->v = ft_calloc(kv, sizeof(float));
    cache->x = ft_calloc(ch * (size_t)c->dim, sizeof(float));
    cache->xb = ft_calloc(ch * (size_t)c->dim, sizeof(float));
    cache->q = ft_calloc(ch * qd, sizeof(float));
    cache->att = ft_calloc(ch * qd, sizeof(float));
    cache->hb = ft_calloc(ch * (size_t)c->hidden_dim, sizeof(float));
    cache->hb2 = ft_calloc(ch * (size_t)c->hidden_dim, sizeof(float));
    cache->pos = ft_calloc(ch, sizeof(int));
    cache->scores = ft_calloc((size_t)omp_get_max_threads() * (size_t)max_seq, sizeof(float));
    if (!cache->scores || !cache->k || !cache->v || !cache->x || !cache->xb || !cache->q || !cache->att ||
        !cache->hb || !cache->hb2 || !cache->pos) {
        ft_kv_cache_free(cache);
        return ft_errorf(FT_ERR_NOMEM, "kv cache: out of memory for %d positions", max_seq);
    }
    return FT_OK;
}

void ft_kv_cache_free(ft_kv_cache *cache) {
    if (!cache) return;
    ft_free(cache->k);
    ft_free(cache->v);
    ft_free(cache->x);
    ft_free(cache->xb);
    ft_free(cache->q);
    ft_free(cache->att);
    ft_free(cache->hb);
    ft_free(cache->hb2);
    ft_free(cache->pos);
    ft_free(cache->scores);
    memset(cache, 0, sizeof *cache);
}

static void add_inplace(float *x, const float *y, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= 32768)
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

/* One chunk of n <= cache->chunk tokens at positions pos0..; logits as in ft_model_forward, or
 * NULL to only fill the cache (the head is skipped). */
static void forward_chunk(const ft_model *m, ft_kv_cache *kc, const int *ids, int n, int pos0,
                          float *logits, int all_logits) {
    const ft_config *c = &m->cfg;
    const int C = c->dim, H = c->n_heads, KV = c->n_kv_heads, D = c->head_dim, F = c->hidden_dim;
    const int QD = H * D, KD = KV * D;
    float *x = kc->x, *xb = kc->xb, *q = kc->q, *att = kc->att, *hb = kc->hb, *hb2 = kc->hb2;
    for (int i = 0; i < n; i++) kc->pos[i] = pos0 + i;

    embedding_forward(x, ids, m->w.embed, n, C); // (n, C)
    for (int l = 0; l < c->n_layers; l++) {
        const ft_layer *w = &m->w.layers[l];
        float *kl = kc->k + (size_t)l * kc->max_seq * KD; // (max_seq, KV*D)
        float *vl = kc->v + (size_t)l * kc->max_seq * KD;
        float *kn = kl + (size_t)pos0 * KD, *vn = vl + (size_t)pos0 * KD; // (n, KV*D)

        rmsnorm_forward(xb, NULL, x, w->attn_norm, n, C, c->rms_eps);
        matmul_forward(q, xb, w->wq, w->bq, n, C, QD);
        matmul_forward(kn, xb, w->wk, w->bk, n, C, KD);
        matmul_forward(vn, xb, w->wv, w->bv, n, C, KD);
        if (w->q_norm) rmsnorm_forward(q, NULL, q, w->q_norm, n * H, D, c->rms_eps);
        if (w->k_norm) rmsnorm_forward(kn, NULL, kn, w->k_norm, n * KV, D, c->rms_eps);
        rope_forward(q, kc->pos, m->rope_inv_freq, n, H, D);
        rope_forward(kn, kc->pos, m->rope_inv_freq, n, KV, D);
        attention_forward_cached(att, kc->scores, q, kl, vl, n, pos0, H, KV, D); // (n, H*D)
        matmul_forward(xb, att, w->wo, w->bo, n, QD, C);
        add_inplace(x, xb, (size_t)n * C);

        rmsnorm_forward(xb, NULL, x, w->mlp_norm, n, C, c->rms_eps);
        matmul_forward(hb, xb, w->w_gate, w->b_gate, n, C, F);
        matmul_forward(hb2, xb, w->w_up, w->b_up, n, C, F);
        swiglu_forward(hb, hb, hb2, (size_t)n * F);
        matmul_forward(xb, hb, w->w_down, w->b_down, n, F, C);
        add_inplace(x, xb, (size_t)n * C);
    }
    if (!logits) return;
    const float *head = m->w.lm_head ? m->w.lm_head : m->w.embed; // (V, C)
    if (all_logits) {
        rmsnorm_forward(xb, NULL, x, m->w.final_norm, n, C, c->rms_eps);
        matmul_forward(logits, xb, head, NULL, n, C, c->vocab_size);
    } else {
        const float *last = x + (size_t)(n - 1) * C;
        rmsnorm_forward(xb, NULL, last, m->w.final_norm, 1, C, c->rms_eps);
        matmul_forward(logits, xb, head, NULL, 1, C, c->vocab_size);
    }
}

ft_status ft_model_forward(const ft_model *m, ft_kv_cache *cache, const int *ids, int n, int pos0,
                           float *logits, int all_logits) {
    const ft_config *c = &m->cfg;
    if (n <= 0) return ft_errorf(FT_ERR_ARG, "forward: no tokens");
    FT_ASSERT(cache->chunk >= 1 && cache->chunk <= cache->max_seq);
    if (pos0 < 0 || (int64_t)pos0 + n > cache->max_seq)
        return ft_errorf(FT_ERR_ARG, "forward: positions %d..%d exceed the cache (%d positions)",
                         pos0, pos0 + n - 1, cache->max_seq);
    if (cache->n_layers != c->n_layers || cache->kv_dim != c->n_kv_heads * c->head_dim)
        return ft_errorf(FT_ERR_ARG, "forward: kv cache was made for another model shape");
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return ft_errorf(FT_ERR_ARG, "forward: token id %d at index %d is outside [0, %d)",
                             ids[i], i, c->vocab_size);
    for (int done = 0; done < n; done += cache->chunk) {
        int len = n - done < cache->chunk ? n - done : cache->chunk;
        int last_chunk = done + len == n;
        float *lg = all_logits ? logits + (size_t)done * c->vocab_size : logits;
        /* intermediate chunks only fill the cache, unless every position's logits are wanted */
        forward_chunk(m, cache, ids + done, len, pos0 + done,
                      all_logits || last_chunk ? lg : NULL, all_logits);
    }
    return FT_OK;
}
