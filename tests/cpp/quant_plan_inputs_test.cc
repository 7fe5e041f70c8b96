// PlanOptions::quantize_graph_inputs = false: the graph input carries no Q/DQ, the Conv reading it
// keeps int8 weights but a float bias (there is no input scale for an int32 bias), and the
// exported QDQ model computes exactly what the fake-quant simulation computes (two independent
// paths: the simulation's hook vs the QuantizeLinear/DequantizeLinear kernels).
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "onnxq/quant/qdq_plan.h"
#include "onnxq/runtime/session.h"
#include "passes_test_util.h"

namespace onnxq::quant {
namespace {

using passes::ptest::Builder;
using passes::ptest::CountOps;

// x[2,3,8,8] -> Conv(3x3) -> Clip(0,6) -> Conv(1x1) -> y
Model SmallModel() {
  Model m = passes::ptest::EmptyModel(13);
  Builder b(m);
  ValueId x = b.Input("x", {2, 3, 8, 8});
  NodeId c1 = b.Node("Conv", "conv1", {x, b.RandConst("w1", {4, 3, 3, 3}, 1), b.RandConst("b1", {4}, 2)},
                     1, {{2, 4, 8, 8}});
  b[c1].attrs.Set(Attribute::Ints("pads", {1, 1, 1, 1}));
  NodeId clip = b.Node("Clip", "relu6", {b.Out(c1), b.Const("lo", {}, {0.f}), b.Const("hi", {}, {6.f})},
                       1, {{2, 4, 8, 8}});
  NodeId c2 = b.Node("Conv", "conv2", {b.Out(clip), b.RandConst("w2", {4, 4, 1, 1}, 3), b.RandConst("b2", {4}, 4)},
                     1, {{2, 4, 8, 8}});
  b.Output(b.Out(c2));
  return m;
}

TEST(QuantPlanInputs, FloatGraphInputKeepsFloatBiasAndExportMatchesSimulation) {
  Model m = SmallModel();
  const Graph& g = m.graph;
  PlanOptions po;
  po.quantize_graph_inputs = false;
  auto plan_or = BuildQdqPlan(m, po);
  ASSERT_TRUE(plan_or.ok()) << plan_or.status().ToString();
  QdqPlan plan = std::move(plan_or).value();
  EXPECT_EQ(plan.group_of.count(g.FindValue("x")), 0u);
  ASSERT_EQ(plan.groups.size(), 1u);  // only the Clip output, read by conv2
  EXPECT_EQ(plan.group_of.count(g.FindValue("relu6_out")), 1u);
  bool noted = false;
  for (const auto& n : plan.notes) noted = noted || n.find("graph input 'x'") != std::string::npos;
  EXPECT_TRUE(noted);
  // The default still quantizes the input.
  auto plan_q = BuildQdqPlan(m, PlanOptions{});
  ASSERT_TRUE(plan_q.ok());
  EXPECT_EQ(plan_q->group_of.count(g.FindValue("x")), 1u);

  auto p = ComputeQuantParams(0.0, 6.0, QuantSpec{8, false, false, false});
  ASSERT_TRUE(p.ok());
  plan.groups[0].params = FitIntoBounds(*p, plan.groups[0].bound_lo, plan.groups[0].bound_hi);
  plan.groups[0].has_params = true;
  ASSERT_TRUE(QuantizeWeights(m, plan, WeightOptions{}).ok());
  ASSERT_TRUE(QuantizeBiases(m, plan).ok());
  ASSERT_EQ(plan.weighted.size(), 2u);
  for (const auto& w : plan.weighted) {
    const std::string name = g.node(w.node).name;
    EXPECT_EQ(w.has_qbias, name == "conv2") << name;
  }

  auto q = ExportQdqModel(m, plan);
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  const Graph& qg = q->graph;
  EXPECT_EQ(CountOps(qg, "QuantizeLinear"), 1);
  EXPECT_EQ(CountOps(qg, "DequantizeLinear"), 1 + 2 + 1);  // activation + 2 weights + conv2's bias
  for (NodeId id : qg.order()) {
    const Node& n = qg.node(id);
    if (n.name != "conv1") continue;
    EXPECT_EQ(qg.value(n.input(0)).name(), "x");
    EXPECT_TRUE(qg.value(n.input(2)).is_initializer()) << "float bias";
    EXPECT_EQ(qg.value(n.input(2)).initializer()->dtype(), DataType::kFloat);
  }

  // Export (Q/DQ in float) vs simulation (dequantized weights + hook).
  auto sim = BuildSimulationModel(m, plan);
  ASSERT_TRUE(sim.ok()) << sim.status().ToString();
  SessionOptions so;
  so.num_threads = 1;
  so.integer_qdq = false;
  auto qs = Session::Create(*q, so);
  auto ss = Session::Create(*sim, so);
  ASSERT_TRUE(qs.ok() && ss.ok());
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  Tensor x = Tensor::Float({2, 3, 8, 8});
  for (int64_t k = 0; k < x.numel(); ++k) x.mutable_data<float>()[k] = d(rng);
  std::map<std::string, Tensor> feeds{{"x", x}};
  std::map<std::string, Tensor> sfeeds = feeds;
  ASSERT_TRUE(FakeQuantizeFeeds(plan, g, sfeeds).ok());
  EXPECT_EQ(std::memcmp(sfeeds.at("x").raw(), x.raw(), x.nbytes()), 0) << "the input is not fake-quantized";
  RunOptions ro;
  ro.hooked_values = SimulatedValues(plan);
  ro.hook = [&](ValueId v, const std::string&, Tensor& t) { return FakeQuantizeTensor(plan, v, t); };
  auto qo = (*qs)->Run(feeds);
  auto so_out = (*ss)->Run(sfeeds, ro);
  ASSERT_TRUE(qo.ok() && so_out.ok());
  const Tensor& a = qo->begin()->second;
  const Tensor& s = so_out->begin()->second;
  ASSERT_EQ(a.numel(), s.numel());
  for (int64_t i = 0; i < a.numel(); ++i) EXPECT_NEAR(a.data<float>()[i], s.data<float>()[i], 1e-5f) << i;
}

}  // namespace
}  // namespace onnxq::quant
