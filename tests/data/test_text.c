/*
 * Plain-text datasets: .txt / .jsonl readers (errors with file and line), the EOS-joined token
 * stream cut into rows with shifted labels, the seeded validation split and epoch orders.
 * Uses a toy byte tokenizer (BOS=1, byte b -> b+3) so the expected ids are known exactly.
 */
#include "../test.h"
#include "ftune/data.h"

#include <string.h>
#include <unistd.h>

static char tmpdir[256];

static const char *write_tmp(const char *name, const char *text) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
    return path;
}

static ft_status toy_encode(void *ctx, const char *text, size_t len, int **ids, size_t *n) {
    (void)ctx;
    *ids = malloc(sizeof(int) * (len + 1));
    (*ids)[0] = 1;
    for (size_t i = 0; i < len; i++) (*ids)[i + 1] = (unsigned char)text[i] + 3;
    *n = len + 1;
    return FT_OK;
}

/* toy_encode that refuses the byte 0xff, as the tokenizer refuses invalid UTF-8 */
static ft_status picky_encode(void *ctx, const char *text, size_t len, int **ids, size_t *n) {
    if (memchr(text, 0xff, len))
        return ft_errorf(FT_ERR_FORMAT, "tokenizer: input is not valid UTF-8");
    return toy_encode(ctx, text, len, ids, n);
}

static void expect_read_error(const char *name, const char *file, const char *text,
                              const char *want) {
    ft_text_docs d = {0};
    ft_error_clear();
    ft_status st = ft_text_docs_read(&d, write_tmp(file, text), "text");
    CHECK(name, st != FT_OK && strstr(ft_error_message(), want), "status %d message '%s' want '%s'",
          st, ft_error_message(), want);
    ft_text_docs_free(&d);
}

int main(void) {
    const char *base = getenv("FT_TMP");
    snprintf(tmpdir, sizeof tmpdir, "%s/text.XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) return 1;

    ft_text_docs d = {0};
    ft_status st = ft_text_docs_read(&d, write_tmp("a.txt", "line one\nline two\n"), "text");
    CHECK("txt_is_one_document", st == FT_OK && d.n == 1 && d.lens[0] == 18 &&
                                     !strcmp(d.docs[0], "line one\nline two\n"), "%s", ft_error_message());
    st = ft_text_docs_read(&d, write_tmp("b.jsonl",
                                         "{\"text\": \"ab\"}\n\n  \n{\"text\": \"c\\u00e9\", \"id\": 3}\n"
                                         "{\"body\": \"x\", \"text\": \"\"}"), "text");
    CHECK("jsonl_documents", st == FT_OK && d.n == 4 && !strcmp(d.docs[1], "ab") &&
                                 !strcmp(d.docs[2], "c\xc3\xa9") && d.lens[3] == 0,
          "%s (n=%zu)", ft_error_message(), d.n);
    ft_text_docs_free(&d);
    st = ft_text_docs_read(&d, write_tmp("c.jsonl", "{\"content\": \"hello\"}\n"), "content");
    CHECK("jsonl_field", st == FT_OK && d.n == 1 && !strcmp(d.docs[0], "hello"), "%s",
          ft_error_message());
    ft_text_docs_free(&d);

    expect_read_error("jsonl_bad_json_line", "bad.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\"\n",
                      "bad.jsonl:2: invalid JSON");
    expect_read_error("jsonl_missing_field", "miss.jsonl", "{\"text\": \"a\"}\n\n{\"txt\": \"b\"}\n",
                      "miss.jsonl:3: no string field 'text'");
    expect_read_error("jsonl_field_not_string", "num.jsonl", "{\"text\": 5}\n",
                      "num.jsonl:1: no string field 'text'");
    expect_read_error("jsonl_not_object", "arr.jsonl", "[1, 2]\n", "arr.jsonl:1: expected a JSON object");
    expect_read_error("jsonl_nul_escape", "nul.jsonl",
                      "{\"text\": \"visible\\u0000hidden tail\"}\n",
                      "nul.jsonl:1: a string holds U+0000");
    expect_read_error("jsonl_duplicate_key", "dup.jsonl",
                      "{\"text\": \"a\"}\n{\"text\": \"b\", \"text\": \"c\"}\n",
                      "dup.jsonl:2: key 'text' appears twice");
    expect_read_error("unsupported_extension", "x.parquet", "PAR1", "unsupported dataset file");
    expect_read_error("empty_jsonl", "e.jsonl", "\n\n", "no documents");
    ft_text_docs_free(&d);
    d.n = 0;
    st = ft_text_docs_read(&d, "/nonexistent/x.txt", "text");
    CHECK("missing_file", st == FT_ERR_IO && strstr(ft_error_message(), "/nonexistent/x.txt"), "%s",
          ft_error_message());

    /* stream: [1 a b EOS 1 c d e EOS] with EOS=2 = 9 tokens; T=4 -> 2 rows, tail of 1 dropped */
    ft_text_docs_free(&d);
    ft_text_docs dd = {0};
    const char *texts[2] = {"ab", "cde"};
    for (int i = 0; i < 2; i++) {
        dd.docs = realloc(dd.docs, sizeof(char *) * (size_t)(i + 1));
        dd.lens = realloc(dd.lens, sizeof(size_t) * (size_t)(i + 1));
        dd.docs[i] = strdup(texts[i]);
        dd.lens[i] = strlen(texts[i]);
        dd.n++;
    }
    ft_text_dataset ds;
    st = ft_text_dataset_build(&ds, &dd, toy_encode, NULL, 2, 4, 0, 42);
    CHECK("rows_built", st == FT_OK && ds.n_rows == 2 && ds.n_train == 2 && ds.n_val == 0 &&
                            ds.n_stream == 9, "%s rows %lld", ft_error_message(), (long long)ds.n_rows);
    int in[4], lab[4];
    int a = 'a' + 3, b = 'b' + 3, c = 'c' + 3, dch = 'd' + 3;
    ft_text_row(&ds, 0, in, lab);
    CHECK("row0", in[0] == 1 && in[1] == a && in[2] == b && in[3] == 2 && lab[0] == a &&
                      lab[1] == b && lab[2] == 2 && lab[3] == FT_IGNORE_INDEX,
          "in %d %d %d %d lab %d %d %d %d", in[0], in[1], in[2], in[3], lab[0], lab[1], lab[2], lab[3]);
    ft_text_row(&ds, 1, in, lab);
    CHECK("row1", in[0] == 1 && in[1] == c && in[2] == dch && in[3] == 'e' + 3 && lab[2] == 'e' + 3 &&
                      lab[3] == FT_IGNORE_INDEX, "in %d %d %d %d", in[0], in[1], in[2], in[3]);
    ft_text_dataset_free(&ds);
    st = ft_text_dataset_build(&ds, &dd, toy_encode, NULL, 2, 10, 0, 42);
    CHECK("too_few_tokens", st != FT_OK && strstr(ft_error_message(), "fewer than sequence_len 10"),
          "%s", ft_error_message());
    ft_text_docs_free(&dd);

    /* a tokenizer error names the document's file and line */
    st = ft_text_docs_read(&dd, write_tmp("ok.txt", "fine"), "text");
    if (!st)
        st = ft_text_docs_read(
            &dd, write_tmp("u.jsonl", "{\"text\": \"a\"}\n{\"text\": \"hello \xff world\"}\n"),
            "text");
    if (!st) st = ft_text_dataset_build(&ds, &dd, picky_encode, NULL, 2, 2, 0, 42);
    CHECK("tokenizer_error_names_file_line",
          st && strstr(ft_error_message(), "u.jsonl:2: tokenizer: input is not valid UTF-8"), "%s",
          ft_error_message());
    ft_text_docs_free(&dd);
    st = ft_text_docs_read(&dd, write_tmp("bad.txt", "x\xff"), "text");
    if (!st) st = ft_text_dataset_build(&ds, &dd, picky_encode, NULL, 2, 2, 0, 42);
    CHECK("tokenizer_error_names_txt_file", st && strstr(ft_error_message(), "bad.txt: tokenizer:"),
          "%s", ft_error_message());
    ft_text_docs_free(&dd);

    /* validation split on a long document: 100 rows of T=5 */
    char big[512];
    memset(big, 'x', 499);
    big[499] = 0;
    ft_text_docs one = {0};
    one.docs = malloc(sizeof(char *));
    one.lens = malloc(sizeof(size_t));
    one.docs[0] = strdup(big);
    one.lens[0] = 499;
    one.n = 1;
    ft_text_dataset s1, s2, s3;
    st = ft_text_dataset_build(&s1, &one, toy_encode, NULL, 2, 5, 0.05, 7);
    ft_text_dataset_build(&s2, &one, toy_encode, NULL, 2, 5, 0.05, 7);
    ft_text_dataset_build(&s3, &one, toy_encode, NULL, 2, 5, 0.05, 8);
    int disjoint = 1;
    for (int64_t i = 0; i < s1.n_val; i++)
        for (int64_t j = 0; j < s1.n_train; j++)
            if (s1.val[i] == s1.train[j]) disjoint = 0;
    CHECK("val_fraction_rounds_up", st == FT_OK && s1.n_rows == 100 && s1.n_val == 5 &&
                                        s1.n_train == 95 && disjoint,
          "rows %lld val %lld train %lld", (long long)s1.n_rows, (long long)s1.n_val,
          (long long)s1.n_train);
    CHECK("val_split_seeded", !memcmp(s1.val, s2.val, sizeof(int64_t) * 5) &&
                                  memcmp(s1.val, s3.val, sizeof(int64_t) * 5), "split not seeded");
    ft_text_dataset_free(&s1);
    ft_text_dataset_free(&s2);
    ft_text_dataset_free(&s3);
    st = ft_text_dataset_build(&s1, &one, toy_encode, NULL, 2, 5, 12, 7);
    CHECK("val_count", st == FT_OK && s1.n_val == 12 && s1.n_train == 88, "val %lld",
          (long long)s1.n_val);
    ft_text_dataset_free(&s1);
    st = ft_text_dataset_build(&s1, &one, toy_encode, NULL, 2, 5, 100, 7);
    CHECK("val_takes_all_rows", st != FT_OK && strstr(ft_error_message(), "no training rows"), "%s",
          ft_error_message());
    ft_text_docs_free(&one);

    /* epoch orders: permutations, reproducible, different per epoch */
    int64_t o1[50], o2[50], o3[50];
    ft_data_epoch_order(o1, 50, 3, 0);
    ft_data_epoch_order(o2, 50, 3, 0);
    ft_data_epoch_order(o3, 50, 3, 1);
    int seen[50] = {0}, perm = 1;
    for (int i = 0; i < 50; i++) {
        if (o1[i] < 0 || o1[i] >= 50 || seen[o1[i]]++) perm = 0;
    }
    CHECK("epoch_order_permutation", perm, "not a permutation");
    CHECK("epoch_order_reproducible", !memcmp(o1, o2, sizeof o1), "differs");
    CHECK("epoch_order_per_epoch", memcmp(o1, o3, sizeof o1) != 0, "same order in epochs 0 and 1");
    return ft_test_exit();
}
