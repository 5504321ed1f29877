/*
 * Chat templates by name. Each one renders a conversation exactly as the Jinja chat_template
 * published with its model does (HF apply_chat_template with trim_blocks/lstrip_blocks), into
 * segments that carry a "train on this" flag: an assistant turn's content and the token that
 * closes it are trained, everything else (headers, system and user turns, separators) is not.
 *
 *   name     source of the reference template                       closes a turn with
 *   llama3   meta-llama/Meta-Llama-3-8B-Instruct (content | trim)    <|eot_id|>
 *   llama2   meta-llama/Llama-2-7b-chat-hf (<<SYS>> in the 1st turn) " " + eos
 *   mistral  mistralai/Mistral-7B-Instruct-v0.1 (no system role)     eos
 *   chatml   teknium/OpenHermes-2.5-Mistral-7B (Qwen2-style ChatML)  <|im_end|>
 *   qwen3    Qwen/Qwen3 (ChatML; empty <think> block before the last reply, untrained)
 *   alpaca   tatsu-lab/stanford_alpaca's prompt, one turn per ### block (ftune's Jinja in tests)
 *   vicuna   lmsys FastChat vicuna_v1.1 ("USER: ... ASSISTANT: ...</s>")
 *   zephyr   HuggingFaceH4/zephyr-7b-beta                            eos
 *   gemma    google/gemma-7b-it (no system role, content | trim)     <end_of_turn>
 *   phi3     microsoft/Phi-3-mini-4k-instruct                        <|end|>
 *
 * `trim` strips ASCII whitespace only (Jinja's also strips other Unicode spaces). Tool calls,
 * reasoning_content and Qwen3's </think> splitting are not supported: content holding "</think>"
 * is an error for qwen3.
 *
 * tokenizer_default (ft_chat_template_detect) recognises a model's own Jinja template by what it
 * renders, not by what its source contains: a few probe conversations go through the template
 * (src/data/jinja.c) and through every built-in, and only a built-in that gives the same text on
 * every probe is taken. Templates that share a built-in's markers but add a date header
 * (Llama-3.1), a default system prompt (Qwen2.5) or handle BOS or whitespace differently are
 * refused with the closest built-in and the first differing probe, so training never silently
 * departs from the model's template. The exact agreement of each built-in with its published
 * Jinja over real data is checked in tests/data/test_templates.sh with @huggingface/jinja.
 */
#include "ftune/instruct.h"
#include "ftune/jinja.h"

#include <cjson/cJSON.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef ft_status (*render_fn)(const ft_chat_template *t, const ft_msg *m, int n, int gen,
                               const char *bos, const char *eos, ft_rendered *out);

struct ft_chat_template {
    const char *name;
    render_fn render;
    const char *eot; /* NULL: eos closes a turn */
};

void ft_rendered_free(ft_rendered *r) {
    if (!r) return;
    free(r->text);
    free(r->seg_end);
    free(r->seg_train);
    memset(r, 0, sizeof *r);
}

/* Append n bytes as a segment with flag `train` (merged into the previous one if the flag is the
 * same). */
static ft_status emit_n(ft_rendered *r, const char *s, size_t n, int train) {
    if (n == 0) return FT_OK;
    if (r->len + n + 1 > r->cap) {
        size_t nc = r->cap ? r->cap : 256;
        while (nc < r->len + n + 1) nc *= 2;
        char *nt = realloc(r->text, nc);
        if (!nt) return ft_errorf(FT_ERR_NOMEM, "out of memory");
        r->text = nt;
        r->cap = nc;
    }
    memcpy(r->text + r->len, s, n);
    r->len += n;
    r->text[r->len] = 0;
    if (r->n_seg > 0 && r->seg_train[r->n_seg - 1] == train) {
        r->seg_end[r->n_seg - 1] = r->len;
        return FT_OK;
    }
    if (r->n_seg == r->seg_cap) {
        int nc = r->seg_cap ? r->seg_cap * 2 : 16;
        size_t *ne = realloc(r->seg_end, sizeof *ne * (size_t)nc);
        if (!ne) return ft_errorf(FT_ERR_NOMEM, "out of memory");
        r->seg_end = ne;
        int *nt = realloc(r->seg_train, sizeof *nt * (size_t)nc);
        if (!nt) return ft_errorf(FT_ERR_NOMEM, "out of memory");
        r->seg_train = nt;
        r->seg_cap = nc;
    }
    r->seg_end[r->n_seg] = r->len;
    r->seg_train[r->n_seg] = train;
    r->n_seg++;
    return FT_OK;
}

static ft_status emit(ft_rendered *r, const char *s, int train) {
    return emit_n(r, s, strlen(s), train);
}

static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Jinja's `trim` / Python's str.strip() on ASCII whitespace. */
static ft_status emit_trim(ft_rendered *r, const char *s, int train) {
    size_t n = strlen(s), a = 0;
    while (a < n && is_space(s[a])) a++;
    while (n > a && is_space(s[n - 1])) n--;
    return emit_n(r, s + a, n - a, train);
}

#define TRY(x)                                                                                     \
    do {                                                                                           \
        ft_status st_ = (x);                                                                       \
        if (st_) return st_;                                                                       \
    } while (0)

static ft_status need_alternation(const ft_chat_template *t, const ft_msg *m, int n, int first) {
    for (int i = first; i < n; i++) {
        ft_role want = (i - first) % 2 == 0 ? FT_ROLE_USER : FT_ROLE_ASSISTANT;
        if (m[i].role != want)
            return ft_errorf(FT_ERR_ARG,
                             "chat template %s: message %d is '%s' but roles must alternate "
                             "user/assistant/user/... (after an optional system message)",
                             t->name, i, ft_role_name(m[i].role));
    }
    return FT_OK;
}

static ft_status no_system(const ft_chat_template *t, const ft_msg *m, int n) {
    for (int i = 0; i < n; i++)
        if (m[i].role == FT_ROLE_SYSTEM)
            return ft_errorf(FT_ERR_ARG,
                             "chat template %s has no system role (message %d is a system "
                             "message); pick another template or drop the system prompt",
                             t->name, i);
    return FT_OK;
}

/* ---- the templates ---- */

static ft_status r_llama3(const ft_chat_template *t, const ft_msg *m, int n, int gen,
                          const char *bos, const char *eos, ft_rendered *o) {
    (void)t, (void)eos;
    for (int i = 0; i < n; i++) {
        int tr = m[i].role == FT_ROLE_ASSISTANT;
        if (i == 0) TRY(emit(o, bos, 0));
        TRY(emit(o, "<|start_header_id|>", 0));
        TRY(emit(o, ft_role_name(m[i].role), 0));
        TRY(emit(o, "<|end_header_id|>\n\n", 0));
        TRY(emit_trim(o, m[i].content, tr));
        TRY(emit(o, "<|eot_id|>", tr));
    }
    if (gen) TRY(emit(o, "<|start_header_id|>assistant<|end_header_id|>\n\n", 0));
    return FT_OK;
}

static ft_status r_llama2(const ft_chat_template *t, const ft_msg *m, int n, int gen,
                          const char *bos, const char *eos, ft_rendered *o) {
    (void)gen; /* the prompt already ends with [/INST] */
    int first = n > 0 && m[0].role == FT_ROLE_SYSTEM;
    TRY(need_alternation(t, m, n, first));
    for (int i = first; i < n; i++) {
        if (m[i].role == FT_ROLE_USER) {
            TRY(emit(o, bos, 0));
            TRY(emit(o, "[INST] ", 0));
            if (i == first && first) {
                /* ('<<SYS>>\n' + system + '\n<</SYS>>\n\n' + content).strip() */
                size_t a = strlen(m[0].content), b = strlen(m[i].content);
                char *c = malloc(a + b + 32);
                if (!c) return ft_errorf(FT_ERR_NOMEM, "out of memory");
                snprintf(c, a + b + 32, "<<SYS>>\n%s\n<</SYS>>\n\n%s", m[0].content, m[i].content);
                ft_status st = emit_trim(o, c, 0);
                free(c);
                TRY(st);
            } else {
                TRY(emit_trim(o, m[i].content, 0));
            }
            TRY(emit(o, " [/INST]", 0));
        } else {
            TRY(emit(o, " ", 0));
            TRY(emit_trim(o, m[i].content, 1));
            TRY(emit(o, " ", 1));
            TRY(emit(o, eos, 1));
        }
    }
    return FT_OK;
}

static ft_status r_mistral(const ft_chat_template *t, const ft_msg *m, int n, int gen,
                           const char *bos, const char *eos, ft_rendered *o) {
    (void)gen;
    TRY(no_system(t, m, n));
    TRY(need_alternation(t, m, n, 0));
    TRY(emit(o, bos, 0));
    for (int i = 0; i < n; i++) {
        if (m[i].role == FT_ROLE_USER) {
            TRY(emit(o, "[INST] ", 0));
            TRY(emit(o, m[i].content, 0));
            TRY(emit(o, " [/INST]", 0));
        } else {
            TRY(emit(o, m[i].content, 1));
            TRY(emit(o, eos, 1));
        }
    }
    return FT_OK;
}

static ft_status r_chatml(const ft_chat_template *t, const ft_msg *m, int n, int gen,
                          const char *bos, const char *eos, ft_rendered *o) {
    (void)t, (void)bos, (void)eos;
    for (int i = 0; i < n; i++) {
        int tr = m[i].role == FT_ROLE_ASSISTANT;
        TRY(emit(o, "<|im_start|>", 0));
        TRY(emit(o, ft_role_name(m[i].role), 0));
        TRY(emit(o, "\n", 0));
        TRY(emit(o, m[i].content, tr));
        TRY(emit(o, "<|im_end|>", tr));
        TRY(emit(o, "\n", 0));
    }
    if (gen) TRY(emit(o, "<|im_start|>assistant\n", 0));
    return FT_OK;
}

static ft_status r_qwen3(const ft_chat_template *t, const ft_msg *m, int n, int gen,
                         const char *bos, const char *eos, ft_rendered *o) {
    (void)bos, (void)eos;
    int last_query = n - 1;
    for (int i = n - 1; i >= 0; i--)
        if (m[i].role == FT_ROLE_USER) {
            last_query = i;
            break;
        }
    for (int i = 0; i < n; i++) {
        if (m[i].role != FT_ROLE_ASSISTANT) {
            TRY(emit(o, "<|im_start|>", 0));
            TRY(emit(o, ft_role_name(m[i].role), 0));
            TRY(emit(o, "\n", 0));
            TRY(emit(o, m[i].content, 0));
            TRY(emit(o, "<|im_end|>\n", 0));
            continue;
        }
        const char *c = m[i].content;
        if (strstr(c, "</think>"))
            return ft_errorf(FT_ERR_UNSUPPORTED,
                             "chat template %s: message %d holds '</think>' (reasoning content "
                             "is not supported)", t->name, i);
        TRY(emit(o, "<|im_start|>assistant\n", 0));
        if (i > last_query && i == n - 1) {
            TRY(emit(o, "<think>\n\n</think>\n\n", 0));
            while (*c == '\n') c++;
        }
        TRY(emit(o, c, 1));
        TRY(emit(o, "<|im_end|>", 1));
        TRY(emit(o, "\n", 0));
    }
    if (gen) TRY(emit(o, "<|im_start|>assistant\n", 0));
    return FT_OK;
}

static const char alpaca_system[] = "Below is an instruction that describes a task. Write a "
                                    "response that appropriately completes the request.";

static ft_status r_alpaca(const ft_chat_template *t, const ft_msg *m, int n, int gen,
                          const char *bos, const char *eos, ft_rendered *o) {
    (void)t, (void)gen; /* a user turn already ends with "### Response:\n" */
    int first = n > 0 && m[0].role == FT_ROLE_SYSTEM;
    TRY(emit(o, bos, 0));
    TRY(emit(o, first ? m[0].content : alpaca_system, 0));
    TRY(emit(o, "\n\n", 0));
    for (int i = first; i < n; i++) {
        if (m[i].role == FT_ROLE_USER) {
            TRY(emit(o, "### Instruction:\n", 0));
            TRY(emit(o, m[i].content, 0));
            TRY(emit(o, "\n\n### Response:\n", 0));
        } else if (m[i].role == FT_ROLE_ASSISTANT) {
            TRY(emit(o, m[i].content, 1));
            TRY(emit(o, eos, 1));
            TRY(emit(o, "\n\n", 0));
        }
    }
    return FT_OK;
}

static const char vicuna_system[] =
    "A chat between a curious user and an artificial intelligence assistant. The assistant "
    "gives helpful, detailed, and polite answers to the user's questions.";

static ft_status r_vicuna(const ft_chat_template *t, const ft_msg *m, int n, int gen,
                          const char *bos, const char *eos, ft_rendered *o) {
    (void)t;
    int first = n > 0 && m[0].role == FT_ROLE_SYSTEM;
    TRY(emit(o, bos, 0));
    TRY(emit(o, first ? m[0].content : vicuna_system, 0));
    TRY(emit(o, " ", 0));
    for (int i = first; i < n; i++) {
        if (m[i].role == FT_ROLE_USER) {
            TRY(emit(o, "USER: ", 0));
            TRY(emit(o, m[i].content, 0));
            TRY(emit(o, " ", 0));
        } else if (m[i].role == FT_ROLE_ASSISTANT) {
            TRY(emit(o, "ASSISTANT: ", 0));
            TRY(emit(o, m[i].content, 1));
            TRY(emit(o, eos, 1));
        }
    }
    if (gen) TRY(emit(o, "ASSISTANT:", 0));
    return FT_OK;
}

static ft_status r_zephyr(const ft_chat_template *t, const ft_msg *m, int n, int gen,
                          const char *bos, const char *eos, ft_rendered *o) {
    (void)t, (void)bos;
    static const char *hdr[] = {"<|system|>\n", "<|user|>\n", "<|assistant|>\n"};
    for (int i = 0; i < n; i++) {
        int tr = m[i].role == FT_ROLE_ASSISTANT;
        TRY(emit(o, hdr[m[i].role], 0));
        TRY(emit(o, m[i].content, tr));
        TRY(emit(o, eos, tr));
        TRY(emit(o, "\n", 0));
    }
    if (gen) TRY(emit(o, "<|assistant|>\n", 0));
    return FT_OK;
}

static ft_status r_gemma(const ft_chat_template *t, const ft_msg *m, int n, int gen,
                         const char *bos, const char *eos, ft_rendered *o) {
    (void)eos;
    TRY(no_system(t, m, n));
    TRY(need_alternation(t, m, n, 0));
    TRY(emit(o, bos, 0));
    for (int i = 0; i < n; i++) {
        int tr = m[i].role == FT_ROLE_ASSISTANT;
        TRY(emit(o, tr ? "<start_of_turn>model\n" : "<start_of_turn>user\n", 0));
        TRY(emit_trim(o, m[i].content, tr));
        TRY(emit(o, "<end_of_turn>", tr));
        TRY(emit(o, "\n", 0));
    }
    if (gen) TRY(emit(o, "<start_of_turn>model\n", 0));
    return FT_OK;
}

static ft_status r_phi3(const ft_chat_template *t, const ft_msg *m, int n, int gen,
                        const char *bos, const char *eos, ft_rendered *o) {
    (void)t, (void)bos;
    static const char *hdr[] = {"<|system|>\n", "<|user|>\n", "<|assistant|>\n"};
    for (int i = 0; i < n; i++) {
        int tr = m[i].role == FT_ROLE_ASSISTANT;
        TRY(emit(o, hdr[m[i].role], 0));
        TRY(emit(o, m[i].content, tr));
        TRY(emit(o, "<|end|>", tr));
        TRY(emit(o, "\n", 0));
    }
    TRY(emit(o, gen ? "<|assistant|>\n" : eos, 0));
    return FT_OK;
}

static const ft_chat_template templates[] = {
    {"llama3", r_llama3, "<|eot_id|>"},  {"llama2", r_llama2, NULL},
    {"mistral", r_mistral, NULL},        {"chatml", r_chatml, "<|im_end|>"},
    {"qwen3", r_qwen3, "<|im_end|>"},    {"alpaca", r_alpaca, NULL},
    {"vicuna", r_vicuna, NULL},          {"zephyr", r_zephyr, NULL},
    {"gemma", r_gemma, "<end_of_turn>"}, {"phi3", r_phi3, "<|end|>"},
};
#define N_TEMPLATES ((int)(sizeof templates / sizeof templates[0]))

const char *const *ft_chat_template_names(void) {
    static const char *names[N_TEMPLATES + 1];
    for (int i = 0; i < N_TEMPLATES; i++) names[i] = templates[i].name;
    names[N_TEMPLATES] = NULL;
    return names;
}

static void list_names(char *buf, size_t cap) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < N_TEMPLATES && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%s", i ? ", " : "", templates[i].name);
}

ft_status ft_chat_template_get(const char *name, const ft_chat_template **out) {
    for (int i = 0; i < N_TEMPLATES; i++)
        if (name && !strcmp(name, templates[i].name)) return *out = &templates[i], FT_OK;
    char names[256];
    list_names(names, sizeof names);
    return ft_errorf(FT_ERR_ARG, "unknown chat_template '%s' (known: %s, tokenizer_default)",
                     name ? name : "(null)", names);
}

const char *ft_chat_template_name(const ft_chat_template *t) {
    return t->name;
}

const char *ft_chat_template_eot(const ft_chat_template *t, const char *eos) {
    return t->eot ? t->eot : eos;
}

/* ---- recognition by rendering ---- */

typedef struct {
    const char *what;
    int n, gen;
    ft_role role[6];
    const char *content[6];
} probe;

/* Contents with outer spaces and newlines tell trimming templates from the others. */
/* clang-format off */
static const probe probes[] = {
    {"user + assistant", 2, 0, {FT_ROLE_USER, FT_ROLE_ASSISTANT},
     {"Hi there!", "Hello. How can I help?"}},
    {"system + user + assistant", 3, 0, {FT_ROLE_SYSTEM, FT_ROLE_USER, FT_ROLE_ASSISTANT},
     {"You are terse.", " What is 2+2? ", "4\n"}},
    {"two turns", 4, 0, {FT_ROLE_USER, FT_ROLE_ASSISTANT, FT_ROLE_USER, FT_ROLE_ASSISTANT},
     {"Name a colour.", " Blue", "Another?\n", "Red."}},
    {"two turns, generation prompt", 3, 1, {FT_ROLE_USER, FT_ROLE_ASSISTANT, FT_ROLE_USER},
     {"Q1", "A1", "Q2"}},
    {"system + user, generation prompt", 2, 1, {FT_ROLE_SYSTEM, FT_ROLE_USER},
     {"Be kind.", "Hello?"}},
};
/* clang-format on */
#define N_PROBES ((int)(sizeof probes / sizeof probes[0]))
#define PROBE_NOW 1721952000 /* strftime_now's date for the probes: 26 Jul 2024 */

/* a probe's rendering: text, or the error it raised (ok = 0) */
typedef struct {
    int ok;
    char *text;
} outcome;

static outcome render_jinja(const ft_jinja *j, const probe *p, const char *bos, const char *eos) {
    outcome o = {0, NULL};
    cJSON *ctx = cJSON_CreateObject(), *msgs = cJSON_AddArrayToObject(ctx, "messages");
    for (int i = 0; i < p->n; i++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", ft_role_name(p->role[i]));
        cJSON_AddStringToObject(m, "content", p->content[i]);
        cJSON_AddItemToArray(msgs, m);
    }
    /* transformers passes its special_tokens_map, which leaves out unset (and empty) tokens: in
     * the template they are undefined, so `bos_token + x` raises as in Jinja2 */
    if (bos[0]) cJSON_AddStringToObject(ctx, "bos_token", bos);
    if (eos[0]) cJSON_AddStringToObject(ctx, "eos_token", eos);
    cJSON_AddBoolToObject(ctx, "add_generation_prompt", p->gen);
    if (ft_jinja_render(j, ctx, PROBE_NOW, &o.text, NULL))
        o.text = strdup(ft_error_message());
    else
        o.ok = 1;
    cJSON_Delete(ctx);
    return o;
}

static outcome render_builtin(const ft_chat_template *t, const probe *p, const char *bos,
                              const char *eos) {
    ft_msg m[6];
    for (int i = 0; i < p->n; i++)
        m[i] = (ft_msg){p->role[i], (char *)p->content[i]};
    ft_rendered r = {0};
    outcome o = {0, NULL};
    if (ft_chat_render(t, m, p->n, p->gen, bos, eos, &r)) {
        o.text = strdup(ft_error_message());
    } else {
        o.ok = 1;
        o.text = strdup(r.text ? r.text : "");
    }
    ft_rendered_free(&r);
    return o;
}

/* What the built-in appends for add_generation_prompt (after a user turn); "" if nothing. */
static char *gen_suffix(const ft_chat_template *t, const char *bos, const char *eos) {
    probe p = {"", 1, 0, {FT_ROLE_USER}, {"x"}};
    outcome a = render_builtin(t, &p, bos, eos);
    p.gen = 1;
    outcome b = render_builtin(t, &p, bos, eos);
    char *s = NULL;
    if (a.ok && b.ok && !strncmp(a.text, b.text, strlen(a.text)))
        s = strdup(b.text + strlen(a.text));
    free(a.text), free(b.text);
    return s ? s : strdup("");
}

/* `s` around byte `at`, escaped, at most ~60 chars */
static void brief(char *dst, size_t cap, const char *s, size_t at) {
    size_t n = strlen(s), a = at > 25 ? at - 25 : 0, k = 0;
    if (a) k += (size_t)snprintf(dst + k, cap - k, "...");
    for (size_t i = a; i < n && i < a + 60 && k + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n')
            k += (size_t)snprintf(dst + k, cap - k, "\\n");
        else if (c == '\t')
            k += (size_t)snprintf(dst + k, cap - k, "\\t");
        else
            dst[k++] = (char)c, dst[k] = 0;
    }
    if (a + 60 < n && k + 4 < cap) k += (size_t)snprintf(dst + k, cap - k, "...");
    if (!n) snprintf(dst, cap, "(empty)");
}

ft_status ft_chat_template_detect(const char *jinja, const char *bos, const char *eos,
                                  const ft_chat_template **out) {
    char names[256];
    list_names(names, sizeof names);
    bos = bos ? bos : "", eos = eos ? eos : "";
    ft_jinja *j = NULL;
    ft_status st = ft_jinja_parse(jinja, strlen(jinja), &j);
    if (st) {
        char msg[320];
        snprintf(msg, sizeof msg, "%s", ft_error_message());
        return ft_errorf(FT_ERR_UNSUPPORTED,
                         "the tokenizer's chat_template cannot be read (%s): set chat_template: to "
                         "one of %s",
                         msg, names);
    }
    outcome got[N_PROBES];
    int jinja_ok = 0;
    for (int p = 0; p < N_PROBES; p++)
        got[p] = render_jinja(j, &probes[p], bos, eos), jinja_ok += got[p].ok;
    ft_jinja_free(j);
    char why[640] = "";
    if (!jinja_ok) {
        snprintf(why, sizeof why, "it fails on every probe conversation (%s)", got[0].text);
    }
    const ft_chat_template *found = NULL;
    int n_found = 0;
    long best_score = -1;
    char hits[256] = "";
    size_t hk = 0;
    for (int i = 0; i < N_TEMPLATES && jinja_ok; i++) {
        const ft_chat_template *t = &templates[i];
        char *suffix = gen_suffix(t, bos, eos);
        int agree = 0, first_diff = -1;
        long close = 0;
        for (int quirk = 0; quirk < 2 && agree < N_PROBES; quirk++) {
            if (quirk && !*suffix) break;
            int q_agree = 0, q_first = -1;
            for (int p = 0; p < N_PROBES; p++) {
                outcome b = render_builtin(t, &probes[p], bos, eos);
                int same = !got[p].ok && !b.ok;
                if (got[p].ok && b.ok) {
                    size_t lb = strlen(b.text);
                    if (quirk && !probes[p].gen)
                        same =
                            !strncmp(got[p].text, b.text, lb) && !strcmp(got[p].text + lb, suffix);
                    else
                        same = !strcmp(got[p].text, b.text);
                }
                if (got[p].ok && b.ok && !quirk) { /* closeness: shared prefix + suffix */
                    size_t lx = strlen(got[p].text), ly = strlen(b.text), a = 0, z = 0;
                    while (a < lx && a < ly && got[p].text[a] == b.text[a])
                        a++;
                    while (z < lx - a && z < ly - a &&
                           got[p].text[lx - 1 - z] == b.text[ly - 1 - z])
                        z++;
                    close += (long)(a + z);
                }
                if (same)
                    q_agree++;
                else if (q_first < 0)
                    q_first = p;
                free(b.text);
            }
            if (!quirk || q_agree == N_PROBES) agree = q_agree, first_diff = q_first;
        }
        free(suffix);
        if (agree == N_PROBES) {
            n_found++, found = t;
            if (hk < sizeof hits)
                hk += (size_t)snprintf(hits + hk, sizeof hits - hk, "%s%s", n_found > 1 ? ", " : "",
                                       t->name);
        } else if ((long)agree * 1000000 + close > best_score) {
            best_score = (long)agree * 1000000 + close;
            /* the closest template so far: describe its first differing probe */
            const probe *p = &probes[first_diff];
            outcome b = render_builtin(t, p, bos, eos);
            const char *x = got[first_diff].text, *y = b.text;
            size_t k = 0;
            if (got[first_diff].ok && b.ok)
                while (x[k] && x[k] == y[k])
                    k++;
            char bx[160], by[160];
            brief(bx, sizeof bx, x, got[first_diff].ok && b.ok ? k : 0);
            brief(by, sizeof by, y, got[first_diff].ok && b.ok ? k : 0);
            snprintf(
                why, sizeof why,
                "closest is %s (%d of %d probes agree); on the probe '%s' the model's template "
                "%s \"%s\" where %s %s \"%s\"",
                t->name, agree, N_PROBES, p->what, got[first_diff].ok ? "gives" : "raises", bx,
                t->name, b.ok ? "gives" : "raises", by);
            free(b.text);
        }
    }
    for (int p = 0; p < N_PROBES; p++)
        free(got[p].text);
    if (n_found > 1)
        return ft_errorf(FT_ERR_UNSUPPORTED,
                         "the tokenizer's chat_template renders like several templates (%s): set "
                         "chat_template: to one of them",
                         hits);
    if (!found)
        return ft_errorf(FT_ERR_UNSUPPORTED,
                         "the tokenizer's chat_template is not one ftune knows (rendered, it "
                         "differs from every built-in template; %s): set chat_template: to one of "
                         "%s, knowing that training then differs from the model's own template",
                         why, names);
    *out = found;
    return FT_OK;
}

ft_status ft_chat_render(const ft_chat_template *t, const ft_msg *msgs, int n,
                         int add_generation_prompt, const char *bos, const char *eos,
                         ft_rendered *out) {
    out->len = 0;
    out->n_seg = 0;
    if (out->text) out->text[0] = 0;
    if (n <= 0) return ft_errorf(FT_ERR_ARG, "chat template %s: empty conversation", t->name);
    if (add_generation_prompt && msgs[n - 1].role != FT_ROLE_USER)
        return ft_errorf(FT_ERR_ARG,
                         "chat template %s: a generation prompt must end with a user message",
                         t->name);
    ft_status st = t->render(t, msgs, n, add_generation_prompt, bos ? bos : "", eos ? eos : "", out);
    if (st) return st;
    if (out->len == 0) return emit(out, "", 0), FT_OK;
    return FT_OK;
}
