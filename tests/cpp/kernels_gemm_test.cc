#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels_test_util.h"
#include "onnxq/base/thread_pool.h"
#include "onnxq/kernels/gemm.h"

namespace onnxq::kernels {
namespace {

using testing::RandomVector;
using testing::SumTolerance;

struct GemmCase {
  bool ta, tb;
  int64_t m, n, k;
  float alpha, beta;
  int64_t pad;  // extra elements per row in lda / ldb / ldc
};

// Element-wise bound for |C - C_ref|: from the reference run on |A|, |B| (and |beta * C|).
std::vector<float> AbsSums(const GemmCase& g, const std::vector<float>& a, int64_t lda,
                           const std::vector<float>& b, int64_t ldb, const std::vector<float>& c0,
                           int64_t ldc) {
  std::vector<float> aa(a.size()), ab(b.size()), ac(c0.size());
  for (size_t i = 0; i < a.size(); ++i) aa[i] = std::fabs(a[i]);
  for (size_t i = 0; i < b.size(); ++i) ab[i] = std::fabs(b[i]);
  for (size_t i = 0; i < c0.size(); ++i) ac[i] = std::isfinite(c0[i]) ? std::fabs(c0[i]) : 0.f;
  SgemmReference(g.ta, g.tb, g.m, g.n, g.k, std::fabs(g.alpha), aa.data(), lda, ab.data(), ldb,
                 std::fabs(g.beta), ac.data(), ldc);
  return ac;
}

void CheckGemm(const GemmCase& g, Isa isa, ThreadPool* pool, uint32_t seed) {
  const int64_t a_rows = g.ta ? g.k : g.m, a_cols = g.ta ? g.m : g.k;
  const int64_t b_rows = g.tb ? g.n : g.k, b_cols = g.tb ? g.k : g.n;
  const int64_t lda = a_cols + g.pad, ldb = b_cols + g.pad, ldc = g.n + g.pad;
  std::vector<float> a = RandomVector(a_rows * lda, seed);
  std::vector<float> b = RandomVector(b_rows * ldb, seed + 1);
  std::vector<float> c0 = RandomVector(g.m * ldc, seed + 2);
  // beta == 0 must never read C: poison it.
  if (g.beta == 0.f) std::fill(c0.begin(), c0.end(), std::numeric_limits<float>::quiet_NaN());
  std::vector<float> expect = c0, got = c0;
  SgemmReference(g.ta, g.tb, g.m, g.n, g.k, g.alpha, a.data(), lda, b.data(), ldb, g.beta,
                 expect.data(), ldc);
  Sgemm(g.ta, g.tb, g.m, g.n, g.k, g.alpha, a.data(), lda, b.data(), ldb, g.beta, got.data(), ldc,
        pool, isa);
  const std::vector<float> bound = AbsSums(g, a, lda, b, ldb, c0, ldc);
  int bad = 0;
  for (int64_t i = 0; i < g.m; ++i) {
    for (int64_t j = 0; j < ldc; ++j) {
      const float e = expect[i * ldc + j], v = got[i * ldc + j];
      if (j >= g.n) {
        // Padding columns must be untouched.
        if (std::memcmp(&v, &c0[i * ldc + j], sizeof(float)) != 0 && bad++ < 5) {
          ADD_FAILURE() << "wrote padding at " << i << "," << j;
        }
        continue;
      }
      const double tol = SumTolerance(g.k, bound[i * ldc + j]);
      if (!(std::fabs(static_cast<double>(v) - e) <= tol) && bad++ < 5) {
        ADD_FAILURE() << IsaName(isa) << " ta=" << g.ta << " tb=" << g.tb << " m=" << g.m
                      << " n=" << g.n << " k=" << g.k << " alpha=" << g.alpha << " beta=" << g.beta
                      << " at (" << i << "," << j << "): got " << v << " want " << e << " tol " << tol;
      }
    }
  }
  EXPECT_EQ(bad, 0);
}

std::vector<GemmCase> Cases() {
  std::vector<GemmCase> cases;
  const int64_t sizes[][3] = {{1, 1, 1},   {3, 5, 7},    {8, 48, 16},  {9, 49, 17},
                              {16, 16, 256}, {17, 33, 257}, {24, 100, 96}, {5, 800, 40},
                              {70, 13, 520}, {33, 65, 3},   {1, 300, 64},  {130, 1, 31},
                              // 1-4 column edges (the narrow kernel), with k > KC
                              {20, 50, 600}, {19, 52, 300}, {8, 99, 259}, {12, 196, 40}};
  int variant = 0;
  for (const auto& s : sizes) {
    for (int t = 0; t < 4; ++t) {
      const float alphas[] = {1.f, 0.5f, -2.f};
      const float betas[] = {0.f, 1.f, 0.75f};
      cases.push_back({(t & 1) != 0, (t & 2) != 0, s[0], s[1], s[2], alphas[variant % 3],
                       betas[(variant / 3) % 3], (variant % 2) * 3});
      ++variant;
    }
  }
  return cases;
}

TEST(KernelsGemm, EveryIsaMatchesReference) {
  ThreadPool pool(3);
  uint32_t seed = 1;
  for (Isa isa : SupportedIsas()) {
    SCOPED_TRACE(IsaName(isa));
    for (const GemmCase& g : Cases()) {
      CheckGemm(g, isa, nullptr, seed++);
      CheckGemm(g, isa, &pool, seed++);
    }
  }
}

TEST(KernelsGemm, ZeroDepthScalesC) {
  for (Isa isa : SupportedIsas()) {
    std::vector<float> c = {1.f, 2.f, 3.f, 4.f};
    Sgemm(false, false, 2, 2, 0, 1.f, nullptr, 1, nullptr, 2, 0.5f, c.data(), 2, nullptr, isa);
    EXPECT_EQ(c, (std::vector<float>{0.5f, 1.f, 1.5f, 2.f})) << IsaName(isa);
  }
}

TEST(KernelsGemm, HandComputed) {
  // [1 2; 3 4] * [5 6; 7 8] = [19 22; 43 50]
  const float a[] = {1, 2, 3, 4}, b[] = {5, 6, 7, 8};
  for (Isa isa : SupportedIsas()) {
    float c[4];
    Sgemm(false, false, 2, 2, 2, 1.f, a, 2, b, 2, 0.f, c, 2, nullptr, isa);
    EXPECT_EQ(std::vector<float>(c, c + 4), (std::vector<float>{19, 22, 43, 50})) << IsaName(isa);
    Sgemm(true, true, 2, 2, 2, 1.f, a, 2, b, 2, 0.f, c, 2, nullptr, isa);  // A^T B^T
    EXPECT_EQ(std::vector<float>(c, c + 4), (std::vector<float>{23, 31, 34, 46})) << IsaName(isa);
  }
}

TEST(KernelsGemm, PackedBMatchesReference) {
  ThreadPool pool(2);
  uint32_t seed = 100;
  const int64_t shapes[][3] = {{1, 1000, 1280}, {7, 49, 33}, {32, 96, 300}, {3, 17, 5}};
  for (Isa isa : SupportedIsas()) {
    for (const auto& s : shapes) {
      for (int t = 0; t < 4; ++t) {
        const bool ta = t & 1, tb = t & 2;
        const int64_t m = s[0], n = s[1], k = s[2];
        std::vector<float> a = RandomVector(m * k, seed++), b = RandomVector(k * n, seed++);
        const int64_t lda = ta ? m : k, ldb = tb ? k : n;
        auto packed = PackedGemmB::Create(tb, k, n, b.data(), ldb, isa);
        ASSERT_TRUE(packed.ok()) << packed.status().ToString();
        std::vector<float> c0 = RandomVector(m * n, seed++);
        std::vector<float> expect = c0, got = c0;
        SgemmReference(ta, tb, m, n, k, 1.5f, a.data(), lda, b.data(), ldb, 0.5f, expect.data(), n);
        (*packed)->Run(ta, m, 1.5f, a.data(), lda, 0.5f, got.data(), n, (t & 1) ? &pool : nullptr);
        GemmCase g{ta, tb, m, n, k, 1.5f, 0.5f, 0};
        const std::vector<float> bound = AbsSums(g, a, lda, b, ldb, c0, n);
        for (int64_t i = 0; i < m * n; ++i) {
          ASSERT_NEAR(got[i], expect[i], SumTolerance(k, bound[i]))
              << IsaName(isa) << " m=" << m << " n=" << n << " k=" << k << " at " << i;
        }
      }
    }
  }
}

TEST(KernelsGemm, DeterministicForAThreadCount) {
  const int64_t m = 100, n = 913, k = 600;  // the last column block ends in a 1-column edge
  std::vector<float> a = RandomVector(m * k, 7), b = RandomVector(k * n, 8);
  for (Isa isa : SupportedIsas()) {
    std::vector<float> first;
    for (int threads : {2, 2, 1}) {
      ThreadPool pool(threads);
      std::vector<float> c(m * n);
      for (int rep = 0; rep < 2; ++rep) {
        Sgemm(false, false, m, n, k, 1.f, a.data(), k, b.data(), n, 0.f, c.data(), n, &pool, isa);
        if (first.empty()) first = c;
        // Each output's summation order depends only on k, so even another thread count gives
        // identical bits.
        ASSERT_EQ(std::memcmp(first.data(), c.data(), c.size() * sizeof(float)), 0)
            << IsaName(isa) << " threads=" << threads;
      }
    }
  }
}

}  // namespace
}  // namespace onnxq::kernels
