#include <immintrin.h>

#include "fma_peak.h"

namespace onnxq::bench {
namespace {
// N independent chains acc = acc * a + b (no loads, no other dependencies).
template <int N>
double Chains(int64_t iters, float* sink) {
  __m512 acc[N];
  for (int i = 0; i < N; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i) * 1e-3f);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 32
    for (int i = 0; i < N; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  }
  __m512 s = acc[0];
  for (int i = 1; i < N; ++i) s = _mm512_add_ps(s, acc[i]);
  *sink += _mm512_reduce_add_ps(s);
  return static_cast<double>(iters) * N * 16 * 2;
}
}  // namespace

double FmaLoopAvx512(int chains, int64_t iters, float* sink) {
  switch (chains) {
    case 8: return Chains<8>(iters, sink);
    case 12: return Chains<12>(iters, sink);
    case 16: return Chains<16>(iters, sink);
    default: return Chains<24>(iters, sink);
  }
}

}  // namespace onnxq::bench
