/*
 * OpenMP parallel-region lab: what one parallel region costs on top of its work, under the wait
 * policy in the environment (bench/train.sh runs both sides with OMP_WAIT_POLICY=passive). With
 * passive waiting a thread sleeps as soon as a region ends, and the next region waits for its
 * wake-up; the training step runs ~1500-2000 regions (oneDNN's products and our own kernels), so
 * this is why the step merges kernels into fewer regions (bf16_weights_prepack, one region for a
 * kernel's loops). Two ways to do the same work, R times a share of ~W us per thread:
 *   regions   R parallel regions, each `omp for` over the threads' shares
 *   one       one parallel region holding the R `omp for` loops (a barrier after each, as regions
 *             end with one)
 * each also with a serial gap of G us between the pieces (the master's work between kernels),
 * done by the master alone (inside `one`: `omp master` then a barrier), and without a gap, a third
 * way: one region whose loops have no barrier between them (nowait), the work alone. Prints the
 * time per piece and the difference. With passive waiting a barrier costs about what a region
 * does (the first thread there sleeps and is woken): merging pays where the merged loops need no
 * barrier between them. The work is a chain of dependent float
 * operations (no memory traffic), its result checked against a serial run.
 *   bench_regions [R=2000]
 */
#include "lab.h"

#include <string.h>

enum { MAXT = 64 };

/* ~`iters` dependent multiply-adds from x; the same result whichever thread runs it */
static float spin(float x, long iters) {
    for (long i = 0; i < iters; i++)
        x = x * 0.999999f + 1e-7f;
    return x;
}

static double sink;

/* iterations of spin() per microsecond, on one thread */
static double calibrate(void) {
    long it = 1000000;
    double t0 = ft_time_s();
    sink += spin(1.0f, it);
    return (double)it / ((ft_time_s() - t0) * 1e6);
}

/* R pieces of wi iterations per thread, gi serial iterations after each: as R regions */
static void pieces_regions(float *out, int R, long wi, long gi, int nt) {
    for (int r = 0; r < R; r++) {
#pragma omp parallel for schedule(static)
        for (int t = 0; t < nt; t++)
            out[t] = spin(1.0f, wi);
        if (gi) sink += spin(2.0f, gi);
    }
}

/* the same in one region */
static void pieces_one(float *out, int R, long wi, long gi, int nt) {
#pragma omp parallel
    for (int r = 0; r < R; r++) {
#pragma omp for schedule(static)
        for (int t = 0; t < nt; t++)
            out[t] = spin(1.0f, wi);
        if (gi) {
#pragma omp master
            sink += spin(2.0f, gi);
#pragma omp barrier
        }
    }
}

/* the same in one region without barriers between the pieces (gi 0 only): the cost of the work
 * alone, which kernels merged into one region with nowait loops get */
static void pieces_nowait(float *out, int R, long wi, int nt) {
#pragma omp parallel
    for (int r = 0; r < R; r++) {
#pragma omp for schedule(static) nowait
        for (int t = 0; t < nt; t++)
            out[t] = spin(1.0f, wi);
    }
}

static void run(int R, double work_us, double gap_us, double per_us, int nt) {
    const long wi = (long)(work_us * per_us), gi = (long)(gap_us * per_us);
    float out[MAXT], ref = spin(1.0f, wi);
    double t_reg, t_one;
    int ok = 1;
    LAB_TIME(t_reg, 3, pieces_regions(out, R, wi, gi, nt));
    for (int t = 0; t < nt; t++)
        ok &= out[t] == ref;
    memset(out, 0, sizeof out);
    LAB_TIME(t_one, 3, pieces_one(out, R, wi, gi, nt));
    for (int t = 0; t < nt; t++)
        ok &= out[t] == ref;
    printf(
        "  work %4.0f us, gap %3.0f us: %d regions %6.1f us each; one region with barriers %6.1f us"
        " per piece: a region costs %5.1f us more",
        work_us, gap_us, R, t_reg / R * 1e6, t_one / R * 1e6, (t_reg - t_one) / R * 1e6);
    if (!gi) { /* no gap: the pieces may also run without barriers */
        double t_nw;
        memset(out, 0, sizeof out);
        LAB_TIME(t_nw, 3, pieces_nowait(out, R, wi, nt));
        for (int t = 0; t < nt; t++)
            ok &= out[t] == ref;
        printf("; without barriers %6.1f us", t_nw / R * 1e6);
    }
    printf("%s\n", ok ? "" : "  MISMATCH");
    lab_failures += !ok;
}

int main(int argc, char **argv) {
    int R = argc > 1 ? atoi(argv[1]) : 2000;
    int nt = omp_get_max_threads();
    if (R < 1 || nt > MAXT) {
        fprintf(stderr, "bench_regions: R must be at least 1 and threads at most %d\n", MAXT);
        return 2;
    }
    const char *wp = getenv("OMP_WAIT_POLICY");
    double per_us = calibrate();
    printf("regions lab: %d threads, OMP_WAIT_POLICY %s\n", nt,
           wp && *wp ? wp : "(libgomp's default)");
    static const double cfg[][2] = {{20, 0}, {20, 20}, {100, 0}, {100, 50}};
    for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++)
        run(R, cfg[i][0], cfg[i][1], per_us, nt);
    if (lab_failures) printf("regions lab: %d MISMATCH(ES)\n", lab_failures);
    return lab_failures ? 1 : 0;
}
