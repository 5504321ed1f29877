/*
 * SFT samples: render a record with its chat template, tokenize the whole string once, map the
 * trained segments to tokens, build loss labels, truncate to sequence_len, split off validation
 * samples, and lay samples into training rows (one per row, or packed several per row with
 * positions restarting and a segment id per sample so attention never crosses samples).
 *
 * Segment -> token mapping. BPE may merge characters across a segment border, so tokenizing the
 * segments one by one can give other ids than tokenizing the whole string (what the reference,
 * apply_chat_template + tokenizer, does). We encode the whole string once, and for every segment
 * start b take k(b) = the length of the common prefix of encode(text[0,b)) and the whole encoding:
 * tokens before k(b) end at or before b. Segment i owns tokens [k(start_i), k(start_{i+1})). A
 * token straddling a border thus belongs to the later segment. Cost: one prefix encoding per
 * segment border, fine for instruction samples.
 */
#include "ftune/data.h"
#include "ftune/instruct.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ft_sft_sample_free(ft_sft_sample *s) {
    if (!s) return;
    free(s->ids);
    free(s->labels);
    memset(s, 0, sizeof *s);
}

static int common_prefix(const int *a, int na, const int *b, int nb) {
    int k = 0;
    while (k < na && k < nb && a[k] == b[k]) k++;
    return k;
}

ft_status ft_sft_tokenize(const ft_records *r, const ft_record *rec, const ft_sft_options *o,
                          ft_sft_sample *out) {
    memset(out, 0, sizeof *out);
    const char *file = rec->src >= 0 && rec->src < r->n_files ? r->files[rec->src] : "?";
    out->src = rec->src;
    out->line = rec->line;
    ft_status st;
    if (rec->kind == FT_REC_TEXT) {
        int *ids = NULL, n = 0;
        if ((st = o->enc(o->enc_ctx, rec->text, strlen(rec->text), 1, &ids, &n)))
            return ft_error_wrap(st, "%s:%d", file, rec->line);
        int extra = o->eos_id >= 0 ? 1 : 0;
        out->ids = malloc(sizeof(int) * (size_t)(n + extra + 1));
        out->labels = malloc(sizeof(int) * (size_t)(n + extra + 1));
        if (!out->ids || !out->labels) {
            free(ids);
            ft_sft_sample_free(out);
            return ft_errorf(FT_ERR_NOMEM, "out of memory");
        }
        if (n) memcpy(out->ids, ids, sizeof(int) * (size_t)n);
        free(ids);
        if (extra) out->ids[n] = o->eos_id;
        out->n = n + extra;
        memcpy(out->labels, out->ids, sizeof(int) * (size_t)out->n);
        return FT_OK;
    }
    if (rec->kind != FT_REC_CHAT)
        return ft_errorf(FT_ERR_ARG,
                         "%s:%d: a preference record cannot be used for SFT (use a preference "
                         "stage, or type chat_template/alpaca for SFT)",
                         file, rec->line);
    if (!o->tpl) return ft_errorf(FT_ERR_ARG, "%s: no chat_template chosen", file);
    ft_rendered rd = {0};
    int *ids = NULL, n = 0, *pre = NULL, npre = 0;
    if ((st = ft_chat_render(o->tpl, rec->msgs, rec->n_msgs, 0, o->bos, o->eos, &rd))) {
        ft_error_wrap(st, "%s:%d", file, rec->line);
        goto done;
    }
    if ((st = o->enc(o->enc_ctx, rd.text, rd.len, 0, &ids, &n))) {
        ft_error_wrap(st, "%s:%d", file, rec->line);
        goto done;
    }
    out->ids = ids;
    out->n = n;
    ids = NULL;
    out->labels = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    if (!out->labels) {
        st = ft_errorf(FT_ERR_NOMEM, "out of memory");
        goto done;
    }
    /* token index where each segment starts */
    int k_prev = 0;
    for (int s = 0; s < rd.n_seg; s++) {
        int k_next = n;
        if (s + 1 < rd.n_seg) {
            free(pre);
            pre = NULL;
            if ((st = o->enc(o->enc_ctx, rd.text, rd.seg_end[s], 0, &pre, &npre))) {
                ft_error_wrap(st, "%s:%d", file, rec->line);
                goto done;
            }
            k_next = common_prefix(pre, npre, out->ids, n);
            if (k_next < k_prev) k_next = k_prev;
        }
        int tr = o->train_on_inputs || rd.seg_train[s];
        for (int t = k_prev; t < k_next; t++) out->labels[t] = tr ? out->ids[t] : FT_IGNORE_INDEX;
        k_prev = k_next;
    }
    st = FT_OK;
done:
    free(pre);
    free(ids);
    ft_rendered_free(&rd);
    if (st) ft_sft_sample_free(out);
    return st;
}

void ft_sft_dataset_free(ft_sft_dataset *ds) {
    if (!ds) return;
    for (int64_t i = 0; i < ds->n; i++) ft_sft_sample_free(&ds->samples[i]);
    free(ds->samples);
    free(ds->train);
    free(ds->val);
    memset(ds, 0, sizeof *ds);
}

static int has_target(const ft_sft_sample *s) {
    /* a label at t >= 1 becomes a target after the shift (t = 0 has no prediction before it) */
    for (int t = 1; t < s->n; t++)
        if (s->labels[t] != FT_IGNORE_INDEX) return 1;
    return 0;
}

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s >> 12, *s ^= *s << 25, *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

ft_status ft_sft_dataset_build(ft_sft_dataset *ds, const ft_records *r, const ft_sft_options *o,
                               double val_size, uint64_t seed) {
    memset(ds, 0, sizeof *ds);
    if (o->T < 2) return ft_errorf(FT_ERR_ARG, "sequence_len %d is too small", o->T);
    ds->samples = calloc(r->n ? r->n : 1, sizeof *ds->samples);
    if (!ds->samples) return ft_errorf(FT_ERR_NOMEM, "out of memory");
    ft_status st = FT_OK;
    for (size_t i = 0; i < r->n; i++) {
        const ft_record *rec = &r->recs[i];
        ft_sft_sample s;
        if ((st = ft_sft_tokenize(r, rec, o, &s))) goto fail;
        if (s.n > o->T) {
            const char *file = r->files[rec->src];
            if (o->truncation == FT_TRUNC_ERROR) {
                st = ft_errorf(FT_ERR_ARG,
                               "%s:%d: sample has %d tokens, longer than sequence_len %d (set "
                               "truncation: drop or truncation: truncate, or raise sequence_len)",
                               file, rec->line, s.n, o->T);
                ft_sft_sample_free(&s);
                goto fail;
            }
            if (o->truncation == FT_TRUNC_DROP) {
                ds->n_dropped++;
                ft_sft_sample_free(&s);
                continue;
            }
            s.n = o->T;
            ds->n_truncated++;
        }
        if (!has_target(&s)) {
            ds->n_no_target++;
            ft_sft_sample_free(&s);
            continue;
        }
        ds->n_tokens += s.n;
        for (int t = 1; t < s.n; t++) ds->n_target_tokens += s.labels[t] != FT_IGNORE_INDEX;
        ds->samples[ds->n++] = s;
    }
    if (ds->n == 0) {
        st = ft_errorf(FT_ERR_ARG,
                       "no usable sample: %zu records, %lld dropped as longer than sequence_len "
                       "%d, %lld without any trained token",
                       r->n, (long long)ds->n_dropped, o->T, (long long)ds->n_no_target);
        goto fail;
    }
    /* validation split: seeded permutation, the first n_val go to validation */
    int64_t n_val = ft_val_rows(val_size, (int64_t)ds->n);
    if (n_val >= ds->n) {
        st = ft_errorf(FT_ERR_ARG, "val_set_size %g leaves no training sample (%lld samples)",
                       val_size, (long long)ds->n);
        goto fail;
    }
    int64_t *perm = malloc(sizeof(int64_t) * (size_t)ds->n);
    ds->val = malloc(sizeof(int64_t) * (size_t)(n_val ? n_val : 1));
    ds->train = malloc(sizeof(int64_t) * (size_t)ds->n);
    if (!perm || !ds->val || !ds->train) {
        free(perm);
        st = ft_errorf(FT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int64_t i = 0; i < ds->n; i++) perm[i] = i;
    uint64_t s = seed ^ 0xD1B54A32D192ED03ull;
    if (!s) s = 1;
    for (int64_t i = ds->n - 1; i > 0; i--) {
        int64_t j = (int64_t)(rng_next(&s) % (uint64_t)(i + 1));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    /* validation = the first n_val of the permutation (kept in data order), train = the rest in
     * data order (the trainer shuffles per epoch) */
    char *is_val = calloc((size_t)ds->n, 1);
    if (!is_val) {
        free(perm);
        st = ft_errorf(FT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int64_t i = 0; i < n_val; i++) is_val[perm[i]] = 1;
    for (int64_t i = 0; i < ds->n; i++) {
        if (is_val[i]) ds->val[ds->n_val++] = i;
        else ds->train[ds->n_train++] = i;
    }
    free(is_val);
    free(perm);
    return FT_OK;
fail:
    ft_sft_dataset_free(ds);
    return st;
}

void ft_sft_row(const ft_sft_dataset *ds, const int64_t *idx, int n, int T, int pad_id,
                int *inputs, int *labels, int *pos, int *seg) {
    int t = 0;
    for (int k = 0; k < n; k++) {
        const ft_sft_sample *s = &ds->samples[idx[k]];
        FT_ASSERT(t + s->n <= T);
        for (int i = 0; i < s->n; i++, t++) {
            inputs[t] = s->ids[i];
            labels[t] = i + 1 < s->n ? s->labels[i + 1] : FT_IGNORE_INDEX;
            pos[t] = i;
            seg[t] = k;
        }
    }
    for (int p = 0; t < T; t++, p++) {
        inputs[t] = pad_id;
        labels[t] = FT_IGNORE_INDEX;
        pos[t] = p;
        seg[t] = n; /* padding: a segment of its own */
    }
}

ft_status ft_sft_pack(const ft_sft_dataset *ds, const int64_t *order, int64_t n, int T, int packing,
                      int64_t **row_start, int64_t *n_rows) {
    int64_t *rs = malloc(sizeof(int64_t) * (size_t)(n + 1));
    if (!rs) return ft_errorf(FT_ERR_NOMEM, "out of memory");
    int64_t rows = 0;
    int fill = T + 1; /* forces a new row for the first sample */
    for (int64_t i = 0; i < n; i++) {
        int len = ds->samples[order[i]].n;
        FT_ASSERT(len <= T);
        if (!packing || fill + len > T) {
            rs[rows++] = i;
            fill = 0;
        }
        fill += len;
    }
    rs[rows] = n;
    *row_start = rs;
    *n_rows = rows;
    return FT_OK;
}

ft_status ft_sft_rowset_build(ft_sft_rowset *rs, const ft_sft_dataset *ds, const int64_t *samples,
                              int64_t n, int T, int packing, int pad_id) {
    memset(rs, 0, sizeof *rs);
    rs->T = T;
    rs->pad_id = pad_id;
    rs->idx = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    if (!rs->idx) return ft_errorf(FT_ERR_NOMEM, "out of memory");
    if (n) memcpy(rs->idx, samples, sizeof(int64_t) * (size_t)n);
    ft_status st = ft_sft_pack(ds, rs->idx, n, T, packing, &rs->start, &rs->n);
    if (st) ft_sft_rowset_free(rs);
    return st;
}

void ft_sft_rowset_fill(const ft_sft_rowset *rs, const ft_sft_dataset *ds, int64_t r, int *inputs,
                        int *labels, int *pos, int *seg) {
    FT_ASSERT(r >= 0 && r < rs->n);
    ft_sft_row(ds, rs->idx + rs->start[r], (int)(rs->start[r + 1] - rs->start[r]), rs->T,
               rs->pad_id, inputs, labels, pos, seg);
}

void ft_sft_rowset_free(ft_sft_rowset *rs) {
    if (!rs) return;
    free(rs->idx);
    free(rs->start);
    memset(rs, 0, sizeof *rs);
}
