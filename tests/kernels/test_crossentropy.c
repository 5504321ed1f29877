/*
 * The fused head + masked cross-entropy kernel against its plain-loop twin (double accumulation):
 * NLL sum, target count, d(hidden) and d(head), for several chunk sizes (1 row, a size that does
 * not divide M, all rows), with -100 labels including a chunk that is entirely ignored; and the
 * _rows form (a few head rows replaced by trained values) against the twin on the edited head.
 *
 * Tolerances: the kernel computes logits in f32 (oneDNN) and the softmax in double; the twin
 * does everything in double. The loss differs by f32 rounding of the logits: rtol 1e-5.
 * Gradients: |got-ref| <= 1e-6 + 1e-4*|ref| elementwise; the atol covers entries that are sums of
 * cancelling terms (softmax - onehot) whose size is ~1e-7 of the largest entry.
 */
#include "../test.h"
#include "ftune/core.h"
#include "ftune/crossentropy.h"

#include <string.h>

static uint64_t rs = 88172645463325252ull;
static float frand(void) { /* xorshift, uniform in [-1,1) */
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return (float)((rs >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

int main(void) {
    enum { M = 11, C = 16, V = 37 };
    static float x[M * C], w[V * C];
    int labels[M];
    for (int i = 0; i < M * C; i++)
        x[i] = 2.0f * frand();
    for (int i = 0; i < V * C; i++)
        w[i] = frand();
    for (int m = 0; m < M; m++)
        labels[m] = (int)((frand() + 1.0f) * 0.5f * V) % V;
    labels[0] = labels[3] = labels[4] = labels[5] =
        FT_IGNORE_INDEX; /* rows 3..5: a whole chunk of 3 */
    const float scale = 1.0f / 7.0f;

    static float dx_ref[M * C], dw_ref[V * C];
    int64_t n_ref = 0;
    for (int i = 0; i < M * C; i++)
        dx_ref[i] = 0.5f; /* ADD semantics: start from non-zero */
    for (int i = 0; i < V * C; i++)
        dw_ref[i] = -0.25f;
    double nll_ref =
        crossentropy_forward_backward_naive(dx_ref, dw_ref, &n_ref, x, w, labels, scale, M, C, V);
    CHECK("ce_naive_counts_targets", n_ref == 7, "n_targets %lld, want 7", (long long)n_ref);

    const int chunks[] = {1, 3, 4, M, crossentropy_chunk_rows(M, V)};
    for (size_t ci = 0; ci < sizeof chunks / sizeof *chunks; ci++) {
        int ch = chunks[ci];
        static float dx[M * C], dw[V * C], logits[M * V];
        for (int i = 0; i < M * C; i++)
            dx[i] = 0.5f;
        for (int i = 0; i < V * C; i++)
            dw[i] = -0.25f;
        int64_t n = -1, nf = -1;
        double nll =
            crossentropy_forward_backward(dx, dw, &n, logits, x, w, labels, scale, M, C, V, ch);
        double nllf = crossentropy_forward(&nf, logits, x, w, labels, M, C, V, ch);
        char name[64];
        snprintf(name, sizeof name, "ce_loss_chunk%d", ch);
        CHECK(name, fabs(nll - nll_ref) <= 1e-5 * fabs(nll_ref) && n == n_ref,
              "nll %.9g ref %.9g, n %lld ref %lld", nll, nll_ref, (long long)n, (long long)n_ref);
        snprintf(name, sizeof name, "ce_forward_only_chunk%d", ch);
        CHECK(name, nllf == nll && nf == n, "forward-only nll %.17g vs fused %.17g", nllf, nll);
        snprintf(name, sizeof name, "ce_dx_chunk%d", ch);
        check_close(name, dx, dx_ref, M * C, 1e-6, 1e-4);
        snprintf(name, sizeof name, "ce_dw_chunk%d", ch);
        check_close(name, dw, dw_ref, V * C, 1e-6, 1e-4);
    }

    /* head rows replaced (PEFT trainable tokens): the kernel with the base w and rows for ids
     * {labels[1], 30, 2} must equal the twin run on w with those rows written in; the replaced
     * rows' gradient goes to drows, w's own rows at those ids get none (their dw stays as it
     * was), the other rows of dw and dx as the twin's */
    {
        int ids[3] = {labels[1], 30, 2};
        static float rows[3 * C], w2[V * C], dx2[M * C], dw2[V * C];
        memcpy(w2, w, sizeof w2);
        for (int k = 0; k < 3; k++)
            for (int c = 0; c < C; c++)
                w2[ids[k] * C + c] = rows[k * C + c] = frand();
        memset(dx2, 0, sizeof dx2);
        memset(dw2, 0, sizeof dw2);
        int64_t n2;
        double nll2 =
            crossentropy_forward_backward_naive(dx2, dw2, &n2, x, w2, labels, scale, M, C, V);
        static float drows_ref[3 * C];
        for (int k = 0; k < 3; k++) {
            memcpy(drows_ref + k * C, dw2 + ids[k] * C, C * sizeof(float));
            memset(dw2 + ids[k] * C, 0, C * sizeof(float)); /* base rows: no gradient */
        }
        const int rch[] = {1, 4, M};
        for (size_t ci = 0; ci < 3; ci++) {
            static float dx[M * C], dw[V * C], drows[3 * C], logits[M * V];
            memset(dx, 0, sizeof dx);
            memset(dw, 0, sizeof dw);
            memset(drows, 0, sizeof drows);
            ft_head_rows hr = {.ids = ids, .rows = rows, .drows = drows, .n = 3};
            int64_t n = -1, nf = -1;
            double nll = crossentropy_rows_forward_backward(dx, dw, &n, logits, x, w, &hr, labels,
                                                            scale, M, C, V, rch[ci]);
            hr.drows = NULL;
            double nllf = crossentropy_rows_forward_backward(NULL, NULL, &nf, logits, x, w, &hr,
                                                             labels, 0.f, M, C, V, rch[ci]);
            char name[64];
            snprintf(name, sizeof name, "ce_rows_loss_chunk%d", rch[ci]);
            CHECK(name, fabs(nll - nll2) <= 1e-5 * fabs(nll2) && n == n2 && nllf == nll && nf == n,
                  "nll %.9g ref %.9g (forward only %.9g), n %lld ref %lld", nll, nll2, nllf,
                  (long long)n, (long long)n2);
            snprintf(name, sizeof name, "ce_rows_dx_chunk%d", rch[ci]);
            check_close(name, dx, dx2, M * C, 1e-6, 1e-4);
            snprintf(name, sizeof name, "ce_rows_dw_chunk%d", rch[ci]);
            check_close(name, dw, dw2, V * C, 1e-6, 1e-4);
            snprintf(name, sizeof name, "ce_rows_drows_chunk%d", rch[ci]);
            check_close(name, drows, drows_ref, 3 * C, 1e-6, 1e-4);
        }
    }

    /* NULL gradient pointers skip that work and leave the other result unchanged */
    {
        static float dx[M * C], logits[4 * V];
        memset(dx, 0, sizeof dx);
        static float dx0[M * C], dw0[V * C];
        int64_t n;
        crossentropy_forward_backward_naive(dx0, dw0, &n, x, w, labels, scale, M, C, V);
        crossentropy_forward_backward(dx, NULL, &n, logits, x, w, labels, scale, M, C, V, 4);
        check_close("ce_dx_only", dx, dx0, M * C, 1e-6, 1e-4);
    }
    /* every label ignored: zero loss, zero targets, no gradient */
    {
        int none[M];
        static float dx[M * C], logits[M * V];
        for (int m = 0; m < M; m++)
            none[m] = FT_IGNORE_INDEX;
        int64_t n = -1;
        double nll =
            crossentropy_forward_backward(dx, NULL, &n, logits, x, w, none, 1.f, M, C, V, 5);
        int nz = 0;
        for (int i = 0; i < M * C; i++)
            nz += dx[i] != 0;
        CHECK("ce_all_ignored", nll == 0 && n == 0 && nz == 0, "nll %g n %lld nonzero %d", nll,
              (long long)n, nz);
    }
    /* large logits: the max-shift keeps the loss finite */
    {
        float xb[C], wb[2 * C];
        for (int c = 0; c < C; c++)
            xb[c] = 30.f, wb[c] = 10.f, wb[C + c] = -10.f;
        int lab = 1;
        float logits[2];
        int64_t n;
        double nll = crossentropy_forward(&n, logits, xb, wb, &lab, 1, C, 2, 1);
        /* z0 = 4800, z1 = -4800: nll = 9600 + log(1 + e^-9600) = 9600 */
        CHECK("ce_large_logits_finite", fabs(nll - 9600.0) < 1e-3, "nll %.9g", nll);
    }
    return ft_test_exit();
}
