/*
 * Internals of the tokenizer module, shared by tokenizer.c (tokenizer.json loading, the
 * normalize / pre-tokenize / post-process / decode pipeline), bpe.c (the BPE model) and
 * llama2c.c (tokenizer.bin conversion). Not a public contract.
 */
#ifndef FTUNE_TOK_INTERNAL_H
#define FTUNE_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "ftune/core.h"

/* Growable byte buffer. */
typedef struct {
    char *p;
    size_t n, cap;
} tk_buf;
ft_status tk_buf_reserve(tk_buf *b, size_t extra);
ft_status tk_buf_put(tk_buf *b, const void *s, size_t n);
void tk_buf_free(tk_buf *b);

/* Growable int vector. */
typedef struct {
    int *p;
    size_t n, cap;
} tk_ivec;
ft_status tk_ivec_push(tk_ivec *v, int x);
ft_status tk_ivec_put(tk_ivec *v, const int *x, size_t n);

uint64_t tk_hash(const void *s, size_t n);

/* Open-addressing map from byte strings to int. Keys are NOT copied: they must outlive the map. */
typedef struct {
    const char *k;
    uint32_t klen;
    int v;
    uint64_t h;
} tk_strmap_ent;
typedef struct {
    tk_strmap_ent *e; /* NULL k = empty slot */
    size_t cap, n;
} tk_strmap;
/* Insert or overwrite; returns FT_ERR_NOMEM on allocation failure. */
ft_status tk_strmap_set(tk_strmap *m, const char *k, size_t klen, int v);
/* Value or -1. */
int tk_strmap_get(const tk_strmap *m, const char *k, size_t klen);
void tk_strmap_free(tk_strmap *m);

/* Merge table: (left id, right id) -> (rank, merged id). */
typedef struct {
    uint64_t key; /* (uint64)left << 32 | right, UINT64_MAX = empty */
    int rank, id;
} tk_merge_ent;

/* Word cache of the BPE model: (flag, bytes) -> ids. Cleared when full. */
typedef struct {
    uint64_t h;
    uint32_t koff, klen, voff, vlen; /* klen 0 = empty */
} tk_cache_ent;

/* The BPE model of tokenizer.json. */
typedef struct {
    char **tok;      /* id -> token string (NUL-terminated, owned); NULL for unused ids */
    uint32_t *toklen; /* id -> byte length */
    int ntok;        /* ids 0..ntok-1 */
    tk_strmap vocab;
    tk_merge_ent *merges;
    size_t merge_cap, nmerges;
    int unk_id; /* -1 = none */
    int fuse_unk, byte_fallback, ignore_merges;
    char *prefix, *suffix; /* continuing_subword_prefix / end_of_word_suffix, NULL when absent */
    int byte_fb[256];      /* id of "<0xXX>" or -1 */
    int bl_id[256];        /* id of the ByteLevel character of each byte, or -1 */
    int *cp_id;            /* code point < 0x10000 -> id of that 1-character token or -1 (NULL with prefix/suffix) */
    /* scratch (reused across calls: the model is not thread-safe) */
    int *sym_id, *sym_prev, *sym_next, *sym_len;
    size_t sym_cap;
    struct tk_heap_ent *heap;
    size_t heap_cap;
    tk_buf scratch;
    tk_cache_ent *cache;
    size_t cache_cap, cache_n;
    tk_buf cache_keys;
    tk_ivec cache_vals;
} tk_bpe;

/* The 256 ByteLevel characters (GPT-2's bytes_to_unicode) as UTF-8: tk_bytelevel_char(b, out)
 * writes 1-2 bytes and returns the count. tk_bytelevel_byte maps a code point back (-1 if none). */
int tk_bytelevel_char(unsigned b, char *out);
int tk_bytelevel_byte(uint32_t cp);

/* Look up a merge; returns 1 and fills rank/id when (a, b) merges. */
int tk_bpe_merge_get(const tk_bpe *m, int a, int b, int *rank, int *id);
ft_status tk_bpe_merge_set(tk_bpe *m, int a, int b, int rank, int id);
/* Encode one pre-token `w` (n bytes). bytelevel != 0: `w` is raw bytes still to be mapped to
 * the ByteLevel alphabet. Appends ids to `out`. */
ft_status tk_bpe_encode_word(tk_bpe *m, const char *w, size_t n, int bytelevel, tk_ivec *out);
void tk_bpe_free(tk_bpe *m);
/* Build the lookup tables once vocab, prefix and suffix are set. */
ft_status tk_bpe_finish(tk_bpe *m);

/* UTF-8 helpers. tk_utf8_next decodes one (already validated) code point at s[*i]. */
uint32_t tk_utf8_next(const char *s, size_t n, size_t *i);
int tk_utf8_put(uint32_t cp, char *out);
/* 0 if valid UTF-8, else the offset of the first bad byte + 1. */
size_t tk_utf8_check(const char *s, size_t n);
/* Append s to b, replacing invalid sequences by U+FFFD the way Rust's from_utf8_lossy and
 * WHATWG TextDecoder do (one U+FFFD per maximal invalid subpart). */
ft_status tk_utf8_lossy(tk_buf *b, const char *s, size_t n);

#endif
