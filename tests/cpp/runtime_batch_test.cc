// Runs split along the batch dimension (RunOptions::batch_chunk) for models that fix their batch
// size: a Reshape to [1, 48] breaks a batch of 3 in one run; in runs of 1 the outputs are each
// sample's own run (and the hand-computed values), joined.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "onnxq/runtime/batch.h"
#include "onnxq/runtime/session.h"

namespace onnxq {
namespace {

ValueId Val(Graph& g, const std::string& name) {
  ValueId v = *g.AddValue(name);
  g.value(v).dtype = DataType::kFloat;
  return v;
}

// x[1,2,4,4] -> Mul(w[2,1,1]) -> Relu -> Reshape([1, 32]) -> y, and s = ReduceSum(y) (no batch
// dim) when `with_sum`. With `weight_input` the multiplier w is a graph input instead of an
// initializer.
Model FixedBatchModel(bool with_sum = false, bool weight_input = false) {
  Model m;
  m.SetOpsetVersion("", 13);
  Graph& g = m.graph;
  ValueId x = Val(g, "x");
  g.value(x).shape = Shape({Dim::Known(1), Dim::Known(2), Dim::Known(4), Dim::Known(4)});
  g.AddInput(x);
  ValueId w = Val(g, "w");
  if (weight_input) {
    g.value(w).shape = Shape({Dim::Known(2), Dim::Known(1), Dim::Known(1)});
    g.AddInput(w);
  } else {
    EXPECT_TRUE(g.SetInitializer(w, Tensor::Float({2, 1, 1}, std::vector<float>{2.f, -0.5f})).ok());
  }
  ValueId shape = *g.AddValue("shape");
  EXPECT_TRUE(g.SetInitializer(shape, Tensor::Int64({2}, std::vector<int64_t>{1, 32})).ok());
  ValueId mv = Val(g, "m"), r = Val(g, "r"), y = Val(g, "y");
  EXPECT_TRUE(g.AddNode("Mul", {x, w}, {mv}, "mul").ok());
  EXPECT_TRUE(g.AddNode("Relu", {mv}, {r}, "relu").ok());
  EXPECT_TRUE(g.AddNode("Reshape", {r, shape}, {y}, "reshape").ok());
  g.AddOutput(y);
  if (with_sum) {
    ValueId s = Val(g, "s");
    NodeId n = *g.AddNode("ReduceSum", {y}, {s}, "sum");
    g.node(n).attrs.Set(Attribute::Int("keepdims", 0));
    g.AddOutput(s);
  }
  return m;
}

Tensor Input(int64_t n) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::vector<float> v(static_cast<size_t>(n * 32));
  for (auto& f : v) f = d(rng);
  return Tensor::Float({n, 2, 4, 4}, v);
}

TEST(RuntimeBatch, FixedBatchSizeReadsTheInputs) {
  EXPECT_EQ(*FixedBatchSize(FixedBatchModel()), 1);
  Model dyn = FixedBatchModel();
  dyn.graph.value(dyn.graph.FindValue("x")).shape =
      Shape({Dim::Symbolic("N"), Dim::Known(2), Dim::Known(4), Dim::Known(4)});
  EXPECT_EQ(*FixedBatchSize(dyn), 0);
  // A second input fixing another size is an error naming both.
  Model two = FixedBatchModel(false, true);
  auto r = FixedBatchSize(two);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("'x' 1, 'w' 2"), std::string::npos) << r.status().message();
  EXPECT_EQ(AlignToBatch(8, 3), 6);
  EXPECT_EQ(AlignToBatch(2, 3), 3);
  EXPECT_EQ(AlignToBatch(5, 0), 5);
}

TEST(RuntimeBatch, SliceAndConcatRoundTrip) {
  Tensor x = Input(3);
  std::vector<Tensor> parts;
  for (int64_t b = 0; b < 3; ++b) parts.push_back(*SliceBatch(x, b, 1));
  EXPECT_EQ(parts[1].dims(), (std::vector<int64_t>{1, 2, 4, 4}));
  EXPECT_EQ(parts[2].data<float>()[5], x.data<float>()[2 * 32 + 5]);
  Tensor back = *ConcatBatch(parts);
  EXPECT_TRUE(back.BitwiseEqual(x));
  EXPECT_FALSE(SliceBatch(x, 2, 2).ok());
  EXPECT_FALSE(ConcatBatch({Input(1), Tensor::Float({1, 2, 4, 3})}).ok());
  EXPECT_FALSE(ConcatBatch({Tensor::Float({}, std::vector<float>{1.f}), Tensor::Float({}, std::vector<float>{1.f})}).ok());
}

TEST(RuntimeBatch, RunsInPartsOfTheFixedBatch) {
  auto s = *Session::Create(FixedBatchModel());
  const Tensor x = Input(3);
  // One run of 3 samples cannot reshape to [1, 32]: the defect batch_chunk exists for.
  EXPECT_FALSE(s->Run({{"x", x}}).ok());
  RunOptions ro;
  ro.batch_chunk = 1;
  int hook_calls = 0;
  ro.hooked_values = {s->model().graph.FindValue("r")};
  ro.hook = [&](ValueId, const std::string&, Tensor& t) -> Status {
    EXPECT_EQ(t.dims()[0], 1);
    ++hook_calls;
    return Status::Ok();
  };
  auto out = s->Run({{"x", x}}, ro);
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(hook_calls, 3);
  const Tensor& y = out->at("y");
  ASSERT_EQ(y.dims(), (std::vector<int64_t>{3, 32}));
  // Hand-computed: y[n, c*16 + i] = relu(x[n, c, i] * w[c]).
  const float w[2] = {2.f, -0.5f};
  for (int64_t n = 0; n < 3; ++n)
    for (int64_t c = 0; c < 2; ++c)
      for (int64_t i = 0; i < 16; ++i) {
        const int64_t k = (n * 2 + c) * 16 + i;
        ASSERT_FLOAT_EQ(y.data<float>()[k], std::max(0.f, x.data<float>()[k] * w[c])) << k;
      }
}

TEST(RuntimeBatch, ChunkErrorsNameTheProblem) {
  auto s = *Session::Create(FixedBatchModel());
  RunOptions ro;
  ro.batch_chunk = 2;
  auto r = s->Run({{"x", Input(3)}}, ro);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("a batch of 3 samples cannot be split into runs of 2"), std::string::npos)
      << r.status().message();
  // An output without a batch dimension cannot be joined.
  auto s2 = *Session::Create(FixedBatchModel(true));
  ro.batch_chunk = 1;
  r = s2->Run({{"x", Input(2)}}, ro);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("output 's'"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("no batch dimension"), std::string::npos) << r.status().message();
}

TEST(RuntimeBatch, UnbatchedInputsAreGivenWhole) {
  auto s = *Session::Create(FixedBatchModel(false, true));
  const Tensor w = Tensor::Float({2, 1, 1}, std::vector<float>{2.f, -0.5f});
  const Tensor x = Input(3);
  RunOptions ro;
  ro.batch_chunk = 1;
  EXPECT_FALSE(s->Run({{"x", x}, {"w", w}}, ro).ok());  // w's first dim (2) is not the batch (3)
  ro.unbatched_inputs = {"w"};
  auto out = s->Run({{"x", x}, {"w", w}}, ro);
  ASSERT_TRUE(out.ok()) << out.status().message();
  auto ref = *Session::Create(FixedBatchModel());
  for (int64_t n = 0; n < 3; ++n) {
    auto one = ref->Run({{"x", *SliceBatch(x, n, 1)}});
    ASSERT_TRUE(one.ok());
    for (int64_t k = 0; k < 32; ++k) ASSERT_EQ(out->at("y").data<float>()[n * 32 + k], one->at("y").data<float>()[k]);
  }
}

}  // namespace
}  // namespace onnxq
