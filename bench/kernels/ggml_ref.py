#!/usr/bin/env python3
"""ggml_ref.py: the same matmul shapes as bench/kernels/matmul.c, timed in
llama.cpp's CPU backend (ggml), for comparison. Calls the ggml shared
libraries that llama-cpp-python installs, through ctypes (a measurement
tool only: not part of the build or the tests; CI has no llama.cpp).

Weights are random normal values quantized with ggml's own quantizer; the
activations are f32 (ggml quantizes them per call, like beast). One
ggml_mul_mat node, computed with ggml_graph_compute_with_ctx on T threads,
minimum over R runs. Tensors in plain memory use ggml's vec_dot / llamafile
paths; the weight repacking that llama.cpp applies when it loads a model
(Q4_0, Q4_K, IQ4_NL on AVX2) is not used here. With -t 1 the time is the
CPU time of the calling thread (ggml runs single-threaded graphs on it), as
matmul.c's single-thread columns; with more threads, wall time.

usage: ggml_ref.py [-t threads] [-r reps] [-s ROWS,K,N] [TYPE...]
"""
import ctypes as C
import glob
import os
import sys
import time

import numpy as np

TYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q8_0": 8,
         "Q2_K": 10, "Q3_K": 11, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14, "BF16": 30}
ORDER = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
         "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]


def libdir():
    import llama_cpp  # noqa: F401  (only to find the installed libraries)
    d = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    if not glob.glob(os.path.join(d, "libggml-cpu.so*")):
        sys.exit("no libggml-cpu.so next to llama_cpp")
    return d


class InitParams(C.Structure):
    _fields_ = [("mem_size", C.c_size_t), ("mem_buffer", C.c_void_p), ("no_alloc", C.c_bool)]


def load():
    d = libdir()
    base = C.CDLL(os.path.join(d, "libggml-base.so"), mode=C.RTLD_GLOBAL)
    cpu = C.CDLL(os.path.join(d, "libggml-cpu.so"), mode=C.RTLD_GLOBAL)
    base.ggml_init.argtypes = [InitParams]
    base.ggml_init.restype = C.c_void_p
    base.ggml_free.argtypes = [C.c_void_p]
    base.ggml_new_tensor_2d.argtypes = [C.c_void_p, C.c_int, C.c_int64, C.c_int64]
    base.ggml_new_tensor_2d.restype = C.c_void_p
    base.ggml_get_data.argtypes = [C.c_void_p]
    base.ggml_get_data.restype = C.c_void_p
    base.ggml_mul_mat.argtypes = [C.c_void_p, C.c_void_p, C.c_void_p]
    base.ggml_mul_mat.restype = C.c_void_p
    base.ggml_new_graph.argtypes = [C.c_void_p]
    base.ggml_new_graph.restype = C.c_void_p
    base.ggml_build_forward_expand.argtypes = [C.c_void_p, C.c_void_p]
    base.ggml_row_size.argtypes = [C.c_int, C.c_int64]
    base.ggml_row_size.restype = C.c_size_t
    base.ggml_quantize_chunk.argtypes = [C.c_int, C.c_void_p, C.c_void_p, C.c_int64, C.c_int64,
                                         C.c_int64, C.c_void_p]
    base.ggml_quantize_chunk.restype = C.c_size_t
    cpu.ggml_cpu_init.argtypes = []
    cpu.ggml_graph_compute_with_ctx.argtypes = [C.c_void_p, C.c_void_p, C.c_int]
    cpu.ggml_graph_compute_with_ctx.restype = C.c_int
    cpu.ggml_cpu_init()
    return base, cpu


def measure(base, cpu, tname, rows, k, n, threads, reps, rng):
    t = TYPES[tname]
    wbytes = base.ggml_row_size(t, k) * rows
    ctx = base.ggml_init(InitParams(wbytes + n * k * 4 + n * rows * 4 + n * k * 2 + (64 << 20),
                                    None, False))
    a = base.ggml_new_tensor_2d(ctx, t, k, rows)
    b = base.ggml_new_tensor_2d(ctx, 0, k, n)
    # 16 distinct quantized rows, repeated (as matmul.c does)
    src = (0.5 * rng.standard_normal((16, k))).astype(np.float32)
    rs = base.ggml_row_size(t, k)
    q = (C.c_uint8 * (rs * 16))()
    base.ggml_quantize_chunk(t, src.ctypes.data, C.addressof(q), 0, 16, k, None)
    dst = base.ggml_get_data(a)
    for r in range(rows):
        C.memmove(dst + r * rs, C.addressof(q) + (r % 16) * rs, rs)
    x = rng.standard_normal((n, k)).astype(np.float32)
    C.memmove(base.ggml_get_data(b), x.ctypes.data, x.nbytes)
    c = base.ggml_mul_mat(ctx, a, b)
    gf = base.ggml_new_graph(ctx)
    base.ggml_build_forward_expand(gf, c)
    cpu.ggml_graph_compute_with_ctx(ctx, gf, threads)  # warm-up
    clock = time.thread_time if threads == 1 else time.perf_counter
    best = 1e30
    for _ in range(reps):
        t0 = clock()
        cpu.ggml_graph_compute_with_ctx(ctx, gf, threads)
        best = min(best, clock() - t0)
    base.ggml_free(ctx)
    return best, wbytes


def main():
    args = sys.argv[1:]
    threads, reps, types, custom = 2, 5, [], None
    i = 0
    while i < len(args):
        if args[i] == "-t":
            threads = int(args[i + 1]); i += 2
        elif args[i] == "-r":
            reps = int(args[i + 1]); i += 2
        elif args[i] == "-s":
            custom = [int(v) for v in args[i + 1].split(",")]; i += 2
        else:
            types.append(args[i]); i += 1
    types = types or ORDER
    base, cpu = load()
    rng = np.random.default_rng(1)
    print(f"ggml (llama.cpp CPU backend), {threads} threads, min of {reps} runs")
    if custom:
        rows, k, n = custom
        for tn in types:
            t, b = measure(base, cpu, tn, rows, k, n, threads, reps, rng)
            print(f"{tn:5} | {rows}x{k} n={n}: {b / t * 1e-9:.2f} GB/s, "
                  f"{2 * rows * k * n / t * 1e-9:.2f} GFLOP/s", flush=True)
        return
    print(f"{'type':5} | {'2048x2048 GB/s':>14} | {'8192x2048 GB/s':>14} | {'batch512 GFLOP/s':>16}")
    for tn in types:
        t1, b1 = measure(base, cpu, tn, 2048, 2048, 1, threads, reps, rng)
        t2, b2 = measure(base, cpu, tn, 8192, 2048, 1, threads, reps, rng)
        t3, _ = measure(base, cpu, tn, 2048, 2048, 512, threads, max(1, reps // 2), rng)
        print(f"{tn:5} | {b1 / t1 * 1e-9:14.2f} | {b2 / t2 * 1e-9:14.2f} | "
              f"{2 * 2048 * 2048 * 512 / t3 * 1e-9:16.2f}", flush=True)


if __name__ == "__main__":
    main()
