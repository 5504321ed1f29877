/*
 * Sampling: greedy (argmax, lowest id on ties), temperature, top-k, top-p, determinism of the
 * seeded RNG, and the empirical distribution of draws against the exact one.
 * Frequencies over N = 40000 draws: the standard deviation of a frequency is <= 0.5/sqrt(N) =
 * 0.0025, so a tolerance of 0.012 (~5 sigma) fails with probability ~1e-6 for a correct sampler
 * (and the RNG is seeded, so the outcome is in fact fixed), while any wrong filter or temperature
 * moves some frequency by >= 0.05.
 */
#include "../test.h"

#include "ftune/model.h"

#include <math.h>
#include <string.h>

#define NDRAW 40000
#define FREQ_TOL 0.012

static void freq_check(const char *name, const float *logits, int V, ft_sample_params p,
                       const double *want) {
    ft_sampler s;
    if (ft_sampler_init(&s, V, &p) != FT_OK) {
        CHECK(name, 0, "init: %s", ft_error_message());
        return;
    }
    double f[16] = {0};
    for (int i = 0; i < NDRAW; i++) f[ft_sampler_next(&s, logits)] += 1.0 / NDRAW;
    int ok = 1, worst = 0;
    for (int v = 0; v < V; v++) {
        if (fabs(f[v] - want[v]) > FREQ_TOL) ok = 0;
        if (fabs(f[v] - want[v]) > fabs(f[worst] - want[worst])) worst = v;
    }
    CHECK(name, ok, "id %d drawn with frequency %.4f, want %.4f", worst, f[worst], want[worst]);
    ft_sampler_free(&s);
}

int main(void) {
    const int V = 5;
    /* probabilities 0.4 0.3 0.15 0.1 0.05 */
    const double pr[5] = {0.4, 0.3, 0.15, 0.1, 0.05};
    float lg[5];
    for (int i = 0; i < V; i++) lg[i] = (float)log(pr[i]) + 3.0f; /* shift: softmax-invariant */

    ft_sampler s;
    ft_sample_params greedy = {0, 0, 1, 0};
    FT_ASSERT(ft_sampler_init(&s, V, &greedy) == FT_OK);
    float tie[5] = {1, 7, 3, 7, -2};
    CHECK("greedy argmax, lowest id on ties", ft_sampler_next(&s, tie) == 1, "got %d",
          ft_sampler_next(&s, tie));
    CHECK("greedy on distribution", ft_sampler_next(&s, lg) == 0, "got %d", ft_sampler_next(&s, lg));
    ft_sampler_free(&s);

    ft_sample_params t1 = {1.0f, 0, 1.0f, 7};
    freq_check("temperature 1", lg, V, t1, pr);
    {
        double w[5], z = 0; /* temperature 0.5: p^2 renormalised */
        for (int i = 0; i < V; i++) z += w[i] = pr[i] * pr[i];
        for (int i = 0; i < V; i++) w[i] /= z;
        ft_sample_params t = {0.5f, 0, 1.0f, 8};
        freq_check("temperature 0.5", lg, V, t, w);
    }
    {
        double w[5] = {0.4 / 0.7, 0.3 / 0.7, 0, 0, 0};
        ft_sample_params t = {1.0f, 2, 1.0f, 9};
        freq_check("top-k 2", lg, V, t, w);
    }
    {
        /* a temperature so small that logits / T overflow float (inf - inf gave NaN
         * probabilities and the last id): the T -> 0 limit, the argmax */
        double w[5] = {1, 0, 0, 0, 0};
        ft_sample_params t = {1e-40f, 0, 1.0f, 10};
        freq_check("temperature 1e-40 is greedy", lg, V, t, w);
        t.top_k = 2;
        freq_check("temperature 1e-40 with top-k 2 is greedy", lg, V, t, w);
    }
    {
        /* ties at the k-th place are all kept, as HF's TopKLogitsWarper does (it removes only
         * scores strictly below the k-th): probabilities .4 .2 .2 .2 0 with top-k 2 keep 4 */
        const float tl[5] = {(float)log(0.4), (float)log(0.2), (float)log(0.2), (float)log(0.2),
                             -30.0f};
        double w[5] = {0.4, 0.2, 0.2, 0.2, 0};
        ft_sample_params t = {1.0f, 2, 1.0f, 13};
        freq_check("top-k 2 keeps ties with the 2nd", tl, V, t, w);
    }
    {
        /* cumulative 0.4, 0.7 (>= 0.6: keep the crossing token), so {0, 1} */
        double w[5] = {0.4 / 0.7, 0.3 / 0.7, 0, 0, 0};
        ft_sample_params t = {1.0f, 0, 0.6f, 10};
        freq_check("top-p 0.6", lg, V, t, w);
        double w1[5] = {1, 0, 0, 0, 0};
        ft_sample_params t2 = {1.0f, 0, 0.3f, 11};
        freq_check("top-p 0.3 keeps only the top token", lg, V, t2, w1);
    }
    {
        /* top-k 3 renormalises to 0.4/0.85, 0.3/0.85, 0.15/0.85 = .47 .35 .18; top-p .8 keeps 2 */
        double w[5] = {0.4 / 0.7, 0.3 / 0.7, 0, 0, 0};
        ft_sample_params t = {1.0f, 3, 0.8f, 12};
        freq_check("top-k 3 then top-p 0.8", lg, V, t, w);
    }
    /* determinism */
    {
        ft_sample_params p = {1.0f, 0, 1.0f, 42}, q = {1.0f, 0, 1.0f, 43};
        ft_sampler a, b, c;
        FT_ASSERT(ft_sampler_init(&a, V, &p) == FT_OK);
        FT_ASSERT(ft_sampler_init(&b, V, &p) == FT_OK);
        FT_ASSERT(ft_sampler_init(&c, V, &q) == FT_OK);
        int same = 1, differ = 0;
        for (int i = 0; i < 200; i++) {
            int x = ft_sampler_next(&a, lg), y = ft_sampler_next(&b, lg), z = ft_sampler_next(&c, lg);
            same &= x == y;
            differ |= x != z;
        }
        CHECK("same seed, same draws", same, "draws differ");
        CHECK("other seed, other draws", differ, "seeds 42 and 43 drew identical sequences");
        ft_sampler_free(&a), ft_sampler_free(&b), ft_sampler_free(&c);
    }
    /* bad parameters */
    {
        ft_sample_params bad[3] = {{-1, 0, 1, 0}, {1, -2, 1, 0}, {1, 0, 0, 0}};
        int all = 1;
        for (int i = 0; i < 3; i++) {
            ft_sampler t;
            all &= ft_sampler_init(&t, V, &bad[i]) == FT_ERR_ARG;
            ft_sampler_free(&t);
        }
        CHECK("bad sampling parameters are rejected", all, "accepted a bad parameter");
    }
    return ft_test_exit();
}
