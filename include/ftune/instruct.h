/*
 * Instruction data for supervised fine-tuning (SFT) and preference training:
 *
 *   1. records   : JSON arrays or JSON Lines in the formats alpaca, sharegpt, chat_template
 *                  (OpenAI messages), dolly, flan, completion/text, preference, with a column
 *                  mapping for other field names (src/data/instruct.c). Every record remembers its
 *                  file and line, so errors and skipped records can be named.
 *   2. templates : a conversation rendered by a named chat template into one string made of
 *                  segments, each with a "train on this" flag (src/data/chat_template.c). The same
 *                  code renders the generation prompt for `ftune generate --chat` and `ftune chat`.
 *   3. samples   : the rendered string tokenized ONCE as a whole (so BPE merges across segment
 *                  borders are exactly the reference's), trained segments mapped to tokens, loss
 *                  labels (-100 = no loss), truncation, packing into rows with positions that
 *                  restart per sample and a segment id per sample, validation split (src/data/sft.c).
 *
 * Labels in ft_sft_sample are UNSHIFTED (HF convention: labels[t] is the id at t or -100); the
 * rows handed to the training step are shifted (ft_sft_row: target of position t = label t+1).
 * Not here: plain-text continued pre-training (include/ftune/data.h), the training loop.
 */
#ifndef FTUNE_INSTRUCT_H
#define FTUNE_INSTRUCT_H

#include <stddef.h>
#include <stdint.h>

#include "ftune/core.h"

#ifndef FT_IGNORE_INDEX
#define FT_IGNORE_INDEX (-100)
#endif

/* ------------------------------------------------------------------ records ---- */

typedef enum { FT_ROLE_SYSTEM = 0, FT_ROLE_USER, FT_ROLE_ASSISTANT } ft_role;

typedef struct {
    ft_role role;
    char *content; /* NUL-terminated UTF-8, owned */
} ft_msg;

typedef enum {
    FT_REC_CHAT = 0, /* a conversation (alpaca/dolly/flan become system?, user, assistant) */
    FT_REC_TEXT,     /* completion/text: one string, all of it trained */
    FT_REC_PREF,     /* preference: prompt conversation + chosen / rejected assistant replies */
} ft_rec_kind;

typedef struct {
    ft_rec_kind kind;
    ft_msg *msgs;     /* CHAT: the conversation; PREF: the prompt (ends with a user turn) */
    int n_msgs;
    char *text;       /* TEXT */
    char *chosen;     /* PREF: the preferred assistant reply */
    char *rejected;   /* PREF: the other one */
    int src;          /* index of the dataset it came from */
    int line;         /* 1-based line where the record starts in its file */
} ft_record;

typedef struct {
    ft_record *recs;
    size_t n, cap;
    char **files;     /* (n_files) file labels, indexed by ft_record.src */
    int n_files;
    int64_t n_skipped; /* invalid records dropped under skip_invalid */
    char first_skip[384]; /* the first skipped record's error, for the report */
} ft_records;

/* How a dataset's records are read. NULL fields take the format's default names. */
typedef struct {
    const char *type;                 /* alpaca sharegpt chat_template dolly flan completion text
                                         preference (also: alpaca_chat, sharegpt:chat, ...) */
    const char *field_system;         /* alpaca: "system"; dolly/flan: none */
    const char *field_instruction;    /* alpaca/dolly "instruction", flan "inputs" */
    const char *field_input;          /* alpaca "input", dolly "context" */
    const char *field_output;         /* alpaca "output", dolly "response", flan "targets" */
    const char *field_messages;       /* sharegpt "conversations", chat_template "messages"
                                         (falls back to "conversations") */
    const char *message_field_role;   /* sharegpt "from", chat_template "role" */
    const char *message_field_content; /* sharegpt "value", chat_template "content" */
    const char *field;                /* completion/text: "text" */
    const char *field_prompt, *field_chosen, *field_rejected; /* preference */
    int skip_invalid;                 /* drop (and count) invalid records instead of failing */
} ft_dataset_format;

/* Read every record of `path` (a JSON array or JSON Lines; the first non-blank byte decides) in
 * the format `fmt`, appending to `r` with src = its file index. Errors name the file and line:
 * "quiz.jsonl:7: invalid JSON", "a.json:12: missing field 'output'", "x.jsonl:3: unknown role
 * 'robot' (known: ...)", "x.jsonl:4: empty conversation". With skip_invalid, invalid records are
 * counted in r->n_skipped instead; a file that yields no record at all is still an error. */
ft_status ft_records_read(ft_records *r, const char *path, const ft_dataset_format *fmt);
/* Same from bytes in memory; `label` names the source in errors. The fuzzer's entry point. */
ft_status ft_records_parse(ft_records *r, const char *buf, size_t len, const char *label,
                           const ft_dataset_format *fmt);
void ft_records_free(ft_records *r); /* NULL-safe; leaves *r zeroed */
/* 1 if `type` is a dataset type ft_records_read understands. */
int ft_dataset_type_known(const char *type);
/* Fisher-Yates shuffle of the records with a seeded xorshift64* (same seed, same order). */
void ft_records_shuffle(ft_records *r, uint64_t seed);
/* Parse a role name: system; user/human; assistant/gpt/model/chatgpt/bing/bard. -1 if unknown. */
int ft_role_parse(const char *s);
const char *ft_role_name(ft_role r);

/* ---------------------------------------------------------------- templates ---- */

typedef struct ft_chat_template ft_chat_template;

/* A rendered conversation: text[0..len) is the whole string; segments tile it in order. */
typedef struct {
    char *text;
    size_t len, cap;
    size_t *seg_end;  /* (n_seg) end offset of segment i (segment i starts at seg_end[i-1]) */
    int *seg_train;   /* (n_seg) 1 = assistant content or its end-of-turn token */
    int n_seg, seg_cap;
} ft_rendered;

/* The template called `name` (llama3 llama2 mistral chatml qwen3 alpaca vicuna zephyr gemma
 * phi3), or an FT_ERR_ARG error listing the names. */
ft_status ft_chat_template_get(const char *name, const ft_chat_template **out);
const char *ft_chat_template_name(const ft_chat_template *t);
/* All template names, NULL-terminated. */
const char *const *ft_chat_template_names(void);
/* Recognise a tokenizer_config.json chat_template (Jinja source) as one of ours by rendering: a
 * few probe conversations (with and without a system message, multi-turn, with
 * add_generation_prompt) go through the Jinja template (src/data/jinja.c, with bos/eos, "" when the
 * tokenizer has none) and through every built-in template; the built-in whose text is identical
 * on every probe (or that raises where the Jinja template raises) is the match. One tolerated
 * quirk: a template that appends the generation prompt even without add_generation_prompt (the
 * first Llama-3 release) matches the built-in that appends it only when asked; training samples
 * do not end with an empty assistant header. No match, several matches, or a template the
 * interpreter cannot run -> FT_ERR_UNSUPPORTED with one line: the closest built-in, the first
 * probe where it differs (both texts, briefly) and the names to pass as `chat_template:`. */
ft_status ft_chat_template_detect(const char *jinja, const char *bos, const char *eos,
                                  const ft_chat_template **out);

/* Render msgs[0..n) with `t` into `out` (reset first; free with ft_rendered_free). bos/eos are the
 * tokenizer's special token strings ("" when the tokenizer has none). add_generation_prompt: the
 * conversation ends with a user turn and the assistant header is appended (for generation).
 * Errors (FT_ERR_ARG): an order or role the template does not allow (llama2/mistral/gemma need
 * user/assistant alternation; mistral and gemma have no system role), empty conversation. */
ft_status ft_chat_render(const ft_chat_template *t, const ft_msg *msgs, int n,
                         int add_generation_prompt, const char *bos, const char *eos,
                         ft_rendered *out);
/* The string that closes an assistant turn ("<|eot_id|>", or eos itself): generation stops on it. */
const char *ft_chat_template_eot(const ft_chat_template *t, const char *eos);
void ft_rendered_free(ft_rendered *r);

/* ------------------------------------------------------------------ samples ---- */

/* Encode `len` bytes of `text` into a malloc'ed id array; add_special applies the tokenizer's
 * post-processor (BOS). Chat records are encoded with add_special = 0 (the template renders BOS
 * itself, as apply_chat_template does), text records with 1. Keeps this module independent of the
 * tokenizer implementation. */
typedef ft_status (*ft_sft_encode_fn)(void *ctx, const char *text, size_t len, int add_special,
                                      int **ids, int *n);

typedef enum { FT_TRUNC_ERROR = 0, FT_TRUNC_DROP, FT_TRUNC_TRUNCATE } ft_truncation;

typedef struct {
    const ft_chat_template *tpl; /* required for chat and preference records */
    const char *bos, *eos;       /* special token strings */
    int eos_id;                  /* appended to text records; -1: none */
    int train_on_inputs;         /* 1: every token carries loss; 0: assistant turns only */
    int T;                       /* sequence_len */
    ft_truncation truncation;
    ft_sft_encode_fn enc;
    void *enc_ctx;
} ft_sft_options;

typedef struct {
    int *ids;    /* (n) */
    int *labels; /* (n) unshifted: ids[t] where trained, else FT_IGNORE_INDEX */
    int n;
    int src, line; /* the record it came from */
} ft_sft_sample;

/* Render and tokenize one CHAT or TEXT record. The whole rendered string is encoded once; the
 * token that starts segment i is found as the length of the common prefix of encode(text[0,b))
 * and the whole encoding, b the segment's start offset (a token that straddles a border belongs
 * to the later segment). Errors name the record's file and line. */
ft_status ft_sft_tokenize(const ft_records *r, const ft_record *rec, const ft_sft_options *o,
                          ft_sft_sample *out);
void ft_sft_sample_free(ft_sft_sample *s);

typedef struct {
    ft_sft_sample *samples; /* (n) */
    int64_t n;
    int64_t *train, n_train; /* sample indices */
    int64_t *val, n_val;
    int64_t n_truncated, n_dropped, n_no_target; /* reported by the CLI */
    int64_t n_tokens, n_target_tokens;
} ft_sft_dataset;

/* Tokenize every record (CHAT/TEXT; PREF is an error here), apply truncation to o->T (error /
 * drop / truncate), drop samples left without any target (counted), and split val_size (< 1: a
 * fraction rounded up, >= 1: a count) off with a seeded shuffle. Fails on an empty result. */
ft_status ft_sft_dataset_build(ft_sft_dataset *ds, const ft_records *r, const ft_sft_options *o,
                               double val_size, uint64_t seed);
void ft_sft_dataset_free(ft_sft_dataset *ds);

/* One row for the training step from samples idx[0..n): inputs, labels (SHIFTED: labels[t] is
 * the target of the prediction at t), pos and seg, each T ints. Without packing n must be 1.
 * Samples are laid back to back (positions restart at 0 per sample, seg = its index in the row),
 * the rest is padding (pad_id, no target, its own seg id, positions continuing). The samples must
 * fit: sum of lengths <= T. */
void ft_sft_row(const ft_sft_dataset *ds, const int64_t *idx, int n, int T, int pad_id,
                int *inputs, int *labels, int *pos, int *seg);

/* Greedy first-fit packing of samples order[0..n) (in that order) into rows of T tokens:
 * row_start (n_rows+1) indexes into order, so row i holds order[row_start[i] .. row_start[i+1]).
 * Without packing every sample is its own row. Caller frees *row_start. */
ft_status ft_sft_pack(const ft_sft_dataset *ds, const int64_t *order, int64_t n, int T, int packing,
                      int64_t **row_start, int64_t *n_rows);

/* A fixed set of training rows: the samples `samples[0..n)` (e.g. ds->train) laid into rows once
 * (packed or one per row), so a trainer can address row r of an epoch order like a text row. */
typedef struct {
    int64_t *idx;   /* (n_samples) sample indices, row after row */
    int64_t *start; /* (n + 1) row r holds idx[start[r] .. start[r+1]) */
    int64_t n;      /* rows */
    int T, pad_id;
} ft_sft_rowset;

ft_status ft_sft_rowset_build(ft_sft_rowset *rs, const ft_sft_dataset *ds, const int64_t *samples,
                              int64_t n, int T, int packing, int pad_id);
/* Row r: inputs, shifted labels, positions and seg ids, T ints each (see ft_sft_row). */
void ft_sft_rowset_fill(const ft_sft_rowset *rs, const ft_sft_dataset *ds, int64_t r, int *inputs,
                        int *labels, int *pos, int *seg);
void ft_sft_rowset_free(ft_sft_rowset *rs); /* NULL-safe */

/* ------------------------------------------------------------------- loading ---- */

typedef struct ft_tokenizer ft_tokenizer; /* include/ftune/tokenizer.h */

typedef struct {
    const char *path;
    ft_dataset_format fmt;
} ft_sft_source;

/* Everything the SFT data pipeline needs from a run configuration (the trainer fills it from the
 * YAML keys datasets, chat_template, train_on_inputs, truncation, sequence_len, val_set_size,
 * shuffle_merged_datasets, seed). */
typedef struct {
    const ft_sft_source *src;
    int n_src;
    const char *chat_template;  /* a template name, "tokenizer_default", or NULL: alpaca for the
                                   alpaca/dolly/flan types, tokenizer_default otherwise */
    const char *tokenizer_dir;  /* where tokenizer_config.json lives (for tokenizer_default) */
    int train_on_inputs;
    ft_truncation truncation;
    int T;
    double val_size;
    int shuffle;                /* shuffle the merged records with `seed` before the split */
    uint64_t seed;
} ft_sft_config;

/* Read every source (mixed in order, then shuffled if asked), pick the chat template, tokenize
 * with `tok`, build the dataset. *recs and *ds are owned by the caller (free both); *tpl_out (may
 * be NULL) gets the template used (NULL when only text records). Notes for the user (template
 * recognised, pad == eos, skipped records) go to notes[0..cap) as one line each, NUL-separated
 * lines joined with '\n'. */
ft_status ft_sft_load(const ft_sft_config *c, ft_tokenizer *tok, ft_records *recs,
                      ft_sft_dataset *ds, const ft_chat_template **tpl_out, char *notes,
                      size_t notes_cap);

/* The template named by `name` ("tokenizer_default": detected from the chat_template key of
 * tokenizer_dir/tokenizer_config.json). */
ft_status ft_chat_template_resolve(const char *name, const char *tokenizer_dir,
                                   const ft_chat_template **out);

#endif
