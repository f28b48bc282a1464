/* cuda_backend.cu: the CUDA implementation of the backend interface
 * (backend.h): device memory, weights copied once to the GPU in their file
 * (quantized) form, every op as kernels on one stream, and CUDA graphs.
 *
 * Ops are not launched when called: each call appends a command (its
 * arguments, by value) to a queue, and uploads copy their bytes into a pinned
 * staging area. The queue runs at the points where the host must wait:
 * download(), sync() and free(), and at submit(), which launches it without
 * waiting (running ahead, backend.h): the submit gets a ticket (an event,
 * and the async downloads it lands in pinned memory), and the upload staging
 * alternates between two buffers, so the next queue's uploads never
 * overwrite bytes a launched one has yet to read. Running a queue:
 *   - the first time a command sequence is seen, its kernels are launched
 *     directly (eagerly) and the sequence is remembered;
 *   - the second time the same sequence (same ops, arguments, pointers and
 *     sizes; compared byte for byte) comes, it is captured into a CUDA graph,
 *     which runs this time and every later time it recurs.
 * A decode step is such a sequence: its buffers and shapes are the same every
 * step and everything that changes (token ids, positions, block tables) is
 * data that the step's uploads copy into the same staging offsets, which the
 * graph's copy nodes read. So graphs come per batch shape (the batch-size
 * bucket is simply the shape), with no change to the forward pass. Internal
 * scratch buffers grow only while commands are recorded; a growth drops every
 * cached graph, and so does any free(). Running a queue also fuses some neighbouring commands into
 * one launch (run_fused: q/k/v and gate/up mat-vecs, rope of q and k, the
 * residual add with the next rmsnorm), which a queue makes possible without
 * changing the interface. In the environment, BEAST_CUDA_Q8=0 keeps the
 * one-token Q4_K / Q6_K mat-vec on float activations (cuda_mvq.cu is the default,
 * with 8-bit activations), BEAST_CUDA_GRAPHS=0 turns
 * graphs off, BEAST_CUDA_FUSE=0 the fusions, BEAST_CUDA_STEP=0 the one-token
 * step programs (cuda_step.cu; BEAST_CUDA_STEP_TRACE=1 times their
 * instructions, with graphs off), BEAST_CUDA_VERBOSE=1 prints
 * counters when the backend is destroyed, and BEAST_CUDA_PROFILE=1 times
 * each eager launch by kind (use with graphs off).
 *
 * Kernels are launched with programmatic dependent launch where the GPU has
 * it (cuda_impl.h: cuda_launch), so each kernel's launch overlaps the
 * previous one and mat-vecs start streaming weights before it ends.
 *
 * Matmul: one token runs the register-dequantizing mat-vec kernels; larger
 * batches multiply with cuBLAS on tensor cores in f16 (activations converted
 * to f16, saturating; f32 accumulation and output), against an f16 copy of
 * the weight kept on the device (see f16_find). Without a copy (no room, or
 * BEAST_CUDA_F16W=0) the mat-vec takes up to MV_BATCH_MAX tokens (8 per
 * launch) and larger batches multiply slices of the weight dequantized again
 * each time; f32 weights stay in f32 (TF32). BEAST_CUDA_MV_MAX=N makes
 * batches of up to N tokens mat-vecs in both cases. Why one token: the
 * mat-vec's cost grows with every token (it is bound by loading x, not
 * weights), while the GEMM on the f16 copy costs about the same from 2 to 32
 * tokens (reading 2 bytes a weight; on an H200, 2 tokens of the 8B shape:
 * 5.7 ms a step as GEMM, 6.9 ms as mat-vecs; 1B: 1.56 against 1.44 ms, and
 * from 3 tokens on the GEMM wins there too). The slice
 * (GEMM_SCRATCH_MAX floats) is BEAST_CUDA_GEMM_SLICE_M millions of floats if
 * set (a slice that fits in L2 is read back from there by the GEMM).
 *
 * Deterministic mode (backend.deterministic): every token's result is the
 * one it gets alone. The mat-vec kernels already compute each token's rows
 * with the same per-thread order and reduction whatever the tokens per
 * launch, so matmuls of any size run as mat-vecs (no cuBLAS); attention
 * splits each token's positions at fixed offsets (CUDA_ATTN_DET_CHUNK)
 * instead of dividing them by a batch-dependent split count. The other ops
 * work row by row and are batch-independent as they are. */
#include "cuda/cuda_impl.h"

#include <cublas_v2.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

extern "C" {
#include "cuda/cuda.h"
#include "quant/quant.h"
}

#define MV_BATCH_MAX     16 /* mv_max_slices: tokens a mat-vec takes without an f16 copy */
#define GEMM_SCRATCH_MAX ((size_t)32 << 20) /* floats of dequantized weight slice */
#define BLAS_WORKSPACE   ((size_t)32 << 20)
#define MAX_GRAPHS       32
#define PROF_SLOTS       4096
#define TICKETS          4 /* submits in flight (running ahead) */

enum {
    K_UPLOAD,
    K_DOWNLOAD,
    K_EMBED,
    K_RMSNORM,
    K_MATMUL,
    K_ROPE,
    K_KVW,
    K_ATTN,
    K_ADD,
    K_GLU,
    K_GATHER,
    K_TOPK,
    K_ARGMAX,
    K_KINDS
};

/* One queued op. Zero-filled before use so sequences compare with memcmp. */
typedef struct {
    int32_t kind;
    int32_t i[12];
    float f[4];
    int64_t l[3];
    const void *p[8];
} cmd;

typedef struct {
    uint64_t hash;
    int n;
    cmd *cmds;
    cudaGraphExec_t exec;
    int bad; /* capture failed: always run eagerly */
    uint64_t last_use;
} graph_entry;

/* A step program: the commands it replaces (compared byte for byte, as
 * graphs are) and its instructions in device memory. */
#define STEP_MAX_PROGS   64
#define STEP_MAX_INS     CUDA_STEP_MAX_INS
#define STEP_MIN_INS     4 /* shorter runs stay separate launches */
#define STEP_TRACE_KINDS 7 /* instruction kinds the trace sums (TRACE_KINDS) */
typedef struct step_prog {
    uint64_t hash;
    int n_cmds, n_ins;
    cmd *cmds;
    cuda_step_ins *dev;
    const int32_t *pos; /* its attentions' position buffer (read once a launch) */
} step_prog;

/* A download_async: n bytes from src to dst, landing first at off in its
 * ticket's pinned area. */
typedef struct {
    void *dst;
    const void *src;
    size_t n, off;
} async_dl;

typedef struct {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    void *blas_ws;
    cmd *q;
    int nq, capq;
    /* pinned upload staging, two buffers: the queue being recorded fills
     * upb[up_cur]. A submit hands that one to the device (noting its ticket)
     * and switches, so the next step's uploads never overwrite bytes a
     * queued copy has yet to read; a buffer still in flight is waited for
     * before it is written again. Upload commands name their buffer, so each
     * buffer has its own graphs. */
    struct {
        uint8_t *host, *dev; /* dev: its mapped device address, or NULL */
        size_t cap;
        int64_t ticket; /* the submit that last used it (0: idle) */
    } upb[2];
    int up_cur;
    size_t up_used;
    /* downloads queued with download_async since the last submit: copied
     * into the submit's ticket slot after its work, then to dst on wait */
    async_dl *adl;
    int n_adl, cap_adl;
    struct {
        cudaEvent_t ev;
        int64_t ticket; /* 0: free */
        uint8_t *pin;   /* pinned landing area of its downloads */
        size_t pin_cap;
        async_dl *dl;
        int n_dl, cap_dl;
    } tix[TICKETS];
    int64_t ticket_seq;          /* the last ticket given */
    unsigned long long *am_best; /* argmax scratch: [am_cap] keys, then counts */
    int am_cap;
    uint8_t *down; /* pinned download staging */
    size_t down_cap;
    float *attn_scratch;
    size_t attn_cap; /* floats */
    float *gemm_scratch;
    size_t gemm_cap; /* floats */
    size_t gemm_max; /* floats: largest slice (BEAST_CUDA_GEMM_SLICE_M, millions) */
    graph_entry graphs[MAX_GRAPHS];
    int n_graphs;
    uint64_t tick;
    int use_graphs, verbose, fuse, profile;
    int exact;         /* BEAST_CUDA_Q8=0: float activations in every mat-vec */
    int mv_max;        /* matmuls of more tokens take the cuBLAS path (f16 copy) */
    int mv_max_slices; /* the same without an f16 copy (dequantized slices) */
    cudaEvent_t prof_ev[2 * PROF_SLOTS];
    int prof_kind[PROF_SLOTS], prof_used;
    double prof_ms[K_KINDS][2];
    long prof_n[K_KINDS][2];
    int failed; /* sticky until sync() reports it */
    /* f16 copies of quantized weights for the GEMM path (f16_find) */
    struct {
        const void *w;
        __half *h;
    } * f16;
    int n_f16, cap_f16;
    size_t f16_bytes;
    int f16_mode;   /* BEAST_CUDA_F16W: 1 keep f16 copies (memory allowing), 0 never */
    int f16_full;   /* a copy did not fit: stop trying */
    __half *x16;    /* activations in f16 for the GEMM */
    size_t x16_cap; /* floats (2 halves each) */
    void **weights; /* device copies made by weight_init */
    int n_weights, cap_weights;
    size_t weight_bytes;
    long n_eager, n_captures, n_replays;
    /* step programs (cuda_step.cu; BEAST_CUDA_STEP=0 turns them off) */
    int step_mode;           /* 1 on, 0 off (or the device cannot) */
    int step_checked;        /* the device was tried once */
    struct step_prog *progs; /* [STEP_MAX_PROGS] */
    int n_progs;
    int *q_prog;              /* per queued command: the program starting there, or -1 */
    int q_prog_cap, q_prog_n; /* q_prog is valid for a queue of q_prog_n commands */
    cuda_step_ins *ins;       /* [STEP_MAX_INS] host scratch */
    unsigned *step_bar;       /* the grid barrier's word */
    float *step_part;         /* attention splits' partial results */
    /* BEAST_CUDA_STEP_TRACE=1: time stamps of each launched program's
     * instructions, summed by kind and printed at destroy */
    int step_trace, trace_prog;
    int step_splits; /* BEAST_CUDA_STEP_SPLITS: at most this many (0: as the grid allows) */
    unsigned long long *trace_dev;
    double trace_sum[STEP_TRACE_KINDS][4];
    long trace_n[STEP_TRACE_KINDS], trace_launches;
    double trace_total;
    double init_ms, upload_ms, capture_ms; /* load-time split (bk_cuda_stats) */
} cuda_impl;

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static cuda_impl *impl(backend *b) {
    return (cuda_impl *)b->impl;
}

static int cu_ok(cudaError_t e, const char *what) {
    if (e == cudaSuccess) return 1;
    err_set("cuda: %s: %s", what, cudaGetErrorString(e));
    return 0;
}

/* ---- graph cache ---- */
static void drop_graphs(cuda_impl *c) {
    for (int k = 0; k < c->n_graphs; k++) {
        if (c->graphs[k].exec) cudaGraphExecDestroy(c->graphs[k].exec);
        free(c->graphs[k].cmds);
    }
    c->n_graphs = 0;
}

static uint64_t hash_cmds(const cmd *q, int n) {
    const uint8_t *p = (const uint8_t *)q;
    uint64_t h = 1469598103934665603ull;
    for (size_t k = 0; k < (size_t)n * sizeof(cmd); k++) h = (h ^ p[k]) * 1099511628211ull;
    return h;
}

static graph_entry *find_graph(cuda_impl *c, uint64_t h) {
    for (int k = 0; k < c->n_graphs; k++) {
        graph_entry *e = &c->graphs[k];
        if (e->hash == h && e->n == c->nq && !memcmp(e->cmds, c->q, (size_t)c->nq * sizeof(cmd)))
            return e;
    }
    return NULL;
}

static graph_entry *add_graph(cuda_impl *c, uint64_t h) {
    graph_entry *e;
    if (c->n_graphs < MAX_GRAPHS) {
        e = &c->graphs[c->n_graphs++];
    } else { /* evict the least recently used */
        e = &c->graphs[0];
        for (int k = 1; k < c->n_graphs; k++)
            if (c->graphs[k].last_use < e->last_use) e = &c->graphs[k];
        if (e->exec) cudaGraphExecDestroy(e->exec);
        free(e->cmds);
    }
    memset(e, 0, sizeof *e);
    e->cmds = (cmd *)malloc((size_t)c->nq * sizeof(cmd));
    if (!e->cmds) {
        e->bad = 1;
        return e;
    }
    memcpy(e->cmds, c->q, (size_t)c->nq * sizeof(cmd));
    e->hash = h;
    e->n = c->nq;
    return e;
}

/* ---- buffers that grow while commands are recorded ---- */
static int grow_device(cuda_impl *c, float **buf, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    size_t n = need + need / 4;
    void *p = NULL;
    if (!cu_ok(cudaMalloc(&p, n * sizeof(float)), "scratch allocation")) return -1;
    /* cudaFree waits for the device, so no queued work still uses it */
    if (*buf) cudaFree(*buf);
    *buf = (float *)p;
    *cap = n;
    drop_graphs(c);
    return 0;
}

/* A pinned buffer of at least `need` bytes, the first `keep` kept; with
 * dev, also its mapped device address (upload staging: kernels read uploads
 * from it directly, cuda_copy_multi). The old buffer must be idle. */
static int grow_pinned(cuda_impl *c, uint8_t **buf, size_t *cap, size_t need, size_t keep,
                       uint8_t **dev) {
    if (need <= *cap) return 0;
    size_t n = need < 65536 ? 65536 : need * 2;
    void *p = NULL;
    if (!cu_ok(cudaHostAlloc(&p, n, cudaHostAllocMapped), "pinned allocation")) return -1;
    if (*buf) {
        memcpy(p, *buf, keep);
        cudaFreeHost(*buf);
    }
    *buf = (uint8_t *)p;
    *cap = n;
    if (dev) {
        void *d = NULL;
        *dev = cudaHostGetDevicePointer(&d, p, 0) == cudaSuccess ? (uint8_t *)d : NULL;
        cudaGetLastError();
    }
    drop_graphs(c);
    return 0;
}

static cmd *push(cuda_impl *c, int kind) {
    if (c->nq == c->capq) {
        int cap = c->capq ? 2 * c->capq : 512;
        cmd *q = (cmd *)realloc(c->q, (size_t)cap * sizeof(cmd));
        if (!q) {
            err_set("out of memory (command queue)");
            c->failed = 1;
            return NULL;
        }
        c->q = q;
        c->capq = cap;
    }
    cmd *k = &c->q[c->nq++];
    memset(k, 0, sizeof *k);
    k->kind = kind;
    return k;
}

/* ---- f16 weight copies ----
 * Matmuls of more than mv_max tokens multiply on tensor cores in f16 (f32
 * accumulation). The f16 weight comes from a copy made once per weight the
 * first time it meets such a matmul (dequantized on the device, 2 bytes a
 * weight), kept while device memory allows: at least F16_RESERVE bytes and a
 * twentieth of the device stay free for the KV cache and scratch. Without a
 * copy (BEAST_CUDA_F16W=0, or no room) every such matmul dequantizes its
 * weight again in slices. The copies are made while commands are recorded,
 * on the stream ahead of the queue, so they exist before any command that
 * uses them runs (or is captured). */
#define F16_RESERVE ((size_t)1 << 30)

static const __half *f16_find(cuda_impl *c, const bk_weight *w) {
    if (w->type == QT_F16) return (const __half *)w->data;
    for (int k = 0; k < c->n_f16; k++)
        if (c->f16[k].w == w->data) return c->f16[k].h;
    if (!c->f16_mode || c->f16_full) return NULL;
    size_t bytes = (size_t)w->rows * (size_t)w->cols * 2, dev_free = 0, dev_total = 0;
    if (cudaMemGetInfo(&dev_free, &dev_total) != cudaSuccess ||
        dev_free < bytes + F16_RESERVE + dev_total / 20) {
        cudaGetLastError();
        c->f16_full = 1;
        if (c->verbose)
            fprintf(stderr, "cuda: no room for f16 weight copies beyond %zu MiB\n",
                    c->f16_bytes >> 20);
        return NULL;
    }
    if (c->n_f16 == c->cap_f16) {
        int cap = c->cap_f16 ? 2 * c->cap_f16 : 64;
        void *nf = realloc(c->f16, (size_t)cap * sizeof *c->f16);
        if (!nf) return NULL;
        c->f16 = (decltype(c->f16))nf;
        c->cap_f16 = cap;
    }
    __half *h = NULL;
    if (cudaMalloc(&h, bytes) != cudaSuccess) {
        cudaGetLastError();
        c->f16_full = 1;
        return NULL;
    }
    if (cuda_dequant_rows_f16(c->stream, h, w->type, w->data, w->cols, 0, w->rows)) {
        cudaFree(h);
        c->f16_full = 1;
        return NULL;
    }
    c->f16[c->n_f16].w = w->data;
    c->f16[c->n_f16].h = h;
    c->n_f16++;
    c->f16_bytes += bytes;
    return h;
}

static void f16_drop(cuda_impl *c, const void *w) {
    for (int k = 0; k < c->n_f16; k++)
        if (c->f16[k].w == w) {
            cudaFree(c->f16[k].h);
            c->f16[k] = c->f16[--c->n_f16];
            return;
        }
}

/* ---- running commands ---- */
static void run_matmul(cuda_impl *c, const cmd *k) {
    float *out = (float *)k->p[0];
    const void *w = k->p[1];
    const float *x = (const float *)k->p[2];
    int type = k->i[0], n = k->i[1];
    int64_t rows = k->l[0], cols = k->l[1];
    if (!k->i[3]) { /* i[3]: the cuBLAS path (cu_matmul chose it) */
        for (int t0 = 0; t0 < n; t0 += CUDA_MV_MAX_NT) {
            int nt = n - t0 < CUDA_MV_MAX_NT ? n - t0 : CUDA_MV_MAX_NT;
            float *o = out + (size_t)t0 * rows;
            if (cuda_matvec_multi(c->stream, 1, &o, type, &w, &rows, cols, x + (size_t)t0 * cols,
                                  nt, c->exact || k->i[2]))
                c->failed = 1;
        }
        return;
    }
    const float one = 1.0f, zero = 0.0f;
    if (type != QT_F32) { /* f16 tensor cores, f32 accumulation */
        const __half *A16 = (const __half *)k->p[3];
        cuda_to_f16(c->stream, c->x16, x, (int64_t)n * cols);
        /* slices of dequantized rows when there is no f16 copy */
        size_t cap = 2 * c->gemm_cap;
        int64_t slice = A16 ? rows : (int64_t)(cap / (size_t)cols);
        if (slice > rows) slice = rows;
        for (int64_t r0 = 0; r0 < rows; r0 += slice) {
            int64_t nr = rows - r0 < slice ? rows - r0 : slice;
            const __half *A = A16 ? A16 : (const __half *)c->gemm_scratch;
            if (!A16 && cuda_dequant_rows_f16(c->stream, (__half *)c->gemm_scratch, type, w, cols,
                                              r0, nr)) {
                c->failed = 1;
                return;
            }
            cublasStatus_t st =
                cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)nr, n, (int)cols, &one, A,
                             CUDA_R_16F, (int)cols, c->x16, CUDA_R_16F, (int)cols, &zero, out + r0,
                             CUDA_R_32F, (int)rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
            if (st != CUBLAS_STATUS_SUCCESS) {
                err_set("cuda: cublasGemmEx failed (status %d)", (int)st);
                c->failed = 1;
                return;
            }
        }
        return;
    }
    size_t cap = c->gemm_cap < c->gemm_max ? c->gemm_cap : c->gemm_max;
    if (cap < (size_t)cols) cap = (size_t)cols;
    int64_t slice = type == QT_F32 ? rows : (int64_t)(cap / (size_t)cols);
    if (slice > rows) slice = rows;
    for (int64_t r0 = 0; r0 < rows; r0 += slice) {
        int64_t nr = rows - r0 < slice ? rows - r0 : slice;
        const float *A;
        if (type == QT_F32) {
            A = (const float *)w;
        } else {
            if (cuda_dequant_rows(c->stream, c->gemm_scratch, type, w, cols, NULL, r0, (int)nr,
                                  1.0f)) {
                c->failed = 1;
                return;
            }
            A = c->gemm_scratch;
        }
        cublasStatus_t st =
            cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)nr, n, (int)cols, &one, A,
                         CUDA_R_32F, (int)cols, x, CUDA_R_32F, (int)cols, &zero, out + r0,
                         CUDA_R_32F, (int)rows, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT);
        if (st != CUBLAS_STATUS_SUCCESS) {
            err_set("cuda: cublasGemmEx failed (status %d)", (int)st);
            c->failed = 1;
            return;
        }
    }
}

static void run_cmd(cuda_impl *c, const cmd *k) {
    cudaStream_t s = c->stream;
    switch (k->kind) {
    case K_UPLOAD:
        cudaMemcpyAsync((void *)k->p[0], c->upb[k->i[0]].host + k->l[0], (size_t)k->l[1],
                        cudaMemcpyHostToDevice, s);
        break;
    case K_DOWNLOAD:
        cudaMemcpyAsync(c->down, k->p[0], (size_t)k->l[0], cudaMemcpyDeviceToHost, s);
        break;
    case K_EMBED:
        if (cuda_dequant_rows(s, (float *)k->p[0], k->i[0], k->p[1], k->l[0],
                              (const int32_t *)k->p[2], 0, k->i[1], k->f[0]))
            c->failed = 1;
        break;
    case K_RMSNORM:
        cuda_rmsnorm(s, (float *)k->p[0], (const float *)k->p[1], (const float *)k->p[2], k->i[0],
                     k->i[1], k->f[0]);
        break;
    case K_MATMUL:
        run_matmul(c, k);
        break;
    case K_ROPE:
        cuda_rope(s, (float *)k->p[0], (const int32_t *)k->p[1], k->i[0], k->i[1], k->i[2], k->i[3],
                  k->f[0], k->f[1], k->i[4]);
        break;
    case K_KVW: {
        bk_kv_layer kv = {(void *)k->p[3], (void *)k->p[4], k->i[1], k->i[2]};
        cuda_kv_write(s, &kv, (const float *)k->p[0], (const float *)k->p[1],
                      (const int32_t *)k->p[2], k->i[0]);
        break;
    }
    case K_ATTN: {
        bk_kv_layer kv = {(void *)k->p[2], (void *)k->p[3], k->i[0], k->i[1]};
        bk_attn_batch ab = {k->i[2],
                            (const int32_t *)k->p[4],
                            (const int32_t *)k->p[5],
                            (const int32_t *)k->p[6],
                            k->i[3],
                            k->i[4],
                            k->i[11] ? CUDA_ATTN_SHORT : 0};
        if (cuda_attention(s, (float *)k->p[0], (const float *)k->p[1], &kv, &ab, k->i[5], k->i[6],
                           k->i[7], k->i[8], k->f[0], k->i[9], k->i[10], c->attn_scratch))
            c->failed = 1;
        break;
    }
    case K_ADD:
        cuda_add(s, (float *)k->p[0], (const float *)k->p[1], k->l[0]);
        break;
    case K_GLU:
        cuda_glu(s, (float *)k->p[0], (const float *)k->p[1], (const float *)k->p[2], k->l[0],
                 k->i[0]);
        break;
    case K_GATHER:
        cuda_gather(s, (float *)k->p[0], (const float *)k->p[1], (const int32_t *)k->p[2], k->i[0],
                    k->i[1]);
        break;
    case K_TOPK:
        if (cuda_topk(s, (int32_t *)k->p[0], (float *)k->p[1], (float *)k->p[2],
                      (const float *)k->p[3], k->i[0], k->i[1]))
            c->failed = 1;
        break;
    case K_ARGMAX:
        if (cuda_argmax(s, (int32_t *)k->p[0], (const float *)k->p[1], k->i[0], k->i[1],
                        (unsigned long long *)k->p[2], (unsigned *)k->p[3]))
            c->failed = 1;
        break;
    }
}

/* Fusions of consecutive commands, each equivalent to running them in order:
 *   matmuls of one type and width reading the same x, n <= 8 (q/k/v,
 *     gate/up): one mat-vec launch;
 *   rope of q then rope of k (same positions and parameters): one launch,
 *     which also stores k and v in the cache when kv_write comes next;
 *   add(x, y) then rmsnorm(out, x) over the same rows: one launch.
 *   matmul gate, matmul up, glu (n <= 4): one launch that also writes up;
 * Returns the number of commands consumed (0: none fused). */
static int run_fused(cuda_impl *c, int k) {
    const cmd *a = &c->q[k], *b = k + 1 < c->nq ? &c->q[k + 1] : NULL;
    if (!b) return 0;
    if (a->kind == K_UPLOAD && b->kind == K_UPLOAD && c->upb[a->i[0]].dev) {
        /* a step's small uploads (ids, positions, slots, block tables): one
         * kernel reading the pinned staging instead of one copy each */
        void *dst[CUDA_COPY_MAX_JOBS];
        const void *src[CUDA_COPY_MAX_JOBS];
        size_t bytes[CUDA_COPY_MAX_JOBS];
        int m = 0;
        while (m < CUDA_COPY_MAX_JOBS && k + m < c->nq && c->q[k + m].kind == K_UPLOAD &&
               c->q[k + m].i[0] == a->i[0] && c->q[k + m].l[1] <= 65536) {
            dst[m] = (void *)c->q[k + m].p[0];
            src[m] = c->upb[a->i[0]].dev + c->q[k + m].l[0];
            bytes[m] = (size_t)c->q[k + m].l[1];
            m++;
        }
        if (m < 2) return 0;
        cuda_copy_multi(c->stream, m, dst, src, bytes);
        return m;
    }
    const cmd *g3 = k + 2 < c->nq ? &c->q[k + 2] : NULL;
    if (a->kind == K_MATMUL && b->kind == K_MATMUL && g3 && g3->kind == K_GLU && a->i[1] <= 4 &&
        !a->i[3] && !b->i[3] && b->p[2] == a->p[2] && b->i[0] == a->i[0] && b->i[1] == a->i[1] &&
        b->l[0] == a->l[0] && b->l[1] == a->l[1] && g3->p[0] == a->p[0] && g3->p[1] == a->p[0] &&
        g3->p[2] == b->p[0] && g3->l[0] == (int64_t)a->i[1] * a->l[0] && a->p[0] != b->p[0] &&
        a->p[0] != a->p[2] && b->p[0] != a->p[2] && a->l[1] % 32 == 0 &&
        (uintptr_t)a->p[2] % 16 == 0) {
        /* gate, up, glu: one launch computing both rows and the product */
        if (cuda_matvec_glu(c->stream, (float *)a->p[0], (float *)b->p[0], a->i[0], a->p[1],
                            b->p[1], a->l[0], a->l[1], (const float *)a->p[2], a->i[1], g3->i[0],
                            c->exact || a->i[2]))
            c->failed = 1;
        return 3;
    }
    if (a->kind == K_MATMUL && a->i[1] <= CUDA_MV_MAX_NT && !a->i[3]) {
        int m = 1;
        while (m < CUDA_MV_MAX_JOBS && k + m < c->nq) {
            const cmd *e = &c->q[k + m];
            if (e->kind != K_MATMUL || e->i[3] || e->p[2] != a->p[2] || e->i[0] != a->i[0] ||
                e->i[1] != a->i[1] || e->l[1] != a->l[1])
                break;
            int clash = e->p[0] == a->p[2]; /* an output that is the shared input */
            for (int j = 0; j < m; j++) clash |= c->q[k + j].p[0] == e->p[0];
            if (clash) break;
            m++;
        }
        if (m < 2 || a->p[0] == a->p[2]) return 0;
        float *out[CUDA_MV_MAX_JOBS];
        const void *w[CUDA_MV_MAX_JOBS];
        int64_t rows[CUDA_MV_MAX_JOBS];
        for (int j = 0; j < m; j++) {
            out[j] = (float *)c->q[k + j].p[0];
            w[j] = c->q[k + j].p[1];
            rows[j] = c->q[k + j].l[0];
        }
        if (cuda_matvec_multi(c->stream, m, out, a->i[0], w, rows, a->l[1], (const float *)a->p[2],
                              a->i[1], c->exact || a->i[2]))
            c->failed = 1;
        return m;
    }
    if (a->kind == K_ROPE && b->kind == K_ROPE && a->p[1] == b->p[1] && a->p[0] != b->p[0] &&
        a->i[0] == b->i[0] && a->i[2] == b->i[2] && a->i[3] == b->i[3] && a->i[4] == b->i[4] &&
        a->f[0] == b->f[0] && a->f[1] == b->f[1] && g3 && g3->kind == K_KVW &&
        g3->p[0] == b->p[0] && g3->i[0] == a->i[0] && g3->i[1] == b->i[1] * b->i[2] &&
        g3->p[1] != a->p[0] && g3->p[1] != b->p[0] && (b->i[2] - b->i[3]) % 2 == 0) {
        /* rope q, rope k, store k and v: one launch */
        bk_kv_layer kv = {(void *)g3->p[3], (void *)g3->p[4], g3->i[1], g3->i[2]};
        cuda_rope_kv(c->stream, (float *)a->p[0], a->i[1], (float *)b->p[0], b->i[1],
                     (const float *)g3->p[1], (const int32_t *)a->p[1], a->i[0], a->i[2], a->i[3],
                     a->f[0], a->f[1], a->i[4], &kv, (const int32_t *)g3->p[2]);
        return 3;
    }
    if (a->kind == K_ROPE && b->kind == K_ROPE && a->p[1] == b->p[1] && a->p[0] != b->p[0] &&
        a->i[0] == b->i[0] && a->i[2] == b->i[2] && a->i[3] == b->i[3] && a->i[4] == b->i[4] &&
        a->f[0] == b->f[0] && a->f[1] == b->f[1]) {
        cuda_rope2(c->stream, (float *)a->p[0], a->i[1], (float *)b->p[0], b->i[1],
                   (const int32_t *)a->p[1], a->i[0], a->i[2], a->i[3], a->f[0], a->f[1], a->i[4]);
        return 2;
    }
    if (a->kind == K_ADD && b->kind == K_RMSNORM && b->p[1] == a->p[0] &&
        (int64_t)b->i[0] * b->i[1] == a->l[0] && a->p[0] != a->p[1] && b->p[0] != a->p[0] &&
        b->p[2] != a->p[0] && b->p[2] != a->p[1]) {
        cuda_add_rmsnorm(c->stream, (float *)a->p[0], (const float *)a->p[1], (float *)b->p[0],
                         (const float *)b->p[2], b->i[0], b->i[1], b->f[0]);
        return 2;
    }
    return 0;
}

/* ---- step programs ----
 * A one-token forward pass's layers become one persistent kernel
 * (cuda_step.cu). step_prepare() scans the queue before it runs (outside any
 * capture, as it may upload) for runs of commands that map onto step
 * instructions:
 *   [gather of 1 row,] [rmsnorm of 1 row,] 1-3 one-token Q4_K / Q6_K
 *     matmuls of that input [, glu of the two | , add of the one into x]
 *                                           -> a mat-vec instruction
 *   rope q, rope k, kv_write, attention of 1 token (short span, not
 *     deterministic)                        -> an attention instruction
 * and gives each run of at least STEP_MIN_INS instructions a program (cached
 * by its commands, like graphs, and kept until the backend is destroyed,
 * since captured graphs point at it). run_all launches the program in place
 * of the run's commands. The rotated q and k are not written back to their
 * buffers (nothing reads them after the attention). */
static int step_mv_ok(const cmd *k) {
    return k->kind == K_MATMUL && k->i[1] == 1 && !k->i[2] && !k->i[3] &&
           (k->i[0] == QT_Q4_K || k->i[0] == QT_Q6_K) && k->l[1] % 256 == 0 &&
           k->l[1] <= CUDA_STEP_MAX_COLS && k->l[0] >= 1 && k->l[0] <= INT32_MAX / 2 &&
           (uintptr_t)k->p[2] % 16 == 0;
}

/* a mat-vec instruction at q[k..]: the commands it takes, or 0 */
static int step_parse_mv(const cmd *q, int n, int k, cuda_step_ins *I) {
    const cmd *gat = NULL, *norm = NULL;
    int at = k;
    if (q[at].kind == K_GATHER && q[at].i[0] == 1 && at + 1 < n && q[at + 1].kind == K_RMSNORM &&
        q[at + 1].i[0] == 1 && q[at + 1].p[0] == q[at].p[0] && q[at + 1].p[1] == q[at].p[0] &&
        q[at + 1].i[1] == q[at].i[1] && q[at].p[1] != q[at].p[0])
        gat = &q[at], norm = &q[at + 1], at += 2;
    else if (q[at].kind == K_RMSNORM && q[at].i[0] == 1 && q[at].p[0] != q[at].p[1])
        norm = &q[at], at++;
    if (at >= n || !step_mv_ok(&q[at])) return 0;
    const cmd *a = &q[at];
    const void *in = a->p[2], *src = gat ? gat->p[1] : norm ? norm->p[1] : in;
    if (norm && (in != norm->p[0] || norm->i[1] != a->l[1] || (uintptr_t)src % 16 ||
                 (uintptr_t)norm->p[2] % 16))
        return 0;
    int m = 0;
    while (m < 3 && at + m < n && step_mv_ok(&q[at + m]) && q[at + m].p[2] == in &&
           q[at + m].l[1] == a->l[1]) {
        const void *o = q[at + m].p[0];
        int clash = o == in || o == src;
        for (int j = 0; j < m; j++) clash |= q[at + j].p[0] == o;
        if (clash) break;
        m++;
    }
    if (!m) return 0;
    memset(I, 0, sizeof *I);
    I->kind = CUDA_STEP_MV;
    I->cols = (int)a->l[1];
    I->x = (const float *)src;
    if (norm) {
        I->norm_w = (const float *)norm->p[2];
        I->x_out = (float *)norm->p[0];
        I->eps = norm->f[0];
        I->src_row = gat ? (const int32_t *)gat->p[2] : NULL;
    }
    int used = at + m - k, groups = 0;
    const cmd *g3 = at + 2 < n ? &q[at + 2] : NULL;
    if (m == 2 && g3 && g3->kind == K_GLU && g3->p[0] == a->p[0] && g3->p[1] == a->p[0] &&
        g3->p[2] == q[at + 1].p[0] && g3->l[0] == a->l[0] && q[at + 1].l[0] == a->l[0] &&
        q[at + 1].i[0] == a->i[0]) {
        I->glu = 1 + g3->i[0];
        I->n_jobs = 1;
        I->type[0] = a->i[0];
        I->rows[0] = (int)a->l[0];
        I->w[0] = a->p[1], I->w[1] = q[at + 1].p[1];
        I->out[0] = (float *)a->p[0], I->out[1] = (float *)q[at + 1].p[0];
        I->groups_end[0] = I->rows[0];
        I->groups_end[1] = I->groups_end[2] = INT32_MAX;
        return used + 1;
    }
    I->n_jobs = m;
    for (int j = 0; j < 3; j++) {
        if (j < m) {
            const cmd *e = &q[at + j];
            I->type[j] = e->i[0];
            I->rows[j] = (int)e->l[0];
            I->w[j] = e->p[1];
            I->out[j] = (float *)e->p[0];
            groups += (I->rows[j] + 1) / 2;
        }
        I->groups_end[j] = j < m ? groups : INT32_MAX;
    }
    const cmd *ad = at + m < n ? &q[at + m] : NULL;
    if (m == 1 && ad && ad->kind == K_ADD && ad->p[1] == a->p[0] && ad->l[0] == a->l[0] &&
        ad->p[0] != in && ad->p[0] != src && ad->p[0] != a->p[0] &&
        (!norm || ad->p[0] != norm->p[0])) {
        I->res = (float *)ad->p[0];
        used++;
    }
    return used;
}

/* an attention instruction at q[k..]: 4 commands, or 0 */
static int step_parse_attn(const cmd *q, int n, int k, cuda_step_ins *I) {
    if (k + 3 >= n) return 0;
    const cmd *a = &q[k], *b = &q[k + 1], *w = &q[k + 2], *t = &q[k + 3];
    if (a->kind != K_ROPE || b->kind != K_ROPE || w->kind != K_KVW || t->kind != K_ATTN) return 0;
    const int D = a->i[2], nh = a->i[1], nkv = b->i[1];
    if (a->i[0] != 1 || b->i[0] != 1 || a->p[1] != b->p[1] || b->i[2] != D || b->i[3] != a->i[3] ||
        b->i[4] != a->i[4] || b->f[0] != a->f[0] || b->f[1] != a->f[1] || a->p[0] == b->p[0])
        return 0;
    if (w->p[0] != b->p[0] || w->i[0] != 1 || w->i[1] != nkv * D ||
        (w->i[2] != QT_F16 && w->i[2] != QT_F32))
        return 0;
    if (t->p[1] != a->p[0] || t->p[2] != w->p[3] || t->p[3] != w->p[4] || t->i[0] != w->i[1] ||
        t->i[1] != w->i[2] || t->i[2] != 1 || t->i[5] != nh || t->i[6] != nkv || t->i[7] != D ||
        t->i[10] != 0 || !t->i[11] || t->p[4] != a->p[1])
        return 0;
    if ((D != 64 && D != CUDA_STEP_MAX_HEAD_DIM) || a->i[3] < 2 || a->i[3] > D || a->i[3] % 2 ||
        nkv < 1 || nh % nkv || t->p[0] == a->p[0] || t->p[0] == b->p[0] || t->p[0] == w->p[1])
        return 0;
    memset(I, 0, sizeof *I);
    I->kind = CUDA_STEP_ATTN;
    I->att = (float *)t->p[0];
    I->q = (const float *)a->p[0], I->k = (const float *)b->p[0], I->v = (const float *)w->p[1];
    I->kc = (void *)w->p[3], I->vc = (void *)w->p[4];
    I->pos = (const int32_t *)a->p[1], I->slots = (const int32_t *)w->p[2];
    I->seq_row = (const int32_t *)t->p[5], I->block_table = (const int32_t *)t->p[6];
    I->kv_dim = w->i[1], I->f16 = w->i[2] == QT_F16;
    I->max_blocks = t->i[3], I->block_size = t->i[4];
    I->n_head = nh, I->n_head_kv = nkv, I->head_dim = D, I->n_rot = a->i[3], I->neox = a->i[4];
    I->window = t->i[8], I->scale = t->f[0];
    I->freq_scale = a->f[1], I->log2_base = log2((double)a->f[0]);
    return 4;
}

/* the program for commands q[0..n) with the n_ins instructions in c->ins:
 * its index, or -1 (no room) */
static int step_find(cuda_impl *c, const cmd *q, int n, int n_ins) {
    uint64_t h = hash_cmds(q, n);
    for (int k = 0; k < c->n_progs; k++) {
        step_prog *p = &c->progs[k];
        if (p->hash == h && p->n_cmds == n && !memcmp(p->cmds, q, (size_t)n * sizeof(cmd)))
            return k;
    }
    if (c->n_progs == STEP_MAX_PROGS) return -1;
    step_prog *p = &c->progs[c->n_progs];
    p->cmds = (cmd *)malloc((size_t)n * sizeof(cmd));
    if (!p->cmds) return -1;
    if (cudaMalloc(&p->dev, cuda_step_bytes(n_ins)) != cudaSuccess ||
        cuda_step_upload(p->dev, c->ins, n_ins)) {
        cudaGetLastError();
        if (p->dev) cudaFree(p->dev);
        free(p->cmds);
        p->dev = NULL;
        return -1;
    }
    memcpy(p->cmds, q, (size_t)n * sizeof(cmd));
    p->hash = h, p->n_cmds = n, p->n_ins = n_ins;
    p->pos = NULL;
    for (int i = 0; i < n_ins && !p->pos; i++)
        if (c->ins[i].kind == CUDA_STEP_ATTN) p->pos = c->ins[i].pos;
    return c->n_progs++;
}

/* whether step programs can run here: set up once, and an empty program
 * launched to see that the launch itself works on this device */
static int step_ready(cuda_impl *c) {
    if (c->step_checked) return c->step_mode;
    c->step_checked = 1;
    c->progs = (step_prog *)calloc(STEP_MAX_PROGS, sizeof *c->progs);
    c->ins = (cuda_step_ins *)malloc(STEP_MAX_INS * sizeof *c->ins);
    if (!c->progs || !c->ins || !cuda_step_supported() ||
        cudaMalloc(&c->step_bar, sizeof(unsigned)) != cudaSuccess ||
        cudaMemset(c->step_bar, 0, sizeof(unsigned)) != cudaSuccess ||
        cudaMalloc(&c->step_part, (size_t)CUDA_STEP_ATTN_MAX * (CUDA_STEP_MAX_HEAD_DIM + 2) *
                                      sizeof(float)) != cudaSuccess ||
        (c->step_trace &&
         cudaMalloc(&c->trace_dev, STEP_MAX_INS * 4 * sizeof *c->trace_dev) != cudaSuccess) ||
        cuda_step_run(c->stream, NULL, 0, NULL, c->step_bar, NULL) ||
        cudaStreamSynchronize(c->stream) != cudaSuccess) {
        cudaGetLastError();
        if (c->verbose) fprintf(stderr, "beast cuda: step programs unavailable\n");
        c->step_mode = 0;
    }
    return c->step_mode;
}

/* an attention's splits a head in a program: as many as fill the grid (up
 * to CUDA_STEP_ATTN_SPLITS, or BEAST_CUDA_STEP_SPLITS), 0 if its heads
 * alone would not fit it */
static int step_splits(const cuda_impl *c, int n_head) {
    const int ctas = cuda_step_ctas();
    if (n_head < 1 || n_head > ctas || n_head > CUDA_STEP_ATTN_MAX) return 0;
    int s = ctas / n_head;
    if (s > CUDA_STEP_ATTN_SPLITS) s = CUDA_STEP_ATTN_SPLITS;
    if (c->step_splits > 0 && s > c->step_splits) s = c->step_splits;
    while (n_head * s > CUDA_STEP_ATTN_MAX) s--;
    return s;
}

static void step_prepare(cuda_impl *c) {
    c->q_prog_n = 0;
    if (!c->step_mode || !c->fuse || c->exact || c->nq < STEP_MIN_INS || !step_ready(c)) return;
    if (c->q_prog_cap < c->nq) {
        int *p = (int *)realloc(c->q_prog, (size_t)c->capq * sizeof *p);
        if (!p) return;
        c->q_prog = p;
        c->q_prog_cap = c->capq;
    }
    for (int k = 0; k < c->nq; k++) c->q_prog[k] = -1;
    for (int k = 0; k < c->nq;) {
        int at = k, n_ins = 0;
        while (at < c->nq && n_ins < STEP_MAX_INS) {
            int used = step_parse_mv(c->q, c->nq, at, &c->ins[n_ins]);
            if (!used && (used = step_parse_attn(c->q, c->nq, at, &c->ins[n_ins]))) {
                /* an attention is taken with the mat-vec that reads its
                 * output: that one merges the splits */
                cuda_step_ins *A = &c->ins[n_ins], *M = A + 1;
                const int mu =
                    n_ins + 1 < STEP_MAX_INS ? step_parse_mv(c->q, c->nq, at + used, M) : 0;
                const int S = step_splits(c, A->n_head);
                if (!mu || !S || M->norm_w || M->x != A->att || M->cols != A->n_head * A->head_dim)
                    break;
                A->splits = S;
                A->part = c->step_part;
                A->part_ml = c->step_part + (size_t)CUDA_STEP_ATTN_MAX * CUDA_STEP_MAX_HEAD_DIM;
                M->x = A->part, M->merge_ml = A->part_ml;
                M->merge_splits = S, M->merge_dim = A->head_dim;
                M->x_out = (float *)A->att; /* for whatever reads it after the program */
                at += used + mu;
                n_ins += 2;
                continue;
            }
            if (!used) break;
            at += used;
            n_ins++;
        }
        int idx = n_ins >= STEP_MIN_INS ? step_find(c, c->q + k, at - k, n_ins) : -1;
        if (idx >= 0) {
            c->q_prog[k] = idx;
            k = at;
        } else {
            k++;
        }
    }
    c->q_prog_n = c->nq;
}

/* a program starting at queue index k: launched, and the commands it took */
static int run_step(cuda_impl *c, int k) {
    if (c->q_prog_n != c->nq || c->q_prog[k] < 0) return 0;
    const step_prog *p = &c->progs[c->q_prog[k]];
    unsigned long long *tr = NULL;
    if (c->trace_dev && c->trace_prog < 0) { /* one traced program a queue */
        tr = c->trace_dev;
        size_t half = (size_t)p->n_ins * 4 * sizeof *tr;
        cudaMemsetAsync(tr, 0, half, c->stream);
        for (int i = 0; i < p->n_ins; i++) cudaMemsetAsync(tr + 4 * i + 3, 0xff, 8, c->stream);
        c->trace_prog = c->q_prog[k];
    }
    if (cuda_step_run(c->stream, p->dev, p->n_ins, p->pos, c->step_bar, tr)) c->failed = 1;
    return p->n_cmds;
}

/* the traced program's stamps, summed by instruction kind: norm + q/k/v,
 * norm + gate/up, mat-vec + residual, attention, output, other, the
 * mat-vec that merges an attention's splits */
static const char *const TRACE_KINDS[STEP_TRACE_KINDS] = {
    "norm+qkv", "norm+glu", "mv+res", "attention", "output", "other", "merge+mv"};
static void step_trace_collect(cuda_impl *c) {
    if (c->trace_prog < 0) return;
    const step_prog *p = &c->progs[c->trace_prog];
    size_t n = (size_t)p->n_ins * 4;
    unsigned long long *t = (unsigned long long *)malloc(n * sizeof *t);
    cuda_step_ins *ins = (cuda_step_ins *)malloc((size_t)p->n_ins * sizeof *ins);
    if (t && ins &&
        cudaMemcpy(t, c->trace_dev, n * sizeof *t, cudaMemcpyDeviceToHost) == cudaSuccess &&
        cudaMemcpy(ins, p->dev, (size_t)p->n_ins * sizeof *ins, cudaMemcpyDeviceToHost) ==
            cudaSuccess) {
        for (int i = 0; i < p->n_ins; i++) {
            const cuda_step_ins *I = &ins[i];
            int kind = I->kind == CUDA_STEP_ATTN ? 3
                       : I->merge_splits         ? 6
                       : I->src_row              ? 4
                       : I->glu && I->norm_w     ? 1
                       : I->res                  ? 2
                       : I->norm_w               ? 0
                                                 : 5;
            const unsigned long long *r = t + 4 * i;
            double in = I->kind == CUDA_STEP_MV ? (double)(r[1] - r[0]) : 0;
            double work = (double)(r[2] - r[0]), spread = (double)(r[2] - r[3]);
            double bar = i + 1 < p->n_ins ? (double)(t[4 * (i + 1)] - r[2]) : 0;
            c->trace_sum[kind][0] += in, c->trace_sum[kind][1] += work;
            c->trace_sum[kind][2] += spread, c->trace_sum[kind][3] += bar;
            c->trace_n[kind]++;
        }
        c->trace_total += (double)(t[4 * (p->n_ins - 1) + 2] - t[0]);
        c->trace_launches++;
    }
    cudaGetLastError();
    free(t);
    free(ins);
}

static const char *const KIND_NAMES[K_KINDS] = {
    "upload",    "download", "embed", "rmsnorm", "matmul", "rope",  "kv_write",
    "attention", "add",      "glu",   "gather",  "topk",   "argmax"};

/* BEAST_CUDA_PROFILE=1 (eager runs only): time every launch group with
 * events, summed per kind (fused groups under their first command's kind,
 * marked +). Printed at destroy. */
static void prof_begin(cuda_impl *c, int slot) {
    if (!c->prof_ev[2 * slot]) {
        cudaEventCreate(&c->prof_ev[2 * slot]);
        cudaEventCreate(&c->prof_ev[2 * slot + 1]);
    }
    cudaEventRecord(c->prof_ev[2 * slot], c->stream);
}

static void run_all(cuda_impl *c, int profile) {
    int slots = 0;
    for (int k = 0; k < c->nq;) {
        int prof = profile && slots < PROF_SLOTS;
        if (prof) prof_begin(c, slots);
        int used = run_step(c, k);
        if (!used && c->fuse) used = run_fused(c, k);
        int fused = used > 1;
        if (!used) {
            run_cmd(c, &c->q[k]);
            used = 1;
        }
        if (prof) {
            cudaEventRecord(c->prof_ev[2 * slots + 1], c->stream);
            c->prof_kind[slots++] = c->q[k].kind + (fused ? 100 : 0);
        }
        k += used;
    }
    c->prof_used = slots;
}

static void prof_collect(cuda_impl *c) {
    for (int k = 0; k < c->prof_used; k++) {
        float ms = 0;
        if (cudaEventElapsedTime(&ms, c->prof_ev[2 * k], c->prof_ev[2 * k + 1]) == cudaSuccess) {
            int kind = c->prof_kind[k] % 100, f = c->prof_kind[k] >= 100;
            c->prof_ms[kind][f] += ms;
            c->prof_n[kind][f]++;
        }
    }
    c->prof_used = 0;
}

static void run_eager(cuda_impl *c) {
    run_all(c, c->profile);
    c->n_eager++;
}

/* Capture the queue into e->exec; 0 or -1 (then e->bad is set). */
static int capture(cuda_impl *c, graph_entry *e) {
    cudaGraph_t g = NULL;
    int failed_before = c->failed;
    double t0 = now_ms();
    if (cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess)
        goto bad;
    run_all(c, 0);
    if (cudaStreamEndCapture(c->stream, &g) != cudaSuccess || !g || c->failed != failed_before)
        goto bad;
    if (cudaGraphInstantiate(&e->exec, g, 0) != cudaSuccess) goto bad;
    cudaGraphDestroy(g);
    c->n_captures++;
    c->capture_ms += now_ms() - t0;
    return 0;
bad:
    if (g) cudaGraphDestroy(g);
    cudaGetLastError(); /* clear the capture error */
    e->exec = NULL;
    e->bad = 1;
    c->failed = failed_before;
    return -1;
}

/* Launch everything queued (a graph, or eagerly); nothing waits. */
static void launch_queue(cuda_impl *c) {
    if (c->nq > 0) {
        graph_entry *e = NULL;
        /* a lone command (the engine reading one row of logits) gains
         * nothing from a graph, and one graph per row would crowd out the
         * decode steps' */
        if (c->use_graphs && c->nq > 1) {
            uint64_t h = hash_cmds(c->q, c->nq);
            e = find_graph(c, h);
            if (!e) {
                add_graph(c, h);
                e = NULL; /* first sighting: eager */
            } else if (!e->exec && !e->bad) {
                step_prepare(c);
                capture(c, e);
            }
            if (e) e->last_use = ++c->tick;
        }
        if (e && e->exec) {
            if (cudaGraphLaunch(e->exec, c->stream) != cudaSuccess) {
                cudaGetLastError();
                e->bad = 1;
                cudaGraphExecDestroy(e->exec);
                e->exec = NULL;
                step_prepare(c);
                run_eager(c);
            } else {
                c->n_replays++;
            }
        } else {
            step_prepare(c);
            run_eager(c);
        }
    }
    c->q_prog_n = 0;
}

/* Ticket slot t's downloads into their destinations; the slot is free. */
static void ticket_finish(cuda_impl *c, int t) {
    for (int k = 0; k < c->tix[t].n_dl; k++) {
        const async_dl *d = &c->tix[t].dl[k];
        memcpy(d->dst, c->tix[t].pin + d->off, d->n);
    }
    c->tix[t].n_dl = 0;
    c->tix[t].ticket = 0;
}

/* Wait for ticket `ticket` and every earlier one. 0, or -1 with err_set. */
static int ticket_wait(cuda_impl *c, int64_t ticket) {
    int rc = 0;
    for (int64_t t = ticket - TICKETS + 1; t <= ticket; t++) { /* oldest first */
        int k = (int)(t % TICKETS);
        if (t < 1 || c->tix[k].ticket != t) continue;
        cudaError_t err = cudaEventSynchronize(c->tix[k].ev);
        if (err == cudaSuccess) err = cudaGetLastError();
        if (err != cudaSuccess && !rc) {
            err_set("cuda: %s", cudaGetErrorString(err));
            rc = -1;
        }
        ticket_finish(c, k);
    }
    for (int u = 0; u < 2; u++)
        if (c->upb[u].ticket <= ticket) c->upb[u].ticket = 0;
    return rc;
}

/* Take the next ticket for the work launched so far: its slot (waiting for
 * the submit that held it TICKETS ago), the queued async downloads copied
 * into the slot's pinned area, and its event. The ticket, or -1. */
static int64_t ticket_take(cuda_impl *c) {
    const int n_adl = c->n_adl;
    c->n_adl = 0; /* taken by this ticket, or dropped with it on failure */
    int64_t t = c->ticket_seq + 1;
    int k = (int)(t % TICKETS);
    if (c->tix[k].ticket && ticket_wait(c, c->tix[k].ticket)) return -1;
    size_t need = 0;
    for (int j = 0; j < n_adl; j++) need += (c->adl[j].n + 15) & ~(size_t)15;
    if (c->tix[k].cap_dl < n_adl) {
        async_dl *d = (async_dl *)realloc(c->tix[k].dl, (size_t)n_adl * sizeof *d);
        if (!d) {
            err_set("out of memory (downloads)");
            return -1;
        }
        c->tix[k].dl = d;
        c->tix[k].cap_dl = n_adl;
    }
    if (need > c->tix[k].pin_cap) { /* no graph copies into it: no graphs to drop */
        void *p = NULL;
        size_t cap = need < 4096 ? 4096 : 2 * need;
        if (!cu_ok(cudaHostAlloc(&p, cap, cudaHostAllocDefault), "pinned allocation")) return -1;
        if (c->tix[k].pin) cudaFreeHost(c->tix[k].pin);
        c->tix[k].pin = (uint8_t *)p;
        c->tix[k].pin_cap = cap;
    }
    if (!c->tix[k].ev &&
        !cu_ok(cudaEventCreateWithFlags(&c->tix[k].ev, cudaEventDisableTiming), "event creation"))
        return -1;
    size_t off = 0;
    for (int j = 0; j < n_adl; j++) {
        const async_dl *a = &c->adl[j];
        cudaMemcpyAsync(c->tix[k].pin + off, a->src, a->n, cudaMemcpyDeviceToHost, c->stream);
        c->tix[k].dl[j] = *a;
        c->tix[k].dl[j].off = off;
        off += (a->n + 15) & ~(size_t)15;
    }
    c->tix[k].n_dl = n_adl;
    if (!cu_ok(cudaEventRecord(c->tix[k].ev, c->stream), "event record")) return -1;
    c->tix[k].ticket = t;
    c->ticket_seq = t;
    return t;
}

/* Run everything queued and wait for it. 0, or -1 with err_set. */
static int flush_sync(cuda_impl *c) {
    launch_queue(c);
    int64_t t = c->n_adl ? ticket_take(c) : 0;
    cudaError_t err = cudaStreamSynchronize(c->stream);
    if (err == cudaSuccess) err = cudaGetLastError();
    if (c->prof_used) prof_collect(c);
    if (err == cudaSuccess) step_trace_collect(c);
    c->trace_prog = -1;
    c->nq = 0;
    c->up_used = 0;
    ticket_wait(c, c->ticket_seq); /* all done: their downloads into place */
    if (err != cudaSuccess || t < 0) {
        if (err != cudaSuccess) err_set("cuda: %s", cudaGetErrorString(err));
        c->failed = 1;
        return -1;
    }
    return 0;
}

/* ---- memory ---- */
static void *cu_alloc(backend *b, size_t n) {
    void *p = NULL;
    if (cudaMalloc(&p, n ? n : 256) != cudaSuccess) {
        cudaGetLastError();
        err_set("cuda: out of device memory (asked for %zu bytes)", n);
        return NULL;
    }
    if (!cu_ok(cudaMemset(p, 0, n ? n : 256), "memset")) {
        cudaFree(p);
        return NULL;
    }
    (void)b;
    return p;
}

/* Cached graphs hold on to the allocations their copy nodes were captured
 * with (a launch after that memory is freed crashed in the driver, even when
 * an identical sequence had reused the address): any free drops them. Frees
 * come at context and model teardown, not per step. */
static void cu_free(backend *b, void *p) {
    if (!p) return;
    cuda_impl *c = impl(b);
    flush_sync(c);
    drop_graphs(c);
    cudaFree(p);
}

static int cu_upload(backend *b, void *dst, const void *src, size_t n) {
    cuda_impl *c = impl(b);
    if (n == 0) return 0;
    const int u = c->up_cur;
    /* the buffer's last submit must have read it before it is written */
    if (c->up_used == 0 && c->upb[u].ticket && ticket_wait(c, c->upb[u].ticket)) return -1;
    size_t off = (c->up_used + 15) & ~(size_t)15;
    if (grow_pinned(c, &c->upb[u].host, &c->upb[u].cap, off + n, c->up_used, &c->upb[u].dev))
        return -1;
    memcpy(c->upb[u].host + off, src, n);
    c->up_used = off + n;
    cmd *k = push(c, K_UPLOAD);
    if (!k) return -1;
    k->p[0] = dst;
    k->i[0] = u;
    k->l[0] = (int64_t)off;
    k->l[1] = (int64_t)n;
    return 0;
}

static int cu_download_async(backend *b, void *dst, const void *src, size_t n) {
    cuda_impl *c = impl(b);
    if (n == 0) return 0;
    if (c->n_adl == c->cap_adl) {
        int cap = c->cap_adl ? 2 * c->cap_adl : 8;
        async_dl *a = (async_dl *)realloc(c->adl, (size_t)cap * sizeof *a);
        if (!a) {
            err_set("out of memory (downloads)");
            return -1;
        }
        c->adl = a;
        c->cap_adl = cap;
    }
    c->adl[c->n_adl++] = async_dl{dst, src, n, 0};
    return 0;
}

/* Launch what is queued without waiting (backend.h: running ahead). Timed
 * runs (profile, step trace) wait here instead, as their collection needs. */
static int64_t cu_submit(backend *b) {
    cuda_impl *c = impl(b);
    if (c->profile || c->step_trace) {
        if (flush_sync(c) || c->failed) {
            c->failed = 0;
            return -1;
        }
        return ++c->ticket_seq; /* done: waiting for it returns at once */
    }
    launch_queue(c);
    int64_t t = ticket_take(c);
    c->nq = 0;
    if (t > 0) {
        c->upb[c->up_cur].ticket = t;
        c->up_cur ^= 1;
        c->up_used = 0;
    }
    if (t < 0 || c->failed) {         /* the failing command said why */
        if (t > 0) ticket_wait(c, t); /* its downloads land before their owners go */
        c->failed = 0;
        return -1;
    }
    return t;
}

static int cu_wait(backend *b, int64_t ticket) {
    return ticket_wait(impl(b), ticket);
}

static int cu_download(backend *b, void *dst, const void *src, size_t n) {
    cuda_impl *c = impl(b);
    if (n > 0) {
        if (grow_pinned(c, &c->down, &c->down_cap, n, 0, NULL)) return -1;
        cmd *k = push(c, K_DOWNLOAD);
        if (!k) return -1;
        k->p[0] = src;
        k->l[0] = (int64_t)n;
    }
    if (flush_sync(c)) return -1;
    if (c->failed) {
        c->failed = 0;
        return -1;
    }
    if (n > 0) memcpy(dst, c->down, n);
    return 0;
}

static int cu_weight_init(backend *b, bk_weight *w) {
    cuda_impl *c = impl(b);
    if (!cuda_type_supported(w->type)) {
        const quant_traits *qt = quant_get(w->type);
        err_set("the CUDA backend does not compute with type %s", qt ? qt->name : "?");
        return -1;
    }
    size_t n = quant_row_size(w->type, w->cols) * (size_t)w->rows;
    if (!n) return -1;
    double t0 = now_ms();
    void *p = NULL;
    /* + 64: the step program copies 16-byte aligned ranges around rows that
     * are only 2-byte aligned (Q6_K), up to 15 bytes past the last one */
    if (cudaMalloc(&p, n + 64) != cudaSuccess) {
        cudaGetLastError();
        err_set("cuda: out of device memory for a %lld x %lld weight (%zu MiB; %zu MiB of weights "
                "already on the device)",
                (long long)w->rows, (long long)w->cols, n >> 20, c->weight_bytes >> 20);
        return -1;
    }
    if (!cu_ok(cudaMemcpy(p, w->host, n, cudaMemcpyHostToDevice), "weight upload")) {
        cudaFree(p);
        return -1;
    }
    if (c->n_weights == c->cap_weights) {
        int cap = c->cap_weights ? 2 * c->cap_weights : 64;
        void **nw = (void **)realloc(c->weights, (size_t)cap * sizeof *nw);
        if (!nw) {
            cudaFree(p);
            err_set("out of memory");
            return -1;
        }
        c->weights = nw;
        c->cap_weights = cap;
    }
    c->weights[c->n_weights++] = p;
    c->weight_bytes += n;
    c->upload_ms += now_ms() - t0;
    w->data = p;
    return 0;
}

/* Weights may be bound twice (tied embeddings share one copy): free each
 * device copy once. */
static void cu_weight_release(backend *b, bk_weight *w) {
    cuda_impl *c = impl(b);
    for (int k = 0; k < c->n_weights; k++)
        if (c->weights[k] == w->data) {
            flush_sync(c);
            drop_graphs(c);
            f16_drop(c, w->data);
            cudaFree(c->weights[k]);
            c->weights[k] = c->weights[--c->n_weights];
            break;
        }
    w->data = NULL;
}

/* ---- compute: record ---- */
static void cu_embed(backend *b, float *out, const bk_weight *w, const int32_t *ids, int n,
                     float scale) {
    cmd *k = push(impl(b), K_EMBED);
    if (!k) return;
    k->p[0] = out, k->p[1] = w->data, k->p[2] = ids;
    k->i[0] = w->type, k->i[1] = n;
    k->l[0] = w->cols;
    k->f[0] = scale;
}

static void cu_rmsnorm(backend *b, float *out, const float *x, const float *w, int rows, int dim,
                       float eps) {
    cmd *k = push(impl(b), K_RMSNORM);
    if (!k) return;
    k->p[0] = out, k->p[1] = x, k->p[2] = w;
    k->i[0] = rows, k->i[1] = dim;
    k->f[0] = eps;
}

static void cu_matmul(backend *b, float *out, const bk_weight *w, const float *x, int n) {
    cuda_impl *c = impl(b);
    /* the path: mat-vec, or cuBLAS (gemm) */
    const __half *w16 = NULL;
    int gemm = 0;
    if (!b->deterministic && n > 1) {
        if (w->type == QT_F32) {
            gemm = n > c->mv_max_slices;
        } else if (n > c->mv_max) {
            w16 = f16_find(c, w);
            gemm = w16 || n > c->mv_max_slices;
        }
    }
    if (gemm && w->type != QT_F32) {
        /* x in f16: n * cols halves */
        if (grow_device(c, (float **)&c->x16, &c->x16_cap, ((size_t)n * w->cols + 1) / 2)) {
            c->failed = 1;
            return;
        }
        if (!w16) { /* dequantized slices: up to 2 * gemm_max halves */
            size_t need = (size_t)w->rows * (size_t)w->cols, most = 2 * c->gemm_max;
            if (need > most) need = most - most % (size_t)w->cols;
            if (need < (size_t)w->cols) need = (size_t)w->cols;
            if (grow_device(c, &c->gemm_scratch, &c->gemm_cap, (need + 1) / 2)) {
                c->failed = 1;
                return;
            }
        }
    }
    cmd *k = push(c, K_MATMUL);
    if (!k) return;
    k->p[0] = out, k->p[1] = w->data, k->p[2] = x, k->p[3] = w16;
    /* i[2]: float activations (exact mat-vec); i[3]: the cuBLAS path */
    k->i[0] = w->type, k->i[1] = n, k->i[2] = b->deterministic || b->float_act, k->i[3] = gemm;
    k->l[0] = w->rows, k->l[1] = w->cols;
}

static void cu_rope(backend *b, float *x, const int32_t *pos, int n, int n_heads, int head_dim,
                    int n_rot, float base, float freq_scale, int neox) {
    cmd *k = push(impl(b), K_ROPE);
    if (!k) return;
    k->p[0] = x, k->p[1] = pos;
    k->i[0] = n, k->i[1] = n_heads, k->i[2] = head_dim, k->i[3] = n_rot, k->i[4] = neox;
    k->f[0] = base, k->f[1] = freq_scale;
}

static void cu_kv_write(backend *b, const bk_kv_layer *kv, const float *kk, const float *v,
                        const int32_t *slots, int n) {
    cmd *k = push(impl(b), K_KVW);
    if (!k) return;
    k->p[0] = kk, k->p[1] = v, k->p[2] = slots, k->p[3] = kv->k, k->p[4] = kv->v;
    k->i[0] = n, k->i[1] = kv->kv_dim, k->i[2] = kv->type;
}

static void cu_attention(backend *b, float *out, const float *q, const bk_kv_layer *kv,
                         const bk_attn_batch *ab, int n_head, int n_head_kv, int head_dim,
                         int window, float scale) {
    cuda_impl *c = impl(b);
    int max_len = ab->max_blocks * ab->block_size;
    int splits = b->deterministic ? cuda_attn_det_splits(max_len)
                                  : cuda_attn_splits(ab->n_tokens, n_head_kv, max_len);
    size_t need = cuda_attn_scratch(ab->n_tokens, n_head, head_dim, splits);
    if (need && grow_device(c, &c->attn_scratch, &c->attn_cap, need)) {
        c->failed = 1;
        return;
    }
    cmd *k = push(c, K_ATTN);
    if (!k) return;
    k->p[0] = out, k->p[1] = q, k->p[2] = kv->k, k->p[3] = kv->v;
    k->p[4] = ab->pos, k->p[5] = ab->seq_row, k->p[6] = ab->block_table;
    k->i[0] = kv->kv_dim, k->i[1] = kv->type, k->i[2] = ab->n_tokens, k->i[3] = ab->max_blocks;
    k->i[4] = ab->block_size, k->i[5] = n_head, k->i[6] = n_head_kv, k->i[7] = head_dim;
    k->i[8] = window, k->i[9] = splits, k->i[10] = b->deterministic ? CUDA_ATTN_DET_CHUNK : 0;
    /* a flag, not the span: the command (and a graph captured of it) stays
     * the same while the span grows, until it passes CUDA_ATTN_SHORT */
    k->i[11] = cuda_attn_short(ab->max_span, window);
    k->f[0] = scale;
}

static void cu_add(backend *b, float *x, const float *y, int64_t n) {
    cmd *k = push(impl(b), K_ADD);
    if (!k) return;
    k->p[0] = x, k->p[1] = y;
    k->l[0] = n;
}

static void cu_glu(backend *b, float *out, const float *gate, const float *up, int64_t n,
                   bk_act act) {
    cmd *k = push(impl(b), K_GLU);
    if (!k) return;
    k->p[0] = out, k->p[1] = gate, k->p[2] = up;
    k->l[0] = n;
    k->i[0] = (int)act;
}

static void cu_gather(backend *b, float *out, const float *x, const int32_t *rows, int n, int dim) {
    cmd *k = push(impl(b), K_GATHER);
    if (!k) return;
    k->p[0] = out, k->p[1] = x, k->p[2] = rows;
    k->i[0] = n, k->i[1] = dim;
}

static void cu_topk(backend *b, int32_t *ids, float *vals, float *lse, const float *logits,
                    int rows, int n_vocab) {
    cmd *k = push(impl(b), K_TOPK);
    if (!k) return;
    k->p[0] = ids, k->p[1] = vals, k->p[2] = lse, k->p[3] = logits;
    k->i[0] = rows, k->i[1] = n_vocab;
}

static void cu_argmax(backend *b, int32_t *ids, const float *logits, int rows, int n_vocab) {
    cuda_impl *c = impl(b);
    if (rows > c->am_cap) { /* zeroed scratch, left zeroed by every launch */
        void *p = NULL;
        size_t bytes = (size_t)rows * (sizeof(unsigned long long) + sizeof(unsigned));
        if (!cu_ok(cudaMalloc(&p, bytes), "argmax scratch") ||
            !cu_ok(cudaMemset(p, 0, bytes), "argmax scratch")) {
            if (p) cudaFree(p);
            c->failed = 1;
            return;
        }
        if (c->am_best) cudaFree(c->am_best); /* waits for the device */
        c->am_best = (unsigned long long *)p;
        c->am_cap = rows;
        drop_graphs(c);
    }
    cmd *k = push(c, K_ARGMAX);
    if (!k) return;
    k->p[0] = ids, k->p[1] = logits, k->p[2] = c->am_best, k->p[3] = c->am_best + c->am_cap;
    k->i[0] = rows, k->i[1] = n_vocab;
}

static int cu_sync(backend *b) {
    cuda_impl *c = impl(b);
    int rc = flush_sync(c);
    if (c->failed) rc = -1;
    c->failed = 0;
    return rc;
}

static void cu_destroy(backend *b) {
    cuda_impl *c = impl(b);
    flush_sync(c);
    if (c->verbose)
        fprintf(stderr, "beast cuda: %ld eager runs, %ld graph captures, %ld graph replays\n",
                c->n_eager, c->n_captures, c->n_replays);
    if (c->profile) {
        double total = 0;
        for (int k = 0; k < K_KINDS; k++) total += c->prof_ms[k][0] + c->prof_ms[k][1];
        fprintf(stderr, "beast cuda profile (eager launches, device time between events):\n");
        for (int k = 0; k < K_KINDS; k++)
            for (int f = 0; f < 2; f++)
                if (c->prof_n[k][f])
                    fprintf(stderr, "  %-10s%s %8ld launches %10.3f ms %6.1f%% %8.2f us each\n",
                            KIND_NAMES[k], f ? "+" : " ", c->prof_n[k][f], c->prof_ms[k][f],
                            100 * c->prof_ms[k][f] / (total > 0 ? total : 1),
                            1e3 * c->prof_ms[k][f] / c->prof_n[k][f]);
    }
    if (c->trace_launches) {
        fprintf(stderr,
                "beast cuda step trace: %ld programs, %.2f us each (first start to last "
                "end); per instruction, us:\n",
                c->trace_launches, 1e-3 * c->trace_total / c->trace_launches);
        fprintf(stderr, "  %-10s %8s %8s %8s %8s %8s\n", "kind", "count", "input", "work", "spread",
                "barrier");
        for (int k = 0; k < STEP_TRACE_KINDS; k++)
            if (c->trace_n[k])
                fprintf(stderr, "  %-10s %8ld %8.2f %8.2f %8.2f %8.2f\n", TRACE_KINDS[k],
                        c->trace_n[k], 1e-3 * c->trace_sum[k][0] / c->trace_n[k],
                        1e-3 * c->trace_sum[k][1] / c->trace_n[k],
                        1e-3 * c->trace_sum[k][2] / c->trace_n[k],
                        1e-3 * c->trace_sum[k][3] / c->trace_n[k]);
    }
    if (c->trace_dev) cudaFree(c->trace_dev);
    for (int k = 0; k < 2 * PROF_SLOTS; k++)
        if (c->prof_ev[k]) cudaEventDestroy(c->prof_ev[k]);
    drop_graphs(c);
    for (int k = 0; k < c->n_progs; k++) {
        cudaFree(c->progs[k].dev);
        free(c->progs[k].cmds);
    }
    free(c->progs);
    free(c->ins);
    free(c->q_prog);
    if (c->step_bar) cudaFree(c->step_bar);
    if (c->step_part) cudaFree(c->step_part);
    for (int k = 0; k < c->n_weights; k++) cudaFree(c->weights[k]);
    free(c->weights);
    for (int k = 0; k < c->n_f16; k++) cudaFree(c->f16[k].h);
    free(c->f16);
    if (c->x16) cudaFree(c->x16);
    if (c->attn_scratch) cudaFree(c->attn_scratch);
    if (c->gemm_scratch) cudaFree(c->gemm_scratch);
    for (int u = 0; u < 2; u++)
        if (c->upb[u].host) cudaFreeHost(c->upb[u].host);
    if (c->down) cudaFreeHost(c->down);
    for (int k = 0; k < TICKETS; k++) {
        if (c->tix[k].ev) cudaEventDestroy(c->tix[k].ev);
        if (c->tix[k].pin) cudaFreeHost(c->tix[k].pin);
        free(c->tix[k].dl);
    }
    free(c->adl);
    if (c->am_best) cudaFree(c->am_best);
    if (c->blas) cublasDestroy(c->blas);
    if (c->blas_ws) cudaFree(c->blas_ws);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c->q);
    free(c);
    free(b);
}

static const bk_ops CUDA_OPS = {
    .name = "cuda",
    .destroy = cu_destroy,
    .alloc = cu_alloc,
    .free = cu_free,
    .upload = cu_upload,
    .download = cu_download,
    .weight_init = cu_weight_init,
    .weight_release = cu_weight_release,
    .embed = cu_embed,
    .rmsnorm = cu_rmsnorm,
    .matmul = cu_matmul,
    .rope = cu_rope,
    .kv_write = cu_kv_write,
    .attention = cu_attention,
    .add = cu_add,
    .glu = cu_glu,
    .gather = cu_gather,
    .topk = cu_topk,
    .argmax = cu_argmax,
    .sync = cu_sync,
    .download_async = cu_download_async,
    .submit = cu_submit,
    .wait = cu_wait,
    .runs_ahead = 1,
};

static int env_flag(const char *name, int def) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) != 0 : def;
}

extern "C" backend *bk_cuda_new(int device) {
    double t0 = now_ms();
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        cudaGetLastError();
        err_set("no CUDA device (%s)", e != cudaSuccess ? cudaGetErrorString(e) : "none found");
        return NULL;
    }
    if (device < 0 || device >= count) {
        err_set("CUDA device %d does not exist (%d found)", device, count);
        return NULL;
    }
    backend *b = (backend *)calloc(1, sizeof *b);
    cuda_impl *c = (cuda_impl *)calloc(1, sizeof *c);
    if (!b || !c) {
        free(b);
        free(c);
        err_set("out of memory");
        return NULL;
    }
    b->ops = &CUDA_OPS;
    b->impl = c;
    c->device = device;
    c->use_graphs = env_flag("BEAST_CUDA_GRAPHS", 1);
    c->verbose = env_flag("BEAST_CUDA_VERBOSE", 0);
    c->fuse = env_flag("BEAST_CUDA_FUSE", 1);
    c->profile = env_flag("BEAST_CUDA_PROFILE", 0);
    c->exact = !env_flag("BEAST_CUDA_Q8", 1);
    c->f16_mode = env_flag("BEAST_CUDA_F16W", 1);
    c->step_mode = env_flag("BEAST_CUDA_STEP", 1);
    c->step_trace = env_flag("BEAST_CUDA_STEP_TRACE", 0);
    const char *sv = getenv("BEAST_CUDA_STEP_SPLITS");
    c->step_splits = sv && *sv ? atoi(sv) : 0;
    c->trace_prog = -1;
    {
        const char *v = getenv("BEAST_CUDA_MV_MAX");
        c->mv_max = v && *v ? atoi(v) : 1;
        if (c->mv_max < 1) c->mv_max = 1;
        if (c->mv_max > 4096) c->mv_max = 4096;
        c->mv_max_slices = v && *v ? c->mv_max : MV_BATCH_MAX;
        v = getenv("BEAST_CUDA_GEMM_SLICE_M");
        c->gemm_max = v && *v && atoi(v) > 0 ? ((size_t)atoi(v) << 20) : GEMM_SCRATCH_MAX;
    }
    if (!cu_ok(cudaSetDevice(device), "set device") ||
        !cu_ok(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), "stream") ||
        !cu_ok(cudaMalloc(&c->blas_ws, BLAS_WORKSPACE), "cuBLAS workspace"))
        goto fail;
    if (cublasCreate(&c->blas) != CUBLAS_STATUS_SUCCESS ||
        cublasSetStream(c->blas, c->stream) != CUBLAS_STATUS_SUCCESS ||
        cublasSetWorkspace(c->blas, c->blas_ws, BLAS_WORKSPACE) != CUBLAS_STATUS_SUCCESS) {
        err_set("cuda: cuBLAS initialisation failed");
        goto fail;
    }
    c->init_ms = now_ms() - t0;
    return b;
fail:
    cu_destroy(b);
    return NULL;
}

extern "C" void bk_cuda_get_stats(backend *b, bk_cuda_stats *out) {
    memset(out, 0, sizeof *out);
    if (!b || b->ops != &CUDA_OPS) return;
    cuda_impl *c = impl(b);
    out->eager_runs = c->n_eager;
    out->graph_captures = c->n_captures;
    out->graph_replays = c->n_replays;
    out->weight_bytes = c->weight_bytes;
    out->f16_bytes = c->f16_bytes;
    out->init_ms = c->init_ms;
    out->upload_ms = c->upload_ms;
    out->capture_ms = c->capture_ms;
    out->mv_max = c->mv_max;
    out->mvq_staged = cuda_mvq_staged_launches();
    out->step_launches = cuda_step_launches();
}

extern "C" void bk_cuda_set_mvq_staged(int mode) {
    cuda_mvq_set_staged(mode);
}

extern "C" int bk_is_cuda(const backend *b) {
    return b && b->ops == &CUDA_OPS;
}
