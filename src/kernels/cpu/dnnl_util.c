/* oneDNN helpers shared by matmul.c (f32) and matmul_bf16.c (bf16): see dnnl_util.h. */
#include "dnnl_util.h"

static dnnl_primitive_t matmul_create(dnnl_engine_t engine, const dnnl_memory_desc_t *a_md,
                                      dnnl_memory_desc_t *b_md, const dnnl_memory_desc_t *bias_md,
                                      const dnnl_memory_desc_t *c_md, int accumulate,
                                      const dnnl_memory_desc_t *res_md,
                                      dnnl_memory_desc_t *scratch_md) {
    int b_any = b_md->format_kind == dnnl_format_kind_any;
    dnnl_matmul_desc_t desc;
    DNNL_CHECK(dnnl_matmul_desc_init(&desc, a_md, b_md, bias_md, c_md));
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    DNNL_CHECK(dnnl_primitive_attr_create(&attr));
    DNNL_CHECK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    if (accumulate || res_md) {
        DNNL_CHECK(dnnl_post_ops_create(&ops));
        if (accumulate) DNNL_CHECK(dnnl_post_ops_append_sum(ops, 1.0f));
        if (res_md) DNNL_CHECK(dnnl_post_ops_append_binary(ops, dnnl_binary_add, res_md));
        DNNL_CHECK(dnnl_primitive_attr_set_post_ops(attr, ops));
    }
    dnnl_primitive_desc_t pd;
    DNNL_CHECK(dnnl_primitive_desc_create(&pd, &desc, attr, engine, NULL));
    if (b_any) *b_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    *scratch_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    dnnl_primitive_t prim;
    DNNL_CHECK(dnnl_primitive_create(&prim, pd));
    dnnl_primitive_desc_destroy(pd);
    if (ops) dnnl_post_ops_destroy(ops);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return prim;
}

void ft_dnnl_mm_init(ft_dnnl_mm *p, dnnl_engine_t engine, dnnl_data_type_t ab, int64_t m, int64_t k,
                     int64_t n, int64_t a_rs, int64_t a_cs, int64_t b_rs, int64_t b_cs, int b_any,
                     int has_bias, int accumulate, int c_bf16, int add_res) {
    dnnl_dims_t ad = {m, k}, as = {a_rs, a_cs}, bd = {k, n}, bs = {b_rs, b_cs};
    dnnl_dims_t cd = {m, n}, cs = {n, 1}, biasd = {1, n}, biass = {n, 1};
    DNNL_CHECK(dnnl_memory_desc_init_by_strides(&p->a_md, 2, ad, ab, as));
    if (b_any)
        DNNL_CHECK(dnnl_memory_desc_init_by_tag(&p->b_md, 2, bd, ab, dnnl_format_tag_any));
    else
        DNNL_CHECK(dnnl_memory_desc_init_by_strides(&p->b_md, 2, bd, ab, bs));
    DNNL_CHECK(
        dnnl_memory_desc_init_by_strides(&p->c_md, 2, cd, c_bf16 ? dnnl_bf16 : dnnl_f32, cs));
    if (add_res) DNNL_CHECK(dnnl_memory_desc_init_by_strides(&p->res_md, 2, cd, dnnl_f32, cs));
    if (has_bias)
        DNNL_CHECK(dnnl_memory_desc_init_by_strides(&p->bias_md, 2, biasd, dnnl_f32, biass));
    p->has_bias = has_bias;
    p->add_res = add_res;
    p->res_idx = accumulate ? 1 : 0;
    p->prim = matmul_create(engine, &p->a_md, &p->b_md, has_bias ? &p->bias_md : NULL, &p->c_md,
                            accumulate, add_res ? &p->res_md : NULL, &p->scratch_md);
    p->scratch_bytes = dnnl_memory_desc_get_size(&p->scratch_md);
}

void *ft_dnnl_scratch_reserve(ft_dnnl_scratch *scratch, size_t bytes) {
    if (bytes > scratch->cap) {
        ft_free(scratch->buf);
        scratch->buf = ft_calloc(bytes, 1);
        FT_ASSERT(scratch->buf != NULL);
        scratch->cap = bytes;
    }
    return scratch->buf;
}

void ft_dnnl_mm_exec(const ft_dnnl_mm *p, dnnl_engine_t engine, dnnl_stream_t stream,
                     ft_dnnl_scratch *scratch, void *c, const void *a, const void *b,
                     const float *bias, const float *res) {
    dnnl_memory_t ma, mb, mc, mbias = NULL, ms = NULL, mres = NULL;
    FT_ASSERT(!p->add_res == !res);
    ft_dnnl_scratch_reserve(scratch, p->scratch_bytes);
    DNNL_CHECK(dnnl_memory_create(&ma, &p->a_md, engine, (void *)a));
    DNNL_CHECK(dnnl_memory_create(&mb, &p->b_md, engine, (void *)b));
    DNNL_CHECK(dnnl_memory_create(&mc, &p->c_md, engine, c));
    dnnl_exec_arg_t args[6] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}};
    int nargs = 3;
    if (p->has_bias) {
        DNNL_CHECK(dnnl_memory_create(&mbias, &p->bias_md, engine, (void *)bias));
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, mbias};
    }
    if (res) { /* the binary add is the last post-op: index 1 after a sum, else 0 */
        DNNL_CHECK(dnnl_memory_create(&mres, &p->res_md, engine, (void *)res));
        args[nargs++] =
            (dnnl_exec_arg_t){DNNL_ARG_ATTR_MULTIPLE_POST_OP(p->res_idx) | DNNL_ARG_SRC_1, mres};
    }
    if (p->scratch_bytes) {
        DNNL_CHECK(dnnl_memory_create(&ms, &p->scratch_md, engine, scratch->buf));
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, ms};
    }
    DNNL_CHECK(dnnl_primitive_execute(p->prim, stream, nargs, args));
    DNNL_CHECK(dnnl_stream_wait(stream));
    dnnl_memory_destroy(ma);
    dnnl_memory_destroy(mb);
    dnnl_memory_destroy(mc);
    if (mbias) dnnl_memory_destroy(mbias);
    if (ms) dnnl_memory_destroy(ms);
    if (mres) dnnl_memory_destroy(mres);
}
