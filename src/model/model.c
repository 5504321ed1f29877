/*
 * Loading and saving a whole model folder: config.json + safetensors (single or sharded) into the
 * one f32 params buffer, and back out in the config's storage dtype.
 * The forward pass lives elsewhere; this file only owns ft_model's memory.
 */
#include "ftune/model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

ft_status ft_model_load(ft_model *m, const char *dir) {
    memset(m, 0, sizeof *m);
    ft_st_set set = {0};
    ft_status st = ft_config_load(&m->cfg, dir);
    if (st != FT_OK) return st;
    if ((st = ft_st_open(&set, dir)) != FT_OK) goto fail;
    if ((st = ft_weights_layout(&m->cfg, &m->tensors, &m->n_tensors, &m->n_params)) != FT_OK)
        goto fail;
    if ((st = ft_weights_check(&m->cfg, m->tensors, m->n_tensors, &set)) != FT_OK) goto fail;
    m->params = ft_calloc(m->n_params, sizeof(float));
    m->rope_inv_freq = ft_calloc((size_t)m->cfg.head_dim / 2, sizeof(float));
    if (!m->params || !m->rope_inv_freq) {
        st = ft_error_wrap(FT_ERR_NOMEM, "%s: %zu parameters", dir, m->n_params);
        goto fail;
    }
    for (int i = 0; i < m->n_tensors; i++) {
        const ft_tensor_info *ti = &m->tensors[i];
        const ft_st_tensor *t = ft_st_find(&set, ti->name);
        if ((st = ft_convert_to_f32(m->params + ti->offset, t->data, t->dtype, ti->numel)) !=
            FT_OK) {
            st = ft_error_wrap(st, "%s: tensor '%s'", set.paths[t->file], ti->name);
            goto fail;
        }
    }
    ft_weights_bind(&m->w, &m->cfg, m->params);
    ft_rope_inv_freq(&m->cfg, m->rope_inv_freq);
    ft_st_close(&set);
    return FT_OK;
fail:
    ft_st_close(&set);
    ft_model_free(m);
    return st;
}

void ft_model_free(ft_model *m) {
    if (!m) return;
    free(m->tensors);
    ft_free(m->params);
    ft_free(m->rope_inv_freq);
    memset(m, 0, sizeof *m);
}

ft_status ft_model_save(const ft_model *m, const char *dir) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return ft_errorf(FT_ERR_IO, "%s: cannot create folder: %s", dir, strerror(errno));
    char path[4096];
    char *json = NULL;
    ft_status st = ft_config_to_json(&m->cfg, &json);
    if (st != FT_OK) return st;
    if ((size_t)snprintf(path, sizeof path, "%s/config.json", dir) >= sizeof path) {
        free(json);
        return ft_errorf(FT_ERR_ARG, "%s: path too long", dir);
    }

    /* the weights first, config.json last (each via a temporary and a rename): a failed save
     * never leaves a config.json without its weights, or beside older ones */
    ft_dtype dt = m->cfg.torch_dtype;
    void *conv = NULL;
    const char *src = (const char *)m->params;
    if (dt != FT_DTYPE_F32) {
        conv = ft_calloc(m->n_params, ft_dtype_size(dt));
        if (!conv) {
            free(json);
            return ft_error_wrap(FT_ERR_NOMEM, "%s", dir);
        }
        if ((st = ft_convert_from_f32(conv, m->params, dt, m->n_params)) != FT_OK) {
            ft_free(conv);
            free(json);
            return st;
        }
        src = conv;
    }
    ft_st_write_tensor *ws = calloc((size_t)m->n_tensors, sizeof *ws);
    if (!ws) {
        ft_free(conv);
        free(json);
        return ft_errorf(FT_ERR_NOMEM, "%s: out of memory", dir);
    }
    for (int i = 0; i < m->n_tensors; i++) {
        const ft_tensor_info *ti = &m->tensors[i];
        ws[i].name = ti->name;
        ws[i].dtype = dt;
        ws[i].ndim = ti->cols ? 2 : 1;
        ws[i].shape[0] = ti->rows;
        ws[i].shape[1] = ti->cols;
        ws[i].data = src + ti->offset * ft_dtype_size(dt);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    const char *meta[] = {"format", "pt", NULL};
    st = ft_st_write(path, ws, m->n_tensors, meta);
    free(ws);
    ft_free(conv);
    if (st == FT_OK) {
        snprintf(path, sizeof path, "%s/config.json", dir);
        st = ft_write_file_atomic(path, json, strlen(json));
    }
    free(json);
    return st;
}
