/*
 * Checkpoints for exact resume (contract in include/ftune/trainer.h).
 *
 * A checkpoint is a folder checkpoint-N/ with
 *   trainable.safetensors  per trainable tensor: "<name>" (value), "<name>.exp_avg",
 *                          "<name>.exp_avg_sq" (AdamW moments), all F32, shape as trained;
 *   trainer_state.json     {"format":"ftune-checkpoint","version":1, global_step, epoch, row,
 *                          RNG states (as decimal strings: they are 64-bit), running loss sums
 *                          (%.17g: round-trips doubles), adam_step, tensor names,
 *                          "run": the run identity (ft_run_id: settings, model and data
 *                          fingerprints), compared on resume}.
 * It is written into "<dir>.tmp.<pid>", each file fsynced, the folder fsynced, renamed into
 * place, and the parent fsynced: a crash leaves either no checkpoint-N or a complete one.
 * Pruning renames a folder out of the checkpoint-N namespace before deleting its files, so a
 * half-deleted checkpoint is never taken for a complete one either.
 * Not here: model weights of full fine-tuning beyond the trainable tensors (they are the
 * trainable tensors), HF's optimizer.pt / scheduler.pt formats.
 */
#include "ftune/safetensors.h"
#include "ftune/tokenizer.h"
#include "ftune/trainer.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CKPT_FORMAT "ftune-checkpoint"
#define CKPT_VERSION 1

static ft_status fsync_path(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return ft_errorf(FT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc) return ft_errorf(FT_ERR_IO, "%s: fsync failed: %s", path, strerror(e));
    return FT_OK;
}

static void parent_of(const char *path, char *out, size_t n) {
    snprintf(out, n, "%s", path);
    size_t l = strlen(out);
    while (l > 1 && out[l - 1] == '/') out[--l] = 0;
    char *s = strrchr(out, '/');
    if (!s) snprintf(out, n, ".");
    else if (s == out) out[1] = 0;
    else *s = 0;
}

/* Remove a flat folder (files only, as checkpoints are) and the folder itself. */
static ft_status remove_flat_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? FT_OK : ft_errorf(FT_ERR_IO, "%s: %s", dir, strerror(errno));
    struct dirent *e;
    char p[4096];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    if (rmdir(dir)) return ft_errorf(FT_ERR_IO, "%s: cannot remove: %s", dir, strerror(errno));
    return FT_OK;
}

void ft_run_id_set(ft_run_id *id, const char *key, const char *fmt, ...) {
    int i = 0;
    while (i < id->n && strcmp(id->key[i], key)) i++;
    if (i == FT_RUN_ID_MAX) return; /* a programming error: the table is sized for every key */
    if (i == id->n) id->n++;
    snprintf(id->key[i], sizeof id->key[i], "%s", key);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(id->value[i], sizeof id->value[i], fmt, ap);
    va_end(ap);
}

uint64_t ft_fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

ft_status ft_checkpoint_save(const char *dir, const ft_train_state *st, const ft_run_id *id,
                             const ft_trainable *t, int n_t, const float *params,
                             const ft_adamw *opt) {
    char tmp[4096], path[4200], parent[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dir, (long)getpid()) >= sizeof tmp - 64)
        return ft_errorf(FT_ERR_ARG, "%s: path too long", dir);
    remove_flat_dir(tmp); /* a leftover of this very pid */
    if (mkdir(tmp, 0755))
        return ft_errorf(FT_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    ft_status s = FT_OK;
    cJSON *js = NULL;
    char *text = NULL;
    ft_st_write_tensor *w = calloc((size_t)n_t * 3 + 1, sizeof *w);
    char (*names)[224] = calloc((size_t)n_t * 3 + 1, sizeof *names);
    if (!w || !names) {
        s = ft_errorf(FT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int k = 0; k < n_t; k++) {
        size_t off = (size_t)(t[k].param - params);
        const float *src[3] = {t[k].param, opt->m + off, opt->v + off};
        const char *suffix[3] = {"", ".exp_avg", ".exp_avg_sq"};
        for (int j = 0; j < 3; j++) {
            ft_st_write_tensor *x = &w[3 * k + j];
            snprintf(names[3 * k + j], sizeof names[0], "%s%s", t[k].name, suffix[j]);
            x->name = names[3 * k + j];
            x->dtype = FT_DTYPE_F32;
            x->data = src[j];
            if (t[k].cols) {
                x->ndim = 2;
                x->shape[0] = t[k].rows;
                x->shape[1] = t[k].cols;
            } else {
                x->ndim = 1;
                x->shape[0] = (int64_t)t[k].numel;
            }
        }
    }
    snprintf(path, sizeof path, "%s/trainable.safetensors", tmp);
    static const char *const meta[] = {"format", "pt", NULL};
    if ((s = ft_st_write(path, w, 3 * n_t, meta))) goto fail;

    js = cJSON_CreateObject();
    char num[32];
    cJSON_AddStringToObject(js, "format", CKPT_FORMAT);
    cJSON_AddNumberToObject(js, "version", CKPT_VERSION);
    cJSON_AddNumberToObject(js, "global_step", (double)st->step);
    cJSON_AddNumberToObject(js, "epoch", (double)st->epoch);
    cJSON_AddNumberToObject(js, "row", (double)st->row);
    cJSON_AddNumberToObject(js, "adam_step", (double)opt->step);
    snprintf(num, sizeof num, "%" PRIu64, st->data_rng);
    cJSON_AddStringToObject(js, "data_rng", num);
    snprintf(num, sizeof num, "%" PRIu64, st->model_rng);
    cJSON_AddStringToObject(js, "model_rng", num);
    snprintf(num, sizeof num, "%.17g", st->loss_sum);
    cJSON_AddStringToObject(js, "loss_sum", num);
    cJSON_AddNumberToObject(js, "loss_count", (double)st->loss_count);
    if (id) {
        cJSON *run = cJSON_AddObjectToObject(js, "run");
        for (int i = 0; i < id->n; i++) cJSON_AddStringToObject(run, id->key[i], id->value[i]);
    }
    cJSON *arr = cJSON_AddArrayToObject(js, "tensors");
    for (int k = 0; k < n_t; k++) cJSON_AddItemToArray(arr, cJSON_CreateString(t[k].name));
    text = cJSON_Print(js);
    if (!text) {
        s = ft_errorf(FT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    snprintf(path, sizeof path, "%s/trainer_state.json", tmp);
    if ((s = ft_write_file_atomic(path, text, strlen(text)))) goto fail;
    if ((s = fsync_path(tmp))) goto fail;
    /* a folder of the same name (re-saving a step after resume) moves aside first */
    struct stat sb;
    if (!stat(dir, &sb)) {
        char old[4200];
        snprintf(old, sizeof old, "%s.del.%ld", dir, (long)getpid());
        if (rename(dir, old)) {
            s = ft_errorf(FT_ERR_IO, "%s: cannot replace: %s", dir, strerror(errno));
            goto fail;
        }
        remove_flat_dir(old);
    }
    if (rename(tmp, dir)) {
        s = ft_errorf(FT_ERR_IO, "%s: rename failed: %s", dir, strerror(errno));
        goto fail;
    }
    parent_of(dir, parent, sizeof parent);
    s = fsync_path(parent);
    cJSON_Delete(js);
    free(text);
    free(w);
    free(names);
    return s;
fail:
    cJSON_Delete(js);
    free(text);
    free(w);
    free(names);
    remove_flat_dir(tmp);
    return s;
}

/* The integer at `k`: an integral JSON number in [0, 2^53] (every such double is exact). */
static ft_status json_count(const char *path, const cJSON *o, const char *k, int64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v) return ft_errorf(FT_ERR_FORMAT, "%s: missing field '%s'", path, k);
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= 9007199254740992.0) ||
        v->valuedouble != floor(v->valuedouble)) {
        char *txt = cJSON_PrintUnformatted(v);
        ft_status s = ft_errorf(FT_ERR_FORMAT, "%s: field '%s': %s is not an integer in [0, 2^53]",
                                path, k, txt ? txt : "?");
        free(txt);
        return s;
    }
    *out = (int64_t)v->valuedouble;
    return FT_OK;
}

/* The string at `k` (its value in *out), or an error naming the key. */
static ft_status json_string(const char *path, const cJSON *o, const char *k, const char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v) return ft_errorf(FT_ERR_FORMAT, "%s: missing field '%s'", path, k);
    if (!cJSON_IsString(v))
        return ft_errorf(FT_ERR_FORMAT, "%s: field '%s': expected a string", path, k);
    *out = v->valuestring;
    return FT_OK;
}

/* A 64-bit RNG state written as a decimal string: digits only, no sign or blank, in range. */
static ft_status json_u64_str(const char *path, const cJSON *o, const char *k, uint64_t *out) {
    const char *str;
    ft_status s = json_string(path, o, k, &str);
    if (s) return s;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(str, &end, 10);
    if (str[0] < '0' || str[0] > '9' || *end || errno) {
        char buf[64];
        return ft_errorf(FT_ERR_FORMAT,
                         "%s: field '%s': '%s' is not a decimal 64-bit unsigned "
                         "integer",
                         path, k, ft_printable(buf, sizeof buf, str));
    }
    *out = x;
    return FT_OK;
}

/* Read and check trainer_state.json at `path`: every number in range and consistent with the
 * others (the optimizer steps once per step; the running loss counts at most the steps done). */
static ft_status load_state(const char *path, cJSON *js, ft_train_state *st, int64_t *adam_step,
                            const ft_run_id *expect) {
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(js, "format");
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(js, "version");
    if (!cJSON_IsObject(js) || !cJSON_IsString(fmt) || strcmp(fmt->valuestring, CKPT_FORMAT) ||
        !cJSON_IsNumber(ver) || ver->valuedouble != CKPT_VERSION)
        return ft_errorf(FT_ERR_FORMAT, "%s: not an ftune checkpoint (format/version)", path);
    ft_status s;
    const char *ls;
    if ((s = json_count(path, js, "global_step", &st->step)) ||
        (s = json_count(path, js, "epoch", &st->epoch)) ||
        (s = json_count(path, js, "row", &st->row)) ||
        (s = json_count(path, js, "adam_step", adam_step)) ||
        (s = json_count(path, js, "loss_count", &st->loss_count)) ||
        (s = json_u64_str(path, js, "data_rng", &st->data_rng)) ||
        (s = json_u64_str(path, js, "model_rng", &st->model_rng)) ||
        (s = json_string(path, js, "loss_sum", &ls)))
        return s;
    char *end;
    st->loss_sum = strtod(ls, &end);
    if (end == ls || *end || !isfinite(st->loss_sum) || st->loss_sum < 0) {
        char buf[64];
        return ft_errorf(FT_ERR_FORMAT, "%s: field 'loss_sum': '%s' is not a finite number >= 0",
                         path, ft_printable(buf, sizeof buf, ls));
    }
    if (*adam_step != st->step)
        return ft_errorf(FT_ERR_FORMAT,
                         "%s: field 'adam_step': %" PRId64 " differs from "
                         "global_step %" PRId64 " (AdamW steps once per step)",
                         path, *adam_step, st->step);
    if (st->loss_count > st->step || (st->loss_count == 0 && st->loss_sum != 0))
        return ft_errorf(FT_ERR_FORMAT,
                         "%s: field 'loss_count': %" PRId64 " does not fit "
                         "global_step %" PRId64 " and loss_sum %.17g",
                         path, st->loss_count, st->step, st->loss_sum);
    const cJSON *run = cJSON_GetObjectItemCaseSensitive(js, "run");
    for (int i = 0; expect && i < expect->n; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(run, expect->key[i]);
        if (!cJSON_IsString(v) || strcmp(v->valuestring, expect->value[i]))
            return ft_errorf(FT_ERR_ARG,
                             "%s: this checkpoint was trained with %s %s, this run has %s: resume "
                             "with the settings, model and data it was made with, or use another "
                             "output_dir",
                             path, expect->key[i],
                             cJSON_IsString(v) ? v->valuestring : "(not recorded)",
                             expect->value[i]);
    }
    return FT_OK;
}

/* Whether a stored tensor has the trainable's shape: (rows, cols), or (numel) for a vector. */
static int same_shape(const ft_st_tensor *x, const ft_trainable *t) {
    if (t->cols) return x->ndim == 2 && x->shape[0] == t->rows && x->shape[1] == t->cols;
    return x->ndim == 1 && x->shape[0] == (int64_t)t->numel;
}

ft_status ft_checkpoint_load(const char *dir, ft_train_state *st, const ft_run_id *expect,
                             const ft_trainable *t, int n_t, float *params, ft_adamw *opt) {
    char path[4096];
    char *text = NULL;
    size_t len = 0;
    memset(st, 0, sizeof *st);
    if ((size_t)snprintf(path, sizeof path, "%s/trainer_state.json", dir) >= sizeof path)
        return ft_errorf(FT_ERR_ARG, "%s: path too long", dir);
    ft_status s = ft_read_file(path, &text, &len);
    if (s) return s;
    cJSON *js = cJSON_ParseWithLength(text, len);
    free(text);
    ft_st_set set = {0};
    int64_t adam_step = 0;
    if (!js) {
        s = ft_errorf(FT_ERR_FORMAT, "%s: invalid JSON (truncated or corrupt)", path);
        goto done;
    }
    if ((s = load_state(path, js, st, &adam_step, expect))) goto done;
    snprintf(path, sizeof path, "%s/trainable.safetensors", dir);
    if ((s = ft_st_open(&set, path))) goto done;
    if (set.n_tensors != 3 * n_t) {
        s = ft_errorf(FT_ERR_FORMAT,
                      "%s: holds %d tensors, this run trains %d (x3 with AdamW moments): was it "
                      "written for another method or model?", path, set.n_tensors, 3 * n_t);
        goto done;
    }
    /* every tensor is checked before any is copied: a refused checkpoint loads nothing */
    for (int pass = 0; pass < 2 && !s; pass++)
        for (int k = 0; k < n_t && !s; k++) {
            size_t off = (size_t)(t[k].param - params);
            float *dst[3] = {t[k].param, opt->m + off, opt->v + off};
            const char *suffix[3] = {"", ".exp_avg", ".exp_avg_sq"};
            for (int j = 0; j < 3; j++) {
                char nm[256];
                snprintf(nm, sizeof nm, "%s%s", t[k].name, suffix[j]);
                const ft_st_tensor *x = ft_st_find(&set, nm);
                if (!x || x->dtype != FT_DTYPE_F32 || !same_shape(x, &t[k])) {
                    s = ft_errorf(FT_ERR_FORMAT, "%s: tensor '%s' %s", path, nm,
                                  !x ? "missing" : "has another dtype or shape than this run's");
                    break;
                }
                const float *src = x->data;
                if (pass == 1) {
                    memcpy(dst[j], src, t[k].numel * sizeof(float));
                    continue;
                }
                for (size_t i = 0; i < t[k].numel; i++) {
                    float v;
                    memcpy(&v, src + i, sizeof v); /* the data need not be 4-byte aligned */
                    if (!isfinite(v) || (j == 2 && v < 0)) {
                        s = ft_errorf(FT_ERR_FORMAT, "%s: tensor '%s' element %zu is %g (%s)", path,
                                      nm, i, (double)v,
                                      isfinite(v) ? "a second moment must be >= 0" : "not finite");
                        break;
                    }
                }
                if (s) break;
            }
        }
    if (!s) opt->step = adam_step;
done:
    ft_st_close(&set);
    cJSON_Delete(js);
    return s;
}

/* N if `name` is exactly "checkpoint-N", else -1 */
static int64_t ckpt_number(const char *name) {
    if (strncmp(name, "checkpoint-", 11) || !name[11]) return -1;
    int64_t n = 0;
    for (const char *p = name + 11; *p; p++) {
        if (*p < '0' || *p > '9' || n > (INT64_MAX - 9) / 10) return -1;
        n = n * 10 + (*p - '0');
    }
    return n;
}

typedef struct {
    int64_t n;
    char name[256];
} ckpt_entry;

static int cmp_entry(const void *a, const void *b) {
    int64_t x = ((const ckpt_entry *)a)->n, y = ((const ckpt_entry *)b)->n;
    return x < y ? -1 : x > y;
}

/* The complete checkpoint folders of `dir`, sorted by N (malloc'ed). */
static ft_status list_ckpts(const char *dir, ckpt_entry **out, int *n_out) {
    *out = NULL;
    *n_out = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return FT_OK;
        return ft_errorf(FT_ERR_IO, "%s: %s", dir, strerror(errno));
    }
    ckpt_entry *v = NULL;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        int64_t k = ckpt_number(e->d_name);
        if (k < 0 || strlen(e->d_name) >= sizeof v[0].name) continue;
        char p[4096];
        struct stat sb;
        snprintf(p, sizeof p, "%s/%s/trainer_state.json", dir, e->d_name);
        if (stat(p, &sb)) continue;
        ckpt_entry *nv = realloc(v, sizeof *v * (size_t)(n + 1));
        if (!nv) {
            free(v);
            closedir(d);
            return ft_errorf(FT_ERR_NOMEM, "out of memory");
        }
        v = nv;
        v[n].n = k;
        snprintf(v[n].name, sizeof v[n].name, "%s", e->d_name);
        n++;
    }
    closedir(d);
    if (n) qsort(v, (size_t)n, sizeof *v, cmp_entry);
    *out = v;
    *n_out = n;
    return FT_OK;
}

ft_status ft_checkpoint_latest(const char *output_dir, char **out) {
    *out = NULL;
    ckpt_entry *v;
    int n;
    ft_status s = list_ckpts(output_dir, &v, &n);
    if (s || !n) {
        free(v);
        return s;
    }
    size_t len = strlen(output_dir) + strlen(v[n - 1].name) + 2;
    *out = malloc(len);
    if (!*out) s = ft_errorf(FT_ERR_NOMEM, "out of memory");
    else snprintf(*out, len, "%s/%s", output_dir, v[n - 1].name);
    free(v);
    return s;
}

ft_status ft_checkpoint_prune(const char *output_dir, int keep) {
    if (keep <= 0) return FT_OK;
    ckpt_entry *v;
    int n;
    ft_status s = list_ckpts(output_dir, &v, &n);
    for (int i = 0; !s && i < n - keep; i++) {
        char p[4096], del[4200];
        snprintf(p, sizeof p, "%s/%s", output_dir, v[i].name);
        snprintf(del, sizeof del, "%s.del.%ld", p, (long)getpid());
        if (rename(p, del)) s = ft_errorf(FT_ERR_IO, "%s: cannot remove: %s", p, strerror(errno));
        else s = remove_flat_dir(del);
    }
    free(v);
    return s;
}

/* A final output's temporary "<output>.tmp.<pid>" (the atomic writers' name) left by a process
 * that no longer runs: a run killed while writing its result. Only the names a run writes there
 * (the adapter or model, its config, the copied tokenizer files), so nothing of the user's. */
static int dead_output_temporary(const char *name) {
    static const char *const weights[] = {"adapter_model.safetensors", "adapter_config.json",
                                          "model.safetensors", "config.json"};
    enum { NW = sizeof weights / sizeof *weights };
    for (size_t i = 0; i < NW + FT_N_TOKENIZER_FILES; i++) {
        const char *out = i < NW ? weights[i] : ft_tokenizer_files[i - NW];
        size_t n = strlen(out);
        if (strncmp(name, out, n) || strncmp(name + n, ".tmp.", 5)) continue;
        const char *pid = name + n + 5;
        if (!*pid || strspn(pid, "0123456789") != strlen(pid) || strlen(pid) > 9) return 0;
        return kill((pid_t)atol(pid), 0) != 0 && errno == ESRCH;
    }
    return 0;
}

ft_status ft_checkpoint_clean(const char *output_dir) {
    DIR *d = opendir(output_dir);
    if (!d) return errno == ENOENT ? FT_OK : ft_errorf(FT_ERR_IO, "%s: %s", output_dir, strerror(errno));
    struct dirent *e;
    ft_status s = FT_OK;
    while ((e = readdir(d)) && !s) {
        if (dead_output_temporary(e->d_name)) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", output_dir, e->d_name);
            if (unlink(p) && errno != ENOENT)
                s = ft_errorf(FT_ERR_IO, "%s: cannot remove: %s", p, strerror(errno));
            continue;
        }
        if (strncmp(e->d_name, "checkpoint-", 11)) continue;
        if (!strstr(e->d_name, ".tmp.") && !strstr(e->d_name, ".del.")) continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", output_dir, e->d_name);
        s = remove_flat_dir(p);
    }
    closedir(d);
    return s;
}
