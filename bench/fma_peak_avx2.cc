#include <immintrin.h>

#include "fma_peak.h"

namespace onnxq::bench {
namespace {
template <int N>
double Chains(int64_t iters, float* sink) {
  __m256 acc[N];
  for (int i = 0; i < N; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i) * 1e-3f);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < N; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  }
  __m256 s = acc[0];
  for (int i = 1; i < N; ++i) s = _mm256_add_ps(s, acc[i]);
  float lanes[8];
  _mm256_storeu_ps(lanes, s);
  for (float v : lanes) *sink += v;
  return static_cast<double>(iters) * N * 8 * 2;
}
}  // namespace

double FmaLoopAvx2(int chains, int64_t iters, float* sink) {
  switch (chains) {
    case 8: return Chains<8>(iters, sink);
    case 12: return Chains<12>(iters, sink);
    default: return Chains<14>(iters, sink);
  }
}

}  // namespace onnxq::bench
