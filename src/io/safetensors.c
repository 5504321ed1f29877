/*
 * safetensors reader and writer.
 *
 * Reading: the file is mmapped (never copied); the header is parsed with cJSON and every length and
 * offset is checked against the file size before any arithmetic with it. Rules (the same as the
 * reference Rust implementation): the data block is covered exactly, without holes, overlaps or
 * trailing bytes; nbytes == numel * dtype size; names are unique (also across shards). A sharded
 * folder is read through model.safetensors.index.json, whose weight_map must agree exactly with the
 * shards' contents.
 *
 * Writing: header keys sorted by name, data laid out by descending element size then name so every
 * tensor starts aligned to its element size (the data block starts at a multiple of 8: the header
 * is padded with spaces, as HF does). Streamed to `path.tmp.<pid>`, fsynced, renamed.
 *
 * Not handled: big-endian hosts (safetensors is little-endian; we assume the host is too).
 */
#include "ftune/safetensors.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The reference implementation refuses headers above 100 MB; so do we. */
#define ST_MAX_HEADER ((uint64_t)100000000)
/* JSON numbers are doubles: integers above 2^53 are not exact, and no real file needs them. */
#define ST_MAX_INT ((double)9007199254740992.0)

/* A non-negative integer JSON number, exactly representable; -1 otherwise. */
static int64_t json_uint(const cJSON *v) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= ST_MAX_INT) || d != floor(d)) return -1;
    return (int64_t)d;
}

static void set_reset(ft_st_set *set) {
    memset(set, 0, sizeof *set);
}

void ft_st_close(ft_st_set *set) {
    if (!set) return;
    for (int i = 0; i < set->n_files; i++) {
        if (set->maps && set->maps[i] && set->map_sizes[i]) munmap(set->maps[i], set->map_sizes[i]);
        if (set->paths) free(set->paths[i]);
    }
    for (int i = 0; i < set->n_tensors; i++)
        free(set->tensors[i].name);
    free(set->paths);
    free(set->maps);
    free(set->map_sizes);
    free(set->tensors);
    set_reset(set);
}

/* Append a file slot (path copied); the map is attached by the caller. */
static ft_status add_file(ft_st_set *set, const char *path) {
    int n = set->n_files + 1;
    char **paths = realloc(set->paths, (size_t)n * sizeof *paths);
    if (paths) set->paths = paths;
    void **maps = realloc(set->maps, (size_t)n * sizeof *maps);
    if (maps) set->maps = maps;
    size_t *sizes = realloc(set->map_sizes, (size_t)n * sizeof *sizes);
    if (sizes) set->map_sizes = sizes;
    char *p = ft_strdup(path);
    if (!paths || !maps || !sizes || !p) {
        free(p);
        return ft_errorf(FT_ERR_NOMEM, "%s: out of memory", path);
    }
    set->paths[n - 1] = p;
    set->maps[n - 1] = NULL;
    set->map_sizes[n - 1] = 0;
    set->n_files = n;
    return FT_OK;
}

static int cmp_begin(const void *a, const void *b) {
    const ft_st_tensor *x = *(const ft_st_tensor *const *)a, *y = *(const ft_st_tensor *const *)b;
    const char *bx = x->data, *by = y->data;
    if (bx != by) return bx < by ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

static int cmp_name_ptr(const void *a, const void *b) {
    return strcmp((*(const ft_st_tensor *const *)a)->name, (*(const ft_st_tensor *const *)b)->name);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const ft_st_tensor *)a)->name, ((const ft_st_tensor *)b)->name);
}

/* Parse one tensor entry `e` of file `label` whose data block is [data, data + data_len). */
static ft_status parse_entry(ft_st_tensor *t, const char *label, const cJSON *e, const char *data,
                             uint64_t data_len) {
    char nm[80];
    ft_printable(nm, sizeof nm, e->string);
    if (!cJSON_IsObject(e))
        return ft_errorf(FT_ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object", label, nm);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!dt) return ft_errorf(FT_ERR_FORMAT, "%s: tensor '%s': missing 'dtype'", label, nm);
    if (!cJSON_IsString(dt))
        return ft_errorf(FT_ERR_FORMAT, "%s: tensor '%s': 'dtype' is not a string", label, nm);
    if (!sh) return ft_errorf(FT_ERR_FORMAT, "%s: tensor '%s': missing 'shape'", label, nm);
    if (!cJSON_IsArray(sh))
        return ft_errorf(FT_ERR_FORMAT, "%s: tensor '%s': 'shape' is not an array", label, nm);
    if (!off) return ft_errorf(FT_ERR_FORMAT, "%s: tensor '%s': missing 'data_offsets'", label, nm);
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return ft_errorf(FT_ERR_FORMAT,
                         "%s: tensor '%s': 'data_offsets' is not an array of 2 integers", label,
                         nm);
    char dn[80];
    if (ft_dtype_parse(dt->valuestring, &t->dtype) != 0)
        return ft_errorf(FT_ERR_UNSUPPORTED, "%s: tensor '%s': unknown dtype '%s'", label, nm,
                         ft_printable(dn, sizeof dn, dt->valuestring));
    int nd = cJSON_GetArraySize(sh);
    if (nd > FT_ST_MAX_DIMS)
        return ft_errorf(FT_ERR_UNSUPPORTED,
                         "%s: tensor '%s': %d dimensions (at most %d supported)", label, nm, nd,
                         FT_ST_MAX_DIMS);
    t->ndim = nd;
    /* numel with overflow checks: every partial product stays <= 2^53 */
    uint64_t numel = 1;
    int i = 0, zero = 0;
    for (const cJSON *d = sh->child; d; d = d->next, i++) {
        int64_t v = json_uint(d);
        if (v < 0)
            return ft_errorf(FT_ERR_FORMAT,
                             "%s: tensor '%s': shape[%d] is not a non-negative integer", label, nm,
                             i);
        t->shape[i] = v;
        if (v == 0)
            zero = 1;
        else if (!zero && numel > (uint64_t)ST_MAX_INT / (uint64_t)v)
            return ft_errorf(FT_ERR_FORMAT, "%s: tensor '%s': shape overflows", label, nm);
        else if (!zero)
            numel *= (uint64_t)v;
    }
    if (zero) numel = 0;
    int64_t b = json_uint(off->child), en = json_uint(off->child->next);
    if (b < 0 || en < 0)
        return ft_errorf(FT_ERR_FORMAT,
                         "%s: tensor '%s': 'data_offsets' are not non-negative integers", label,
                         nm);
    if (b > en)
        return ft_errorf(FT_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets [%lld, %lld] begin after end", label, nm,
                         (long long)b, (long long)en);
    if ((uint64_t)en > data_len)
        return ft_errorf(FT_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets [%lld, %lld] past the end of the data "
                         "block (%llu bytes)",
                         label, nm, (long long)b, (long long)en, (unsigned long long)data_len);
    uint64_t esz = ft_dtype_size(t->dtype);
    if (numel > UINT64_MAX / esz || numel * esz != (uint64_t)(en - b))
        return ft_errorf(FT_ERR_FORMAT,
                         "%s: tensor '%s': %lld bytes in data_offsets but shape x %s needs %llu",
                         label, nm, (long long)(en - b), ft_dtype_name(t->dtype),
                         (unsigned long long)(numel * esz));
    t->data = data + b;
    t->nbytes = (size_t)(en - b);
    return FT_OK;
}

/* Parse one whole file's bytes, appending its tensors (file index `file`) to set->tensors. */
static ft_status parse_file(ft_st_set *set, int file, const char *label, const void *buf,
                            size_t len) {
    const unsigned char *p = buf;
    if (len < 8)
        return ft_errorf(FT_ERR_FORMAT,
                         "%s: file is %zu bytes, shorter than the 8-byte header length", label,
                         len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | p[i];
    if (n > (uint64_t)len - 8)
        return ft_errorf(FT_ERR_FORMAT,
                         "%s: header length %llu past the end of the file (%zu bytes)", label,
                         (unsigned long long)n, len);
    if (n > ST_MAX_HEADER)
        return ft_errorf(FT_ERR_FORMAT, "%s: header length %llu above the 100 MB limit", label,
                         (unsigned long long)n);
    const char *hdr = (const char *)p + 8;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)n, &end, 0);
    if (!root) {
        size_t at = end && end >= hdr ? (size_t)(end - hdr) : 0;
        return ft_errorf(FT_ERR_FORMAT,
                         "%s: header is not valid JSON (near byte %zu of the header)", label, at);
    }
    ft_status st = FT_OK;
    for (const char *q = end; q < hdr + n; q++)
        if (*q != ' ' && *q != '\n' && *q != '\r' && *q != '\t' && *q != 0) {
            st = ft_errorf(FT_ERR_FORMAT, "%s: trailing bytes after the header JSON (byte %zu)",
                           label, (size_t)(q - hdr));
            goto done;
        }
    if (!cJSON_IsObject(root)) {
        st = ft_errorf(FT_ERR_FORMAT, "%s: header is not a JSON object", label);
        goto done;
    }
    const char *data = hdr + n;
    uint64_t data_len = (uint64_t)len - 8 - n;
    int count = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) {
            if (!cJSON_IsObject(e)) {
                st = ft_errorf(FT_ERR_FORMAT, "%s: '__metadata__' is not an object", label);
                goto done;
            }
            for (const cJSON *m = e->child; m; m = m->next)
                if (!cJSON_IsString(m)) {
                    char nm[80];
                    st = ft_errorf(FT_ERR_FORMAT, "%s: '__metadata__' value '%s' is not a string",
                                   label, ft_printable(nm, sizeof nm, m->string));
                    goto done;
                }
            continue;
        }
        count++;
    }
    int base = set->n_tensors;
    if (count > 0) {
        ft_st_tensor *ts = realloc(set->tensors, (size_t)(base + count) * sizeof *ts);
        if (!ts) {
            st = ft_errorf(FT_ERR_NOMEM, "%s: out of memory for %d tensors", label, count);
            goto done;
        }
        set->tensors = ts;
    }
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) continue;
        ft_st_tensor *t = &set->tensors[set->n_tensors];
        memset(t, 0, sizeof *t);
        t->file = file;
        if ((st = parse_entry(t, label, e, data, data_len)) != FT_OK) goto done;
        if (!(t->name = ft_strdup(e->string))) {
            st = FT_ERR_NOMEM;
            goto done;
        }
        set->n_tensors++;
    }
    /* unique names, then coverage: sorted by begin offset, each tensor starts where the previous
     * ended */
    if (count > 0) {
        ft_st_tensor **by = malloc((size_t)count * sizeof *by);
        if (!by) {
            st = ft_errorf(FT_ERR_NOMEM, "%s: out of memory", label);
            goto done;
        }
        for (int i = 0; i < count; i++)
            by[i] = &set->tensors[base + i];
        char nm[80], nm2[80];
        qsort(by, (size_t)count, sizeof *by, cmp_name_ptr);
        for (int i = 1; i < count && st == FT_OK; i++)
            if (!strcmp(by[i]->name, by[i - 1]->name))
                st = ft_errorf(FT_ERR_FORMAT, "%s: tensor '%s' appears twice", label,
                               ft_printable(nm, sizeof nm, by[i]->name));
        qsort(by, (size_t)count, sizeof *by, cmp_begin);
        uint64_t pos = 0;
        for (int i = 0; i < count && st == FT_OK; i++) {
            uint64_t b = (uint64_t)((const char *)by[i]->data - data);
            if (b < pos)
                st = ft_errorf(FT_ERR_FORMAT, "%s: tensor '%s': data_offsets overlap tensor '%s'",
                               label, ft_printable(nm, sizeof nm, by[i]->name), ft_printable(nm2, sizeof nm2, by[i - 1]->name));
            else if (b > pos)
                st = ft_errorf(FT_ERR_FORMAT,
                               "%s: tensor '%s': hole of %llu bytes before its data (offset %llu)",
                               label, ft_printable(nm, sizeof nm, by[i]->name), (unsigned long long)(b - pos),
                               (unsigned long long)b);
            pos = b + by[i]->nbytes;
        }
        free(by);
        if (st == FT_OK && pos != data_len)
            st = ft_errorf(FT_ERR_FORMAT, "%s: data block has %llu bytes not covered by any tensor",
                           label, (unsigned long long)(data_len - pos));
    } else if (data_len != 0) {
        st = ft_errorf(FT_ERR_FORMAT, "%s: no tensors but a %llu-byte data block", label,
                       (unsigned long long)data_len);
    }
done:
    cJSON_Delete(root);
    return st;
}

/* Sort all tensors by name and reject duplicates. */
static ft_status finish_set(ft_st_set *set) {
    if (set->n_tensors > 1)
        qsort(set->tensors, (size_t)set->n_tensors, sizeof *set->tensors, cmp_name);
    for (int i = 1; i < set->n_tensors; i++)
        if (!strcmp(set->tensors[i - 1].name, set->tensors[i].name)) {
            char nm[80];
            const ft_st_tensor *a = &set->tensors[i - 1], *b = &set->tensors[i];
            if (a->file == b->file)
                return ft_errorf(FT_ERR_FORMAT, "%s: tensor '%s' appears twice",
                                 set->paths[a->file], ft_printable(nm, sizeof nm, a->name));
            return ft_errorf(FT_ERR_FORMAT, "%s: tensor '%s' also appears in %s",
                             set->paths[b->file], ft_printable(nm, sizeof nm, a->name), set->paths[a->file]);
        }
    return FT_OK;
}

ft_status ft_st_parse(ft_st_set *set, const char *label, const void *buf, size_t len) {
    set_reset(set);
    ft_status st = add_file(set, label);
    if (st == FT_OK) st = parse_file(set, 0, label, buf, len);
    if (st == FT_OK) st = finish_set(set);
    if (st != FT_OK) ft_st_close(set);
    return st;
}

/* mmap `path` read-only as the set's file `file`. */
static ft_status map_file(ft_st_set *set, int file) {
    const char *path = set->paths[file];
    int fd = open(path, O_RDONLY);
    if (fd < 0) return ft_errorf(FT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return ft_errorf(FT_ERR_IO, "%s: not a regular file", path);
    }
    size_t len = (size_t)sb.st_size;
    if (len < 8) {
        close(fd);
        return ft_errorf(FT_ERR_FORMAT,
                         "%s: file is %zu bytes, shorter than the 8-byte header length", path, len);
    }
    void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED) return ft_errorf(FT_ERR_IO, "%s: mmap failed: %s", path, strerror(e));
    set->maps[file] = m;
    set->map_sizes[file] = len;
    return FT_OK;
}

static ft_status open_one(ft_st_set *set, const char *path) {
    ft_status st = add_file(set, path);
    if (st == FT_OK) st = map_file(set, set->n_files - 1);
    if (st == FT_OK)
        st = parse_file(set, set->n_files - 1, path, set->maps[set->n_files - 1],
                        set->map_sizes[set->n_files - 1]);
    return st;
}

typedef struct {
    const char *tensor, *shard;
} wm_entry;

static int cmp_wm(const void *a, const void *b) {
    return strcmp(((const wm_entry *)a)->tensor, ((const wm_entry *)b)->tensor);
}
static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int join_path(char *out, size_t cap, const char *dir, const char *name);

/* Sharded folder: read the index, open each distinct shard, check the weight_map both ways. */
static ft_status open_sharded(ft_st_set *set, const char *dir, const char *index_path) {
    char *text = NULL;
    size_t len = 0;
    ft_status st = ft_read_file(index_path, &text, &len);
    if (st != FT_OK) return st;
    cJSON *root = cJSON_ParseWithLength(text, len);
    wm_entry *wm = NULL;
    const char **shards = NULL;
    char nm[80], nm2[80];
    if (!root) {
        st = ft_errorf(FT_ERR_FORMAT, "%s: not valid JSON", index_path);
        goto done;
    }
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(map)) {
        st = ft_errorf(FT_ERR_FORMAT, "%s: key 'weight_map' missing or not an object", index_path);
        goto done;
    }
    int n = cJSON_GetArraySize(map);
    wm = calloc((size_t)n + 1, sizeof *wm);
    shards = calloc((size_t)n + 1, sizeof *shards);
    if (!wm || !shards) {
        st = ft_errorf(FT_ERR_NOMEM, "%s: out of memory", index_path);
        goto done;
    }
    int i = 0;
    for (const cJSON *e = map->child; e; e = e->next, i++) {
        if (!cJSON_IsString(e)) {
            st = ft_errorf(FT_ERR_FORMAT, "%s: weight_map['%s'] is not a string", index_path,
                           ft_printable(nm, sizeof nm, e->string));
            goto done;
        }
        const char *s = e->valuestring;
        if (!s[0] || strchr(s, '/') || !strcmp(s, "..") || !strcmp(s, ".")) {
            st = ft_errorf(FT_ERR_FORMAT,
                           "%s: weight_map['%s'] = '%s' is not a file name in this folder",
                           index_path, ft_printable(nm, sizeof nm, e->string), ft_printable(nm2, sizeof nm2, s));
            goto done;
        }
        wm[i].tensor = e->string;
        wm[i].shard = s;
        shards[i] = s;
    }
    qsort(wm, (size_t)n, sizeof *wm, cmp_wm);
    for (i = 1; i < n; i++)
        if (!strcmp(wm[i].tensor, wm[i - 1].tensor)) {
            st = ft_errorf(FT_ERR_FORMAT, "%s: tensor '%s' listed twice in weight_map", index_path,
                           ft_printable(nm, sizeof nm, wm[i].tensor));
            goto done;
        }
    qsort(shards, (size_t)n, sizeof *shards, cmp_str);
    for (i = 0; i < n; i++) {
        if (i > 0 && !strcmp(shards[i], shards[i - 1])) continue;
        char path[4096];
        if (!join_path(path, sizeof path, dir, shards[i])) {
            st = ft_errorf(FT_ERR_ARG, "%s: shard path too long", index_path);
            goto done;
        }
        if ((st = open_one(set, path)) != FT_OK) goto done;
    }
    if ((st = finish_set(set)) != FT_OK) goto done;
    /* every listed tensor lives in the named shard, and every shard tensor is listed */
    for (i = 0; i < n; i++) {
        const ft_st_tensor *t = ft_st_find(set, wm[i].tensor);
        if (!t) {
            st = ft_errorf(FT_ERR_NOT_FOUND, "%s: tensor '%s' listed in weight_map is not in %s",
                           index_path, ft_printable(nm, sizeof nm, wm[i].tensor), ft_printable(nm2, sizeof nm2, wm[i].shard));
            goto done;
        }
        const char *base = strrchr(set->paths[t->file], '/') + 1;
        if (strcmp(base, wm[i].shard)) {
            char nm3[80];
            st = ft_errorf(FT_ERR_FORMAT, "%s: tensor '%s' is listed in %s but lives in %s",
                           index_path, ft_printable(nm, sizeof nm, wm[i].tensor), ft_printable(nm2, sizeof nm2, wm[i].shard),
                           ft_printable(nm3, sizeof nm3, base));
            goto done;
        }
    }
    for (i = 0; i < set->n_tensors; i++) {
        wm_entry key = {set->tensors[i].name, NULL};
        if (!bsearch(&key, wm, (size_t)n, sizeof *wm, cmp_wm)) {
            st = ft_errorf(FT_ERR_FORMAT, "%s: tensor '%s' is not listed in %s",
                           set->paths[set->tensors[i].file], ft_printable(nm, sizeof nm, set->tensors[i].name),
                           index_path);
            goto done;
        }
    }
done:
    free(wm);
    free(shards);
    cJSON_Delete(root);
    free(text);
    return st;
}

/* "dir/name" into out (no doubled '/'); 0 if it does not fit. */
static int join_path(char *out, size_t cap, const char *dir, const char *name) {
    size_t n = strlen(dir);
    const char *sep = (n > 0 && dir[n - 1] == '/') ? "" : "/";
    return (size_t)snprintf(out, cap, "%s%s%s", dir, sep, name) < cap;
}

ft_status ft_st_open(ft_st_set *set, const char *path) {
    set_reset(set);
    struct stat sb;
    if (stat(path, &sb) != 0)
        return ft_errorf(FT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    ft_status st;
    if (S_ISDIR(sb.st_mode)) {
        char single[4096], index[4096];
        if (!join_path(single, sizeof single, path, "model.safetensors") ||
            !join_path(index, sizeof index, path, "model.safetensors.index.json"))
            return ft_errorf(FT_ERR_ARG, "%s: path too long", path);
        if (access(single, F_OK) == 0) {
            st = open_one(set, single);
            if (st == FT_OK) st = finish_set(set);
        } else if (access(index, F_OK) == 0) {
            st = open_sharded(set, path, index);
        } else {
            return ft_errorf(FT_ERR_NOT_FOUND,
                             "%s: no model.safetensors or model.safetensors.index.json", path);
        }
    } else {
        st = open_one(set, path);
        if (st == FT_OK) st = finish_set(set);
    }
    if (st != FT_OK) ft_st_close(set);
    return st;
}

const ft_st_tensor *ft_st_find(const ft_st_set *set, const char *name) {
    int lo = 0, hi = set->n_tensors - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(set->tensors[mid].name, name);
        if (c == 0) return &set->tensors[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

/* ---- writer ---- */

/* A growable string for the header. */
typedef struct {
    char *s;
    size_t len, cap;
    int oom;
} strbuf;

static void sb_add(strbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}
static void sb_str(strbuf *b, const char *s) {
    sb_add(b, s, strlen(s));
}
static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) sb_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}
/* JSON string literal with escapes. */
static void sb_json_str(strbuf *b, const char *s) {
    sb_str(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char e[2] = {'\\', (char)*p};
            sb_add(b, e, 2);
        } else if (*p < 0x20) {
            sb_printf(b, "\\u%04x", *p);
        } else {
            sb_add(b, (const char *)p, 1);
        }
    }
    sb_str(b, "\"");
}

typedef struct {
    const ft_st_write_tensor *t;
    uint64_t nbytes, begin;
} wslot;

static int cmp_wslot_name(const void *a, const void *b) {
    return strcmp(((const wslot *)a)->t->name, ((const wslot *)b)->t->name);
}
static int cmp_wslot_layout(const void *a, const void *b) {
    const wslot *x = a, *y = b;
    size_t ex = ft_dtype_size(x->t->dtype), ey = ft_dtype_size(y->t->dtype);
    if (ex != ey) return ex > ey ? -1 : 1;
    return strcmp(x->t->name, y->t->name);
}

/* write(2) all of it; on failure errno is kept. */
static int write_all(int fd, const void *data, size_t n) {
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (w == 0) {
            errno = ENOSPC;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

ft_status ft_st_write(const char *path, const ft_st_write_tensor *tensors, int n,
                      const char *const *metadata) {
    ft_status st = FT_OK;
    strbuf h = {0};
    wslot *slots = calloc((size_t)(n > 0 ? n : 1), sizeof *slots);
    int fd = -1;
    char tmp[4096];
    tmp[0] = 0;
    if (!slots) return ft_errorf(FT_ERR_NOMEM, "%s: out of memory", path);
    for (int i = 0; i < n; i++) {
        const ft_st_write_tensor *t = &tensors[i];
        FT_ASSERT(t->name && t->ndim >= 0 && t->ndim <= FT_ST_MAX_DIMS);
        FT_ASSERT((unsigned)t->dtype < FT_DTYPE_COUNT);
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0) {
                st = ft_errorf(FT_ERR_ARG, "%s: tensor '%s': negative dimension", path, t->name);
                goto done;
            }
            numel *= (uint64_t)t->shape[d];
        }
        slots[i].t = t;
        slots[i].nbytes = numel * ft_dtype_size(t->dtype);
    }
    qsort(slots, (size_t)n, sizeof *slots, cmp_wslot_name);
    for (int i = 1; i < n; i++)
        if (!strcmp(slots[i].t->name, slots[i - 1].t->name)) {
            st = ft_errorf(FT_ERR_ARG, "%s: tensor '%s' given twice", path, slots[i].t->name);
            goto done;
        }
    /* data layout: larger elements first, so each tensor is aligned to its element size */
    qsort(slots, (size_t)n, sizeof *slots, cmp_wslot_layout);
    uint64_t pos = 0;
    for (int i = 0; i < n; i++) {
        slots[i].begin = pos;
        pos += slots[i].nbytes;
    }
    /* header: keys sorted by name */
    qsort(slots, (size_t)n, sizeof *slots, cmp_wslot_name);
    sb_str(&h, "{");
    int first = 1;
    if (metadata && metadata[0]) {
        sb_str(&h, "\"__metadata__\":{");
        for (int i = 0; metadata[i]; i += 2) {
            FT_ASSERT(metadata[i + 1]);
            if (i) sb_str(&h, ",");
            sb_json_str(&h, metadata[i]);
            sb_str(&h, ":");
            sb_json_str(&h, metadata[i + 1]);
        }
        sb_str(&h, "}");
        first = 0;
    }
    for (int i = 0; i < n; i++) {
        const ft_st_write_tensor *t = slots[i].t;
        if (!first) sb_str(&h, ",");
        first = 0;
        sb_json_str(&h, t->name);
        sb_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", ft_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++)
            sb_printf(&h, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        sb_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)slots[i].begin,
                  (unsigned long long)(slots[i].begin + slots[i].nbytes));
    }
    sb_str(&h, "}");
    while (!h.oom && h.len % 8)
        sb_str(&h, " ");
    if (h.oom) {
        st = ft_errorf(FT_ERR_NOMEM, "%s: out of memory building the header", path);
        goto done;
    }
    /* stream: header length, header, data in layout order */
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp) {
        tmp[0] = 0;
        st = ft_errorf(FT_ERR_ARG, "%s: path too long", path);
        goto done;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        tmp[0] = 0;
        st = ft_errorf(FT_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        goto done;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
    if (write_all(fd, len8, 8) || write_all(fd, h.s, h.len)) goto write_fail;
    qsort(slots, (size_t)n, sizeof *slots, cmp_wslot_layout);
    for (int i = 0; i < n; i++)
        if (slots[i].nbytes && write_all(fd, slots[i].t->data, (size_t)slots[i].nbytes))
            goto write_fail;
    if (fsync(fd) != 0) goto write_fail;
    if (close(fd) != 0) {
        fd = -1;
        goto write_fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        st = ft_errorf(FT_ERR_IO, "%s: rename failed: %s", path, strerror(errno));
        goto done;
    }
    tmp[0] = 0;
    goto done;
write_fail:
    st = ft_errorf(FT_ERR_IO, "%s: write failed: %s", path, strerror(errno));
done:
    if (fd >= 0) close(fd);
    if (tmp[0]) unlink(tmp);
    free(h.s);
    free(slots);
    return st;
}
