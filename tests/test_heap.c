/* test_heap.c: the generic binary heap (src/util/heap.c) on fresh random
 * inputs against qsort: (1) push all, pop all, as a min-heap of 16-byte
 * records with many equal keys (ties broken by insertion number, so the pop
 * order must equal the sorted order exactly); (2) a max-heap of odd-sized
 * (3-byte) elements through heap_push/heap_pop directly, with pushes and
 * pops interleaved, each pop checked
 * against a plainly maintained sorted reference; (3) reuse after heap_free.
 * The seed is printed; BEAST_TEST_SEED repeats a run. */
#include "util/heap.h"
#include "util/util.h"

#include "check.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- (1) min-heap of records, total order (key, seq) ---- */

typedef struct {
    float key;
    int32_t seq;
    uint64_t payload;
} rec;

static bool rec_before(const void *pa, const void *pb) {
    const rec *a = pa, *b = pb;
    return a->key < b->key || (a->key == b->key && a->seq < b->seq);
}
HEAP_DEFINE(rec_heap, rec, rec_before)
static int rec_cmp(const void *pa, const void *pb) {
    return rec_before(pa, pb) ? -1 : rec_before(pb, pa) ? 1 : 0;
}

static void test_push_pop_all(int n, int distinct) {
    rec *in = malloc(sizeof(rec) * (size_t)(n ? n : 1)),
        *ref = malloc(sizeof(rec) * (size_t)(n ? n : 1));
    heap h = {0};
    for (int i = 0; i < n; i++) {
        in[i] = (rec){(float)rng_int(distinct) - distinct / 2, i, rng_u64()};
        CHECK(rec_heap_push(&h, &in[i]) == 0, "push %d: %s", i, err_get());
    }
    CHECK(h.n == (size_t)n, "n=%d: heap holds %zu", n, h.n);
    memcpy(ref, in, sizeof(rec) * (size_t)n);
    qsort(ref, (size_t)n, sizeof(rec), rec_cmp);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        rec r;
        rec_heap_pop(&h, &r);
        if (memcmp(&r, &ref[i], sizeof r) != 0 && bad++ < 3)
            printf("  pop %d: key %g seq %d, sorted has key %g seq %d\n", i, (double)r.key, r.seq,
                   (double)ref[i].key, ref[i].seq);
    }
    CHECK(bad == 0, "n=%d distinct=%d: %d pops differ from the sorted order", n, distinct, bad);
    CHECK(h.n == 0, "n=%d: %zu left after popping all", n, h.n);
    heap_free(&h);
    free(in);
    free(ref);
}

/* ---- (2) max-heap of 3-byte elements, interleaved ---- */

static bool b3_after(const void *pa, const void *pb) {
    const uint8_t *a = pa, *b = pb;
    return memcmp(a, b, 3) > 0;
}
static int b3_desc(const void *pa, const void *pb) {
    return -memcmp(pa, pb, 3);
}

static void test_interleaved(int ops) {
    heap h = {0}; /* the plain interface: size and function at each call */
    uint8_t *ref = malloc(3 * (size_t)ops); /* what the heap holds, sorted descending */
    size_t nref = 0;
    int bad = 0;
    for (int k = 0; k < ops; k++) {
        if (nref == 0 || rng_int(5) < 3) {
            uint8_t x[3] = {(uint8_t)rng_int(4), (uint8_t)rng_u64(), (uint8_t)rng_u64()};
            CHECK(heap_push(&h, x, 3, b3_after) == 0, "push: %s", err_get());
            memcpy(ref + 3 * nref++, x, 3);
            qsort(ref, nref, 3, b3_desc);
        } else {
            uint8_t got[4] = {0, 0, 0, 0xAA}; /* the 4th byte must survive */
            heap_pop(&h, got, 3, b3_after);
            if ((memcmp(got, ref, 3) != 0 || got[3] != 0xAA) && bad++ < 3)
                printf("  op %d: popped %02x%02x%02x, largest is %02x%02x%02x\n", k, got[0], got[1],
                       got[2], ref[0], ref[1], ref[2]);
            memmove(ref, ref + 3, 3 * --nref);
        }
        if (h.n != nref && bad++ < 3)
            printf("  op %d: heap holds %zu, reference %zu\n", k, h.n, nref);
    }
    CHECK(bad == 0, "interleaved max-heap (%d ops): %d mismatches", ops, bad);
    /* (3) empty it, free it, use it again */
    heap_free(&h);
    CHECK(h.n == 0 && h.cap == 0 && h.a == NULL, "heap_free leaves n=%zu cap=%zu", h.n, h.cap);
    uint8_t x[3] = {1, 2, 3}, y[3] = {9, 9, 9}, out[3];
    CHECK(heap_push(&h, x, 3, b3_after) == 0 && heap_push(&h, y, 3, b3_after) == 0,
          "push after free: %s", err_get());
    heap_pop(&h, out, 3, b3_after);
    CHECK(memcmp(out, y, 3) == 0, "after free: popped %02x, want 09", out[0]);
    heap_pop(&h, out, 3, b3_after);
    CHECK(memcmp(out, x, 3) == 0 && h.n == 0, "after free: popped %02x, want 01", out[0]);
    heap_free(&h);
    free(ref);
}

int main(void) {
    check_seed();
    static const int sizes[] = {0, 1, 2, 3, 63, 64, 65, 200, 1000, 5000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        test_push_pop_all(sizes[i], 7);       /* many ties */
        test_push_pop_all(sizes[i], 1 << 20); /* mostly distinct */
        test_push_pop_all(sizes[i], 1 + rng_int(100));
    }
    for (int r = 0; r < 20; r++) test_interleaved(1 + rng_int(3000));
    return check_done();
}
