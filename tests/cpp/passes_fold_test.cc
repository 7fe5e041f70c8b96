// Structural before/after tests of batch-norm, Mul/Add and MatMul+Add folding, with folded weights
// checked against values computed by hand.
#include "passes_test_util.h"

namespace onnxq::passes {
namespace {
using namespace ptest;

std::vector<float> Values(const Graph& g, ValueId v) {
  const Tensor& t = Init(g, v);
  return std::vector<float>(t.data<float>(), t.data<float>() + t.numel());
}

// BN with a = scale / sqrt(var + eps) = {0.5, 2} (eps = 1), B = {0.5, 0}, mean = {1, 0}.
void AddBatchNorm(Builder& b, NodeId* bn, ValueId x, const std::string& name) {
  *bn = b.Node("BatchNormalization", name,
               {x, b.Const(name + "_s", {2}, {1.f, 2.f}), b.Const(name + "_b", {2}, {0.5f, 0.f}),
                b.Const(name + "_m", {2}, {1.f, 0.f}), b.Const(name + "_v", {2}, {3.f, 0.f})});
  b[*bn].attrs.Set(Attribute::Float("epsilon", 1.f));
}

TEST(PassesFoldBatchNorm, ConvWeightsAndBiasMatchHandComputedValues) {
  Model m = EmptyModel();
  Builder b(m);
  ValueId x = b.Input("x", {1, 1, 3, 3});
  NodeId conv = b.Node("Conv", "conv", {x, b.Const("w", {2, 1, 1, 1}, {2.f, 3.f}), b.Const("bias", {2}, {1.f, -1.f})});
  NodeId bn;
  AddBatchNorm(b, &bn, b.Out(conv), "bn");
  NodeId relu = b.Node("Relu", "relu", {b.Out(bn)});
  b.Output(b.Out(relu));
  PassReport rep = RunPasses(m, "fold-batchnorm,dead-code");
  const Graph& g = m.graph;
  EXPECT_EQ(CountOps(g, "BatchNormalization"), 0);
  EXPECT_EQ(g.node(relu).input(0), g.node(conv).output(0));
  EXPECT_EQ(Values(g, g.node(conv).input(1)), (std::vector<float>{1.f, 6.f}));
  EXPECT_EQ(Values(g, g.node(conv).input(2)), (std::vector<float>{0.5f, -2.f}));
  EXPECT_EQ(g.FindValue("bn_s"), kNoValue);  // BN parameters are gone
}

TEST(PassesFoldBatchNorm, ConvWithoutBiasGetsOne) {
  Model m = EmptyModel();
  Builder b(m);
  ValueId x = b.Input("x", {1, 1, 3, 3});
  NodeId conv = b.Node("Conv", "conv", {x, b.Const("w", {2, 1, 1, 1}, {2.f, 3.f})});
  NodeId bn;
  AddBatchNorm(b, &bn, b.Out(conv), "bn");
  b.Output(b.Out(bn));
  RunPasses(m, "fold-batchnorm");
  const Graph& g = m.graph;
  ASSERT_NE(g.node(conv).input(2), kNoValue);
  // b' = a * (0 - mean) + B = {0.5 * -1 + 0.5, 0} = {0, 0}
  EXPECT_EQ(Values(g, g.node(conv).input(2)), (std::vector<float>{0.f, 0.f}));
  EXPECT_EQ(g.value(g.outputs()[0]).name(), "bn_out");
}

TEST(PassesFoldBatchNorm, ConvTransposeScalesTheSecondWeightAxis) {
  Model m = EmptyModel();
  Builder b(m);
  ValueId x = b.Input("x", {1, 3, 2, 2});
  // Weight [C_in=3, C_out=2, 1, 1]: output channel o is column o.
  NodeId ct = b.Node("ConvTranspose", "ct", {x, b.Const("w", {3, 2, 1, 1}, {1, 1, 2, 2, 3, 3})});
  NodeId bn;
  AddBatchNorm(b, &bn, b.Out(ct), "bn");
  b.Output(b.Out(bn));
  RunPasses(m, "fold-batchnorm");
  const Graph& g = m.graph;
  EXPECT_EQ(CountOps(g, "BatchNormalization"), 0);
  EXPECT_EQ(Values(g, g.node(ct).input(1)), (std::vector<float>{0.5f, 2, 1, 4, 1.5f, 6}));
}

TEST(PassesFoldBatchNorm, GroupedConvTransposeMapsOutputChannelsPerGroup) {
  Model m = EmptyModel();
  Builder b(m);
  ValueId x = b.Input("x", {1, 2, 2, 2});
  // group 2: C_in = 2, C_out/group = 1 -> output channel 0 from input 0, 1 from input 1.
  NodeId ct = b.Node("ConvTranspose", "ct", {x, b.Const("w", {2, 1, 1, 1}, {2.f, 3.f})});
  b[ct].attrs.Set(Attribute::Int("group", 2));
  NodeId bn;
  AddBatchNorm(b, &bn, b.Out(ct), "bn");
  b.Output(b.Out(bn));
  RunPasses(m, "fold-batchnorm");
  EXPECT_EQ(Values(m.graph, m.graph.node(ct).input(1)), (std::vector<float>{1.f, 6.f}));
}

TEST(PassesFoldBatchNorm, GemmHonoursTransBAndBeta) {
  for (int transb = 0; transb < 2; ++transb) {
    Model m = EmptyModel();
    Builder b(m);
    ValueId x = b.Input("x", {1, 3});
    // N = 2 outputs, K = 3. transB=1: B is [N, K]; transB=0: B is [K, N].
    std::vector<float> w = transb ? std::vector<float>{1, 1, 1, 2, 2, 2} : std::vector<float>{1, 2, 1, 2, 1, 2};
    std::vector<int64_t> dims = transb ? std::vector<int64_t>{2, 3} : std::vector<int64_t>{3, 2};
    NodeId gemm = b.Node("Gemm", "gemm", {x, b.Const("w", dims, w), b.Const("c", {2}, {1.f, -1.f})}, 1, {{1, 2}});
    b[gemm].attrs.Set(Attribute::Int("transB", transb));
    b[gemm].attrs.Set(Attribute::Float("beta", 2.f));
    NodeId bn;
    AddBatchNorm(b, &bn, b.Out(gemm), "bn");
    b.Output(b.Out(bn));
    RunPasses(m, "fold-batchnorm");
    const Graph& g = m.graph;
    EXPECT_EQ(CountOps(g, "BatchNormalization"), 0);
    std::vector<float> expect_w = transb ? std::vector<float>{0.5f, 0.5f, 0.5f, 4, 4, 4}
                                         : std::vector<float>{0.5f, 4, 0.5f, 4, 0.5f, 4};
    EXPECT_EQ(Values(g, g.node(gemm).input(1)), expect_w) << "transB=" << transb;
    // bias = a * (beta * c - mean) + B = {0.5 * (2 - 1) + 0.5, 2 * (-2 - 0)} = {1, -4}; beta -> 1
    EXPECT_EQ(Values(g, g.node(gemm).input(2)), (std::vector<float>{1.f, -4.f}));
    EXPECT_EQ(*g.node(gemm).attrs.GetFloat("beta"), 1.f);
  }
}

TEST(PassesFoldBatchNorm, RefusesWhenTheConvOutputHasAnotherUse) {
  Model m = EmptyModel();
  Builder b(m);
  ValueId x = b.Input("x", {1, 1, 3, 3});
  NodeId conv = b.Node("Conv", "conv", {x, b.Const("w", {2, 1, 1, 1}, {2.f, 3.f})});
  NodeId bn;
  AddBatchNorm(b, &bn, b.Out(conv), "bn");
  NodeId other = b.Node("Relu", "other", {b.Out(conv)});
  b.Output(b.Out(bn));
  b.Output(b.Out(other));
  PassReport rep = RunPasses(m, "fold-batchnorm");
  EXPECT_EQ(CountOps(m.graph, "BatchNormalization"), 1);
  ASSERT_FALSE(rep.passes[0].notes.empty());
  EXPECT_NE(rep.passes[0].notes[0].find("other uses"), std::string::npos) << rep.passes[0].notes[0];
}

TEST(PassesFoldBatchNorm, SharedWeightsAreClonedNotEditedInPlace) {
  Model m = EmptyModel();
  Builder b(m);
  ValueId x = b.Input("x", {1, 1, 3, 3});
  ValueId w = b.Const("w", {2, 1, 1, 1}, {2.f, 3.f});
  NodeId conv = b.Node("Conv", "conv", {x, w});
  NodeId conv2 = b.Node("Conv", "conv2", {x, w});
  NodeId bn;
  AddBatchNorm(b, &bn, b.Out(conv), "bn");
  b.Output(b.Out(bn));
  b.Output(b.Out(conv2));
  RunPasses(m, "fold-batchnorm");
  const Graph& g = m.graph;
  EXPECT_EQ(Values(g, g.node(conv2).input(1)), (std::vector<float>{2.f, 3.f}));
  EXPECT_EQ(Values(g, g.node(conv).input(1)), (std::vector<float>{1.f, 6.f}));
}

TEST(PassesFoldConvMulAdd, PerChannelMulAndAddFoldScalarsToo) {
  Model m = EmptyModel();
  Builder b(m);
  ValueId x = b.Input("x", {1, 1, 3, 3});
  NodeId conv = b.Node("Conv", "conv", {x, b.Const("w", {2, 1, 1, 1}, {2.f, 3.f}), b.Const("bias", {2}, {1.f, -1.f})});
  NodeId mul = b.Node("Mul", "mul", {b.Const("m", {2, 1, 1}, {2.f, -1.f}), b.Out(conv)});
  NodeId add = b.Node("Add", "add", {b.Out(mul), b.Const("a", {1, 2, 1, 1}, {10.f, 20.f})});
  NodeId sub = b.Node("Sub", "sub", {b.Out(add), b.Const("s", {}, {1.f})});
  b.Output(b.Out(sub));
  PassReport rep = RunPasses(m, "fold-conv-mul-add");
  const Graph& g = m.graph;
  EXPECT_EQ(g.num_nodes(), 1u);
  EXPECT_EQ(Values(g, g.node(conv).input(1)), (std::vector<float>{4.f, -3.f}));
  // ((b * m) + a) - 1 = {2 + 10 - 1, 1 + 20 - 1}
  EXPECT_EQ(Values(g, g.node(conv).input(2)), (std::vector<float>{11.f, 20.f}));
  EXPECT_EQ(g.value(g.outputs()[0]).name(), "sub_out");
}

TEST(PassesFoldConvMulAdd, RefusesNonChannelConstantsAndReversedSub) {
  Model m = EmptyModel();
  Builder b(m);
  ValueId x = b.Input("x", {1, 1, 3, 3});
  NodeId conv = b.Node("Conv", "conv", {x, b.Const("w", {2, 1, 1, 1}, {2.f, 3.f})});
  NodeId mul = b.Node("Mul", "mul", {b.Out(conv), b.Const("m", {3, 1}, {1, 2, 3})});  // spatial
  NodeId conv2 = b.Node("Conv", "conv2", {x, b.Const("w2", {2, 1, 1, 1}, {2.f, 3.f})});
  NodeId sub = b.Node("Sub", "sub", {b.Const("c", {1}, {1.f}), b.Out(conv2)});
  b.Output(b.Out(mul));
  b.Output(b.Out(sub));
  PassReport rep = RunPasses(m, "fold-conv-mul-add");
  EXPECT_FALSE(rep.passes[0].changed);
  EXPECT_TRUE(m.graph.has_node(mul));
  EXPECT_TRUE(m.graph.has_node(sub));
}

TEST(PassesMatMulAddToGemm, FusesTwoDimensionalCasesOnly) {
  Model m = EmptyModel();
  Builder b(m);
  ValueId x = b.Input("x", {4, 3});
  ValueId x3 = b.Input("x3", {2, 4, 3});
  ValueId w = b.Const("w", {3, 2}, {1, 2, 3, 4, 5, 6});
  NodeId mm = b.Node("MatMul", "mm", {x, w}, 1, {{4, 2}});
  NodeId add = b.Node("Add", "add", {b.Const("bias", {2}, {1, 2}), b.Out(mm)}, 1, {{4, 2}});
  NodeId mm3 = b.Node("MatMul", "mm3", {x3, w}, 1, {{2, 4, 2}});
  NodeId add3 = b.Node("Add", "add3", {b.Out(mm3), b.Const("bias3", {2}, {1, 2})}, 1, {{2, 4, 2}});
  NodeId r = b.Node("Relu", "r", {b.Out(add)});
  b.Output(b.Out(r));
  b.Output(b.Out(add3));
  PassReport rep = RunPasses(m, "matmul-add-to-gemm");
  const Graph& g = m.graph;
  EXPECT_FALSE(g.has_node(mm));
  EXPECT_FALSE(g.has_node(add));
  EXPECT_TRUE(g.has_node(mm3));  // 3-D input stays MatMul
  ASSERT_EQ(CountOps(g, "Gemm"), 1);
  const Node* gemm = g.Producer(g.node(r).input(0));
  ASSERT_NE(gemm, nullptr);
  EXPECT_EQ(gemm->op_type, "Gemm");
  EXPECT_EQ(gemm->name, "mm");
  EXPECT_EQ(gemm->input(0), x);
  EXPECT_EQ(Values(g, gemm->input(2)), (std::vector<float>{1, 2}));
  EXPECT_EQ(rep.passes[0].counters.at("fused"), 1);
}

}  // namespace
}  // namespace onnxq::passes
