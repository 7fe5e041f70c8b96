// 8-bit Add and pooling kernels: hand-computed values following ONNX Runtime's formulas (checked
// against onnxruntime 1.32, see docs/int8.md), and every ISA variant of Add against the others.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "kernels/int8_internal.h"
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

// Every ISA's Add equals the portable one: all 65 536 (a, b) pairs, uint8 and int8, for scale
// sets that round many values near .5 and saturate both ends; lengths around the 64-element steps
// of the AVX-512 loop; in place (c == a, c == b) as the fused residual Add runs it.
TEST(Int8Ops, AddVariantsAgree) {
  std::vector<uint8_t> a(65536), b(65536);
  for (int i = 0; i < 65536; ++i) {
    a[i] = static_cast<uint8_t>(i & 0xFF);
    b[i] = static_cast<uint8_t>(i >> 8);
  }
  struct Scales {
    float sa, sb, sc;
    int32_t za, zb, zc;
  };
  const Scales sets[] = {{0.0371f, 0.0213f, 0.0447f, 131, 97, 120},
                         {0.05f, 0.04f, 0.06f, 128, 128, 128},
                         {0.3f, 0.01f, 0.02f, 0, 255, 10}};
  for (const bool sg : {false, true})
    for (const Scales& sc : sets) {
      Int8AddParams p;
      p.a_scale = sc.sa;
      p.b_scale = sc.sb;
      p.c_scale = sc.sc;
      p.a_zp = sg ? sc.za - 128 : sc.za;
      p.b_zp = sg ? sc.zb - 128 : sc.zb;
      p.c_zp = sg ? sc.zc - 128 : sc.zc;
      p.is_signed = sg;
      std::vector<uint8_t> ref(65536);
      Int8Add(p, a.data(), false, b.data(), false, ref.data(), 65536, Isa::kReference);
      int64_t lo = 0, hi = 0;
      for (uint8_t v : ref) {
        lo += sg ? v == 0x80 : v == 0;
        hi += sg ? v == 0x7F : v == 0xFF;
      }
      EXPECT_GT(lo + hi, 0) << "no saturation exercised";
      for (Isa isa : SupportedIsas()) {
        std::vector<uint8_t> c(65536);
        Int8Add(p, a.data(), false, b.data(), false, c.data(), 65536, isa);
        EXPECT_EQ(c, ref) << IsaName(isa) << " signed " << sg;
        for (const int64_t n : {int64_t{1}, int64_t{15}, int64_t{16}, int64_t{63}, int64_t{64},
                                int64_t{65}, int64_t{200}}) {
          std::vector<uint8_t> x(a.begin() + 1000, a.begin() + 1000 + n);
          Int8Add(p, x.data(), false, b.data() + 1000, false, x.data(), n, isa);  // c == a
          std::vector<uint8_t> y(b.begin() + 1000, b.begin() + 1000 + n);
          Int8Add(p, a.data() + 1000, false, y.data(), false, y.data(), n, isa);  // c == b
          for (int64_t i = 0; i < n; ++i) {
            ASSERT_EQ(x[i], ref[1000 + i]) << IsaName(isa) << " n " << n << " at " << i;
            ASSERT_EQ(y[i], ref[1000 + i]) << IsaName(isa) << " n " << n << " at " << i;
          }
        }
      }
    }
}

// The per-ISA QuantizeLinear loop (Table::quantize8, used by the QuantizeLinear op for per-tensor
// 8-bit outputs) against QuantizeLinear's definition: saturate(round_half_even(x / scale) + zp),
// NaN giving the lower bound; exact .5 ties, both saturations, lengths around the 64-value steps.
TEST(Int8Ops, Quantize8LoopsMatchDefinition) {
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> d(-40.f, 40.f);
  std::vector<float> x(1000);
  for (auto& v : x) v = d(rng);
  const float scale = 0.25f;
  for (int i = 0; i < 40; ++i) x[i] = scale * (static_cast<float>(i) - 20.5f);  // exact ties
  x[50] = std::numeric_limits<float>::quiet_NaN();
  x[51] = std::numeric_limits<float>::infinity();
  x[52] = -std::numeric_limits<float>::infinity();
  int checked = 0;
  for (Isa isa : SupportedIsas()) {
    const int8::Table t = int8::TableForIsa(static_cast<int>(isa));
    if (t.quantize8 == nullptr) continue;
    for (const bool sg : {false, true}) {
      const int32_t zp = sg ? -3 : 130;
      for (const int64_t n : {int64_t{1}, int64_t{17}, int64_t{64}, int64_t{100}, int64_t{1000}}) {
        std::vector<uint8_t> y(static_cast<size_t>(n), 0xCD);
        t.quantize8(x.data(), n, scale, zp, sg, y.data());
        for (int64_t i = 0; i < n; ++i) {
          const float lo = sg ? -128.f : 0.f, hi = sg ? 127.f : 255.f;
          float want = std::nearbyint(x[i] / scale) + static_cast<float>(zp);
          want = std::isnan(x[i]) ? lo : std::fmin(std::fmax(want, lo), hi);
          const int got = sg ? static_cast<int>(static_cast<int8_t>(y[i])) : y[i];
          ASSERT_EQ(got, static_cast<int>(want)) << IsaName(isa) << " n " << n << " i " << i
                                                 << " x " << x[i];
        }
        ++checked;
      }
    }
  }
  if (checked == 0) GTEST_SKIP() << "no ISA with a QuantizeLinear loop on this CPU";
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
