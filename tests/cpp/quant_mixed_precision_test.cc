// Mixed precision: the exact knapsack against brute force, GPTQ against nearest rounding, and the
// Hessians of MobileNetV2's layers (when the shared model is present).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "onnxq/calib/dataset.h"
#include "onnxq/onnx/model_io.h"
#include "onnxq/quant/bit_allocation.h"
#include "onnxq/quant/quantize_model.h"
#include "onnxq/quant/rounding.h"

namespace onnxq::quant {
namespace {

namespace fs = std::filesystem;

TEST(QuantMixedPrecision, KnapsackMatchesBruteForce) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    const int n = 1 + static_cast<int>(rng() % 5);
    std::vector<std::vector<KnapsackOption>> items(static_cast<size_t>(n));
    for (auto& it : items) {
      const int m = 1 + static_cast<int>(rng() % 4);
      for (int j = 0; j < m; ++j)
        it.push_back({static_cast<double>(rng() % 20), static_cast<double>(rng() % 1000) / 7.0});
    }
    const double budget = static_cast<double>(rng() % 60);
    // Brute force over every combination.
    double best = INFINITY;
    std::vector<size_t> idx(static_cast<size_t>(n), 0);
    while (true) {
      double c = 0, v = 0;
      for (int i = 0; i < n; ++i) {
        c += items[static_cast<size_t>(i)][idx[static_cast<size_t>(i)]].cost;
        v += items[static_cast<size_t>(i)][idx[static_cast<size_t>(i)]].value;
      }
      if (c <= budget) best = std::min(best, v);
      int i = 0;
      while (i < n && ++idx[static_cast<size_t>(i)] == items[static_cast<size_t>(i)].size()) idx[static_cast<size_t>(i++)] = 0;
      if (i == n) break;
    }
    auto r = SolveMultipleChoiceKnapsack(items, budget);
    if (!std::isfinite(best)) {
      EXPECT_FALSE(r.ok()) << "trial " << trial;
      continue;
    }
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    double c = 0, v = 0;
    for (int i = 0; i < n; ++i) {
      c += items[static_cast<size_t>(i)][static_cast<size_t>((*r)[static_cast<size_t>(i)])].cost;
      v += items[static_cast<size_t>(i)][static_cast<size_t>((*r)[static_cast<size_t>(i)])].value;
    }
    EXPECT_LE(c, budget) << "trial " << trial;
    EXPECT_NEAR(v, best, 1e-9) << "trial " << trial;
  }
}

TEST(QuantMixedPrecision, KnapsackFractionalCostsStayFeasible) {
  // Costs that are not integers go through the discretised DP; the result must fit the budget.
  std::mt19937 rng(3);
  std::vector<std::vector<KnapsackOption>> items(30);
  for (auto& it : items)
    for (int b = 2; b <= 8; ++b) it.push_back({1000.37 * b, std::exp(-b) * (1 + rng() % 10)});
  const double budget = 30 * 1000.37 * 4.3;
  auto r = SolveMultipleChoiceKnapsack(items, budget, 5000);
  ASSERT_TRUE(r.ok());
  double c = 0;
  for (size_t i = 0; i < items.size(); ++i) c += items[i][static_cast<size_t>((*r)[i])].cost;
  EXPECT_LE(c, budget);
  EXPECT_GT(c, 0.98 * budget);  // nearly all the budget is used (values fall with bits)
  EXPECT_FALSE(SolveMultipleChoiceKnapsack(items, 10.0).ok());
  // A budget that exactly fits the most expensive choice everywhere gets it (rounding every cost up
  // would push the sum past the discretised budget and force a layer down).
  std::vector<std::vector<KnapsackOption>> dec(30);
  for (auto& it : dec) {
    const double m = 1 + rng() % 10;
    for (int b = 2; b <= 8; ++b) it.push_back({1000.37 * b, std::exp(-b) * m});  // falls with bits
  }
  double all8_cost = 0;
  for (const auto& it : dec) all8_cost += it[6].cost;
  auto all8 = SolveMultipleChoiceKnapsack(dec, all8_cost, 5000);
  ASSERT_TRUE(all8.ok());
  for (int j : *all8) EXPECT_EQ(j, 6);
}

TEST(QuantMixedPrecision, KnapsackBudgetEqualToTheCheapestChoice) {
  // Integer costs above the resolution: rounding costs down overspends, rounding them up cannot fit;
  // the answer is the cheapest option everywhere (e.g. "average <= 4" with candidates 4 and 8).
  std::mt19937 rng(4);
  std::vector<std::vector<KnapsackOption>> items(53);
  double cheapest = 0;
  for (auto& it : items) {
    const double params = 100 + rng() % 5000;
    it.push_back({params * 4, 0.5 + rng() % 10});
    it.push_back({params * 8, 0.01});
    cheapest += params * 4;
  }
  auto r = SolveMultipleChoiceKnapsack(items, cheapest, 2000);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  for (int j : *r) EXPECT_EQ(j, 0);
  // A little more budget: still fits, and now some items can take the better option.
  auto r2 = SolveMultipleChoiceKnapsack(items, cheapest * 1.05, 2000);
  ASSERT_TRUE(r2.ok());
  double c = 0;
  int upgraded = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    c += items[i][static_cast<size_t>((*r2)[i])].cost;
    upgraded += (*r2)[i];
  }
  EXPECT_LE(c, cheapest * 1.05);
  EXPECT_GT(upgraded, 0);
  EXPECT_FALSE(SolveMultipleChoiceKnapsack(items, cheapest * 0.999, 2000).ok());
}

std::vector<float> RandomMatrix(std::mt19937& rng, int64_t r, int64_t c) {
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> m(static_cast<size_t>(r * c));
  for (auto& v : m) v = nd(rng);
  return m;
}

std::vector<QuantParams> RowParams(const std::vector<float>& w, int64_t rows, int64_t k, int bits) {
  std::vector<QuantParams> p;
  QuantSpec spec{bits, true, true, true};
  for (int64_t r = 0; r < rows; ++r) {
    double amax = 0;
    for (int64_t c = 0; c < k; ++c) amax = std::max(amax, double(std::fabs(w[static_cast<size_t>(r * k + c)])));
    p.push_back(*ComputeQuantParams(-amax, amax, spec));
  }
  return p;
}

TEST(QuantMixedPrecision, GptqWithIdentityHessianIsNearest) {
  std::mt19937 rng(1);
  const int64_t rows = 5, k = 37;
  auto w = RandomMatrix(rng, rows, k);
  auto p = RowParams(w, rows, k, 4);
  std::vector<double> h(static_cast<size_t>(k * k), 0.0);
  for (int64_t i = 0; i < k; ++i) h[static_cast<size_t>(i * k + i)] = 3.0;
  GptqOptions o;
  o.block = 8;
  auto q = GptqQuantizeMatrix(w, rows, k, h, p, o);
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < k; ++c)
      EXPECT_EQ((*q)[static_cast<size_t>(r * k + c)], QuantizeValue(w[static_cast<size_t>(r * k + c)], p[static_cast<size_t>(r)]));
}

TEST(QuantMixedPrecision, GptqReducesOutputError) {
  // Correlated inputs X (k x n): GPTQ's output error ||(W - Q) X||^2 must be well below nearest's.
  std::mt19937 rng(2);
  const int64_t rows = 16, k = 48, n = 400;
  auto w = RandomMatrix(rng, rows, k);
  auto z = RandomMatrix(rng, k, n);
  auto mix = RandomMatrix(rng, k, k);
  std::vector<double> x(static_cast<size_t>(k * n), 0.0);
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t t = 0; t < k; ++t) s += (t == i ? 2.0 : 0.3 * mix[static_cast<size_t>(i * k + t)]) * z[static_cast<size_t>(t * n + j)];
      x[static_cast<size_t>(i * n + j)] = s;
    }
  std::vector<double> h(static_cast<size_t>(k * k), 0.0);
  for (int64_t a = 0; a < k; ++a)
    for (int64_t b = 0; b < k; ++b) {
      double s = 0;
      for (int64_t j = 0; j < n; ++j) s += x[static_cast<size_t>(a * n + j)] * x[static_cast<size_t>(b * n + j)];
      h[static_cast<size_t>(a * k + b)] = s;
    }
  for (int bits : {3, 4}) {
    auto p = RowParams(w, rows, k, bits);
    auto out_err = [&](auto code) {
      double e = 0;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < n; ++j) {
          double s = 0;
          for (int64_t c = 0; c < k; ++c)
            s += (w[static_cast<size_t>(r * k + c)] - DequantizeValue(code(r, c), p[static_cast<size_t>(r)])) * x[static_cast<size_t>(c * n + j)];
          e += s * s;
        }
      return e;
    };
    GptqOptions go;
    go.block = bits == 3 ? 16 : 128;  // several lazy-batch blocks, and one
    auto q = GptqQuantizeMatrix(w, rows, k, h, p, go);
    ASSERT_TRUE(q.ok());
    for (int32_t v : *q) {
      EXPECT_GE(v, p[0].qmin);
      EXPECT_LE(v, p[0].qmax);
    }
    const double e_gptq = out_err([&](int64_t r, int64_t c) { return (*q)[static_cast<size_t>(r * k + c)]; });
    const double e_near = out_err([&](int64_t r, int64_t c) { return QuantizeValue(w[static_cast<size_t>(r * k + c)], p[static_cast<size_t>(r)]); });
    EXPECT_LT(e_gptq, 0.8 * e_near) << bits << " bits";
  }
}

fs::path SharedDir() {
  if (const char* e = std::getenv("ONNXQ_SHARED")) return e;
  return fs::path(ONNXQ_SOURCE_DIR) / ".." / "shared";
}

TEST(QuantMixedPrecision, MobileNetV2HessiansAndGptqLayers) {
  const fs::path model_path = SharedDir() / "models" / "mobilenetv2-1.0.onnx";
  const fs::path data = SharedDir() / "data" / "imagenet-sample";
  if (!fs::exists(model_path) || !fs::is_directory(data))
    GTEST_SKIP() << "shared MobileNetV2 / images not found under " << SharedDir() << " (set ONNXQ_SHARED)";
  auto model = LoadModel(model_path.string());
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  QuantizeConfig cfg;
  cfg.threads = 2;
  auto prep = PrepareModel(*model, cfg);
  ASSERT_TRUE(prep.ok());
  calib::DatasetOptions dopt;
  dopt.preprocess = *calib::PreprocessPreset("imagenet-tf");
  dopt.count = 2;
  auto ds = calib::Dataset::Open(data.string(), dopt);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  auto src = DatasetSource(**ds, nullptr);
  HessianOptions ho;
  ho.samples = 2;
  ho.threads = 2;
  auto hs = CollectHessians(prep->optimized, prep->plan, *src, ho);
  ASSERT_TRUE(hs.ok()) << hs.status().ToString();
  ASSERT_EQ(hs->size(), prep->plan.weighted.size());
  int depthwise = 0;
  for (size_t i = 0; i < hs->size(); ++i) {
    const LayerHessian& h = (*hs)[i];
    EXPECT_GT(h.groups, 0) << i << ": " << h.unsupported;
    EXPECT_GT(h.rows, 0) << i;
    if (h.groups > 1) {
      ++depthwise;
      EXPECT_EQ(h.k, 9);
    }
    // Symmetric with a non-negative diagonal.
    for (int64_t a = 0; a < h.k && h.groups > 0; ++a) {
      EXPECT_GE(h.h[static_cast<size_t>(a * h.k + a)], 0.0);
      for (int64_t b = 0; b < a; ++b) EXPECT_EQ(h.h[static_cast<size_t>(a * h.k + b)], h.h[static_cast<size_t>(b * h.k + a)]);
    }
  }
  EXPECT_EQ(depthwise, 17);
  // The first conv (3x3, stride 2, 3 input channels): k = 27, 2 images x 112 x 112 patches.
  EXPECT_EQ((*hs)[0].k, 27);
  EXPECT_EQ((*hs)[0].rows, 2 * 112 * 112);
  // Neighbouring pixels of a natural image are strongly correlated: H(0, 1) is comparable to the diagonal.
  const auto& h0 = (*hs)[0].h;
  EXPECT_GT(h0[1], 0.3 * std::sqrt(h0[0] * h0[27 + 1]));

  // GPTQ at 4 bits changes codes of every layer (against nearest) but keeps the scales.
  QdqPlan nearest = prep->plan, gptq = prep->plan;
  std::vector<int> bits(nearest.weighted.size(), 4);
  WeightOptions wo;
  ASSERT_TRUE(QuantizeWeightsMixed(prep->optimized, nearest, bits, wo, nullptr, {}, nullptr).ok());
  auto st = QuantizeWeightsMixed(prep->optimized, gptq, bits, wo, &*hs, {}, nullptr);
  ASSERT_TRUE(st.ok()) << st.ToString();
  for (size_t i = 0; i < bits.size(); ++i) {
    const Tensor& a = nearest.weighted[i].qweight.q;
    const Tensor& b = gptq.weighted[i].qweight.q;
    int64_t changed = 0;
    for (int64_t j = 0; j < a.numel(); ++j) {
      changed += a.data<int8_t>()[j] != b.data<int8_t>()[j];
      ASSERT_LE(std::abs(b.data<int8_t>()[j]), 7);
    }
    // Layers whose Hessian saw fewer input vectors than inputs keep nearest rounding (with 2 images
    // the 7x7 layers and the classifier); every other layer is re-rounded.
    if ((*hs)[i].rows >= (*hs)[i].k)
      EXPECT_GT(changed, 0) << "layer " << i;
    else
      EXPECT_EQ(changed, 0) << "layer " << i;
    EXPECT_EQ(nearest.weighted[i].qweight.scales(), gptq.weighted[i].qweight.scales());
  }
}

}  // namespace
}  // namespace onnxq::quant
