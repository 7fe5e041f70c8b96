// Channels-last integer convolution (Int8ConvNhwc) and global average pooling: every algorithm
// on every ISA this CPU runs must equal the NCHW direct-loop reference (Int8Conv2DReference /
// Int8GlobalAveragePool) bit for bit, with the tensors transposed around it.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "onnxq/base/thread_pool.h"
#include "onnxq/kernels/cpu.h"
#include "onnxq/kernels/int8_conv.h"
#include "onnxq/kernels/int8_nhwc.h"
#include "onnxq/kernels/int8_ops.h"

namespace onnxq::kernels {
namespace {

Conv2DShape Shape(int64_t n, int64_t ci, int64_t h, int64_t w, int64_t co, int64_t k,
                  int64_t stride, int64_t pad, int64_t group, int64_t dil = 1) {
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

// [n][c][hw] <-> [n][hw][c]
std::vector<uint8_t> ToNhwc(const std::vector<uint8_t>& x, int64_t n, int64_t c, int64_t hw) {
  std::vector<uint8_t> y(x.size());
  for (int64_t b = 0; b < n; ++b)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t p = 0; p < hw; ++p) y[(b * hw + p) * c + ch] = x[(b * c + ch) * hw + p];
  return y;
}

struct Case {
  Conv2DShape s;
  const char* algo;
  bool input_nchw, x_signed, w_signed, wzp, out_signed, clamp;
};

void RunCase(const Case& c, Isa isa, uint32_t seed, ThreadPool* pool) {
  const Conv2DShape& s = c.s;
  std::mt19937 rng(seed);
  auto bytes = [&](int64_t n) {
    std::vector<uint8_t> v(static_cast<size_t>(n));
    for (auto& b : v) b = static_cast<uint8_t>(rng() & 0xFF);
    return v;
  };
  const int64_t ihw = s.in_h * s.in_w, ohw = s.out_h() * s.out_w();
  auto x = bytes(s.batch * s.in_channels * ihw);
  const int64_t k = (s.in_channels / s.group) * s.kernel_h * s.kernel_w;
  auto w = bytes(s.out_channels * k);
  std::vector<int32_t> wzp(static_cast<size_t>(s.out_channels), 0);
  if (c.wzp) {
    for (auto& z : wzp)
      z = c.w_signed ? static_cast<int32_t>(rng() % 256) - 128 : static_cast<int32_t>(rng() % 256);
  } else if (!c.w_signed) {
    for (auto& z : wzp) z = 128;
  }
  const int32_t xzp = c.x_signed ? static_cast<int32_t>(rng() % 256) - 128
                                 : static_cast<int32_t>(rng() % 256);
  std::vector<int32_t> bias(static_cast<size_t>(s.out_channels));
  for (auto& b : bias) b = static_cast<int32_t>(rng() % 20001) - 10000;
  // Multipliers that spread the outputs over the 8-bit range (with some saturation).
  const float base = 60.f / (std::sqrt(static_cast<float>(k)) * 75.f * 75.f);
  std::vector<float> scale(static_cast<size_t>(s.out_channels));
  for (auto& v : scale) v = base * (0.5f + static_cast<float>(rng() % 1000) * 1e-3f);
  Int8OutputStage out;
  out.bias = bias.data();
  out.scale = scale.data();
  out.out_signed = c.out_signed;
  out.zero_point = c.out_signed ? 5 : 128;
  out.qmin = c.out_signed ? -128 : 0;
  out.qmax = c.out_signed ? 127 : 255;
  if (c.clamp) {
    out.qmin = c.out_signed ? -20 : 100;
    out.qmax = c.out_signed ? 90 : 230;
  }
  std::vector<uint8_t> want(static_cast<size_t>(s.batch * s.out_channels * ohw));
  Int8Conv2DReference(s, x.data(), c.x_signed, xzp, w.data(), c.w_signed, wzp.data(),
                      s.out_channels, out, want.data());
  want = ToNhwc(want, s.batch, s.out_channels, ohw);
  const std::vector<uint8_t> xin = c.input_nchw ? x : ToNhwc(x, s.batch, s.in_channels, ihw);
  ASSERT_TRUE(Int8ConvNhwc::Supports(s, c.input_nchw));
  auto conv = Int8ConvNhwc::Create(s, w.data(), c.w_signed, wzp.data(), s.out_channels, c.x_signed,
                                   c.input_nchw, isa);
  ASSERT_TRUE(conv.ok()) << conv.status().ToString();
  EXPECT_STREQ((*conv)->algorithm(), c.algo);
  std::vector<uint8_t> got(want.size(), 0xCD);
  (*conv)->Run(xin.data(), xzp, out, got.data(), s.batch, s.in_h, s.in_w, pool);
  int64_t bad = 0, first = -1;
  for (size_t i = 0; i < got.size(); ++i)
    if (got[i] != want[i] && bad++ == 0) first = static_cast<int64_t>(i);
  int64_t spread = 0;
  for (uint8_t v : want) spread += v != want[0];
  EXPECT_GT(spread, 0) << "degenerate case: all outputs equal";
  ASSERT_EQ(bad, 0) << IsaName(isa) << " " << c.algo << " ci=" << s.in_channels
                    << " co=" << s.out_channels << " k=" << s.kernel_h << " stride=" << s.stride_h
                    << " pad=" << s.pad_top << " dil=" << s.dilation_h << " " << s.in_h << "x"
                    << s.in_w << " x_signed=" << c.x_signed << " w_signed=" << c.w_signed
                    << " wzp=" << c.wzp << " first mismatch at " << first << ": got "
                    << int{got[first]} << " want " << int{want[first]};
}

std::vector<Case> Cases() {
  std::vector<Case> v;
  // Depthwise: MobileNetV2 shapes (scaled down), channel tails, strides, dilation, 5x5.
  v.push_back({Shape(1, 32, 12, 12, 32, 3, 1, 1, 32), "depthwise", false, false, true, false, false, true});
  v.push_back({Shape(1, 144, 9, 10, 144, 3, 2, 1, 144), "depthwise", false, false, true, false, false, false});
  v.push_back({Shape(2, 35, 7, 7, 35, 3, 1, 1, 35), "depthwise", false, true, false, true, true, false});
  v.push_back({Shape(1, 5, 6, 9, 5, 3, 2, 0, 5), "depthwise", false, false, true, true, false, false});
  // Stride 2 (the int16-pair kernel on AVX-512): int8 input, uint8 weights with zero points, a
  // channel tail, odd sizes, batch 2.
  v.push_back({Shape(2, 21, 11, 13, 21, 3, 2, 1, 21), "depthwise", false, true, false, true, false, true});
  v.push_back({Shape(1, 48, 16, 15, 48, 3, 2, 1, 48), "depthwise", false, false, true, false, true, false});
  v.push_back({Shape(1, 17, 11, 8, 17, 5, 1, 2, 17), "depthwise", false, true, true, false, false, true});
  v.push_back({Shape(1, 24, 13, 13, 24, 3, 1, 2, 24, 2), "depthwise", false, false, false, false, true, false});
  v.push_back({Shape(1, 16, 1, 1, 16, 3, 1, 1, 16), "depthwise", false, false, true, false, false, false});
  // The AVX-512 byte-quad kernel (kw <= 4, weights within int8 after their zero point): int8
  // input and output with 64-channel packed stores, 64 + 32 channels at stride 2, 2x2 and a
  // dilated 4x4 kernel, wide planes (several column bands).
  v.push_back({Shape(1, 64, 10, 9, 64, 3, 1, 1, 64), "depthwise", false, true, true, false, true, true});
  v.push_back({Shape(2, 96, 9, 11, 96, 3, 2, 1, 96), "depthwise", false, false, true, false, false, true});
  v.push_back({Shape(1, 20, 7, 8, 20, 2, 1, 0, 20), "depthwise", false, true, false, false, false, false});
  v.push_back({Shape(1, 19, 9, 9, 19, 4, 2, 1, 19, 2), "depthwise", false, false, true, false, true, false});
  v.push_back({Shape(1, 144, 5, 40, 144, 3, 1, 1, 144), "depthwise", false, false, true, false, false, false});
  v.push_back({Shape(1, 32, 4, 70, 32, 3, 2, 1, 32), "depthwise", false, true, true, false, false, true});
  // Pointwise: channel counts around the 16-channel blocks and 4-block groups, row tails.
  v.push_back({Shape(1, 16, 7, 9, 96, 1, 1, 0, 1), "pointwise", false, false, true, false, false, true});
  v.push_back({Shape(1, 24, 5, 5, 144, 1, 1, 0, 1), "pointwise", false, true, true, false, true, false});
  v.push_back({Shape(2, 32, 3, 7, 24, 1, 1, 0, 1), "pointwise", false, false, false, true, false, false});
  v.push_back({Shape(1, 64, 4, 4, 70, 1, 1, 0, 1), "pointwise", false, true, false, true, false, false});
  v.push_back({Shape(1, 320, 2, 3, 1280, 1, 1, 0, 1), "pointwise", false, false, true, false, false, false});
  v.push_back({Shape(1, 4, 17, 11, 3, 1, 1, 0, 1), "pointwise", false, false, true, true, true, true});
  // 16 output channels (four pixels per 64-byte store on AVX-512; 63 pixels: row tails), 24 and 8
  // (a partial channel block stored with a spilling full store except on the last pixel), with
  // and without weight zero points, int8 outputs.
  v.push_back({Shape(1, 32, 9, 7, 16, 1, 1, 0, 1), "pointwise", false, false, true, false, false, true});
  v.push_back({Shape(1, 32, 9, 7, 16, 1, 1, 0, 1), "pointwise", false, true, true, false, true, false});
  v.push_back({Shape(1, 16, 9, 7, 16, 1, 1, 0, 1), "pointwise", false, false, false, true, false, false});
  v.push_back({Shape(2, 48, 13, 11, 24, 1, 1, 0, 1), "pointwise", false, false, true, false, false, false});
  v.push_back({Shape(1, 24, 5, 7, 8, 1, 1, 0, 1), "pointwise", false, true, true, false, true, true});
  v.push_back({Shape(1, 8, 12, 12, 24, 3, 2, 1, 1), "im2col", false, false, true, false, false, false});
  // im2col: the first MobileNetV2 convolution read from NCHW, other kernels from NHWC.
  v.push_back({Shape(1, 3, 23, 21, 32, 3, 2, 1, 1), "im2col", true, false, true, false, false, true});
  v.push_back({Shape(2, 3, 16, 16, 32, 3, 2, 1, 1), "im2col", true, true, false, true, true, false});
  v.push_back({Shape(1, 5, 9, 9, 20, 3, 1, 1, 1, 2), "im2col", true, false, true, true, false, false});
  v.push_back({Shape(1, 6, 9, 11, 40, 3, 2, 1, 1), "im2col", false, false, true, false, false, false});
  v.push_back({Shape(1, 7, 8, 8, 17, 2, 1, 0, 1), "im2col", false, true, false, true, true, false});
  v.push_back({Shape(1, 10, 6, 6, 33, 1, 2, 0, 1), "im2col", false, false, true, false, false, false});
  v.push_back({Shape(1, 6, 5, 5, 9, 1, 1, 0, 1), "im2col", false, false, true, false, false, false});
  return v;
}

TEST(Int8ConvNhwc, EveryAlgorithmAndVariantMatchesReference) {
  ThreadPool pool2(2);
  for (Isa isa : SupportedIsas()) {
    uint32_t seed = 1;
    for (const Case& c : Cases()) {
      RunCase(c, isa, seed++, nullptr);
      RunCase(c, isa, seed++, &pool2);
      if (HasFatalFailure()) return;
    }
  }
}

TEST(Int8ConvNhwc, FirstMobileNetV2ConvolutionFullSize) {
  // 224x224 input: the im2col fast path (8-byte row copies) and the borders at full size.
  ThreadPool pool2(2);
  const Case c{Shape(1, 3, 224, 224, 32, 3, 2, 1, 1), "im2col", true, false, true, false, false, true};
  for (Isa isa : SupportedIsas()) RunCase(c, isa, 99, &pool2);
}

// RunWithAdd (a QLinearAdd fused into the output stage) equals Run followed by the reference
// Int8Add, for pointwise and im2col convolutions, the convolution as operand A or B, uint8 and
// int8, 1 and 2 threads (the small-plane 2-thread pointwise splits channels: the per-row Add).
TEST(Int8ConvNhwc, FusedAddEqualsConvolutionThenAdd) {
  ThreadPool pool2(2);
  struct AddCase {
    Conv2DShape s;
    bool sg;
  };
  const AddCase cases[] = {{Shape(1, 32, 7, 7, 160, 1, 1, 0, 1), false},
                           {Shape(2, 24, 9, 8, 40, 1, 1, 0, 1), true},
                           {Shape(1, 8, 11, 10, 24, 3, 1, 1, 1), false},
                           {Shape(1, 12, 10, 9, 20, 3, 2, 1, 1), true}};
  uint32_t seed = 40;
  for (Isa isa : SupportedIsas())
    for (const AddCase& c : cases)
      for (const bool conv_is_a : {true, false})
        for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool2}) {
          const Conv2DShape& s = c.s;
          std::mt19937 rng(seed++);
          auto bytes = [&](int64_t n) {
            std::vector<uint8_t> v(static_cast<size_t>(n));
            for (auto& b : v) b = static_cast<uint8_t>(rng() & 0xFF);
            return v;
          };
          const int64_t ohw = s.out_h() * s.out_w();
          const int64_t k = s.in_channels * s.kernel_h * s.kernel_w;
          const auto x = bytes(s.batch * s.in_channels * s.in_h * s.in_w);
          const auto w = bytes(s.out_channels * k);
          const auto other = bytes(s.batch * s.out_channels * ohw);
          std::vector<int32_t> bias(static_cast<size_t>(s.out_channels));
          for (auto& b : bias) b = static_cast<int32_t>(rng() % 20001) - 10000;
          std::vector<float> scale(static_cast<size_t>(s.out_channels));
          for (auto& v : scale)
            v = 60.f / (std::sqrt(static_cast<float>(k)) * 5625.f) * (0.5f + (rng() % 1000) * 1e-3f);
          Int8OutputStage out;
          out.bias = bias.data();
          out.scale = scale.data();
          out.out_signed = c.sg;
          out.zero_point = c.sg ? -7 : 120;
          out.qmin = c.sg ? -128 : 0;
          out.qmax = c.sg ? 127 : 255;
          auto conv = Int8ConvNhwc::Create(s, w.data(), true, nullptr, 0, c.sg, false, isa);
          ASSERT_TRUE(conv.ok()) << conv.status().ToString();
          const int32_t xzp = c.sg ? 3 : 130;
          std::vector<uint8_t> q(other.size()), want(other.size()), got(other.size(), 0xCD);
          (*conv)->Run(x.data(), xzp, out, q.data(), s.batch, s.in_h, s.in_w, nullptr);
          Int8AddParams p;
          p.a_scale = 0.05f;
          p.b_scale = 0.037f;
          p.c_scale = 0.061f;
          p.a_zp = c.sg ? -7 : 120;
          p.b_zp = c.sg ? 10 : 131;
          p.c_zp = c.sg ? 2 : 125;
          p.is_signed = c.sg;
          Int8Add(p, conv_is_a ? q.data() : other.data(), false, conv_is_a ? other.data() : q.data(),
                  false, want.data(), static_cast<int64_t>(want.size()), Isa::kReference);
          const Int8AddConstants r = Int8AddRatios(p);
          Int8FusedAdd add;
          add.other = other.data();
          add.ra = r.ra;
          add.rb = r.rb;
          add.k = r.k;
          add.conv_is_a = conv_is_a;
          ASSERT_TRUE((*conv)->RunWithAdd(x.data(), xzp, out, add, got.data(), s.batch, s.in_h,
                                          s.in_w, pool));
          int64_t spread = 0;
          for (size_t i = 0; i < want.size(); ++i) {
            ASSERT_EQ(got[i], want[i]) << IsaName(isa) << " " << (*conv)->algorithm() << " co="
                                       << s.out_channels << " conv_is_a=" << conv_is_a << " at " << i;
            spread += want[i] != want[0];
          }
          EXPECT_GT(spread, static_cast<int64_t>(want.size()) / 2);
        }
  // Depthwise convolutions do not take a fused Add.
  const Conv2DShape dws = Shape(1, 16, 5, 5, 16, 3, 1, 1, 16);
  std::vector<int8_t> dw(16 * 9, 1);
  auto conv = Int8ConvNhwc::Create(dws, dw.data(), true, nullptr, 0, false, false, Isa::kReference);
  ASSERT_TRUE(conv.ok());
  std::vector<uint8_t> x(16 * 25, 1), other(16 * 25, 2), y(16 * 25, 0);
  std::vector<float> scale(16, 0.1f);
  Int8OutputStage out;
  out.scale = scale.data();
  Int8FusedAdd add;
  add.other = other.data();
  EXPECT_FALSE((*conv)->RunWithAdd(x.data(), 0, out, add, y.data(), 1, 5, 5, nullptr));
}

TEST(Int8ConvNhwc, RefusesGroupedNonDepthwise) {
  EXPECT_FALSE(Int8ConvNhwc::Supports(Shape(1, 8, 4, 4, 8, 3, 1, 1, 2), false));
  // Depthwise needs an NHWC input.
  EXPECT_FALSE(Int8ConvNhwc::Supports(Shape(1, 8, 4, 4, 8, 3, 1, 1, 8), true));
  std::vector<uint8_t> w(8 * 4 * 9);
  auto r = Int8ConvNhwc::Create(Shape(1, 8, 4, 4, 8, 3, 1, 1, 2), w.data(), true, nullptr, 0, false,
                                false, Isa::kReference);
  EXPECT_FALSE(r.ok());
}

TEST(Int8ConvNhwc, GlobalAveragePoolMatchesNchw) {
  std::mt19937 rng(7);
  for (bool sg : {false, true}) {
    const int64_t n = 2, c = 37, hw = 49;
    std::vector<uint8_t> x(static_cast<size_t>(n * c * hw));
    for (auto& b : x) b = static_cast<uint8_t>(rng() & 0xFF);
    std::vector<uint8_t> want(static_cast<size_t>(n * c)), got(want.size());
    Int8GlobalAveragePool(x.data(), n * c, hw, 0.05f, sg ? -3 : 120, 0.02f, sg ? 4 : 130, sg,
                          want.data(), nullptr);
    const auto xn = ToNhwc(x, n, c, hw);
    Int8GlobalAveragePoolNhwc(xn.data(), n, hw, c, 0.05f, sg ? -3 : 120, 0.02f, sg ? 4 : 130, sg,
                              got.data(), nullptr);
    EXPECT_EQ(got, want) << "signed=" << sg;
  }
}

}  // namespace
}  // namespace onnxq::kernels
