/*
 * Instruction-data readers: JSON arrays and JSON Lines in the formats alpaca, sharegpt,
 * chat_template (OpenAI messages), dolly, flan, completion/text and preference, with a column
 * mapping (Axolotl's field_* names) for anything else. Each record keeps its file and line.
 *
 * Mapping to conversations (what the chat template then renders):
 *   alpaca  {instruction, input, output[, system]} -> [system], user = instruction (+ "\n\n" +
 *           input when input is not empty), assistant = output
 *   dolly   {instruction, context, response}        -> the same with context as the input
 *   flan    {inputs, targets}                       -> user = inputs, assistant = targets
 *   sharegpt {conversations: [{from, value}]}       -> roles system/human/gpt (and aliases)
 *   chat_template {messages: [{role, content}]}     -> also the key "conversations"
 *   preference {prompt, chosen, rejected}           -> strings, or message lists (the prompt list
 *           ends with a user turn; chosen/rejected lists end with the assistant reply, and a
 *           chosen list that repeats the prompt is accepted as TRL writes it)
 * Not here: .parquet, Hugging Face hub names, remote files.
 */
#include "ftune/instruct.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *role_names[] = {"system", "user", "assistant"};

int ft_role_parse(const char *s) {
    static const struct {
        const char *name;
        int role;
    } map[] = {{"system", FT_ROLE_SYSTEM}, {"user", FT_ROLE_USER},       {"human", FT_ROLE_USER},
               {"assistant", FT_ROLE_ASSISTANT}, {"gpt", FT_ROLE_ASSISTANT},
               {"model", FT_ROLE_ASSISTANT}, {"chatgpt", FT_ROLE_ASSISTANT},
               {"bing", FT_ROLE_ASSISTANT}, {"bard", FT_ROLE_ASSISTANT}};
    if (!s) return -1;
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (!strcmp(s, map[i].name)) return map[i].role;
    return -1;
}

const char *ft_role_name(ft_role r) {
    return (unsigned)r < 3 ? role_names[r] : "?";
}

/* ---- record storage ---- */

static void record_free(ft_record *rec) {
    for (int i = 0; i < rec->n_msgs; i++) free(rec->msgs[i].content);
    free(rec->msgs);
    free(rec->text);
    free(rec->chosen);
    free(rec->rejected);
    memset(rec, 0, sizeof *rec);
}

void ft_records_free(ft_records *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n; i++) record_free(&r->recs[i]);
    free(r->recs);
    for (int i = 0; i < r->n_files; i++) free(r->files[i]);
    free(r->files);
    memset(r, 0, sizeof *r);
}

static ft_status push_record(ft_records *r, ft_record *rec) {
    if (r->n == r->cap) {
        size_t nc = r->cap ? r->cap * 2 : 64;
        ft_record *nr = realloc(r->recs, nc * sizeof *nr);
        if (!nr) return ft_errorf(FT_ERR_NOMEM, "out of memory (%zu records)", r->n);
        r->recs = nr;
        r->cap = nc;
    }
    r->recs[r->n++] = *rec;
    memset(rec, 0, sizeof *rec);
    return FT_OK;
}

static ft_status add_msg(ft_record *rec, ft_role role, const char *content) {
    ft_msg *nm = realloc(rec->msgs, sizeof *nm * (size_t)(rec->n_msgs + 1));
    if (!nm) return ft_errorf(FT_ERR_NOMEM, "out of memory");
    rec->msgs = nm;
    char *c = ft_strdup(content);
    if (!c) return ft_errorf(FT_ERR_NOMEM, "out of memory");
    rec->msgs[rec->n_msgs].role = role;
    rec->msgs[rec->n_msgs].content = c;
    rec->n_msgs++;
    return FT_OK;
}

void ft_records_shuffle(ft_records *r, uint64_t seed) {
    uint64_t s = seed ^ 0x9E3779B97F4A7C15ull;
    if (!s) s = 1;
    for (size_t i = r->n; i > 1; i--) {
        s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
        size_t j = (size_t)((s * 0x2545F4914F6CDD1Dull) % i);
        ft_record t = r->recs[i - 1];
        r->recs[i - 1] = r->recs[j];
        r->recs[j] = t;
    }
}

/* ---- one record ---- */

typedef struct {
    const char *label; /* file label for messages */
    int line;
    const ft_dataset_format *fmt;
} rctx;

static ft_status rec_err(const rctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static ft_status rec_err(const rctx *x, const char *fmt, ...) {
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ft_errorf(FT_ERR_FORMAT, "%s:%d: %s", x->label, x->line, msg);
}

static const char *or_default(const char *v, const char *d) {
    return v && v[0] ? v : d;
}

/* A string field: *out is NULL when absent (or JSON null) and `optional`; else an error. */
static ft_status get_string(const rctx *x, const cJSON *obj, const char *key, int optional,
                            const char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) {
        if (optional) return FT_OK;
        return rec_err(x, "missing field '%s'", key);
    }
    if (!cJSON_IsString(v) || !v->valuestring)
        return rec_err(x, "field '%s' is not a string", key);
    *out = v->valuestring;
    return FT_OK;
}

/* A list of {role, content} messages into rec (appended). */
static ft_status get_messages(const rctx *x, const cJSON *list, const char *key,
                              const char *role_key, const char *content_key, ft_record *rec) {
    if (!cJSON_IsArray(list)) return rec_err(x, "field '%s' is not a list of messages", key);
    int i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, list) {
        if (!cJSON_IsObject(m)) return rec_err(x, "%s[%d] is not an object", key, i);
        const char *dup = ft_json_dup_key(m);
        if (dup) return rec_err(x, "%s[%d]: key '%s' appears twice", key, i, dup);
        const cJSON *rv = cJSON_GetObjectItemCaseSensitive(m, role_key);
        const cJSON *cv = cJSON_GetObjectItemCaseSensitive(m, content_key);
        if (!rv) return rec_err(x, "%s[%d]: missing field '%s'", key, i, role_key);
        if (!cJSON_IsString(rv)) return rec_err(x, "%s[%d].%s is not a string", key, i, role_key);
        int role = ft_role_parse(rv->valuestring);
        if (role < 0)
            return rec_err(x,
                           "%s[%d]: unknown role '%.40s' (known: system, user/human, "
                           "assistant/gpt/model)",
                           key, i, rv->valuestring);
        if (!cv) return rec_err(x, "%s[%d]: missing field '%s'", key, i, content_key);
        if (!cJSON_IsString(cv))
            return rec_err(x, "%s[%d].%s is not a string", key, i, content_key);
        ft_status st = add_msg(rec, (ft_role)role, cv->valuestring);
        if (st) return st;
        i++;
    }
    return FT_OK;
}

/* Checks every conversation passes: not empty, a system turn only first, at least one assistant
 * turn, no empty assistant reply. */
static ft_status check_conversation(const rctx *x, const ft_record *rec) {
    if (rec->n_msgs == 0) return rec_err(x, "empty conversation");
    int n_asst = 0;
    for (int i = 0; i < rec->n_msgs; i++) {
        if (rec->msgs[i].role == FT_ROLE_SYSTEM && i > 0)
            return rec_err(x, "message %d: a system message is only allowed first", i);
        if (rec->msgs[i].role == FT_ROLE_ASSISTANT) {
            n_asst++;
            if (!rec->msgs[i].content[0]) return rec_err(x, "message %d: empty assistant reply", i);
        }
    }
    if (!n_asst) return rec_err(x, "conversation has no assistant turn (nothing to learn)");
    return FT_OK;
}

typedef enum { F_ALPACA, F_DOLLY, F_FLAN, F_SHAREGPT, F_CHAT, F_TEXT, F_PREF } fkind;

static int parse_type(const char *t, fkind *k) {
    static const struct {
        const char *name;
        fkind k;
    } map[] = {{"alpaca", F_ALPACA},        {"alpaca_chat", F_ALPACA},
               {"dolly", F_DOLLY},          {"flan", F_FLAN},
               {"sharegpt", F_SHAREGPT},    {"sharegpt:chat", F_SHAREGPT},
               {"chat_template", F_CHAT},   {"openai", F_CHAT},
               {"messages", F_CHAT},        {"completion", F_TEXT},
               {"text", F_TEXT},            {"preference", F_PREF},
               {"chat_template.default", F_PREF} /* Axolotl's DPO chat_template type */,
               {"input_output", F_ALPACA}};
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (!strcmp(t, map[i].name)) return *k = map[i].k, 0;
    return -1;
}

int ft_dataset_type_known(const char *type) {
    fkind k;
    return type && !parse_type(type, &k);
}

/* instruction (+ "\n\n" + input) as the user turn. */
static ft_status add_instruction(ft_record *rec, const char *sys, const char *ins, const char *inp,
                                 const char *out) {
    ft_status st;
    if (sys && sys[0] && (st = add_msg(rec, FT_ROLE_SYSTEM, sys))) return st;
    if (inp && inp[0]) {
        size_t a = strlen(ins), b = strlen(inp);
        char *u = malloc(a + b + 3);
        if (!u) return ft_errorf(FT_ERR_NOMEM, "out of memory");
        memcpy(u, ins, a);
        memcpy(u + a, "\n\n", 2);
        memcpy(u + a + 2, inp, b + 1);
        st = add_msg(rec, FT_ROLE_USER, u);
        free(u);
    } else {
        st = add_msg(rec, FT_ROLE_USER, ins);
    }
    if (st) return st;
    return add_msg(rec, FT_ROLE_ASSISTANT, out);
}

/* A preference side: a string, or a message list whose last message is the assistant reply. */
static ft_status pref_side(const rctx *x, const cJSON *obj, const char *key, char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) return rec_err(x, "missing field '%s'", key);
    const char *s = NULL;
    if (cJSON_IsString(v)) {
        s = v->valuestring;
    } else if (cJSON_IsArray(v)) {
        ft_record tmp = {0};
        ft_status st = get_messages(x, v, key, "role", "content", &tmp);
        if (!st && (tmp.n_msgs == 0 || tmp.msgs[tmp.n_msgs - 1].role != FT_ROLE_ASSISTANT))
            st = rec_err(x, "field '%s': the last message must be the assistant reply", key);
        if (!st && !(*out = ft_strdup(tmp.msgs[tmp.n_msgs - 1].content))) st = FT_ERR_NOMEM;
        record_free(&tmp);
        return st;
    } else {
        return rec_err(x, "field '%s' is neither a string nor a list of messages", key);
    }
    if (!s[0]) return rec_err(x, "field '%s' is empty", key);
    if (!(*out = ft_strdup(s))) return ft_errorf(FT_ERR_NOMEM, "out of memory");
    return FT_OK;
}

static ft_status parse_record(const rctx *x, const cJSON *obj, fkind k, ft_record *rec) {
    const ft_dataset_format *f = x->fmt;
    if (!cJSON_IsObject(obj)) return rec_err(x, "a record must be a JSON object");
    const char *dup = ft_json_dup_key(obj); /* HF reads the last value, cJSON the first */
    if (dup) return rec_err(x, "key '%s' appears twice", dup);
    const char *sys = NULL, *ins = NULL, *inp = NULL, *out = NULL;
    ft_status st;
    rec->line = x->line;
    switch (k) {
    case F_ALPACA:
    case F_DOLLY:
    case F_FLAN: {
        const char *ki = or_default(f->field_instruction,
                                    k == F_FLAN ? "inputs" : "instruction");
        const char *kin = or_default(f->field_input, k == F_DOLLY ? "context" : "input");
        const char *ko = or_default(f->field_output,
                                    k == F_ALPACA ? "output" : k == F_DOLLY ? "response" : "targets");
        const char *ks = or_default(f->field_system, k == F_ALPACA ? "system" : NULL);
        if ((st = get_string(x, obj, ki, 0, &ins))) return st;
        if (k != F_FLAN || f->field_input)
            if ((st = get_string(x, obj, kin, 1, &inp))) return st;
        if ((st = get_string(x, obj, ko, 0, &out))) return st;
        if (ks && (st = get_string(x, obj, ks, 1, &sys))) return st;
        if (!ins[0]) return rec_err(x, "field '%s' is empty", ki);
        if (!out[0]) return rec_err(x, "field '%s' is empty", ko);
        rec->kind = FT_REC_CHAT;
        if ((st = add_instruction(rec, sys, ins, inp, out))) return st;
        return FT_OK;
    }
    case F_SHAREGPT:
    case F_CHAT: {
        const char *km = f->field_messages;
        const cJSON *list = NULL;
        if (km && km[0]) {
            list = cJSON_GetObjectItemCaseSensitive(obj, km);
        } else {
            km = k == F_SHAREGPT ? "conversations" : "messages";
            list = cJSON_GetObjectItemCaseSensitive(obj, km);
            if (!list && k == F_CHAT) {
                km = "conversations";
                list = cJSON_GetObjectItemCaseSensitive(obj, km);
            }
        }
        if (!list) return rec_err(x, "missing field '%s'", km);
        int sg = k == F_SHAREGPT && !cJSON_GetObjectItemCaseSensitive(
                                        cJSON_GetArrayItem(list, 0), "role");
        const char *kr = or_default(f->message_field_role, sg ? "from" : "role");
        const char *kc = or_default(f->message_field_content, sg ? "value" : "content");
        rec->kind = FT_REC_CHAT;
        if ((st = get_messages(x, list, km, kr, kc, rec))) return st;
        return check_conversation(x, rec);
    }
    case F_TEXT: {
        const char *kt = or_default(f->field, "text");
        if ((st = get_string(x, obj, kt, 0, &out))) return st;
        if (!out[0]) return rec_err(x, "field '%s' is empty", kt);
        rec->kind = FT_REC_TEXT;
        if (!(rec->text = ft_strdup(out))) return ft_errorf(FT_ERR_NOMEM, "out of memory");
        return FT_OK;
    }
    case F_PREF: {
        const char *kp = or_default(f->field_prompt, "prompt");
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(obj, kp);
        rec->kind = FT_REC_PREF;
        if (!p || cJSON_IsNull(p)) return rec_err(x, "missing field '%s'", kp);
        if (cJSON_IsString(p)) {
            if (!p->valuestring[0]) return rec_err(x, "field '%s' is empty", kp);
            if ((st = add_msg(rec, FT_ROLE_USER, p->valuestring))) return st;
        } else if (cJSON_IsArray(p)) {
            if ((st = get_messages(x, p, kp, "role", "content", rec))) return st;
            if (rec->n_msgs == 0) return rec_err(x, "empty conversation in '%s'", kp);
            if (rec->msgs[rec->n_msgs - 1].role != FT_ROLE_USER)
                return rec_err(x, "field '%s': the prompt must end with a user message", kp);
        } else {
            return rec_err(x, "field '%s' is neither a string nor a list of messages", kp);
        }
        if ((st = pref_side(x, obj, or_default(f->field_chosen, "chosen"), &rec->chosen)))
            return st;
        return pref_side(x, obj, or_default(f->field_rejected, "rejected"), &rec->rejected);
    }
    }
    return rec_err(x, "internal: unknown format");
}

/* Handle one parsed (or failed) record: keep it, or with skip_invalid count it. */
static ft_status take(ft_records *r, const rctx *x, ft_status st, ft_record *rec) {
    if (!st) {
        rec->src = r->n_files - 1;
        return push_record(r, rec);
    }
    record_free(rec);
    if (st == FT_ERR_FORMAT && x->fmt->skip_invalid) {
        if (!r->n_skipped)
            snprintf(r->first_skip, sizeof r->first_skip, "%s", ft_error_message());
        r->n_skipped++;
        ft_error_clear();
        return FT_OK;
    }
    return st;
}

static ft_status parse_one(ft_records *r, const rctx *x, fkind k, const char *s, size_t n) {
    ft_record rec = {0};
    const char *end = NULL;
    cJSON *obj = cJSON_ParseWithLengthOpts(s, n, &end, 0);
    ft_status st;
    if (!obj) {
        st = rec_err(x, "invalid JSON");
    } else if (ft_json_nul_escape(s, n) >= 0) { /* cJSON would cut the string there */
        st = rec_err(x, "a string holds U+0000, which ftune does not accept");
    } else {
        /* nothing but blanks may follow the value */
        for (const char *p = end; p && p < s + n; p++)
            if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
                st = rec_err(x, "invalid JSON (text after the object)");
                goto done;
            }
        st = parse_record(x, obj, k, &rec);
    }
done:
    cJSON_Delete(obj);
    return take(r, x, st, &rec);
}

/* JSON array: split the top-level elements with a small scanner (strings, escapes, nesting),
 * so each record is parsed alone and its line is known. */
static ft_status parse_array(ft_records *r, rctx *x, fkind k, const char *b, size_t len,
                             size_t i, int line) {
    i++; /* past '[' */
    int depth = 0, in_str = 0, esc = 0, expect_value = 1, n_el = 0;
    size_t start = 0;
    int start_line = line;
    for (; i < len; i++) {
        char c = b[i];
        if (c == '\n') line++;
        if (in_str) {
            if (esc) esc = 0;
            else if (c == '\\') esc = 1;
            else if (c == '"') in_str = 0;
            continue;
        }
        if (depth == 0) {
            if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
            if (c == ']') {
                if (expect_value && n_el > 0) {
                    x->line = line;
                    return rec_err(x, "invalid JSON (',' before ']')");
                }
                for (i++; i < len; i++) {
                    if (b[i] == '\n') line++;
                    else if (b[i] != ' ' && b[i] != '\t' && b[i] != '\r') {
                        x->line = line;
                        return rec_err(x, "invalid JSON (text after the array)");
                    }
                }
                return FT_OK;
            }
            if (c == ',' && !expect_value) {
                expect_value = 1;
                continue;
            }
            if (!expect_value) {
                x->line = line;
                return rec_err(x, "invalid JSON (expected ',' or ']')");
            }
            start = i;
            start_line = line;
            expect_value = 0;
            n_el++;
            if (c == '{' || c == '[') {
                depth = 1;
                continue;
            }
            x->line = line;
            return rec_err(x, "a record must be a JSON object");
        }
        if (c == '"') in_str = 1;
        else if (c == '{' || c == '[') depth++;
        else if (c == '}' || c == ']') {
            if (--depth == 0) {
                x->line = start_line;
                ft_status st = parse_one(r, x, k, b + start, i + 1 - start);
                if (st) return st;
            }
        }
    }
    x->line = line;
    return rec_err(x, "invalid JSON (the array is not closed)");
}

ft_status ft_records_parse(ft_records *r, const char *buf, size_t len, const char *label,
                           const ft_dataset_format *fmt) {
    fkind k;
    if (!fmt || !fmt->type)
        return ft_errorf(FT_ERR_ARG, "%s: no dataset type given", label);
    if (parse_type(fmt->type, &k))
        return ft_errorf(FT_ERR_ARG,
                         "%s: dataset type '%s' is not supported (supported: alpaca, sharegpt, "
                         "chat_template, dolly, flan, completion, text, preference)",
                         label, fmt->type);
    char **nf = realloc(r->files, sizeof *nf * (size_t)(r->n_files + 1));
    if (!nf) return ft_errorf(FT_ERR_NOMEM, "out of memory");
    r->files = nf;
    if (!(r->files[r->n_files] = ft_strdup(label))) return ft_errorf(FT_ERR_NOMEM, "out of memory");
    r->n_files++;
    size_t before = r->n;
    int64_t skipped_before = r->n_skipped;
    rctx x = {label, 1, fmt};
    /* a UTF-8 byte order mark before the first record, in both layouts */
    size_t bom = len >= 3 && !memcmp(buf, "\xEF\xBB\xBF", 3) ? 3 : 0, i = bom;
    int line = 1;
    while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n'))
        line += buf[i++] == '\n';
    ft_status st = FT_OK;
    if (i < len && buf[i] == '[') {
        st = parse_array(r, &x, k, buf, len, i, line);
    } else {
        line = 1;
        for (size_t s = bom; s < len && !st; line++) {
            size_t e = s;
            while (e < len && buf[e] != '\n') e++;
            size_t t = s;
            while (t < e && (buf[t] == ' ' || buf[t] == '\t' || buf[t] == '\r')) t++;
            if (t < e) {
                x.line = line;
                st = parse_one(r, &x, k, buf + s, e - s);
            }
            s = e + 1;
        }
    }
    if (st) return st;
    if (r->n == before) {
        if (r->n_skipped > skipped_before)
            return ft_errorf(FT_ERR_FORMAT, "%s: all %lld records are invalid (first: %s)", label,
                             (long long)(r->n_skipped - skipped_before), r->first_skip);
        return ft_errorf(FT_ERR_FORMAT, "%s: no records", label);
    }
    return FT_OK;
}

ft_status ft_records_read(ft_records *r, const char *path, const ft_dataset_format *fmt) {
    char *buf = NULL;
    size_t len = 0;
    ft_status st = ft_read_file(path, &buf, &len);
    if (st) return st;
    st = ft_records_parse(r, buf, len, path, fmt);
    free(buf);
    return st;
}
