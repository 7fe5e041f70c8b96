// AdaRound and the asymmetric rounding target against independent references: brute force over
// every up/down rounding choice of small problems, and the least-squares target computed from the
// samples themselves (QR of the stacked ridge system, not the normal equations the code uses).
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <cmath>
#include <random>

#include "onnxq/quant/rounding.h"

namespace onnxq::quant {
namespace {

struct Problem {
  int64_t rows = 0, k = 0, n = 0;
  std::vector<float> w;
  std::vector<double> x;  // k x n
  std::vector<double> h;  // k x k
  std::vector<QuantParams> p;
};

// Correlated inputs (as neighbouring pixels or channels are) and per-row max-abs scales.
Problem MakeProblem(std::mt19937& rng, int64_t rows, int64_t k, int64_t n, int bits, double corr) {
  Problem pr;
  pr.rows = rows, pr.k = k, pr.n = n;
  std::normal_distribution<double> nd(0, 1);
  pr.w.resize(static_cast<size_t>(rows * k));
  for (auto& v : pr.w) v = static_cast<float>(nd(rng));
  std::vector<double> z(static_cast<size_t>(k * n));
  for (auto& v : z) v = nd(rng);
  pr.x.assign(static_cast<size_t>(k * n), 0.0);
  for (int64_t j = 0; j < n; ++j) {
    const double common = nd(rng);
    for (int64_t i = 0; i < k; ++i)
      pr.x[static_cast<size_t>(i * n + j)] = z[static_cast<size_t>(i * n + j)] + corr * common +
                                             (i > 0 ? 0.5 * corr * z[static_cast<size_t>((i - 1) * n + j)] : 0.0);
  }
  pr.h.assign(static_cast<size_t>(k * k), 0.0);
  for (int64_t a = 0; a < k; ++a)
    for (int64_t b = 0; b < k; ++b) {
      double s = 0;
      for (int64_t j = 0; j < n; ++j) s += pr.x[static_cast<size_t>(a * n + j)] * pr.x[static_cast<size_t>(b * n + j)];
      pr.h[static_cast<size_t>(a * k + b)] = s;
    }
  QuantSpec spec{bits, true, true, true};
  for (int64_t r = 0; r < rows; ++r) {
    double amax = 0;
    for (int64_t c = 0; c < k; ++c) amax = std::max(amax, double(std::fabs(pr.w[static_cast<size_t>(r * k + c)])));
    pr.p.push_back(*ComputeQuantParams(-amax, amax, spec));
  }
  return pr;
}

// Output error of row r's codes on the samples themselves: sum_j ((q - w) x_j)^2.
double RowError(const Problem& pr, int64_t r, const std::vector<int32_t>& codes) {
  double e = 0;
  for (int64_t j = 0; j < pr.n; ++j) {
    double s = 0;
    for (int64_t c = 0; c < pr.k; ++c)
      s += (double(DequantizeValue(codes[static_cast<size_t>(r * pr.k + c)], pr.p[static_cast<size_t>(r)])) -
            pr.w[static_cast<size_t>(r * pr.k + c)]) *
           pr.x[static_cast<size_t>(c * pr.n + j)];
    e += s * s;
  }
  return e;
}

TEST(QuantAdaRound, NearOptimalAgainstBruteForce) {
  std::mt19937 rng(11);
  double ada_total = 0, best_total = 0, near_total = 0;
  for (int trial = 0; trial < 6; ++trial) {
    Problem pr = MakeProblem(rng, 4, 10, 200, 3, 1.0);
    auto q = AdaRoundQuantizeMatrix(pr.w, pr.rows, pr.k, pr.h, pr.p);
    ASSERT_TRUE(q.ok()) << q.status().ToString();
    for (int64_t r = 0; r < pr.rows; ++r) {
      const QuantParams& p = pr.p[static_cast<size_t>(r)];
      std::vector<int32_t> near(*q), best(*q);
      for (int64_t c = 0; c < pr.k; ++c) near[static_cast<size_t>(r * pr.k + c)] = QuantizeValue(pr.w[static_cast<size_t>(r * pr.k + c)], p);
      // Brute force over floor / floor + 1 (clamped to the grid) of every weight of the row.
      double best_e = INFINITY;
      std::vector<int32_t> cand(*q);
      for (int64_t mask = 0; mask < (int64_t{1} << pr.k); ++mask) {
        for (int64_t c = 0; c < pr.k; ++c) {
          const float t = pr.w[static_cast<size_t>(r * pr.k + c)] / p.scale;
          int32_t v = static_cast<int32_t>(std::floor(t)) + static_cast<int32_t>((mask >> c) & 1);
          cand[static_cast<size_t>(r * pr.k + c)] = std::clamp(v, p.qmin, p.qmax);
        }
        const double e = RowError(pr, r, cand);
        if (e < best_e) best_e = e, best = cand;
      }
      for (int64_t c = 0; c < pr.k; ++c) {
        const int32_t v = (*q)[static_cast<size_t>(r * pr.k + c)];
        EXPECT_GE(v, p.qmin);
        EXPECT_LE(v, p.qmax);
      }
      const double ea = RowError(pr, r, *q), en = RowError(pr, r, near);
      EXPECT_LE(ea, en * 1.0001 + 1e-9) << "trial " << trial << " row " << r;
      ada_total += ea;
      best_total += best_e;
      near_total += en;
    }
  }
  // Close to the exact optimum over all rows, and far better than nearest.
  EXPECT_LE(ada_total, 1.10 * best_total) << "brute force " << best_total << " nearest " << near_total;
  EXPECT_LT(ada_total, 0.75 * near_total);  // brute force itself: 0.67 x nearest here
}

TEST(QuantAdaRound, ZeroIterationsIsNearestAndResultIsDeterministic) {
  std::mt19937 rng(5);
  Problem pr = MakeProblem(rng, 8, 24, 100, 4, 0.5);
  AdaRoundOptions o;
  o.iters = 0;
  auto q = AdaRoundQuantizeMatrix(pr.w, pr.rows, pr.k, pr.h, pr.p, o);
  ASSERT_TRUE(q.ok());
  for (int64_t r = 0; r < pr.rows; ++r)
    for (int64_t c = 0; c < pr.k; ++c) {
      const float t = pr.w[static_cast<size_t>(r * pr.k + c)] / pr.p[static_cast<size_t>(r)].scale;
      if (std::fabs(t - std::round(t)) > 0.499f) continue;  // ties may go either way
      EXPECT_EQ((*q)[static_cast<size_t>(r * pr.k + c)], QuantizeValue(pr.w[static_cast<size_t>(r * pr.k + c)], pr.p[static_cast<size_t>(r)]));
    }
  auto a = AdaRoundQuantizeMatrix(pr.w, pr.rows, pr.k, pr.h, pr.p);
  auto b = AdaRoundQuantizeMatrix(pr.w, pr.rows, pr.k, pr.h, pr.p);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  // Rows are independent: the first 3 rows alone give the same codes as in the full matrix.
  std::vector<float> w3(pr.w.begin(), pr.w.begin() + 3 * pr.k);
  std::vector<QuantParams> p3(pr.p.begin(), pr.p.begin() + 3);
  auto c = AdaRoundQuantizeMatrix(w3, 3, pr.k, pr.h, p3);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(std::equal(c->begin(), c->end(), a->begin()));
  EXPECT_FALSE(AdaRoundQuantizeMatrix(pr.w, pr.rows, pr.k + 1, pr.h, pr.p).ok());
  // Weights already on the grid (as an int8-exported model's are at 8 bits) keep their codes.
  std::vector<float> on(pr.w.size());
  std::vector<int32_t> want(pr.w.size());
  for (int64_t r = 0; r < pr.rows; ++r)
    for (int64_t c = 0; c < pr.k; ++c) {
      const QuantParams& p = pr.p[static_cast<size_t>(r)];
      const int32_t q = static_cast<int32_t>(rng() % 15) - 7;
      want[static_cast<size_t>(r * pr.k + c)] = q;
      on[static_cast<size_t>(r * pr.k + c)] = DequantizeValue(q, p);
    }
  auto g = AdaRoundQuantizeMatrix(on, pr.rows, pr.k, pr.h, pr.p);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(*g, want);
}

TEST(QuantAdaRound, AsymmetricTargetIsTheRidgeLeastSquaresSolution) {
  // min ||W' Xq - W X||^2 + lambda ||W' - W||^2, solved from the samples by QR of the stacked
  // system [Xq^T; sqrt(lambda) I] W'^T = [X^T W^T; sqrt(lambda) W^T].
  std::mt19937 rng(3);
  const int64_t rows = 5, k = 12, n = 300;
  std::normal_distribution<double> nd(0, 1);
  Eigen::MatrixXd X(k, n), Xq(k, n), W(rows, k);
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < n; ++j) {
      X(i, j) = nd(rng) + (i > 0 ? 0.7 * X(i - 1, j) : 0.0);
      Xq(i, j) = X(i, j) + 0.2 * nd(rng);  // the quantized model's inputs: perturbed
    }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < k; ++c) W(r, c) = static_cast<float>(nd(rng));
  const Eigen::MatrixXd H = Xq * Xq.transpose(), C = Xq * X.transpose();
  std::vector<double> h(static_cast<size_t>(k * k)), cc(static_cast<size_t>(k * k));
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < k; ++j) {
      h[static_cast<size_t>(i * k + j)] = H(i, j);
      cc[static_cast<size_t>(i * k + j)] = C(i, j);
    }
  std::vector<float> w(static_cast<size_t>(rows * k));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < k; ++c) w[static_cast<size_t>(r * k + c)] = static_cast<float>(W(r, c));
  for (double damp : {0.0, 0.1}) {
    auto t = AsymmetricTarget(w, rows, k, h, cc, damp);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    const double lambda = std::max(damp * H.diagonal().mean(), 1e-12 * H.diagonal().mean());
    Eigen::MatrixXd A(n + k, k), B(n + k, rows);
    A.topRows(n) = Xq.transpose();
    A.bottomRows(k) = std::sqrt(lambda) * Eigen::MatrixXd::Identity(k, k);
    B.topRows(n) = X.transpose() * W.cast<float>().cast<double>().transpose();
    B.bottomRows(k) = std::sqrt(lambda) * W.cast<float>().cast<double>().transpose();
    const Eigen::MatrixXd ref = A.colPivHouseholderQr().solve(B).transpose();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < k; ++c)
        EXPECT_NEAR((*t)[static_cast<size_t>(r * k + c)], ref(r, c), 1e-4 * (1 + std::fabs(ref(r, c))))
            << "damp " << damp << " (" << r << ", " << c << ")";
  }
  // Xq == X: the target is W itself.
  std::vector<double> hh(h);
  auto same = AsymmetricTarget(w, rows, k, hh, hh, 0.01);
  ASSERT_TRUE(same.ok());
  for (size_t i = 0; i < w.size(); ++i) EXPECT_NEAR((*same)[i], w[i], 1e-5);
}

}  // namespace
}  // namespace onnxq::quant
