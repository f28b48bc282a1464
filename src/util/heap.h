/* heap.h: a binary heap over fixed-size elements stored by value in one
 * growing array, ordered by a caller's "comes before" function (so it is a
 * min-heap or a max-heap as that function says). Popping returns the element
 * that comes before all others; among elements that compare equal the order
 * is unspecified (make the function a strict total order where that matters).
 *
 * The element size and the function are arguments of every push and pop, not
 * fields of the heap: heap_push/heap_pop are always inlined, so with a
 * constant size and a static function the compiler copies elements with
 * plain moves and inlines the comparison (as fast as a heap written out for
 * one type). HEAP_DEFINE names a typed pair so the two cannot disagree:
 *
 *     static bool item_before(const void *a, const void *b) { ... }
 *     HEAP_DEFINE(item_heap, item, item_before)
 *     heap h = {0};
 *     if (item_heap_push(&h, &x) != 0) ...;   // -1: out of memory (err_set)
 *     while (h.n) { item top; item_heap_pop(&h, &top); ... }
 *     heap_free(&h);
 */
#ifndef BEAST_HEAP_H
#define BEAST_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#if defined(__GNUC__)
#define HEAP_INLINE static inline __attribute__((always_inline))
#else
#define HEAP_INLINE static inline
#endif

/* true when *a must leave the heap before *b */
typedef bool (*heap_before_fn)(const void *a, const void *b);

typedef struct {
    unsigned char *a; /* n elements, heap-ordered; room for cap */
    size_t n, cap;
} heap;

/* Room for one more element of `size` bytes: 0, or -1 (err_set; the heap is
 * unchanged). */
int heap_grow(heap *h, size_t size);
/* Release the array; the heap is empty and reusable afterwards. */
void heap_free(heap *h);

/* Add a copy of *x (which must not point into the heap): 0, or -1 when the
 * array cannot grow (err_set; the heap is unchanged). The new element moves
 * up from the end, its ancestors down, until its parent comes before it. */
HEAP_INLINE int heap_push(heap *h, const void *x, size_t size, heap_before_fn before) {
    if (h->n == h->cap && heap_grow(h, size) != 0) return -1;
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(x, h->a + p * size)) break;
        memcpy(h->a + i * size, h->a + p * size, size);
        i = p;
    }
    memcpy(h->a + i * size, x, size);
    return 0;
}

/* Remove the first element into *out; the heap must not be empty. The last
 * element sinks from the root (it stays at index n, now outside the heap,
 * until it is copied into its place). */
HEAP_INLINE void heap_pop(heap *h, void *out, size_t size, heap_before_fn before) {
    memcpy(out, h->a, size);
    size_t n = --h->n, i = 0;
    const unsigned char *last = h->a + n * size;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && before(h->a + (c + 1) * size, h->a + c * size)) c++;
        if (!before(h->a + c * size, last)) break;
        memcpy(h->a + i * size, h->a + c * size, size);
        i = c;
    }
    if (n) memcpy(h->a + i * size, last, size);
}

/* name_push(heap *, const T *) and name_pop(heap *, T *) for elements of
 * type T ordered by before_fn. */
#define HEAP_DEFINE(name, T, before_fn)                                                            \
    static inline int name##_push(heap *h, const T *x) {                                           \
        return heap_push(h, x, sizeof(T), before_fn);                                              \
    }                                                                                              \
    static inline void name##_pop(heap *h, T *out) {                                               \
        heap_pop(h, out, sizeof(T), before_fn);                                                    \
    }

#endif
