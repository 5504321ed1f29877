/*
 * safetensors writer/reader: round trip of F32/F16/BF16/I64 tensors with odd shapes (scalar, empty,
 * 3-D, length 1), the on-disk layout (padded header, aligned data), ft_st_find, a sharded folder
 * with its index (and an index that lies), a write failure (file size limit standing in for a full
 * disk) that must name the file and leave no temporary behind. All comparisons are exact (bytes).
 */
#include "../test.h"
#include "ftune/safetensors.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

static void path_in(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", tmpdir, name);
}

static int count_tmp_files(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

static int write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

int main(void) {
    const char *base = getenv("FT_TMP") ? getenv("FT_TMP") : "/tmp";
    snprintf(tmpdir, sizeof tmpdir, "%s/st.XXXXXX", base);
    if (!mkdtemp(tmpdir)) {
        printf("FAIL setup: mkdtemp\n");
        return 1;
    }

    /* ---- data: deterministic values of each dtype ---- */
    float a[3 * 5];
    for (int i = 0; i < 15; i++)
        a[i] = (float)i * 0.37f - 2.5f;
    uint16_t h[7], b[6];
    for (int i = 0; i < 7; i++)
        h[i] = ft_f32_to_f16((float)i / 3.0f - 1.0f);
    for (int i = 0; i < 6; i++)
        b[i] = ft_f32_to_bf16((float)i * 1e-3f + 7.0f);
    int64_t l[4] = {-1, 0, 1LL << 40, 123456789};
    float scalar = 3.25f;
    unsigned char u8[3] = {1, 2, 3};
    ft_st_write_tensor ws[] = {
        {"z.f32", FT_DTYPE_F32, 2, {3, 5}, a},      {"a.f16", FT_DTYPE_F16, 1, {7}, h},
        {"m.bf16", FT_DTYPE_BF16, 3, {2, 3, 1}, b}, {"b.i64", FT_DTYPE_I64, 1, {4}, l},
        {"scalar", FT_DTYPE_F32, 0, {0}, &scalar},  {"empty", FT_DTYPE_F32, 2, {0, 3}, NULL},
        {"odd.u8", FT_DTYPE_U8, 1, {3}, u8},        {"quote\"name", FT_DTYPE_F32, 1, {1}, &scalar},
    };
    int nw = (int)(sizeof ws / sizeof ws[0]);
    char p1[512];
    path_in(p1, sizeof p1, "one.safetensors");
    const char *meta[] = {"format", "pt", NULL};
    ft_status st = ft_st_write(p1, ws, nw, meta);
    CHECK("write", st == FT_OK, "%s", ft_error_message());

    ft_st_set set;
    st = ft_st_open(&set, p1);
    CHECK("open", st == FT_OK, "%s", ft_error_message());
    if (st == FT_OK) {
        CHECK("count", set.n_tensors == nw, "%d tensors, wrote %d", set.n_tensors, nw);
        int sorted = 1;
        for (int i = 1; i < set.n_tensors; i++)
            sorted &= strcmp(set.tensors[i - 1].name, set.tensors[i].name) < 0;
        CHECK("sorted_by_name", sorted, "tensors not sorted");
        int same = 1;
        char bad[128] = "";
        for (int i = 0; i < nw; i++) {
            const ft_st_tensor *t = ft_st_find(&set, ws[i].name);
            size_t numel = 1;
            for (int d = 0; d < ws[i].ndim; d++)
                numel *= (size_t)ws[i].shape[d];
            size_t nb = numel * ft_dtype_size(ws[i].dtype);
            int ok = t && t->dtype == ws[i].dtype && t->ndim == ws[i].ndim && t->nbytes == nb &&
                     (nb == 0 || memcmp(t->data, ws[i].data, nb) == 0);
            for (int d = 0; ok && d < ws[i].ndim; d++)
                ok = t->shape[d] == ws[i].shape[d];
            /* zero copy: the data lies inside the mapping, aligned to its element size */
            const char *m0 = set.maps[0];
            if (ok && nb)
                ok = (const char *)t->data >= m0 &&
                     (const char *)t->data + nb <= m0 + set.map_sizes[0];
            if (ok && nb)
                ok = ((size_t)((const char *)t->data - (const char *)set.maps[0])) %
                         ft_dtype_size(t->dtype) ==
                     0;
            if (!ok && same) snprintf(bad, sizeof bad, "%s", ws[i].name);
            same &= ok;
        }
        CHECK("roundtrip_exact_all_dtypes", same,
              "tensor '%s' differs (dtype, shape, bytes or alignment)", bad);
        CHECK("find_absent",
              ft_st_find(&set, "nope") == NULL && ft_st_find(&set, "") == NULL &&
                  ft_st_find(&set, "zz") == NULL && ft_st_find(&set, "a") == NULL,
              "found a tensor that does not exist");
        const unsigned char *raw = set.maps[0];
        uint64_t hl = 0;
        for (int i = 7; i >= 0; i--)
            hl = (hl << 8) | raw[i];
        CHECK("header_padded_to_8", hl % 8 == 0 && raw[8] == '{' && (8 + hl) % 8 == 0,
              "header length %llu", (unsigned long long)hl);
        CHECK("metadata_kept",
              strstr((const char *)raw + 8, "\"__metadata__\":{\"format\":\"pt\"}") != NULL,
              "no __metadata__ in header");
        ft_st_close(&set);
    }
    ft_st_close(&set); /* idempotent */
    ft_st_close(NULL);

    /* ---- ft_st_parse on memory: the same bytes give the same answer; a flipped length fails ----
     */
    {
        char *buf = NULL;
        size_t len = 0;
        ft_read_file(p1, &buf, &len);
        ft_st_set m;
        st = ft_st_parse(&m, "mem", buf, len);
        CHECK("parse_memory", st == FT_OK && m.n_tensors == nw, "%s", ft_error_message());
        ft_st_close(&m);
        st = ft_st_parse(&m, "mem", buf, len - 1);
        CHECK("parse_memory_truncated_rejected",
              st != FT_OK && strstr(ft_error_message(), "mem:") != NULL, "status %d: %s", st,
              ft_error_message());
        free(buf);
    }

    /* ---- sharded folder ---- */
    char dir[512], s1[600], s2[600], idx[600];
    path_in(dir, sizeof dir, "sharded");
    mkdir(dir, 0755);
    snprintf(s1, sizeof s1, "%s/model-00001-of-00002.safetensors", dir);
    snprintf(s2, sizeof s2, "%s/model-00002-of-00002.safetensors", dir);
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
    int ok = ft_st_write(s1, ws, 3, NULL) == FT_OK && ft_st_write(s2, ws + 3, 2, NULL) == FT_OK;
    ok &= write_text(idx, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {\n"
                          "\"z.f32\": \"model-00001-of-00002.safetensors\",\n"
                          "\"a.f16\": \"model-00001-of-00002.safetensors\",\n"
                          "\"m.bf16\": \"model-00001-of-00002.safetensors\",\n"
                          "\"b.i64\": \"model-00002-of-00002.safetensors\",\n"
                          "\"scalar\": \"model-00002-of-00002.safetensors\"}}\n") == 0;
    CHECK("sharded_setup", ok, "%s", ft_error_message());
    st = ft_st_open(&set, dir);
    CHECK("sharded_open", st == FT_OK && set.n_files == 2 && set.n_tensors == 5, "%s",
          ft_error_message());
    if (st == FT_OK) {
        const ft_st_tensor *t = ft_st_find(&set, "b.i64");
        CHECK("sharded_find",
              t && t->file == 1 && memcmp(t->data, l, sizeof l) == 0 && ft_st_find(&set, "z.f32") &&
                  ft_st_find(&set, "z.f32")->file == 0,
              "b.i64 not found in shard 2");
    }
    ft_st_close(&set);
    /* the index names the wrong shard for one tensor */
    write_text(idx, "{\"weight_map\": {\"z.f32\": \"model-00002-of-00002.safetensors\","
                    "\"a.f16\": \"model-00001-of-00002.safetensors\","
                    "\"m.bf16\": \"model-00001-of-00002.safetensors\","
                    "\"b.i64\": \"model-00002-of-00002.safetensors\","
                    "\"scalar\": \"model-00002-of-00002.safetensors\"}}");
    st = ft_st_open(&set, dir);
    CHECK("sharded_wrong_shard_rejected",
          st != FT_OK && strstr(ft_error_message(), "z.f32") &&
              strstr(ft_error_message(), "index.json"),
          "status %d: %s", st, ft_error_message());
    /* a tensor listed but absent */
    write_text(idx, "{\"weight_map\": {\"z.f32\": \"model-00001-of-00002.safetensors\","
                    "\"a.f16\": \"model-00001-of-00002.safetensors\","
                    "\"m.bf16\": \"model-00001-of-00002.safetensors\","
                    "\"ghost\": \"model-00001-of-00002.safetensors\","
                    "\"b.i64\": \"model-00002-of-00002.safetensors\","
                    "\"scalar\": \"model-00002-of-00002.safetensors\"}}");
    st = ft_st_open(&set, dir);
    CHECK("sharded_missing_tensor_rejected", st != FT_OK && strstr(ft_error_message(), "ghost"),
          "status %d: %s", st, ft_error_message());
    /* a shard tensor not in the index */
    write_text(idx, "{\"weight_map\": {\"z.f32\": \"model-00001-of-00002.safetensors\","
                    "\"a.f16\": \"model-00001-of-00002.safetensors\","
                    "\"b.i64\": \"model-00002-of-00002.safetensors\","
                    "\"scalar\": \"model-00002-of-00002.safetensors\"}}");
    st = ft_st_open(&set, dir);
    CHECK("sharded_unlisted_tensor_rejected", st != FT_OK && strstr(ft_error_message(), "m.bf16"),
          "status %d: %s", st, ft_error_message());
    /* path traversal in a shard name */
    write_text(idx, "{\"weight_map\": {\"z.f32\": \"../one.safetensors\"}}");
    st = ft_st_open(&set, dir);
    CHECK("sharded_path_traversal_rejected",
          st != FT_OK && strstr(ft_error_message(), "not a file name"), "status %d: %s", st,
          ft_error_message());
    /* the same tensor in two shards */
    ft_st_write(s2, ws + 2, 3, NULL); /* m.bf16 now in both */
    write_text(idx, "{\"weight_map\": {\"z.f32\": \"model-00001-of-00002.safetensors\","
                    "\"a.f16\": \"model-00001-of-00002.safetensors\","
                    "\"m.bf16\": \"model-00001-of-00002.safetensors\","
                    "\"b.i64\": \"model-00002-of-00002.safetensors\","
                    "\"scalar\": \"model-00002-of-00002.safetensors\"}}");
    st = ft_st_open(&set, dir);
    CHECK("sharded_duplicate_rejected",
          st != FT_OK && strstr(ft_error_message(), "m.bf16") &&
              strstr(ft_error_message(), "also appears"),
          "status %d: %s", st, ft_error_message());

    /* ---- writer errors ---- */
    {
        ft_st_write_tensor dup[2] = {ws[0], ws[0]};
        char p2[512];
        path_in(p2, sizeof p2, "dup.safetensors");
        st = ft_st_write(p2, dup, 2, NULL);
        CHECK("write_duplicate_rejected", st == FT_ERR_ARG && access(p2, F_OK) != 0, "status %d",
              st);
        path_in(p2, sizeof p2, "no/such/dir/x.safetensors");
        st = ft_st_write(p2, ws, 1, NULL);
        CHECK("write_bad_dir_names_file", st == FT_ERR_IO && strstr(ft_error_message(), p2), "%s",
              ft_error_message());
        /* a file size limit makes write() fail with EFBIG, like a full disk fails with ENOSPC */
        static float big[1 << 16];
        ft_st_write_tensor bt = {"big", FT_DTYPE_F32, 1, {1 << 16}, big};
        struct rlimit old, lim;
        getrlimit(RLIMIT_FSIZE, &old);
        lim = old;
        lim.rlim_cur = 4096;
        signal(SIGXFSZ, SIG_IGN);
        setrlimit(RLIMIT_FSIZE, &lim);
        path_in(p2, sizeof p2, "full.safetensors");
        st = ft_st_write(p2, &bt, 1, NULL);
        setrlimit(RLIMIT_FSIZE, &old);
        CHECK("write_failure_names_file",
              st == FT_ERR_IO && strstr(ft_error_message(), p2) &&
                  strstr(ft_error_message(), "write failed"),
              "status %d: %s", st, ft_error_message());
        CHECK("write_failure_leaves_nothing", access(p2, F_OK) != 0 && count_tmp_files(tmpdir) == 0,
              "final or temporary file left behind");
    }

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", tmpdir);
    return ft_test_exit();
}
