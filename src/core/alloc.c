/*
 * Aligned allocation, file helpers (atomic write, whole-file read), clocks and peak RSS.
 */
#include "ftune/core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FT_HUGE_PAGE ((size_t)2 << 20)
#define FT_HUGE_MIN ((size_t)4 << 20) /* below this, whole huge pages would waste too much */

void *ft_calloc(size_t n, size_t size) {
    if (size && n > SIZE_MAX / size) {
        ft_errorf(FT_ERR_NOMEM, "allocation of %zu x %zu bytes overflows", n, size);
        return NULL;
    }
    size_t bytes = n * size;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded == 0) rounded = 64;
    size_t align = 64;
    if (rounded >= FT_HUGE_MIN) { /* whole 2 MiB pages, so each can be a transparent huge page */
        align = FT_HUGE_PAGE;
        rounded = (rounded + align - 1) & ~(align - 1);
    }
    void *p = aligned_alloc(align, rounded);
    if (!p) {
        ft_errorf(FT_ERR_NOMEM, "out of memory allocating %zu bytes", bytes);
        return NULL;
    }
    /* Kernels default to THP "madvise" (Debian's setting): only blocks asked for get 2 MiB pages.
     * Weights, moments, gradients and activations are dense and walked with strides (packing,
     * oneDNN's blocked reads), where 4 KiB pages cost TLB misses: the SmolLM-135M bf16 step ran
     * ~2.5% faster (bench/RESULTS.md, thirteenth session). Advice only: where the kernel gives no
     * huge pages the block works the same. */
    if (align == FT_HUGE_PAGE) (void)madvise(p, rounded, MADV_HUGEPAGE);
    memset(p, 0, rounded);
    return p;
}

void ft_free(void *p) { free(p); }

size_t ft_drop_pages(void *p, size_t n) {
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)p + page - 1) & ~(page - 1), hi = ((uintptr_t)p + n) & ~(page - 1);
    if (hi <= lo || madvise((void *)lo, hi - lo, MADV_DONTNEED) != 0) return 0;
    return hi - lo;
}

char *ft_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (!d) {
        ft_errorf(FT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    memcpy(d, s, n);
    return d;
}

double ft_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

size_t ft_peak_rss_bytes(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (size_t)ru.ru_maxrss * 1024; /* Linux reports KiB */
}

ft_status ft_write_file_atomic(const char *path, const void *data, size_t n) {
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp)
        return ft_errorf(FT_ERR_ARG, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return ft_errorf(FT_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    const char *p = data;
    size_t left = n;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            return ft_errorf(FT_ERR_IO, "%s: write failed: %s", path, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return ft_errorf(FT_ERR_IO, "%s: write failed: %s", path, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return ft_errorf(FT_ERR_IO, "%s: rename failed: %s", path, strerror(e));
    }
    return FT_OK;
}

ft_status ft_read_file(const char *path, char **out, size_t *len) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return ft_errorf(FT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return ft_errorf(FT_ERR_IO, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return ft_errorf(FT_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, n);
    }
    if (n && fread(buf, 1, n, f) != n) {
        free(buf);
        fclose(f);
        return ft_errorf(FT_ERR_IO, "%s: short read", path);
    }
    fclose(f);
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return FT_OK;
}
