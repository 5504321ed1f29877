/*
 * Kernel tests: (1) every kernel's forward output and gradients against PyTorch autograd on the
 * inputs tests/ref/gen_kernels.py wrote; (2) every optimized kernel against its plain-loop naive
 * twin over awkward shapes (1s, odd sizes, tails, GQA ratios 1/2/3, segment masks), backward
 * gradients accumulated into non-zero buffers to check `+=` semantics; (3) the KV-cache attention
 * against the full causal attention.
 *
 * Tolerances (|got - ref| <= atol + rtol*|ref|), one table, with the reason for each:
 */
#include "../test.h"

#include "ftune/core.h"
#include "ftune/kernels.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

/* C f32 vs torch f32 on O(1) randn data, reductions of <= 19 terms in a different order:
 * a few ulp (~1e-7) times the magnitude of the partial sums (<~10). */
#define TORCH_ATOL 1e-5
#define TORCH_RTOL 1e-5
/* Gradients go through two chained reductions (e.g. softmax backward then a dot product). */
#define TORCH_GRAD_ATOL 2e-5
#define TORCH_GRAD_RTOL 1e-4
/* oneDNN f32 (blocked, FMA) vs a double-accumulated loop: K <= 300 randn products, each partial
 * sum <~ 20 in magnitude, f32 rounding per step ~1e-6 relative -> <~ 5e-5 absolute. */
#define MM_ATOL 1e-4
#define MM_RTOL 1e-5
/* f32 attention vs double-accumulated naive attention: softmax and dot products over <= 33 terms. */
#define ATT_ATOL 1e-5
#define ATT_RTOL 1e-4

static const char *ref_dir;

/* Read $FT_REF/kernels/<c>.<name>.bin: exactly n 4-byte elements, or NULL (and a FAIL). */
static void *load(const char *c, const char *name, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/kernels/%s.%s.bin", ref_dir, c, name);
    FILE *f = fopen(path, "rb");
    void *buf = malloc(n * 4 + 4);
    size_t got = f ? fread(buf, 4, n + 1, f) : 0;
    if (f) fclose(f);
    if (got != n) {
        CHECK(path, 0, "expected %zu elements, file has %zu (run tests/ref/gen_kernels.py)", n, got);
        free(buf);
        return NULL;
    }
    return buf;
}

static float *rand_buf(size_t n) {
    float *p = malloc(n * sizeof(float) + 1);
    for (size_t i = 0; i < n; i++) p[i] = ft_test_frand();
    return p;
}
static float *copy_buf(const float *src, size_t n) {
    float *p = malloc(n * sizeof(float) + 1);
    memcpy(p, src, n * sizeof(float));
    return p;
}
static float *zeros(size_t n) { return calloc(n + 1, sizeof(float)); }

/* ---------------- (1) against PyTorch ---------------- */

static void torch_matmul(void) {
    const int M = 7, K = 13, N = 5;
    float *inp = load("matmul", "inp", M * K), *w = load("matmul", "w", N * K),
          *b = load("matmul", "bias", N), *out = load("matmul", "out", M * N),
          *dout = load("matmul", "dout", M * N), *dinp = load("matmul", "dinp", M * K),
          *dw = load("matmul", "dw", N * K), *db = load("matmul", "dbias", N);
    if (inp && w && b && out && dout && dinp && dw && db) {
        float *o = zeros(M * N), *gi = zeros(M * K), *gw = zeros(N * K), *gb = zeros(N);
        matmul_forward(o, inp, w, b, M, K, N);
        check_close("torch matmul forward", o, out, M * N, TORCH_ATOL, TORCH_RTOL);
        matmul_backward(gi, gw, gb, dout, inp, w, M, K, N);
        check_close("torch matmul dinp", gi, dinp, M * K, TORCH_GRAD_ATOL, TORCH_GRAD_RTOL);
        check_close("torch matmul dw", gw, dw, N * K, TORCH_GRAD_ATOL, TORCH_GRAD_RTOL);
        check_close("torch matmul dbias", gb, db, N, TORCH_GRAD_ATOL, TORCH_GRAD_RTOL);
        free(o), free(gi), free(gw), free(gb);
    }
    free(inp), free(w), free(b), free(out), free(dout), free(dinp), free(dw), free(db);
}

static void torch_rmsnorm(void) {
    const int M = 5, C = 19;
    float *x = load("rmsnorm", "inp", M * C), *w = load("rmsnorm", "w", C),
          *y = load("rmsnorm", "out", M * C), *dy = load("rmsnorm", "dout", M * C),
          *dx = load("rmsnorm", "dinp", M * C), *dw = load("rmsnorm", "dw", C);
    if (x && w && y && dy && dx && dw) {
        float *o = zeros(M * C), *r = zeros(M), *gx = zeros(M * C), *gw = zeros(C);
        rmsnorm_forward(o, r, x, w, M, C, 1e-5f);
        check_close("torch rmsnorm forward", o, y, M * C, TORCH_ATOL, TORCH_RTOL);
        rmsnorm_backward(gx, gw, dy, x, w, r, M, C);
        check_close("torch rmsnorm dinp", gx, dx, M * C, TORCH_GRAD_ATOL, TORCH_GRAD_RTOL);
        check_close("torch rmsnorm dweight", gw, dw, C, TORCH_GRAD_ATOL, TORCH_GRAD_RTOL);
        free(o), free(r), free(gx), free(gw);
    }
    free(x), free(w), free(y), free(dy), free(dx), free(dw);
}

static void torch_rope(void) {
    const int M = 4, nh = 3, D = 8;
    float *x = load("rope", "inp", M * nh * D), *f = load("rope", "inv_freq", D / 2),
          *y = load("rope", "out", M * nh * D), *dy = load("rope", "dout", M * nh * D),
          *dx = load("rope", "dinp", M * nh * D);
    int *pos = load("rope", "pos", M);
    if (x && f && y && dy && dx && pos) {
        float *o = copy_buf(x, M * nh * D), *g = copy_buf(dy, M * nh * D);
        rope_forward(o, pos, f, M, nh, D);
        check_close("torch rope forward", o, y, M * nh * D, TORCH_ATOL, TORCH_RTOL);
        rope_backward(g, pos, f, M, nh, D);
        check_close("torch rope backward", g, dx, M * nh * D, TORCH_GRAD_ATOL, TORCH_GRAD_RTOL);
        free(o), free(g);
    }
    free(x), free(f), free(y), free(dy), free(dx), free(pos);
}

static void torch_swiglu(void) {
    const int N = 37;
    float *g = load("swiglu", "gate", N), *u = load("swiglu", "up", N),
          *y = load("swiglu", "out", N), *dy = load("swiglu", "dout", N),
          *dg = load("swiglu", "dgate", N), *du = load("swiglu", "dup", N);
    if (g && u && y && dy && dg && du) {
        float *o = zeros(N), *gg = zeros(N), *gu = zeros(N);
        swiglu_forward(o, g, u, N);
        check_close("torch swiglu forward", o, y, N, TORCH_ATOL, TORCH_RTOL);
        swiglu_backward(gg, gu, dy, g, u, N);
        check_close("torch swiglu dgate", gg, dg, N, TORCH_GRAD_ATOL, TORCH_GRAD_RTOL);
        check_close("torch swiglu dup", gu, du, N, TORCH_GRAD_ATOL, TORCH_GRAD_RTOL);
        free(o), free(gg), free(gu);
    }
    free(g), free(u), free(y), free(dy), free(dg), free(du);
}

static void torch_attention(const char *c, int B, int T, int H, int KV, int D, int has_seg) {
    size_t nq = (size_t)B * T * H * D, nk = (size_t)B * T * KV * D;
    float *q = load(c, "q", nq), *k = load(c, "k", nk), *v = load(c, "v", nk),
          *out = load(c, "out", nq), *dout = load(c, "dout", nq), *dq = load(c, "dq", nq),
          *dk = load(c, "dk", nk), *dv = load(c, "dv", nk);
    int *seg = has_seg ? load(c, "seg", (size_t)B * T) : NULL;
    char name[128];
    if (q && k && v && out && dout && dq && dk && dv && (seg || !has_seg)) {
        float *o = zeros(nq), *att = zeros((size_t)B * H * T * T), *gq = zeros(nq),
              *gk = zeros(nk), *gv = zeros(nk);
        attention_forward(o, att, q, k, v, seg, B, T, H, KV, D);
        snprintf(name, sizeof name, "torch %s forward", c);
        check_close(name, o, out, nq, TORCH_ATOL, TORCH_RTOL);
        attention_backward(gq, gk, gv, dout, q, k, v, att, B, T, H, KV, D);
        snprintf(name, sizeof name, "torch %s dq", c);
        check_close(name, gq, dq, nq, TORCH_GRAD_ATOL, TORCH_GRAD_RTOL);
        snprintf(name, sizeof name, "torch %s dk", c);
        check_close(name, gk, dk, nk, TORCH_GRAD_ATOL, TORCH_GRAD_RTOL);
        snprintf(name, sizeof name, "torch %s dv", c);
        check_close(name, gv, dv, nk, TORCH_GRAD_ATOL, TORCH_GRAD_RTOL);
        free(o), free(att), free(gq), free(gk), free(gv);
    }
    free(q), free(k), free(v), free(out), free(dout), free(dq), free(dk), free(dv), free(seg);
}

static void torch_embedding(void) {
    const int V = 11, C = 6, M = 9;
    float *t = load("embedding", "table", V * C), *y = load("embedding", "out", M * C),
          *dy = load("embedding", "dout", M * C), *dt = load("embedding", "dtable", V * C);
    int *ids = load("embedding", "ids", M);
    if (t && y && dy && dt && ids) {
        float *o = zeros(M * C), *g = zeros(V * C);
        embedding_forward(o, ids, t, M, C);
        check_close("torch embedding forward", o, y, M * C, 0, 0); /* a copy: exact */
        embedding_backward(g, dy, ids, M, C);
        check_close("torch embedding dtable", g, dt, V * C, TORCH_GRAD_ATOL, TORCH_GRAD_RTOL);
        free(o), free(g);
    }
    free(t), free(y), free(dy), free(dt), free(ids);
}

/* ---------------- (2) optimized vs naive ---------------- */

static void naive_matmul(int M, int K, int N, int with_bias) {
    char name[128];
    float *inp = rand_buf((size_t)M * K), *w = rand_buf((size_t)N * K);
    float *b = with_bias ? rand_buf(N) : NULL;
    float *o1 = zeros((size_t)M * N), *o2 = zeros((size_t)M * N);
    matmul_forward(o1, inp, w, b, M, K, N);
    matmul_forward_naive(o2, inp, w, b, M, K, N);
    snprintf(name, sizeof name, "matmul forward M%d K%d N%d bias%d", M, K, N, with_bias);
    check_close(name, o1, o2, (size_t)M * N, MM_ATOL, MM_RTOL);
    if (!with_bias) { /* accumulating forward: o1 = o2 + inp·w^T (naive: o2 + o2) */
        memcpy(o1, o2, (size_t)M * N * sizeof(float));
        matmul_forward_acc(o1, inp, w, M, K, N);
        for (size_t i = 0; i < (size_t)M * N; i++) o2[i] += o2[i];
        snprintf(name, sizeof name, "matmul forward_acc M%d K%d N%d", M, K, N);
        check_close(name, o1, o2, (size_t)M * N, 2 * MM_ATOL, MM_RTOL);
        matmul_forward_naive(o2, inp, w, NULL, M, K, N);
    }
    /* backward into non-zero buffers: both must ADD */
    float *dout = rand_buf((size_t)M * N);
    float *gi1 = rand_buf((size_t)M * K), *gw1 = rand_buf((size_t)N * K), *gb1 = rand_buf(N);
    float *gi2 = copy_buf(gi1, (size_t)M * K), *gw2 = copy_buf(gw1, (size_t)N * K),
          *gb2 = copy_buf(gb1, N);
    matmul_backward(gi1, gw1, gb1, dout, inp, w, M, K, N);
    matmul_backward_naive(gi2, gw2, gb2, dout, inp, w, M, K, N);
    snprintf(name, sizeof name, "matmul dinp M%d K%d N%d", M, K, N);
    check_close(name, gi1, gi2, (size_t)M * K, MM_ATOL, MM_RTOL);
    snprintf(name, sizeof name, "matmul dw M%d K%d N%d", M, K, N);
    check_close(name, gw1, gw2, (size_t)N * K, MM_ATOL, MM_RTOL);
    snprintf(name, sizeof name, "matmul dbias M%d K%d N%d", M, K, N);
    check_close(name, gb1, gb2, N, MM_ATOL, MM_RTOL);
    /* NULL gradients skip work and touch nothing */
    float *gi3 = copy_buf(gi2, (size_t)M * K);
    matmul_backward(gi3, NULL, NULL, dout, inp, w, M, K, N);
    matmul_backward_naive(gi2, NULL, NULL, dout, inp, w, M, K, N);
    snprintf(name, sizeof name, "matmul dinp only M%d K%d N%d", M, K, N);
    check_close(name, gi3, gi2, (size_t)M * K, 2 * MM_ATOL, MM_RTOL);
    free(inp), free(w), free(b), free(o1), free(o2), free(dout), free(gi1), free(gw1), free(gb1);
    free(gi2), free(gw2), free(gb2), free(gi3);
}

static void naive_attention(int B, int T, int H, int KV, int D, int with_seg) {
    char name[160], tag[96];
    snprintf(tag, sizeof tag, "B%d T%d H%d KV%d D%d seg%d", B, T, H, KV, D, with_seg);
    size_t nq = (size_t)B * T * H * D, nk = (size_t)B * T * KV * D, na = (size_t)B * H * T * T;
    float *q = rand_buf(nq), *k = rand_buf(nk), *v = rand_buf(nk), *dout = rand_buf(nq);
    for (size_t i = 0; i < nq; i++) q[i] *= 3.0f; /* peakier softmax */
    int *seg = NULL;
    if (with_seg) {
        seg = malloc((size_t)B * T * sizeof(int));
        for (int b = 0; b < B; b++) {
            int s = 0;
            for (int t = 0; t < T; t++) {
                if (t > 0 && (t * 7 + b) % 5 == 0) s++;
                seg[b * T + t] = s;
            }
        }
    }
    float *o1 = zeros(nq), *o2 = zeros(nq), *a1 = zeros(na), *a2 = zeros(na), *o3 = zeros(nq);
    attention_forward(o1, a1, q, k, v, seg, B, T, H, KV, D);
    attention_forward_naive(o2, a2, q, k, v, seg, B, T, H, KV, D);
    attention_forward(o3, NULL, q, k, v, seg, B, T, H, KV, D);
    snprintf(name, sizeof name, "attention forward %s", tag);
    check_close(name, o1, o2, nq, ATT_ATOL, ATT_RTOL);
    snprintf(name, sizeof name, "attention probs %s", tag);
    check_close(name, a1, a2, na, ATT_ATOL, ATT_RTOL);
    snprintf(name, sizeof name, "attention forward no-att %s", tag);
    check_close(name, o3, o1, nq, 0, 0); /* same arithmetic, only where p lives differs */
    float *gq1 = rand_buf(nq), *gk1 = rand_buf(nk), *gv1 = rand_buf(nk); /* garbage: WRITTEN */
    float *gq2 = zeros(nq), *gk2 = zeros(nk), *gv2 = zeros(nk);
    attention_backward(gq1, gk1, gv1, dout, q, k, v, a2, B, T, H, KV, D);
    attention_backward_naive(gq2, gk2, gv2, dout, q, k, v, a2, B, T, H, KV, D);
    snprintf(name, sizeof name, "attention dq %s", tag);
    check_close(name, gq1, gq2, nq, ATT_ATOL, ATT_RTOL);
    snprintf(name, sizeof name, "attention dk %s", tag);
    check_close(name, gk1, gk2, nk, ATT_ATOL, ATT_RTOL);
    snprintf(name, sizeof name, "attention dv %s", tag);
    check_close(name, gv1, gv2, nk, ATT_ATOL, ATT_RTOL);
    free(q), free(k), free(v), free(dout), free(seg), free(o1), free(o2), free(o3), free(a1);
    free(a2), free(gq1), free(gk1), free(gv1), free(gq2), free(gk2), free(gv2);
}

/* ---------------- (3) KV-cache attention vs full attention ---------------- */

static void cached_attention(int T, int H, int KV, int D, int pos0) {
    char name[128];
    size_t nq = (size_t)T * H * D, nk = (size_t)T * KV * D;
    float *q = rand_buf(nq), *k = rand_buf(nk), *v = rand_buf(nk);
    float *full = zeros(nq), *inc = zeros(nq);
    attention_forward(full, NULL, q, k, v, NULL, 1, T, H, KV, D);
    /* the prompt pos0 tokens at once, then one token at a time */
    if (pos0 > 0) attention_forward_cached(inc, NULL, q, k, v, pos0, 0, H, KV, D);
    /* one token at a time, with a caller-owned scratch (threads x T floats) */
    float *scratch = zeros((size_t)omp_get_max_threads() * T);
    for (int t = pos0; t < T; t++)
        attention_forward_cached(inc + (size_t)t * H * D, scratch, q + (size_t)t * H * D, k, v, 1,
                                 t, H, KV, D);
    free(scratch);
    snprintf(name, sizeof name, "cached attention T%d H%d KV%d D%d prompt %d", T, H, KV, D, pos0);
    check_close(name, inc, full, nq, ATT_ATOL, ATT_RTOL);
    free(q), free(k), free(v), free(full), free(inc);
}

/* ---------------- (4) parallel paths == serial paths ----------------
 * Loops run on one thread below FT_OMP_GRAIN (32768) operations. Large calls take the OpenMP path;
 * the same work split into one-row calls takes the serial one. Row-independent kernels must agree
 * bit for bit; reductions across rows (dweight) to float rounding of the different association. */
static void parallel_vs_serial(void) {
    const int M = 96, C = 1000, nh = 8, D = 64, V = 50;
    size_t n = (size_t)M * C;
    float *x = rand_buf(n), *w = rand_buf(C), *dy = rand_buf(n);
    float *a = zeros(n), *b = zeros(n), *ra = zeros(M), *rb = zeros(M);
    rmsnorm_forward(a, ra, x, w, M, C, 1e-5f);
    for (int m = 0; m < M; m++)
        rmsnorm_forward(b + (size_t)m * C, rb + m, x + (size_t)m * C, w, 1, C, 1e-5f);
    check_close("parallel rmsnorm forward == serial", a, b, n, 0, 0);
    float *ga = zeros(n), *gb = zeros(n), *gwa = zeros(C), *gwb = zeros(C);
    rmsnorm_backward(ga, gwa, dy, x, w, ra, M, C);
    for (int m = 0; m < M; m++)
        rmsnorm_backward(gb + (size_t)m * C, gwb, dy + (size_t)m * C, x + (size_t)m * C, w, rb + m,
                         1, C);
    check_close("parallel rmsnorm dinp == serial", ga, gb, n, 0, 0);
    check_close("parallel rmsnorm dweight ~ serial", gwa, gwb, C, 1e-5, 1e-5);
    /* 7 rows (a group of 4 rows' sums side by side, then a tail of 3) == row by row, bit for bit */
    {
        float *a7 = zeros(7 * C), *b7 = zeros(7 * C), *r7 = zeros(7), *s7 = zeros(7);
        rmsnorm_forward(a7, r7, x, w, 7, C, 1e-5f);
        for (int m = 0; m < 7; m++)
            rmsnorm_forward(b7 + (size_t)m * C, s7 + m, x + (size_t)m * C, w, 1, C, 1e-5f);
        check_close("rmsnorm forward 7 rows == row by row", a7, b7, 7 * C, 0, 0);
        float *g7 = zeros(7 * C), *h7 = zeros(7 * C);
        rmsnorm_backward(g7, NULL, dy, x, w, r7, 7, C);
        for (int m = 0; m < 7; m++)
            rmsnorm_backward(h7 + (size_t)m * C, NULL, dy + (size_t)m * C, x + (size_t)m * C, w,
                             s7 + m, 1, C);
        check_close("rmsnorm backward 7 rows == row by row", g7, h7, 7 * C, 0, 0);
        free(a7), free(b7), free(r7), free(s7), free(g7), free(h7);
    }

    /* rope: M*nh*D = 96*8*64 */
    size_t nr = (size_t)M * nh * D;
    int *pos = malloc((size_t)M * sizeof(int));
    for (int m = 0; m < M; m++) pos[m] = (m * 37) % 1000;
    float inv[32];
    for (int i = 0; i < D / 2; i++) inv[i] = powf(10000.0f, -2.0f * i / D);
    float *ya = rand_buf(nr), *yb = copy_buf(ya, nr);
    rope_forward(ya, pos, inv, M, nh, D);
    for (int m = 0; m < M; m++) rope_forward(yb + (size_t)m * nh * D, pos + m, inv, 1, nh, D);
    check_close("parallel rope forward == serial", ya, yb, nr, 0, 0);
    rope_backward(ya, pos, inv, M, nh, D);
    for (int m = 0; m < M; m++) rope_backward(yb + (size_t)m * nh * D, pos + m, inv, 1, nh, D);
    check_close("parallel rope backward == serial", ya, yb, nr, 0, 0);
    /* the table forms (the training step's) give the same bits as the direct ones; odd D/2 (a
     * vector tail) and stories15M's D 48 (halves of 24: a whole vector and a tail) as well as
     * this D */
    for (int dd = 0; dd < 3; dd++) {
        int Dt = dd == 1 ? 18 : dd == 2 ? 48 : D;
        const char *sfx = dd == 1 ? " (D 18)" : dd == 2 ? " (D 48)" : "";
        char nm[128];
        size_t nt = (size_t)M * nh * Dt;
        float *cs = malloc((size_t)M * Dt * sizeof(float)), *za = rand_buf(nt),
              *zb = copy_buf(za, nt);
        rope_cos_sin(cs, pos, inv, M, Dt);
        rope_forward(za, pos, inv, M, nh, Dt);
        rope_forward_cs(zb, cs, M, nh, Dt);
        snprintf(nm, sizeof nm, "rope_forward_cs == rope_forward%s", sfx);
        check_close(nm, zb, za, nt, 0, 0);
        rope_backward(za, pos, inv, M, nh, Dt);
        rope_backward_cs(zb, cs, M, nh, Dt);
        snprintf(nm, sizeof nm, "rope_backward_cs == rope_backward%s", sfx);
        check_close(nm, zb, za, nt, 0, 0);
        /* the bf16 step's fused forms: q (nh heads), k (2 heads), v rotated (forward or back)
         * and rounded in one pass == rope_forward_cs / rope_backward_cs then bf16_from_f32, bit
         * for bit (random values: a rounding or rotation that differs changes some) */
        {
            const int KVh = 2;
            size_t nk = (size_t)M * KVh * Dt;
            float *q = rand_buf(nt), *k = rand_buf(nk), *v = rand_buf(nk);
            float *q2 = copy_buf(q, nt), *k2 = copy_buf(k, nk);
            uint16_t *qb = malloc(nt * 2), *kb = malloc(nk * 2), *vb = malloc(nk * 2);
            uint16_t *qr = malloc(nt * 2), *kr = malloc(nk * 2), *vr = malloc(nk * 2);
            int same = 1;
            for (int back = 0; back < 2; back++) {
                memcpy(q2, q, nt * 4), memcpy(k2, k, nk * 4);
                rope_round_qkv_bf16(qb, kb, vb, 0, q, k, v, 0, cs, M, nh, KVh, Dt, back);
                (back ? rope_backward_cs : rope_forward_cs)(q2, cs, M, nh, Dt);
                (back ? rope_backward_cs : rope_forward_cs)(k2, cs, M, KVh, Dt);
                bf16_from_f32(qr, q2, nt), bf16_from_f32(kr, k2, nk), bf16_from_f32(vr, v, nk);
                same &=
                    !memcmp(qb, qr, nt * 2) && !memcmp(kb, kr, nk * 2) && !memcmp(vb, vr, nk * 2);
                /* strided: inputs side by side in rows of q|k|v (the fused product's output),
                 * then outputs so (the fused input gradient's dout), each row padded by 3 */
                const int64_t HDt = (int64_t)nh * Dt, KVDt = (int64_t)KVh * Dt,
                              ld = HDt + 2 * KVDt + 3;
                float *qkv = malloc((size_t)M * ld * 4);
                uint16_t *o = malloc((size_t)M * ld * 2);
                for (int64_t m = 0; m < M; m++) {
                    memcpy(qkv + m * ld, q + m * HDt, HDt * 4);
                    memcpy(qkv + m * ld + HDt, k + m * KVDt, KVDt * 4);
                    memcpy(qkv + m * ld + HDt + KVDt, v + m * KVDt, KVDt * 4);
                }
                memset(qb, 0, nt * 2), memset(kb, 0, nk * 2), memset(vb, 0, nk * 2);
                rope_round_qkv_bf16(qb, kb, vb, 0, qkv, qkv + HDt, qkv + HDt + KVDt, ld, cs, M, nh,
                                    KVh, Dt, back);
                same &=
                    !memcmp(qb, qr, nt * 2) && !memcmp(kb, kr, nk * 2) && !memcmp(vb, vr, nk * 2);
                rope_round_qkv_bf16(o, o + HDt, o + HDt + KVDt, ld, q, k, v, 0, cs, M, nh, KVh, Dt,
                                    back);
                for (int64_t m = 0; m < M; m++)
                    same &= !memcmp(o + m * ld, qr + m * HDt, HDt * 2) &&
                            !memcmp(o + m * ld + HDt, kr + m * KVDt, KVDt * 2) &&
                            !memcmp(o + m * ld + HDt + KVDt, vr + m * KVDt, KVDt * 2);
                free(qkv), free(o);
            }
            snprintf(nm, sizeof nm,
                     "rope_round_qkv_bf16 (packed, strided) == rope_*_cs + bf16_from_f32%s", sfx);
            CHECK(nm, same, "bits differ");
            free(q), free(k), free(v), free(q2), free(k2), free(qb), free(kb), free(vb);
            free(qr), free(kr), free(vr);
        }
        free(cs), free(za), free(zb);
    }

    /* swiglu over n elements vs chunks of C */
    float *g = rand_buf(n), *u = rand_buf(n), *sa = zeros(n), *sb = zeros(n);
    float *dga = zeros(n), *dgb = zeros(n), *dua = zeros(n), *dub = zeros(n);
    swiglu_forward(sa, g, u, n);
    swiglu_backward(dga, dua, dy, g, u, n);
    for (int m = 0; m < M; m++) {
        size_t o = (size_t)m * C;
        swiglu_forward(sb + o, g + o, u + o, C);
        swiglu_backward(dgb + o, dub + o, dy + o, g + o, u + o, C);
    }
    check_close("parallel swiglu forward == serial", sa, sb, n, 0, 0);
    check_close("parallel swiglu dgate == serial", dga, dgb, n, 0, 0);
    check_close("parallel swiglu dup == serial", dua, dub, n, 0, 0);

    /* embedding: ids with many repeats; backward adds rows in the same order either way */
    int *ids = malloc((size_t)M * sizeof(int));
    for (int m = 0; m < M; m++) ids[m] = (m * 7) % V;
    float *table = rand_buf((size_t)V * C), *ea = zeros(n), *eb = zeros(n);
    float *dta = zeros((size_t)V * C), *dtb = zeros((size_t)V * C);
    embedding_forward(ea, ids, table, M, C);
    embedding_backward(dta, dy, ids, M, C);
    for (int m = 0; m < M; m++) {
        embedding_forward(eb + (size_t)m * C, ids + m, table, 1, C);
        embedding_backward(dtb, dy + (size_t)m * C, ids + m, 1, C);
    }
    check_close("parallel embedding forward == serial", ea, eb, n, 0, 0);
    check_close("parallel embedding dtable == serial", dta, dtb, (size_t)V * C, 0, 0);

    free(x), free(w), free(dy), free(a), free(b), free(ra), free(rb), free(ga), free(gb);
    free(gwa), free(gwb), free(pos), free(ya), free(yb), free(g), free(u), free(sa), free(sb);
    free(dga), free(dgb), free(dua), free(dub), free(ids), free(table), free(ea), free(eb);
    free(dta), free(dtb);
}

int main(void) {
    ref_dir = getenv("FT_REF");
    if (!ref_dir) ref_dir = "build/ref";
    torch_matmul();
    torch_rmsnorm();
    torch_rope();
    torch_swiglu();
    torch_attention("attn_gqa3", 2, 7, 6, 2, 8, 0);
    torch_attention("attn_seg", 2, 9, 4, 2, 6, 1);
    torch_attention("attn_mha", 1, 5, 2, 2, 4, 0);
    torch_embedding();

    static const int mm[][3] = {{1, 1, 1}, {1, 257, 3}, {3, 5, 7}, {17, 33, 9}, {64, 130, 67},
                                {5, 288, 1}, {33, 16, 300},
                                {1, 288, 300}, {2, 33, 65}, {3, 64, 17}};
    for (size_t i = 0; i < sizeof mm / sizeof mm[0]; i++) {
        naive_matmul(mm[i][0], mm[i][1], mm[i][2], 1);
        naive_matmul(mm[i][0], mm[i][1], mm[i][2], 0);
    }
    /* repeated shape: the cached primitive must give the same answer */
    naive_matmul(17, 33, 9, 1);

    static const int at[][6] = {{1, 1, 1, 1, 1, 0},  {1, 5, 2, 2, 4, 0},   {2, 13, 6, 2, 8, 0},
                                {2, 13, 6, 3, 5, 1}, {1, 17, 4, 4, 5, 1},  {3, 33, 6, 2, 16, 1},
                                {2, 31, 3, 1, 7, 0}, {1, 2, 2, 1, 2, 1}};
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++)
        naive_attention(at[i][0], at[i][1], at[i][2], at[i][3], at[i][4], at[i][5]);

    cached_attention(9, 4, 2, 8, 0);
    cached_attention(9, 4, 2, 8, 5);
    cached_attention(17, 6, 3, 5, 16);
    cached_attention(1, 1, 1, 1, 1);

    parallel_vs_serial();
    /* big enough for the OpenMP paths of attention (work >= FT_OMP_GRAIN) and the M <= 2 matmul */
    naive_attention(2, 48, 4, 2, 32, 1);
    naive_matmul(2, 300, 257, 1);
    cached_attention(40, 8, 2, 32, 20);

    /* rope: backward is the inverse rotation, so backward(forward(x)) == x */
    {
        const int M = 6, nh = 3, D = 10;
        int pos[6] = {0, 1, 2, 50, 511, 4095};
        float inv[5];
        for (int i = 0; i < D / 2; i++) inv[i] = powf(10000.0f, -2.0f * i / D);
        float *x = rand_buf((size_t)M * nh * D), *y = copy_buf(x, (size_t)M * nh * D);
        rope_forward(y, pos, inv, M, nh, D);
        rope_backward(y, pos, inv, M, nh, D);
        check_close("rope backward inverts forward", y, x, (size_t)M * nh * D, 1e-6, 1e-6);
        free(x), free(y);
    }
    return ft_test_exit();
}
