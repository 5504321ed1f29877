/* A chat session shared by `ftune chat` (interactive) and `ftune generate --chat` (one turn): the
 * conversation is rendered by the same template code that builds training samples
 * (ft_chat_render with the generation prompt), tokenized as a whole, and the reply is generated
 * until the template's end-of-turn token (or EOS), streaming decoded text. The KV cache is reused
 * across turns for the longest common prefix of the new prompt's ids and the cached ones. */
#ifndef FTUNE_CLI_CHAT_H
#define FTUNE_CLI_CHAT_H

#include <stdio.h>

#include "ftune/instruct.h"
#include "ftune/model.h"
#include "ftune/tokenizer.h"

typedef struct {
    const ft_model *m;
    ft_tokenizer *tok;
    const ft_chat_template *tpl;
    const char *bos, *eos;   /* token strings ("" if none) */
    int eot_id;              /* id that ends a reply (-1: only EOS / the eot text) */
    const char *eot;         /* its text */
    ft_sample_params sp;
    ft_kv_cache cache;
    int *cached;             /* (max_seq) ids whose keys/values are in the cache */
    int n_cached;
    float *logits;           /* (V) */
    ft_sampler sampler;
    ft_msg *msgs;            /* the conversation so far (contents owned) */
    int n_msgs, cap_msgs;
} cli_chat;

/* Open a session: template `name` ("tokenizer_default" or NULL = the model's own, recognised).
 * tok_dir is the model folder: it holds tokenizer.json (whose ids must fit the model) and
 * tokenizer_config.json. */
ft_status cli_chat_init(cli_chat *c, const ft_model *m, ft_tokenizer *tok, const char *tok_dir,
                        const char *name, const ft_sample_params *sp);
void cli_chat_free(cli_chat *c);
/* Append a message (system or user). */
ft_status cli_chat_add(cli_chat *c, ft_role role, const char *content);
/* How a reply ended. */
typedef enum {
    CLI_REPLY_CUT_MAX_NEW, /* after max_new tokens */
    CLI_REPLY_CUT_CONTEXT, /* the conversation filled the model's context first */
    CLI_REPLY_DONE,        /* at the end-of-turn token (or EOS) */
} cli_reply_end;

/* Generate the assistant reply to the conversation so far, at most max_new tokens, writing the
 * text to `out` as it is produced (NULL: silent); the reply (without its end-of-turn) is appended
 * to the conversation and returned in *reply (owned by the session); *end says how it ended. */
ft_status cli_chat_reply(cli_chat *c, int max_new, FILE *out, const char **reply,
                         cli_reply_end *end);
/* For a cut reply, the one stderr line that says why ("ftune <cmd>: (reply cut ...)"). */
void cli_reply_note(const char *cmd, cli_reply_end end, int max_new, const ft_model *m);

/* One turn (what `generate --chat` does): [system], user `prompt`, reply streamed to `out`. */
ft_status cli_chat_once(const ft_model *m, ft_tokenizer *tok, const char *tok_dir, const char *name,
                        const char *system, const char *prompt, int max_new,
                        const ft_sample_params *sp, FILE *out, cli_reply_end *end);

#endif
