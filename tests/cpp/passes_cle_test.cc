// Structural tests of activation grouping and cross-layer equalization on hand-built graphs.
#include <algorithm>
#include <cmath>

#include "onnxq/passes/weight_sqnr.h"
#include "passes_test_util.h"

namespace onnxq::passes {
namespace {
using namespace ptest;

TEST(PassesActivationGroups, MarksAnchorsAndActivations) {
  Model m = EmptyModel(13);
  Builder b(m);
  ValueId x = b.Input("x", {1, 2, 4, 4});
  NodeId c1 = b.Node("Conv", "c1", {x, b.RandConst("w1", {2, 2, 1, 1}, 1)});
  NodeId clip = b.Node("Clip", "clip", {b.Out(c1), b.Const("lo", {}, {0.f}), b.Const("hi", {}, {6.f})});
  NodeId c2 = b.Node("Conv", "c2", {b.Out(clip), b.RandConst("w2", {2, 2, 1, 1}, 2)});
  NodeId relu = b.Node("Relu", "relu", {b.Out(c2)});
  NodeId c3 = b.Node("Conv", "c3", {b.Out(relu), b.RandConst("w3", {2, 2, 1, 1}, 3)});
  NodeId r3 = b.Node("Relu", "r3", {b.Out(c3)});
  NodeId side = b.Node("Sigmoid", "side", {b.Out(c3)});  // c3 has two consumers: no group
  b.Output(b.Out(r3));
  b.Output(b.Out(side));
  PassReport rep = RunPasses(m, "mark-activation-groups");
  const Graph& g = m.graph;
  EXPECT_EQ(g.node(c1).meta.at("onnxq.group_role"), "anchor");
  EXPECT_EQ(g.node(c1).meta.at("onnxq.group_activation"), "Clip");
  EXPECT_EQ(g.node(clip).meta.at("onnxq.group_role"), "activation");
  EXPECT_EQ(g.node(clip).meta.at("onnxq.group"), g.node(c1).meta.at("onnxq.group"));
  EXPECT_EQ(g.node(relu).meta.at("onnxq.group"), g.node(c2).meta.at("onnxq.group"));
  EXPECT_NE(g.node(relu).meta.at("onnxq.group"), g.node(clip).meta.at("onnxq.group"));
  EXPECT_EQ(g.node(c3).meta.count("onnxq.group"), 0u);
  EXPECT_EQ(rep.passes[0].counters.at("groups"), 2);
  // Idempotent: a second run reports no change.
  EXPECT_FALSE(RunPasses(m, "mark-activation-groups").passes[0].changed);
}

TEST(PassesActivationGroups, ClipBoundsAsAttributesBeforeOpset11) {
  Model m = EmptyModel(9);
  Builder b(m);
  ValueId x = b.Input("x", {1, 3});
  NodeId gemm = b.Node("Gemm", "gemm", {x, b.RandConst("w", {3, 2}, 1)});
  NodeId clip = b.Node("Clip", "clip", {b.Out(gemm)});
  b[clip].attrs.Set(Attribute::Float("min", 0.f));
  b[clip].attrs.Set(Attribute::Float("max", 6.f));
  b.Output(b.Out(clip));
  RunPasses(m, "mark-activation-groups");
  EXPECT_EQ(m.graph.node(clip).meta.at("onnxq.group_role"), "activation");
}

// Per-channel max |w| of conv1's output channels and conv2's input channels.
std::vector<double> OutRanges(const Tensor& w) {
  int64_t c = w.dims()[0], per = w.numel() / c;
  std::vector<double> r(c, 0.0);
  for (int64_t o = 0; o < c; ++o)
    for (int64_t k = 0; k < per; ++k) r[o] = std::max(r[o], std::fabs(double(w.data<float>()[o * per + k])));
  return r;
}
std::vector<double> InRanges(const Tensor& w, int64_t group) {
  int64_t cout = w.dims()[0], cpg = w.dims()[1], sp = w.numel() / (cout * cpg), opg = cout / group;
  std::vector<double> r(cpg * group, 0.0);
  for (int64_t i = 0; i < cpg * group; ++i) {
    int64_t grp = i / cpg, j = i % cpg;
    for (int64_t o = grp * opg; o < (grp + 1) * opg; ++o)
      for (int64_t k = 0; k < sp; ++k) r[i] = std::max(r[i], std::fabs(double(w.data<float>()[(o * cpg + j) * sp + k])));
  }
  return r;
}

// Worst output channel's SQNR when the whole tensor shares one symmetric int8 scale: what CLE is
// for (small channels drowned by the per-tensor scale of a big one).
double WorstChannelSqnrDb(const Tensor& w) {
  int64_t c = w.dims()[0], per = w.numel() / c;
  double maxabs = 0.0;
  for (float v : w.span<float>()) maxabs = std::max(maxabs, std::fabs(double(v)));
  double scale = maxabs / 127.0, worst = 1e300;
  for (int64_t o = 0; o < c; ++o) {
    double sig = 0.0, err = 0.0;
    for (int64_t k = 0; k < per; ++k) {
      double v = w.data<float>()[o * per + k];
      double q = std::clamp(std::round(v / scale), -127.0, 127.0) * scale;
      sig += v * v;
      err += (v - q) * (v - q);
    }
    worst = std::min(worst, 10.0 * std::log10(sig / std::max(err, 1e-300)));
  }
  return worst;
}

// conv1 (4 channels with very different ranges) -> act -> conv2 (dense or depthwise).
struct Chain {
  Model m = EmptyModel(13);
  NodeId c1 = kNoNode, act = kNoNode, c2 = kNoNode;
};
Chain MakeChain(const std::string& act, int64_t group2, float weight_scale = 1.f) {
  Chain ch;
  Builder b(ch.m);
  ValueId x = b.Input("x", {1, 3, 6, 6});
  std::vector<float> w1 = RandomFloats(4 * 3 * 9, 11);
  for (int64_t o = 0; o < 4; ++o)
    for (int k = 0; k < 27; ++k) w1[o * 27 + k] *= weight_scale * std::pow(8.f, float(o) - 1.5f);
  ch.c1 = b.Node("Conv", "c1", {x, b.Const("w1", {4, 3, 3, 3}, w1), b.RandConst("b1", {4}, 12)});
  b[ch.c1].attrs.Set(Attribute::Ints("pads", {1, 1, 1, 1}));
  ValueId y = b.Out(ch.c1);
  if (act == "Relu") {
    ch.act = b.Node("Relu", "act", {y});
  } else if (act == "Clip") {
    ch.act = b.Node("Clip", "act", {y, b.Const("lo", {}, {0.f}), b.Const("hi", {}, {6.f})});
  }
  if (ch.act != kNoNode) y = b.Out(ch.act);
  std::vector<int64_t> w2dims = group2 == 1 ? std::vector<int64_t>{5, 4, 1, 1} : std::vector<int64_t>{4, 1, 3, 3};
  ch.c2 = b.Node("Conv", "c2", {y, b.RandConst("w2", w2dims, 13), b.RandConst("b2", {w2dims[0]}, 14)});
  if (group2 > 1) {
    b[ch.c2].attrs.Set(Attribute::Int("group", group2));
    b[ch.c2].attrs.Set(Attribute::Ints("pads", {1, 1, 1, 1}));
  }
  b.Output(b.Out(ch.c2));
  return ch;
}

TEST(PassesCle, ReluPairEqualizesRangesAndRaisesPerTensorSqnr) {
  for (int64_t group2 : {int64_t{1}, int64_t{4}}) {
    Chain ch = MakeChain("Relu", group2);
    const Graph& g = ch.m.graph;
    double before = WorstChannelSqnrDb(Init(g, g.node(ch.c1).input(1)));
    PassReport rep = RunPasses(ch.m, "cle");
    ASSERT_TRUE(rep.passes[0].changed);
    auto r1 = OutRanges(Init(g, g.node(ch.c1).input(1)));
    auto r2 = InRanges(Init(g, g.node(ch.c2).input(1)), group2);
    for (size_t i = 0; i < r1.size(); ++i) EXPECT_NEAR(r1[i] / r2[i], 1.0, 1e-4) << "channel " << i;
    double after = WorstChannelSqnrDb(Init(g, g.node(ch.c1).input(1)));
    EXPECT_GT(after, before + 20.0) << "group2=" << group2;  // ranges differed by 8^3 before
    EXPECT_EQ(rep.passes[0].counters.at("channels_scaled"), 4);
  }
}

TEST(PassesCle, DepthwiseFirstConvPassesScalesToTheNextConvsInputChannels) {
  Model m = EmptyModel(13);
  Builder b(m);
  ValueId x = b.Input("x", {1, 4, 5, 5});
  std::vector<float> w1 = RandomFloats(4 * 9, 21);
  for (int o = 0; o < 4; ++o)
    for (int k = 0; k < 9; ++k) w1[o * 9 + k] *= std::pow(10.f, float(o) - 2.f);
  NodeId dw = b.Node("Conv", "dw", {x, b.Const("w1", {4, 1, 3, 3}, w1)});
  b[dw].attrs.Set(Attribute::Int("group", 4));
  NodeId relu = b.Node("Relu", "relu", {b.Out(dw)});
  NodeId pw = b.Node("Conv", "pw", {b.Out(relu), b.RandConst("w2", {6, 4, 1, 1}, 22)});
  b.Output(b.Out(pw));
  RunPasses(m, "cle");
  auto r1 = OutRanges(Init(m.graph, m.graph.node(dw).input(1)));
  auto r2 = InRanges(Init(m.graph, m.graph.node(pw).input(1)), 1);
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(r1[i] / r2[i], 1.0, 1e-4) << i;
  EXPECT_EQ(m.graph.node(dw).input(2), kNoValue);  // no bias was needed
}

TEST(PassesCle, ExactClipPolicyOnlyScalesChannelsProvenBelowTheBound) {
  // Input bounded by the graph input range [0, 1]; with 27 weights of |w| <= 8^k the first two
  // channels provably stay below 6, the last two may exceed it.
  Chain ch = MakeChain("Clip", 1, 0.2f);
  OptimizeOptions opt;
  opt.equalization.input_min = 0.f;
  opt.equalization.input_max = 1.f;
  const Graph& g = ch.m.graph;
  std::vector<float> w1_before(Init(g, g.node(ch.c1).input(1)).span<float>().begin(),
                               Init(g, g.node(ch.c1).input(1)).span<float>().end());
  PassReport rep = RunPasses(ch.m, "cle", opt);
  EXPECT_EQ(CountOps(g, "Clip"), 1);  // structure unchanged
  EXPECT_GT(rep.passes[0].counters.at("channels_kept_clip_bound"), 0);
  EXPECT_GT(rep.passes[0].counters.at("channels_scaled"), 0);
  const Tensor& w1 = Init(g, g.node(ch.c1).input(1));
  // Channel 3 (largest weights) may saturate: untouched.
  for (int k = 0; k < 27; ++k) EXPECT_EQ(w1.data<float>()[3 * 27 + k], w1_before[3 * 27 + k]);
  bool noted = false;
  for (const auto& n : rep.passes[0].notes) noted |= n.find("Clip bound 6 may be reached") != std::string::npos;
  EXPECT_TRUE(noted);
}

TEST(PassesCle, PerChannelMinPolicyRewritesClipWithScaledBounds) {
  Chain ch = MakeChain("Clip", 1);
  const Graph& g = ch.m.graph;
  auto r_before = OutRanges(Init(g, g.node(ch.c1).input(1)));
  OptimizeOptions opt;
  opt.equalization.clip_policy = ClipPolicy::kPerChannelMin;
  opt.equalization.absorb_high_bias = false;
  PassReport rep = RunPasses(ch.m, "cle,mark-activation-groups", opt);
  EXPECT_EQ(CountOps(g, "Clip"), 0);
  ASSERT_EQ(CountOps(g, "Min"), 1);
  ASSERT_EQ(CountOps(g, "Relu"), 1);
  const Node* mn = g.Producer(g.node(ch.c2).input(0));
  ASSERT_TRUE(mn && mn->Is("Min"));
  const Tensor& bound = Init(g, mn->input(1));
  EXPECT_EQ(bound.dims(), (std::vector<int64_t>{4, 1, 1}));
  auto r_after = OutRanges(Init(g, g.node(ch.c1).input(1)));
  // channel i was divided by s_i = r_before / r_after, so its bound is 6 / s_i.
  for (int i = 0; i < 4; ++i)
    EXPECT_NEAR(bound.data<float>()[i], 6.0 * r_after[i] / r_before[i], 1e-4 * 6.0 * r_after[i] / r_before[i]);
  // Conv + Relu + Min form one quantization group.
  EXPECT_EQ(g.node(ch.c1).meta.at("onnxq.group_activation"), "Relu+Min");
  EXPECT_EQ(mn->meta.at("onnxq.group"), g.node(ch.c1).meta.at("onnxq.group"));
}

TEST(PassesCle, WeightSqnrMatchesHandComputedValue) {
  // max 1 -> scale 1/127; 0.5 -> 63.5 -> rounds to 64 -> error 0.5/127.
  std::vector<float> w = {1.f, 0.5f};
  double err = 0.5 / 127.0;
  double expect = 10.0 * std::log10(1.25 / (err * err));
  EXPECT_NEAR(SymmetricSqnrDb(w, 8), expect, 1e-9);
  std::vector<float> zeros = {0.f, 0.f};
  EXPECT_TRUE(std::isinf(SymmetricSqnrDb(zeros, 8)));
}

}  // namespace
}  // namespace onnxq::passes
