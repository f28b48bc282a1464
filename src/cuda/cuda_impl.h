/* cuda_impl.h: what the files of src/cuda/ share (CUDA C++ only; not for
 * other modules): the kernel launchers. Each launcher queues its kernels on
 * the given stream and returns 0, or -1 with err_set() when the arguments
 * cannot be handled (an unsupported type or shape); launch errors are found
 * later by cudaGetLastError / the stream. dev/cuda/ calls these too. */
#ifndef BEAST_CUDA_IMPL_H
#define BEAST_CUDA_IMPL_H

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

extern "C" {
#include "backend/backend.h"
#include "util/util.h"
}

/* ---- launching (cuda_ops.cu) ----
 * Programmatic dependent launch (compute capability 9.0 and up): kernels
 * started with cuda_launch() may be scheduled while the previous kernel of
 * the stream is still running, so launch latency overlaps work. Every kernel
 * of the backend therefore calls cuda_pdl_wait() before it reads or writes
 * activation memory (reading weights before it is fine: nothing writes
 * them); the wait returns once the previous kernel has completed and its
 * writes are visible. cuda_pdl() says whether the device does it (cached
 * device property; BEAST_CUDA_PDL=0 in the environment turns it off). */
int cuda_pdl(void);

static __device__ __forceinline__ void cuda_pdl_wait(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

/* clamp to the f16 range (NaN stays NaN) */
static __device__ __forceinline__ float cuda_sat16(float v) {
    return v > 65504.f ? 65504.f : v < -65504.f ? -65504.f : v;
}

/* sin and cos of the rope angle of pair k (of n_rot / 2) at position pos:
 * theta = pos * freq_scale * base^(-2k / n_rot), reduced in double */
static __device__ __forceinline__ void cuda_rope_sincos(int32_t pos, int k, int n_rot,
                                                        double log2_base, float freq_scale,
                                                        float &sn, float &cs) {
    double theta = (double)pos * (double)freq_scale * exp2(-2.0 * k / n_rot * log2_base);
    const double two_pi = 6.283185307179586;
    double r = fma(-rint(theta / two_pi), two_pi, theta);
    sincosf((float)r, &sn, &cs);
}

template <typename... KArgs, typename... Args>
static inline void cuda_launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem,
                               cudaStream_t s, Args... args) {
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cfg.attrs = attr;
    cfg.numAttrs = cuda_pdl() ? 1 : 0;
    cudaLaunchKernelEx(&cfg, kernel, ((KArgs)args)...);
}

/* Copy n_jobs <= CUDA_COPY_MAX_JOBS small buffers in one kernel; sources
 * may be pinned host memory (read by the GPU through unified addressing). */
#define CUDA_COPY_MAX_JOBS 8
void cuda_copy_multi(cudaStream_t s, int n_jobs, void *const *dst, const void *const *src,
                     const size_t *bytes);

/* ---- cuda_matvec.cu ---- */

/* out[t][r] = sum_c W[r][c] * x[t][c] for t < n <= CUDA_MV_MAX_NT, reading
 * the weights once for all n tokens. x must be 16-byte aligned. One token
 * of a type cuda_mvq handles goes there (8-bit activations) unless `exact`
 * (the _multi / _glu forms; cuda_matvec is not exact): exact results are
 * float dot products, the same for a token whatever n is. */
#define CUDA_MV_MAX_NT 8
int cuda_matvec(cudaStream_t s, float *out, int type, const void *w, int64_t rows, int64_t cols,
                const float *x, int n);
/* The same for n_jobs <= CUDA_MV_MAX_JOBS weights of one type and width that
 * read the same x (out[k] = W_k x), in one launch. */
#define CUDA_MV_MAX_JOBS 3
int cuda_matvec_multi(cudaStream_t s, int n_jobs, float *const *out, int type, const void *const *w,
                      const int64_t *rows, int64_t cols, const float *x, int n, int exact);
/* gate = W_gate x, up = W_up x (same shape and type), then gate = act(gate) *
 * up, in one launch (n <= 4): the forward pass's gate, up and glu ops. */
int cuda_matvec_glu(cudaStream_t s, float *gate_out, float *up_out, int type, const void *w_gate,
                    const void *w_up, int64_t rows, int64_t cols, const float *x, int n, int act,
                    int exact);

/* ---- cuda_mvq.cu: one token, Q4_K / Q6_K, integer dot products on int8 x ---- */
#define CUDA_MVQ_MAX_COLS 16384
int cuda_mvq_supported(int type, int64_t cols);
/* out[k] = W_k x for n_jobs weights of one type and width (glu: gate and
 * up, out[0] = act(gate) * up with act = glu - 1, out[1] = up) */
int cuda_mvq(cudaStream_t s, int n_jobs, float *const *out, int type, const void *const *w,
             const int64_t *rows, int64_t cols, const float *x, int glu);
/* Which kernel: 0 mvq_kernel (weights loaded straight into registers), 1
 * (the default, unless BEAST_CUDA_MVQ_STAGED=0) the staged kernel (weights
 * through shared memory by cp.async) wherever it can run (16-byte aligned
 * rows; Q6_K widths a multiple of 2048). Same results either way
 * (dev/cuda/matvec times both). */
void cuda_mvq_set_staged(int on);
/* Launches of the staged kernel so far (process-wide). */
long cuda_mvq_staged_launches(void);
/* out[i][:] = scale * dequant(W[row_i]) with row_i = ids[i] (ids in device
 * memory), or row0 + i when ids is NULL; i < n. */
int cuda_dequant_rows(cudaStream_t s, float *out, int type, const void *w, int64_t cols,
                      const int32_t *ids, int64_t row0, int n, float scale);
/* out[i][:] = dequant(W[row0 + i]) in half precision, i < n (saturating at
 * the f16 range); out 16-byte aligned. */
int cuda_dequant_rows_f16(cudaStream_t s, __half *out, int type, const void *w, int64_t cols,
                          int64_t row0, int64_t n);
/* Whether cuda_matvec / cuda_dequant_rows handle this type. */
int cuda_type_supported(int type);

/* ---- cuda_ops.cu ---- */
void cuda_rmsnorm(cudaStream_t s, float *out, const float *x, const float *w, int rows, int dim,
                  float eps);
void cuda_rope(cudaStream_t s, float *x, const int32_t *pos, int n, int n_heads, int head_dim,
               int n_rot, float base, float freq_scale, int neox);
/* rope of two tensors of the same tokens (q and k) in one launch */
void cuda_rope2(cudaStream_t s, float *x, int n_heads, float *x2, int n_heads2, const int32_t *pos,
                int n, int head_dim, int n_rot, float base, float freq_scale, int neox);
/* rope of q and k (as cuda_rope2), then k and v stored at the cache slots
 * (as cuda_kv_write; kv->kv_dim = n_heads_kv * head_dim, head_dim - n_rot
 * even), in one launch */
void cuda_rope_kv(cudaStream_t s, float *q, int n_heads, float *k, int n_heads_kv, const float *v,
                  const int32_t *pos, int n, int head_dim, int n_rot, float base, float freq_scale,
                  int neox, const bk_kv_layer *kv, const int32_t *slots);
/* x += y, then out = rmsnorm(x) * w (rows of dim); out may be y */
void cuda_add_rmsnorm(cudaStream_t s, float *x, const float *y, float *out, const float *w,
                      int rows, int dim, float eps);
void cuda_kv_write(cudaStream_t s, const bk_kv_layer *kv, const float *k, const float *v,
                   const int32_t *slots, int n);
void cuda_add(cudaStream_t s, float *x, const float *y, int64_t n);
void cuda_glu(cudaStream_t s, float *out, const float *gate, const float *up, int64_t n, int act);
/* out = x in half precision, saturating at +-65504 (the f16 GEMM's input) */
void cuda_to_f16(cudaStream_t s, __half *out, const float *x, int64_t n);
void cuda_gather(cudaStream_t s, float *out, const float *x, const int32_t *rows, int n, int dim);

/* ---- cuda_topk.cu ---- */
/* backend.h's topk op: rows (<= 65535) of n_vocab logits; lse may be NULL. */
int cuda_topk(cudaStream_t s, int32_t *ids, float *vals, float *lse, const float *logits, int rows,
              int n_vocab);
/* backend.h's argmax op: rows (<= 65535) of n_vocab (>= 1) logits. best and
 * count: rows zeroed words each, which every launch leaves zeroed. */
int cuda_argmax(cudaStream_t s, int32_t *ids, const float *logits, int rows, int n_vocab,
                unsigned long long *best, unsigned *count);

/* ---- cuda_attn.cu ---- */

/* Splits of the sequence (flash-decoding) the attention uses for a batch of
 * n_tokens with n_head_kv heads and at most max_len positions a sequence. */
int cuda_attn_splits(int n_tokens, int n_head_kv, int max_len);
/* Deterministic mode: every token's positions are split at fixed multiples
 * of CUDA_ATTN_DET_CHUNK from its window start, whatever the batch, so its
 * result does not depend on the other tokens; the grid has enough splits
 * for max_len (cuda_attn_det_splits), and a token's unused splits are
 * skipped by the merge. */
#define CUDA_ATTN_DET_CHUNK 128
int cuda_attn_det_splits(int max_len);
/* Scratch floats the attention needs (partial results of the splits). */
size_t cuda_attn_scratch(int n_tokens, int n_head, int head_dim, int splits);
/* Whether a batch's tokens see at most CUDA_ATTN_SHORT positions (max_span
 * from bk_attn_batch, 0 for unknown, limited by a sliding window): then a
 * small grid takes one query head a CTA (see cuda_attention). */
#define CUDA_ATTN_SHORT 512
int cuda_attn_short(int max_span, int window);
/* chunk: 0 to divide each token's positions evenly over the splits, or the
 * fixed positions a split (deterministic mode; splits must cover max_len). */
int cuda_attention(cudaStream_t s, float *out, const float *q, const bk_kv_layer *kv,
                   const bk_attn_batch *ab, int n_head, int n_head_kv, int head_dim, int window,
                   float scale, int splits, int chunk, float *scratch);

/* ---- cuda_step.cu: the one-token step program ----
 * A run of a one-token forward pass's commands (layers: norm + q/k/v,
 * rope + KV write + attention, o + residual, norm + gate/up/glu, down +
 * residual; the output norm and matrix) as instructions that one persistent
 * kernel executes in order, with a grid barrier between them, streaming
 * every mat-vec's weights through shared memory ahead of the instruction
 * that needs them. The backend builds the program (cuda_backend.cu). */
enum { CUDA_STEP_MV = 1, CUDA_STEP_ATTN = 2 };
#define CUDA_STEP_MAX_COLS 16384
#define CUDA_STEP_MAX_INS  512 /* a program's instructions (shared memory) */
typedef struct {
    int kind;
    /* MV: out[j] = W_j x for n_jobs (<= 3) Q4_K / Q6_K weights of cols
     * columns (a type each); glu (1 + bk_act): out[0] = act(W_0 x) * W_1 x,
     * out[1] = W_1 x. x is x, or with norm_w: rmsnorm(src) * norm_w where
     * src = x + (src_row ? *src_row * cols : 0), or with merge_splits: the
     * merge of an attention instruction's splits (x its partial outputs,
     * merge_ml their maxima and sums, heads of merge_dim columns). The
     * vector built (normed or merged) is also stored to x_out (when not
     * NULL); res (one job): res += out. */
    int n_jobs, glu, cols;
    int type[3], rows[3], groups_end[3]; /* type: CQ_Q4_K / CQ_Q6_K */
    const void *w[3];
    float *out[3];
    const float *x, *norm_w, *merge_ml;
    float *x_out, *res;
    const int32_t *src_row;
    float eps;
    int merge_splits, merge_dim;
    /* set by cuda_step_upload from the attention before: its positions'
     * tile, window and position, which decide how many splits it used */
    int merge_tile, merge_window;
    const int32_t *merge_pos;
    /* ATTN (one token): q and k rotated (not written back), k and v stored
     * in the cache at slots[0], then each head's positions split over
     * `splits` CTAs (n_head * splits <= the grid), whose unnormalised
     * outputs go to part [n_head][splits][head_dim] and their (max, sum) to
     * part_ml [n_head][splits][2]; the mat-vec that reads the attention's
     * output att merges them (merge_splits) and stores att (x_out) */
    float *att;
    const float *q, *k, *v;
    void *kc, *vc;
    const int32_t *pos, *slots, *seq_row, *block_table;
    int kv_dim, f16, max_blocks, block_size, n_head, n_head_kv, head_dim, n_rot, neox, window;
    int splits;
    /* set by cuda_step_upload: its positions, splits and block table are
     * those of the attention before it (whose cache rows a CTA then reuses) */
    int same_rows;
    float scale, freq_scale;
    double log2_base;
    float *part, *part_ml;
} cuda_step_ins;
#define CUDA_STEP_ATTN_SPLITS  4    /* at most, as the grid allows */
#define CUDA_STEP_ATTN_MAX     1024 /* n_head * splits (the partial results' room) */
#define CUDA_STEP_MAX_HEAD_DIM 128  /* attention head_dim: 64 or this */
/* CTAs of a step program's grid (one an SM), 0 where programs cannot run */
int cuda_step_ctas(void);
/* Whether the device can run step programs (cooperative launch, enough
 * shared memory); cached. */
int cuda_step_supported(void);
/* A program's device copy: cuda_step_bytes(n_ins) bytes of device memory
 * filled by cuda_step_upload (the instructions, then what the kernel's
 * weight streams read of them, derived once here). 0 or -1 with err_set. */
size_t cuda_step_bytes(int n_ins);
int cuda_step_upload(void *dev, const cuda_step_ins *ins, int n_ins);
/* Run n_ins instructions of prog (a device copy from cuda_step_upload);
 * pos: its attentions' position (read once a launch), or NULL; bar: 1
 * device word, zero at first use, owned by the stream. trace: NULL, or 4 * n_ins words (zero,
 * zero, zero, all ones before the launch) that receive %globaltimer stamps
 * of each instruction: its start, the last CTA's input ready (mat-vecs),
 * the last and the first CTA's work done. 0 or -1 with err_set. */
int cuda_step_run(cudaStream_t s, const cuda_step_ins *prog, int n_ins, const int32_t *pos,
                  unsigned *bar, unsigned long long *trace);
/* Kernel launches of step programs so far (process-wide). */
long cuda_step_launches(void);

#endif
