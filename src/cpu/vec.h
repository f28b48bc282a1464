/* vec.h: AVX2 elementwise kernels of the CPU backend (cpu_backend.c keeps
 * the scalar versions as the reference and fallback). */
#ifndef BEAST_CPU_VEC_H
#define BEAST_CPU_VEC_H

#include <stdint.h>

/* out[i] = act(gate[i]) * up[i]; act 0 = SiLU x / (1 + e^-x), 1 = GELU with
 * the tanh approximation, computed as x / (1 + e^(-2u)), u = sqrt(2/pi) *
 * (x + 0.044715 x^3) (the same function: (1 + tanh u) / 2 = 1 / (1 + e^-2u)).
 * Relative error a few ulp: e^x by range reduction and a degree-7
 * polynomial. */
void vec_glu_avx2(float *out, const float *gate, const float *up, int64_t n, int act);

#endif
