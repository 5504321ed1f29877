/*
 * AdamW, gradient clipping and LR schedules against torch (tests/ref/gen_optim.py):
 * three tensors (two with weight decay, one without), six steps of clip + AdamW under a
 * warmup+cosine schedule, then every HF schedule at every step for several (warmup, total).
 *
 * Tolerances (one table):
 *   params  rtol 1e-6, atol 1e-7: the update is float32 arithmetic in torch's order, but torch's
 *           vectorised kernels fuse some multiply-adds; after 6 steps params (|p| ~ 1) differ by a
 *           few ulps.
 *   moments rtol 2e-6, atol 2e-6 * max|ref| of the tensor: m = b1*m + (1-b1)*g cancels near
 *           zero crossings, and the clipped gradients differ from torch's by an ulp (coef from a
 *           double vs float32 norm), so the error is relative to the tensor's scale, not the element.
 *   norm    rtol 1e-6: torch reduces in float32, we accumulate in double.
 *   grad_norm alone, up to 1.7e7 values: rtol 1e-12 against a long double sum (double sums of
 *           positive terms, ~1e5 per lane: relative error far below 1e-12), and bit-identical with
 *           1, 2 and 3 threads (fixed chunks, lanes and order).
 *   lr/sched rtol 1e-15: both sides compute the same double formula.
 */
#include "../test.h"
#include "ftune/optim.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char name[96];
    int n;
    double *v;
} ref_arr;
static ref_arr refs[512];
static int n_refs;

static int load_refs(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char name[96];
    int n;
    while (n_refs < 512 && fscanf(f, "%95s %d", name, &n) == 2) {
        ref_arr *r = &refs[n_refs++];
        snprintf(r->name, sizeof r->name, "%s", name);
        r->n = n;
        r->v = malloc(sizeof(double) * (size_t)(n ? n : 1));
        for (int i = 0; i < n; i++)
            if (fscanf(f, "%lf", &r->v[i]) != 1) return 0;
    }
    fclose(f);
    return n_refs > 0;
}

static const ref_arr *ref(const char *name) {
    for (int i = 0; i < n_refs; i++)
        if (!strcmp(refs[i].name, name)) return &refs[i];
    fprintf(stderr, "missing reference %s\n", name);
    exit(1);
}

static void ref_floats(float *dst, const char *name, int n) {
    const ref_arr *r = ref(name);
    if (r->n != n) {
        fprintf(stderr, "%s: %d values, expected %d\n", name, r->n, n);
        exit(1);
    }
    for (int i = 0; i < n; i++) dst[i] = (float)r->v[i];
}

static double max_abs(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fabs(x[i]) > m ? fabs(x[i]) : m;
    return m;
}

/* ft_grad_norm on sizes around its chunking (65536 floats, 16 lanes, 256 chunks a batch): within
 * 1e-12 relative of a long double sum, and the same bits with 1, 2 and 3 threads */
static void grad_norm_sizes(void) {
    static const size_t sizes[] = {1, 15, 17, 65536, 65536 + 3, 3 * 65536 + 17, 257 * 65536 + 5};
    const size_t nmax = 257 * 65536 + 5;
    float *g = malloc(nmax * sizeof(float));
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < nmax; i++) { /* xorshift: signed values over several magnitudes */
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        g[i] = (float)((double)(int32_t)(x >> 32) * 0x1p-31 * (1 + (double)(x % 7) * 3));
    }
    const int threads = omp_get_max_threads();
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        const size_t n = sizes[k];
        long double ss = 0;
        for (size_t i = 0; i < n; i++)
            ss += (long double)g[i] * g[i];
        const double want = (double)sqrtl(ss);
        double got[3];
        for (int t = 1; t <= 3; t++) {
            omp_set_num_threads(t);
            got[t - 1] = ft_grad_norm(g, n);
        }
        omp_set_num_threads(threads);
        char label[96];
        snprintf(label, sizeof label, "grad_norm_%zu_accurate", n);
        CHECK(label, fabs(got[1] - want) <= 1e-12 * want, "norm %.17g want %.17g", got[1], want);
        snprintf(label, sizeof label, "grad_norm_%zu_same_bits_1_2_3_threads", n);
        CHECK(label,
              !memcmp(&got[0], &got[1], sizeof got[0]) && !memcmp(&got[1], &got[2], sizeof got[0]),
              "%.17g %.17g %.17g", got[0], got[1], got[2]);
    }
    free(g);
}

/* The trainer's clipped step, ft_grad_norm + ft_adamw_step_scaled(ft_clip_coef), against
 * ft_clip_grad_norm + ft_adamw_step: params and both moments bit-identical over steps that clip
 * and steps that do not (weight decay on two tensors of three), the gradients left unscaled. */
static void scaled_step_same_bits(void) {
    enum { NT = 3, N = 70 + 1000 + 33 };
    static const int numel[NT] = {70, 1000, 33}, decay[NT] = {1, 0, 1};
    static float pa[N], pb[N], ga[N], gb[N], g0[N];
    ft_trainable ta[NT], tb[NT];
    ft_adamw oa, ob;
    ft_adamw_hparams h = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.05};
    int ok = ft_adamw_init(&oa, N, &h) == FT_OK && ft_adamw_init(&ob, N, &h) == FT_OK;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < N; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        pa[i] = pb[i] = (float)((double)(int32_t)(x >> 32) * 0x1p-31);
    }
    for (int k = 0, off = 0; k < NT; off += numel[k], k++) {
        ta[k] = (ft_trainable){
            .param = pa + off, .grad = ga + off, .numel = (size_t)numel[k], .decay = decay[k]};
        tb[k] = ta[k], tb[k].param = pb + off, tb[k].grad = gb + off;
    }
    int clipped = 0;
    for (int step = 0; step < 6 && ok; step++) {
        for (int i = 0; i < N; i++) { /* gradients whose norm is ~0.6 x (1 + step) */
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            g0[i] = ga[i] = gb[i] =
                (float)((double)(int32_t)(x >> 32) * 0x1p-31 * 0.03 * (1 + step));
        }
        const double max_norm = 2.0;
        double na = ft_clip_grad_norm(ga, N, max_norm);
        ft_adamw_step(&oa, pa, ga, ta, NT, 1e-2);
        double nb = ft_grad_norm(gb, N);
        ft_adamw_step_scaled(&ob, pb, gb, tb, NT, 1e-2, ft_clip_coef(nb, max_norm));
        clipped += na > max_norm;
        ok = na == nb && !memcmp(pa, pb, sizeof pa) && !memcmp(oa.m, ob.m, N * sizeof(float)) &&
             !memcmp(oa.v, ob.v, N * sizeof(float)) && !memcmp(gb, g0, sizeof gb);
    }
    CHECK("adamw_step_scaled_same_bits_as_clip_then_step", ok && clipped > 0 && clipped < 6,
          "differs (or the steps clipped %d of 6: both kinds needed)", clipped);
    ft_adamw_free(&oa), ft_adamw_free(&ob);
}

int main(void) {
    grad_norm_sizes();
    scaled_step_same_bits();
    char path[4096];
    const char *dir = getenv("FT_REF");
    snprintf(path, sizeof path, "%s/optim_ref.txt", dir ? dir : "build/ref");
    if (!load_refs(path)) {
        printf("FAIL optim_ref: cannot read %s (run tests/ref/gen_optim.py)\n", path);
        return 1;
    }
    const char *names[3] = {"w1", "b1", "w2"};
    const int numel[3] = {35, 5, 33}, decay[3] = {1, 0, 1};
    size_t total = 35 + 5 + 33;
    float *params = calloc(total, sizeof(float)), *grads = calloc(total, sizeof(float));
    float *want = calloc(total, sizeof(float));
    ft_trainable t[3];
    memset(t, 0, sizeof t);
    size_t off = 0;
    for (int k = 0; k < 3; k++) {
        snprintf(t[k].name, sizeof t[k].name, "%s", names[k]);
        t[k].param = params + off;
        t[k].grad = grads + off;
        t[k].numel = (size_t)numel[k];
        t[k].decay = decay[k];
        char nm[96];
        snprintf(nm, sizeof nm, "init.%s", names[k]);
        ref_floats(t[k].param, nm, numel[k]);
        off += (size_t)numel[k];
    }
    ft_adamw opt;
    ft_adamw_hparams h = {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
    CHECK("adamw_init", ft_adamw_init(&opt, total, &h) == FT_OK, "%s", ft_error_message());
    const double lr = 1e-2, max_norm = 1.0;
    const int steps = 6, warmup = 2;
    int clipped = 0;
    for (int s = 0; s < steps; s++) {
        char nm[96];
        for (int k = 0; k < 3; k++) {
            snprintf(nm, sizeof nm, "step%d.grad.%s", s, names[k]);
            ref_floats(t[k].grad, nm, numel[k]);
        }
        double norm = ft_clip_grad_norm(grads, total, max_norm);
        snprintf(nm, sizeof nm, "step%d.norm", s);
        double rn = ref(nm)->v[0];
        if (rn > max_norm) clipped++;
        char label[96];
        snprintf(label, sizeof label, "clip_norm_step%d", s);
        CHECK(label, fabs(norm - rn) <= 1e-6 * rn, "norm %.9g ref %.9g", norm, rn);
        double f = ft_schedule_factor(FT_SCHED_COSINE, s, warmup, steps);
        snprintf(nm, sizeof nm, "step%d.lr", s);
        snprintf(label, sizeof label, "lr_step%d", s);
        CHECK(label, fabs(lr * f - ref(nm)->v[0]) <= 1e-15 * lr, "lr %.17g ref %.17g", lr * f,
              ref(nm)->v[0]);
        ft_adamw_step(&opt, params, grads, t, 3, lr * f);
        for (int k = 0; k < 3; k++) {
            size_t o = (size_t)(t[k].param - params);
            snprintf(nm, sizeof nm, "step%d.param.%s", s, names[k]);
            ref_floats(want, nm, numel[k]);
            snprintf(label, sizeof label, "adamw_param_step%d_%s", s, names[k]);
            check_close(label, t[k].param, want, t[k].numel, 1e-7, 1e-6);
            snprintf(nm, sizeof nm, "step%d.m.%s", s, names[k]);
            ref_floats(want, nm, numel[k]);
            snprintf(label, sizeof label, "adamw_m_step%d_%s", s, names[k]);
            check_close(label, opt.m + o, want, t[k].numel, 2e-6 * max_abs(want, t[k].numel), 2e-6);
            snprintf(nm, sizeof nm, "step%d.v.%s", s, names[k]);
            ref_floats(want, nm, numel[k]);
            snprintf(label, sizeof label, "adamw_v_step%d_%s", s, names[k]);
            check_close(label, opt.v + o, want, t[k].numel, 2e-6 * max_abs(want, t[k].numel), 2e-6);
        }
    }
    CHECK("clip_exercised_both_ways", clipped > 0 && clipped < steps, "%d of %d steps clipped",
          clipped, steps);
    CHECK("adamw_step_count", opt.step == steps, "step %lld", (long long)opt.step);
    ft_adamw_free(&opt);
    ft_adamw_free(&opt); /* idempotent */

    /* clipping below the threshold leaves gradients bit-identical */
    float g2[4] = {0.1f, -0.2f, 0.05f, 0.0f}, g2c[4];
    memcpy(g2c, g2, sizeof g2);
    ft_clip_grad_norm(g2, 4, 1.0);
    CHECK("clip_noop_below_max", !memcmp(g2, g2c, sizeof g2), "gradients changed");

    const char *kinds[4] = {"constant", "constant_with_warmup", "linear", "cosine"};
    const int wt[4][2] = {{0, 10}, {3, 10}, {5, 7}, {4, 4}};
    for (int k = 0; k < 4; k++) {
        ft_schedule sk;
        CHECK("schedule_parse", ft_schedule_parse(kinds[k], &sk) == 0 &&
                                    !strcmp(ft_schedule_name(sk), kinds[k]), "%s", kinds[k]);
        for (int c = 0; c < 4; c++) {
            char nm[96];
            snprintf(nm, sizeof nm, "sched.%s.%d.%d", kinds[k], wt[c][0], wt[c][1]);
            const ref_arr *r = ref(nm);
            int bad = -1;
            for (int s = 0; s < r->n; s++) {
                double f = ft_schedule_factor(sk, s, wt[c][0], wt[c][1]);
                if (fabs(f - r->v[s]) > 1e-15) bad = s;
            }
            CHECK(nm, bad < 0, "step %d: %.17g ref %.17g", bad,
                  bad >= 0 ? ft_schedule_factor(sk, bad, wt[c][0], wt[c][1]) : 0.0,
                  bad >= 0 ? r->v[bad] : 0.0);
        }
    }
    ft_schedule dummy;
    CHECK("schedule_parse_rejects", ft_schedule_parse("polynomial", &dummy) == -1, "accepted");
    for (int i = 0; i < n_refs; i++) free(refs[i].v);
    free(params);
    free(grads);
    free(want);
    return ft_test_exit();
}
