#include "onnxq/quant/weight_quant.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "onnxq/base/thread_pool.h"

namespace onnxq::quant {
namespace {

TEST(QuantWeight, PerChannelMinMaxHandComputed) {
  // Conv weight [2, 1, 1, 3]: channel 0 max|w| = 2.54 -> scale 0.02; channel 1 max|w| = 1.27.
  auto w = Tensor::Float({2, 1, 1, 3}, std::vector<float>{2.54f, -1.0f, 0.01f, -1.27f, 0.635f, 0.0f});
  WeightQuantOptions o;
  auto r = QuantizeWeight(w, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->params.size(), 2u);
  EXPECT_EQ(r->axis, 0);
  EXPECT_FLOAT_EQ(r->params[0].scale, 2.54f / 127);
  EXPECT_FLOAT_EQ(r->params[1].scale, 1.27f / 127);
  EXPECT_EQ(r->q.dtype(), DataType::kInt8);
  const int8_t* q = r->q.data<int8_t>();
  EXPECT_EQ(q[0], 127);
  EXPECT_EQ(q[1], -50);
  EXPECT_EQ(q[2], 0);   // 0.5 -> 0 (half to even)
  EXPECT_EQ(q[3], -127);
  EXPECT_EQ(q[4], 64);  // 63.5 -> 64
  EXPECT_EQ(q[5], 0);
  EXPECT_GT(r->sqnr_db, 40);
}

TEST(QuantWeight, AxisOnePerTensorAndLowBits) {
  // MatMul weight [K=2, N=3], per channel along N.
  auto w = Tensor::Float({2, 3}, std::vector<float>{1, -7, 0.5f, -2, 3.5f, 0.25f});
  WeightQuantOptions o;
  o.axis = 1;
  o.bits = 4;
  auto r = QuantizeWeight(w, o);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->params.size(), 3u);
  EXPECT_FLOAT_EQ(r->params[0].scale, 2.0f / 7);
  EXPECT_FLOAT_EQ(r->params[1].scale, 1.0f);
  EXPECT_FLOAT_EQ(r->params[2].scale, 0.5f / 7);
  const int8_t* q = r->q.data<int8_t>();
  EXPECT_EQ(q[0], 3);   // float32: 1 / float(2/7) = 3.4999998 -> 3 (QuantizeLinear divides in float32)
  EXPECT_EQ(q[1], -7);
  EXPECT_EQ(q[2], 7);
  EXPECT_EQ(q[3], -7);
  EXPECT_EQ(q[4], 4);   // exactly 3.5 -> 4 (half to even)
  EXPECT_EQ(q[5], 3);   // float32: 0.25 / float(0.5/7) = 3.4999998 -> 3
  for (int i = 0; i < 6; ++i) {
    EXPECT_GE(q[i], -7);
    EXPECT_LE(q[i], 7);
  }
  o.per_channel = false;
  auto t = QuantizeWeight(w, o);
  ASSERT_TRUE(t.ok());
  ASSERT_EQ(t->params.size(), 1u);
  EXPECT_EQ(t->axis, -1);
  EXPECT_FLOAT_EQ(t->params[0].scale, 1.0f);
  o.per_channel = true;
  o.axis = 2;
  EXPECT_FALSE(QuantizeWeight(w, o).ok());
  o.axis = 0;
  o.bits = 9;
  EXPECT_FALSE(QuantizeWeight(w, o).ok());
  auto nan = Tensor::Float({2}, std::vector<float>{1, std::nanf("")});
  o.bits = 8;
  auto e = QuantizeWeight(nan, o);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("index 1"), std::string::npos);
}

double ErrorAt(const std::vector<float>& v, float scale, int qmax) {
  QuantParams p{scale, 0, -qmax, qmax};
  double e = 0;
  for (float x : v) {
    double d = x - FakeQuantizeValue(x, p);
    e += d * d;
  }
  return e;
}

TEST(QuantWeight, MseSearchBeatsMinMaxAndFindsTheGaussianOptimum) {
  std::mt19937 rng(11);
  std::normal_distribution<float> n(0, 1);
  std::vector<float> v(20000);
  for (auto& x : v) x = n(rng);
  auto w = Tensor::Float({1, 20000}, v);
  for (int bits : {2, 3, 4, 8}) {
    WeightQuantOptions o;
    o.bits = bits;
    o.method = WeightScaleMethod::kMse;
    auto mse = QuantizeWeight(w, o);
    o.method = WeightScaleMethod::kMinMax;
    auto mm = QuantizeWeight(w, o);
    ASSERT_TRUE(mse.ok() && mm.ok());
    int qmax = (1 << (bits - 1)) - 1;
    double e_mse = ErrorAt(v, mse->params[0].scale, qmax), e_mm = ErrorAt(v, mm->params[0].scale, qmax);
    EXPECT_LE(e_mse, e_mm) << bits;
    EXPECT_GE(mse->sqnr_db, mm->sqnr_db) << bits;
    // Dense brute force over the clip T in sigma units: the search must be within 0.5 % of it.
    double best = std::numeric_limits<double>::infinity(), best_t = 0;
    for (double t = 0.5; t <= 5.0; t += 0.005) {
      double e = ErrorAt(v, static_cast<float>(t / qmax), qmax);
      if (e < best) best = e, best_t = t;
    }
    EXPECT_LE(e_mse, best * 1.005) << bits << " bits, brute-force T " << best_t;
    if (bits == 4) {
      // The MSE-optimal clip of a unit Gaussian on the 15-level grid [-7, 7] is 2.47 sigma
      // (numpy brute force over 2M samples).
      double t = mse->params[0].scale * qmax;
      EXPECT_NEAR(t, 2.47, 0.15);
    }
  }
}

TEST(QuantWeight, ThreadPoolGivesSameResult) {
  std::mt19937 rng(5);
  std::normal_distribution<float> n(0, 1);
  std::vector<float> v(64 * 3 * 3 * 3);
  for (auto& x : v) x = n(rng);
  auto w = Tensor::Float({64, 3, 3, 3}, v);
  WeightQuantOptions o;
  o.method = WeightScaleMethod::kMse;
  o.bits = 4;
  ThreadPool pool(2);
  auto a = QuantizeWeight(w, o), b = QuantizeWeight(w, o, &pool);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(a->q.BitwiseEqual(b->q));
  EXPECT_EQ(a->scales(), b->scales());
}

TEST(QuantWeightBias, Int32WithProductScale) {
  auto b = Tensor::Float({3}, std::vector<float>{1.0f, -0.5f, 0.0003f});
  std::vector<float> ws{0.01f, 0.02f, 0.001f};
  auto r = QuantizeBias(b, 0.1f, ws);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->scales.size(), 3u);
  EXPECT_EQ(r->scales[0], 0.1f * 0.01f);  // float32 product
  const int32_t* q = r->q.data<int32_t>();
  EXPECT_EQ(q[0], static_cast<int32_t>(std::nearbyint(1.0 / double(0.1f * 0.01f))));
  EXPECT_EQ(q[1], static_cast<int32_t>(std::nearbyint(-0.5 / double(0.1f * 0.02f))));
  EXPECT_EQ(q[2], static_cast<int32_t>(std::nearbyint(0.0003 / double(0.1f * 0.001f))));
  EXPECT_EQ(q[0], 1000);
  EXPECT_EQ(r->saturated, 0);
  // Per-tensor weight scale; saturation is counted, not hidden.
  auto big = Tensor::Float({2}, std::vector<float>{1e6f, -1e6f});
  std::vector<float> one{1e-6f};
  auto s = QuantizeBias(big, 1e-6f, one);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->saturated, 2);
  EXPECT_EQ(s->q.data<int32_t>()[0], std::numeric_limits<int32_t>::max());
  EXPECT_EQ(s->q.data<int32_t>()[1], std::numeric_limits<int32_t>::min());
  EXPECT_FALSE(QuantizeBias(b, 0.0f, ws).ok());
  EXPECT_FALSE(QuantizeBias(b, 0.1f, std::vector<float>{1, 2}).ok());
}

}  // namespace
}  // namespace onnxq::quant
