#include "onnxq/quant/quant_params.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

namespace onnxq::quant {
namespace {

TEST(QuantParamsSpec, RangesPerBitWidth) {
  EXPECT_EQ((QuantSpec{8, true, false, false}.qmin()), -128);
  EXPECT_EQ((QuantSpec{8, true, false, false}.qmax()), 127);
  EXPECT_EQ((QuantSpec{8, true, true, true}.qmin()), -127);
  EXPECT_EQ((QuantSpec{8, false, false, false}.qmin()), 0);
  EXPECT_EQ((QuantSpec{8, false, false, false}.qmax()), 255);
  EXPECT_EQ((QuantSpec{4, true, true, false}.qmin()), -8);
  EXPECT_EQ((QuantSpec{4, true, true, false}.qmax()), 7);
  EXPECT_EQ((QuantSpec{4, true, true, true}.qmin()), -7);
  EXPECT_EQ((QuantSpec{2, true, true, true}.qmin()), -1);
  EXPECT_EQ((QuantSpec{2, true, true, true}.qmax()), 1);
  EXPECT_EQ((QuantSpec{3, false, false, false}.qmax()), 7);
  EXPECT_EQ((QuantSpec{16, true, false, false}.qmin()), -32768);
  EXPECT_EQ((QuantSpec{16, false, false, false}.qmax()), 65535);
  EXPECT_EQ((QuantSpec{4, true, true, true}.storage_type()), DataType::kInt8);
  EXPECT_EQ((QuantSpec{16, false, false, false}.storage_type()), DataType::kUint16);
  EXPECT_FALSE((QuantSpec{1, true, false, false}.Validate().ok()));
  EXPECT_FALSE((QuantSpec{9, true, false, false}.Validate().ok()));
  EXPECT_FALSE((QuantSpec{8, false, false, true}.Validate().ok()));
}

TEST(QuantParamsCompute, HandComputedAsymmetric) {
  // uint8 over [-1, 3]: scale = 4/255, zp = 0 - round(-1 / (4/255)) = round(63.75) = 64.
  auto p = ComputeQuantParams(-1.0, 3.0, {8, false, false, false});
  ASSERT_TRUE(p.ok());
  EXPECT_FLOAT_EQ(p->scale, 4.0f / 255.0f);
  EXPECT_EQ(p->zero_point, 64);
  // Zero is exactly representable: quantize(0) == zp, dequantize(zp) == 0.
  EXPECT_EQ(QuantizeValue(0.0f, *p), 64);
  EXPECT_EQ(DequantizeValue(64, *p), 0.0f);
  // int8 over [0.5, 2] widens to [0, 2]: scale 2/255, zp = -128.
  auto q = ComputeQuantParams(0.5, 2.0, {8, true, false, false});
  ASSERT_TRUE(q.ok());
  EXPECT_FLOAT_EQ(q->scale, 2.0f / 255.0f);
  EXPECT_EQ(q->zero_point, -128);
  // uint8 over [-2, -1] widens to [-2, 0]: zp = 255.
  auto r = ComputeQuantParams(-2.0, -1.0, {8, false, false, false});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->zero_point, 255);
}

TEST(QuantParamsCompute, HandComputedSymmetric) {
  auto p = ComputeQuantParams(-0.5, 2.0, {8, true, true, false});
  ASSERT_TRUE(p.ok());
  EXPECT_FLOAT_EQ(p->scale, 2.0f / 127.0f);
  EXPECT_EQ(p->zero_point, 0);
  auto p4 = ComputeQuantParams(-3.5, 1.0, {4, true, true, true});
  ASSERT_TRUE(p4.ok());
  EXPECT_FLOAT_EQ(p4->scale, 0.5f);
  EXPECT_EQ(p4->qmin, -7);
  // Unsigned symmetric with non-negative data uses the whole range with zp 0.
  auto u = ComputeQuantParams(0.0, 6.0, {8, false, true, false});
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->zero_point, 0);
  EXPECT_FLOAT_EQ(u->scale, 6.0f / 255.0f);
  // ... and with signed data zp = 128, T maps to 255.
  auto u2 = ComputeQuantParams(-1.0, 2.54, {8, false, true, false});
  ASSERT_TRUE(u2.ok());
  EXPECT_EQ(u2->zero_point, 128);
  EXPECT_FLOAT_EQ(u2->scale, 2.54f / 127.0f);
  EXPECT_EQ(QuantizeValue(2.54f, *u2), 255);
}

TEST(QuantParamsCompute, DegenerateAndBadRanges) {
  auto z = ComputeQuantParams(0.0, 0.0, {8, false, false, false});
  ASSERT_TRUE(z.ok());
  EXPECT_EQ(z->scale, 1.0f);
  EXPECT_EQ(z->zero_point, 0);
  auto tiny = ComputeQuantParams(0.0, 1e-38, {8, true, true, false});
  ASSERT_TRUE(tiny.ok());
  EXPECT_GE(tiny->scale, kMinScale);
  EXPECT_FALSE(ComputeQuantParams(1.0, -1.0, {}).ok());
  EXPECT_FALSE(ComputeQuantParams(0.0, std::numeric_limits<double>::infinity(), {}).ok());
  EXPECT_FALSE(ComputeQuantParams(std::nan(""), 1.0, {}).ok());
}

TEST(QuantParamsCompute, AllSpecsGiveValidParams) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> u(-10, 10);
  for (int bits : {2, 3, 4, 5, 6, 7, 8, 16})
    for (bool s : {false, true})
      for (bool sym : {false, true})
        for (bool narrow : {false, true}) {
          if (narrow && !s) continue;
          QuantSpec spec{bits, s, sym, narrow};
          for (int k = 0; k < 50; ++k) {
            double a = u(rng), b = u(rng);
            auto p = ComputeQuantParams(std::min(a, b), std::max(a, b), spec);
            ASSERT_TRUE(p.ok());
            EXPECT_GT(p->scale, 0.0f);
            EXPECT_GE(p->zero_point, p->qmin);
            EXPECT_LE(p->zero_point, p->qmax);
            EXPECT_EQ(DequantizeValue(QuantizeValue(0.0f, *p), *p), 0.0f);
            // The covered range reaches the requested one up to the zero-point nudge.
            double lo = std::min(0.0, std::min(a, b)), hi = std::max(0.0, std::max(a, b));
            EXPECT_LE(p->range_min(), lo + p->scale);
            EXPECT_GE(p->range_max(), hi - p->scale);
          }
        }
}

TEST(QuantParamsValue, RoundsHalfToEvenAndSaturates) {
  QuantParams p{0.5f, 3, -128, 127};
  EXPECT_EQ(QuantizeValue(1.25f, p), 2 + 3);   // 2.5 -> 2
  EXPECT_EQ(QuantizeValue(1.75f, p), 4 + 3);   // 3.5 -> 4
  EXPECT_EQ(QuantizeValue(-1.25f, p), -2 + 3); // -2.5 -> -2
  EXPECT_EQ(QuantizeValue(-0.25f, p), 0 + 3);  // -0.5 -> -0
  EXPECT_EQ(QuantizeValue(1000.0f, p), 127);
  EXPECT_EQ(QuantizeValue(-1000.0f, p), -128);
  EXPECT_EQ(QuantizeValue(std::nanf(""), p), 3);
  EXPECT_FLOAT_EQ(DequantizeValue(127, p), 62.0f);
}

TEST(QuantParamsFake, MatchesScalarPathExactly) {
  std::mt19937 rng(3);
  std::normal_distribution<float> n(0, 3);
  std::vector<float> x(10007);
  for (auto& v : x) v = n(rng);
  for (int i = 0; i < 200; ++i) x[i] = (i - 100) * 0.25f;  // exact halves for scale 0.5
  x[200] = std::numeric_limits<float>::infinity();
  x[201] = -std::numeric_limits<float>::infinity();
  for (QuantParams p : {QuantParams{0.5f, 0, -128, 127}, QuantParams{0.037f, 17, 0, 255},
                        QuantParams{0.3f, 0, -7, 7}, QuantParams{1e-3f, -5, -32768, 32767}}) {
    std::vector<float> y(x.size());
    FakeQuantize(x.data(), y.data(), static_cast<int64_t>(x.size()), p);
    for (size_t i = 0; i < x.size(); ++i)
      ASSERT_EQ(y[i], FakeQuantizeValue(x[i], p)) << "x=" << x[i] << " scale=" << p.scale;
  }
}

TEST(QuantParamsArray, PerChannel) {
  // dims [2, 3], axis 1: channel c has scale c + 1.
  std::vector<float> x{1, 4, 9, -1, -4, -9.1f};
  std::vector<QuantParams> ps{{1.0f, 0, -128, 127}, {2.0f, 0, -128, 127}, {3.0f, 1, -128, 127}};
  std::vector<int32_t> q(6);
  ASSERT_TRUE(QuantizeArray(x, {2, 3}, 1, ps, q).ok());
  EXPECT_EQ(q, (std::vector<int32_t>{1, 2, 4, -1, -2, -2}));
  std::vector<float> d(6);
  ASSERT_TRUE(DequantizeArray(q, {2, 3}, 1, ps, d).ok());
  EXPECT_EQ(d, (std::vector<float>{1, 4, 9, -1, -4, -9}));
  std::vector<float> f(6);
  ASSERT_TRUE(FakeQuantizeArray(x, {2, 3}, -1, ps, f).ok());
  EXPECT_EQ(f, d);
  EXPECT_FALSE(QuantizeArray(x, {2, 3}, 0, ps, q).ok());   // 2 channels on axis 0, 3 params
  EXPECT_FALSE(QuantizeArray(x, {2, 3}, 2, ps, q).ok());
  std::vector<QuantParams> bad{{0.0f, 0, -128, 127}};
  EXPECT_FALSE(QuantizeArray(x, {2, 3}, 0, bad, q).ok());
}

TEST(QuantParamsSqnr, HandComputed) {
  std::vector<float> x{3, 4}, y{3, 3};  // signal 25, noise 1 -> 10 log10(25)
  EXPECT_NEAR(Sqnr(x, y), 10 * std::log10(25.0), 1e-12);
  EXPECT_TRUE(std::isinf(Sqnr(x, x)));
  EXPECT_TRUE(std::isnan(Sqnr(x, std::vector<float>{1})));
}

}  // namespace
}  // namespace onnxq::quant
