/* heap.c: the out-of-line part of the binary heap of heap.h: the array
 * doubling from 64 elements, and its release. */
#include "util/heap.h"
#include "util/util.h"

#include <stdlib.h>

int heap_grow(heap *h, size_t size) {
    size_t cap = h->cap ? h->cap * 2 : 64;
    if (size == 0 || cap > SIZE_MAX / size) {
        err_set("heap: %zu elements of %zu bytes do not fit in memory", cap, size);
        return -1;
    }
    unsigned char *a = xrealloc(h->a, size * cap);
    if (!a) return -1;
    h->a = a;
    h->cap = cap;
    return 0;
}

void heap_free(heap *h) {
    free(h->a);
    h->a = NULL;
    h->n = h->cap = 0;
}
