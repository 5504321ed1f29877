/*
 * Element types as safetensors names them, and exact conversions between f32, f16 and bf16
 * (round to nearest even, like torch's .to()). Inputs may be unaligned (mmapped files).
 */
#include "ftune/core.h"

#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_info[FT_DTYPE_COUNT] = {
    [FT_DTYPE_F32] = {"F32", 4}, [FT_DTYPE_F16] = {"F16", 2}, [FT_DTYPE_BF16] = {"BF16", 2},
    [FT_DTYPE_F64] = {"F64", 8}, [FT_DTYPE_I64] = {"I64", 8}, [FT_DTYPE_I32] = {"I32", 4},
    [FT_DTYPE_I16] = {"I16", 2}, [FT_DTYPE_I8] = {"I8", 1},   [FT_DTYPE_U8] = {"U8", 1},
    [FT_DTYPE_BOOL] = {"BOOL", 1},
};

size_t ft_dtype_size(ft_dtype t) { return (unsigned)t < FT_DTYPE_COUNT ? dtype_info[t].size : 0; }

const char *ft_dtype_name(ft_dtype t) { return (unsigned)t < FT_DTYPE_COUNT ? dtype_info[t].name : "?"; }

int ft_dtype_parse(const char *name, ft_dtype *out) {
    for (int i = 0; i < FT_DTYPE_COUNT; i++)
        if (strcmp(name, dtype_info[i].name) == 0) {
            *out = (ft_dtype)i;
            return 0;
        }
    return -1;
}

static inline uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float ft_bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

uint16_t ft_f32_to_bf16(float f) {
    uint32_t u = f2u(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

float ft_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0) {
        if (man == 0) return u2f(sign);
        /* subnormal: value = man * 2^-24 */
        float v = (float)man * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    if (exp == 31) return u2f(sign | 0x7f800000u | (man << 13));
    return u2f(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t ft_f32_to_f16(float f) {
    uint32_t u = f2u(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00; /* NaN */
    if (a >= 0x477ff000u) return sign | 0x7c00; /* rounds to >= 65520: inf */
    if (a < 0x38800000u) {                       /* below smallest normal 2^-14: subnormal */
        if (a < 0x33000000u) return sign;        /* < 2^-25 rounds to 0 */
        uint32_t e = a >> 23;
        uint32_t m = (a & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t r = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return sign | (uint16_t)r;
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1) - 0x38000000u;
    return sign | (uint16_t)(r >> 13);
}

ft_status ft_convert_to_f32(float *dst, const void *src, ft_dtype t, size_t n) {
    const unsigned char *s = src;
    switch (t) {
    case FT_DTYPE_F32: memcpy(dst, src, n * 4); return FT_OK;
    case FT_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = ft_bf16_to_f32(h);
        }
        return FT_OK;
    case FT_DTYPE_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = ft_f16_to_f32(h);
        }
        return FT_OK;
    case FT_DTYPE_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, s + 8 * i, 8);
            dst[i] = (float)d;
        }
        return FT_OK;
    default: return ft_errorf(FT_ERR_UNSUPPORTED, "cannot convert %s to F32", ft_dtype_name(t));
    }
}

ft_status ft_convert_from_f32(void *dst, const float *src, ft_dtype t, size_t n) {
    unsigned char *d = dst;
    switch (t) {
    case FT_DTYPE_F32: memcpy(dst, src, n * 4); return FT_OK;
    case FT_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = ft_f32_to_bf16(src[i]);
            memcpy(d + 2 * i, &h, 2);
        }
        return FT_OK;
    case FT_DTYPE_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = ft_f32_to_f16(src[i]);
            memcpy(d + 2 * i, &h, 2);
        }
        return FT_OK;
    default: return ft_errorf(FT_ERR_UNSUPPORTED, "cannot convert F32 to %s", ft_dtype_name(t));
    }
}
