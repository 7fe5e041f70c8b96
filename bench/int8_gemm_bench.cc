// Int8 GEMM microbenchmark (JSON on stdout): this CPU's measured VNNI peak (a dependency-free
// vpdpbusd loop, 1 thread), the int8 GEMM tiles of every supported ISA on cache-resident packed
// panels, and the whole Int8Gemm (packing + tiles + requantization) on MobileNetV2-like 1x1
// convolution shapes. Ops are counted as 2 per multiply-accumulate. Then the largest channels-last
// (Int8ConvNhwc) MobileNetV2 layers alone, per ISA: minimum thread CPU time in microseconds.
//
//   onnxq_int8_gemm_bench [--seconds S]   (default 0.3 s per measurement)
// ONNXQ_BENCH_SMOKE=1: a minimal run (0.01 s per measurement) printing the complete JSON.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/int8_internal.h"
#include "onnxq/kernels/cpu.h"
#include "onnxq/kernels/int8_gemm.h"
#include "onnxq/kernels/int8_nhwc.h"

namespace {

using Clock = std::chrono::steady_clock;
double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// 20 independent accumulators (zmm0-19) cover vpdpbusd's latency on two ports; written in asm so
// the compiler can neither spill nor drop them.
__attribute__((target("avx512f"))) double VnniPeakGops(double min_seconds) {
  constexpr int kAcc = 20;
  __asm__ volatile(
      "vpternlogd $0xff, %%zmm30, %%zmm30, %%zmm30\n"
      "vpabsb %%zmm30, %%zmm31\n" ::: "xmm30", "xmm31");
  int64_t iters = 0;
  const auto t0 = Clock::now();
  double el = 0;
  do {
    for (int r = 0; r < 1000; ++r) {
      __asm__ volatile(
          "vpdpbusd %%zmm31, %%zmm30, %%zmm0\n vpdpbusd %%zmm31, %%zmm30, %%zmm1\n"
          "vpdpbusd %%zmm31, %%zmm30, %%zmm2\n vpdpbusd %%zmm31, %%zmm30, %%zmm3\n"
          "vpdpbusd %%zmm31, %%zmm30, %%zmm4\n vpdpbusd %%zmm31, %%zmm30, %%zmm5\n"
          "vpdpbusd %%zmm31, %%zmm30, %%zmm6\n vpdpbusd %%zmm31, %%zmm30, %%zmm7\n"
          "vpdpbusd %%zmm31, %%zmm30, %%zmm8\n vpdpbusd %%zmm31, %%zmm30, %%zmm9\n"
          "vpdpbusd %%zmm31, %%zmm30, %%zmm10\n vpdpbusd %%zmm31, %%zmm30, %%zmm11\n"
          "vpdpbusd %%zmm31, %%zmm30, %%zmm12\n vpdpbusd %%zmm31, %%zmm30, %%zmm13\n"
          "vpdpbusd %%zmm31, %%zmm30, %%zmm14\n vpdpbusd %%zmm31, %%zmm30, %%zmm15\n"
          "vpdpbusd %%zmm31, %%zmm30, %%zmm16\n vpdpbusd %%zmm31, %%zmm30, %%zmm17\n"
          "vpdpbusd %%zmm31, %%zmm30, %%zmm18\n vpdpbusd %%zmm31, %%zmm30, %%zmm19\n" ::
              : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
                "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18",
                "xmm19");
    }
    iters += 1000;
    el = Seconds(t0, Clock::now());
  } while (el < min_seconds);
  return static_cast<double>(iters) * kAcc * 64 * 2 / el * 1e-9;
}

// The int8 tile of `isa` on one packed panel pair of depth k, repeated; int32 output.
double TileGops(onnxq::kernels::Isa isa, int64_t k, double min_seconds) {
  using namespace onnxq::kernels;
  const int8::Table t = int8::TableForIsa(static_cast<int>(isa));
  const int64_t kq = (k + 3) / 4;
  std::vector<uint8_t> w(static_cast<size_t>(kq * t.mr * 4 * (t.w16 ? 2 : 1)), 1);
  std::vector<uint8_t> x(static_cast<size_t>(kq * t.nr * 4), 7);
  std::vector<int32_t> row_off(static_cast<size_t>(t.mr), 0);
  std::vector<int32_t> y(static_cast<size_t>(t.mr * t.nr));
  int8::Tile tile;
  tile.kq = kq;
  tile.w = w.data();
  tile.x = x.data();
  tile.x_stride = t.nr * 4;
  tile.m = t.mr;
  tile.n = t.nr;
  tile.row_off = row_off.data();
  tile.y = y.data();
  tile.ldy = t.nr;
  int64_t reps = 0;
  const auto t0 = Clock::now();
  double el = 0;
  do {
    for (int r = 0; r < 200; ++r) t.tile(tile);
    reps += 200;
    el = Seconds(t0, Clock::now());
  } while (el < min_seconds);
  return static_cast<double>(reps) * t.mr * t.nr * kq * 4 * 2 / el * 1e-9;
}

// Whole GEMM: m x k weights times k x n uint8 activations, requantized to uint8, 1 thread.
double GemmGops(onnxq::kernels::Isa isa, int64_t m, int64_t n, int64_t k, double min_seconds) {
  using namespace onnxq::kernels;
  std::vector<int8_t> w(static_cast<size_t>(m * k));
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<int8_t>((i * 37) % 255 - 127);
  std::vector<uint8_t> x(static_cast<size_t>(k * n));
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<uint8_t>((i * 13) % 256);
  std::vector<float> scale(static_cast<size_t>(m), 1e-3f);
  std::vector<int32_t> bias(static_cast<size_t>(m), 100);
  std::vector<uint8_t> y(static_cast<size_t>(m * n));
  auto gemm = Int8Gemm::Create(m, k, w.data(), k, true, nullptr, 0, isa);
  if (!gemm.ok()) return 0;
  Int8OutputStage out;
  out.bias = bias.data();
  out.scale = scale.data();
  out.zero_point = 128;
  int64_t reps = 0;
  const auto t0 = Clock::now();
  double el = 0;
  do {
    (*gemm)->Run(x.data(), false, n, 1, 128, n, out, y.data(), n, nullptr);
    ++reps;
    el = Seconds(t0, Clock::now());
  } while (el < min_seconds);
  return static_cast<double>(reps) * m * n * k * 2 / el * 1e-9;
}

// One channels-last MobileNetV2 layer (Int8ConvNhwc, uint8 activations, symmetric int8 weights,
// 1 thread): the minimum over `reps` runs of the calling thread's CPU time, in microseconds.
double NhwcLayerUs(onnxq::kernels::Isa isa, const onnxq::kernels::Conv2DShape& s, bool nchw_in,
                   int reps) {
  using namespace onnxq::kernels;
  const int64_t k = (s.in_channels / s.group) * s.kernel_h * s.kernel_w;
  std::vector<int8_t> w(static_cast<size_t>(s.out_channels * k));
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<int8_t>((i * 37) % 200 - 100);
  std::vector<uint8_t> x(static_cast<size_t>(s.in_channels * s.in_h * s.in_w));
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<uint8_t>((i * 13) % 256);
  std::vector<float> scale(static_cast<size_t>(s.out_channels), 2e-4f);
  std::vector<int32_t> bias(static_cast<size_t>(s.out_channels), 100);
  std::vector<uint8_t> y(static_cast<size_t>(s.out_channels * s.out_h() * s.out_w()));
  auto conv = Int8ConvNhwc::Create(s, w.data(), true, nullptr, 0, false, nchw_in, isa);
  if (!conv.ok()) return 0;
  Int8OutputStage out;
  out.bias = bias.data();
  out.scale = scale.data();
  out.zero_point = 0;
  out.qmin = 0;
  out.qmax = 255;
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    timespec a, b;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    (*conv)->Run(x.data(), 128, out, y.data(), 1, s.in_h, s.in_w, nullptr);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
    const double us = (b.tv_sec - a.tv_sec) * 1e6 + (b.tv_nsec - a.tv_nsec) * 1e-3;
    best = us < best ? us : best;
  }
  return best;
}

onnxq::kernels::Conv2DShape LayerShape(int64_t ci, int64_t hw, int64_t co, int64_t k,
                                       int64_t stride, int64_t group) {
  onnxq::kernels::Conv2DShape s;
  s.batch = 1;
  s.in_channels = ci;
  s.in_h = s.in_w = hw;
  s.out_channels = co;
  s.kernel_h = s.kernel_w = k;
  s.stride_h = s.stride_w = stride;
  s.pad_top = s.pad_left = s.pad_bottom = s.pad_right = k / 2;
  s.group = group;
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace onnxq::kernels;
  double secs = 0.3;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], "--seconds") == 0) secs = std::atof(argv[i + 1]);
  const char* smoke_env = std::getenv("ONNXQ_BENCH_SMOKE");
  const bool smoke = smoke_env != nullptr && std::strcmp(smoke_env, "1") == 0;
  if (smoke) secs = 0.01;  // a minimal run with the complete JSON; the numbers mean nothing
  const bool vnni = GetCpuFeatures().avx512vnni && GetCpuFeatures().avx512f;
  const double peak = vnni ? VnniPeakGops(secs) : 0.0;
  std::printf("{\n  \"smoke\": %s,\n  \"threads\": 1,\n  \"vnni_peak_gops\": %.1f,\n",
              smoke ? "true" : "false", peak);
  std::printf("  \"tiles\": [\n");
  bool first = true;
  for (Isa isa : SupportedIsas()) {
    if (isa == Isa::kReference) continue;
    const int8::Table t = int8::TableForIsa(static_cast<int>(isa));
    for (int64_t k : {256, 1024}) {
      const double g = TileGops(isa, k, secs);
      std::printf("%s    {\"isa\": \"%s\", \"tile\": \"%dx%d\", \"k\": %lld, \"gops\": %.1f, "
                  "\"fraction_of_vnni_peak\": %.3f}",
                  first ? "" : ",\n", IsaName(isa), t.mr, t.nr, static_cast<long long>(k), g,
                  peak > 0 ? g / peak : 0.0);
      first = false;
    }
  }
  std::printf("\n  ],\n  \"gemm\": [\n");
  struct Shape {
    int64_t m, n, k;
    const char* what;
  };
  const Shape shapes[] = {{96, 3136, 24, "1x1 24->96 @56x56"},
                          {32, 784, 192, "1x1 192->32 @28x28"},
                          {384, 196, 64, "1x1 64->384 @14x14"},
                          {320, 49, 960, "1x1 960->320 @7x7"},
                          {256, 256, 256, "square 256"}};
  first = true;
  for (Isa isa : SupportedIsas()) {
    if (isa == Isa::kReference) continue;
    for (const Shape& s : shapes) {
      const double g = GemmGops(isa, s.m, s.n, s.k, secs);
      std::printf("%s    {\"isa\": \"%s\", \"shape\": \"%s\", \"m\": %lld, \"n\": %lld, \"k\": %lld, "
                  "\"gops\": %.1f, \"fraction_of_vnni_peak\": %.3f}",
                  first ? "" : ",\n", IsaName(isa), s.what, static_cast<long long>(s.m),
                  static_cast<long long>(s.n), static_cast<long long>(s.k), g,
                  peak > 0 ? g / peak : 0.0);
      first = false;
    }
  }
  // The largest channels-last MobileNetV2 layers, each alone (cache-warm, 1 thread, thread CPU
  // time, minimum over the runs).
  struct Layer {
    const char* what;
    onnxq::kernels::Conv2DShape s;
    bool nchw_in;
  };
  const Layer layers[] = {
      {"conv0 3x3/2 3->32 224 (NCHW in)", LayerShape(3, 224, 32, 3, 2, 1), true},
      {"dw 3x3/1 32 112", LayerShape(32, 112, 32, 3, 1, 32), false},
      {"pw 32->16 112", LayerShape(32, 112, 16, 1, 1, 1), false},
      {"pw 16->96 112", LayerShape(16, 112, 96, 1, 1, 1), false},
      {"dw 3x3/2 96 112", LayerShape(96, 112, 96, 3, 2, 96), false},
      {"pw 24->144 56", LayerShape(24, 56, 144, 1, 1, 1), false},
      {"dw 3x3/1 144 56", LayerShape(144, 56, 144, 3, 1, 144), false},
      {"pw 144->24 56", LayerShape(144, 56, 24, 1, 1, 1), false},
      {"dw 3x3/2 144 56", LayerShape(144, 56, 144, 3, 2, 144), false},
      {"dw 3x3/1 192 28", LayerShape(192, 28, 192, 3, 1, 192), false},
      {"dw 3x3/1 576 14", LayerShape(576, 14, 576, 3, 1, 576), false},
      {"dw 3x3/1 960 7", LayerShape(960, 7, 960, 3, 1, 960), false},
      {"pw 320->1280 7", LayerShape(320, 7, 1280, 1, 1, 1), false}};
  const int reps = std::max(3, static_cast<int>(secs * 200));
  std::printf("\n  ],\n  \"nhwc_layers_us\": [\n");
  first = true;
  for (Isa isa : SupportedIsas()) {
    if (isa == Isa::kReference) continue;  // the oracle, not a speed path
    for (const Layer& l : layers) {
      std::printf("%s    {\"isa\": \"%s\", \"layer\": \"%s\", \"us\": %.1f}", first ? "" : ",\n",
                  IsaName(isa), l.what, NhwcLayerUs(isa, l.s, l.nchw_in, reps));
      first = false;
    }
  }
  std::printf("\n  ]\n}\n");
  return 0;
}
