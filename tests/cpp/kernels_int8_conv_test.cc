// Integer convolution: each algorithm (depthwise, 1x1 GEMM, im2col) on every ISA this CPU runs
// must equal the direct-loop reference bit for bit; plus a hand-computed QLinearConv example.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "onnxq/kernels/cpu.h"
#include "onnxq/kernels/int8_conv.h"

namespace onnxq::kernels {
namespace {

struct ConvCase {
  Conv2DShape s;
  const char* algo;
  bool x_signed, w_signed, per_channel_wzp;
  int out;  // 0 int32, 1 uint8, 2 int8
};

Conv2DShape Shape(int64_t n, int64_t ci, int64_t h, int64_t w, int64_t co, int64_t k, int64_t stride,
                  int64_t pad, int64_t group, int64_t dil = 1) {
  Conv2DShape s;
  s.batch = n;
  s.in_channels = ci;
  s.in_h = h;
  s.in_w = w;
  s.out_channels = co;
  s.kernel_h = s.kernel_w = k;
  s.stride_h = s.stride_w = stride;
  s.dilation_h = s.dilation_w = dil;
  s.pad_top = s.pad_left = pad;
  s.pad_bottom = s.pad_right = pad;
  s.group = group;
  return s;
}

void RunConvCase(const ConvCase& c, Isa isa, uint32_t seed, ThreadPool* pool) {
  const Conv2DShape& s = c.s;
  std::mt19937 rng(seed);
  auto bytes = [&](int64_t n) {
    std::vector<uint8_t> v(static_cast<size_t>(n));
    for (auto& b : v) b = static_cast<uint8_t>(rng() & 0xFF);
    return v;
  };
  auto x = bytes(s.batch * s.in_channels * s.in_h * s.in_w);
  auto w = bytes(s.out_channels * (s.in_channels / s.group) * s.kernel_h * s.kernel_w);
  std::vector<int32_t> wzp(static_cast<size_t>(s.out_channels), 0);
  if (c.per_channel_wzp)
    for (auto& z : wzp) z = c.w_signed ? static_cast<int32_t>(rng() % 256) - 128 : static_cast<int32_t>(rng() % 256);
  const int32_t xzp = c.x_signed ? static_cast<int32_t>(rng() % 256) - 128 : static_cast<int32_t>(rng() % 256);
  std::vector<int32_t> bias(static_cast<size_t>(s.out_channels));
  for (auto& b : bias) b = static_cast<int32_t>(rng() % 20001) - 10000;
  std::vector<float> scale(static_cast<size_t>(s.out_channels));
  for (auto& v : scale) v = 1e-4f + static_cast<float>(rng() % 1000) * 1e-5f;
  Int8OutputStage out;
  out.bias = bias.data();
  if (c.out != 0) {
    out.scale = scale.data();
    out.out_signed = c.out == 2;
    out.zero_point = c.out == 2 ? 5 : 128;
    out.qmin = c.out == 2 ? -128 : 0;
    out.qmax = c.out == 2 ? 127 : 255;
  }
  const int64_t ysz = s.batch * s.out_channels * s.out_h() * s.out_w() * (c.out == 0 ? 4 : 1);
  std::vector<uint8_t> want(static_cast<size_t>(ysz)), got(static_cast<size_t>(ysz), 0xCD);
  Int8Conv2DReference(s, x.data(), c.x_signed, xzp, w.data(), c.w_signed, wzp.data(),
                      s.out_channels, out, want.data());
  auto conv = Int8Conv2D::Create(s, w.data(), c.w_signed, wzp.data(), s.out_channels, c.x_signed, isa);
  ASSERT_TRUE(conv.ok()) << conv.status().ToString();
  EXPECT_STREQ((*conv)->algorithm(), c.algo);
  (*conv)->Run(x.data(), xzp, out, got.data(), s.batch, s.in_h, s.in_w, pool);
  ASSERT_EQ(got, want) << IsaName(isa) << " " << c.algo << " ci=" << s.in_channels << " co="
                       << s.out_channels << " k=" << s.kernel_h << " stride=" << s.stride_h
                       << " group=" << s.group << " x_signed=" << c.x_signed
                       << " w_signed=" << c.w_signed << " out=" << c.out;
}

TEST(Int8Conv, AllAlgorithmsAndVariantsMatchReference) {
  std::vector<ConvCase> cases = {
      {Shape(1, 16, 9, 9, 16, 3, 1, 1, 16), "depthwise", false, true, false, 1},
      {Shape(2, 8, 10, 11, 8, 3, 2, 1, 8), "depthwise", true, true, true, 2},
      {Shape(1, 24, 7, 7, 24, 5, 1, 2, 24, 2), "depthwise", false, false, true, 0},
      {Shape(1, 32, 7, 9, 24, 1, 1, 0, 1), "gemm1x1", false, true, false, 1},
      {Shape(2, 20, 5, 5, 12, 1, 1, 0, 2), "gemm1x1", true, false, true, 2},
      {Shape(1, 3, 15, 15, 16, 3, 2, 1, 1), "im2col", false, true, false, 1},
      {Shape(1, 8, 9, 9, 6, 3, 1, 0, 2, 2), "im2col", true, true, true, 0},
      {Shape(1, 4, 6, 6, 8, 1, 2, 0, 1), "im2col", false, false, true, 2},
      {Shape(1, 4, 8, 8, 8, 3, 1, 1, 4), "im2col", false, true, false, 1},  // channel multiplier 2
  };
  // Unequal strides: the depthwise kernel's integer path (the float path needs equal strides).
  cases.push_back({Shape(1, 6, 9, 10, 6, 3, 1, 1, 6), "depthwise", true, false, true, 1});
  cases.back().s.stride_h = 2;
  // Asymmetric padding.
  cases.push_back({Shape(1, 5, 8, 7, 7, 3, 2, 0, 1), "im2col", false, true, true, 1});
  cases.back().s.pad_top = 1;
  cases.back().s.pad_right = 2;
  ThreadPool pool(2);
  uint32_t seed = 11;
  for (Isa isa : SupportedIsas())
    for (const auto& c : cases) {
      RunConvCase(c, isa, seed, seed % 2 ? &pool : nullptr);
      ++seed;
    }
}

// The SIMD depthwise paths (register-blocked int8 kernel; fp32 kernel + requantization for small
// planes) on MobileNet-like and awkward
// shapes: widths below, at and above the 16-lane block, strides 1-3 (unequal too), asymmetric
// padding as ONNX Runtime's SAME (0, 0, 1, 1), dilation, a narrowed clamp (fused ReLU6), batch > 1
// and more jobs than a multiple of four; every variant bit-exact with the direct-loop reference.
TEST(Int8Conv, DepthwiseShapesMatchReference) {
  std::vector<ConvCase> cases;
  auto add = [&](Conv2DShape s, bool xs, bool ws, bool pc, int out) {
    cases.push_back({s, "depthwise", xs, ws, pc, out});
  };
  add(Shape(1, 7, 56, 56, 7, 3, 1, 1, 7), false, true, false, 1);
  add(Shape(1, 5, 56, 56, 5, 3, 2, 1, 5), false, true, false, 1);
  add(Shape(2, 3, 16, 16, 3, 3, 1, 1, 3), true, true, true, 2);
  add(Shape(1, 4, 33, 17, 4, 3, 1, 1, 4), false, false, true, 0);
  add(Shape(1, 6, 7, 7, 6, 3, 1, 1, 6), false, true, false, 1);
  add(Shape(1, 3, 1, 1, 3, 3, 1, 1, 3), false, true, false, 1);
  add(Shape(1, 4, 20, 23, 4, 3, 3, 1, 4), true, true, false, 2);
  add(Shape(1, 4, 19, 40, 4, 5, 2, 3, 4, 2), false, true, true, 1);
  // Planes above UseFpDepthwise's limits (int8_conv.cc): the register-blocked int8 kernel on
  // both SIMD ISAs; the smaller ones above take the fp32-kernel path.
  add(Shape(1, 3, 60, 70, 3, 3, 1, 1, 3), false, true, false, 1);
  add(Shape(1, 3, 60, 70, 3, 3, 2, 1, 3), true, true, true, 2);
  {
    Conv2DShape s = Shape(1, 9, 28, 28, 9, 3, 2, 0, 9);  // ORT's SAME_UPPER for stride 2
    s.pad_bottom = s.pad_right = 1;
    add(s, false, true, false, 1);
    Conv2DShape u = Shape(1, 4, 15, 30, 4, 3, 1, 1, 4);
    u.stride_w = 2;
    add(u, false, true, true, 1);
  }
  ThreadPool pool(2);
  uint32_t seed = 101;
  for (Isa isa : SupportedIsas())
    for (const auto& c : cases) {
      RunConvCase(c, isa, seed, seed % 2 ? &pool : nullptr);
      ++seed;
    }
}

// A fused ReLU6 narrows [qmin, qmax]: both SIMD depthwise paths (a 21x21 plane takes the
// fp32-kernel path, 64x64 the int8 kernel) clamp exactly like the reference.
TEST(Int8Conv, DepthwiseNarrowClampMatchesReference) {
  for (int64_t hw : {21, 64}) {
    const Conv2DShape s = Shape(1, 8, hw, hw, 8, 3, 1, 1, 8);
    std::mt19937 rng(5);
    std::vector<uint8_t> x(static_cast<size_t>(8 * hw * hw)), w(72);
    for (auto& b : x) b = static_cast<uint8_t>(rng() & 0xFF);
    for (auto& b : w) b = static_cast<uint8_t>(rng() & 0xFF);
    std::vector<int32_t> bias(8, 321);
    std::vector<float> scale(8, 0.004f);
    Int8OutputStage out;
    out.bias = bias.data();
    out.scale = scale.data();
    out.zero_point = 10;
    out.qmin = 10;
    out.qmax = 200;
    std::vector<uint8_t> want(x.size());
    Int8Conv2DReference(s, x.data(), false, 77, w.data(), true, nullptr, 0, out, want.data());
    int clamped = 0;
    for (uint8_t v : want) clamped += v == 10 || v == 200;
    EXPECT_GT(clamped, 100);  // the clamp is exercised
    for (Isa isa : SupportedIsas()) {
      auto conv = Int8Conv2D::Create(s, w.data(), true, nullptr, 0, false, isa);
      ASSERT_TRUE(conv.ok());
      std::vector<uint8_t> got(want.size());
      (*conv)->Run(x.data(), 77, out, got.data(), 1, hw, hw, nullptr);
      EXPECT_EQ(got, want) << IsaName(isa) << " " << hw;
    }
  }
}

// One output value worked out by hand: x (uint8, zp 100), 1x1 weights (int8), bias, requantized.
TEST(Int8Conv, HandComputedQLinearConvValue) {
  Conv2DShape s = Shape(1, 2, 1, 1, 1, 1, 1, 0, 1);
  const uint8_t x[2] = {110, 90};  // x - zp = 10, -10
  const int8_t w[2] = {3, -5};     // acc = 30 + 50 = 80
  const int32_t bias = 7;          // 87
  const float scale = 0.25f;       // 21.75 -> 22, + 3 = 25
  Int8OutputStage out;
  out.bias = &bias;
  out.scale = &scale;
  out.zero_point = 3;
  for (Isa isa : SupportedIsas()) {
    auto conv = Int8Conv2D::Create(s, w, true, nullptr, 0, false, isa);
    ASSERT_TRUE(conv.ok());
    uint8_t y = 0;
    (*conv)->Run(x, 100, out, &y, 1, 1, 1, nullptr);
    EXPECT_EQ(y, 25) << IsaName(isa);
  }
}

}  // namespace
}  // namespace onnxq::kernels
