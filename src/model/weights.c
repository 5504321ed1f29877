/*
 * The weight table turned into data: the tensor list (names, shapes, offsets into the one f32
 * params buffer), the struct binding, and the check of a safetensors set against the list.
 * Everything here is generated from FT_GLOBAL_TENSORS / FT_LAYER_TENSORS in model.h: one table,
 * walked in one order (globals, then layer 0, 1, ...), absent tensors skipped.
 */
#include "ftune/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Element count of a table entry (cols == 0: 1-D). */
static size_t entry_numel(int rows, int cols) {
    return (size_t)rows * (size_t)(cols ? cols : 1);
}

/* Number of tensors the table yields for `c`. */
static int count_tensors(const ft_config *c) {
    int global = 0, per_layer = 0;
#define COUNT_G(f, name, r, k, present) global += (present) ? 1 : 0;
#define COUNT_L(f, name, r, k, present) per_layer += (present) ? 1 : 0;
    FT_GLOBAL_TENSORS(COUNT_G)
    FT_LAYER_TENSORS(COUNT_L)
#undef COUNT_G
#undef COUNT_L
    return global + per_layer * c->n_layers;
}

ft_status ft_weights_layout(const ft_config *c, ft_tensor_info **out, int *n_out, size_t *total) {
    *out = NULL;
    *n_out = 0;
    *total = 0;
    int n = count_tensors(c);
    ft_tensor_info *ts = calloc((size_t)n, sizeof *ts);
    if (!ts) return ft_errorf(FT_ERR_NOMEM, "out of memory for %d tensor entries", n);
    int i = 0, overflow = 0;
    size_t off = 0;
#define ADD(f, hf, r, k, present)                                                                  \
    if (present) {                                                                                 \
        ft_tensor_info *t = &ts[i++];                                                              \
        if (layer < 0)                                                                             \
            snprintf(t->name, sizeof t->name, "%s", hf);                                           \
        else                                                                                       \
            snprintf(t->name, sizeof t->name, "model.layers.%d.%s", layer, hf);                    \
        t->layer = layer;                                                                          \
        t->rows = (r);                                                                             \
        t->cols = (k);                                                                             \
        t->offset = off;                                                                           \
        t->numel = entry_numel(t->rows, t->cols);                                                  \
        if (__builtin_add_overflow(off, t->numel, &off)) overflow = 1;                             \
    }
    int layer = -1;
    FT_GLOBAL_TENSORS(ADD)
    for (layer = 0; layer < c->n_layers; layer++) {
        FT_LAYER_TENSORS(ADD)
    }
#undef ADD
    FT_ASSERT(i == n);
    if (overflow) {
        free(ts);
        return ft_errorf(FT_ERR_FORMAT, "config implies more parameters than memory can address");
    }
    *out = ts;
    *n_out = n;
    *total = off;
    return FT_OK;
}

void ft_weights_bind(ft_weights *w, const ft_config *c, float *base) {
    memset(w, 0, sizeof *w);
    size_t off = 0;
#define BIND(f, hf, r, k, present)                                                                 \
    if (present) {                                                                                 \
        dst->f = base + off;                                                                       \
        off += entry_numel((r), (k));                                                              \
    }
    {
        ft_weights *dst = w;
        FT_GLOBAL_TENSORS(BIND)
    }
    for (int l = 0; l < c->n_layers; l++) {
        ft_layer *dst = &w->layers[l];
        FT_LAYER_TENSORS(BIND)
    }
#undef BIND
}

static int cmp_info_name(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Tensors a checkpoint may carry that we do not load. */
static int harmless_extra(const ft_config *c, const char *name) {
    size_t n = strlen(name), k = strlen("rotary_emb.inv_freq");
    if (n >= k && !strcmp(name + n - k, "rotary_emb.inv_freq")) return 1;
    if (c->tie_embeddings && !strcmp(name, "lm_head.weight"))
        return 1; /* HF ties it to the embedding */
    return 0;
}

static void fmt_shape(char *out, size_t cap, const int64_t *shape, int ndim) {
    size_t at = 0;
    at += (size_t)snprintf(out, cap, "[");
    for (int d = 0; d < ndim && at < cap; d++)
        at += (size_t)snprintf(out + at, cap - at, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (at < cap) snprintf(out + at, cap - at, "]");
}

ft_status ft_weights_check(const ft_config *c, const ft_tensor_info *ts, int n,
                           const ft_st_set *set) {
    for (int i = 0; i < n; i++) {
        const ft_tensor_info *ti = &ts[i];
        const ft_st_tensor *t = ft_st_find(set, ti->name);
        if (!t) {
            if (set->n_files == 1)
                return ft_errorf(FT_ERR_NOT_FOUND, "%s: tensor '%s' is missing", set->paths[0],
                                 ti->name);
            return ft_errorf(FT_ERR_NOT_FOUND, "%s and %d other shard%s: tensor '%s' is missing",
                             set->paths[0], set->n_files - 1, set->n_files == 2 ? "" : "s",
                             ti->name);
        }
        const char *file = set->paths[t->file];
        if (t->dtype != FT_DTYPE_F32 && t->dtype != FT_DTYPE_F16 && t->dtype != FT_DTYPE_BF16)
            return ft_errorf(FT_ERR_FORMAT,
                             "%s: tensor '%s' has dtype %s, expected F32, F16 or BF16", file,
                             ti->name, ft_dtype_name(t->dtype));
        int64_t want[2] = {ti->rows, ti->cols};
        int want_nd = ti->cols ? 2 : 1;
        int ok = t->ndim == want_nd && t->shape[0] == want[0] &&
                 (want_nd == 1 || t->shape[1] == want[1]);
        if (!ok) {
            char a[64], b[160];
            fmt_shape(a, sizeof a, want, want_nd);
            fmt_shape(b, sizeof b, t->shape, t->ndim);
            return ft_errorf(FT_ERR_FORMAT, "%s: tensor '%s' has shape %s, config.json implies %s",
                             file, ti->name, b, a);
        }
    }
    /* unexpected tensors: binary search each set name among the layout's names */
    const char **names = malloc((size_t)(n > 0 ? n : 1) * sizeof *names);
    if (!names) return ft_errorf(FT_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++)
        names[i] = ts[i].name;
    qsort(names, (size_t)n, sizeof *names, cmp_info_name);
    ft_status st = FT_OK;
    for (int i = 0; i < set->n_tensors && st == FT_OK; i++) {
        const char *key = set->tensors[i].name;
        if (bsearch(&key, names, (size_t)n, sizeof *names, cmp_info_name) || harmless_extra(c, key))
            continue;
        char nm[80];
        size_t j = 0;
        for (; key[j] && j < 75; j++)
            nm[j] = (key[j] >= 32 && key[j] < 127) ? key[j] : '?';
        nm[j] = 0;
        st =
            ft_errorf(FT_ERR_FORMAT,
                      "%s: unexpected tensor '%s%s' (not part of a %s model with this config.json)",
                      set->paths[set->tensors[i].file], nm, key[j] ? "..." : "", c->model_type);
    }
    free(names);
    return st;
}
