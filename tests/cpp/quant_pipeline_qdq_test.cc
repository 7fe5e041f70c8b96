// The quantization pipeline on a small hand-built model: Q/DQ placement rules, shared scales, int32
// bias scales, min-max ranges against hand-computed values, and the fake-quant simulation against
// onnxq's executor running the exported QDQ model (two independent code paths: the simulation's
// hook vs the QuantizeLinear/DequantizeLinear kernels).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "onnxq/onnx/model_io.h"
#include "onnxq/quant/qdq_plan.h"
#include "onnxq/quant/quantize_model.h"
#include "onnxq/runtime/session.h"
#include "passes_test_util.h"

namespace onnxq::quant {
namespace {

using passes::ptest::Builder;
using passes::ptest::CountOps;

// x[N,3,8,8] -> Conv(3x3) -> Clip(0,6) -> Conv(1x1) -> Add(., clip) -> GlobalAveragePool
//   -> Flatten -> Gemm -> logits
Model TestModel(int64_t opset = 13) {
  Model m = passes::ptest::EmptyModel(opset);
  Builder b(m);
  ValueId x = b.Input("x", {2, 3, 8, 8});
  NodeId c1 = b.Node("Conv", "conv1", {x, b.RandConst("w1", {4, 3, 3, 3}, 1), b.RandConst("b1", {4}, 2)},
                     1, {{2, 4, 8, 8}});
  b[c1].attrs.Set(Attribute::Ints("pads", {1, 1, 1, 1}));
  NodeId clip = b.Node("Clip", "relu6", {b.Out(c1), b.Const("lo", {}, {0.f}), b.Const("hi", {}, {6.f})},
                       1, {{2, 4, 8, 8}});
  NodeId c2 = b.Node("Conv", "conv2", {b.Out(clip), b.RandConst("w2", {4, 4, 1, 1}, 3), b.RandConst("b2", {4}, 4)},
                     1, {{2, 4, 8, 8}});
  NodeId add = b.Node("Add", "add", {b.Out(c2), b.Out(clip)}, 1, {{2, 4, 8, 8}});
  NodeId gap = b.Node("GlobalAveragePool", "gap", {b.Out(add)}, 1, {{2, 4, 1, 1}});
  NodeId flat = b.Node("Flatten", "flatten", {b.Out(gap)}, 1, {{2, 4}});
  NodeId gemm = b.Node("Gemm", "fc", {b.Out(flat), b.RandConst("wf", {4, 5}, 5), b.RandConst("bf", {5}, 6)},
                       1, {{2, 5}});
  b.Output(b.Out(gemm));
  return m;
}

std::vector<Tensor> Samples(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::vector<Tensor> out;
  for (int i = 0; i < n; ++i) {
    Tensor t = Tensor::Float({3, 8, 8});
    for (int64_t k = 0; k < t.numel(); ++k) t.mutable_data<float>()[k] = d(rng) * (i == 0 ? 1.5f : 1.f);
    out.push_back(std::move(t));
  }
  return out;
}

QuantizeConfig MinMaxConfig() {
  QuantizeConfig c;
  c.calibrator = "minmax";
  c.bias_correction = Toggle::kOff;
  c.threads = 1;
  c.batch_size = 2;
  return c;
}

const Value* FindByName(const Graph& g, const std::string& name) {
  ValueId v = g.FindValue(name);
  return v == kNoValue ? nullptr : &g.value(v);
}

TEST(QuantPipeline, PlanPlacesQdqOnQuantizedInputsOnly) {
  Model m = TestModel();
  QuantizeConfig cfg = MinMaxConfig();
  auto prep = PrepareModel(m, cfg);
  ASSERT_TRUE(prep.ok()) << prep.status().ToString();
  const Graph& g = prep->optimized.graph;
  const QdqPlan& plan = prep->plan;
  auto in_plan = [&](const std::string& name) { return plan.group_of.count(g.FindValue(name)) > 0; };
  EXPECT_TRUE(in_plan("x"));
  EXPECT_TRUE(in_plan("relu6_out"));
  EXPECT_FALSE(in_plan("conv1_out")) << "no Q/DQ between a Conv and its fused Clip";
  EXPECT_TRUE(in_plan("conv2_out"));
  EXPECT_TRUE(in_plan("add_out"));
  EXPECT_TRUE(in_plan("gap_out"));
  EXPECT_TRUE(in_plan("flatten_out"));
  EXPECT_FALSE(in_plan("fc_out")) << "outputs that feed no quantized op stay float";
  // Flatten is pass-through: its input and output share one group.
  EXPECT_EQ(plan.group_of.at(g.FindValue("gap_out")), plan.group_of.at(g.FindValue("flatten_out")));
  EXPECT_NE(plan.group_of.at(g.FindValue("add_out")), plan.group_of.at(g.FindValue("gap_out")));
  EXPECT_EQ(plan.weighted.size(), 3u);
  // Gemm weight [K=4, N=5] without transB: per-channel along axis 1.
  for (const auto& w : plan.weighted)
    if (g.node(w.node).op_type == "Gemm") {
      EXPECT_EQ(w.axis, 1);
    }
}

TEST(QuantPipeline, ExportMatchesSimulationAndHandComputedParams) {
  Model m = TestModel();
  std::vector<Tensor> samples = Samples(6, 7);
  float xmin = 1e30f, xmax = -1e30f;
  for (const Tensor& t : samples)
    for (float v : t.span<float>()) xmin = std::min(xmin, v), xmax = std::max(xmax, v);
  auto src = TensorSource(samples);
  auto r = Quantize(m, *src, MinMaxConfig());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const Graph& q = r->quantized.graph;
  ASSERT_TRUE(q.Verify().ok());
  EXPECT_EQ(CountOps(q, "QuantizeLinear"), 6);        // x, relu6, conv2, add, gap, flatten
  EXPECT_EQ(CountOps(q, "DequantizeLinear"), 6 + 3 + 3);  // + weights + biases
  EXPECT_EQ(CountOps(q, "Conv"), 2);

  // Input range: min-max of the data, uint8 asymmetric: scale = (max - min) / 255,
  // zero point = round(-min / scale).
  const Value* xs = FindByName(q, "x_scale");
  const Value* xz = FindByName(q, "x_zero_point");
  ASSERT_TRUE(xs && xz);
  const float want_scale = (xmax - xmin) / 255.0f;
  EXPECT_NEAR(xs->initializer()->data<float>()[0], want_scale, 1e-6f * want_scale + 1e-9f);
  EXPECT_EQ(xz->initializer()->dtype(), DataType::kUint8);
  EXPECT_EQ(static_cast<int>(xz->initializer()->data<uint8_t>()[0]),
            static_cast<int>(std::lround(-xmin / want_scale)));

  // Weights int8 with per-channel scales, biases int32 with scale = input scale x weight scale.
  const Value* w1 = FindByName(q, "w1_quantized");
  const Value* w1s = FindByName(q, "w1_scale");
  const Value* b1 = FindByName(q, "b1_quantized");
  const Value* b1s = FindByName(q, "b1_scale");
  ASSERT_TRUE(w1 && w1s && b1 && b1s);
  EXPECT_EQ(w1->initializer()->dtype(), DataType::kInt8);
  EXPECT_EQ(w1s->initializer()->numel(), 4);
  EXPECT_EQ(b1->initializer()->dtype(), DataType::kInt32);
  const float in_scale = xs->initializer()->data<float>()[0];
  for (int c = 0; c < 4; ++c)
    EXPECT_EQ(b1s->initializer()->data<float>()[c], in_scale * w1s->initializer()->data<float>()[c]);
  // The float weights are gone from the QDQ model.
  EXPECT_EQ(FindByName(q, "w1"), nullptr);
  // The Clip output range stays inside [0, 6] so ONNX Runtime may drop the Clip.
  const Value* rs = FindByName(q, "relu6_out_scale");
  const Value* rz = FindByName(q, "relu6_out_zero_point");
  ASSERT_TRUE(rs && rz);
  EXPECT_EQ(rz->initializer()->data<uint8_t>()[0], 0);
  EXPECT_LE(255.0 * rs->initializer()->data<float>()[0], 6.0);

  // Simulation (dequantized weights + fake-quant hook) vs the executor on the QDQ model.
  auto sim_model = BuildSimulationModel(r->optimized, r->plan);
  ASSERT_TRUE(sim_model.ok()) << sim_model.status().ToString();
  auto ss = Session::Create(*sim_model, {1, std::nullopt});
  auto qs = Session::Create(r->quantized, {1, std::nullopt});
  auto fs = Session::Create(m, {1, std::nullopt});
  ASSERT_TRUE(ss.ok() && qs.ok() && fs.ok());
  Tensor batch = *src->Batch(0, 2);
  std::map<std::string, Tensor> feeds{{"x", batch}};
  auto qout = (*qs)->Run(feeds);
  auto fout = (*fs)->Run(feeds);
  ASSERT_TRUE(qout.ok()) << qout.status().ToString();
  ASSERT_TRUE(fout.ok());
  std::map<std::string, Tensor> sfeeds = feeds;
  ASSERT_TRUE(FakeQuantizeFeeds(r->plan, r->optimized.graph, sfeeds).ok());
  RunOptions ro;
  ro.hooked_values = SimulatedValues(r->plan);
  const QdqPlan& plan = r->plan;
  ro.hook = [&](ValueId v, const std::string&, Tensor& t) { return FakeQuantizeTensor(plan, v, t); };
  auto sout = (*ss)->Run(sfeeds, ro);
  ASSERT_TRUE(sout.ok()) << sout.status().ToString();
  const Tensor& a = qout->at("fc_out");
  const Tensor& s = sout->at("fc_out");
  const Tensor& f = fout->at("fc_out");
  ASSERT_EQ(a.numel(), 10);
  double sig = 0, err = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    EXPECT_NEAR(a.data<float>()[i], s.data<float>()[i], 1e-5f) << "element " << i;
    sig += double(f.data<float>()[i]) * f.data<float>()[i];
    err += std::pow(double(f.data<float>()[i]) - a.data<float>()[i], 2);
  }
  // Quantized, but still close to the float model.
  EXPECT_GT(10 * std::log10(sig / err), 20.0);
  EXPECT_NE(r->report_json.find("\"sqnr_db\""), std::string::npos);
}

TEST(QuantPipeline, ExcludeByOpTypeLeavesNodeInFloat) {
  Model m = TestModel();
  QuantizeConfig cfg = MinMaxConfig();
  cfg.exclude = {"Gemm", "conv2"};
  auto src = TensorSource(Samples(2, 3));
  auto r = Quantize(m, *src, cfg);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const Graph& q = r->quantized.graph;
  EXPECT_NE(FindByName(q, "wf"), nullptr) << "the excluded Gemm keeps its float weight";
  EXPECT_NE(FindByName(q, "w2"), nullptr) << "the excluded conv2 keeps its float weight";
  EXPECT_EQ(FindByName(q, "wf_quantized"), nullptr);
  EXPECT_NE(FindByName(q, "w1_quantized"), nullptr);
  EXPECT_EQ(FindByName(q, "flatten_out_scale"), nullptr) << "nothing quantized consumes Flatten's output";
}

TEST(QuantPipeline, BiasCorrectionKeepsModelValid) {
  Model m = TestModel();
  QuantizeConfig cfg = MinMaxConfig();
  cfg.bias_correction = Toggle::kOn;
  cfg.per_channel = false;
  cfg.weight_bits = 4;  // large weight error, so the correction has something to do
  auto src = TensorSource(Samples(4, 11));
  auto r = Quantize(m, *src, cfg);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_NE(r->report_json.find("\"bias_corrected_layers\":3"), std::string::npos) << r->report_json.substr(0, 400);
  // 4-bit weights live in int8 containers restricted to [-7, 7].
  const Value* w1 = FindByName(r->quantized.graph, "w1_quantized");
  ASSERT_NE(w1, nullptr);
  for (int8_t v : w1->initializer()->span<int8_t>()) {
    EXPECT_GE(v, -7);
    EXPECT_LE(v, 7);
  }
}

TEST(QuantPipeline, OldOpsetIsUpgradedOrRefused) {
  // Opset 12: the pipeline's upgrade-opset pass carries it to 13, the first opset with
  // per-channel DequantizeLinear; the result is the same model's QDQ file.
  auto src = TensorSource(Samples(2, 1));
  auto r12 = Quantize(TestModel(12), *src, MinMaxConfig());
  ASSERT_TRUE(r12.ok()) << r12.status().ToString();
  EXPECT_EQ(r12->quantized.OpsetVersion(""), 13);
  auto r13 = Quantize(TestModel(), *src, MinMaxConfig());
  ASSERT_TRUE(r13.ok()) << r13.status().ToString();
  EXPECT_EQ(r12->quantized.graph.num_nodes(), r13->quantized.graph.num_nodes());
  // Opset 6 is not upgraded (legacy broadcasting): refused with a message naming the opset.
  auto r6 = Quantize(TestModel(6), *src, MinMaxConfig());
  ASSERT_FALSE(r6.ok());
  EXPECT_NE(r6.status().message().find("opset"), std::string::npos) << r6.status().ToString();
}

TEST(QuantPipeline, Errors) {
  auto empty = TensorSource({});
  auto e = Quantize(TestModel(), *empty, MinMaxConfig());
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("empty"), std::string::npos) << e.status().ToString();

  QuantizeConfig bad = MinMaxConfig();
  bad.calibrator = "magic";
  EXPECT_FALSE(bad.Validate().ok());
  bad = MinMaxConfig();
  bad.weight_bits = 9;
  EXPECT_FALSE(bad.Validate().ok());

  // A NaN in the calibration data is an error naming the sample.
  std::vector<Tensor> s = Samples(2, 5);
  s[1].mutable_data<float>()[3] = NAN;
  auto nan_src = TensorSource(s);
  auto n = Quantize(TestModel(), *nan_src, MinMaxConfig());
  ASSERT_FALSE(n.ok());
  EXPECT_NE(n.status().message().find("non-finite"), std::string::npos) << n.status().ToString();
}

}  // namespace
}  // namespace onnxq::quant
