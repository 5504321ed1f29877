/*
 * libFuzzer target for the tokenizer.json parser: the input is split at the first NUL byte into
 * a tokenizer.json and a short text; a tokenizer that loads must then encode the text (when it
 * is valid UTF-8) and decode the ids without crashing, and free everything.
 * Seeds: tests/fuzz/seeds_tokenizer/ (small tokenizer.json files using every component, each
 * followed by a NUL and a text).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ftune/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *json = (const char *)data;
    const char *nul = memchr(data, 0, size);
    size_t jlen = nul ? (size_t)(nul - json) : size;
    const char *text = nul ? nul + 1 : "hello world <s> 123";
    size_t tlen = nul ? size - jlen - 1 : strlen(text);
    if (tlen > 256) tlen = 256;
    ft_tokenizer *tok = NULL;
    if (ft_tokenizer_load_json(&tok, json, jlen, NULL, 0, "fuzz.json") != FT_OK) return 0;
    int *ids = NULL, n = 0;
    for (int special = 0; special < 2; special++) {
        if (ft_tokenizer_encode(tok, text, tlen, special, &ids, &n) == FT_OK) {
            char *out = NULL;
            if (ft_tokenizer_decode(tok, ids, n, special, &out) == FT_OK) free(out);
        }
        free(ids);
        ids = NULL;
    }
    int v = ft_tokenizer_vocab_size(tok);
    for (int i = 0; i < v && i < 64; i++) {
        const char *s = ft_tokenizer_id_to_token(tok, i);
        if (s) (void)ft_tokenizer_token_to_id(tok, s);
    }
    ft_tokenizer_free(tok);
    return 0;
}
