/*
 * `ftune inspect DIR [--batch B] [--seq T]`: what a model folder holds and what training it costs.
 *
 * Reads config.json and the safetensors headers (no weights are converted), runs the same checks
 * as loading (every tensor present, float dtype, shape from config.json, nothing unexpected), and
 * prints the family, dimensions, the tensor table (per-layer tensors once, as model.layers.*),
 * the parameter count and a memory estimate per training method, for the exact f32 path and for
 * bf16 mode (the default: bf16 activations and weight layouts, released frozen weights of a BF16
 * checkpoint, the fused AdamW without clipping). The assumptions behind the
 * estimate are printed with it.
 */
#include "cli.h"
#include "cli_args.h"
#include "ftune/model.h"
#include "ftune/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LORA_R 8
#define FREEZE_LAYERS 2 /* LLaMA-Factory's default freeze_trainable_layers */

/* Print the usage to f: stdout when asked for (exit code 0), stderr on a usage error (2). */
static int inspect_usage(FILE *f) {
    fprintf(f, "usage: ftune inspect DIR [--batch B] [--seq T]\n");
    return f == stdout ? 0 : 2;
}

/* 15191712 -> "15,191,712" */
static const char *commas(char out[32], unsigned long long v) {
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%llu", v), o = 0;
    for (int i = 0; i < n; i++) {
        if (i && (n - i) % 3 == 0) out[o++] = ',';
        out[o++] = tmp[i];
    }
    out[o] = 0;
    return out;
}

static const char *human(char out[32], double bytes) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (bytes >= 1024 && i < 4) {
        bytes /= 1024;
        i++;
    }
    snprintf(out, 32, i ? "%.1f %s" : "%.0f %s", bytes, u[i]);
    return out;
}

/* One training method's memory estimate (bytes) and what it assumes. */
typedef struct {
    const char *name;
    double weights, grads, optim, act;
    const char *what;
} mem_row;

static void print_mem_rows(const mem_row *rows, size_t n) {
    printf("  %-8s %12s %12s %12s %12s %12s\n", "method", "weights", "grads", "AdamW m,v",
           "activations", "total");
    for (size_t i = 0; i < n; i++) {
        char w[32], g[32], o[32], ac[32], tt[32];
        printf("  %-8s %12s %12s %12s %12s %12s   %s\n", rows[i].name, human(w, rows[i].weights),
               human(g, rows[i].grads), human(o, rows[i].optim), human(ac, rows[i].act),
               human(tt, rows[i].weights + rows[i].grads + rows[i].optim + rows[i].act),
               rows[i].what);
    }
}

static const char *family_name(ft_family f) {
    switch (f) {
    case FT_FAMILY_LLAMA: return "Llama";
    case FT_FAMILY_MISTRAL: return "Mistral";
    case FT_FAMILY_QWEN2: return "Qwen2";
    case FT_FAMILY_QWEN3: return "Qwen3";
    }
    return "?";
}

static void shape_str(char *out, size_t cap, const ft_tensor_info *t) {
    if (t->cols)
        snprintf(out, cap, "[%d, %d]", t->rows, t->cols);
    else
        snprintf(out, cap, "[%d]", t->rows);
}

int cmd_inspect(int argc, char **argv) {
    const char *dir = NULL;
    long long B = 1, T = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) return inspect_usage(stdout);
        if (!strcmp(a, "--batch") || !strcmp(a, "--seq")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "ftune inspect: option '%s' needs a value\n", a);
                return inspect_usage(stderr);
            }
            char *end;
            long long v = strtoll(argv[i + 1], &end, 10);
            if (*end || v <= 0 || v > (1 << 24)) {
                fprintf(stderr, "ftune: %s '%s' is not a positive integer\n", argv[i], argv[i + 1]);
                return 2;
            }
            if (!strcmp(argv[i], "--batch"))
                B = v;
            else
                T = v;
            i++;
        } else if (a[0] != '-' && !dir) {
            dir = a;
        } else {
            fprintf(stderr, "ftune inspect: %s '%s'\n",
                    a[0] == '-' ? "unknown option" : "one DIR only, not also", a);
            return inspect_usage(stderr);
        }
    }
    if (!dir) return inspect_usage(stderr);
    if (cli_parse_path("DIR", dir, &dir)) return cli_fail();

    ft_config c;
    ft_st_set set = {0};
    ft_tensor_info *ts = NULL;
    int n = 0;
    size_t total = 0;
    ft_status st = ft_config_load(&c, dir);
    if (st == FT_OK) st = ft_st_open(&set, dir);
    if (st == FT_OK) st = ft_weights_layout(&c, &ts, &n, &total);
    if (st == FT_OK) st = ft_weights_check(&c, ts, n, &set);
    if (st != FT_OK) {
        free(ts);
        ft_st_close(&set);
        return cli_fail();
    }
    if (T < 0) T = c.max_seq_len < 2048 ? c.max_seq_len : 2048;

    char a[32], b[32], d[32], s[64];
    size_t file_bytes = 0;
    for (int i = 0; i < set.n_files; i++)
        file_bytes += set.map_sizes[i];
    printf("model        %s\n", dir);
    printf("family       %s (model_type \"%s\")\n", family_name(c.family), c.model_type);
    printf("dims         C=%d (hidden) F=%d (mlp) L=%d layers, H=%d heads, KV=%d kv heads, D=%d "
           "head dim, V=%d vocab\n",
           c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.vocab_size);
    printf("context      max_position_embeddings %d", c.max_seq_len);
    if (c.sliding_window)
        printf(", sliding_window %d (not applied: exact up to that length)", c.sliding_window);
    printf("\n");
    if (c.rope_type == FT_ROPE_LLAMA3)
        printf("rope         theta %g, llama3 scaling (factor %g, low_freq_factor %g, "
               "high_freq_factor %g, original %d)\n",
               (double)c.rope_theta, (double)c.rope_factor, (double)c.rope_low_freq_factor,
               (double)c.rope_high_freq_factor, c.rope_original_max_pos);
    else
        printf("rope         theta %g, no scaling\n", (double)c.rope_theta);
    printf("norm         RMSNorm eps %g%s\n", (double)c.rms_eps,
           c.qk_norm ? ", plus per-head q_norm/k_norm" : "");
    printf("biases       %s%s%s%s\n", c.qkv_bias ? "q/k/v " : "", c.o_bias ? "o " : "",
           c.mlp_bias ? "mlp " : "", !c.qkv_bias && !c.o_bias && !c.mlp_bias ? "none" : "");
    printf("head         %s\n", c.tie_embeddings ? "tied to the embeddings" : "separate lm_head");
    printf("storage      %s in %d file%s (%s); config torch_dtype %s\n",
           ft_dtype_name(ft_st_find(&set, ts[0].name)->dtype), set.n_files,
           set.n_files == 1 ? "" : "s", human(a, (double)file_bytes), ft_dtype_name(c.torch_dtype));
    printf("tokens       bos %d, eos %d\n", c.bos_id, c.eos_id);

    printf("\ntensors (per-layer tensors shown once, * = each of the %d layers)\n", c.n_layers);
    size_t per_layer = 0, lora = 0, lin_layer = 0;
    int bf16_ckpt = 1; /* every tensor stored as BF16: frozen weights can leave the f32 buffer */
    for (int i = 0; i < n; i++) bf16_ckpt &= ft_st_find(&set, ts[i].name)->dtype == FT_DTYPE_BF16;
    for (int i = 0; i < n; i++) {
        const ft_tensor_info *t = &ts[i];
        if (t->layer > 0) continue;
        const ft_st_tensor *f = ft_st_find(&set, t->name);
        char nm[160];
        if (t->layer == 0) {
            snprintf(nm, sizeof nm, "model.layers.*.%s", t->name + strlen("model.layers.0."));
            per_layer += t->numel;
            if (t->cols) lora += (size_t)LORA_R * ((size_t)t->rows + (size_t)t->cols);
            if (t->cols) lin_layer += t->numel;
        } else {
            snprintf(nm, sizeof nm, "%s", t->name);
        }
        shape_str(s, sizeof s, t);
        printf("  %-48s %-14s %s\n", nm, s, ft_dtype_name(f->dtype));
    }
    size_t P = total;
    size_t lora_total = lora * (size_t)c.n_layers;
    size_t freeze_layers = (size_t)(c.n_layers < FREEZE_LAYERS ? c.n_layers : FREEZE_LAYERS);
    size_t freeze_train = per_layer * freeze_layers;
    printf("\nparameters   %s (%s per layer x %d, %s outside the layers)\n", commas(a, P),
           commas(b, per_layer), c.n_layers, commas(d, P - per_layer * (size_t)c.n_layers));

    /* saved activations per token per layer, in floats: both norms' input and output (4C), q, k, v
     * and the attention output (2*H*D + 2*KV*D), the attention row statistics (H), gate, up and
     * their SwiGLU product (3F); plus the final norm (2C) once. No T x T matrix (flash-style
     * attention), logits computed in chunks and not kept. */
    double act_layer = 4.0 * c.dim + 2.0 * c.n_heads * c.head_dim +
                       2.0 * c.n_kv_heads * c.head_dim + c.n_heads + 3.0 * c.hidden_dim;
    double tokens = (double)B * (double)T;
    double act_all = 4.0 * tokens * (act_layer * c.n_layers + 2.0 * c.dim);
    double act_freeze = 4.0 * tokens * (act_layer * (double)freeze_layers + 2.0 * c.dim);
    const mem_row rows[] = {
        {"full", 4.0 * P, 4.0 * P, 8.0 * P, act_all,
         "all weights trained: f32 weights + grads + AdamW m, v = 16 B/param"},
        {"freeze", 4.0 * P, 4.0 * freeze_train, 8.0 * freeze_train, act_freeze,
         "last 2 layers trained, the rest frozen"},
        {"lora", 4.0 * P + 4.0 * lora_total, 4.0 * lora_total, 8.0 * lora_total, act_all,
         "LoRA r=8 on q,k,v,o,gate,up,down; base frozen in f32"},
    };
    printf("trainable    full %s, freeze (last %zu layers) %s, LoRA r=%d %s\n", commas(a, P),
           freeze_layers, commas(b, freeze_train), LORA_R, commas(d, lora_total));
    printf("\nmemory estimate for training, batch B=%lld x sequence T=%lld:\n", B, T);
    print_mem_rows(rows, sizeof rows / sizeof rows[0]);
    printf("assumptions: f32 compute and optimizer state; activations saved for backward without\n"
           "  checkpointing: %.0f floats per token per layer (4C + 2HD + 2KV*D + H + 3F) plus 2C "
           "for the final\n"
           "  norm; flash-style attention (no T x T matrix); logits produced in chunks, never all "
           "at once;\n"
           "  freeze keeps activations of the trained layers only; excludes the program itself, "
           "the data\n"
           "  and temporary workspace.\n",
           act_layer);

    /* bf16 mode (src/train/step.c): per token per layer the residual stream C and attention
     * output HD in f32, q, k, v, gate, up as bf16 ((HD + 2 KV*D)/2 + F floats), H + 2 statistics
     * (+ qwen3's f32 q/k before their norm); LoRA adds its 7r A-products and keeps the residual
     * after attention (C, f32: not made again in backward, one o_proj product less). Every frozen
     * linear weight and the head keep two bf16 layouts (4 B/param); trained linear weights none
     * (packed at each use). A BF16 checkpoint's frozen linear weights (and untied head) leave the
     * f32 buffer. Gradients: the whole buffer with clipping (max_grad_norm > 0, the default);
     * without it and with one micro-batch per step, one layer plus the non-layer tensors. */
    const double L = c.n_layers, C = c.dim, HD = (double)c.n_heads * c.head_dim,
                 KVD = (double)c.n_kv_heads * c.head_dim;
    double act16 = C + HD + (HD + 2 * KVD) / 2 + c.hidden_dim + c.n_heads + 2 +
                   (c.qk_norm ? HD + KVD + c.n_heads + c.n_kv_heads : 0);
    double head = (double)c.vocab_size * c.dim, lin = (double)lin_layer * L;
    double untied = c.tie_embeddings ? 0 : head;
    double act16_all = 4.0 * tokens * (act16 * L + 2.0 * C);
    double act16_lora = act16_all + 4.0 * tokens * (7.0 * LORA_R + C) * L;
    double act16_freeze = 4.0 * tokens * (act16 * (double)freeze_layers + 2.0 * C);
    double lin_frozen = (double)lin_layer * (L - (double)freeze_layers);
    double fused_g = 4.0 * ((double)P - (double)per_layer * L + (double)per_layer);
    const mem_row r16[] = {
        {"full", 4.0 * P + 4.0 * head, 4.0 * P, 8.0 * P, act16_all,
         "f32 master weights; bf16 layouts of the head only"},
        {"full*", 4.0 * P + 4.0 * head, fused_g, 8.0 * P, act16_all,
         "* max_grad_norm 0, one micro-batch per step: AdamW inside the backward"},
        {"freeze", 4.0 * P - (bf16_ckpt ? 4.0 * (lin_frozen + untied) : 0) + 4.0 * lin_frozen +
                       4.0 * head,
         4.0 * freeze_train, 8.0 * freeze_train, act16_freeze,
         bf16_ckpt ? "frozen layers as bf16 layouts only (BF16 checkpoint)"
                   : "frozen layers in f32 + their bf16 layouts (not a BF16 checkpoint)"},
        {"lora", 4.0 * P - (bf16_ckpt ? 4.0 * (lin + untied) : 0) + 4.0 * lin + 4.0 * head +
                     4.0 * lora_total,
         4.0 * lora_total, 8.0 * lora_total, act16_lora,
         bf16_ckpt ? "base as bf16 layouts only (BF16 checkpoint)"
                   : "base in f32 + its bf16 layouts (not a BF16 checkpoint)"},
    };
    printf("\nbf16 mode (bf16: true, the default where the CPU has AVX512-BF16), same batch:\n");
    print_mem_rows(r16, sizeof r16 / sizeof r16[0]);
    printf("assumptions: %.0f floats per token per layer (C + HD f32, q, k, v, gate, up bf16, "
           "statistics);\n"
           "  frozen weights and the head in two bf16 layouts (4 B/param); the same exclusions as "
           "above.\n",
           act16);
    free(ts);
    ft_st_close(&set);
    return 0;
}
