/*
 * ftune tokenizer: Hugging Face tokenizer.json (BPE model) in C, id-for-id identical to the
 * reference tokenizers on the components listed below.
 *
 * Supported: model BPE (merges as "a b" strings or ["a","b"] arrays, ignore_merges, byte_fallback,
 * fuse_unk, unk_token, continuing_subword_prefix, end_of_word_suffix); normalizers NFC/NFD/NFKC/NFKD,
 * Prepend, Replace (string pattern), Lowercase, Sequence; pre-tokenizers Split (regex via PCRE2 with
 * UTF+UCP+JIT, or string), ByteLevel, Metaspace, Sequence; added tokens (lstrip, rstrip,
 * single_word, normalized, special); post-processors TemplateProcessing, ByteLevel, Sequence;
 * decoders ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence.
 * Anything else in a tokenizer.json (another model type, an unknown component type or key,
 * truncation/padding settings) is an error naming the file and the key: never a silent fallback.
 *
 * Text is UTF-8. Encoding input that is not valid UTF-8 fails with FT_ERR_ARG naming the byte
 * offset (the reference tokenizers take Unicode strings, so there is no reference behaviour to
 * copy). Decoding always returns valid UTF-8: invalid byte sequences become U+FFFD as the
 * reference does.
 *
 * Thread safety: encode/decode use a word cache and scratch buffers inside the tokenizer, so calls
 * on one ft_tokenizer must not run concurrently; use one ft_tokenizer per thread.
 */
#ifndef FTUNE_TOKENIZER_H
#define FTUNE_TOKENIZER_H

#include <stddef.h>

#include "ftune/core.h"

typedef struct ft_tokenizer ft_tokenizer;

/* Load `dir_or_file`: a directory holding tokenizer.json (and optionally tokenizer_config.json,
 * which supplies bos/eos/pad tokens and add_bos_token/add_eos_token), or the path of a
 * tokenizer.json itself (then a tokenizer_config.json beside it is read too). On success *out
 * owns a tokenizer to release with ft_tokenizer_free. Errors name the file and the JSON key. */
ft_status ft_tokenizer_load(ft_tokenizer **out, const char *dir_or_file);

/* Same, from bytes in memory (`config`/`config_len` may be NULL/0). `name` labels errors.
 * This is the entry point the fuzzer drives. */
ft_status ft_tokenizer_load_json(ft_tokenizer **out, const char *json, size_t len, const char *config,
                                 size_t config_len, const char *name);

void ft_tokenizer_free(ft_tokenizer *tok); /* NULL is a no-op */

/* Encode `len` bytes of UTF-8 `text` into a malloc'ed array *ids of *n token ids (caller frees
 * with free(); *ids may be NULL when *n == 0). add_special != 0 applies the post-processor
 * (e.g. BOS), like HF `encode(text)`; 0 is `add_special_tokens=False`. Added/special tokens that
 * appear in the text are always matched, as in HF. */
ft_status ft_tokenizer_encode(ft_tokenizer *tok, const char *text, size_t len, int add_special, int **ids,
                              int *n);

/* Decode n ids into a malloc'ed NUL-terminated UTF-8 string *out (caller frees with free()).
 * skip_special != 0 drops special added tokens. Ids outside the vocabulary are an FT_ERR_ARG error
 * naming the position. Applies clean_up_tokenization_spaces when tokenizer_config.json asks. */
ft_status ft_tokenizer_decode(ft_tokenizer *tok, const int *ids, int n, int skip_special, char **out);

/* Vocabulary: size is max id + 1 over the model vocabulary and added tokens. */
int ft_tokenizer_vocab_size(const ft_tokenizer *tok);
/* FT_OK if every id of the tokenizer (loaded from model_dir) is below the model's vocab_size;
 * otherwise an FT_ERR_ARG error naming model_dir's tokenizer.json and config.json (an id past the
 * model's rows has no embedding: generation or training would fail where it first appears). */
ft_status ft_tokenizer_check_model(const ft_tokenizer *tok, const char *model_dir, int vocab_size);

/* The tokenizer files a Hugging Face folder carries beside the weights: a full / freeze run and
 * `ftune merge` copy those present into the folder they write. */
#define FT_N_TOKENIZER_FILES 5
extern const char *const ft_tokenizer_files[FT_N_TOKENIZER_FILES];
/* Id of a token string (model vocabulary or added token), -1 if absent. */
int ft_tokenizer_token_to_id(const ft_tokenizer *tok, const char *token);
/* Token string of an id (owned by the tokenizer), NULL if out of range or unused. */
const char *ft_tokenizer_id_to_token(const ft_tokenizer *tok, int id);
/* Special ids from tokenizer_config.json (or the post-processor for BOS): -1 when not defined. */
int ft_tokenizer_bos_id(const ft_tokenizer *tok);
int ft_tokenizer_eos_id(const ft_tokenizer *tok);
int ft_tokenizer_pad_id(const ft_tokenizer *tok);
/* 1 if `id` is a special added token (skipped by decode with skip_special). */
int ft_tokenizer_is_special(const ft_tokenizer *tok, int id);

/* Convert llama2.c's tokenizer.bin (`len` bytes: int32 max_token_len, then per token
 * {float32 score, int32 len, bytes}) holding `vocab_size` tokens into a Hugging Face tokenizer.json
 * for the Llama-2 SentencePiece BPE (normalizer Prepend "▁" + Replace " "→"▁", byte fallback,
 * merges derived from the scores as HF's SentencePiece converter does, post-processor adding <s>,
 * decoder Replace/ByteFallback/Fuse/Strip), written atomically to `out_path`. Every length is
 * checked against `len`. */
ft_status ft_tokenizer_convert_llama2c(const void *bytes, size_t len, int vocab_size, const char *out_path);
/* Write both DIR/tokenizer.json (as above) and DIR/tokenizer_config.json (bos <s>, eos </s>,
 * unk <unk>, add_bos_token true, add_eos_token false, LlamaTokenizer, no clean-up of spaces). */
ft_status ft_tokenizer_convert_llama2c_dir(const void *bytes, size_t len, int vocab_size, const char *dir);
/* Same, returning the JSON text in a malloc'ed string *out_json (caller frees). */
ft_status ft_tokenizer_llama2c_json(const void *bytes, size_t len, int vocab_size, char **out_json);

#endif
