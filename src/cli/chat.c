/* Chat sessions for `ftune chat` and `ftune generate --chat` (see chat.h). */
#include "chat.h"

#include <stdlib.h>
#include <string.h>

static const char *tok_str(ft_tokenizer *tok, int id) {
    const char *s = id >= 0 ? ft_tokenizer_id_to_token(tok, id) : NULL;
    return s ? s : "";
}

ft_status cli_chat_init(cli_chat *c, const ft_model *m, ft_tokenizer *tok, const char *tok_dir,
                        const char *name, const ft_sample_params *sp) {
    memset(c, 0, sizeof *c);
    c->m = m;
    c->tok = tok;
    c->sp = *sp;
    ft_status st = ft_tokenizer_check_model(tok, tok_dir, m->cfg.vocab_size);
    if (!st) st = ft_chat_template_resolve(name ? name : "tokenizer_default", tok_dir, &c->tpl);
    if (st) return st;
    c->bos = tok_str(tok, ft_tokenizer_bos_id(tok));
    c->eos = tok_str(tok, ft_tokenizer_eos_id(tok));
    c->eot = ft_chat_template_eot(c->tpl, c->eos);
    c->eot_id = c->eot[0] ? ft_tokenizer_token_to_id(tok, c->eot) : -1;
    if ((st = ft_kv_cache_init(&c->cache, &m->cfg, ft_config_context(&m->cfg)))) return st;
    c->cached = malloc(sizeof(int) * (size_t)ft_config_context(&m->cfg));
    c->logits = malloc(sizeof(float) * (size_t)m->cfg.vocab_size);
    if (!c->cached || !c->logits) return ft_errorf(FT_ERR_NOMEM, "out of memory");
    return ft_sampler_init(&c->sampler, m->cfg.vocab_size, sp);
}

void cli_chat_free(cli_chat *c) {
    if (!c) return;
    ft_kv_cache_free(&c->cache);
    ft_sampler_free(&c->sampler);
    free(c->cached);
    free(c->logits);
    for (int i = 0; i < c->n_msgs; i++) free(c->msgs[i].content);
    free(c->msgs);
    memset(c, 0, sizeof *c);
}

ft_status cli_chat_add(cli_chat *c, ft_role role, const char *content) {
    if (c->n_msgs == c->cap_msgs) {
        int nc = c->cap_msgs ? c->cap_msgs * 2 : 8;
        ft_msg *nm = realloc(c->msgs, sizeof *nm * (size_t)nc);
        if (!nm) return ft_errorf(FT_ERR_NOMEM, "out of memory");
        c->msgs = nm;
        c->cap_msgs = nc;
    }
    char *d = ft_strdup(content);
    if (!d) return ft_errorf(FT_ERR_NOMEM, "out of memory");
    c->msgs[c->n_msgs].role = role;
    c->msgs[c->n_msgs].content = d;
    c->n_msgs++;
    return FT_OK;
}

/* Run ids[from..n) through the model at positions from.., leaving the last logits. */
static ft_status feed(cli_chat *c, const int *ids, int from, int n) {
    if (n > ft_config_context(&c->m->cfg))
        return ft_errorf(FT_ERR_ARG, "the conversation (%d tokens) exceeds the model's context %d",
                         n, ft_config_context(&c->m->cfg));
    ft_status st = ft_model_forward(c->m, &c->cache, ids + from, n - from, from, c->logits, 0);
    if (st) return st;
    memcpy(c->cached + from, ids + from, sizeof(int) * (size_t)(n - from));
    c->n_cached = n;
    return FT_OK;
}

ft_status cli_chat_reply(cli_chat *c, int max_new, FILE *out, const char **reply,
                         cli_reply_end *end) {
    ft_rendered rd = {0};
    int *ids = NULL, n = 0, *gen = NULL, n_gen = 0;
    char *text = NULL;
    size_t printed = 0;
    *end = CLI_REPLY_CUT_MAX_NEW;
    *reply = NULL;
    ft_status st = ft_chat_render(c->tpl, c->msgs, c->n_msgs, 1, c->bos, c->eos, &rd);
    if (!st) st = ft_tokenizer_encode(c->tok, rd.text, rd.len, 0, &ids, &n);
    if (st) goto done;
    if (n == 0) {
        st = ft_errorf(FT_ERR_ARG, "the rendered prompt is empty");
        goto done;
    }
    /* reuse the cache for the common prefix; at least the last prompt token is run again */
    int from = 0;
    while (from < c->n_cached && from < n - 1 && c->cached[from] == ids[from]) from++;
    if ((st = feed(c, ids, from, n))) goto done;
    int cap = ft_config_context(&c->m->cfg) - n; /* the context ends the reply if not before */
    if (cap > max_new) cap = max_new;
    gen = malloc(sizeof(int) * (size_t)(cap > 0 ? cap : 1));
    if (!gen) {
        st = ft_errorf(FT_ERR_NOMEM, "out of memory");
        goto done;
    }
    int eos = ft_tokenizer_eos_id(c->tok);
    size_t eot_len = strlen(c->eot);
    int pos = n;
    while (n_gen < max_new && pos < ft_config_context(&c->m->cfg)) {
        int id = ft_sampler_next(&c->sampler, c->logits);
        if (id == c->eot_id || id == eos) {
            *end = CLI_REPLY_DONE;
            break;
        }
        gen[n_gen++] = id;
        free(text);
        text = NULL;
        if ((st = ft_tokenizer_decode(c->tok, gen, n_gen, 0, &text))) goto done;
        size_t len = strlen(text);
        /* an eot that is not one token: stop when the text ends with it */
        if (c->eot_id < 0 && eot_len && len >= eot_len && !strcmp(text + len - eot_len, c->eot)) {
            len -= eot_len;
            text[len] = 0;
            *end = CLI_REPLY_DONE;
        }
        /* print what is new, holding back an unfinished UTF-8 sequence (U+FFFD at the end) */
        int partial = len >= 3 && !memcmp(text + len - 3, "\xEF\xBF\xBD", 3);
        if (out && !partial && len > printed) {
            fwrite(text + printed, 1, len - printed, out);
            fflush(out);
            printed = len;
        }
        if (*end == CLI_REPLY_DONE) break;
        if ((st = ft_model_forward(c->m, &c->cache, &id, 1, pos, c->logits, 0))) goto done;
        c->cached[pos] = id;
        c->n_cached = ++pos;
    }
    if (*end != CLI_REPLY_DONE && n_gen < max_new) *end = CLI_REPLY_CUT_CONTEXT;
    if (!text && !(text = ft_strdup(""))) {
        st = ft_errorf(FT_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (out && strlen(text) > printed) fwrite(text + printed, 1, strlen(text) - printed, out);
    if ((st = cli_chat_add(c, FT_ROLE_ASSISTANT, text))) goto done;
    *reply = c->msgs[c->n_msgs - 1].content;
done:
    free(text);
    free(gen);
    free(ids);
    ft_rendered_free(&rd);
    return st;
}

ft_status cli_chat_once(const ft_model *m, ft_tokenizer *tok, const char *tok_dir, const char *name,
                        const char *system, const char *prompt, int max_new,
                        const ft_sample_params *sp, FILE *out, cli_reply_end *end) {
    cli_chat c;
    const char *reply;
    ft_status st = cli_chat_init(&c, m, tok, tok_dir, name, sp);
    if (!st && system) st = cli_chat_add(&c, FT_ROLE_SYSTEM, system);
    if (!st) st = cli_chat_add(&c, FT_ROLE_USER, prompt);
    if (!st) st = cli_chat_reply(&c, max_new, out, &reply, end);
    cli_chat_free(&c);
    return st;
}

void cli_reply_note(const char *cmd, cli_reply_end end, int max_new, const ft_model *m) {
    if (end == CLI_REPLY_CUT_MAX_NEW)
        fprintf(stderr, "ftune %s: (reply cut at %d tokens)\n", cmd, max_new);
    else if (end == CLI_REPLY_CUT_CONTEXT)
        fprintf(stderr, "ftune %s: (reply cut: the model's context of %d positions is full)\n", cmd,
                ft_config_context(&m->cfg));
}
