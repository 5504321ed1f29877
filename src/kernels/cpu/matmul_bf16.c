/*
 * bf16 mixed-precision matmul: bf16 operands, f32 accumulation, f32 output, through oneDNN's
 * matmul primitive (avx512_core_bf16 kernels here). The three products of training:
 *
 *   forward         out (M,N)  [+]= inp (M,K) · w (N,K)^T + bias (N)
 *   input gradient  dinp (M,K)  += dout (M,N) · w (N,K)
 *   weight gradient dw (N,K)    += dout (M,N)^T · inp (M,K)
 *
 * As in matmul.c, transposes are strides, accumulation is the `sum` post-op, and primitives are
 * created once per (shape, layout, dtypes, bias, accumulate) key and cached for the process.
 *
 * Weights (ft_bf16_weight): a weight (N,K) given in f32 is converted to bf16 and reordered into
 * the blocked layout oneDNN's primitive asks for (weights format `any`) — once for the forward
 * product and once for the input-gradient product — by our own pass for the one layout oneDNN
 * picks here (fast_pack below, 2x its reorder) or else one oneDNN reorder each (f32 plain ->
 * bf16 blocked). Frozen weights are packed once; trainable ones are repacked by
 * bf16_weight_refresh after each optimizer update. A packed copy is tied to the row count M it
 * was chosen for (oneDNN's preferred layout can depend on M): a new M gets its own copy, or an
 * alias when the layout is the same (on first use; a training step of fixed shape allocates
 * nothing after its first call). Past PACK_SLOTS row counts the copies are dropped and rebuilt.
 * A weight that changes at every optimizer step may be transient instead
 * (bf16_weight_create_transient): packed into one shared scratch right before each product and
 * never kept — the same number of reorders as repacking after each update when an optimizer step
 * is one micro-step, and no packed memory per weight.
 * A frozen weight may be detached from its f32 source (bf16_weight_detach): one canonical bf16
 * copy (the forward layout) is kept and every later copy is reordered from it, so the caller may
 * drop the f32 memory; bf16_weight_unpack writes the values back as f32 (exact when the source
 * held bf16 values, which bf16_exact tells).
 *
 * ft_cpu_has_bf16() says whether the CPU has AVX512-BF16 (run-time check; FTUNE_NO_BF16=1 in the
 * environment forces "no", to exercise the f32 fallback); callers use f32 kernels when it is 0.
 *
 * Not here: quantized weights, batched products.
 */
#include "ftune/kernels.h"

#include "dnnl_util.h"
#include "ftune/core.h"
#include "grain.h"
#include "vec.h"

#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>


int ft_cpu_has_bf16(void) {
    static int cached = -1;
    if (cached < 0) {
        const char *off = getenv("FTUNE_NO_BF16");
        __builtin_cpu_init();
        cached = (off && *off && *off != '0') ? 0 : __builtin_cpu_supports("avx512bf16") != 0;
    }
    return cached;
}

/* Round to nearest even, NaN kept quiet: the same bits as ft_f32_to_bf16 (ft_bf16_round, which
 * vectorizes). */
void bf16_from_f32(uint16_t *dst, const float *src, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++)
        dst[i] = ft_bf16_round(src[i]);
}

/* dst (M,N) = bf16(src) as bf16_from_f32, and dstT (N,M) = its transpose. Per strip of 32 rows:
 * the rows rounded in order (sequential reads, as bf16_from_f32), then the strip's bf16 copy,
 * still in L1 (32 x N x 2 bytes), transposed 32 x 16 at a time (widened to 32 bits for
 * ft_transpose16) into 64-byte rows of dstT. Reading the f32 source in 32 x 16 tiles instead
 * (32 strided streams) ran at a third of the speed. Edge rows (M % 32) and columns (N % 16) are
 * copied element by element. */
void bf16_from_f32_t(uint16_t *dst, uint16_t *dstT, const float *src, int M, int N) {
    const int64_t N16 = N / 16 * 16, nb = (M + 31) / 32;
#pragma omp parallel for schedule(static) if ((int64_t)M * N > 65536)
    for (int64_t b = 0; b < nb; b++) {
        const int64_t m0 = b * 32, m1 = m0 + 32 < M ? m0 + 32 : M;
        for (int64_t m = m0; m < m1; m++) {
            const float *r = src + m * N;
            uint16_t *o = dst + m * N;
#pragma omp simd
            for (int64_t n = 0; n < N; n++)
                o[n] = ft_bf16_round(r[n]);
        }
        int64_t n0 = 0;
#if defined(__AVX512F__)
        for (; m1 - m0 == 32 && n0 < N16; n0 += 16) {
            uint32_t w[32][16], t[2][16][16]; /* t[h][j][i] = dst (m0 + 16 h + i, n0 + j) */
            for (int i = 0; i < 32; i++)
                _mm512_storeu_si512(w[i], _mm512_cvtepu16_epi32(_mm256_loadu_si256(
                                              (const __m256i *)(dst + (m0 + i) * N + n0))));
            ft_transpose16((float *)t[0], 16, (const float *)w[0], 16);
            ft_transpose16((float *)t[1], 16, (const float *)w[16], 16);
            for (int j = 0; j < 16; j++) {
                __m256i lo = _mm512_cvtepi32_epi16(_mm512_loadu_si512(t[0][j]));
                __m512i o =
                    _mm512_inserti64x4(_mm512_castsi256_si512(lo),
                                       _mm512_cvtepi32_epi16(_mm512_loadu_si512(t[1][j])), 1);
                _mm512_storeu_si512(dstT + (n0 + j) * M + m0, o);
            }
        }
#endif
        for (int64_t n = n0; n < N; n++) /* what the tiles left: edges, or all without AVX-512 */
            for (int64_t m = m0; m < m1; m++)
                dstT[n * M + m] = dst[m * N + n];
    }
}

int bf16_exact(const float *x, size_t n) {
    uint32_t any = 0;
#pragma omp parallel for schedule(static) reduction(| : any) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        any |= u & 0xffffu;
    }
    return any == 0;
}

void bf16_to_f32(float *dst, const uint16_t *src, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++)
        dst[i] = ft_bf16_widen(src[i]);
}

/* ---- primitive cache ---- */

/* C (m,n) [+]= A (m,k) · B (k,n) [+ bias] [+ R]; B either strided (b_rs, b_cs) or packed
 * (b_any); C f32 or (c_bf16) bf16; R (add_res) f32 (m,n) (ft_dnnl_mm_init). */
typedef struct {
    int64_t m, k, n;
    int64_t a_rs, a_cs, b_rs, b_cs;
    int b_any, has_bias, accumulate, c_bf16, add_res;
    int zero_; /* 0: the key has no padding bytes, since keys are compared with memcmp */
} mmb_key;
_Static_assert(sizeof(mmb_key) == 7 * sizeof(int64_t) + 6 * sizeof(int), "mmb_key has padding");

typedef struct {
    mmb_key key;
    ft_dnnl_mm mm; /* mm.b_md: the packed layout when b_any */
} mmb_entry;

static pthread_mutex_t mmb_lock = PTHREAD_MUTEX_INITIALIZER;
static dnnl_engine_t mmb_engine;
static dnnl_stream_t mmb_stream;
static ft_dnnl_scratch mmb_scratch; /* every product's scratchpad (under the lock) */
static mmb_entry *mmb_cache;
static int mmb_count, mmb_cap;

static void engine_init_locked(void) {
    if (!mmb_engine) {
        DNNL_CHECK(dnnl_engine_create(&mmb_engine, dnnl_cpu, 0));
        DNNL_CHECK(dnnl_stream_create(&mmb_stream, mmb_engine, dnnl_stream_default_flags));
    }
}

static mmb_entry *mmb_get_locked(const mmb_key *key) {
    for (int i = 0; i < mmb_count; i++)
        if (!memcmp(&mmb_cache[i].key, key, sizeof *key)) return &mmb_cache[i];
    engine_init_locked();
    if (mmb_count == mmb_cap) {
        int cap = mmb_cap ? 2 * mmb_cap : 64;
        mmb_entry *nc = realloc(mmb_cache, (size_t)cap * sizeof *nc);
        FT_ASSERT(nc != NULL);
        mmb_cache = nc;
        mmb_cap = cap;
    }
    mmb_entry *e = &mmb_cache[mmb_count];
    memset(e, 0, sizeof *e);
    e->key = *key;
    ft_dnnl_mm_init(&e->mm, mmb_engine, dnnl_bf16, key->m, key->k, key->n, key->a_rs, key->a_cs,
                    key->b_rs, key->b_cs, key->b_any, key->has_bias, key->accumulate, key->c_bf16,
                    key->add_res);
    mmb_count++;
    return e;
}

static void mmb_run(const mmb_key *key, float *c, const void *a, const void *b,
                    const float *bias) {
    pthread_mutex_lock(&mmb_lock);
    const mmb_entry *e = mmb_get_locked(key); /* first: it creates the engine on first use */
    ft_dnnl_mm_exec(&e->mm, mmb_engine, mmb_stream, &mmb_scratch, c, a, b, bias, NULL);
    pthread_mutex_unlock(&mmb_lock);
}

/* out = 0 or bias (+ res) for an empty K (oneDNN rejects zero-size dimensions): out f32 (+= with
 * accumulate) or, with outb, bf16 */
static void fill_bias(void *out, int outb, const float *bias, const float *res, int M, int N,
                      int accumulate) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            const int64_t i = m * N + n;
            float y = (accumulate ? ((float *)out)[i] : 0.0f) + (bias ? bias[n] : 0.0f);
            if (res) y += res[i];
            if (outb)
                ((uint16_t *)out)[i] = ft_bf16_round(y); /* bf16_from_f32's rounding */
            else
                ((float *)out)[i] = y;
        }
}

void matmul_bf16_forward(float *out, const uint16_t *inp, const uint16_t *w, const float *bias,
                         int M, int K, int N, int accumulate) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        fill_bias(out, 0, bias, NULL, M, N, accumulate);
        return;
    }
    mmb_key key = {M, K, N, K, 1, 1, K, 0, bias != NULL, accumulate != 0, 0, 0, 0};
    mmb_run(&key, out, inp, w, bias);
}

void matmul_bf16_backward(float *dinp, float *dw, const uint16_t *dout, const uint16_t *inp,
                          const uint16_t *w, int M, int K, int N) {
    if (M <= 0 || N <= 0 || K <= 0) return;
    if (dinp) { /* A = dout (M,N), B = w (N,K) */
        mmb_key key = {M, N, K, N, 1, K, 1, 0, 0, 1, 0, 0, 0};
        mmb_run(&key, dinp, dout, w, NULL);
    }
    if (dw) { /* A = dout^T (N,M) strides {1,N}, B = inp (M,K) */
        mmb_key key = {N, M, K, 1, N, K, 1, 0, 0, 1, 0, 0, 0};
        mmb_run(&key, dw, dout, inp, NULL);
    }
}

/* ---- weight gradient with a packed activation ---- */

struct ft_bf16_pack {
    ft_dnnl_scratch mem;   /* grown to the largest pack */
    dnnl_memory_desc_t md; /* the layout (and shape) mem holds */
    const uint16_t *src;   /* what it was packed from; NULL: nothing yet */
};

ft_bf16_pack *bf16_pack_create(void) {
    return calloc(1, sizeof(ft_bf16_pack));
}

void bf16_pack_free(ft_bf16_pack *pk) {
    if (!pk) return;
    ft_free(pk->mem.buf);
    free(pk);
}

static void reorder_locked(const dnnl_memory_desc_t *src_md, const void *src,
                           const dnnl_memory_desc_t *dst_md, void *dst);
static int fast_pack_ok(const dnnl_memory_desc_t *md);
static void fast_pack_rows_bf16(void *dst, const dnnl_memory_desc_t *md, const uint16_t *x,
                                int64_t ld);

/* dw (N,K) [+]= A · inp (M,K), inp packed into pk; A = dout^T (N,M) given as dout (M,N) (strides
 * {1,N}) or, with `t`, as doutT (N,M) row-major (strides {M,1}) */
static void backward_weight(float *dw, const uint16_t *a, int t, const uint16_t *inp,
                            ft_bf16_pack *pk, int fresh, int M, int K, int N, int accumulate) {
    if (N <= 0 || K <= 0) return;
    if (M <= 0) { /* an empty sum: oneDNN rejects zero-size dimensions */
        if (!accumulate) memset(dw, 0, (size_t)N * K * sizeof(float));
        return;
    }
    mmb_key key = {N, M, K, t ? M : 1, t ? 1 : N, 0, 0, 1, 0, accumulate != 0, 0, 0, 0};
    pthread_mutex_lock(&mmb_lock);
    mmb_entry *e = mmb_get_locked(&key);
    if (fresh || pk->src != inp || !dnnl_memory_desc_equal(&pk->md, &e->mm.b_md)) {
        void *buf = ft_dnnl_scratch_reserve(&pk->mem, dnnl_memory_desc_get_size(&e->mm.b_md));
        if (fast_pack_ok(&e->mm.b_md)) {
            fast_pack_rows_bf16(buf, &e->mm.b_md, inp, K);
        } else {
            dnnl_memory_desc_t src_md;
            dnnl_dims_t d = {M, K}, st = {K, 1};
            DNNL_CHECK(dnnl_memory_desc_init_by_strides(&src_md, 2, d, dnnl_bf16, st));
            reorder_locked(&src_md, inp, &e->mm.b_md, buf);
        }
        pk->md = e->mm.b_md;
        pk->src = inp;
    }
    ft_dnnl_mm_exec(&e->mm, mmb_engine, mmb_stream, &mmb_scratch, dw, a, pk->mem.buf, NULL, NULL);
    pthread_mutex_unlock(&mmb_lock);
}

void matmul_bf16_backward_weight(float *dw, const uint16_t *dout, const uint16_t *inp,
                                 ft_bf16_pack *pk, int fresh, int M, int K, int N, int accumulate) {
    backward_weight(dw, dout, 0, inp, pk, fresh, M, K, N, accumulate);
}

void matmul_bf16_backward_weight_t(float *dw, const uint16_t *doutT, const uint16_t *inp,
                                   ft_bf16_pack *pk, int fresh, int M, int K, int N,
                                   int accumulate) {
    backward_weight(dw, doutT, 1, inp, pk, fresh, M, K, N, accumulate);
}

/* ---- packed weights ---- */

#define PACK_SLOTS 4

typedef struct {
    int64_t M;
    dnnl_memory_desc_t md;
    void *buf;
    int owns;
} pack_slot;

struct ft_bf16_weight {
    const float *src; /* (N,K) f32, owned by the caller; NULL once detached */
    int K, N;
    pack_slot fwd[PACK_SLOTS], bwd[PACK_SLOTS]; /* forward B = w^T (K,N); dinp B = w (N,K) */
    /* detached (bf16_weight_detach): the canonical copy every later slot is reordered from — the
     * forward layout of B = w^T (K,N); slots may alias canon_buf (owns = 0) */
    dnnl_memory_desc_t canon_md;
    void *canon_buf;
    int transient; /* packed into the shared scratch right before each product, never kept */
    /* transient: copies packed ahead by bf16_weights_prepack ([fwd]: the layout), each for one
     * product; current while pre_gen[fwd] equals the prepack generation */
    pack_slot pre[2];
    unsigned pre_gen[2];
};

/* The scratch transient weights are packed into (grown under the lock, kept for the process). */
static ft_dnnl_scratch tr_scratch;
/* bf16_weights_prepack's copies (one call's at a time) and its generation: a weight's copy is
 * current while its pre_gen equals pre_gen_cur (never 0) */
static ft_dnnl_scratch pre_scratch;
static unsigned pre_gen_cur = 1;

static void bf16_weights_prepack_drop_locked(void) {
    if (++pre_gen_cur == 0) pre_gen_cur = 1;
}

ft_bf16_weight *bf16_weight_create(const float *w, int K, int N) {
    ft_bf16_weight *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->src = w;
    p->K = K;
    p->N = N;
    return p;
}

ft_bf16_weight *bf16_weight_create_transient(const float *w, int K, int N) {
    ft_bf16_weight *p = bf16_weight_create(w, K, N);
    if (p) p->transient = 1;
    return p;
}

void bf16_weight_free(ft_bf16_weight *w) {
    if (!w) return;
    for (int i = 0; i < PACK_SLOTS; i++) {
        if (w->fwd[i].owns) ft_free(w->fwd[i].buf);
        if (w->bwd[i].owns) ft_free(w->bwd[i].buf);
    }
    ft_free(w->canon_buf);
    free(w);
}

/* One oneDNN reorder from (src_md, src) to (dst_md, dst). Lock held. */
static void reorder_locked(const dnnl_memory_desc_t *src_md, const void *src,
                           const dnnl_memory_desc_t *dst_md, void *dst) {
    dnnl_primitive_desc_t pd;
    DNNL_CHECK(dnnl_reorder_primitive_desc_create(&pd, src_md, mmb_engine, dst_md, mmb_engine,
                                                  NULL));
    dnnl_primitive_t r;
    DNNL_CHECK(dnnl_primitive_create(&r, pd));
    dnnl_primitive_desc_destroy(pd);
    dnnl_memory_t ms, md;
    DNNL_CHECK(dnnl_memory_create(&ms, src_md, mmb_engine, (void *)src));
    DNNL_CHECK(dnnl_memory_create(&md, dst_md, mmb_engine, dst));
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, ms}, {DNNL_ARG_TO, md}};
    DNNL_CHECK(dnnl_primitive_execute(r, mmb_stream, 2, args));
    DNNL_CHECK(dnnl_stream_wait(mmb_stream));
    dnnl_memory_destroy(ms);
    dnnl_memory_destroy(md);
    dnnl_primitive_destroy(r);
}

/* The f32 source (N,K) row-major seen as B = w^T (K,N) (forward) or B = w (N,K) (dinp). */
static void src_md_of(const ft_bf16_weight *w, int fwd, dnnl_memory_desc_t *md) {
    dnnl_dims_t d_f = {w->K, w->N}, s_f = {1, w->K};
    dnnl_dims_t d_b = {w->N, w->K}, s_b = {w->K, 1};
    DNNL_CHECK(dnnl_memory_desc_init_by_strides(md, 2, fwd ? d_f : d_b, dnnl_f32,
                                                fwd ? s_f : s_b));
}

/*
 * The f32 -> packed bf16 conversion of trained weights, by hand: oneDNN picks the layout
 * BA16a64b2a for every bf16 weight these products use (B (a, b) with a the summed dimension: 64
 * columns by 32 rows per block, blocks of a at stride s0 inside each 64-column stripe at stride
 * s1, rows interleaved in pairs as 32-bit words, dims padded to 32 / 64 with zeros). Its reorder
 * ran at ~13 GB/s in the training step (0.4 ms for a 576x1536 weight, ~95 ms of a full
 * fine-tuning step, twice per weight per step); this pass reads the f32 rows once with 64-byte
 * stores. Other layouts (none seen so far) keep the oneDNN reorder, as does FTUNE_NO_FAST_PACK=1
 * in the environment (for A/B measurements: bench_matmul). Rounding: VCVTNE2PS2BF16,
 * round to nearest even as ft_f32_to_bf16 (denormal inputs flushed to zero, as oneDNN's bf16
 * conversion on this ISA). Bit-identical to the reorder: tests/kernels/test_matmul_bf16.c
 * compares products from both packings bit for bit (detached weights keep the reorder).
 */
#if defined(__AVX512BF16__)
#include <immintrin.h>

static int fast_pack_ok(const dnnl_memory_desc_t *md) {
    const dnnl_blocking_desc_t *b = &md->format_desc.blocking;
    const char *off = getenv("FTUNE_NO_FAST_PACK"); /* benchmarks: the oneDNN reorder instead */
    return !(off && *off && *off != '0') && md->ndims == 2 && md->data_type == dnnl_bf16 &&
           md->format_kind == dnnl_blocked && md->offset0 == 0 && md->extra.flags == 0 &&
           b->inner_nblks == 3 && b->inner_blks[0] == 16 && b->inner_idxs[0] == 0 &&
           b->inner_blks[1] == 64 && b->inner_idxs[1] == 1 && b->inner_blks[2] == 2 &&
           b->inner_idxs[2] == 0 && md->padded_dims[0] % 32 == 0 && md->padded_dims[1] % 64 == 0;
}

/* B (a, b) = the rows of src (a rows of ld elements, f32 or bf16) packed into dst (layout md,
 * fast_pack_ok): rows i0 + 2p and i0 + 2p + 1 of each block interleaved into pair words. Blocks
 * in row order, so each thread streams through contiguous rows. The input-gradient layout of a
 * weight (B = w (N,K)) and the weight gradient's packed input (B = x (M,K)). */
static void pack_row_pairs_for(void *dst, const dnnl_memory_desc_t *md, const void *src, int64_t ld,
                               int f32) {
    const int64_t A = md->dims[0], Bd = md->dims[1], es = f32 ? 4 : 2;
    const int64_t na = md->padded_dims[0] / 32, nb = md->padded_dims[1] / 64;
    const int64_t s0 = md->format_desc.blocking.strides[0],
                  s1 = md->format_desc.blocking.strides[1];
    const char *rows = src;
    uint32_t *out = dst; /* pair words: element offsets / 2 */
#pragma omp for schedule(static) nowait
    for (int64_t bx = 0; bx < na * nb; bx++) {
        const int64_t ib = bx / nb, jb = bx % nb, i0 = ib * 32, j0 = jb * 64;
        uint32_t *blk = out + (ib * s0 + jb * s1) / 2; /* word (p, j) at p 64 + j */
        for (int p = 0; p < 16; p++) {
            const int64_t ia = i0 + 2 * p, ibb = ia + 1;
            const void *ra = ia < A ? rows + ia * ld * es : NULL;
            const void *rb = ibb < A ? rows + ibb * ld * es : NULL;
            for (int jc = 0; jc < 4; jc++) {
                const int64_t j = j0 + 16 * jc;
                _mm512_storeu_si512(blk + p * 64 + 16 * jc,
                                    ft_pair16(ra, rb, j, ft_lanes16(Bd - j), f32));
            }
        }
    }
}

static void pack_row_pairs(void *dst, const dnnl_memory_desc_t *md, const void *src, int64_t ld,
                           int f32) {
#pragma omp parallel if (md->dims[0] * md->dims[1] >= 4 * FT_OMP_GRAIN)
    pack_row_pairs_for(dst, md, src, ld, f32);
}

/* B (a, b) = w^T (K,N) packed into dst (layout md, fast_pack_ok) from the f32 weight w (N rows
 * of K): B(i, j) = w[j][i], so each row j of w gives pair words over p, transposed into place 16
 * rows at a time. A task is a group of 16 rows of w (a quarter of a 64-column stripe): the rows
 * are rounded one after the other into a stack buffer, PT_STAGE values of each at a time (a
 * single read stream, the cold f32 weight read in order), and each block's 16 x 16 words are
 * transposed from there. Block by block instead (each block reading 128 bytes from each of its
 * 64 rows: 64 streams) the pack ran at ~13 GB/s; staged, ~25 (0.37-0.38 -> 0.19 ms for a cold
 * 576 x 1536 weight into a warm buffer, as in the step). */
#define PT_STAGE 1024 /* values of a row staged at a time (a multiple of 32) */
#define PT_LD (PT_STAGE / 2 + 16) /* staged row stride in words (off 4 KiB multiples) */
static void pack_transposed_for(void *dst, const dnnl_memory_desc_t *md, const float *w,
                                int64_t K) {
    const int64_t A = md->dims[0], Bd = md->dims[1];
    const int64_t na = md->padded_dims[0] / 32, nb = md->padded_dims[1] / 64;
    const int64_t s0 = md->format_desc.blocking.strides[0],
                  s1 = md->format_desc.blocking.strides[1];
    uint32_t *out = dst;
#pragma omp for schedule(static) nowait
    for (int64_t g = 0; g < nb * 4; g++) {
        const int64_t jb = g / 4, jc = g % 4, j0 = jb * 64 + 16 * jc;
        uint32_t st[16 * PT_LD] __attribute__((aligned(64))); /* st[jj PT_LD + w] */
        for (int64_t c0 = 0; c0 < na; c0 += PT_STAGE / 32) {
            const int64_t c1 = na - c0 < PT_STAGE / 32 ? na : c0 + PT_STAGE / 32;
            for (int jj = 0; jj < 16; jj++) {
                const float *row = j0 + jj < Bd ? w + (j0 + jj) * K : NULL; /* NULL: zero row */
                for (int64_t ib = c0; ib < c1; ib++) {
                    const int64_t i0 = ib * 32;
                    __m512 lo = _mm512_setzero_ps(), hi = _mm512_setzero_ps();
                    if (row) {
                        lo = _mm512_maskz_loadu_ps(ft_lanes16(A - i0), row + i0);
                        hi = _mm512_maskz_loadu_ps(ft_lanes16(A - i0 - 16), row + i0 + 16);
                    }
                    _mm512_store_si512(st + jj * PT_LD + (ib - c0) * 16,
                                       (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
                }
            }
            for (int64_t ib = c0; ib < c1; ib++)
                ft_transpose16((float *)(out + (ib * s0 + jb * s1) / 2 + 16 * jc), 64,
                               (const float *)(st + (ib - c0) * 16), PT_LD);
        }
    }
}

/* the f32 weight w (N,K) into slot layout md: fwd B = w^T (K,N), else B = w (N,K). _for: the
 * share of the calling thread's team (a parallel region's, or alone outside one), no barrier */
static void fast_pack_for(void *dst, const dnnl_memory_desc_t *md, const float *w, int64_t K,
                          int fwd) {
    if (fwd)
        pack_transposed_for(dst, md, w, K);
    else
        pack_row_pairs_for(dst, md, w, K, 1);
}

static void fast_pack(void *dst, const dnnl_memory_desc_t *md, const float *w, int64_t K, int fwd) {
#pragma omp parallel if (md->dims[0] * md->dims[1] >= 4 * FT_OMP_GRAIN)
    fast_pack_for(dst, md, w, K, fwd);
}

static void fast_pack_rows_bf16(void *dst, const dnnl_memory_desc_t *md, const uint16_t *x,
                                int64_t ld) {
    pack_row_pairs(dst, md, x, ld, 0);
}
#else
static int fast_pack_ok(const dnnl_memory_desc_t *md) {
    (void)md;
    return 0;
}
static void fast_pack_rows_bf16(void *dst, const dnnl_memory_desc_t *md, const uint16_t *x,
                                int64_t ld) {
    (void)dst, (void)md, (void)x, (void)ld;
}
static void fast_pack(void *dst, const dnnl_memory_desc_t *md, const float *w, int64_t K, int fwd) {
    (void)dst, (void)md, (void)w, (void)K, (void)fwd;
}
static void fast_pack_for(void *dst, const dnnl_memory_desc_t *md, const float *w, int64_t K,
                          int fwd) {
    (void)dst, (void)md, (void)w, (void)K, (void)fwd;
}
#endif

/* Fill slot s (desc set, buffer allocated) from the f32 source, or, once detached, from the
 * canonical bf16 copy: bf16 to bf16, so the bytes are those a pack from the source gave. The
 * canonical copy holds B = w^T (K,N); the input-gradient layout wants w (N,K), reached by
 * swapping its two axes (a view, no copy). Lock held. */
static void pack_locked(const ft_bf16_weight *w, pack_slot *s, int fwd) {
    dnnl_memory_desc_t src_md;
    if (w->src) {
        if (fast_pack_ok(&s->md)) {
            fast_pack(s->buf, &s->md, w->src, w->K, fwd);
            return;
        }
        src_md_of(w, fwd, &src_md);
        reorder_locked(&src_md, w->src, &s->md, s->buf);
        return;
    }
    if (fwd) {
        src_md = w->canon_md;
    } else {
        int perm[2] = {1, 0};
        DNNL_CHECK(dnnl_memory_desc_permute_axes(&src_md, &w->canon_md, perm));
    }
    reorder_locked(&src_md, w->canon_buf, &s->md, s->buf);
}

/* The slot packed for the primitive `e` (row count M), created and filled on first use. A new M
 * whose layout equals an existing slot's gets an alias slot (owns = 0) sharing those bytes. */
static pack_slot *slot_for_locked(ft_bf16_weight *w, const mmb_entry *e, int64_t M, int fwd) {
    pack_slot *slots = fwd ? w->fwd : w->bwd;
    int free_i = -1;
    for (int i = 0; i < PACK_SLOTS; i++) {
        if (slots[i].buf && slots[i].M == M) return &slots[i];
        if (!slots[i].buf && free_i < 0) free_i = i;
    }
    if (free_i < 0) { /* more than PACK_SLOTS row counts: start over (allocates, rare) */
        for (int i = 0; i < PACK_SLOTS; i++) {
            if (slots[i].owns) ft_free(slots[i].buf);
            memset(&slots[i], 0, sizeof slots[i]);
        }
        free_i = 0;
    }
    pack_slot *s = &slots[free_i];
    s->md = e->mm.b_md;
    s->M = M;
    for (int i = 0; i < PACK_SLOTS; i++)
        if (slots[i].buf && slots[i].owns && dnnl_memory_desc_equal(&slots[i].md, &e->mm.b_md)) {
            s->buf = slots[i].buf;
            s->owns = 0;
            return s;
        }
    if (fwd && w->canon_buf && dnnl_memory_desc_equal(&w->canon_md, &e->mm.b_md)) {
        s->buf = w->canon_buf;
        s->owns = 0;
        return s;
    }
    s->buf = ft_calloc(dnnl_memory_desc_get_size(&e->mm.b_md), 1);
    FT_ASSERT(s->buf != NULL);
    s->owns = 1;
    pack_locked(w, s, fwd);
    return s;
}

/* The packed copy a product of M rows reads: the kept slot, or for a transient weight the shared
 * scratch, packed now (the returned slot lives until the lock is released). */
static pack_slot *use_slot_locked(ft_bf16_weight *w, const mmb_entry *e, int64_t M, int fwd) {
    if (!w->transient) return slot_for_locked(w, e, M, fwd);
    if (w->pre_gen[fwd] == pre_gen_cur && w->pre[fwd].M == M &&
        dnnl_memory_desc_equal(&w->pre[fwd].md, &e->mm.b_md)) {
        w->pre_gen[fwd] = 0; /* one product: a later one packs from the source again */
        return &w->pre[fwd];
    }
    static pack_slot tmp;
    tmp.M = M;
    tmp.md = e->mm.b_md;
    tmp.buf = ft_dnnl_scratch_reserve(&tr_scratch, dnnl_memory_desc_get_size(&tmp.md));
    tmp.owns = 0;
    pack_locked(w, &tmp, fwd);
    return &tmp;
}

/* the key of matmul_bf16w_forward (fwd) or matmul_bf16w_backward_input without bias, written */
static mmb_key weight_key(const ft_bf16_weight *w, int64_t M, int fwd) {
    return fwd ? (mmb_key){M, w->K, w->N, w->K, 1, 0, 0, 1, 0, 0, 0, 0, 0}
               : (mmb_key){M, w->N, w->K, w->N, 1, 0, 0, 1, 0, 0, 0, 0, 0};
}

void bf16_weights_prepack(ft_bf16_weight *const *ws, const int *fwd, int n, int M) {
    enum { MAX = 16 };
    pack_slot *todo[MAX];
    const ft_bf16_weight *src[MAX];
    int kind[MAX];
    size_t off[MAX], total = 0;
    int nt = 0;
    pthread_mutex_lock(&mmb_lock);
    bf16_weights_prepack_drop_locked();
    for (int i = 0; i < n && nt < MAX && M > 0; i++) {
        ft_bf16_weight *w = ws[i];
        if (!w || !w->transient || !w->src || w->K <= 0 || w->N <= 0) continue;
        const int f = fwd[i] != 0;
        if (w->pre_gen[f] == pre_gen_cur) continue; /* listed twice: packed once */
        const mmb_key key = weight_key(w, M, f);
        const dnnl_memory_desc_t md = mmb_get_locked(&key)->mm.b_md;
        if (!fast_pack_ok(&md)) continue; /* packed at its product by oneDNN's reorder */
        pack_slot *s = &w->pre[f];
        s->md = md;
        s->M = M;
        s->owns = 0;
        w->pre_gen[f] = pre_gen_cur;
        off[nt] = total;
        total += (dnnl_memory_desc_get_size(&md) + 63) / 64 * 64;
        src[nt] = w;
        kind[nt] = f;
        todo[nt++] = s;
    }
    char *base = nt ? ft_dnnl_scratch_reserve(&pre_scratch, total) : NULL;
    for (int i = 0; i < nt; i++)
        todo[i]->buf = base + off[i];
#pragma omp parallel if (total >= 8 * FT_OMP_GRAIN)
    for (int i = 0; i < nt; i++) /* each weight's share, no barrier between them */
        fast_pack_for(todo[i]->buf, &todo[i]->md, src[i]->src, src[i]->K, kind[i]);
    pthread_mutex_unlock(&mmb_lock);
}

void bf16_weights_prepack_drop(void) {
    pthread_mutex_lock(&mmb_lock);
    bf16_weights_prepack_drop_locked();
    pthread_mutex_unlock(&mmb_lock);
}

void bf16_weight_refresh(ft_bf16_weight *w) {
    FT_ASSERT(w->src != NULL); /* a detached weight is frozen */
    if (w->transient) return;  /* packed at each use */
    pthread_mutex_lock(&mmb_lock);
    for (int i = 0; i < PACK_SLOTS; i++) {
        if (w->fwd[i].owns) pack_locked(w, &w->fwd[i], 1);
        if (w->bwd[i].owns) pack_locked(w, &w->bwd[i], 0);
    }
    pthread_mutex_unlock(&mmb_lock);
}

int bf16_weight_detach(ft_bf16_weight *w, int M) {
    int K = w->K, N = w->N;
    if (!w->src) return 1;
    if (M <= 0 || N <= 0 || K <= 0 || w->transient) return 0; /* nothing to pack for */
    pthread_mutex_lock(&mmb_lock);
    for (int i = 0; i < PACK_SLOTS; i++) { /* rebuilt below, from the canonical copy */
        if (w->fwd[i].owns) ft_free(w->fwd[i].buf);
        if (w->bwd[i].owns) ft_free(w->bwd[i].buf);
        memset(&w->fwd[i], 0, sizeof w->fwd[i]);
        memset(&w->bwd[i], 0, sizeof w->bwd[i]);
    }
    /* the forward product, as matmul_bf16w_forward */
    mmb_key kf = {M, K, N, K, 1, 0, 0, 1, 0, 0, 0, 0, 0};
    w->canon_md = mmb_get_locked(&kf)->mm.b_md;
    w->canon_buf = ft_calloc(dnnl_memory_desc_get_size(&w->canon_md), 1);
    FT_ASSERT(w->canon_buf != NULL);
    dnnl_memory_desc_t md;
    src_md_of(w, 1, &md);
    reorder_locked(&md, w->src, &w->canon_md, w->canon_buf);
    w->src = NULL;
    /* the slots of row count M now, so the first step reorders nothing (mmb_get_locked may move
     * the cache: one entry at a time) */
    slot_for_locked(w, mmb_get_locked(&kf), M, 1);
    mmb_key kb = {M, N, K, N, 1, 0, 0, 1, 0, 1, 0, 0, 0}; /* as matmul_bf16w_backward_input */
    slot_for_locked(w, mmb_get_locked(&kb), M, 0);
    pthread_mutex_unlock(&mmb_lock);
    return 1;
}

void bf16_weight_unpack(const ft_bf16_weight *w, float *dst) {
    FT_ASSERT(w->src == NULL && w->canon_buf != NULL);
    dnnl_memory_desc_t md;
    src_md_of(w, 1, &md);
    pthread_mutex_lock(&mmb_lock);
    reorder_locked(&w->canon_md, w->canon_buf, &md, dst); /* bf16 -> f32: exact */
    pthread_mutex_unlock(&mmb_lock);
}

/* out (M,N) [=|+=] inp · w^T [+ bias] [+ res], out f32 or (outb) bf16 */
static void forward_w(void *out, int outb, const uint16_t *inp, ft_bf16_weight *w,
                      const float *bias, const float *res, int M, int accumulate) {
    int K = w->K, N = w->N;
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        fill_bias(out, outb, bias, res, M, N, accumulate);
        return;
    }
    mmb_key key = {M, K, N, K, 1, 0, 0, 1, bias != NULL, accumulate != 0, outb, res != NULL, 0};
    pthread_mutex_lock(&mmb_lock);
    mmb_entry *e = mmb_get_locked(&key);
    pack_slot *s = use_slot_locked(w, e, M, 1);
    ft_dnnl_mm_exec(&e->mm, mmb_engine, mmb_stream, &mmb_scratch, out, inp, s->buf, bias, res);
    pthread_mutex_unlock(&mmb_lock);
}

void matmul_bf16w_forward(float *out, const uint16_t *inp, ft_bf16_weight *w, const float *bias,
                          int M, int accumulate) {
    forward_w(out, 0, inp, w, bias, NULL, M, accumulate);
}

void matmul_bf16w_forward_res(float *out, const uint16_t *inp, ft_bf16_weight *w, const float *bias,
                              const float *res, int M) {
    forward_w(out, 0, inp, w, bias, res, M, 0);
}

void matmul_bf16w_forward_bf16(uint16_t *out, const uint16_t *inp, ft_bf16_weight *w,
                               const float *bias, int M) {
    forward_w(out, 1, inp, w, bias, NULL, M, 0);
}

void matmul_bf16w_backward_input(float *dinp, const uint16_t *dout, ft_bf16_weight *w, int M,
                                 int accumulate) {
    int K = w->K, N = w->N;
    if (M <= 0 || K <= 0) return;
    if (N <= 0) { /* an empty sum */
        if (!accumulate) memset(dinp, 0, (size_t)M * K * sizeof(float));
        return;
    }
    mmb_key key = {M, N, K, N, 1, 0, 0, 1, 0, accumulate != 0, 0, 0, 0};
    pthread_mutex_lock(&mmb_lock);
    mmb_entry *e = mmb_get_locked(&key);
    pack_slot *s = use_slot_locked(w, e, M, 0);
    ft_dnnl_mm_exec(&e->mm, mmb_engine, mmb_stream, &mmb_scratch, dinp, dout, s->buf, NULL, NULL);
    pthread_mutex_unlock(&mmb_lock);
}
