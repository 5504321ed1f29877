/* ft_calloc's contract (include/ftune/core.h): zeroed, 64-byte aligned, 2 MiB aligned from 4 MiB
 * (so each page of a large block can be a transparent huge page), overflow refused with an error;
 * ft_drop_pages gives whole pages back and they read as zero. */
#include "../test.h"
#include "ftune/core.h"

#include <string.h>

static int all_zero(const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

int main(void) {
    const size_t MiB = (size_t)1 << 20;
    const size_t sizes[] = {1, 63, 65, 4096 + 1, 4 * MiB - 64, 4 * MiB, 4 * MiB + 1, 9 * MiB + 7};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        size_t n = sizes[i];
        unsigned char *p = ft_calloc(n, 1);
        char name[64];
        snprintf(name, sizeof name, "calloc_%zu", n);
        size_t want = n >= 4 * MiB ? 2 * MiB : 64;
        CHECK(name, p && (uintptr_t)p % want == 0 && all_zero(p, n),
              "block %p (want %zu-byte alignment, zeroed)", (void *)p, want);
        if (p) memset(p, 0xab, n); /* the whole block is writable */
        ft_free(p);
    }

    /* a reused block comes back zeroed: dirty a large block, free it, allocate the same size */
    unsigned char *a = ft_calloc(6 * MiB, 1);
    memset(a, 0x5a, 6 * MiB);
    ft_free(a);
    a = ft_calloc(6 * MiB, 1);
    CHECK("calloc_reuse_zeroed", a && all_zero(a, 6 * MiB), "stale bytes in a fresh block");

    /* drop pages from the middle of a large (huge-page advised) block: they read as zero, the
     * rest keeps its bytes */
    memset(a, 0x77, 6 * MiB);
    size_t got = ft_drop_pages(a + MiB + 100, 2 * MiB);
    int kept = 1, zeroed = 1;
    for (size_t i = 0; i < 6 * MiB; i++) {
        int inside = i >= MiB + 4096 && i < 3 * MiB; /* the whole 4 KiB pages in the range */
        if (inside && a[i]) zeroed = 0;
        if (i < MiB + 100 && a[i] != 0x77) kept = 0;
        if (i >= 3 * MiB + 100 && a[i] != 0x77) kept = 0;
    }
    CHECK("drop_pages_huge_block", got == 2 * MiB - 4096 && zeroed && kept,
          "gave back %zu bytes (want %zu), dropped pages zero %d, others kept %d", got,
          2 * MiB - 4096, zeroed, kept);
    ft_free(a);

    void *big = ft_calloc(SIZE_MAX / 2, 4);
    CHECK("calloc_overflow_refused", big == NULL, "an overflowing size was allocated");
    return ft_test_exit();
}
