/*
 * matmul: the nn.Linear product and its two gradients, in f32, through oneDNN's matmul primitive.
 *
 *   forward   out (M,N)  = inp (M,K) · w (N,K)^T + bias (N)   (matmul_forward_acc: out +=, no bias)
 *   backward  dinp (M,K) += dout (M,N) · w (N,K)
 *             dw (N,K)   += dout (M,N)^T · inp (M,K)
 *             dbias (N)  += sum_m dout (M,N)          (plain C reduction)
 *
 * Every product is C = A·B with A and B described to oneDNN by strides, so no operand is ever
 * transposed in memory: w^T is the (K,N) matrix with strides {1,K} (format `ba`), dout^T the (N,M)
 * matrix with strides {1,N}. Accumulation (`+=`) uses the `sum` post-op (dst = A·B + 1.0*dst).
 * Primitives are created once per (shape, layout, bias, accumulate) key and kept in a process-wide
 * cache guarded by a mutex; they are never freed (they live as long as the process, like the
 * engine). oneDNN runs with its default (strict f32) math mode: no implicit bf16/tf32 down-conversion.
 * Exception: the forward with M <= GEMV_MAX_M rows (decoding one token) is a plain dot product per
 * output, threads splitting N: oneDNN's matmul repacks the `ba` weights on every call, which for a
 * single row costs more than the product itself. Its sums are f32 in a different order (16-lane
 * partial sums, vec.h), within the same tolerance of the naive reference as oneDNN's.
 *
 * Not here: bf16 or quantized products (the speed issue), batched products.
 */
#include "ftune/kernels.h"

#include "grain.h"
#include "vec.h"

#include "ftune/core.h"
#include "dnnl_util.h"

#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>


/* C (m,n) [+]= A (m,k) · B (k,n) [+ bias (1,n)] with given row/column strides of A and B. */
typedef struct {
    int64_t m, k, n;
    int64_t a_rs, a_cs, b_rs, b_cs;
    int has_bias, accumulate;
} mm_key;

typedef struct {
    mm_key key;
    ft_dnnl_mm mm;
} mm_entry;

static pthread_mutex_t mm_lock = PTHREAD_MUTEX_INITIALIZER;
static dnnl_engine_t mm_engine;
static dnnl_stream_t mm_stream;
static ft_dnnl_scratch mm_scratch; /* every product's scratchpad (under the lock) */
static mm_entry *mm_cache;
static int mm_count, mm_cap;

/* Build (or find) the primitive for `key`. Called with mm_lock held. */
static mm_entry *mm_get_locked(const mm_key *key) {
    for (int i = 0; i < mm_count; i++)
        if (!memcmp(&mm_cache[i].key, key, sizeof *key)) return &mm_cache[i];
    if (!mm_engine) {
        DNNL_CHECK(dnnl_engine_create(&mm_engine, dnnl_cpu, 0));
        DNNL_CHECK(dnnl_stream_create(&mm_stream, mm_engine, dnnl_stream_default_flags));
    }
    if (mm_count == mm_cap) {
        int cap = mm_cap ? 2 * mm_cap : 64;
        mm_entry *nc = realloc(mm_cache, (size_t)cap * sizeof *nc);
        FT_ASSERT(nc != NULL);
        mm_cache = nc;
        mm_cap = cap;
    }
    mm_entry *e = &mm_cache[mm_count];
    memset(e, 0, sizeof *e);
    e->key = *key;
    ft_dnnl_mm_init(&e->mm, mm_engine, dnnl_f32, key->m, key->k, key->n, key->a_rs, key->a_cs,
                    key->b_rs, key->b_cs, 0, key->has_bias, key->accumulate, 0, 0);
    mm_count++;
    return e;
}

/* Run C [+]= A·B (+bias). The cache lookup and the execution both hold the lock: primitives and the
 * stream are shared, and the product itself is already parallel inside oneDNN. */
static void mm_run(const mm_key *key, float *c, const float *a, const float *b,
                   const float *bias) {
    pthread_mutex_lock(&mm_lock);
    mm_entry *e = mm_get_locked(key);
    ft_dnnl_mm_exec(&e->mm, mm_engine, mm_stream, &mm_scratch, c, a, b, bias, NULL);
    pthread_mutex_unlock(&mm_lock);
}

#define GEMV_MAX_M 2

void matmul_forward(float *out, const float *inp, const float *w, const float *bias, int M, int K,
                    int N) {
    if (M <= 0 || N <= 0) return;
    if (M <= GEMV_MAX_M && K > 0) {
#pragma omp parallel for schedule(static) if ((int64_t)M * K * N >= FT_OMP_GRAIN)
        for (int64_t n = 0; n < N; n++)
            for (int64_t m = 0; m < M; m++)
                out[m * N + n] = ft_dot_f32(inp + m * K, w + n * K, K) + (bias ? bias[n] : 0.0f);
        return;
    }
    if (K <= 0) { /* empty product: out = bias or 0 (oneDNN rejects zero-size K) */
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) out[m * N + n] = bias ? bias[n] : 0.0f;
        return;
    }
    /* A = inp (M,K) row-major; B = w^T (K,N): element (k,n) at w[n*K + k] -> strides {1, K}. */
    mm_key key = {M, K, N, K, 1, 1, K, bias != NULL, 0};
    mm_run(&key, out, inp, w, bias);
}

void matmul_forward_acc(float *out, const float *inp, const float *w, int M, int K, int N) {
    if (M <= 0 || N <= 0 || K <= 0) return;
    mm_key key = {M, K, N, K, 1, 1, K, 0, 1};
    mm_run(&key, out, inp, w, NULL);
}

/*
 * Backward of out[m,n] = sum_k inp[m,k] w[n,k] + bias[n]:
 *   d out[m,n] / d inp[m,k] = w[n,k]   ->  dinp[m,k] += sum_n dout[m,n] w[n,k]    (dout · w)
 *   d out[m,n] / d w[n,k]   = inp[m,k] ->  dw[n,k]   += sum_m dout[m,n] inp[m,k]  (dout^T · inp)
 *   d out[m,n] / d bias[n]  = 1        ->  dbias[n]  += sum_m dout[m,n]
 * All three ADD (sum post-op / +=); NULL skips that product.
 */
void matmul_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                     const float *w, int M, int K, int N) {
    if (M <= 0 || N <= 0) return;
    if (dinp && K > 0) {
        /* dinp (M,K) += dout (M,N) · w (N,K): A strides {N,1}, B strides {K,1}. */
        mm_key key = {M, N, K, N, 1, K, 1, 0, 1};
        mm_run(&key, dinp, dout, w, NULL);
    }
    if (dw && K > 0) {
        /* dw (N,K) += dout^T (N,M) · inp (M,K): A(n,m) = dout[m*N + n] -> strides {1,N}. */
        mm_key key = {N, M, K, 1, N, K, 1, 0, 1};
        mm_run(&key, dw, dout, inp, NULL);
    }
    if (dbias) {
        /* dbias[n] += sum_m dout[m,n]: each thread owns a range of n, rows summed in order. */
#pragma omp parallel for schedule(static) if ((int64_t)M * N >= FT_OMP_GRAIN)
        for (int64_t n = 0; n < N; n++) {
            float s = 0.0f;
            for (int64_t m = 0; m < M; m++) s += dout[m * N + n];
            dbias[n] += s;
        }
    }
}

/* ---- naive twins: the plain-loop reference (double accumulation) ---- */

void matmul_forward_naive(float *out, const float *inp, const float *w, const float *bias, int M,
                          int K, int N) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = bias ? bias[n] : 0.0;
            for (int64_t k = 0; k < K; k++) s += (double)inp[m * K + k] * w[n * K + k];
            out[m * N + n] = (float)s;
        }
}

void matmul_backward_naive(float *dinp, float *dw, float *dbias, const float *dout,
                           const float *inp, const float *w, int M, int K, int N) {
    if (dinp)
        for (int64_t m = 0; m < M; m++)
            for (int64_t k = 0; k < K; k++) {
                double s = 0;
                for (int64_t n = 0; n < N; n++) s += (double)dout[m * N + n] * w[n * K + k];
                dinp[m * K + k] += (float)s;
            }
    if (dw)
        for (int64_t n = 0; n < N; n++)
            for (int64_t k = 0; k < K; k++) {
                double s = 0;
                for (int64_t m = 0; m < M; m++) s += (double)dout[m * N + n] * inp[m * K + k];
                dw[n * K + k] += (float)s;
            }
    if (dbias)
        for (int64_t n = 0; n < N; n++) {
            double s = 0;
            for (int64_t m = 0; m < M; m++) s += dout[m * N + n];
            dbias[n] += (float)s;
        }
}
