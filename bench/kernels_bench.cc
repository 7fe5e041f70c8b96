// Kernel microbenchmark: prints JSON with, per ISA this CPU supports, the measured fp32 FMA peak
// (single thread), the GEMM microkernel's GFLOP/s on a cache-resident tile, whole-GEMM GFLOP/s and
// MobileNetV2 convolution layer timings.
//
//   onnxq_kernels_bench [--quick] [--threads N] [--isa reference|avx2|avx512] [--micro-only]
//   onnxq_kernels_bench --profile MODEL [--threads N] [--iters N]
// --micro-only prints just the FMA peak and the microkernel (what bench/mobilenetv2.py needs).
// --profile runs MODEL (batch 1, random inputs) through onnxq::Session and prints per-node times
// from the executor's own step timing (RunOptions::profile: the nodes the session runs, after
// fusion and QDQ lowering); the minimum and median over the runs are reported.
// ONNXQ_BENCH_SMOKE=1: a minimal run (3 short timing rounds per measurement, at most 2 profiled runs)
// that still prints the complete JSON, with "smoke": true; for tests, not for measuring.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "fma_peak.h"
#include "kernels/gemm_driver.h"
#include "onnxq/base/json.h"
#include "onnxq/base/thread_pool.h"
#include "onnxq/kernels/conv.h"
#include "onnxq/kernels/cpu.h"
#include "onnxq/kernels/gemm.h"
#include "onnxq/onnx/model_io.h"
#include "onnxq/runtime/session.h"

namespace onnxq::bench {
namespace {

using Clock = std::chrono::steady_clock;
using kernels::Isa;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Best (minimum) seconds per call over `rounds` rounds, each at least min_round s long. Many short
// rounds and the minimum, because on a shared, loaded machine noise only ever adds time and a short
// round has a fair chance to run undisturbed.
int g_rounds = 41;
double TimePerCall(const std::function<void()>& fn, double min_round, int rounds = 0) {
  if (rounds == 0) rounds = g_rounds;
  fn();  // warm caches and lazily grown buffers
  int64_t reps = 1;
  for (;;) {
    auto t0 = Clock::now();
    for (int64_t r = 0; r < reps; ++r) fn();
    const double s = Seconds(t0, Clock::now());
    if (s >= min_round) break;
    reps = std::max<int64_t>(reps * 2, static_cast<int64_t>(reps * min_round / std::max(s, 1e-9)));
  }
  std::vector<double> per_call;
  for (int i = 0; i < rounds; ++i) {
    auto t0 = Clock::now();
    for (int64_t r = 0; r < reps; ++r) fn();
    per_call.push_back(Seconds(t0, Clock::now()) / static_cast<double>(reps));
  }
  return *std::min_element(per_call.begin(), per_call.end());
}

std::vector<float> Random(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

double PeakGflops(Isa isa, double min_round) {
  float sink = 0.f;
  const int64_t iters = 1 << 14;
  double best = 0.0;
  const int chains512[] = {8, 12, 16, 24}, chains256[] = {8, 12, 14};
  for (int i = 0; i < (isa == Isa::kAvx512 ? 4 : 3); ++i) {
    double flops = 0.0;
    auto fn = [&] {
      flops = isa == Isa::kAvx512 ? FmaLoopAvx512(chains512[i], iters, &sink)
                                  : FmaLoopAvx2(chains256[i], iters, &sink);
    };
    const double s = TimePerCall(fn, min_round);
    best = std::max(best, flops / s * 1e-9);
  }
  if (sink == 12345.f) std::fprintf(stderr, " ");
  return best;
}

// MobileNetV2-1.0 (224x224) convolutions: in_c, in_h, in_w, out_c, k, stride, group, pads t/l/b/r.
// Every Conv but the classifier is followed by Clip(0, 6) or feeds a residual Add / the next block.
struct MbLayer {
  int64_t c, h, w, m, k, s, group, pt, pl, pb, pr;
};
const MbLayer kMobileNetV2[] = {
    {3, 224, 224, 32, 3, 2, 1, 0, 0, 1, 1},       {32, 112, 112, 32, 3, 1, 32, 1, 1, 1, 1},
    {32, 112, 112, 16, 1, 1, 1, 0, 0, 0, 0},      {16, 112, 112, 96, 1, 1, 1, 0, 0, 0, 0},
    {96, 112, 112, 96, 3, 2, 96, 0, 0, 1, 1},     {96, 56, 56, 24, 1, 1, 1, 0, 0, 0, 0},
    {24, 56, 56, 144, 1, 1, 1, 0, 0, 0, 0},       {144, 56, 56, 144, 3, 1, 144, 1, 1, 1, 1},
    {144, 56, 56, 24, 1, 1, 1, 0, 0, 0, 0},       {24, 56, 56, 144, 1, 1, 1, 0, 0, 0, 0},
    {144, 56, 56, 144, 3, 2, 144, 0, 0, 1, 1},    {144, 28, 28, 32, 1, 1, 1, 0, 0, 0, 0},
    {32, 28, 28, 192, 1, 1, 1, 0, 0, 0, 0},       {192, 28, 28, 192, 3, 1, 192, 1, 1, 1, 1},
    {192, 28, 28, 32, 1, 1, 1, 0, 0, 0, 0},       {32, 28, 28, 192, 1, 1, 1, 0, 0, 0, 0},
    {192, 28, 28, 192, 3, 1, 192, 1, 1, 1, 1},    {192, 28, 28, 32, 1, 1, 1, 0, 0, 0, 0},
    {32, 28, 28, 192, 1, 1, 1, 0, 0, 0, 0},       {192, 28, 28, 192, 3, 2, 192, 0, 0, 1, 1},
    {192, 14, 14, 64, 1, 1, 1, 0, 0, 0, 0},       {64, 14, 14, 384, 1, 1, 1, 0, 0, 0, 0},
    {384, 14, 14, 384, 3, 1, 384, 1, 1, 1, 1},    {384, 14, 14, 64, 1, 1, 1, 0, 0, 0, 0},
    {64, 14, 14, 384, 1, 1, 1, 0, 0, 0, 0},       {384, 14, 14, 384, 3, 1, 384, 1, 1, 1, 1},
    {384, 14, 14, 64, 1, 1, 1, 0, 0, 0, 0},       {64, 14, 14, 384, 1, 1, 1, 0, 0, 0, 0},
    {384, 14, 14, 384, 3, 1, 384, 1, 1, 1, 1},    {384, 14, 14, 64, 1, 1, 1, 0, 0, 0, 0},
    {64, 14, 14, 384, 1, 1, 1, 0, 0, 0, 0},       {384, 14, 14, 384, 3, 1, 384, 1, 1, 1, 1},
    {384, 14, 14, 96, 1, 1, 1, 0, 0, 0, 0},       {96, 14, 14, 576, 1, 1, 1, 0, 0, 0, 0},
    {576, 14, 14, 576, 3, 1, 576, 1, 1, 1, 1},    {576, 14, 14, 96, 1, 1, 1, 0, 0, 0, 0},
    {96, 14, 14, 576, 1, 1, 1, 0, 0, 0, 0},       {576, 14, 14, 576, 3, 1, 576, 1, 1, 1, 1},
    {576, 14, 14, 96, 1, 1, 1, 0, 0, 0, 0},       {96, 14, 14, 576, 1, 1, 1, 0, 0, 0, 0},
    {576, 14, 14, 576, 3, 2, 576, 0, 0, 1, 1},    {576, 7, 7, 160, 1, 1, 1, 0, 0, 0, 0},
    {160, 7, 7, 960, 1, 1, 1, 0, 0, 0, 0},        {960, 7, 7, 960, 3, 1, 960, 1, 1, 1, 1},
    {960, 7, 7, 160, 1, 1, 1, 0, 0, 0, 0},        {160, 7, 7, 960, 1, 1, 1, 0, 0, 0, 0},
    {960, 7, 7, 960, 3, 1, 960, 1, 1, 1, 1},      {960, 7, 7, 160, 1, 1, 1, 0, 0, 0, 0},
    {160, 7, 7, 960, 1, 1, 1, 0, 0, 0, 0},        {960, 7, 7, 960, 3, 1, 960, 1, 1, 1, 1},
    {960, 7, 7, 320, 1, 1, 1, 0, 0, 0, 0},        {320, 7, 7, 1280, 1, 1, 1, 0, 0, 0, 0},
    {1280, 1, 1, 1000, 1, 1, 1, 0, 0, 0, 0},
};

struct Json {
  std::string out;
  void Raw(const std::string& s) { out += s; }
};

std::string Fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), f, v);
  return buf;
}

int ProfileModel(const std::string& path, int threads, int iters, bool smoke) {
  auto model = LoadModel(path);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    return 1;
  }
  const Graph& g = model->graph;
  SessionOptions so;
  so.num_threads = threads;
  auto session = Session::Create(*model, so);
  if (!session.ok()) {
    std::fprintf(stderr, "%s\n", session.status().ToString().c_str());
    return 1;
  }
  std::map<std::string, Tensor> feeds;
  for (ValueId v : g.RuntimeInputs()) {
    const Value& val = g.value(v);
    if (val.dtype != DataType::kFloat) {
      std::fprintf(stderr, "--profile: input '%s' is not float32 (only float inputs are generated)\n",
                   val.name().c_str());
      return 1;
    }
    std::vector<int64_t> dims;
    if (val.shape) {
      for (const Dim& d : val.shape->dims()) dims.push_back(d.is_known() ? d.value : 1);
    }
    std::vector<float> data = Random(std::accumulate(dims.begin(), dims.end(), int64_t{1},
                                                     std::multiplies<int64_t>()), 11);
    feeds[val.name()] = Tensor::Float(dims, data);
  }
  // The executor's own per-step timing (RunOptions::profile): the plan, buffers and kernels are
  // those of a plain run, and every executed node is seen (also lowered / NHWC int8 nodes).
  struct Step {
    std::string name, op, shape;
    std::vector<double> us;
  };
  std::vector<Step> steps;
  RunOptions ro;
  ro.profile = true;
  std::vector<double> plain_ms, profiled_ms;
  for (int i = 0; i < iters + 3; ++i) {
    // Alternate plain and profiled runs so both see the same machine load.
    auto t0 = Clock::now();
    if (!(*session)->Run(feeds).ok()) return 1;
    auto t1 = Clock::now();
    auto r = (*session)->Run(feeds, ro);
    auto t2 = Clock::now();
    if (!r.ok()) {
      std::fprintf(stderr, "%s\n", r.status().ToString().c_str());
      return 1;
    }
    const auto& prof = (*session)->last_stats().profile;
    if (steps.empty()) {
      for (const StepTime& st : prof) {
        std::string shape = "?";
        if (!st.output_dims.empty()) {
          shape.clear();
          for (size_t k = 0; k < st.output_dims.size(); ++k) {
            if (k) shape += 'x';
            shape += std::to_string(st.output_dims[k]);
          }
        }
        steps.push_back({st.output, st.op_type, shape, {}});
      }
    }
    for (size_t k = 0; k < prof.size() && k < steps.size(); ++k) steps[k].us.push_back(prof[k].micros);
    if (i >= 3) {
      plain_ms.push_back(Seconds(t0, t1) * 1e3);
      profiled_ms.push_back(Seconds(t1, t2) * 1e3);
    }
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
  };
  auto minimum = [](const std::vector<double>& v) {
    return v.empty() ? 0.0 : *std::min_element(v.begin(), v.end());
  };
  std::string js = "{\n  \"model\": " + JsonQuote(path) + ", \"smoke\": " + (smoke ? "true" : "false") +
                   ", \"threads\": " + std::to_string(threads) +
                   ", \"runs\": " + std::to_string(iters) + ",\n  \"run_ms\": {\"min\": " +
                   Fmt("%.3f", minimum(plain_ms)) + ", \"median\": " + Fmt("%.3f", median(plain_ms)) +
                   "},\n  \"profiled_run_ms\": {\"min\": " + Fmt("%.3f", minimum(profiled_ms)) +
                   ", \"median\": " + Fmt("%.3f", median(profiled_ms)) + "},\n  \"steps\": [";
  double sum_min = 0, sum_med = 0;
  std::map<std::string, double> by_op;
  for (size_t i = 0; i < steps.size(); ++i) {
    std::vector<double> us(steps[i].us.begin() + std::min<size_t>(3, steps[i].us.size()), steps[i].us.end());
    sum_min += minimum(us);
    sum_med += median(us);
    by_op[steps[i].op] += minimum(us);
    js += std::string(i ? "," : "") + "\n    {\"value\": " + JsonQuote(steps[i].name) + ", \"op\": " +
          JsonQuote(steps[i].op) + ", \"shape\": \"" + steps[i].shape + "\", \"min_us\": " +
          Fmt("%.1f", minimum(us)) + ", \"median_us\": " + Fmt("%.1f", median(us)) + "}";
  }
  js += "\n  ],\n  \"sum_min_us\": " + Fmt("%.1f", sum_min) + ", \"sum_median_us\": " +
        Fmt("%.1f", sum_med) + ",\n  \"min_us_by_op\": {";
  bool first = true;
  for (const auto& [op, us] : by_op) {
    js += std::string(first ? "" : ", ") + JsonQuote(op) + ": " + Fmt("%.1f", us);
    first = false;
  }
  js += "}\n}\n";
  std::fputs(js.c_str(), stdout);
  return 0;
}

}  // namespace
}  // namespace onnxq::bench

int main(int argc, char** argv) {
  using namespace onnxq;
  using namespace onnxq::bench;
  bool quick = false, micro_only = false;
  int threads = 1;
  std::string only_isa, profile;
  int iters = 50;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--isa") == 0 && i + 1 < argc) {
      only_isa = argv[++i];
      auto parsed = kernels::ParseIsa(only_isa);
      if (!parsed.ok()) {
        std::fprintf(stderr, "%s\n", parsed.status().ToString().c_str());
        return 2;
      }
    } else if (std::strcmp(argv[i], "--micro-only") == 0) {
      micro_only = true;
    } else if (std::strcmp(argv[i], "--profile") == 0 && i + 1 < argc) {
      profile = argv[++i];
    } else if (std::strcmp(argv[i], "--iters") == 0 && i + 1 < argc) {
      iters = std::max(1, std::atoi(argv[++i]));
    } else {
      const bool help = std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0;
      std::fprintf(help ? stdout : stderr,
                   "usage: %s [--quick] [--threads N] [--isa NAME] [--micro-only]\n"
                   "       %s --profile MODEL [--threads N] [--iters N]\n"
                   "  --quick       15 timing rounds instead of 41\n"
                   "  --threads N   thread pool size (default 1)\n"
                   "  --isa NAME    only this ISA: reference, avx2 or avx512 (default: all supported)\n"
                   "  --micro-only  only the FMA peak and the GEMM microkernel\n"
                   "  --profile M   per-step times of model M through onnxq::Session\n"
                   "  --iters N     profiled runs (default 50)\n"
                   "environment: ONNXQ_BENCH_SMOKE=1 for a minimal run that prints the complete JSON\n",
                   argv[0], argv[0]);
      return help ? 0 : 2;
    }
  }
  const char* smoke_env = std::getenv("ONNXQ_BENCH_SMOKE");
  const bool smoke = smoke_env != nullptr && std::strcmp(smoke_env, "1") == 0;
  if (!profile.empty()) return ProfileModel(profile, threads, smoke ? std::min(iters, 2) : iters, smoke);
  const double min_round = smoke ? 0.0002 : 0.002;
  g_rounds = smoke ? 3 : quick ? 15 : 41;
  ThreadPool pool(threads);
  std::string js = "{\n  \"threads\": " + std::to_string(threads) + ",\n";
  js += std::string("  \"smoke\": ") + (smoke ? "true" : "false") + ",\n";
  js += "  \"active_isa\": \"" + std::string(kernels::IsaName(kernels::ActiveIsa())) + "\",\n";
  js += "  \"isas\": {\n";
  std::vector<Isa> isas = kernels::SupportedIsas();
  if (!only_isa.empty()) {
    const Isa want = *kernels::ParseIsa(only_isa);
    if (std::find(isas.begin(), isas.end(), want) == isas.end()) {
      std::fprintf(stderr, "this CPU cannot run ISA %s\n", only_isa.c_str());
      return 2;
    }
    isas = {want};
  }
  for (size_t ii = 0; ii < isas.size(); ++ii) {
    const Isa isa = isas[ii];
    const kernels::internal::KernelTable& t = kernels::internal::GetTable(isa);
    js += "    \"" + std::string(kernels::IsaName(isa)) + "\": {\n";
    double peak = 0.0;
    if (isa != Isa::kReference) {
      peak = PeakGflops(isa, min_round);
      js += "      \"fma_peak_gflops_1thread\": " + Fmt("%.1f", peak) + ",\n";
    }
    // Microkernel alone on one L1/L2-resident MR x NR tile with K = 256 (packed A and B).
    {
      const int64_t k = 256;
      std::vector<float> a = Random(t.mr * k, 1), b = Random(k * t.nr, 2), c(t.mr * t.nr);
      kernels::internal::Epilogue ep;
      auto fn = [&] {
        for (int r = 0; r < 16; ++r) t.gemm_micro(k, a.data(), b.data(), t.nr, c.data(), t.nr, t.mr, t.nr, ep);
      };
      const double s = TimePerCall(fn, min_round) / 16;
      const double gf = 2.0 * t.mr * t.nr * k / s * 1e-9;
      js += "      \"microkernel\": {\"mr\": " + std::to_string(t.mr) + ", \"nr\": " + std::to_string(t.nr) +
            ", \"k\": 256, \"gflops\": " + Fmt("%.1f", gf) +
            (peak > 0 ? ", \"fraction_of_peak\": " + Fmt("%.3f", gf / peak) : std::string()) + "}" +
            (micro_only ? "\n" : ",\n");
    }
    if (micro_only) {
      js += "    }";
      js += ii + 1 < isas.size() ? ",\n" : "\n";
      continue;
    }
    // Whole GEMMs (single call, this pool), incl. the 1x1-conv-like shapes of MobileNetV2.
    js += "      \"gemm\": [";
    const int64_t shapes[][3] = {{96, 784, 256}, {256, 256, 256}, {144, 3136, 24}, {24, 3136, 144},
                                 {320, 49, 960}, {1, 1000, 1280}, {512, 512, 512}};
    for (size_t si = 0; si < std::size(shapes); ++si) {
      const int64_t m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
      std::vector<float> a = Random(m * k, 3), b = Random(k * n, 4), c(m * n);
      auto fn = [&] {
        kernels::Sgemm(false, false, m, n, k, 1.f, a.data(), k, b.data(), n, 0.f, c.data(), n, &pool, isa);
      };
      const double s = TimePerCall(fn, min_round);
      const double gf = 2.0 * m * n * k / s * 1e-9;
      js += std::string(si ? ", " : "") + "\n        {\"m\": " + std::to_string(m) + ", \"n\": " +
            std::to_string(n) + ", \"k\": " + std::to_string(k) + ", \"ms\": " + Fmt("%.4f", s * 1e3) +
            ", \"gflops\": " + Fmt("%.1f", gf) +
            (peak > 0 ? ", \"fraction_of_peak\": " + Fmt("%.3f", gf / (peak * threads)) : std::string()) + "}";
    }
    js += "\n      ],\n";
    // MobileNetV2 convolution layers (batch 1).
    struct Layer {
      const char* name;
      int64_t c, h, w, m, k, s, group, pt, pl, pb, pr;
      bool relu6;
    };
    const Layer layers[] = {
        {"conv0 3x3/2 3->32 224", 3, 224, 224, 32, 3, 2, 1, 0, 0, 1, 1, true},
        {"dw 3x3/1 144 56x56", 144, 56, 56, 144, 3, 1, 144, 1, 1, 1, 1, true},
        {"dw 3x3/2 144 56x56", 144, 56, 56, 144, 3, 2, 144, 0, 0, 1, 1, true},
        {"dw 3x3/1 32 112x112", 32, 112, 112, 32, 3, 1, 32, 1, 1, 1, 1, true},
        {"dw 3x3/2 96 112x112", 96, 112, 112, 96, 3, 2, 96, 0, 0, 1, 1, true},
        {"dw 3x3/1 384 14x14", 384, 14, 14, 384, 3, 1, 384, 1, 1, 1, 1, true},
        {"dw 3x3/2 576 14x14", 576, 14, 14, 576, 3, 2, 576, 0, 0, 1, 1, true},
        {"dw 3x3/1 960 7x7", 960, 7, 7, 960, 3, 1, 960, 1, 1, 1, 1, true},
        {"pw 96->24 56x56", 96, 56, 56, 24, 1, 1, 1, 0, 0, 0, 0, false},
        {"pw 24->144 56x56", 24, 56, 56, 144, 1, 1, 1, 0, 0, 0, 0, true},
        {"pw 32->192 28x28", 32, 28, 28, 192, 1, 1, 1, 0, 0, 0, 0, true},
        {"pw 384->64 14x14", 384, 14, 14, 64, 1, 1, 1, 0, 0, 0, 0, false},
        {"pw 960->160 7x7", 960, 7, 7, 160, 1, 1, 1, 0, 0, 0, 0, false},
        {"pw 320->1280 7x7", 320, 7, 7, 1280, 1, 1, 1, 0, 0, 0, 0, true},
    };
    js += "      \"conv\": [";
    for (size_t li = 0; li < std::size(layers); ++li) {
      const Layer& L = layers[li];
      kernels::Conv2DShape sh;
      sh.in_channels = L.c;
      sh.in_h = L.h;
      sh.in_w = L.w;
      sh.out_channels = L.m;
      sh.kernel_h = sh.kernel_w = L.k;
      sh.stride_h = sh.stride_w = L.s;
      sh.group = L.group;
      sh.pad_top = L.pt;
      sh.pad_left = L.pl;
      sh.pad_bottom = L.pb;
      sh.pad_right = L.pr;
      std::vector<float> w = Random(L.m * (L.c / L.group) * L.k * L.k, 5), bias = Random(L.m, 6);
      std::vector<float> x = Random(L.c * L.h * L.w, 7), y(L.m * sh.out_h() * sh.out_w());
      kernels::Activation act;
      if (L.relu6) act = kernels::Activation{0.f, 6.f};
      auto conv = kernels::Conv2D::Create(sh, w.data(), bias.data(), act, isa);
      if (!conv.ok()) {
        std::fprintf(stderr, "%s\n", conv.status().ToString().c_str());
        return 1;
      }
      auto fn = [&] { (*conv)->Run(x.data(), y.data(), 1, L.h, L.w, &pool); };
      const double s = TimePerCall(fn, min_round);
      const double macs = static_cast<double>(L.m) * (L.c / L.group) * L.k * L.k * sh.out_h() * sh.out_w();
      js += std::string(li ? ", " : "") + "\n        {\"layer\": \"" + L.name + "\", \"algorithm\": \"" +
            (*conv)->algorithm() + "\", \"us\": " + Fmt("%.1f", s * 1e6) + ", \"gflops\": " +
            Fmt("%.1f", 2.0 * macs / s * 1e-9) + "}";
    }
    js += "\n      ],\n";
    // All 53 MobileNetV2 convolutions back to back (batch 1): the kernel share of a model run.
    {
      double total_s = 0.0, dw_s = 0.0, pw_s = 0.0, other_s = 0.0, macs = 0.0;
      std::string per_layer;
      for (const MbLayer& L : kMobileNetV2) {
        kernels::Conv2DShape sh;
        sh.in_channels = L.c;
        sh.in_h = L.h;
        sh.in_w = L.w;
        sh.out_channels = L.m;
        sh.kernel_h = sh.kernel_w = L.k;
        sh.stride_h = sh.stride_w = L.s;
        sh.group = L.group;
        sh.pad_top = L.pt;
        sh.pad_left = L.pl;
        sh.pad_bottom = L.pb;
        sh.pad_right = L.pr;
        std::vector<float> w = Random(L.m * (L.c / L.group) * L.k * L.k, 5), bias = Random(L.m, 6);
        std::vector<float> x = Random(L.c * L.h * L.w, 7), y(L.m * sh.out_h() * sh.out_w());
        auto conv = kernels::Conv2D::Create(sh, w.data(), bias.data(), kernels::Activation{0.f, 6.f}, isa);
        if (!conv.ok()) return 1;
        const double s = TimePerCall([&] { (*conv)->Run(x.data(), y.data(), 1, L.h, L.w, &pool); },
                                     min_round);
        total_s += s;
        per_layer += std::string(per_layer.empty() ? "" : ", ") + Fmt("%.1f", s * 1e6);
        const std::string alg = (*conv)->algorithm();
        (alg == "depthwise" ? dw_s : alg == "gemm1x1" ? pw_s : other_s) += s;
        macs += static_cast<double>(L.m) * (L.c / L.group) * L.k * L.k * sh.out_h() * sh.out_w();
      }
      js += "      \"mobilenetv2_convs\": {\"layers\": 53, \"macs\": " + Fmt("%.0f", macs) +
            ", \"total_ms\": " + Fmt("%.3f", total_s * 1e3) + ", \"depthwise_ms\": " +
            Fmt("%.3f", dw_s * 1e3) + ", \"gemm1x1_ms\": " + Fmt("%.3f", pw_s * 1e3) +
            ", \"im2col_ms\": " + Fmt("%.3f", other_s * 1e3) + ", \"gflops\": " +
            Fmt("%.1f", 2.0 * macs / total_s * 1e-9) + ",\n        \"per_layer_us\": [" + per_layer +
            "]}\n    }";
    }
    js += ii + 1 < isas.size() ? ",\n" : "\n";
  }
  js += "  }\n}\n";
  std::fputs(js.c_str(), stdout);
  return 0;
}
