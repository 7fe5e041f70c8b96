#include <gtest/gtest.h>

#include "onnxq/ir/graph.h"

namespace onnxq {
namespace {

// x -> Relu -> y -> Add(y, w) -> z, with w an initializer.
Graph SmallGraph() {
  Graph g;
  ValueId x = *g.AddValue("x");
  ValueId y = *g.AddValue("y");
  ValueId z = *g.AddValue("z");
  ValueId w = g.AddInitializer("w", Tensor::Float({2}, std::vector<float>{1.f, 2.f}));
  g.AddInput(x);
  g.AddOutput(z);
  EXPECT_TRUE(g.AddNode("Relu", {x}, {y}, "relu").ok());
  EXPECT_TRUE(g.AddNode("Add", {y, w}, {z}, "add").ok());
  return g;
}

TEST(IrGraph, LinksProducersAndUses) {
  Graph g = SmallGraph();
  ASSERT_TRUE(g.Verify().ok());
  ValueId y = g.FindValue("y");
  ASSERT_NE(y, kNoValue);
  EXPECT_EQ(g.Producer(y)->op_type, "Relu");
  ASSERT_EQ(g.value(y).uses().size(), 1u);
  EXPECT_EQ(g.node(g.value(y).uses()[0].node).op_type, "Add");
  EXPECT_TRUE(g.value(g.FindValue("w")).is_initializer());
  EXPECT_EQ(g.RuntimeInputs().size(), 1u);
}

TEST(IrGraph, DuplicateValueNameIsRefused) {
  Graph g;
  ASSERT_TRUE(g.AddValue("a").ok());
  auto again = g.AddValue("a");
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.status().message().find("duplicate value name 'a'"), std::string::npos);
}

TEST(IrGraph, SecondProducerIsRefused) {
  Graph g = SmallGraph();
  auto n = g.AddNode("Relu", {g.FindValue("x")}, {g.FindValue("y")}, "again");
  ASSERT_FALSE(n.ok());
  EXPECT_NE(n.status().message().find("produced by two nodes"), std::string::npos);
}

TEST(IrGraph, TopologicalSortRepairsOrderAndDetectsCycles) {
  Graph g;
  ValueId x = *g.AddValue("x"), a = *g.AddValue("a"), b = *g.AddValue("b");
  g.AddInput(x);
  g.AddOutput(b);
  NodeId second = *g.AddNode("Relu", {a}, {b}, "second");
  NodeId first = *g.AddNode("Relu", {x}, {a}, "first");
  EXPECT_FALSE(g.Verify().ok());  // "second" reads a before it is produced
  ASSERT_TRUE(g.TopologicalSort().ok());
  EXPECT_EQ(g.order(), (std::vector<NodeId>{first, second}));
  EXPECT_TRUE(g.Verify().ok());

  // Close a cycle: first now reads b.
  g.SetNodeInput(first, 0, b);
  Status s = g.TopologicalSort();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("cycle"), std::string::npos) << s.message();
}

TEST(IrGraph, ReplaceAllUsesAndRemoveNode) {
  Graph g = SmallGraph();
  ValueId x = g.FindValue("x"), y = g.FindValue("y");
  NodeId relu = g.Producer(y)->id();
  g.ReplaceAllUses(y, x);
  g.RemoveNode(relu);
  ASSERT_TRUE(g.RemoveValue(y).ok());
  EXPECT_TRUE(g.Verify().ok());
  EXPECT_EQ(g.num_nodes(), 1u);
  EXPECT_EQ(g.value(x).uses().size(), 1u);
  EXPECT_FALSE(g.has_value(y));
}

TEST(IrGraph, CopyIsDeepAndIdsAreStable) {
  Graph g = SmallGraph();
  Graph h = g;
  ValueId w = h.FindValue("w");
  h.value(w).mutable_initializer()->mutable_data<float>()[0] = 42.f;
  EXPECT_EQ(g.value(w).initializer()->data<float>()[0], 1.f);  // copy on write
  EXPECT_EQ(h.value(w).initializer()->data<float>()[0], 42.f);
  EXPECT_EQ(h.FindValue("z"), g.FindValue("z"));
}

TEST(IrTensor, RefusesAbsurdShapesBeforeAllocating) {
  auto t = Tensor::Create(DataType::kFloat, {1000000, 1000000});
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kOutOfRange);
  auto neg = Tensor::Create(DataType::kFloat, {3, -1});
  ASSERT_FALSE(neg.ok());
  auto overflow = Tensor::Create(DataType::kFloat, {int64_t{1} << 40, int64_t{1} << 40});
  ASSERT_FALSE(overflow.ok());
}

TEST(IrTensor, HalfConversionsMatchHandComputedValues) {
  EXPECT_EQ(FloatToHalf(1.0f), 0x3c00);
  EXPECT_EQ(FloatToHalf(-2.0f), 0xc000);
  EXPECT_EQ(FloatToHalf(65504.f), 0x7bff);
  EXPECT_EQ(FloatToHalf(1e6f), 0x7c00);
  EXPECT_EQ(FloatToHalf(5.960464477539063e-08f), 0x0001);  // smallest subnormal
  EXPECT_FLOAT_EQ(HalfToFloat(0x0001), 5.960464477539063e-08f);
  EXPECT_FLOAT_EQ(HalfToFloat(0x3555), 0.333251953125f);
  for (uint32_t h = 0; h < 0x7c00; ++h)  // every finite positive half round-trips
    ASSERT_EQ(FloatToHalf(HalfToFloat(static_cast<uint16_t>(h))), h);
  EXPECT_EQ(FloatToBFloat16(1.0f), 0x3f80);
  EXPECT_FLOAT_EQ(BFloat16ToFloat(0x4049), 3.140625f);
}

TEST(IrAttributes, TypedGettersNameTheAttribute) {
  Attributes a;
  a.Set(Attribute::Int("axis", 1));
  a.Set(Attribute::Floats("scales", {1.f, 2.f}));
  EXPECT_EQ(*a.GetInt("axis"), 1);
  EXPECT_EQ(*a.GetInt("group", 1), 1);
  auto wrong = a.GetFloat("axis");
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("'axis' has type int"), std::string::npos);
  EXPECT_FALSE(a.GetInts("pads").ok());
}

}  // namespace
}  // namespace onnxq
