/*
 * Token embedding lookup and its gradient (a scatter-add into the table rows of the ids seen).
 * Ids are trusted here (the caller validates them against V once, at the data boundary).
 */
#include "ftune/kernels.h"

#include "grain.h"

#include <omp.h>
#include <string.h>

void embedding_forward(float *out, const int *ids, const float *table, int M, int C) {
#pragma omp parallel for schedule(static) if ((int64_t)M * C >= FT_OMP_GRAIN)
    for (int64_t m = 0; m < M; m++)
        memcpy(out + m * C, table + (int64_t)ids[m] * C, (size_t)C * sizeof(float));
}

/*
 * dtable[ids[m], c] += dout[m, c]. The same id may occur many times, so threads split the channels
 * (never the rows): each thread owns a slice of columns and walks every row in order, which is
 * race-free and deterministic for a given thread count.
 */
void embedding_backward(float *dtable, const float *dout, const int *ids, int M, int C) {
#pragma omp parallel if ((int64_t)M * C >= FT_OMP_GRAIN)
    {
        int nt = omp_get_num_threads(), it = omp_get_thread_num();
        int64_t c0 = (int64_t)C * it / nt, c1 = (int64_t)C * (it + 1) / nt;
        for (int64_t m = 0; m < M; m++) {
            float *row = dtable + (int64_t)ids[m] * C;
            const float *g = dout + m * C;
            for (int64_t c = c0; c < c1; c++) row[c] += g[c];
        }
    }
}
