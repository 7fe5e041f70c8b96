// Integer GEMM: every ISA variant this CPU runs must equal the scalar triple loop bit for bit, for
// all operand signedness combinations, zero points, tails and output stages; plus hand-computed
// requantization values and the vpmaddubsw saturation case.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "onnxq/kernels/cpu.h"
#include "onnxq/kernels/int8_gemm.h"

namespace onnxq::kernels {
namespace {

std::vector<uint8_t> RandomBytes(int64_t n, std::mt19937& rng) {
  std::uniform_int_distribution<int> d(0, 255);
  std::vector<uint8_t> v(static_cast<size_t>(n));
  for (auto& b : v) b = static_cast<uint8_t>(d(rng));
  return v;
}

struct Case {
  int64_t m, n, k;
  bool w_signed, x_signed;
  bool per_row_wzp;
  int out;  // 0 int32, 1 uint8, 2 int8
};

void RunCase(const Case& c, Isa isa, uint32_t seed, ThreadPool* pool) {
  std::mt19937 rng(seed);
  auto w = RandomBytes(c.m * c.k, rng);
  auto x = RandomBytes(c.k * c.n, rng);
  std::uniform_int_distribution<int> zd(c.w_signed ? -128 : 0, c.w_signed ? 127 : 255);
  std::vector<int32_t> wzp(static_cast<size_t>(c.m));
  for (auto& z : wzp) z = c.per_row_wzp ? zd(rng) : 0;
  const int32_t xzp = c.x_signed ? static_cast<int32_t>(rng() % 256) - 128 : static_cast<int32_t>(rng() % 256);
  std::vector<int32_t> bias(static_cast<size_t>(c.m));
  for (auto& b : bias) b = static_cast<int32_t>(rng() % 40001) - 20000;
  std::vector<float> scale(static_cast<size_t>(c.m));
  std::uniform_real_distribution<float> sd(1e-5f, 3e-3f);
  for (auto& s : scale) s = sd(rng);
  Int8OutputStage out;
  out.bias = bias.data();
  if (c.out != 0) {
    out.scale = scale.data();
    out.out_signed = c.out == 2;
    out.zero_point = c.out == 2 ? -3 : 120;
    out.qmin = c.out == 2 ? -128 : 0;
    out.qmax = c.out == 2 ? 127 : 255;
    if (seed % 3 == 0) out.qmin = out.zero_point;  // a fused Relu
  }
  const size_t esize = c.out == 0 ? 4 : 1;
  std::vector<uint8_t> want(static_cast<size_t>(c.m * c.n) * esize), got(want.size(), 0xCD);
  Int8GemmReference(c.m, c.n, c.k, w.data(), c.w_signed, wzp.data(), c.m, x.data(), c.x_signed,
                    c.n, 1, xzp, out, want.data());
  auto gemm = Int8Gemm::Create(c.m, c.k, w.data(), c.k, c.w_signed, wzp.data(), c.m, isa);
  ASSERT_TRUE(gemm.ok()) << gemm.status().ToString();
  (*gemm)->Run(x.data(), c.x_signed, c.n, 1, xzp, c.n, out, got.data(), c.n, pool);
  ASSERT_EQ(got, want) << IsaName(isa) << " m=" << c.m << " n=" << c.n << " k=" << c.k
                       << " w_signed=" << c.w_signed << " x_signed=" << c.x_signed
                       << " wzp=" << c.per_row_wzp << " out=" << c.out;
  // The same product with X given transposed (column stride k, as QLinearMatMul reads A).
  std::vector<uint8_t> xt(x.size());
  for (int64_t i = 0; i < c.k; ++i)
    for (int64_t j = 0; j < c.n; ++j) xt[j * c.k + i] = x[i * c.n + j];
  std::fill(got.begin(), got.end(), 0xCD);
  (*gemm)->Run(xt.data(), c.x_signed, 1, c.k, xzp, c.n, out, got.data(), c.n, nullptr);
  ASSERT_EQ(got, want) << IsaName(isa) << " (transposed X) m=" << c.m << " n=" << c.n;
}

TEST(Int8Gemm, AllVariantsMatchReferenceBitExact) {
  const std::vector<Case> shapes = {
      {1, 1, 1, true, false, false, 0},   {8, 32, 4, true, false, false, 1},
      {9, 33, 5, true, false, true, 1},   {19, 70, 37, false, false, true, 0},
      {16, 49, 96, true, true, false, 2}, {24, 100, 144, false, true, true, 1},
      {5, 17, 300, true, false, true, 2}, {32, 196, 64, true, false, false, 1},
      {3, 7, 2, false, true, false, 2},   {64, 64, 1000, true, false, false, 0},
  };
  ThreadPool pool(2);
  uint32_t seed = 1;
  for (Isa isa : SupportedIsas())
    for (const Case& c : shapes)
      for (int variant = 0; variant < 2; ++variant) {
        Case v = c;
        if (variant == 1) {  // flip every signedness choice and the output kind
          v.w_signed = !c.w_signed;
          v.x_signed = !c.x_signed;
          v.out = (c.out + 1) % 3;
        }
        RunCase(v, isa, seed++, variant == 0 ? &pool : nullptr);
      }
}

// 255 * 127 + 255 * 127 = 64770 does not fit int16: vpmaddubsw would saturate to 32767 per pair.
// Every variant must produce the exact sums, with unrestricted (8-bit) weights.
TEST(Int8Gemm, NoInt16SaturationOnLargeProducts) {
  const int64_t m = 4, k = 64, n = 16;
  std::vector<int8_t> w(m * k);
  for (int64_t c = 0; c < k; ++c) {
    w[0 * k + c] = 127;
    w[1 * k + c] = -128;
    w[2 * k + c] = static_cast<int8_t>(c % 2 ? 127 : -128);
    w[3 * k + c] = static_cast<int8_t>(c % 4 < 2 ? -128 : 127);
  }
  std::vector<uint8_t> x(k * n, 255);
  for (Isa isa : SupportedIsas()) {
    auto gemm = Int8Gemm::Create(m, k, w.data(), k, true, nullptr, 0, isa);
    ASSERT_TRUE(gemm.ok());
    std::vector<int32_t> y(m * n, 0);
    (*gemm)->Run(x.data(), false, n, 1, 0, n, Int8OutputStage{}, y.data(), n, nullptr);
    for (int64_t j = 0; j < n; ++j) {
      EXPECT_EQ(y[0 * n + j], 64 * 255 * 127) << IsaName(isa);
      EXPECT_EQ(y[1 * n + j], 64 * 255 * -128) << IsaName(isa);
      EXPECT_EQ(y[2 * n + j], 32 * 255 * 127 + 32 * 255 * -128) << IsaName(isa);
      EXPECT_EQ(y[3 * n + j], 32 * 255 * 127 + 32 * 255 * -128) << IsaName(isa);
    }
  }
}

TEST(Int8Gemm, RequantizeRoundsHalfToEvenAndClamps) {
  // float(acc) * scale, then round half to even, then + zero point, clamped to [qmin, qmax].
  EXPECT_EQ(Int8Requantize(5, 0.5f, 0, 0, 255), 2);     // 2.5 -> 2
  EXPECT_EQ(Int8Requantize(7, 0.5f, 0, 0, 255), 4);     // 3.5 -> 4
  EXPECT_EQ(Int8Requantize(-5, 0.5f, 10, 0, 255), 8);   // -2.5 -> -2, + 10
  EXPECT_EQ(Int8Requantize(-7, 0.5f, 10, 0, 255), 6);   // -3.5 -> -4, + 10
  EXPECT_EQ(Int8Requantize(1000, 1.f, 0, 0, 255), 255);
  EXPECT_EQ(Int8Requantize(-1000, 1.f, 5, -128, 127), -128);
  EXPECT_EQ(Int8Requantize(3, 1.f, 100, 110, 255), 110);  // fused Relu-like lower bound
}

TEST(Int8Gemm, OutputScalesAndActivationClamp) {
  const float ws[3] = {0.01f, 0.02f, 0.003f};
  auto s = Int8OutputScales(0.05f, ws, 3, 0.1f, 3);
  ASSERT_EQ(s.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(s[i], (0.05f * ws[i]) / 0.1f);
  auto one = Int8OutputScales(0.05f, ws, 1, 0.1f, 4);
  for (float v : one) EXPECT_EQ(v, (0.05f * ws[0]) / 0.1f);

  int32_t lo, hi;
  Activation relu;
  relu.min = 0.f;
  Int8ActivationClamp(relu, 0.1f, 37, false, &lo, &hi);
  EXPECT_EQ(lo, 37);
  EXPECT_EQ(hi, 255);
  Activation relu6;
  relu6.min = 0.f;
  relu6.max = 6.f;
  Int8ActivationClamp(relu6, 0.02f, 0, false, &lo, &hi);  // 6 / 0.02 = 300 -> saturates
  EXPECT_EQ(lo, 0);
  EXPECT_EQ(hi, 255);
  Int8ActivationClamp(relu6, 0.05f, -128, true, &lo, &hi);  // 6 / 0.05 = 120 -> -8
  EXPECT_EQ(lo, -128);
  EXPECT_EQ(hi, -8);
}

TEST(Int8Gemm, RejectsBadArguments) {
  std::vector<int8_t> w(6, 1);
  const int32_t zp[2] = {0, 0};
  EXPECT_FALSE(Int8Gemm::Create(0, 3, w.data(), 3, true, nullptr, 0, Isa::kReference).ok());
  EXPECT_FALSE(Int8Gemm::Create(2, 3, w.data(), 2, true, nullptr, 0, Isa::kReference).ok());
  EXPECT_FALSE(Int8Gemm::Create(3, 2, w.data(), 2, true, zp, 2, Isa::kReference).ok());
}

}  // namespace
}  // namespace onnxq::kernels
