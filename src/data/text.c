/*
 * Plain-text datasets for continued pre-training (contract in include/ftune/data.h): document
 * readers for .txt and .jsonl, tokenization into one EOS-joined stream, rows of T tokens with
 * shifted labels, the seeded train/validation split and per-epoch orders.
 * Not here: other dataset formats, chat templates, packing masks.
 */
#include "ftune/data.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Appends a copy of s[0..len) read at `line` of the last file in d->files. */
static ft_status docs_push(ft_text_docs *d, const char *s, size_t len, size_t line) {
    char **nd = realloc(d->docs, sizeof(char *) * (d->n + 1));
    if (!nd) return ft_errorf(FT_ERR_NOMEM, "out of memory");
    d->docs = nd;
    size_t *nl = realloc(d->lens, sizeof(size_t) * (d->n + 1));
    if (!nl) return ft_errorf(FT_ERR_NOMEM, "out of memory");
    d->lens = nl;
    int *ns = realloc(d->src, sizeof(int) * (d->n + 1));
    if (!ns) return ft_errorf(FT_ERR_NOMEM, "out of memory");
    d->src = ns;
    size_t *nli = realloc(d->lines, sizeof(size_t) * (d->n + 1));
    if (!nli) return ft_errorf(FT_ERR_NOMEM, "out of memory");
    d->lines = nli;
    d->src[d->n] = d->n_files - 1;
    d->lines[d->n] = line;
    char *c = malloc(len + 1);
    if (!c) return ft_errorf(FT_ERR_NOMEM, "out of memory");
    memcpy(c, s, len);
    c[len] = 0;
    d->docs[d->n] = c;
    d->lens[d->n] = len;
    d->n++;
    return FT_OK;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

ft_status ft_text_docs_read(ft_text_docs *d, const char *path, const char *field) {
    int jsonl = ends_with(path, ".jsonl");
    if (!jsonl && !ends_with(path, ".txt"))
        return ft_errorf(FT_ERR_UNSUPPORTED,
                         "%s: unsupported dataset file (type text reads .txt and .jsonl)", path);
    char *buf;
    size_t len;
    ft_status st = ft_read_file(path, &buf, &len);
    if (st) return st;
    if (memchr(buf, 0, len)) {
        free(buf);
        return ft_errorf(FT_ERR_FORMAT, "%s: contains a NUL byte (not a text file)", path);
    }
    char **nf = realloc(d->files, sizeof(char *) * (size_t)(d->n_files + 1));
    if (nf) d->files = nf;
    if (!nf || !(d->files[d->n_files] = ft_strdup(path))) {
        free(buf);
        return ft_errorf(FT_ERR_NOMEM, "out of memory");
    }
    d->n_files++;
    if (!jsonl) { /* the whole file is one document */
        st = len ? docs_push(d, buf, len, 0) : ft_errorf(FT_ERR_FORMAT, "%s: empty file", path);
        free(buf);
        return st;
    }
    size_t line = 0, n_before = d->n;
    char *p = buf, *end = buf + len;
    while (p < end && st == FT_OK) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        line++;
        char *q = p;
        while (q < le && (*q == ' ' || *q == '\t' || *q == '\r')) q++;
        if (q < le) { /* blank lines are skipped */
            cJSON *j = cJSON_ParseWithLength(p, (size_t)(le - p));
            if (!j) {
                st = ft_errorf(FT_ERR_FORMAT, "%s:%zu: invalid JSON", path, line);
            } else if (ft_json_nul_escape(p, (size_t)(le - p)) >= 0) { /* cJSON would cut there */
                st = ft_errorf(FT_ERR_FORMAT,
                               "%s:%zu: a string holds U+0000, which ftune does not accept", path,
                               line);
                cJSON_Delete(j);
            } else {
                const cJSON *f = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, field)
                                                   : NULL;
                const char *dup = ft_json_dup_key(j); /* HF reads the last value, cJSON the first */
                if (!cJSON_IsObject(j))
                    st = ft_errorf(FT_ERR_FORMAT, "%s:%zu: expected a JSON object", path, line);
                else if (dup)
                    st =
                        ft_errorf(FT_ERR_FORMAT, "%s:%zu: key '%s' appears twice", path, line, dup);
                else if (!cJSON_IsString(f))
                    st = ft_errorf(FT_ERR_FORMAT, "%s:%zu: no string field '%s'", path, line,
                                   field);
                else
                    st = docs_push(d, f->valuestring, strlen(f->valuestring), line);
                cJSON_Delete(j);
            }
        }
        p = nl ? nl + 1 : end;
    }
    free(buf);
    if (!st && d->n == n_before) st = ft_errorf(FT_ERR_FORMAT, "%s: no documents", path);
    return st;
}

void ft_text_docs_free(ft_text_docs *d) {
    if (!d) return;
    for (size_t i = 0; i < d->n; i++) free(d->docs[i]);
    free(d->docs);
    free(d->lens);
    free(d->src);
    free(d->lines);
    for (int i = 0; i < d->n_files; i++)
        free(d->files[i]);
    free(d->files);
    memset(d, 0, sizeof *d);
}

/* splitmix64: the generator behind every shuffle (state advanced in place) */
static uint64_t rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* uniform in [0, n) without modulo bias */
static uint64_t rng_below(uint64_t *s, uint64_t n) {
    uint64_t lim = UINT64_MAX - UINT64_MAX % n, r;
    do r = rng_next(s);
    while (r >= lim);
    return r % n;
}

static void shuffle(int64_t *v, int64_t n, uint64_t state) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_below(&state, (uint64_t)i + 1);
        int64_t t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

void ft_data_epoch_order(int64_t *order, int64_t n, uint64_t seed, int64_t epoch) {
    for (int64_t i = 0; i < n; i++) order[i] = i;
    uint64_t s = seed ^ 0x5eed5eed5eed5eedull;
    for (int64_t e = 0; e <= epoch; e++) rng_next(&s); /* a distinct start per epoch */
    s ^= (uint64_t)epoch * 0xd1b54a32d192ed03ull;
    shuffle(order, n, s);
}

int64_t ft_val_rows(double val_size, int64_t n) {
    return val_size <= 0           ? 0
           : val_size < 1          ? (int64_t)ceil(val_size * (double)n)
           : val_size >= (double)n ? n
                                   : (int64_t)val_size;
}

ft_status ft_text_dataset_build(ft_text_dataset *ds, const ft_text_docs *docs, ft_encode_fn enc,
                                void *enc_ctx, int eos_id, int T, double val_size, uint64_t seed) {
    memset(ds, 0, sizeof *ds);
    ds->T = T;
    if (T < 2) return ft_errorf(FT_ERR_ARG, "sequence_len %d: must be at least 2", T);
    size_t cap = 1 << 16, n = 0;
    int *stream = malloc(cap * sizeof(int));
    if (!stream) return ft_errorf(FT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < docs->n; i++) {
        int *ids = NULL;
        size_t k = 0;
        ft_status st = enc(enc_ctx, docs->docs[i], docs->lens[i], &ids, &k);
        if (st) {
            free(stream);
            if (!docs->src) return ft_error_wrap(st, "tokenizing document %zu", i);
            const char *f = docs->files[docs->src[i]];
            if (!docs->lines[i]) return ft_error_wrap(st, "%s", f);
            return ft_error_wrap(st, "%s:%zu", f, docs->lines[i]);
        }
        while (n + k + 1 > cap) {
            cap *= 2;
            int *ns = realloc(stream, cap * sizeof(int));
            if (!ns) {
                free(ids);
                free(stream);
                return ft_errorf(FT_ERR_NOMEM, "out of memory (token stream of %zu)", cap);
            }
            stream = ns;
        }
        if (k) memcpy(stream + n, ids, k * sizeof(int));
        n += k;
        free(ids);
        if (eos_id >= 0) stream[n++] = eos_id;
    }
    ds->n_stream = (int64_t)n;
    ds->n_rows = (int64_t)(n / (size_t)T);
    if (ds->n_rows == 0) {
        free(stream);
        return ft_errorf(FT_ERR_ARG, "the dataset has %zu tokens, fewer than sequence_len %d", n,
                         T);
    }
    ds->tokens = stream; /* rows are the stream's prefix; the tail is ignored */
    int64_t n_val = ft_val_rows(val_size, ds->n_rows);
    if (n_val >= ds->n_rows) {
        int64_t rows = ds->n_rows;
        ft_text_dataset_free(ds);
        return ft_errorf(FT_ERR_ARG, "val_set_size %g leaves no training rows (%lld rows of %d tokens)",
                         val_size, (long long)rows, T);
    }
    int64_t *perm = malloc(sizeof(int64_t) * (size_t)ds->n_rows);
    ds->val = malloc(sizeof(int64_t) * (size_t)(n_val ? n_val : 1));
    ds->train = malloc(sizeof(int64_t) * (size_t)(ds->n_rows - n_val));
    if (!perm || !ds->val || !ds->train) {
        free(perm);
        ft_text_dataset_free(ds);
        return ft_errorf(FT_ERR_NOMEM, "out of memory");
    }
    for (int64_t i = 0; i < ds->n_rows; i++) perm[i] = i;
    if (n_val) shuffle(perm, ds->n_rows, seed ^ 0x7a11da7a5e117ull);
    /* validation = the first n_val of the shuffled rows; train keeps stream order (the per-epoch
     * shuffle reorders it), both sorted so the split depends only on the seed */
    char *is_val = calloc((size_t)ds->n_rows, 1);
    if (!is_val) {
        free(perm);
        ft_text_dataset_free(ds);
        return ft_errorf(FT_ERR_NOMEM, "out of memory");
    }
    for (int64_t i = 0; i < n_val; i++) is_val[perm[i]] = 1;
    for (int64_t r = 0; r < ds->n_rows; r++) {
        if (is_val[r]) ds->val[ds->n_val++] = r;
        else ds->train[ds->n_train++] = r;
    }
    free(is_val);
    free(perm);
    return FT_OK;
}

void ft_text_dataset_free(ft_text_dataset *ds) {
    if (!ds) return;
    free(ds->tokens);
    free(ds->train);
    free(ds->val);
    memset(ds, 0, sizeof *ds);
}

void ft_text_row(const ft_text_dataset *ds, int64_t row, int *inputs, int *labels) {
    FT_ASSERT(row >= 0 && row < ds->n_rows);
    const int *x = ds->tokens + (size_t)row * (size_t)ds->T;
    memcpy(inputs, x, sizeof(int) * (size_t)ds->T);
    for (int t = 0; t + 1 < ds->T; t++) labels[t] = x[t + 1];
    labels[ds->T - 1] = FT_IGNORE_INDEX;
}
