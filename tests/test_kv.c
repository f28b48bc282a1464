/* test_kv.c: paged KV cache bookkeeping: reservation is all-or-nothing,
 * slots are unique across sequences, truncation frees blocks, limits hold. */
#include "backend/backend.h"
#include "kv/kv.h"
#include "quant/quant.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>

#include "check.h"

int main(void) {
    backend *bk = bk_cpu_new(1);
    /* 3 sequences, 100 positions each at most, 160 slots = 10 blocks of 16 */
    backend *bks[2] = {bk, bk}; /* each layer's storage on its backend */
    kv_cache *kv = kv_new(bks, 2, 8, QT_F16, 3, 100, 160, 16);
    CHECK(kv && kv->n_blocks == 10, "create");
    CHECK(kv_reserve(kv, 0, 20) == 0, "reserve 20");
    CHECK(kv->seqs[0].n_blocks == 2 && kv_n_free(kv) == 8, "2 blocks used");
    CHECK(kv_reserve(kv, 1, 50) == 0, "reserve 50");
    CHECK(kv_n_free(kv) == 4, "4 free, got %d", kv_n_free(kv));
    /* over the per-sequence context: refused, nothing changes */
    CHECK(kv_reserve(kv, 1, 51) == -1, "context limit");
    CHECK(kv->seqs[1].len == 50 && kv_n_free(kv) == 4, "unchanged after refusal");
    /* over capacity: refused */
    CHECK(kv_reserve(kv, 2, 80) == -1, "capacity limit");
    CHECK(kv->seqs[2].len == 0 && kv_n_free(kv) == 4, "unchanged after refusal");
    /* slots are unique */
    char *seen = calloc(160, 1);
    for (int s = 0; s < 2; s++)
        for (int p = 0; p < kv->seqs[s].len; p++) {
            int32_t sl = kv_slot(kv, s, p);
            CHECK(sl >= 0 && sl < 160 && !seen[sl], "slot %d of seq %d pos %d", sl, s, p);
            if (sl >= 0 && sl < 160) seen[sl] = 1;
        }
    /* truncation frees whole blocks only */
    kv_truncate(kv, 1, 17);
    CHECK(kv->seqs[1].len == 17 && kv->seqs[1].n_blocks == 2 && kv_n_free(kv) == 6, "truncate");
    kv_truncate(kv, 1, 0);
    kv_truncate(kv, 0, 0);
    CHECK(kv_n_free(kv) == 10, "all free");
    CHECK(kv_reserve(kv, 2, 100) == 0 && kv_n_free(kv) == 3, "reuse");
    free(seen);
    kv_free(kv);
    bk->ops->destroy(bk);
    return check_done();
}
