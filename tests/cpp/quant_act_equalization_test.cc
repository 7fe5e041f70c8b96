// Activation-channel equalization (src/quant/act_equalization.cc): the rewrite is exact in float,
// only eligible groups are touched, and skipped ones say why.
#include <gtest/gtest.h>

#include <cmath>

#include "onnxq/quant/act_equalization.h"
#include "onnxq/quant/quantize_model.h"
#include "onnxq/runtime/session.h"
#include "passes_test_util.h"

namespace onnxq::quant {
namespace {

using passes::ptest::Builder;
using passes::ptest::EmptyModel;
using passes::ptest::RandomFloats;

constexpr int64_t kC = 8;
// Per-output-channel factors of the linear convs: channel ranges differ ~64x.
const std::vector<float> kRowScale = {8.f, 0.25f, 1.f, 0.5f, 2.f, 0.125f, 1.5f, 0.75f};

// rows: per-output-channel factors; cols: per-input-channel divisors (1x1 only).
ValueId Conv(Builder& b, const std::string& name, ValueId in, int64_t cin, int64_t cout, int64_t k,
             uint32_t seed, const std::vector<float>* rows = nullptr, std::vector<int64_t> out = {},
             const std::vector<float>* cols = nullptr) {
  std::vector<float> w = RandomFloats(static_cast<size_t>(cout * cin * k * k), seed);
  if (rows)
    for (int64_t o = 0; o < cout; ++o)
      for (int64_t i = 0; i < cin * k * k; ++i) w[static_cast<size_t>(o * cin * k * k + i)] *= (*rows)[static_cast<size_t>(o)];
  if (cols)
    for (int64_t o = 0; o < cout; ++o)
      for (int64_t i = 0; i < cin; ++i) w[static_cast<size_t>(o * cin + i)] /= (*cols)[static_cast<size_t>(i)];
  std::vector<float> bias = RandomFloats(static_cast<size_t>(cout), seed + 100, -0.1f, 0.1f);
  if (rows)
    for (int64_t o = 0; o < cout; ++o) bias[static_cast<size_t>(o)] *= (*rows)[static_cast<size_t>(o)];
  ValueId wv = b.Const(name + "_w", {cout, cin, k, k}, w);
  ValueId bv = b.Const(name + "_b", {cout}, bias);
  if (out.empty()) out = {1, cout, 6, 6};
  NodeId n = b.Node("Conv", name, {in, wv, bv}, 1, {out});
  if (k > 1) b[n].attrs.Set(Attribute::Ints("pads", {k / 2, k / 2, k / 2, k / 2}));
  return b.Out(n);
}

// x -> conv(3x3) -> ReLU6 -> {convP, convQ} (linear, uneven channels) -> Add -> convC (-> `tail`).
// tail: "out" (convC's output is the graph output), "relu6" (Add -> Clip -> convC),
// "sigmoid" (Add also feeds a Sigmoid), "graph_output" (the Add output is a graph output too).
Model ResidualModel(const std::string& tail) {
  Model m = EmptyModel();
  Builder b(m);
  ValueId x = b.Input("x", {1, 3, 6, 6});
  ValueId a = Conv(b, "c0", x, 3, kC, 3, 1);
  // ReLU6 (not homogeneous): only the linear group below is eligible.
  ValueId ar = b.Out(b.Node("Clip", "relu0", {a, b.Const("lo0", {}, {0.f}), b.Const("hi0", {}, {6.f})}, 1,
                            {{1, kC, 6, 6}}));
  ValueId p = Conv(b, "convP", ar, kC, kC, 1, 2, &kRowScale);
  ValueId q = Conv(b, "convQ", ar, kC, kC, 1, 3, &kRowScale);
  ValueId r = b.Out(b.Node("Add", "add", {p, q}, 1, {{1, kC, 6, 6}}));
  ValueId cin = r;
  if (tail == "relu6") {
    NodeId clip = b.Node("Clip", "relu6", {r, b.Const("lo", {}, {0.f}), b.Const("hi", {}, {6.f})}, 1, {{1, kC, 6, 6}});
    cin = b.Out(clip);
  }
  if (tail == "sigmoid") b.Output(b.Out(b.Node("Sigmoid", "sig", {r}, 1, {{1, kC, 6, 6}})));
  if (tail == "graph_output") b.Output(r);
  // convC weighs every channel's content alike (small channels carry big weights).
  ValueId y = Conv(b, "convC", cin, kC, 4, 1, 4, nullptr, {1, 4, 6, 6}, &kRowScale);
  b.Output(y);
  return m;
}

std::vector<Tensor> Samples(int n, uint32_t seed) {
  std::vector<Tensor> s;
  for (int i = 0; i < n; ++i)
    s.push_back(Tensor::Float({3, 6, 6}, RandomFloats(3 * 36, seed + static_cast<uint32_t>(i))));
  return s;
}

Tensor RunModel(const Model& m, const Tensor& x) {
  auto s = Session::Create(m);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  auto out = (*s)->Run({{"x", x}});
  EXPECT_TRUE(out.ok()) << out.status().ToString();
  return out->begin()->second;
}

const Tensor& Weight(const Model& m, const std::string& name) {
  return *m.graph.value(m.graph.FindValue(name)).initializer();
}

TEST(QuantActEqualization, ResidualGroupIsExactInFloat) {
  Model m = ResidualModel("out");
  Model orig = m;
  auto src = TensorSource(Samples(6, 10));
  ActEqualizationOptions o;
  o.samples = 4;
  auto r = EqualizeActivations(m, *src, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  // One eligible group {convP out, convQ out, add out}; convC's output (graph output) is skipped.
  const ActEqualizationGroup* grp = nullptr;
  int skipped_output = 0;
  for (const auto& g : r->groups) {
    if (g.applied) grp = &g;
    if (!g.applied && g.skip_reason.find("graph output") != std::string::npos) ++skipped_output;
  }
  ASSERT_NE(grp, nullptr) << r->ToJson(m.graph);
  EXPECT_EQ(grp->members.size(), 3u);
  EXPECT_EQ(grp->producers.size(), 2u);
  EXPECT_EQ(grp->consumers.size(), 1u);
  EXPECT_EQ(skipped_output, 1);
  EXPECT_EQ(r->samples, 4);
  // Channel 0 (x8) has the largest range: unscaled; channel 5 (x0.125) hits the cap.
  EXPECT_EQ(grp->scale[0], 1.0);
  EXPECT_EQ(grp->scale[5], 16.0);
  for (double s : grp->scale) EXPECT_GE(s, 1.0);
  // The producer's channel 5 weights were multiplied by the scale, convC's column 5 divided.
  EXPECT_NEAR(Weight(m, "convP_w").data<float>()[5 * kC], Weight(orig, "convP_w").data<float>()[5 * kC] * 16.f, 1e-6);
  EXPECT_NEAR(Weight(m, "convC_w").data<float>()[5], Weight(orig, "convC_w").data<float>()[5] / 16.f, 1e-6);
  // Same function on fresh inputs.
  for (const Tensor& s : Samples(3, 99)) {
    Tensor x = Tensor::Float({1, 3, 6, 6}, s.span<float>());
    Tensor y0 = RunModel(orig, x), y1 = RunModel(m, x);
    ASSERT_EQ(y0.numel(), y1.numel());
    for (int64_t i = 0; i < y0.numel(); ++i)
      EXPECT_NEAR(y1.data<float>()[i], y0.data<float>()[i], 1e-4 * (1 + std::fabs(y0.data<float>()[i])));
  }
}

TEST(QuantActEqualization, SkippedGroupsAreUnchangedWithAReason) {
  for (const std::string tail : {"relu6", "sigmoid", "graph_output"}) {
    SCOPED_TRACE(tail);
    Model m = ResidualModel(tail);
    Model orig = m;
    auto src = TensorSource(Samples(4, 10));
    auto r = EqualizeActivations(m, *src, ActEqualizationOptions{});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    std::string reason;
    for (const auto& g : r->groups) {
      EXPECT_FALSE(g.applied) << r->ToJson(m.graph);
      for (ValueId v : g.members)
        if (m.graph.value(v).name() == "add_out") reason = g.skip_reason;
    }
    const char* want = tail == "relu6" ? "Clip" : (tail == "sigmoid" ? "Sigmoid" : "graph output");
    EXPECT_NE(reason.find(want), std::string::npos) << reason;
    for (const char* w : {"convP_w", "convQ_w", "convC_w", "convP_b"}) {
      const Tensor &a = Weight(m, w), &b = Weight(orig, w);
      for (int64_t i = 0; i < a.numel(); ++i) ASSERT_EQ(a.data<float>()[i], b.data<float>()[i]) << w;
    }
    EXPECT_NE(r->ToJson(m.graph).find("\"skipped\""), std::string::npos);
  }
}

TEST(QuantActEqualization, QuantizeReportsGroupsAndLowersError) {
  Model m = ResidualModel("out");
  auto calib = Samples(16, 10);
  auto err = [&](Toggle t) {
    QuantizeConfig cfg;
    cfg.calibrator = "minmax";
    cfg.act_equalization = t;
    cfg.threads = 1;
    auto src = TensorSource(calib);
    auto r = Quantize(m, *src, cfg);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return 0.0;
    EXPECT_EQ(r->report_json.find("\"act_equalization\":null") == std::string::npos, t == Toggle::kOn);
    SessionOptions so;
    so.integer_qdq = false;
    auto qs = Session::Create(r->quantized, so);
    EXPECT_TRUE(qs.ok());
    double e = 0, sig = 0;
    for (const Tensor& s : Samples(8, 500)) {
      Tensor x = Tensor::Float({1, 3, 6, 6}, s.span<float>());
      Tensor y0 = RunModel(m, x);
      auto yq = (*qs)->Run({{"x", x}});
      EXPECT_TRUE(yq.ok());
      const Tensor& y1 = yq->begin()->second;
      for (int64_t i = 0; i < y0.numel(); ++i) {
        const double d = double(y1.data<float>()[i]) - y0.data<float>()[i];
        e += d * d;
        sig += double(y0.data<float>()[i]) * y0.data<float>()[i];
      }
    }
    return e / sig;
  };
  const double off = err(Toggle::kOff), on = err(Toggle::kOn);
  EXPECT_LT(on, off / 4) << "relative MSE with equalization " << on << ", without " << off;
  EXPECT_EQ(err(Toggle::kAuto), off);  // auto = off (docs/quantization.md)
}

TEST(QuantActEqualization, ConfigChecks) {
  QuantizeConfig c;
  c.act_equalization = Toggle::kOn;
  c.stats_path = "x.stats";
  EXPECT_FALSE(c.Validate().ok());
  QuantizeConfig d;
  d.act_equalization_max_scale = 0.5;
  EXPECT_FALSE(d.Validate().ok());
}

}  // namespace
}  // namespace onnxq::quant
