/*
 * llama2.c's tokenizer.bin -> Hugging Face tokenizer.json (Llama-2 SentencePiece BPE).
 *
 * tokenizer.bin: int32 max_token_len, then per token {float32 score, int32 len, len bytes}.
 * Its pieces use ' ' where tokenizer.json uses U+2581 "▁"; ids 3..258 are the byte tokens
 * ("<0x00>".."<0xFF>" in tokenizer.json) stored as the raw byte below 0x80 and as the UTF-8 of
 * U+0080..U+00FF above; ids 0..2 are <unk>, "\n<s>\n", "\n</s>\n".
 * Merges are derived from the scores exactly as transformers' SentencePieceExtractor does for
 * LlamaConverter: every split of a piece into two vocabulary pieces at a character boundary is a
 * merge, ordered by the merged piece's score, highest first, ties by (left id, right id) -- the
 * order of the converter's loop over (left, right) pieces followed by its stable sort by score.
 * This reproduces the 61,249 merges of Llama-2's tokenizer.json in order (tests/tokenizer checks
 * it against llama-tokenizer-js). <unk>, <s>, </s> count as score 0, as LlamaConverter gives them.
 * Not handled: other SentencePiece models (unigram), vocabularies that are not Llama-2 shaped.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ftune/tokenizer.h"
#include "tok_internal.h"

typedef struct {
    int l, r;
    float score;
} l2_merge;

static int cmp_merge(const void *pa, const void *pb) {
    const l2_merge *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    if (a->l != b->l) return (a->l > b->l) - (a->l < b->l);
    return (a->r > b->r) - (a->r < b->r);
}

static int32_t rd_i32(const unsigned char *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t v;
    memcpy(&v, &u, 4);
    return v;
}

static float rd_f32(const unsigned char *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static cJSON *special_added(int id, const char *content) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddNumberToObject(o, "id", id);
    cJSON_AddStringToObject(o, "content", content);
    cJSON_AddFalseToObject(o, "single_word");
    cJSON_AddFalseToObject(o, "lstrip");
    cJSON_AddFalseToObject(o, "rstrip");
    cJSON_AddFalseToObject(o, "normalized");
    cJSON_AddTrueToObject(o, "special");
    return o;
}

static cJSON *typed(const char *type) {
    cJSON *o = cJSON_CreateObject();
    if (o) cJSON_AddStringToObject(o, "type", type);
    return o;
}

static cJSON *string_pattern(const char *s) {
    cJSON *o = cJSON_CreateObject();
    if (o) cJSON_AddStringToObject(o, "String", s);
    return o;
}

static cJSON *template_item(const char *kind, const char *id, int type_id) {
    cJSON *o = cJSON_CreateObject(), *in = cJSON_CreateObject();
    if (!o || !in) {
        cJSON_Delete(o);
        cJSON_Delete(in);
        return NULL;
    }
    cJSON_AddStringToObject(in, "id", id);
    cJSON_AddNumberToObject(in, "type_id", type_id);
    cJSON_AddItemToObject(o, kind, in);
    return o;
}

static cJSON *build_json(char **piece, const float *score, int n, const l2_merge *mg, size_t nm) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    cJSON_AddItemToArray(added, special_added(0, "<unk>"));
    cJSON_AddItemToArray(added, special_added(1, "<s>"));
    cJSON_AddItemToArray(added, special_added(2, "</s>"));

    cJSON *norm = typed("Sequence"), *nl = cJSON_AddArrayToObject(norm, "normalizers");
    cJSON *prep = typed("Prepend"), *repl = typed("Replace");
    cJSON_AddStringToObject(prep, "prepend", "\xE2\x96\x81");
    cJSON_AddItemToObject(repl, "pattern", string_pattern(" "));
    cJSON_AddStringToObject(repl, "content", "\xE2\x96\x81");
    cJSON_AddItemToArray(nl, prep);
    cJSON_AddItemToArray(nl, repl);
    cJSON_AddItemToObject(root, "normalizer", norm);
    cJSON_AddNullToObject(root, "pre_tokenizer");

    cJSON *model = typed("BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddStringToObject(model, "unk_token", "<unk>");
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddNullToObject(model, "end_of_word_suffix");
    cJSON_AddTrueToObject(model, "fuse_unk");
    cJSON_AddTrueToObject(model, "byte_fallback");
    cJSON_AddFalseToObject(model, "ignore_merges");
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    for (int i = 0; i < n; i++) cJSON_AddNumberToObject(vocab, piece[i], i);
    int arrays = 0; /* "a b" strings unless a piece holds a space */
    for (int i = 0; i < n; i++)
        if (strchr(piece[i], ' ')) arrays = 1;
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");
    tk_buf b = {0};
    for (size_t i = 0; i < nm; i++) {
        if (arrays) {
            const char *pair[2] = {piece[mg[i].l], piece[mg[i].r]};
            cJSON_AddItemToArray(merges, cJSON_CreateStringArray(pair, 2));
        } else {
            b.n = 0;
            if (tk_buf_put(&b, piece[mg[i].l], strlen(piece[mg[i].l])) || tk_buf_put(&b, " ", 1) ||
                tk_buf_put(&b, piece[mg[i].r], strlen(piece[mg[i].r]))) {
                tk_buf_free(&b);
                cJSON_Delete(root);
                return NULL;
            }
            cJSON_AddItemToArray(merges, cJSON_CreateString(b.p));
        }
    }
    tk_buf_free(&b);
    cJSON_AddItemToObject(root, "model", model);
    (void)score;

    cJSON *post = typed("TemplateProcessing");
    cJSON *single = cJSON_AddArrayToObject(post, "single"), *pair = cJSON_AddArrayToObject(post, "pair");
    cJSON_AddItemToArray(single, template_item("SpecialToken", "<s>", 0));
    cJSON_AddItemToArray(single, template_item("Sequence", "A", 0));
    cJSON_AddItemToArray(pair, template_item("SpecialToken", "<s>", 0));
    cJSON_AddItemToArray(pair, template_item("Sequence", "A", 0));
    cJSON_AddItemToArray(pair, template_item("SpecialToken", "<s>", 1));
    cJSON_AddItemToArray(pair, template_item("Sequence", "B", 1));
    cJSON *sts = cJSON_AddObjectToObject(post, "special_tokens"), *s = cJSON_AddObjectToObject(sts, "<s>");
    const char *stoks[1] = {"<s>"};
    int sids[1] = {1};
    cJSON_AddStringToObject(s, "id", "<s>");
    cJSON_AddItemToObject(s, "ids", cJSON_CreateIntArray(sids, 1));
    cJSON_AddItemToObject(s, "tokens", cJSON_CreateStringArray(stoks, 1));
    cJSON_AddItemToObject(root, "post_processor", post);

    cJSON *dec = typed("Sequence"), *dl = cJSON_AddArrayToObject(dec, "decoders");
    cJSON *d1 = typed("Replace"), *d4 = typed("Strip");
    cJSON_AddItemToObject(d1, "pattern", string_pattern("\xE2\x96\x81"));
    cJSON_AddStringToObject(d1, "content", " ");
    cJSON_AddStringToObject(d4, "content", " ");
    cJSON_AddNumberToObject(d4, "start", 1);
    cJSON_AddNumberToObject(d4, "stop", 0);
    cJSON_AddItemToArray(dl, d1);
    cJSON_AddItemToArray(dl, typed("ByteFallback"));
    cJSON_AddItemToArray(dl, typed("Fuse"));
    cJSON_AddItemToArray(dl, d4);
    cJSON_AddItemToObject(root, "decoder", dec);
    return root;
}

ft_status ft_tokenizer_llama2c_json(const void *bytes, size_t len, int vocab_size, char **out_json) {
    const unsigned char *p = bytes;
    *out_json = NULL;
    if (vocab_size < 259 || vocab_size > 1000000)
        return ft_errorf(FT_ERR_ARG, "llama2.c tokenizer: vocab_size %d is not a Llama-2 vocabulary (need >= 259)", vocab_size);
    if (len < 4) return ft_errorf(FT_ERR_FORMAT, "llama2.c tokenizer: %zu bytes, too short for the header", len);
    char **piece = calloc((size_t)vocab_size, sizeof *piece);
    float *score = calloc((size_t)vocab_size, sizeof *score);
    l2_merge *mg = NULL;
    tk_strmap map = {0};
    tk_buf b = {0};
    ft_status st = FT_OK;
    size_t off = 4, nm = 0, mcap = 0;
    if (!piece || !score) {
        st = ft_errorf(FT_ERR_NOMEM, "llama2.c tokenizer: out of memory");
        goto done;
    }
    for (int i = 0; i < vocab_size; i++) {
        if (len - off < 8) {
            st = ft_errorf(FT_ERR_FORMAT, "llama2.c tokenizer: token %d header at byte %zu runs past the end (%zu bytes)", i, off, len);
            goto done;
        }
        float sc = rd_f32(p + off);
        int32_t tl = rd_i32(p + off + 4);
        off += 8;
        if (tl < 0 || (size_t)tl > len - off) {
            st = ft_errorf(FT_ERR_FORMAT, "llama2.c tokenizer: token %d length %d at byte %zu runs past the end", i, (int)tl, off - 4);
            goto done;
        }
        const char *s = (const char *)p + off;
        off += (size_t)tl;
        b.n = 0;
        if (i < 3) {
            static const char *const want[3] = {"<unk>", "\n<s>\n", "\n</s>\n"}, *const name[3] = {"<unk>", "<s>", "</s>"};
            if ((size_t)tl != strlen(want[i]) || memcmp(s, want[i], (size_t)tl)) {
                st = ft_errorf(FT_ERR_FORMAT, "llama2.c tokenizer: token %d is not %s", i, name[i]);
                goto done;
            }
            st = tk_buf_put(&b, name[i], strlen(name[i]));
            sc = 0.0f; /* LlamaConverter.vocab gives the three specials score 0 */
        } else if (i < 259) {
            unsigned byte = (unsigned)(i - 3);
            char want[4];
            int wl = byte < 0x80 ? (want[0] = (char)byte, 1) : tk_utf8_put(byte, want);
            if (tl != wl || memcmp(s, want, (size_t)wl)) {
                st = ft_errorf(FT_ERR_FORMAT, "llama2.c tokenizer: token %d is not the byte token <0x%02X>", i, byte);
                goto done;
            }
            char hex[8];
            snprintf(hex, sizeof hex, "<0x%02X>", byte);
            st = tk_buf_put(&b, hex, 6);
        } else {
            if (tk_utf8_check(s, (size_t)tl) || tl == 0) {
                st = ft_errorf(FT_ERR_FORMAT, "llama2.c tokenizer: token %d is empty or not valid UTF-8", i);
                goto done;
            }
            for (int32_t k = 0; k < tl && !st; k++)
                st = s[k] == ' ' ? tk_buf_put(&b, "\xE2\x96\x81", 3) : tk_buf_put(&b, s + k, 1);
        }
        if (st) goto done;
        if (memchr(b.p, 0, b.n)) {
            st = ft_errorf(FT_ERR_FORMAT, "llama2.c tokenizer: token %d contains a NUL byte", i);
            goto done;
        }
        if (!(piece[i] = ft_strdup(b.p))) {
            st = FT_ERR_NOMEM;
            goto done;
        }
        score[i] = sc;
        if (tk_strmap_get(&map, piece[i], b.n) >= 0) {
            st = ft_errorf(FT_ERR_FORMAT, "llama2.c tokenizer: token %d \"%.40s\" appears twice", i, piece[i]);
            goto done;
        }
        if ((st = tk_strmap_set(&map, piece[i], b.n, i))) goto done;
    }
    if (off != len) {
        st = ft_errorf(FT_ERR_FORMAT, "llama2.c tokenizer: %zu bytes left after %d tokens (wrong vocab_size or length?)", len - off, vocab_size);
        goto done;
    }
    /* merges: every split of every piece into two pieces */
    for (int i = 0; i < vocab_size; i++) {
        const char *s = piece[i];
        size_t n = strlen(s);
        for (size_t k = 1; k < n; k++) {
            if (((unsigned char)s[k] & 0xC0) == 0x80) continue; /* character boundaries only */
            int l = tk_strmap_get(&map, s, k), r = tk_strmap_get(&map, s + k, n - k);
            if (l < 0 || r < 0) continue;
            if (nm == mcap) {
                mcap = mcap ? 2 * mcap : 65536;
                l2_merge *q = realloc(mg, mcap * sizeof *q);
                if (!q) {
                    st = ft_errorf(FT_ERR_NOMEM, "llama2.c tokenizer: out of memory (merges)");
                    goto done;
                }
                mg = q;
            }
            mg[nm++] = (l2_merge){l, r, score[i]};
        }
    }
    if (nm) qsort(mg, nm, sizeof *mg, cmp_merge); /* a total order: no stability needed */
    cJSON *root = build_json(piece, score, vocab_size, mg, nm);
    if (!root) {
        st = ft_errorf(FT_ERR_NOMEM, "llama2.c tokenizer: out of memory (JSON)");
        goto done;
    }
    *out_json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!*out_json) st = ft_errorf(FT_ERR_NOMEM, "llama2.c tokenizer: out of memory (JSON text)");
done:
    if (piece)
        for (int i = 0; i < vocab_size; i++) free(piece[i]);
    free(piece);
    free(score);
    free(mg);
    tk_strmap_free(&map);
    tk_buf_free(&b);
    return st;
}

ft_status ft_tokenizer_convert_llama2c(const void *bytes, size_t len, int vocab_size, const char *out_path) {
    char *json;
    ft_status st = ft_tokenizer_llama2c_json(bytes, len, vocab_size, &json);
    if (st) return st;
    st = ft_write_file_atomic(out_path, json, strlen(json));
    free(json);
    return st;
}

ft_status ft_tokenizer_convert_llama2c_dir(const void *bytes, size_t len, int vocab_size, const char *dir) {
    static const char config[] =
        "{\"tokenizer_class\": \"LlamaTokenizer\", \"bos_token\": \"<s>\", \"eos_token\": \"</s>\", "
        "\"unk_token\": \"<unk>\", \"pad_token\": null, \"add_bos_token\": true, \"add_eos_token\": false, "
        "\"clean_up_tokenization_spaces\": false, \"legacy\": true, \"model_max_length\": 256}\n";
    char path[4096];
    if (snprintf(path, sizeof path, "%s/tokenizer.json", dir) >= (int)sizeof path)
        return ft_errorf(FT_ERR_ARG, "%s: directory name too long", dir);
    ft_status st = ft_tokenizer_convert_llama2c(bytes, len, vocab_size, path);
    if (st) return st;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    return ft_write_file_atomic(path, config, sizeof config - 1);
}
