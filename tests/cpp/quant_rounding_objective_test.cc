// The asymmetric rounding objective end to end on a small model: the Gram matrices that
// QuantizeWeightsSequential collects for each layer equal H = X_q X_q^T and C = X_q X^T computed
// independently (X from the float model, X_q from a copy of the model whose first conv has the
// sequentially chosen dequantized weights and whose activations are fake-quantized by the
// simulation hook), and the rounding lowers the layers' output error against nearest.
#include <gtest/gtest.h>

#include <Eigen/Core>
#include <cmath>
#include <random>

#include "onnxq/quant/qdq_plan.h"
#include "onnxq/quant/quantize_model.h"
#include "onnxq/quant/rounding.h"
#include "onnxq/runtime/session.h"
#include "passes_test_util.h"

namespace onnxq::quant {
namespace {

using passes::ptest::Builder;

// x[N,3,6,6] -> Conv(3x3, pad 1) -> Clip(0,6) -> Conv(1x1) -> y
Model SmallModel() {
  Model m = passes::ptest::EmptyModel(13);
  Builder b(m);
  ValueId x = b.Input("x", {-1, 3, 6, 6});
  NodeId c1 = b.Node("Conv", "conv1", {x, b.RandConst("w1", {8, 3, 3, 3}, 1), b.RandConst("b1", {8}, 2)},
                     1, {{-1, 8, 6, 6}});
  b[c1].attrs.Set(Attribute::Ints("pads", {1, 1, 1, 1}));
  NodeId clip = b.Node("Clip", "relu6", {b.Out(c1), b.Const("lo", {}, {0.f}), b.Const("hi", {}, {6.f})},
                       1, {{-1, 8, 6, 6}});
  NodeId c2 = b.Node("Conv", "conv2", {b.Out(clip), b.RandConst("w2", {5, 8, 1, 1}, 3), b.RandConst("b2", {5}, 4)},
                     1, {{-1, 5, 6, 6}});
  b.Output(b.Out(c2));
  return m;
}

TEST(QuantRoundingObjective, SequentialStatisticsMatchAnIndependentComputation) {
  Model m = SmallModel();
  const Graph& g = m.graph;
  auto plan_or = BuildQdqPlan(m, PlanOptions{});
  ASSERT_TRUE(plan_or.ok()) << plan_or.status().ToString();
  QdqPlan plan = std::move(plan_or).value();
  ASSERT_EQ(plan.weighted.size(), 2u);
  ASSERT_EQ(plan.groups.size(), 2u);  // the input x and the Clip output
  for (auto& grp : plan.groups) {
    const bool is_x = g.value(grp.members.front()).name() == "x";
    auto p = ComputeQuantParams(is_x ? -1.0 : 0.0, is_x ? 1.0 : 6.0, QuantSpec{8, false, false, false});
    ASSERT_TRUE(p.ok());
    grp.params = FitIntoBounds(*p, grp.bound_lo, grp.bound_hi);
    grp.has_params = true;
  }
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::vector<Tensor> samples;
  for (int i = 0; i < 5; ++i) {
    Tensor t = Tensor::Float({3, 6, 6});
    for (int64_t k = 0; k < t.numel(); ++k) t.mutable_data<float>()[k] = d(rng) + 0.5f * std::sin(0.7f * k);
    samples.push_back(std::move(t));
  }
  auto src = TensorSource(samples);
  HessianOptions ho;
  ho.samples = 5;
  ho.batch_size = 2;  // several batches, the last one short
  ho.threads = 2;
  RoundingOptions ro;
  ro.method = RoundingMethod::kGptq;
  ro.full_grid = true;
  QdqPlan seq_plan = plan;
  WeightOptions wo;
  wo.method = WeightScaleMethod::kMse;
  auto stats = QuantizeWeightsSequential(m, seq_plan, {4, 3}, wo, *src, ho, ro, nullptr);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  ASSERT_EQ(stats->size(), 2u);

  // Independent X and X_q of conv2: float model, and a model with conv1's chosen weights.
  ValueId r6 = g.FindValue("relu6_out");
  ASSERT_NE(r6, kNoValue);
  Model mq = m;
  {
    const QuantizedWeight& qw = seq_plan.weighted[0].qweight;
    Tensor deq = Tensor::Float(qw.q.dims());
    const int64_t per = qw.q.numel() / qw.q.dims()[0];
    for (int64_t i = 0; i < qw.q.numel(); ++i)
      deq.mutable_data<float>()[i] = DequantizeValue(qw.q.data<int8_t>()[i], qw.params[static_cast<size_t>(i / per)]);
    ASSERT_TRUE(mq.graph.SetInitializer(seq_plan.weighted[0].weight, std::move(deq)).ok());
  }
  SessionOptions so;
  so.num_threads = 1;
  auto fs = Session::Create(m, so);
  auto qs = Session::Create(mq, so);
  ASSERT_TRUE(fs.ok() && qs.ok());
  Eigen::MatrixXd H0 = Eigen::MatrixXd::Zero(8, 8), C0 = Eigen::MatrixXd::Zero(8, 8);
  for (const Tensor& smp : samples) {
    Tensor x = smp.Clone();
    Tensor batched = Tensor::Float({1, 3, 6, 6});
    std::copy_n(x.data<float>(), x.numel(), batched.mutable_data<float>());
    Tensor xf, xq;
    RunOptions fo;
    fo.hooked_values = {r6};
    fo.hook = [&](ValueId, const std::string&, Tensor& t) {
      xf = t.Clone();
      return Status::Ok();
    };
    ASSERT_TRUE((*fs)->Run({{"x", batched}}, fo).ok());
    std::map<std::string, Tensor> qfeeds{{"x", batched.Clone()}};
    ASSERT_TRUE(FakeQuantizeFeeds(plan, g, qfeeds).ok());
    RunOptions qo;
    qo.hooked_values = {r6};
    qo.hook = [&](ValueId v, const std::string&, Tensor& t) {
      Status s = FakeQuantizeTensor(plan, v, t);
      xq = t.Clone();
      return s;
    };
    ASSERT_TRUE((*qs)->Run(qfeeds, qo).ok());
    ASSERT_EQ(xf.numel(), 8 * 36);
    for (int p = 0; p < 36; ++p)
      for (int i = 0; i < 8; ++i)
        for (int j = 0; j < 8; ++j) {
          const double a = xq.data<float>()[i * 36 + p];
          H0(i, j) += a * xq.data<float>()[j * 36 + p];
          C0(i, j) += a * xf.data<float>()[j * 36 + p];
        }
  }
  const LayerHessian& l2 = (*stats)[1];
  ASSERT_EQ(l2.k, 8);
  ASSERT_EQ(l2.rows, 5 * 36);
  ASSERT_EQ(l2.c.size(), 64u);
  double diff = 0;
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 8; ++j) {
      EXPECT_NEAR(l2.h[static_cast<size_t>(i * 8 + j)], H0(i, j), 1e-3 * (1 + std::fabs(H0(i, j)))) << i << "," << j;
      EXPECT_NEAR(l2.c[static_cast<size_t>(i * 8 + j)], C0(i, j), 1e-3 * (1 + std::fabs(C0(i, j)))) << i << "," << j;
      diff += std::fabs(C0(i, j) - H0(i, j));
    }
  EXPECT_GT(diff, 1e-3) << "X_q should differ from X (4-bit conv1, 8-bit activations)";
  // conv1 reads the graph input: H = fq(x) fq(x)^T over 3x3 patches, as CollectHessians computes
  // it with quantized_inputs.
  HessianOptions hq = ho;
  hq.quantized_inputs = true;
  auto src2 = TensorSource(samples);
  auto hs = CollectHessians(m, plan, *src2, hq);
  ASSERT_TRUE(hs.ok());
  ASSERT_EQ((*hs)[0].h.size(), (*stats)[0].h.size());
  for (size_t i = 0; i < (*hs)[0].h.size(); ++i)
    EXPECT_NEAR((*stats)[0].h[i], (*hs)[0].h[i], 1e-3 * (1 + std::fabs((*hs)[0].h[i])));

  // The chosen codes beat nearest rounding on each layer's own objective.
  QdqPlan nearest = plan;
  ASSERT_TRUE(QuantizeWeightsMixed(m, nearest, {4, 3}, wo, nullptr, ro, nullptr).ok());
  for (size_t i = 0; i < 2; ++i) {
    const double a = RoundingLoss(m, seq_plan.weighted[i], (*stats)[i], ro.target_damp);
    const double b = RoundingLoss(m, nearest.weighted[i], (*stats)[i], ro.target_damp);
    EXPECT_GE(a, 0);
    EXPECT_LT(a, b) << "layer " << i;
    EXPECT_EQ(seq_plan.weighted[i].qweight.scales(), nearest.weighted[i].qweight.scales());
  }
}

TEST(QuantRoundingObjective, AdaRoundKeepsTheBetterOfItselfAndGptqPerChannel) {
  Model m = SmallModel();
  auto plan_or = BuildQdqPlan(m, PlanOptions{});
  ASSERT_TRUE(plan_or.ok());
  QdqPlan plan = std::move(plan_or).value();
  std::mt19937 rng(8);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::vector<Tensor> samples;
  for (int i = 0; i < 6; ++i) {
    Tensor t = Tensor::Float({3, 6, 6});
    for (int64_t k = 0; k < t.numel(); ++k) t.mutable_data<float>()[k] = d(rng) + 0.8f * std::cos(0.3f * k);
    samples.push_back(std::move(t));
  }
  auto src = TensorSource(samples);
  HessianOptions ho;
  ho.samples = 6;
  auto hs = CollectHessians(m, plan, *src, ho);
  ASSERT_TRUE(hs.ok()) << hs.status().ToString();
  WeightOptions wo;
  wo.method = WeightScaleMethod::kMse;
  const std::vector<int> bits = {3, 2};
  RoundingOptions gptq, ada, best;
  gptq.method = RoundingMethod::kGptq;
  ada.method = best.method = RoundingMethod::kAdaRound;
  ada.adaround.keep_better_gptq = false;
  ada.adaround.iters = best.adaround.iters = 200;
  QdqPlan pg = plan, pa = plan, pb = plan;
  ASSERT_TRUE(QuantizeWeightsMixed(m, pg, bits, wo, &*hs, gptq, nullptr).ok());
  ASSERT_TRUE(QuantizeWeightsMixed(m, pa, bits, wo, &*hs, ada, nullptr).ok());
  ASSERT_TRUE(QuantizeWeightsMixed(m, pb, bits, wo, &*hs, best, nullptr).ok());
  int from_gptq = 0, from_ada = 0;
  for (size_t i = 0; i < 2; ++i) {
    const auto lg = RowLosses(m, pg.weighted[i], (*hs)[i], 0);
    const auto la = RowLosses(m, pa.weighted[i], (*hs)[i], 0);
    const auto lb = RowLosses(m, pb.weighted[i], (*hs)[i], 0);
    ASSERT_EQ(lb.size(), lg.size());
    ASSERT_EQ(lb.size(), la.size());
    for (size_t r = 0; r < lb.size(); ++r) {
      EXPECT_NEAR(lb[r], std::min(lg[r], la[r]), 1e-9 * (1 + lb[r])) << "layer " << i << " row " << r;
      from_gptq += lg[r] < la[r];
      from_ada += la[r] < lg[r];
    }
  }
  EXPECT_GT(from_gptq + from_ada, 0);
}

}  // namespace
}  // namespace onnxq::quant
