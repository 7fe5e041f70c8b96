// Helpers shared by the kernel tests: deterministic random data and an error bound for float sums.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "onnxq/kernels/cpu.h"

namespace onnxq::kernels::testing {

inline std::vector<float> RandomVector(int64_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

// Worst-case rounding error of a float sum of `terms` products whose absolute values sum to
// `abs_sum` (plus the epilogue's few roundings): tight, yet independent of the summation order.
inline double SumTolerance(int64_t terms, double abs_sum) {
  return (static_cast<double>(terms) + 4.0) * 6.0e-8 * abs_sum + 1e-7;
}

inline std::string IsaLabel(Isa isa) { return IsaName(isa); }

}  // namespace onnxq::kernels::testing
