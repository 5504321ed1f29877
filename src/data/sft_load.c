/*
 * The SFT data pipeline end to end: read every dataset of a run configuration, mix (and shuffle)
 * them, choose the chat template (by name, or the tokenizer's own when recognised), tokenize with
 * the model's tokenizer and build the dataset with its validation split. Used by `ftune train`,
 * `ftune preview` and the tests, so what the user previews is what is trained.
 */
#include "ftune/instruct.h"
#include "ftune/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ft_status encode(void *ctx, const char *text, size_t len, int add_special, int **ids,
                        int *n) {
    return ft_tokenizer_encode((ft_tokenizer *)ctx, text, len, add_special, ids, n);
}

static void note(char *notes, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void note(char *notes, size_t cap, const char *fmt, ...) {
    if (!notes || !cap) return;
    size_t k = strlen(notes);
    if (k + 2 >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(notes + k, cap - k - 1, fmt, ap);
    va_end(ap);
    k = strlen(notes);
    notes[k] = '\n';
    notes[k + 1] = 0;
}

/* A key given twice in tokenizer_config.json's objects that are read here (the top level, the
 * chat_template list's entries, bos/eos_token as AddedToken): transformers keeps the last value,
 * cJSON the first. NULL when there is none. */
static const char *tok_config_dup_key(const cJSON *j) {
    const char *dup = ft_json_dup_key(j);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "chat_template"), *e;
    if (cJSON_IsArray(t)) cJSON_ArrayForEach(e, t) if (!dup) dup = ft_json_dup_key(e);
    static const char *const keys[2] = {"bos_token", "eos_token"};
    for (int i = 0; i < 2 && !dup; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, keys[i]);
        if (cJSON_IsObject(v)) dup = ft_json_dup_key(v);
    }
    return dup;
}

ft_status ft_chat_template_resolve(const char *name, const char *tokenizer_dir,
                                   const ft_chat_template **out) {
    if (strcmp(name, "tokenizer_default")) return ft_chat_template_get(name, out);
    if (!tokenizer_dir)
        return ft_errorf(FT_ERR_ARG, "chat_template: tokenizer_default needs the model folder");
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", tokenizer_dir);
    char *buf = NULL;
    size_t len = 0;
    ft_status st = ft_read_file(path, &buf, &len);
    if (st) return ft_error_wrap(st, "chat_template: tokenizer_default");
    cJSON *j = cJSON_ParseWithLength(buf, len);
    free(buf);
    if (!j) return ft_errorf(FT_ERR_FORMAT, "%s: invalid JSON", path);
    const char *dup = tok_config_dup_key(j);
    if (dup) {
        st = ft_errorf(FT_ERR_FORMAT, "%s: key '%s' appears twice", path, dup);
        cJSON_Delete(j);
        return st;
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "chat_template");
    const char *src = NULL;
    if (cJSON_IsString(t)) {
        src = t->valuestring;
    } else if (cJSON_IsArray(t)) { /* [{name, template}, ...]: the "default" one */
        const cJSON *e;
        cJSON_ArrayForEach(e, t) {
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name");
            const cJSON *tp = cJSON_GetObjectItemCaseSensitive(e, "template");
            if (cJSON_IsString(nm) && !strcmp(nm->valuestring, "default") && cJSON_IsString(tp))
                src = tp->valuestring;
        }
    }
    if (!src) {
        cJSON_Delete(j);
        char names[256] = "";
        size_t k = 0;
        const char *const *nm = ft_chat_template_names();
        for (int i = 0; nm[i] && k < sizeof names; i++)
            k += (size_t)snprintf(names + k, sizeof names - k, "%s%s", i ? ", " : "", nm[i]);
        return ft_errorf(FT_ERR_NOT_FOUND,
                         "%s has no chat_template: set chat_template: to one of %s", path, names);
    }
    const char *tokstr[2] = {"", ""}, *keys[2] = {"bos_token", "eos_token"};
    for (int i = 0; i < 2; i++) { /* a string, or {"content": ...} (AddedToken) */
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, keys[i]);
        if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
        if (cJSON_IsString(v)) tokstr[i] = v->valuestring;
    }
    st = ft_chat_template_detect(src, tokstr[0], tokstr[1], out);
    cJSON_Delete(j);
    if (st) return ft_error_wrap(st, "%s", path);
    return FT_OK;
}

ft_status ft_sft_load(const ft_sft_config *c, ft_tokenizer *tok, ft_records *recs,
                      ft_sft_dataset *ds, const ft_chat_template **tpl_out, char *notes,
                      size_t notes_cap) {
    memset(recs, 0, sizeof *recs);
    memset(ds, 0, sizeof *ds);
    if (notes && notes_cap) notes[0] = 0;
    ft_status st = FT_OK;
    int any_chat = 0, instruct_only = 1;
    for (int i = 0; i < c->n_src; i++) {
        int64_t skipped = recs->n_skipped;
        if ((st = ft_records_read(recs, c->src[i].path, &c->src[i].fmt))) goto fail;
        if (recs->n_skipped > skipped)
            note(notes, notes_cap, "%s: skipped %lld invalid records (skip_invalid), first: %s",
                 c->src[i].path, (long long)(recs->n_skipped - skipped), recs->first_skip);
        const char *t = c->src[i].fmt.type;
        if (strcmp(t, "alpaca") && strcmp(t, "dolly") && strcmp(t, "flan")) instruct_only = 0;
    }
    for (size_t i = 0; i < recs->n; i++) {
        if (recs->recs[i].kind == FT_REC_PREF) {
            st = ft_errorf(FT_ERR_ARG,
                           "%s:%d: preference records need a preference stage (rl: dpo), not SFT",
                           recs->files[recs->recs[i].src], recs->recs[i].line);
            goto fail;
        }
        any_chat |= recs->recs[i].kind == FT_REC_CHAT;
    }
    if (c->shuffle) ft_records_shuffle(recs, c->seed);
    const ft_chat_template *tpl = NULL;
    if (any_chat) {
        const char *name = c->chat_template ? c->chat_template
                           : instruct_only  ? "alpaca"
                                            : "tokenizer_default";
        if ((st = ft_chat_template_resolve(name, c->tokenizer_dir, &tpl))) goto fail;
        if (!strcmp(name, "tokenizer_default"))
            note(notes, notes_cap, "chat_template: the tokenizer's template is recognised as '%s'",
                 ft_chat_template_name(tpl));
    }
    int bos = ft_tokenizer_bos_id(tok), eos = ft_tokenizer_eos_id(tok), pad = ft_tokenizer_pad_id(tok);
    const char *bos_s = bos >= 0 ? ft_tokenizer_id_to_token(tok, bos) : "";
    const char *eos_s = eos >= 0 ? ft_tokenizer_id_to_token(tok, eos) : "";
    if (eos < 0 && tpl && !strcmp(ft_chat_template_eot(tpl, ""), "")) {
        st = ft_errorf(FT_ERR_ARG,
                       "chat template %s closes turns with EOS but the tokenizer defines no "
                       "eos_token", ft_chat_template_name(tpl));
        goto fail;
    }
    if (pad >= 0 && pad == eos)
        note(notes, notes_cap,
             "pad token == eos token (%s): ftune masks padding by position, not by id, so the "
             "EOS that closes each reply keeps its loss", eos_s ? eos_s : "?");
    ft_sft_options o = {.tpl = tpl,
                        .bos = bos_s ? bos_s : "",
                        .eos = eos_s ? eos_s : "",
                        .eos_id = eos,
                        .train_on_inputs = c->train_on_inputs,
                        .T = c->T,
                        .truncation = c->truncation,
                        .enc = encode,
                        .enc_ctx = tok};
    if ((st = ft_sft_dataset_build(ds, recs, &o, c->val_size, c->seed))) goto fail;
    if (ds->n_truncated) note(notes, notes_cap, "truncated %lld samples to sequence_len %d",
                              (long long)ds->n_truncated, c->T);
    if (ds->n_dropped) note(notes, notes_cap, "dropped %lld samples longer than sequence_len %d",
                            (long long)ds->n_dropped, c->T);
    if (ds->n_no_target) note(notes, notes_cap, "dropped %lld samples without any trained token",
                              (long long)ds->n_no_target);
    if (tpl_out) *tpl_out = tpl;
    return FT_OK;
fail:
    ft_sft_dataset_free(ds);
    ft_records_free(recs);
    return st;
}
