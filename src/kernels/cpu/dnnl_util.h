/*
 * What the f32 and bf16 matmul files share about oneDNN: the status check (a oneDNN failure on
 * shapes we built ourselves is a programmer error, so it trips the always-on assert) and building
 * one matmul primitive from its memory descriptors.
 */
#ifndef FTUNE_DNNL_UTIL_H
#define FTUNE_DNNL_UTIL_H

#include "ftune/core.h"

#include <oneapi/dnnl/dnnl.h>

#define DNNL_CHECK(call)                                                                           \
    do {                                                                                           \
        dnnl_status_t st_ = (call);                                                                \
        if (st_ != dnnl_success) ft_assert_fail(#call, __FILE__, __LINE__);                        \
    } while (0)

/* One matmul C (m,n) [+]= A (m,k) · B (k,n) [+ bias (1,n)] [+ R (m,n)]: A and B of type `ab`
 * (f32 or bf16) with the given row/column strides, or B in the layout oneDNN prefers (b_any: b_md
 * then holds that layout, so the caller can reorder weights into it once); bias f32, C f32 or
 * (c_bf16) bf16 row-major, rounded to nearest even as the epilogue stores it. accumulate adds a
 * `sum` post-op (C += instead of C =); add_res a binary add post-op of R, f32 (m,n) row-major,
 * which must not overlap C (C may hold partial sums before the post-ops run). */
typedef struct {
    dnnl_primitive_t prim;
    dnnl_memory_desc_t a_md, b_md, c_md, bias_md, scratch_md;
    dnnl_memory_desc_t res_md;
    int has_bias, add_res, res_idx; /* res_idx: the binary add's place among the post-ops */
    size_t scratch_bytes; /* the primitive's scratchpad, which the caller provides */
} ft_dnnl_mm;

/* A scratchpad buffer the caller owns and serialises with its stream, grown to the largest
 * primitive's need on first use and then reused: oneDNN's own (library-managed) scratchpad was
 * allocated and released around each execution, which cost page faults on every product
 * (5.5% of a LoRA step's samples on the SmolLM shape). */
typedef struct {
    void *buf;
    size_t cap;
} ft_dnnl_scratch;

void ft_dnnl_mm_init(ft_dnnl_mm *p, dnnl_engine_t engine, dnnl_data_type_t ab, int64_t m, int64_t k,
                     int64_t n, int64_t a_rs, int64_t a_cs, int64_t b_rs, int64_t b_cs, int b_any,
                     int has_bias, int accumulate, int c_bf16, int add_res);
/* scratch->buf grown to at least `bytes` (the old contents are not kept) */
void *ft_dnnl_scratch_reserve(ft_dnnl_scratch *scratch, size_t bytes);

/* Run it on `stream` with `scratch` as its scratchpad and wait; the caller serialises uses of
 * the stream and the scratch. */
void ft_dnnl_mm_exec(const ft_dnnl_mm *p, dnnl_engine_t engine, dnnl_stream_t stream,
                     ft_dnnl_scratch *scratch, void *c, const void *a, const void *b,
                     const float *bias, const float *res);

#endif
