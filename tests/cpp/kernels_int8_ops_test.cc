// 8-bit Add and pooling kernels: hand-computed values following ONNX Runtime's formulas (checked
// against onnxruntime 1.32, see docs/int8.md), and every ISA variant of Add against the others.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "onnxq/kernels/cpu.h"
#include "onnxq/kernels/int8_ops.h"

namespace onnxq::kernels {
namespace {

TEST(Int8Ops, AddHandComputed) {
  // ra = 0.5 / 0.25 = 2, rb = 0.25 / 0.25 = 1, K = 10 - (2 * 100 + 1 * 50) = -240.
  Int8AddParams p;
  p.a_scale = 0.5f;
  p.b_scale = 0.25f;
  p.c_scale = 0.25f;
  p.a_zp = 100;
  p.b_zp = 50;
  p.c_zp = 10;
  const uint8_t a[4] = {100, 110, 0, 255};
  const uint8_t b[4] = {50, 45, 0, 255};
  // c = 2a + b - 240: 10 (both real values are 0: c is its zero point), 25, -240 -> 0, 525 -> 255
  for (Isa isa : SupportedIsas()) {
    uint8_t c[4] = {};
    Int8Add(p, a, false, b, false, c, 4, isa);
    EXPECT_EQ(c[0], 10);
    EXPECT_EQ(c[1], 25);
    EXPECT_EQ(c[2], 0);
    EXPECT_EQ(c[3], 255);
    uint8_t cs[4] = {};
    Int8Add(p, a, false, b + 1, true, cs, 4, isa);  // b broadcast: 45
    EXPECT_EQ(cs[0], 200 + 45 - 240);
    EXPECT_EQ(cs[1], 220 + 45 - 240);
  }
  // Halves round to even: ra = 0.5, a - zp = 1 and 3 -> 0.5 -> 0, 1.5 -> 2 (int8).
  Int8AddParams h;
  h.a_scale = 0.5f;
  h.b_scale = 1.f;
  h.c_scale = 1.f;
  h.is_signed = true;
  const int8_t ha[2] = {1, 3}, hb[2] = {0, 0};
  for (Isa isa : SupportedIsas()) {
    int8_t c[2] = {9, 9};
    Int8Add(h, ha, false, hb, false, c, 2, isa);
    EXPECT_EQ(c[0], 0);
    EXPECT_EQ(c[1], 2);
  }
}

TEST(Int8Ops, AddVariantsAgree) {
  std::mt19937 rng(5);
  const int64_t n = 1000;
  std::vector<uint8_t> a(n), b(n);
  for (auto& v : a) v = static_cast<uint8_t>(rng());
  for (auto& v : b) v = static_cast<uint8_t>(rng());
  Int8AddParams p;
  p.a_scale = 0.0371f;
  p.b_scale = 0.0213f;
  p.c_scale = 0.0447f;
  p.a_zp = 131;
  p.b_zp = 97;
  p.c_zp = 120;
  std::vector<uint8_t> ref(n);
  Int8Add(p, a.data(), false, b.data(), false, ref.data(), n, Isa::kReference);
  for (Isa isa : SupportedIsas()) {
    std::vector<uint8_t> c(n);
    Int8Add(p, a.data(), false, b.data(), false, c.data(), n, isa);
    EXPECT_EQ(c, ref) << IsaName(isa);
  }
}

TEST(Int8Ops, GlobalAveragePoolHandComputed) {
  // sum = 1+2+3+4+5+6 = 21, minus zp 2 * 6 = 9; scale = 0.5 / (0.25 * 6) = 1/3: 3.0 -> 3, + 7.
  const uint8_t x[6] = {1, 2, 3, 4, 5, 6};
  uint8_t y = 0;
  Int8GlobalAveragePool(x, 1, 6, 0.5f, 2, 0.25f, 7, false, &y, nullptr);
  EXPECT_EQ(y, 10);
  // Two planes, int8, clamped at -128.
  const int8_t xs[4] = {-128, -128, 10, 20};
  int8_t ys[2] = {};
  Int8GlobalAveragePool(xs, 2, 2, 1.f, 0, 0.5f, 0, true, ys, nullptr);
  EXPECT_EQ(ys[0], -128);  // -256 -> clamp
  EXPECT_EQ(ys[1], 30);    // 30 * 1 / (0.5 * 2) = 30
}

TEST(Int8Ops, MaxPoolAndAveragePool) {
  // 3x3 input, 2x2 kernel, stride 1, pad bottom/right 1.
  const uint8_t x[9] = {1, 9, 3, 4, 5, 6, 7, 8, 2};
  Int8Pool2DShape s;
  s.in_h = s.in_w = 3;
  s.kernel_h = s.kernel_w = 2;
  s.pad_bottom = s.pad_right = 1;
  s.out_h = s.out_w = 3;
  uint8_t y[9] = {};
  Int8MaxPool2D(x, 1, s, false, y, nullptr);
  const uint8_t want_max[9] = {9, 9, 6, 8, 8, 6, 8, 8, 2};
  for (int i = 0; i < 9; ++i) EXPECT_EQ(y[i], want_max[i]) << i;

  // Average, x_scale 1, zp 0, y_scale 0.5, zp 1: y = round_even(avg / 0.5 + 1).
  uint8_t ya[9] = {};
  Int8AveragePool2D(x, 1, s, false, 1.f, 0, 0.5f, 1, false, ya, nullptr);
  // windows (count without pad): (1+9+4+5)/4=4.75 -> 10.5 -> 10; (9+3+5+6)/4=5.75 -> 12.5 -> 12;
  // (3+6)/2=4.5 -> 10; (4+5+7+8)/4=6 -> 13; (5+6+8+2)/4=5.25 -> 11.5 -> 12; (6+2)/2=4 -> 9;
  // (7+8)/2=7.5 -> 16; (8+2)/2=5 -> 11; 2/1=2 -> 5
  const uint8_t want_avg[9] = {10, 12, 10, 13, 12, 9, 16, 11, 5};
  for (int i = 0; i < 9; ++i) EXPECT_EQ(ya[i], want_avg[i]) << i;
  // count_include_pad divides by 4 everywhere: corner 2/4 = 0.5 -> 1 + 1 = 2.
  Int8AveragePool2D(x, 1, s, true, 1.f, 0, 0.5f, 1, false, ya, nullptr);
  EXPECT_EQ(ya[8], 2);
  EXPECT_EQ(ya[2], 6);  // 9/4 = 2.25 -> 4.5 + 1 = 5.5 -> 6
}

}  // namespace
}  // namespace onnxq::kernels
