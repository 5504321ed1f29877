/*
 * A small, strict Jinja2 interpreter for the chat templates of tokenizer_config.json files
 * (src/data/jinja.c). It parses a template once and renders it against a JSON context (messages,
 * bos_token, eos_token, add_generation_prompt, tools, ...) the way Hugging Face's
 * @huggingface/jinja does with trim_blocks and lstrip_blocks (what transformers'
 * apply_chat_template sets). The input is untrusted: anything unsupported or malformed comes back
 * as an ft_status with one line naming the construct and the template line, never a crash; memory
 * and work per render are bounded.
 */
#ifndef FTUNE_JINJA_H
#define FTUNE_JINJA_H

#include "ftune/core.h"

#include <stddef.h>
#include <stdint.h>

struct cJSON;
typedef struct ft_jinja ft_jinja;

/* Parse `len` bytes of Jinja source. On success *out owns the template (ft_jinja_free). Errors:
 * FT_ERR_FORMAT "template line N: ..." for syntax errors, FT_ERR_UNSUPPORTED for constructs this
 * interpreter does not implement (named in the message). */
ft_status ft_jinja_parse(const char *src, size_t len, ft_jinja **out);
void ft_jinja_free(ft_jinja *t);

/* Render with the variables of the JSON object `ctx` (may be NULL). strftime_now(fmt) formats the
 * time `now` (seconds since the epoch, UTC), so renders are deterministic. On success *out is a
 * malloc'd NUL-terminated string of *len bytes (the caller frees it). raise_exception(msg) comes
 * back as FT_ERR_ARG "template line N: raise_exception: msg"; other runtime errors as
 * FT_ERR_FORMAT / FT_ERR_UNSUPPORTED with the line. */
ft_status ft_jinja_render(const ft_jinja *t, const struct cJSON *ctx, int64_t now, char **out,
                          size_t *len);

#endif
