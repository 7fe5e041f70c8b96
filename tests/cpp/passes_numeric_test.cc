// Numeric equivalence of every pass: the same random inputs through onnxq's executor before and
// after the pass give the same outputs (up to float rounding), on graphs where the pass fires.
#include <cmath>

#include "onnxq/runtime/session.h"
#include "passes_test_util.h"

namespace onnxq::passes {
namespace {
using namespace ptest;

std::map<std::string, Tensor> Run(const Model& m, const std::map<std::string, Tensor>& feeds) {
  auto s = Session::Create(m);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  if (!s.ok()) return {};
  auto r = (*s)->Run(feeds);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : std::map<std::string, Tensor>{};
}

std::map<std::string, Tensor> RandomFeeds(const Model& m, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  std::map<std::string, Tensor> feeds;
  for (ValueId v : m.graph.RuntimeInputs()) {
    std::vector<int64_t> dims = m.graph.value(v).shape->static_dims();
    int64_t n = 1;
    for (int64_t d : dims) n *= d;
    feeds[m.graph.value(v).name()] = Tensor::Float(dims, RandomFloats(n, seed++, lo, hi));
  }
  return feeds;
}

// Runs `spec` on a copy of m and checks that outputs agree; returns the optimized model.
Model ExpectSameOutputs(const Model& m, const std::string& spec, OptimizeOptions opt = {},
                        double rtol = 1e-5, float in_lo = -1.f, float in_hi = 1.f) {
  Model after = m;
  PassReport rep = RunPasses(after, spec, opt);
  EXPECT_TRUE(rep.changed()) << spec << " did not fire";
  for (uint32_t seed : {1u, 2u, 3u}) {
    auto feeds = RandomFeeds(m, seed * 100, in_lo, in_hi);
    auto ref = Run(m, feeds);
    auto got = Run(after, feeds);
    EXPECT_EQ(ref.size(), got.size());
    for (const auto& [name, t] : ref) {
      EXPECT_TRUE(got.count(name)) << "output '" << name << "' missing after " << spec;
      if (!got.count(name)) continue;
      const Tensor& u = got.at(name);
      EXPECT_EQ(t.dims(), u.dims()) << name;
      if (t.dims() != u.dims()) continue;
      double maxref = 0.0, maxdiff = 0.0;
      for (int64_t i = 0; i < t.numel(); ++i) {
        maxref = std::max(maxref, std::fabs(t.GetAsDouble(i)));
        maxdiff = std::max(maxdiff, std::fabs(t.GetAsDouble(i) - u.GetAsDouble(i)));
      }
      EXPECT_LE(maxdiff, rtol * std::max(maxref, 1e-3)) << spec << " output " << name;
    }
  }
  return after;
}

TEST(PassesNumeric, IdentityDropoutDeadCode) {
  Model m = EmptyModel(13);
  Builder b(m);
  ValueId x = b.Input("x", {2, 8});
  NodeId id = b.Node("Identity", "id", {x});
  NodeId d = b.Node("Dropout", "d", {b.Out(id), b.Const("ratio", {}, {0.3f})}, 2);
  NodeId add = b.Node("Add", "add", {b.Out(d), b.RandConst("w", {8}, 5)});
  b.Node("Relu", "dead", {b.Out(add)});
  NodeId out = b.Node("Identity", "out", {b.Out(add)});
  b.Output(b.Out(out));
  Model after = ExpectSameOutputs(m, "remove-identity,remove-dropout,dead-code", {}, 0.0);
  EXPECT_EQ(after.graph.num_nodes(), 1u);
}

TEST(PassesNumeric, FoldConstantsCollapsesStaticShapeChains) {
  // The exporter pattern: Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1])).
  Model m = EmptyModel(13);
  Builder b(m);
  ValueId x = b.Input("x", {2, 3, 4});
  NodeId shape = b.Node("Shape", "shape", {x});
  m.graph.value(b.Out(shape)).dtype = DataType::kInt64;
  NodeId gather = b.Node("Gather", "gather", {b.Out(shape), b.IntConst("zero", {}, {0})});
  m.graph.value(b.Out(gather)).dtype = DataType::kInt64;
  NodeId unsq = b.Node("Unsqueeze", "unsq", {b.Out(gather), b.IntConst("axes", {1}, {0})});
  m.graph.value(b.Out(unsq)).dtype = DataType::kInt64;
  NodeId concat = b.Node("Concat", "concat", {b.Out(unsq), b.IntConst("minus1", {1}, {-1})});
  b[concat].attrs.Set(Attribute::Int("axis", 0));
  m.graph.value(b.Out(concat)).dtype = DataType::kInt64;
  NodeId reshape = b.Node("Reshape", "reshape", {x, b.Out(concat)});
  // A constant subexpression and a Constant node.
  NodeId cnode = b.Node("Constant", "c", {});
  b[cnode].attrs.Set(Attribute::TensorValue("value", Tensor::Float({12}, RandomFloats(12, 9))));
  NodeId mul = b.Node("Mul", "mul", {b.Out(cnode), b.RandConst("k", {12}, 10)});
  NodeId add = b.Node("Add", "add", {b.Out(reshape), b.Out(mul)});
  b.Output(b.Out(add));
  Model after = ExpectSameOutputs(m, "fold-constants,dead-code", {}, 0.0);
  const Graph& g = after.graph;
  EXPECT_EQ(CountOps(g, "Shape"), 0);
  EXPECT_EQ(CountOps(g, "Concat"), 0);
  EXPECT_EQ(CountOps(g, "Constant"), 0);
  EXPECT_EQ(CountOps(g, "Mul"), 0);
  ASSERT_EQ(CountOps(g, "Reshape"), 1);
  const Tensor* target = g.value(g.node(reshape).input(1)).initializer();
  ASSERT_NE(target, nullptr);
  EXPECT_EQ(std::vector<int64_t>(target->data<int64_t>(), target->data<int64_t>() + 2),
            (std::vector<int64_t>{2, -1}));
}

TEST(PassesNumeric, FoldConstantsKeepsShapeOfDynamicValues) {
  Model m = EmptyModel(13);
  Builder b(m);
  ValueId x = *m.graph.AddValue("x");
  m.graph.value(x).dtype = DataType::kFloat;
  m.graph.value(x).shape = Shape({Dim::Symbolic("N"), Dim::Known(4)});
  m.graph.AddInput(x);
  NodeId shape = b.Node("Shape", "shape", {x});
  b.Output(b.Out(shape));
  NodeId relu = b.Node("Relu", "relu", {x});
  b.Output(b.Out(relu));
  PassReport rep = RunPasses(m, "fold-constants");
  EXPECT_EQ(CountOps(m.graph, "Shape"), 1);
  EXPECT_FALSE(rep.passes[0].changed);
}

TEST(PassesNumeric, FoldBatchNormIntoConvConvTransposeGemm) {
  Model m = EmptyModel(13);
  Builder b(m);
  ValueId x = b.Input("x", {2, 4, 6, 6});
  auto bn = [&](ValueId in, int64_t c, const std::string& name, uint32_t seed) {
    return b.Out(b.Node("BatchNormalization", name,
                        {in, b.RandConst(name + "_s", {c}, seed, 0.5f, 2.f),
                         b.RandConst(name + "_b", {c}, seed + 1), b.RandConst(name + "_m", {c}, seed + 2),
                         b.RandConst(name + "_v", {c}, seed + 3, 0.1f, 3.f)}));
  };
  NodeId conv = b.Node("Conv", "conv", {x, b.RandConst("w", {6, 2, 3, 3}, 1)});  // group 2, no bias
  b[conv].attrs.Set(Attribute::Int("group", 2));
  b[conv].attrs.Set(Attribute::Ints("pads", {1, 1, 1, 1}));
  ValueId y = bn(b.Out(conv), 6, "bn1", 10);
  NodeId relu = b.Node("Relu", "relu", {y});
  NodeId ct = b.Node("ConvTranspose", "ct", {b.Out(relu), b.RandConst("wt", {6, 2, 2, 2}, 2), b.RandConst("bt", {6}, 3)});
  b[ct].attrs.Set(Attribute::Int("group", 3));
  b[ct].attrs.Set(Attribute::Ints("strides", {2, 2}));
  ValueId z = bn(b.Out(ct), 6, "bn2", 20);
  NodeId pool = b.Node("GlobalAveragePool", "pool", {z});
  NodeId flat = b.Node("Flatten", "flat", {b.Out(pool)}, 1, {{2, 6}});
  NodeId gemm = b.Node("Gemm", "gemm", {b.Out(flat), b.RandConst("wg", {5, 6}, 4), b.RandConst("cg", {5}, 5)}, 1, {{2, 5}});
  b[gemm].attrs.Set(Attribute::Int("transB", 1));
  b[gemm].attrs.Set(Attribute::Float("beta", 0.5f));
  ValueId out = bn(b.Out(gemm), 5, "bn3", 30);
  b.Output(out);
  Model after = ExpectSameOutputs(m, "fold-batchnorm,dead-code");
  EXPECT_EQ(CountOps(after.graph, "BatchNormalization"), 0);
}

TEST(PassesNumeric, FoldConvMulAddAndMatMulAddToGemm) {
  Model m = EmptyModel(13);
  Builder b(m);
  ValueId x = b.Input("x", {1, 3, 5, 5});
  NodeId conv = b.Node("Conv", "conv", {x, b.RandConst("w", {4, 3, 3, 3}, 1), b.RandConst("bias", {4}, 2)});
  NodeId mul = b.Node("Mul", "mul", {b.Out(conv), b.RandConst("m", {4, 1, 1}, 3)});
  NodeId add = b.Node("Add", "add", {b.RandConst("a", {1, 4, 1, 1}, 4), b.Out(mul)});
  NodeId pool = b.Node("GlobalAveragePool", "pool", {b.Out(add)});
  NodeId flat = b.Node("Flatten", "flat", {b.Out(pool)}, 1, {{1, 4}});
  NodeId mm = b.Node("MatMul", "mm", {b.Out(flat), b.RandConst("wm", {4, 7}, 5)}, 1, {{1, 7}});
  NodeId add2 = b.Node("Add", "add2", {b.Out(mm), b.RandConst("bm", {7}, 6)}, 1, {{1, 7}});
  b.Output(b.Out(add2));
  Model after = ExpectSameOutputs(m, "fold-conv-mul-add,matmul-add-to-gemm");
  EXPECT_EQ(CountOps(after.graph, "Mul"), 0);
  EXPECT_EQ(CountOps(after.graph, "Add"), 0);
  EXPECT_EQ(CountOps(after.graph, "Gemm"), 1);
}

// conv -> act -> depthwise conv -> act -> conv, channel ranges spread over 3 decades.
Model CleChain(const std::string& act) {
  Model m = EmptyModel(13);
  Builder b(m);
  ValueId x = b.Input("x", {1, 3, 8, 8});
  auto spread = [](std::vector<float> w, int64_t c) {
    int64_t per = static_cast<int64_t>(w.size()) / c;
    for (int64_t o = 0; o < c; ++o)
      for (int64_t k = 0; k < per; ++k) w[o * per + k] *= std::pow(10.f, 1.5f * float(o) / float(c - 1) - 1.f);
    return w;
  };
  auto activation = [&](ValueId in, const std::string& name) {
    if (act == "Relu") return b.Out(b.Node("Relu", name, {in}));
    return b.Out(b.Node("Clip", name, {in, b.Const(name + "_lo", {}, {0.f}), b.Const(name + "_hi", {}, {6.f})}));
  };
  NodeId c1 = b.Node("Conv", "c1", {x, b.Const("w1", {8, 3, 3, 3}, spread(RandomFloats(216, 1), 8)), b.RandConst("b1", {8}, 2)});
  b[c1].attrs.Set(Attribute::Ints("pads", {1, 1, 1, 1}));
  ValueId a1 = activation(b.Out(c1), "a1");
  NodeId dw = b.Node("Conv", "dw", {a1, b.Const("w2", {8, 1, 3, 3}, spread(RandomFloats(72, 3), 8)), b.RandConst("b2", {8}, 4)});
  b[dw].attrs.Set(Attribute::Int("group", 8));
  b[dw].attrs.Set(Attribute::Ints("pads", {1, 1, 1, 1}));
  ValueId a2 = activation(b.Out(dw), "a2");
  NodeId pw = b.Node("Conv", "pw", {a2, b.RandConst("w3", {5, 8, 1, 1}, 5), b.RandConst("b3", {5}, 6, 2.f, 3.f)});
  b.Output(b.Out(pw));
  return m;
}

TEST(PassesNumeric, CleReluChainIncludingDepthwiseIsFunctionPreserving) {
  Model after = ExpectSameOutputs(CleChain("Relu"), "cle", {}, 1e-5);
  (void)after;
}

TEST(PassesNumeric, CleExactClipPolicyIsFunctionPreservingEvenWhenClipsSaturate) {
  // Inputs in [-3, 3] drive many channels into both Clip bounds.
  OptimizeOptions opt;
  opt.equalization.input_min = -3.f;
  opt.equalization.input_max = 3.f;
  Model after = ExpectSameOutputs(CleChain("Clip"), "cle", opt, 1e-5, -3.f, 3.f);
  EXPECT_EQ(CountOps(after.graph, "Clip"), 2);
  // Both situations occur on this chain: channels proven below the bound get scaled, the others
  // are kept and reported.
  Model again = CleChain("Clip");
  PassReport rep = RunPasses(again, "cle", opt);
  EXPECT_GT(rep.passes[0].counters.at("channels_scaled"), 0);
  EXPECT_GT(rep.passes[0].counters.at("channels_kept_clip_bound"), 0);
}

}  // namespace
}  // namespace onnxq::passes
