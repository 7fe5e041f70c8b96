#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "kernels_test_util.h"
#include "onnxq/base/thread_pool.h"
#include "onnxq/kernels/conv.h"

namespace onnxq::kernels {
namespace {

using testing::RandomVector;
using testing::SumTolerance;

struct ConvCase {
  Conv2DShape s;
  bool bias;
  Activation act;
  const char* algorithm;
};

Conv2DShape Shape(int64_t n, int64_t c, int64_t h, int64_t w, int64_t m, int64_t kh, int64_t kw,
                  int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t pt, int64_t pl, int64_t pb,
                  int64_t pr, int64_t group) {
  Conv2DShape s;
  s.batch = n;
  s.in_channels = c;
  s.in_h = h;
  s.in_w = w;
  s.out_channels = m;
  s.kernel_h = kh;
  s.kernel_w = kw;
  s.stride_h = sh;
  s.stride_w = sw;
  s.dilation_h = dh;
  s.dilation_w = dw;
  s.pad_top = pt;
  s.pad_left = pl;
  s.pad_bottom = pb;
  s.pad_right = pr;
  s.group = group;
  return s;
}

std::string Describe(const Conv2DShape& s) {
  return "N" + std::to_string(s.batch) + " C" + std::to_string(s.in_channels) + " " +
         std::to_string(s.in_h) + "x" + std::to_string(s.in_w) + " M" + std::to_string(s.out_channels) +
         " k" + std::to_string(s.kernel_h) + "x" + std::to_string(s.kernel_w) + " s" +
         std::to_string(s.stride_h) + "," + std::to_string(s.stride_w) + " d" +
         std::to_string(s.dilation_h) + "," + std::to_string(s.dilation_w) + " p" +
         std::to_string(s.pad_top) + "," + std::to_string(s.pad_left) + "," +
         std::to_string(s.pad_bottom) + "," + std::to_string(s.pad_right) + " g" +
         std::to_string(s.group);
}

void CheckConv(const ConvCase& cc, Isa isa, ThreadPool* pool, uint32_t seed) {
  const Conv2DShape& s = cc.s;
  SCOPED_TRACE(std::string(IsaName(isa)) + " " + Describe(s));
  const int64_t cg = s.in_channels / s.group;
  std::vector<float> x = RandomVector(s.batch * s.in_channels * s.in_h * s.in_w, seed);
  std::vector<float> w = RandomVector(s.out_channels * cg * s.kernel_h * s.kernel_w, seed + 1);
  std::vector<float> bias = RandomVector(s.out_channels, seed + 2);
  const float* bias_ptr = cc.bias ? bias.data() : nullptr;
  const int64_t out = s.batch * s.out_channels * s.out_h() * s.out_w();
  std::vector<float> expect(out), got(out, std::nanf("")), bound(out);
  Conv2DReference(s, x.data(), w.data(), bias_ptr, cc.act, expect.data());
  {
    std::vector<float> ax(x.size()), aw(w.size()), ab(bias.size());
    for (size_t i = 0; i < x.size(); ++i) ax[i] = std::fabs(x[i]);
    for (size_t i = 0; i < w.size(); ++i) aw[i] = std::fabs(w[i]);
    for (size_t i = 0; i < bias.size(); ++i) ab[i] = std::fabs(bias[i]);
    Conv2DReference(s, ax.data(), aw.data(), ab.data(), Activation{}, bound.data());
  }
  auto conv = Conv2D::Create(s, w.data(), bias_ptr, cc.act, isa);
  ASSERT_TRUE(conv.ok()) << conv.status().ToString();
  EXPECT_STREQ((*conv)->algorithm(), cc.algorithm);
  EXPECT_EQ((*conv)->isa(), isa);
  (*conv)->Run(x.data(), got.data(), s.batch, s.in_h, s.in_w, pool);
  const int64_t terms = cg * s.kernel_h * s.kernel_w;
  int bad = 0;
  for (int64_t i = 0; i < out; ++i) {
    const double tol = SumTolerance(terms, bound[i]);
    if (!(std::fabs(static_cast<double>(got[i]) - expect[i]) <= tol) && bad++ < 5) {
      ADD_FAILURE() << "at " << i << ": got " << got[i] << " want " << expect[i] << " tol " << tol;
    }
  }
  EXPECT_EQ(bad, 0);
}

std::vector<ConvCase> Cases() {
  const Activation none{};
  const Activation relu6{0.f, 6.f};
  const Activation relu{0.f, std::numeric_limits<float>::infinity()};
  const Activation tight{-0.3f, 0.4f};  // clamps many outputs, so the epilogue really is checked
  return {
      // Depthwise: MobileNetV2-like 3x3 s1 / s2 (TF "SAME" asymmetric pads), odd sizes, batch 2.
      {Shape(1, 16, 12, 12, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 16), true, relu6, "depthwise"},
      {Shape(2, 5, 17, 19, 5, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1, 5), true, tight, "depthwise"},
      {Shape(1, 3, 33, 40, 3, 3, 3, 2, 2, 1, 1, 1, 0, 1, 2, 3), false, none, "depthwise"},
      {Shape(1, 4, 9, 35, 4, 3, 3, 1, 1, 1, 1, 0, 2, 1, 0, 4), true, tight, "depthwise"},
      {Shape(1, 6, 14, 14, 6, 5, 5, 1, 1, 2, 2, 4, 4, 4, 4, 6), true, relu, "depthwise"},  // dilated
      {Shape(1, 3, 20, 23, 3, 3, 5, 3, 3, 1, 1, 1, 2, 0, 2, 3), true, tight, "depthwise"},  // stride 3
      {Shape(1, 2, 11, 13, 2, 2, 4, 1, 2, 3, 1, 0, 1, 2, 0, 2), true, none, "depthwise"},
      {Shape(3, 7, 4, 4, 7, 3, 3, 2, 1, 1, 1, 1, 1, 1, 1, 7), false, tight, "depthwise"},
      {Shape(1, 4, 21, 30, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 4), true, tight, "depthwise"},  // odd pad_left
      {Shape(2, 3, 19, 37, 3, 3, 3, 2, 2, 1, 1, 2, 2, 0, 2, 3), true, relu6, "depthwise"},
      {Shape(1, 3, 18, 50, 3, 3, 3, 1, 1, 1, 1, 2, 2, 2, 2, 3), true, none, "depthwise"},
      // >= 16 channels: the channel-blocked 3x3 kernel (AVX-512), with the channels % 16 left to
      // the per-plane kernel, planes smaller than 16 pixels, several row bands, pads of 2.
      {Shape(2, 35, 14, 14, 35, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 35), true, relu6, "depthwise"},
      {Shape(1, 48, 7, 7, 48, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1, 48), true, tight, "depthwise"},
      {Shape(1, 16, 3, 5, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 16), true, tight, "depthwise"},
      {Shape(1, 32, 70, 61, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 32), false, none, "depthwise"},
      {Shape(1, 16, 57, 45, 16, 3, 3, 2, 2, 1, 1, 2, 1, 0, 2, 16), true, tight, "depthwise"},
      {Shape(1, 16, 9, 9, 16, 3, 3, 1, 1, 1, 1, 2, 2, 2, 2, 16), true, relu, "depthwise"},
      // 1x1 as direct GEMM: MobileNetV2 channel counts, spatial edges, batch, groups.
      {Shape(1, 24, 7, 7, 144, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1), true, relu6, "gemm1x1"},
      {Shape(2, 37, 9, 11, 19, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1), true, tight, "gemm1x1"},
      {Shape(1, 300, 5, 5, 20, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1), false, none, "gemm1x1"},  // K > KC
      {Shape(1, 16, 30, 31, 8, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2), true, none, "gemm1x1"},
      {Shape(1, 3, 1, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1), true, tight, "gemm1x1"},  // 1x1 input: GEMV
      {Shape(2, 74, 1, 1, 38, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2), true, tight, "gemm1x1"},
      {Shape(3, 37, 1, 1, 70, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1), false, none, "gemm1x1"},
      // General: im2col, strided / padded / dilated / grouped / 1x1 with stride or pad.
      {Shape(1, 3, 23, 23, 32, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1, 1), true, relu6, "im2col"},
      {Shape(2, 6, 10, 12, 9, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 3), true, tight, "im2col"},
      {Shape(1, 4, 15, 13, 10, 3, 2, 2, 1, 2, 3, 2, 0, 1, 3, 2), false, none, "im2col"},
      {Shape(1, 8, 9, 9, 12, 1, 1, 2, 2, 1, 1, 0, 0, 0, 0, 1), true, none, "im2col"},
      {Shape(1, 5, 6, 7, 7, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1), true, tight, "im2col"},
      {Shape(1, 40, 12, 12, 18, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1), true, relu, "im2col"},  // K=360
      {Shape(1, 6, 8, 8, 12, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 6), true, none, "im2col"},  // multiplier 2
      {Shape(1, 2, 5, 5, 3, 7, 7, 1, 1, 1, 1, 3, 3, 3, 3, 1), true, tight, "im2col"},
  };
}

TEST(KernelsConv, EveryIsaMatchesReference) {
  ThreadPool pool(2);
  uint32_t seed = 1;
  for (Isa isa : SupportedIsas()) {
    for (const ConvCase& cc : Cases()) {
      CheckConv(cc, isa, nullptr, seed);
      CheckConv(cc, isa, &pool, seed + 10);
      seed += 20;
    }
  }
}

TEST(KernelsConv, MobileNetLayersMatchReference) {
  ThreadPool pool(2);
  const Activation relu6{0.f, 6.f};
  const std::vector<ConvCase> cases = {
      {Shape(1, 96, 28, 28, 24, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1), true, Activation{}, "gemm1x1"},
      {Shape(1, 144, 28, 28, 144, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1, 144), true, relu6, "depthwise"},
      {Shape(1, 3, 64, 64, 32, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1, 1), true, relu6, "im2col"},
      {Shape(1, 1280, 1, 1, 1000, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1), true, Activation{}, "gemm1x1"},
      {Shape(1, 32, 112, 112, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 32), true, relu6, "depthwise"},
      {Shape(1, 96, 113, 113, 96, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1, 96), true, relu6, "depthwise"},
  };
  for (Isa isa : SupportedIsas()) {
    for (const ConvCase& cc : cases) CheckConv(cc, isa, &pool, 77);
  }
}

TEST(KernelsConv, RunAcceptsOtherBatchAndSpatialSizes) {
  for (Isa isa : SupportedIsas()) {
    for (const ConvCase& base : {ConvCase{Shape(1, 8, 10, 10, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 8), true, {}, "depthwise"},
                                 ConvCase{Shape(1, 8, 10, 10, 12, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1), true, {}, "gemm1x1"},
                                 // created for a 1x1 input (GEMV weights kept), run on 17x6
                                 ConvCase{Shape(1, 8, 1, 1, 12, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1), true, {}, "gemm1x1"},
                                 ConvCase{Shape(1, 8, 10, 10, 12, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 2), true, {}, "im2col"}}) {
      const Conv2DShape& s0 = base.s;
      std::vector<float> w = RandomVector(s0.out_channels * (s0.in_channels / s0.group) * 9, 3);
      std::vector<float> bias = RandomVector(s0.out_channels, 4);
      auto conv = Conv2D::Create(s0, w.data(), bias.data(), Activation{}, isa);
      ASSERT_TRUE(conv.ok());
      Conv2DShape s = s0;
      s.batch = 3;
      s.in_h = 17;
      s.in_w = 6;
      std::vector<float> x = RandomVector(s.batch * s.in_channels * s.in_h * s.in_w, 5);
      const int64_t out = s.batch * s.out_channels * s.out_h() * s.out_w();
      std::vector<float> expect(out), got(out);
      Conv2DReference(s, x.data(), w.data(), bias.data(), Activation{}, expect.data());
      (*conv)->Run(x.data(), got.data(), s.batch, s.in_h, s.in_w, nullptr);
      for (int64_t i = 0; i < out; ++i) {
        ASSERT_NEAR(got[i], expect[i], 1e-5) << IsaName(isa) << " " << base.algorithm << " at " << i;
      }
    }
  }
}

TEST(KernelsConv, HandComputed) {
  // 1 channel 3x3 input, 2x2 kernel of ones, pad 0: each output is the sum of a 2x2 window.
  const float x[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  const float w[] = {1, 1, 1, 1};
  const float bias[] = {0.5f};
  Conv2DShape s = Shape(1, 1, 3, 3, 1, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0, 1);
  for (Isa isa : SupportedIsas()) {
    auto conv = Conv2D::Create(s, w, bias, Activation{-100.f, 20.f}, isa);
    ASSERT_TRUE(conv.ok());
    float y[4];
    (*conv)->Run(x, y, 1, 3, 3, nullptr);
    EXPECT_EQ(std::vector<float>(y, y + 4), (std::vector<float>{12.5f, 16.5f, 20.f, 20.f})) << IsaName(isa);
  }
}

TEST(KernelsConv, RejectsBadShapes) {
  const float w[64] = {};
  Conv2DShape s = Shape(1, 6, 8, 8, 4, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0, 4);  // 4 does not divide 6
  auto r = Conv2D::Create(s, w, nullptr, Activation{}, Isa::kReference);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("group"), std::string::npos);
  s = Shape(1, 1, 2, 2, 1, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0, 1);  // kernel larger than input
  EXPECT_FALSE(Conv2D::Create(s, w, nullptr, Activation{}, Isa::kReference).ok());
  s = Shape(1, 1, 4, 4, 1, 3, 3, 0, 1, 1, 1, 0, 0, 0, 0, 1);  // stride 0
  EXPECT_FALSE(Conv2D::Create(s, w, nullptr, Activation{}, Isa::kReference).ok());
  s = Shape(1, 1, 4, 4, 1, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0, 1);
  EXPECT_FALSE(Conv2D::Create(s, nullptr, nullptr, Activation{}, Isa::kReference).ok());
  EXPECT_FALSE(Conv2D::Create(s, w, nullptr, Activation{1.f, 0.f}, Isa::kReference).ok());
}

}  // namespace
}  // namespace onnxq::kernels
