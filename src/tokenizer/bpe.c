/*
 * The BPE model of tokenizer.json, with the semantics of Hugging Face's Rust `tokenizers`
 * (models/bpe/model.rs merge_word + word.rs merge_all):
 *   - a word starts as one symbol per character (continuing_subword_prefix on all but the first,
 *     end_of_word_suffix on the last); characters missing from the vocabulary become their
 *     "<0xXX>" byte tokens (byte_fallback) or unk (consecutive unks fused when fuse_unk);
 *   - merges are applied lowest rank first, leftmost first on ties, through a binary heap over a
 *     linked list of symbols: O(n log n) per word, stale heap entries skipped on pop;
 *   - ignore_merges: a word that is itself in the vocabulary is emitted as is.
 * A word cache (key: raw bytes + ByteLevel flag) skips all of that for repeated words.
 * Also the small shared helpers: buffers, string hash map, UTF-8, the ByteLevel alphabet.
 * Not here: dropout (rejected at load), pre-tokenization.
 */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

/* ---- buffers ---- */
ft_status tk_buf_reserve(tk_buf *b, size_t extra) {
    if (b->n + extra + 1 <= b->cap) return FT_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return ft_errorf(FT_ERR_NOMEM, "tokenizer: out of memory (%zu bytes)", cap);
    b->p = p;
    b->cap = cap;
    return FT_OK;
}

ft_status tk_buf_put(tk_buf *b, const void *s, size_t n) {
    if (tk_buf_reserve(b, n)) return FT_ERR_NOMEM;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return FT_OK;
}

void tk_buf_free(tk_buf *b) {
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

ft_status tk_ivec_put(tk_ivec *v, const int *x, size_t n) {
    if (v->n + n > v->cap) {
        size_t cap = v->cap ? v->cap : 64;
        while (cap < v->n + n) cap *= 2;
        int *p = realloc(v->p, cap * sizeof *p);
        if (!p) return ft_errorf(FT_ERR_NOMEM, "tokenizer: out of memory (%zu ids)", cap);
        v->p = p;
        v->cap = cap;
    }
    if (n) memcpy(v->p + v->n, x, n * sizeof *x);
    v->n += n;
    return FT_OK;
}

ft_status tk_ivec_push(tk_ivec *v, int x) { return tk_ivec_put(v, &x, 1); }

/* ---- hashing and the string map ---- */
/* 8 bytes at a time, multiply-xorshift mixing: fast on short keys (tokens, words). */
static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ull;
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ull;
    return x ^ (x >> 32);
}

uint64_t tk_hash(const void *s, size_t n) {
    const unsigned char *p = s;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ mix64(w)) * 0x9e3779b97f4a7c15ull;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    return mix64(h ^ w ^ ((uint64_t)n << 59));
}

static ft_status strmap_grow(tk_strmap *m) {
    size_t cap = m->cap ? m->cap * 2 : 1024;
    tk_strmap_ent *e = calloc(cap, sizeof *e);
    if (!e) return ft_errorf(FT_ERR_NOMEM, "tokenizer: out of memory (vocabulary map)");
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->e[i].k) continue;
        size_t j = m->e[i].h & (cap - 1);
        while (e[j].k) j = (j + 1) & (cap - 1);
        e[j] = m->e[i];
    }
    free(m->e);
    m->e = e;
    m->cap = cap;
    return FT_OK;
}

ft_status tk_strmap_set(tk_strmap *m, const char *k, size_t klen, int v) {
    if ((m->n + 1) * 2 > m->cap && strmap_grow(m)) return FT_ERR_NOMEM;
    uint64_t h = tk_hash(k, klen);
    size_t j = h & (m->cap - 1);
    while (m->e[j].k) {
        if (m->e[j].h == h && m->e[j].klen == klen && !memcmp(m->e[j].k, k, klen)) {
            m->e[j].v = v;
            return FT_OK;
        }
        j = (j + 1) & (m->cap - 1);
    }
    m->e[j] = (tk_strmap_ent){k, (uint32_t)klen, v, h};
    m->n++;
    return FT_OK;
}

int tk_strmap_get(const tk_strmap *m, const char *k, size_t klen) {
    if (!m->cap) return -1;
    uint64_t h = tk_hash(k, klen);
    size_t j = h & (m->cap - 1);
    while (m->e[j].k) {
        if (m->e[j].h == h && m->e[j].klen == klen && !memcmp(m->e[j].k, k, klen)) return m->e[j].v;
        j = (j + 1) & (m->cap - 1);
    }
    return -1;
}

void tk_strmap_free(tk_strmap *m) {
    free(m->e);
    m->e = NULL;
    m->cap = m->n = 0;
}

/* ---- UTF-8 ---- */
uint32_t tk_utf8_next(const char *s, size_t n, size_t *i) {
    const unsigned char *p = (const unsigned char *)s + *i;
    size_t left = n - *i;
    if (p[0] < 0x80 || left < 2) {
        *i += 1;
        return p[0];
    }
    if (p[0] < 0xE0) {
        *i += 2;
        return ((uint32_t)(p[0] & 0x1F) << 6) | (p[1] & 0x3F);
    }
    if (p[0] < 0xF0 || left < 4) {
        *i += 3;
        return ((uint32_t)(p[0] & 0x0F) << 12) | ((uint32_t)(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
    }
    *i += 4;
    return ((uint32_t)(p[0] & 0x07) << 18) | ((uint32_t)(p[1] & 0x3F) << 12) | ((uint32_t)(p[2] & 0x3F) << 6) |
           (p[3] & 0x3F);
}

int tk_utf8_put(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the valid UTF-8 sequence at s (0 if invalid); *sub gets the length of the maximal
 * invalid subpart when invalid (>= 1). */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t *sub) {
    unsigned c = s[0];
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    *sub = 1;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    for (size_t k = 1; k <= need; k++) {
        if (k >= n) return 0;
        unsigned d = s[k];
        if (k == 1 ? (d < lo || d > hi) : (d < 0x80 || d > 0xBF)) return 0;
        *sub = k + 1;
    }
    return need + 1;
}

size_t tk_utf8_check(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, sub;
    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        size_t l = utf8_seq(p + i, n - i, &sub);
        if (!l) return i + 1;
        i += l;
    }
    return 0;
}

ft_status tk_utf8_lossy(tk_buf *b, const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, start = 0, sub;
    while (i < n) {
        size_t l = utf8_seq(p + i, n - i, &sub);
        if (l) {
            i += l;
            continue;
        }
        if (tk_buf_put(b, s + start, i - start) || tk_buf_put(b, "\xEF\xBF\xBD", 3)) return FT_ERR_NOMEM;
        i += sub;
        start = i;
    }
    return tk_buf_put(b, s + start, n - start);
}

/* ---- the ByteLevel alphabet (GPT-2 bytes_to_unicode) ---- */
static int bl_printable(unsigned b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE); }

/* The 68 non-printable bytes (0x00-0x20, 0x7F-0xA0, 0xAD) map to U+0100.. in byte order. */
static uint32_t bl_cp(unsigned b) {
    if (bl_printable(b)) return b;
    if (b <= 0x20) return 256 + b;
    if (b >= 0x7F && b <= 0xA0) return 256 + 33 + (b - 0x7F);
    return 256 + 67; /* 0xAD */
}

int tk_bytelevel_char(unsigned b, char *out) { return tk_utf8_put(bl_cp(b & 0xFF), out); }

int tk_bytelevel_byte(uint32_t cp) {
    if (cp < 256) return bl_printable(cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    unsigned k = cp - 256;
    if (k < 33) return (int)k;
    if (k < 67) return (int)(0x7F + k - 33);
    return 0xAD;
}

/* ---- merges ---- */
static uint64_t pair_key(int a, int b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

int tk_bpe_merge_get(const tk_bpe *m, int a, int b, int *rank, int *id) {
    if (!m->merge_cap) return 0;
    uint64_t key = pair_key(a, b);
    size_t j = mix64(key) & (m->merge_cap - 1);
    while (m->merges[j].key != UINT64_MAX) {
        if (m->merges[j].key == key) {
            *rank = m->merges[j].rank;
            *id = m->merges[j].id;
            return 1;
        }
        j = (j + 1) & (m->merge_cap - 1);
    }
    return 0;
}

ft_status tk_bpe_merge_set(tk_bpe *m, int a, int b, int rank, int id) {
    if ((m->nmerges + 1) * 2 > m->merge_cap) {
        size_t cap = m->merge_cap ? m->merge_cap * 2 : 1024;
        tk_merge_ent *e = malloc(cap * sizeof *e);
        if (!e) return ft_errorf(FT_ERR_NOMEM, "tokenizer: out of memory (merges)");
        for (size_t i = 0; i < cap; i++) e[i].key = UINT64_MAX;
        for (size_t i = 0; i < m->merge_cap; i++) {
            if (m->merges[i].key == UINT64_MAX) continue;
            size_t j = mix64(m->merges[i].key) & (cap - 1);
            while (e[j].key != UINT64_MAX) j = (j + 1) & (cap - 1);
            e[j] = m->merges[i];
        }
        free(m->merges);
        m->merges = e;
        m->merge_cap = cap;
    }
    uint64_t key = pair_key(a, b);
    size_t j = mix64(key) & (m->merge_cap - 1);
    while (m->merges[j].key != UINT64_MAX && m->merges[j].key != key) j = (j + 1) & (m->merge_cap - 1);
    if (m->merges[j].key == UINT64_MAX) m->nmerges++;
    m->merges[j] = (tk_merge_ent){key, rank, id}; /* a later duplicate wins, as in HF */
    return FT_OK;
}

/* ---- merging one word ---- */
struct tk_heap_ent {
    int rank, pos, left, right; /* the pair as it was when pushed */
};

static int heap_less(const struct tk_heap_ent *a, const struct tk_heap_ent *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(struct tk_heap_ent *h, size_t *n, struct tk_heap_ent x) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&x, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static struct tk_heap_ent heap_pop(struct tk_heap_ent *h, size_t *n) {
    struct tk_heap_ent top = h[0], x = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &x)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
    return top;
}

static ft_status sym_reserve(tk_bpe *m, size_t n) {
    if (n <= m->sym_cap) return FT_OK;
    size_t cap = m->sym_cap ? m->sym_cap : 256;
    while (cap < n) cap *= 2;
    int *a = realloc(m->sym_id, cap * sizeof(int));
    if (a) m->sym_id = a;
    int *b = realloc(m->sym_prev, cap * sizeof(int));
    if (b) m->sym_prev = b;
    int *c = realloc(m->sym_next, cap * sizeof(int));
    if (c) m->sym_next = c;
    int *d = realloc(m->sym_len, cap * sizeof(int));
    if (d) m->sym_len = d;
    struct tk_heap_ent *h = realloc(m->heap, 4 * cap * sizeof *h);
    if (h) m->heap = h;
    if (!a || !b || !c || !d || !h) return ft_errorf(FT_ERR_NOMEM, "tokenizer: out of memory (word of %zu symbols)", n);
    m->sym_cap = cap;
    m->heap_cap = 4 * cap;
    return FT_OK;
}

/* Merge the symbols sym_id[0..n) (linked list) and append the result to out. */
static ft_status merge_symbols(tk_bpe *m, int n, tk_ivec *out) {
    int *id = m->sym_id, *prev = m->sym_prev, *next = m->sym_next, *len = m->sym_len;
    struct tk_heap_ent *h = m->heap;
    size_t hn = 0;
    for (int i = 0; i < n; i++) {
        prev[i] = i - 1;
        next[i] = i + 1 < n ? i + 1 : -1;
        len[i] = 1;
    }
    int rank, nid;
    for (int i = 0; i + 1 < n; i++)
        if (tk_bpe_merge_get(m, id[i], id[i + 1], &rank, &nid)) heap_push(h, &hn, (struct tk_heap_ent){rank, i, id[i], id[i + 1]});
    while (hn) {
        struct tk_heap_ent top = heap_pop(h, &hn);
        int p = top.pos;
        if (!len[p] || next[p] < 0) continue;
        int q = next[p];
        /* stale entry: the pair at p changed since the push (HF compares the merged id; a
         * symbol only grows to the right or dies, so a changed pair never yields the same id) */
        if (id[p] != top.left || id[q] != top.right) continue;
        tk_bpe_merge_get(m, id[p], id[q], &rank, &nid);
        id[p] = nid; /* merge q into p */
        len[q] = 0;
        next[p] = next[q];
        if (next[q] >= 0) prev[next[q]] = p;
        if (prev[p] >= 0 && tk_bpe_merge_get(m, id[prev[p]], id[p], &rank, &nid))
            heap_push(h, &hn, (struct tk_heap_ent){rank, prev[p], id[prev[p]], id[p]});
        if (next[p] >= 0 && tk_bpe_merge_get(m, id[p], id[next[p]], &rank, &nid))
            heap_push(h, &hn, (struct tk_heap_ent){rank, p, id[p], id[next[p]]});
    }
    for (int i = 0; i >= 0 && i < n; i = next[i])
        if (tk_ivec_push(out, id[i])) return FT_ERR_NOMEM;
    return FT_OK;
}

/* Build the initial symbols of a model-space word (characters of `w`) per HF merge_word. */
static ft_status init_symbols_generic(tk_bpe *m, const char *w, size_t n, int *nsym) {
    if (sym_reserve(m, 4 * n + 2)) return FT_ERR_NOMEM;
    size_t plen = m->prefix ? strlen(m->prefix) : 0, slen = m->suffix ? strlen(m->suffix) : 0;
    int k = 0, unk_open = 0;
    tk_buf *sc = &m->scratch;
    for (size_t i = 0; i < n;) {
        size_t st = i;
        uint32_t cp = tk_utf8_next(w, n, &i);
        const char *c = w + st;
        size_t cl = i - st;
        int t;
        if (m->cp_id && cp < 0x10000) { /* no prefix/suffix: direct table */
            t = m->cp_id[cp];
        } else {
            if (plen || slen) {
                sc->n = 0;
                if (st > 0 && plen && tk_buf_put(sc, m->prefix, plen)) return FT_ERR_NOMEM;
                if (tk_buf_put(sc, w + st, i - st)) return FT_ERR_NOMEM;
                if (i == n && slen && tk_buf_put(sc, m->suffix, slen)) return FT_ERR_NOMEM;
                c = sc->p;
                cl = sc->n;
            }
            t = tk_strmap_get(&m->vocab, c, cl);
        }
        if (t >= 0) {
            m->sym_id[k++] = t;
            unk_open = 0;
            continue;
        }
        if (m->byte_fallback) {
            int ok = 1;
            for (size_t j = 0; j < cl; j++)
                if (m->byte_fb[(unsigned char)c[j]] < 0) ok = 0;
            if (ok) {
                for (size_t j = 0; j < cl; j++) m->sym_id[k++] = m->byte_fb[(unsigned char)c[j]];
                continue; /* HF keeps a pending unk open across byte-fallback characters */
            }
        }
        if (m->unk_id < 0) {
            return ft_errorf(FT_ERR_ARG, "tokenizer: character '%.*s' is not in the vocabulary and the model has no unk_token",
                             (int)(i - st), w + st);
        }
        if (!(m->fuse_unk && unk_open)) m->sym_id[k++] = m->unk_id;
        unk_open = 1;
    }
    *nsym = k;
    return FT_OK;
}

ft_status tk_bpe_finish(tk_bpe *m) {
    if (m->prefix || m->suffix) return FT_OK;
    m->cp_id = malloc(0x10000 * sizeof *m->cp_id);
    if (!m->cp_id) return ft_errorf(FT_ERR_NOMEM, "tokenizer: out of memory (character table)");
    for (uint32_t cp = 0; cp < 0x10000; cp++) {
        char u[4];
        int l = tk_utf8_put(cp, u);
        m->cp_id[cp] = (cp >= 0xD800 && cp < 0xE000) ? -1 : tk_strmap_get(&m->vocab, u, (size_t)l);
    }
    return FT_OK;
}

/* ---- the word cache ---- */
#define CACHE_MAX_WORD 256
#define CACHE_MAX_ENTS (1u << 16)

static void cache_clear(tk_bpe *m) {
    if (m->cache) memset(m->cache, 0, m->cache_cap * sizeof *m->cache);
    m->cache_n = 0;
    m->cache_keys.n = 0;
    m->cache_vals.n = 0;
}

static const tk_cache_ent *cache_get(const tk_bpe *m, const char *w, size_t n, int flag, uint64_t h) {
    if (!m->cache) return NULL;
    size_t j = h & (m->cache_cap - 1);
    while (m->cache[j].klen) {
        const tk_cache_ent *e = &m->cache[j];
        if (e->h == h && e->klen == n + 1 && m->cache_keys.p[e->koff] == (char)flag &&
            !memcmp(m->cache_keys.p + e->koff + 1, w, n))
            return e;
        j = (j + 1) & (m->cache_cap - 1);
    }
    return NULL;
}

static void cache_put(tk_bpe *m, const char *w, size_t n, int flag, uint64_t h, const int *ids, size_t nids) {
    if (!m->cache) {
        m->cache = calloc(2 * CACHE_MAX_ENTS, sizeof *m->cache);
        if (!m->cache) return; /* the cache is an optimisation only */
        m->cache_cap = 2 * CACHE_MAX_ENTS;
    }
    if (m->cache_n >= CACHE_MAX_ENTS) cache_clear(m);
    size_t koff = m->cache_keys.n, voff = m->cache_vals.n;
    char f = (char)flag;
    if (tk_buf_put(&m->cache_keys, &f, 1) || tk_buf_put(&m->cache_keys, w, n) || tk_ivec_put(&m->cache_vals, ids, nids)) {
        ft_error_clear();
        cache_clear(m);
        return;
    }
    size_t j = h & (m->cache_cap - 1);
    while (m->cache[j].klen) j = (j + 1) & (m->cache_cap - 1);
    m->cache[j] = (tk_cache_ent){h, (uint32_t)koff, (uint32_t)(n + 1), (uint32_t)voff, (uint32_t)nids};
    m->cache_n++;
}

ft_status tk_bpe_encode_word(tk_bpe *m, const char *w, size_t n, int bytelevel, tk_ivec *out) {
    if (!n) return FT_OK;
    int cacheable = n <= CACHE_MAX_WORD;
    uint64_t h = 0;
    if (cacheable) {
        h = tk_hash(w, n) ^ (uint64_t)bytelevel;
        const tk_cache_ent *e = cache_get(m, w, n, bytelevel, h);
        if (e) return tk_ivec_put(out, m->cache_vals.p + e->voff, e->vlen);
    }
    size_t before = out->n;
    const char *mw = w; /* the word in model space */
    size_t mn = n;
    int fast_bytes = bytelevel && !m->prefix && !m->suffix;
    if (bytelevel && (!fast_bytes || m->ignore_merges)) {
        tk_buf *sc = &m->scratch;
        sc->n = 0;
        if (tk_buf_reserve(sc, 2 * n)) return FT_ERR_NOMEM;
        for (size_t i = 0; i < n; i++) sc->n += (size_t)tk_bytelevel_char((unsigned char)w[i], sc->p + sc->n);
        sc->p[sc->n] = 0;
        mw = sc->p;
        mn = sc->n;
    }
    int whole = m->ignore_merges ? tk_strmap_get(&m->vocab, mw, mn) : -1;
    if (whole >= 0) {
        if (tk_ivec_push(out, whole)) return FT_ERR_NOMEM;
    } else {
        int nsym = 0;
        if (fast_bytes) {
            if (sym_reserve(m, n + 2)) return FT_ERR_NOMEM;
            for (size_t i = 0; i < n; i++) {
                int t = m->bl_id[(unsigned char)w[i]];
                if (t < 0) return ft_errorf(FT_ERR_ARG, "tokenizer: byte 0x%02X has no ByteLevel token in the vocabulary", (unsigned char)w[i]);
                m->sym_id[nsym++] = t;
            }
        } else {
            /* the generic path reuses scratch, so copy a mapped word out of it first */
            char *copy = NULL;
            if (mw == m->scratch.p) {
                copy = malloc(mn + 1);
                if (!copy) return ft_errorf(FT_ERR_NOMEM, "tokenizer: out of memory");
                memcpy(copy, mw, mn);
                mw = copy;
            }
            ft_status st = init_symbols_generic(m, mw, mn, &nsym);
            free(copy);
            if (st) return st;
        }
        if (merge_symbols(m, nsym, out)) return FT_ERR_NOMEM;
    }
    if (cacheable) cache_put(m, w, n, bytelevel, h, out->p + before, out->n - before);
    return FT_OK;
}

void tk_bpe_free(tk_bpe *m) {
    if (m->tok)
        for (int i = 0; i < m->ntok; i++) free(m->tok[i]);
    free(m->tok);
    free(m->toklen);
    tk_strmap_free(&m->vocab);
    free(m->merges);
    free(m->prefix);
    free(m->suffix);
    free(m->cp_id);
    free(m->sym_id);
    free(m->sym_prev);
    free(m->sym_next);
    free(m->sym_len);
    free(m->heap);
    tk_buf_free(&m->scratch);
    free(m->cache);
    tk_buf_free(&m->cache_keys);
    free(m->cache_vals.p);
    memset(m, 0, sizeof *m);
}
