// Structural before/after tests of the pass-through and clean-up passes on hand-built graphs.
#include "passes_test_util.h"

namespace onnxq::passes {
namespace {
using namespace ptest;

TEST(PassesRemoveIdentity, ConsumersReadTheInputAndOutputNamesSurvive) {
  Model m = EmptyModel();
  Builder b(m);
  ValueId x = b.Input("x", {1, 4});
  NodeId r1 = b.Node("Relu", "r1", {x});
  NodeId id1 = b.Node("Identity", "id1", {b.Out(r1)});
  NodeId r2 = b.Node("Relu", "r2", {b.Out(id1)});
  NodeId id2 = b.Node("Identity", "id2", {b.Out(r2)});  // feeds the graph output "id2_out"
  b.Output(b.Out(id2));
  PassReport rep = RunPasses(m, "remove-identity");
  const Graph& g = m.graph;
  EXPECT_EQ(CountOps(g, "Identity"), 0);
  EXPECT_EQ(g.node(r2).input(0), b.Out(r1));
  ASSERT_EQ(g.outputs().size(), 1u);
  EXPECT_EQ(g.value(g.outputs()[0]).name(), "id2_out");  // interface kept
  EXPECT_EQ(g.Producer(g.outputs()[0])->id(), r2);
  EXPECT_EQ(rep.passes[0].counters.at("removed"), 2);
}

TEST(PassesRemoveIdentity, KeepsIdentityFromGraphInputToOutput) {
  Model m = EmptyModel();
  Builder b(m);
  ValueId x = b.Input("x", {2});
  NodeId id = b.Node("Identity", "id", {x});
  b.Output(b.Out(id));
  PassReport rep = RunPasses(m, "remove-identity");
  EXPECT_EQ(CountOps(m.graph, "Identity"), 1);
  EXPECT_FALSE(rep.passes[0].changed);
  ASSERT_EQ(rep.passes[0].notes.size(), 1u);
  EXPECT_NE(rep.passes[0].notes[0].find("graph input"), std::string::npos) << rep.passes[0].notes[0];
}

TEST(PassesRemoveDropout, RemovesInferenceDropoutAndRefusesUsedMaskOrTraining) {
  Model m = EmptyModel(13);
  Builder b(m);
  ValueId x = b.Input("x", {1, 4});
  NodeId d1 = b.Node("Dropout", "d1", {x, b.Const("ratio", {}, {0.5f})}, 2);
  NodeId r = b.Node("Relu", "r", {b.Out(d1)});
  // Mask used: must stay.
  NodeId d2 = b.Node("Dropout", "d2", {b.Out(r)}, 2);
  NodeId cast = b.Node("Not", "use_mask", {b.Out(d2, 1)});
  // training_mode = true: must stay.
  ValueId t = m.graph.AddInitializer("train", *Tensor::FromBytes(DataType::kBool, {}, "\x01", 1));
  NodeId d3 = b.Node("Dropout", "d3", {b.Out(d2), b.Const("r3", {}, {0.1f}), t});
  b.Output(b.Out(d3));
  b.Output(b.Out(cast));
  PassReport rep = RunPasses(m, "remove-dropout");
  const Graph& g = m.graph;
  EXPECT_FALSE(g.has_node(d1));
  EXPECT_EQ(g.node(r).input(0), x);
  EXPECT_TRUE(g.has_node(d2));
  EXPECT_TRUE(g.has_node(d3));
  EXPECT_EQ(rep.passes[0].counters.at("removed"), 1);
  EXPECT_EQ(rep.passes[0].counters.at("kept"), 2);
  std::string notes;
  for (const auto& n : rep.passes[0].notes) notes += n + "\n";
  EXPECT_NE(notes.find("mask output"), std::string::npos) << notes;
  EXPECT_NE(notes.find("training_mode"), std::string::npos) << notes;
}

TEST(PassesRemoveDropout, Opset6IsTestAttribute) {
  Model m = EmptyModel(6);
  Builder b(m);
  ValueId x = b.Input("x", {4});
  NodeId d = b.Node("Dropout", "d", {x});
  b[d].attrs.Set(Attribute::Int("is_test", 0));
  NodeId r = b.Node("Relu", "r", {b.Out(d)});
  b.Output(b.Out(r));
  RunPasses(m, "remove-dropout");
  EXPECT_TRUE(m.graph.has_node(d));  // training behaviour in opset < 7 when is_test = 0
  m.graph.node(d).attrs.Set(Attribute::Int("is_test", 1));
  RunPasses(m, "remove-dropout");
  EXPECT_FALSE(m.graph.has_node(d));
}

TEST(PassesDeadCode, RemovesUnusedBranchesAndInitializers) {
  Model m = EmptyModel();
  Builder b(m);
  ValueId x = b.Input("x", {4});
  ValueId w = b.Const("w", {4}, {1, 2, 3, 4});
  ValueId unused = b.Const("unused", {1}, {7});
  NodeId live = b.Node("Add", "live", {x, w});
  NodeId dead1 = b.Node("Mul", "dead1", {x, w});
  NodeId dead2 = b.Node("Relu", "dead2", {b.Out(dead1)});
  b.Output(b.Out(live));
  PassReport rep = RunPasses(m, "dead-code");
  const Graph& g = m.graph;
  EXPECT_FALSE(g.has_node(dead1));
  EXPECT_FALSE(g.has_node(dead2));
  EXPECT_TRUE(g.has_node(live));
  EXPECT_FALSE(g.has_value(unused));
  EXPECT_TRUE(g.has_value(w));
  EXPECT_EQ(rep.passes[0].counters.at("nodes_removed"), 2);
  // Running again changes nothing.
  PassReport again = RunPasses(m, "dead-code");
  EXPECT_FALSE(again.passes[0].changed);
}

TEST(PassesManager, PipelineParsingAndUnknownNames) {
  auto p = ParsePipeline("default,cle");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->size(), DefaultPipeline().size() + 1);
  EXPECT_EQ(p->back(), "cle");
  EXPECT_TRUE(ParsePipeline("none")->empty());
  auto bad = ParsePipeline("remove-identity,frobnicate");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("unknown pass 'frobnicate'"), std::string::npos);
  EXPECT_NE(bad.status().message().find("fold-batchnorm"), std::string::npos);  // lists known ones
  for (const auto& name : DefaultPipeline()) EXPECT_FALSE(PassDescription(name).empty()) << name;
}

TEST(PassesManager, RefusesAnInvalidInputModelAndLeavesItUntouched) {
  Model m = EmptyModel();
  Builder b(m);
  ValueId x = b.Input("x", {4});
  NodeId second = b.Node("Relu", "second", {x});
  NodeId id = b.Node("Identity", "id", {b.Out(second)});
  b.Output(b.Out(id));
  // Make the order non-topological: second now reads id's output (a cycle).
  m.graph.SetNodeInput(second, 0, b.Out(id));
  OptimizeOptions opt;
  opt.passes = {"remove-identity"};
  auto r = Optimize(m, opt);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("fails verification"), std::string::npos) << r.status().message();
  EXPECT_TRUE(m.graph.has_node(id));
}

TEST(PassesManager, ReportTextAndJsonNameEveryPass) {
  Model m = EmptyModel();
  Builder b(m);
  ValueId x = b.Input("x", {4});
  NodeId id = b.Node("Identity", "id", {x});
  NodeId r = b.Node("Relu", "r", {b.Out(id)});
  b.Output(b.Out(r));
  PassReport rep = RunPasses(m, "remove-identity,dead-code");
  ASSERT_EQ(rep.passes.size(), 2u);
  EXPECT_TRUE(rep.changed());
  std::string text = rep.ToText(true), json = rep.ToJson();
  EXPECT_NE(text.find("remove-identity"), std::string::npos);
  EXPECT_NE(text.find("changed"), std::string::npos);
  EXPECT_NE(json.find("\"name\": \"dead-code\""), std::string::npos) << json;
  EXPECT_EQ(rep.passes[0].nodes_before, 2);
  EXPECT_EQ(rep.passes[0].nodes_after, 1);
}

}  // namespace
}  // namespace onnxq::passes
