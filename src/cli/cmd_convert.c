/*
 * `ftune convert llama2c --in FILE [--offset BYTES --length BYTES]
 *                       [--tokenizer-offset BYTES --tokenizer-length BYTES] --out DIR`
 *
 * Turns a llama2.c version-0 fp32 checkpoint (Karpathy's legacy format: 7 little-endian int32
 * dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; then float32 arrays
 * tok_embeddings[V,C], rms_att[L,C], wq[L,H*D,C], wk[L,KV*D,C], wv[L,KV*D,C], wo[L,C,H*D],
 * rms_ffn[L,C], w1[L,F,C], w2[L,C,F], w3[L,F,C], rms_final[C], freq_cis_real[T,D/2],
 * freq_cis_imag[T,D/2], and wcls[V,C] only when vocab_size is negative = untied) into a Hugging
 * Face Llama folder: config.json + model.safetensors (F32), both written atomically.
 * The byte range [offset, offset+length) must hold exactly that many bytes, no more, no less.
 *
 * llama2.c rotates interleaved pairs (x[2i], x[2i+1]); HF rotates halves (x[i], x[i+D/2]). The q
 * and k projection rows are permuted per head accordingly: W.reshape(H, D/2, 2, C).transpose(1, 2).
 * The RoPE tables are skipped (recomputed from rope_theta 10000). With --tokenizer-offset/-length,
 * llama2.c's tokenizer.bin at that byte range of the same file becomes DIR/tokenizer.json and
 * DIR/tokenizer_config.json (ft_tokenizer_convert_llama2c_dir, vocab_size from the checkpoint).
 * Every range, the header and the tokenizer are checked before anything is written: input that
 * fails leaves no folder behind.
 * Data is streamed from the mmapped input; only the permuted q/k weights are copied.
 */
#include "cli.h"
#include "cli_args.h"
#include "ftune/model.h"
#include "ftune/safetensors.h"
#include "ftune/tokenizer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Print the usage to f: stdout when asked for (exit code 0), stderr on a usage error (2). */
static int convert_usage(FILE *f) {
    fprintf(f, "usage: ftune convert llama2c --in FILE [--offset BYTES] [--length BYTES]\n"
               "                            [--tokenizer-offset BYTES --tokenizer-length BYTES] "
               "--out DIR\n");
    return f == stdout ? 0 : 2;
}

/* Parse a non-negative decimal byte count; -1 if not one. */
static long long parse_bytes(const char *s) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < 0) return -1;
    return v;
}

/* mkdir -p */
static ft_status make_dirs(const char *dir) {
    char buf[4096];
    if ((size_t)snprintf(buf, sizeof buf, "%s", dir) >= sizeof buf)
        return ft_errorf(FT_ERR_ARG, "%s: path too long", dir);
    for (char *p = buf + (buf[0] != 0);; p++) { /* a leading '/' is no folder to make */
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return ft_errorf(FT_ERR_IO, "%s: cannot create folder: %s", buf, strerror(errno));
            *p = c;
            if (!c) break;
        }
    }
    return FT_OK;
}

/* Copy the rows of a (heads*hd, cols) matrix from interleaved-pair order to rotate-half order. */
static void permute_rows(float *dst, const char *src, int heads, int hd, int cols) {
    size_t row = (size_t)cols * sizeof(float);
    for (int h = 0; h < heads; h++)
        for (int j = 0; j < 2; j++)
            for (int i = 0; i < hd / 2; i++) {
                size_t d = (size_t)h * hd + (size_t)j * (hd / 2) + i;
                size_t s = (size_t)h * hd + 2 * (size_t)i + j;
                memcpy(dst + d * cols, src + s * row, row); /* src may be unaligned */
            }
}

typedef struct {
    int dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
} l2c_header;

/* Convert `len` bytes at `p` (already range-checked against the file `path`), and when `tok` is
 * not NULL the llama2.c tokenizer in its `tok_len` bytes (`tok_what` names them in errors). */
static ft_status convert(const char *path, const unsigned char *p, size_t len,
                         const unsigned char *tok, size_t tok_len, const char *tok_what,
                         const char *out) {
    if (len < 28)
        return ft_errorf(FT_ERR_FORMAT,
                         "%s: %zu bytes is too short for a llama2.c header (28 bytes)", path, len);
    int32_t h[7];
    memcpy(h, p, sizeof h);
    l2c_header H = {h[0], h[1], h[2], h[3], h[4], h[5], h[6]};
    int tied = H.vocab_size > 0;
    /* |vocab_size| in 64 bits: INT32_MIN has no int negation */
    int64_t V64 = tied ? (int64_t)H.vocab_size : -(int64_t)H.vocab_size;
    /* bounds keep every product below 2^60: no overflow in the size sum */
    if (H.dim <= 0 || H.dim > (1 << 20) || H.hidden_dim <= 0 || H.hidden_dim > (1 << 20) ||
        H.n_layers <= 0 || H.n_layers > FT_MAX_LAYERS || H.n_heads <= 0 || H.n_kv_heads <= 0 ||
        V64 == 0 || V64 > (1 << 24) || H.seq_len <= 0 || H.seq_len > (1 << 24))
        return ft_errorf(
            FT_ERR_FORMAT,
            "%s: implausible llama2.c header (dim %d, hidden_dim %d, n_layers %d, n_heads %d, "
            "n_kv_heads %d, vocab_size %d, seq_len %d)",
            path, H.dim, H.hidden_dim, H.n_layers, H.n_heads, H.n_kv_heads, H.vocab_size,
            H.seq_len);
    const int V = (int)V64;
    if (H.dim % H.n_heads || H.n_heads % H.n_kv_heads || (H.dim / H.n_heads) % 2)
        return ft_errorf(FT_ERR_FORMAT,
                         "%s: dim %d, n_heads %d, n_kv_heads %d do not give an even head size "
                         "shared by all heads",
                         path, H.dim, H.n_heads, H.n_kv_heads);
    const uint64_t C = (uint64_t)H.dim, F = (uint64_t)H.hidden_dim, L = (uint64_t)H.n_layers;
    const uint64_t D = C / (uint64_t)H.n_heads, KVD = D * (uint64_t)H.n_kv_heads,
                   T = (uint64_t)H.seq_len;
    /* float offsets of each array, in file order */
    uint64_t o_emb = 0, o_rms_att = o_emb + (uint64_t)V * C, o_wq = o_rms_att + L * C,
             o_wk = o_wq + L * C * C, o_wv = o_wk + L * KVD * C, o_wo = o_wv + L * KVD * C,
             o_rms_ffn = o_wo + L * C * C, o_w1 = o_rms_ffn + L * C, o_w2 = o_w1 + L * F * C,
             o_w3 = o_w2 + L * C * F, o_rms_final = o_w3 + L * F * C, o_freq = o_rms_final + C,
             o_wcls = o_freq + T * D, /* two tables of T*D/2 */
        n_floats = o_wcls + (tied ? 0 : (uint64_t)V * C);
    uint64_t want = 28 + 4 * n_floats;
    if (want != (uint64_t)len)
        return ft_errorf(FT_ERR_FORMAT,
                         "%s: the llama2.c header (dim %d, hidden_dim %d, n_layers %d, n_heads %d, "
                         "n_kv_heads %d, "
                         "vocab_size %d, seq_len %d) implies %llu bytes, the given range holds %zu",
                         path, H.dim, H.hidden_dim, H.n_layers, H.n_heads, H.n_kv_heads,
                         H.vocab_size, H.seq_len, (unsigned long long)want, len);
    if (tok) { /* checked now; written after the model */
        char *tok_json = NULL;
        ft_status st = ft_tokenizer_llama2c_json(tok, tok_len, V, &tok_json);
        free(tok_json);
        if (st) return ft_error_wrap(st, "%s", tok_what);
    }
    const char *fl = (const char *)p + 28; /* floats, possibly unaligned */
#define AT(o) (fl + 4 * (o))

    ft_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.family = FT_FAMILY_LLAMA;
    snprintf(cfg.model_type, sizeof cfg.model_type, "llama");
    cfg.dim = H.dim;
    cfg.hidden_dim = H.hidden_dim;
    cfg.n_layers = H.n_layers;
    cfg.n_heads = H.n_heads;
    cfg.n_kv_heads = H.n_kv_heads;
    cfg.head_dim = (int)D;
    cfg.vocab_size = V;
    cfg.max_seq_len = H.seq_len;
    cfg.rms_eps = 1e-5f;
    cfg.rope_theta = 10000.0f;
    cfg.rope_type = FT_ROPE_DEFAULT;
    cfg.rope_factor = 1.0f;
    cfg.tie_embeddings = tied;
    cfg.torch_dtype = FT_DTYPE_F32;
    cfg.bos_id = 1;
    cfg.eos_id = 2;

    ft_tensor_info *ts = NULL;
    ft_st_write_tensor *ws = NULL;
    float *q = NULL, *k = NULL;
    char *json = NULL;
    int n = 0;
    size_t total = 0;
    ft_status st = ft_weights_layout(&cfg, &ts, &n, &total);
    if (st != FT_OK) return st;
    ws = calloc((size_t)n, sizeof *ws);
    q = malloc((size_t)(L * C * C) * sizeof(float));
    k = malloc((size_t)(L * KVD * C) * sizeof(float));
    if (!ws || !q || !k) {
        st = ft_errorf(FT_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int l = 0; l < H.n_layers; l++) {
        permute_rows(q + (size_t)l * C * C, AT(o_wq + l * C * C), H.n_heads, (int)D, H.dim);
        permute_rows(k + (size_t)l * KVD * C, AT(o_wk + l * KVD * C), H.n_kv_heads, (int)D, H.dim);
    }
    /* the source of each table entry: our field name decides it */
    for (int i = 0; i < n; i++) {
        const ft_tensor_info *ti = &ts[i];
        uint64_t l = ti->layer < 0 ? 0 : (uint64_t)ti->layer;
        const char *leaf = ti->name; /* HF name without "model.layers.<l>." */
        if (ti->layer >= 0) {
            char prefix[48];
            leaf += snprintf(prefix, sizeof prefix, "model.layers.%d.", ti->layer);
        }
        const void *src = NULL;
        if (!strcmp(leaf, "model.embed_tokens.weight"))
            src = AT(o_emb);
        else if (!strcmp(leaf, "model.norm.weight"))
            src = AT(o_rms_final);
        else if (!strcmp(leaf, "lm_head.weight"))
            src = AT(o_wcls);
        else if (!strcmp(leaf, "input_layernorm.weight"))
            src = AT(o_rms_att + l * C);
        else if (!strcmp(leaf, "self_attn.q_proj.weight"))
            src = q + l * C * C;
        else if (!strcmp(leaf, "self_attn.k_proj.weight"))
            src = k + l * KVD * C;
        else if (!strcmp(leaf, "self_attn.v_proj.weight"))
            src = AT(o_wv + l * KVD * C);
        else if (!strcmp(leaf, "self_attn.o_proj.weight"))
            src = AT(o_wo + l * C * C);
        else if (!strcmp(leaf, "post_attention_layernorm.weight"))
            src = AT(o_rms_ffn + l * C);
        else if (!strcmp(leaf, "mlp.gate_proj.weight"))
            src = AT(o_w1 + l * F * C);
        else if (!strcmp(leaf, "mlp.down_proj.weight"))
            src = AT(o_w2 + l * C * F);
        else if (!strcmp(leaf, "mlp.up_proj.weight"))
            src = AT(o_w3 + l * F * C);
        FT_ASSERT(src != NULL); /* the table has a tensor llama2.c does not: a programming error */
        ws[i].name = ti->name;
        ws[i].dtype = FT_DTYPE_F32;
        ws[i].ndim = ti->cols ? 2 : 1;
        ws[i].shape[0] = ti->rows;
        ws[i].shape[1] = ti->cols;
        ws[i].data = src;
    }
#undef AT
    char dst[4096];
    if ((st = make_dirs(out)) != FT_OK) goto done;
    if ((size_t)snprintf(dst, sizeof dst, "%s/model.safetensors", out) >= sizeof dst) {
        st = ft_errorf(FT_ERR_ARG, "%s: path too long", out);
        goto done;
    }
    const char *meta[] = {"format", "pt", NULL};
    if ((st = ft_st_write(dst, ws, n, meta)) != FT_OK) goto done;
    if ((st = ft_config_to_json(&cfg, &json)) != FT_OK) goto done;
    snprintf(dst, sizeof dst, "%s/config.json", out);
    if ((st = ft_write_file_atomic(dst, json, strlen(json))) != FT_OK) goto done;
    if (tok && (st = ft_tokenizer_convert_llama2c_dir(tok, tok_len, V, out)) != FT_OK)
        ft_error_wrap(st, "%s", tok_what);
done:
    free(json);
    free(q);
    free(k);
    free(ws);
    free(ts);
    return st;
}

int cmd_convert(int argc, char **argv) {
    if (argc >= 2 && cli_is_help(argv[1])) return convert_usage(stdout);
    if (argc < 2) return convert_usage(stderr);
    if (strcmp(argv[1], "llama2c")) {
        fprintf(stderr, "ftune convert: unknown format '%s' (llama2c is the one known)\n", argv[1]);
        return convert_usage(stderr);
    }
    const char *in = NULL, *out = NULL;
    long long offset = 0, length = -1, tok_offset = -1, tok_length = -1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (cli_is_help(a)) return convert_usage(stdout);
        if (!strcmp(a, "--in") && v)
            in = v;
        else if (!strcmp(a, "--out") && v)
            out = v;
        else if (!strcmp(a, "--offset") && v) {
            if ((offset = parse_bytes(v)) < 0) {
                fprintf(stderr, "ftune: --offset '%s' is not a byte count\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--length") && v) {
            if ((length = parse_bytes(v)) < 0) {
                fprintf(stderr, "ftune: --length '%s' is not a byte count\n", v);
                return 2;
            }
        } else if ((!strcmp(a, "--tokenizer-offset") || !strcmp(a, "--tokenizer-length")) && v) {
            long long b = parse_bytes(v);
            if (b < 0) {
                fprintf(stderr, "ftune: %s '%s' is not a byte count\n", a, v);
                return 2;
            }
            if (a[12] == 'o') tok_offset = b;
            else tok_length = b;
        } else {
            fprintf(stderr, "ftune convert: unknown or incomplete option '%s'\n", a);
            return convert_usage(stderr);
        }
        i++;
    }
    if (!in || !out) return convert_usage(stderr);
    if (cli_parse_path("--in", in, &in) || cli_parse_path("--out", out, &out)) return cli_fail();
    if ((tok_offset < 0) != (tok_length < 0)) {
        fprintf(stderr, "ftune: convert: --tokenizer-offset and --tokenizer-length go together\n");
        return 2;
    }

    int fd = open(in, O_RDONLY);
    if (fd < 0) {
        ft_errorf(FT_ERR_IO, "%s: cannot open: %s", in, strerror(errno));
        return cli_fail();
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        ft_errorf(FT_ERR_IO, "%s: not a regular file", in);
        return cli_fail();
    }
    unsigned long long size = (unsigned long long)sb.st_size;
    if ((unsigned long long)offset > size) {
        close(fd);
        ft_errorf(FT_ERR_ARG, "%s: --offset %lld is past the end of the file (%llu bytes)", in,
                  offset, size);
        return cli_fail();
    }
    if (length < 0) length = (long long)(size - (unsigned long long)offset);
    if ((unsigned long long)length > size - (unsigned long long)offset) {
        close(fd);
        ft_errorf(FT_ERR_ARG,
                  "%s: --offset %lld --length %lld runs past the end of the file (%llu bytes)", in,
                  offset, length, size);
        return cli_fail();
    }
    if (tok_offset >= 0 &&
        ((unsigned long long)tok_offset > size ||
         (unsigned long long)tok_length > size - (unsigned long long)tok_offset)) {
        close(fd);
        ft_errorf(
            FT_ERR_ARG,
            "%s: --tokenizer-offset %lld --tokenizer-length %lld runs past the end of the file "
            "(%llu bytes)",
            in, tok_offset, tok_length, size);
        return cli_fail();
    }
    void *map = size ? mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) {
        ft_errorf(FT_ERR_IO, "%s: mmap failed: %s", in, strerror(e));
        return cli_fail();
    }
    static const unsigned char empty[1];
    const unsigned char *base = map ? (const unsigned char *)map + offset : empty;
    const unsigned char *tok = tok_offset < 0 ? NULL
                               : map          ? (const unsigned char *)map + tok_offset
                                              : empty;
    char tok_what[4096 + 64];
    snprintf(tok_what, sizeof tok_what, "%s: tokenizer at bytes [%lld, %lld)", in, tok_offset,
             tok_offset + tok_length);
    ft_status st = convert(in, base, (size_t)length, tok, (size_t)tok_length, tok_what, out);
    if (map) munmap(map, (size_t)size);
    if (st != FT_OK) return cli_fail();
    printf("wrote %s/config.json and %s/model.safetensors%s\n", out, out,
           tok_offset >= 0 ? " and tokenizer.json, tokenizer_config.json" : "");
    return 0;
}
