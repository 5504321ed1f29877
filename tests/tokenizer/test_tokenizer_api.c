/*
 * Tokenizer library tests that the corpus comparison (test_tokenizer.sh) cannot reach: the public
 * API on the real fixtures (ids of special tokens, vocab size, errors), and small hand-made
 * tokenizer.json files for components none of the fixture tokenizers use: continuing_subword_prefix
 * / end_of_word_suffix, unk + fuse_unk, Metaspace, Split behaviors, ByteLevel add_prefix_space,
 * added-token lstrip/rstrip/single_word, ByteFallback and lossy ByteLevel decoding, and a very long
 * word through the heap merge. Expected ids follow the Rust `tokenizers` semantics, worked out by
 * hand in the comments.
 */
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "ftune/tokenizer.h"

static ft_tokenizer *load_str(const char *json) {
    ft_tokenizer *t = NULL;
    if (ft_tokenizer_load_json(&t, json, strlen(json), NULL, 0, "test.json")) {
        printf("load failed: %s\n", ft_error_message());
        return NULL;
    }
    return t;
}

/* Encode and compare with the expected ids; one PASS/FAIL line. */
static void check_ids(const char *name, ft_tokenizer *t, const char *text, int add_special, const int *want, int nwant) {
    int *ids = NULL, n = 0;
    if (!t) {
        CHECK(name, 0, "tokenizer did not load: %s", ft_error_message());
        return;
    }
    ft_status st = ft_tokenizer_encode(t, text, strlen(text), add_special, &ids, &n);
    int ok = st == FT_OK && n == nwant && (n == 0 || !memcmp(ids, want, (size_t)n * sizeof *ids));
    char got[512] = "";
    for (int i = 0; i < n && strlen(got) < 480; i++) snprintf(got + strlen(got), sizeof got - strlen(got), "%d ", ids[i]);
    CHECK(name, ok, "status %s (%s), got [%s] (%d ids, want %d)", ft_status_name(st), ft_error_message(), got, n, nwant);
    free(ids);
}

static void check_decode(const char *name, ft_tokenizer *t, const int *ids, int n, int skip, const char *want) {
    char *s = NULL;
    if (!t) {
        CHECK(name, 0, "tokenizer did not load");
        return;
    }
    ft_status st = ft_tokenizer_decode(t, ids, n, skip, &s);
    CHECK(name, st == FT_OK && s && !strcmp(s, want), "status %s, got \"%s\" want \"%s\"", ft_status_name(st), s ? s : "(null)", want);
    free(s);
}

#define IDS(...) ((const int[]){__VA_ARGS__}), (int)(sizeof((const int[]){__VA_ARGS__}) / sizeof(int))

static void test_fixtures(const char *root) {
    char path[4096];
    ft_tokenizer *t = NULL;
    snprintf(path, sizeof path, "%s/fixtures/npm/tok-mistral/package/models", root);
    ft_status st = ft_tokenizer_load(&t, path);
    CHECK("tok_api_load_mistral", st == FT_OK, "%s", ft_error_message());
    if (t) {
        CHECK("tok_api_mistral_ids", ft_tokenizer_vocab_size(t) == 32000 && ft_tokenizer_bos_id(t) == 1 && ft_tokenizer_eos_id(t) == 2 &&
                                         ft_tokenizer_pad_id(t) == -1 && ft_tokenizer_token_to_id(t, "<s>") == 1 &&
                                         !strcmp(ft_tokenizer_id_to_token(t, 2), "</s>") && ft_tokenizer_is_special(t, 1) &&
                                         !ft_tokenizer_is_special(t, 300) && ft_tokenizer_token_to_id(t, "no-such-token") == -1 &&
                                         ft_tokenizer_id_to_token(t, 32000) == NULL,
              "vocab %d bos %d eos %d pad %d", ft_tokenizer_vocab_size(t), ft_tokenizer_bos_id(t), ft_tokenizer_eos_id(t),
              ft_tokenizer_pad_id(t));
        check_ids("tok_api_mistral_encode", t, "Hello", 1, IDS(1, 22557));
        check_ids("tok_api_mistral_encode_nospecial", t, "Hello", 0, IDS(22557));
        check_decode("tok_api_mistral_decode_skip", t, IDS(1, 22557, 2), 1, "Hello");
        int *ids = NULL, n = 0;
        st = ft_tokenizer_encode(t, "a\xff", 2, 1, &ids, &n);
        CHECK("tok_api_invalid_utf8_rejected", st == FT_ERR_ARG && strstr(ft_error_message(), "offset 1"), "status %s: %s",
              ft_status_name(st), ft_error_message());
        free(ids);
        char *s = NULL;
        st = ft_tokenizer_decode(t, IDS(1, 40000), 0, &s);
        CHECK("tok_api_decode_bad_id", st == FT_ERR_ARG && !s && strstr(ft_error_message(), "position 1"), "%s", ft_error_message());
        /* a long word goes through the heap merge: 20,000 'a' -> tokens that decode back */
        size_t L = 20000;
        char *big = malloc(L + 1);
        memset(big, 'a', L);
        big[L] = 0;
        st = ft_tokenizer_encode(t, big, L, 0, &ids, &n);
        s = NULL;
        if (!st) st = ft_tokenizer_decode(t, ids, n, 0, &s);
        CHECK("tok_api_long_word_roundtrip", st == FT_OK && s && !strcmp(s, big) && n > 1 && n < 5000, "status %s, %d ids",
              ft_status_name(st), n);
        free(s);
        free(ids);
        free(big);
        ft_tokenizer_free(t);
    }
    snprintf(path, sizeof path, "%s/fixtures/npm/tok-qwen3/package/models/tokenizer.json", root);
    st = ft_tokenizer_load(&t, path); /* a file path: tokenizer_config.json beside it is read too */
    CHECK("tok_api_qwen3_config", st == FT_OK && ft_tokenizer_bos_id(t) == -1 && ft_tokenizer_eos_id(t) == 151645 &&
                                      ft_tokenizer_pad_id(t) == 151643 && ft_tokenizer_vocab_size(t) == 151669,
          "%s bos %d eos %d pad %d vocab %d", ft_error_message(), t ? ft_tokenizer_bos_id(t) : 0, t ? ft_tokenizer_eos_id(t) : 0,
          t ? ft_tokenizer_pad_id(t) : 0, t ? ft_tokenizer_vocab_size(t) : 0);
    ft_tokenizer_free(t);
    st = ft_tokenizer_load(&t, "/nonexistent/dir");
    CHECK("tok_api_load_missing", st == FT_ERR_NOT_FOUND && !t && strstr(ft_error_message(), "/nonexistent/dir"), "%s",
          ft_error_message());
    ft_tokenizer_free(NULL);
}

static void test_handmade(void) {
    /* continuing_subword_prefix "##" + end_of_word_suffix "</w>": "abc" starts as a, ##b, ##c</w>;
     * merges: (a, ##b) -> ab, (ab, ##c</w>) -> abc</w>. "ab" starts as a, ##b</w>: no merge. */
    ft_tokenizer *t = load_str(
        "{\"model\":{\"type\":\"BPE\",\"continuing_subword_prefix\":\"##\",\"end_of_word_suffix\":\"</w>\","
        "\"vocab\":{\"a\":0,\"##b\":1,\"##c</w>\":2,\"ab\":3,\"abc</w>\":4,\"##b</w>\":5},"
        "\"merges\":[\"a ##b\",[\"ab\",\"##c</w>\"]]}}");
    check_ids("tok_bpe_prefix_suffix", t, "abc", 0, IDS(4));
    check_ids("tok_bpe_prefix_suffix_partial", t, "ab", 0, IDS(0, 5));
    ft_tokenizer_free(t);

    /* unk: x and y are unknown; fused into one <unk> per run with fuse_unk, one each without */
    t = load_str("{\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"fuse_unk\":true,\"vocab\":{\"<unk>\":0,\"a\":1},\"merges\":[]}}");
    check_ids("tok_bpe_fuse_unk", t, "xya", 0, IDS(0, 1));
    ft_tokenizer_free(t);
    t = load_str("{\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"vocab\":{\"<unk>\":0,\"a\":1},\"merges\":[]}}");
    check_ids("tok_bpe_unk", t, "xya", 0, IDS(0, 0, 1));
    ft_tokenizer_free(t);

    /* Metaspace (prepend always, split): "hi you" -> ▁hi ▁you; its decoder drops the first space */
    t = load_str("{\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"\xE2\x96\x81\",\"prepend_scheme\":\"always\",\"split\":true},"
                 "\"decoder\":{\"type\":\"Metaspace\",\"replacement\":\"\xE2\x96\x81\",\"prepend_scheme\":\"always\",\"split\":true},"
                 "\"model\":{\"type\":\"BPE\",\"ignore_merges\":true,\"vocab\":{\"\xE2\x96\x81hi\":0,\"\xE2\x96\x81you\":1},\"merges\":[]}}");
    check_ids("tok_metaspace_encode", t, "hi you", 0, IDS(0, 1));
    check_decode("tok_metaspace_decode", t, IDS(0, 1), 0, "hi you");
    ft_tokenizer_free(t);

    /* Split on "-" of "a-b--c" with each behavior; ignore_merges makes every piece one id */
    static const char *const beh[] = {"Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    /* vocab: a0 b1 c2 -3 a-4 b-5 -b6 -c7 --8 */
    static const int want[5][6] = {{0, 3, 1, 3, 3, 2}, {0, 1, 2}, {4, 5, 3, 2}, {0, 6, 3, 7}, {0, 3, 1, 8, 2}};
    static const int nwant[5] = {6, 3, 4, 4, 5};
    for (int b = 0; b < 5; b++) {
        char json[1024], name[64];
        snprintf(json, sizeof json,
                 "{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"String\":\"-\"},\"behavior\":\"%s\",\"invert\":false},"
                 "\"model\":{\"type\":\"BPE\",\"ignore_merges\":true,\"vocab\":{\"a\":0,\"b\":1,\"c\":2,\"-\":3,\"a-\":4,"
                 "\"b-\":5,\"-b\":6,\"-c\":7,\"--\":8},\"merges\":[]}}",
                 beh[b]);
        snprintf(name, sizeof name, "tok_split_%s", beh[b]);
        t = load_str(json);
        check_ids(name, t, "a-b--c", 0, want[b], nwant[b]);
        ft_tokenizer_free(t);
    }

    /* ByteLevel with add_prefix_space and its GPT-2 regex: "hi there" -> Ġhi Ġthere */
    t = load_str("{\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"use_regex\":true},"
                 "\"decoder\":{\"type\":\"ByteLevel\"},"
                 "\"model\":{\"type\":\"BPE\",\"ignore_merges\":true,\"vocab\":{\"\xC4\xA0hi\":0,\"\xC4\xA0there\":1,\"\xC3\xA4\":2},\"merges\":[]}}");
    check_ids("tok_bytelevel_prefix_space", t, "hi there", 0, IDS(0, 1));
    check_decode("tok_bytelevel_decode", t, IDS(0, 1), 0, " hi there");
    check_decode("tok_bytelevel_decode_lossy", t, IDS(2, 0), 0, "\xEF\xBF\xBD hi"); /* lone 0xE4 byte -> U+FFFD */
    ft_tokenizer_free(t);

    /* added tokens: lstrip+rstrip eat the spaces around <m>; single_word "cat" only as a word */
    t = load_str("{\"added_tokens\":[{\"id\":7,\"content\":\"<m>\",\"lstrip\":true,\"rstrip\":true,"
                 "\"normalized\":false,\"special\":true},"
                 "{\"id\":8,\"content\":\"cat\",\"single_word\":true,\"normalized\":false,"
                 "\"special\":false}],"
                 "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\" "
                 "\":2,\"c\":3,\"t\":4,\"o\":5,\"n\":6},\"merges\":[]}}");
    check_ids("tok_added_lstrip_rstrip", t, "a <m>  b", 0, IDS(0, 7, 1));
    check_ids("tok_added_single_word", t, "cat concat", 0, IDS(8, 2, 3, 5, 6, 3, 0, 4));
    check_decode("tok_added_decode_skip", t, IDS(0, 7, 1), 1,
                 "a b"); /* no decoder: HF joins with spaces */
    ft_tokenizer_free(t);

    /* ByteFallback decoder: valid byte runs become text, an invalid run one U+FFFD per byte */
    t = load_str("{\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},"
                 "{\"type\":\"Strip\",\"content\":\"x\",\"start\":1,\"stop\":2}]},"
                 "\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"vocab\":{\"<0xE4>\":0,\"<0xBD>\":1,\"<0xA0>\":2,\"x\":3,\"<0x41>\":4},\"merges\":[]}}");
    check_decode("tok_bytefallback_valid", t, IDS(3, 0, 1, 2, 3, 3, 3), 0, "\xE4\xBD\xA0x");
    check_decode("tok_bytefallback_invalid", t, IDS(0, 1, 4, 3), 0, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
    check_ids("tok_bytefallback_encode", t, "xA", 0, IDS(3, 4));
    ft_tokenizer_free(t);
}

int main(void) {
    const char *root = getenv("FT_ROOT");
    test_fixtures(root ? root : ".");
    test_handmade();
    return ft_test_exit();
}
