// Session behaviour beyond single ops: support errors, hooks, extra outputs, re-planning, the
// memory plan, fusion and determinism. Expected values are hand-computed or come from plain loops.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>

#include "onnxq/runtime/session.h"
#include "runtime/memory_plan.h"

namespace onnxq {
namespace {

ValueId Val(Graph& g, const std::string& name, DataType t = DataType::kFloat) {
  ValueId v = *g.AddValue(name);
  g.value(v).dtype = t;
  return v;
}

ValueId Init(Graph& g, const std::string& name, Tensor t) {
  ValueId v = *g.AddValue(name);
  EXPECT_TRUE(g.SetInitializer(v, std::move(t)).ok());
  return v;
}

// x[N,2,4,4] -> Conv(3x3, pad 1, 2->3 channels) -> Relu -> Mul(2) -> Add(x_reduced) style chain:
//   c = Conv(x, w, b); r = Relu(c); m = Mul(r, two); y = Sigmoid(m)
Model ChainModel() {
  Model m;
  m.SetOpsetVersion("", 13);
  Graph& g = m.graph;
  ValueId x = Val(g, "x");
  g.value(x).shape = Shape({Dim::Symbolic("N"), Dim::Known(2), Dim::Known(4), Dim::Known(4)});
  g.AddInput(x);
  std::vector<float> w(3 * 2 * 3 * 3);
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::sin(static_cast<float>(i)) * 0.5f;
  ValueId wv = Init(g, "w", Tensor::Float({3, 2, 3, 3}, w));
  std::vector<float> b = {0.1f, -0.2f, 0.3f};
  ValueId bv = Init(g, "b", Tensor::Float({3}, b));
  std::vector<float> two = {2.f};
  ValueId tv = Init(g, "two", Tensor::Float({}, two));
  ValueId c = Val(g, "c"), r = Val(g, "r"), mm = Val(g, "m"), y = Val(g, "y");
  NodeId conv = *g.AddNode("Conv", {x, wv, bv}, {c}, "conv");
  g.node(conv).attrs.Set(Attribute::Ints("pads", {1, 1, 1, 1}));
  EXPECT_TRUE(g.AddNode("Relu", {c}, {r}, "relu").ok());
  EXPECT_TRUE(g.AddNode("Mul", {r, tv}, {mm}, "mul").ok());
  EXPECT_TRUE(g.AddNode("Sigmoid", {mm}, {y}, "sigmoid").ok());
  g.AddOutput(y);
  return m;
}

// The same computation with plain loops.
std::vector<float> ChainReference(const Tensor& x) {
  const Model m = ChainModel();
  const float* w = m.graph.value(m.graph.FindValue("w")).initializer()->data<float>();
  const float b[3] = {0.1f, -0.2f, 0.3f};
  const int64_t n = x.dims()[0];
  std::vector<float> y(n * 3 * 16);
  for (int64_t bi = 0; bi < n; ++bi)
    for (int oc = 0; oc < 3; ++oc)
      for (int oh = 0; oh < 4; ++oh)
        for (int ow = 0; ow < 4; ++ow) {
          double acc = b[oc];
          for (int ic = 0; ic < 2; ++ic)
            for (int kh = 0; kh < 3; ++kh)
              for (int kw = 0; kw < 3; ++kw) {
                int ih = oh - 1 + kh, iw = ow - 1 + kw;
                if (ih < 0 || ih >= 4 || iw < 0 || iw >= 4) continue;
                acc += x.data<float>()[((bi * 2 + ic) * 4 + ih) * 4 + iw] *
                       w[((oc * 2 + ic) * 3 + kh) * 3 + kw];
              }
          double v = std::max(acc, 0.0) * 2.0;
          y[((bi * 3 + oc) * 4 + oh) * 4 + ow] = static_cast<float>(1.0 / (1.0 + std::exp(-v)));
        }
  return y;
}

Tensor RandomInput(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::vector<float> v(n * 2 * 16);
  for (auto& f : v) f = d(rng);
  return Tensor::Float({n, 2, 4, 4}, v);
}

void ExpectNear(const Tensor& got, const std::vector<float>& want, float tol = 1e-5f) {
  ASSERT_EQ(got.numel(), static_cast<int64_t>(want.size()));
  for (int64_t i = 0; i < got.numel(); ++i)
    ASSERT_NEAR(got.data<float>()[i], want[i], tol) << "element " << i;
}

TEST(RuntimeSession, UnsupportedOperatorFailsAtCreate) {
  Model m = ChainModel();
  Graph& g = m.graph;
  ValueId z = Val(g, "z");
  ASSERT_TRUE(g.AddNode("Hardmax", {g.FindValue("y")}, {z}, "hardmax_1").ok());
  g.SetOutputs({z});
  auto s = Session::Create(m);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kUnsupported);
  EXPECT_EQ(s.status().message(), "unsupported operator Hardmax (opset 13) at node 'hardmax_1'");
  EXPECT_FALSE(CheckSupported(m).ok());
  EXPECT_TRUE(CheckSupported(ChainModel()).ok());
  // Another domain is another operator.
  Model m2 = ChainModel();
  m2.graph.node(m2.graph.order()[1]).domain = "com.microsoft";
  auto s2 = Session::Create(m2);
  ASSERT_FALSE(s2.ok());
  EXPECT_NE(s2.status().message().find("com.microsoft.Relu"), std::string::npos);
}

TEST(RuntimeSession, RunsAndReplansPerInputShape) {
  auto s = Session::Create(ChainModel(), SessionOptions{2, std::nullopt});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  for (int64_t n : {1, 3, 1}) {
    Tensor x = RandomInput(n, static_cast<uint32_t>(n));
    auto out = (*s)->Run({{"x", x}});
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    ASSERT_EQ(out->at("y").dims(), (std::vector<int64_t>{n, 3, 4, 4}));
    ExpectNear(out->at("y"), ChainReference(x));
  }
}

TEST(RuntimeSession, BadFeedsAreRefusedByName) {
  auto s = Session::Create(ChainModel());
  ASSERT_TRUE(s.ok());
  auto missing = (*s)->Run({});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("missing input 'x'"), std::string::npos);
  auto wrong_shape = (*s)->Run({{"x", Tensor::Float({1, 3, 4, 4})}});
  ASSERT_FALSE(wrong_shape.ok());
  EXPECT_NE(wrong_shape.status().message().find("'x' has shape [1,3,4,4]"), std::string::npos);
  auto wrong_type = (*s)->Run({{"x", Tensor::Int64({1, 2, 4, 4})}});
  ASSERT_FALSE(wrong_type.ok());
  EXPECT_NE(wrong_type.status().message().find("int64"), std::string::npos);
  auto unknown = (*s)->Run({{"x", RandomInput(1, 1)}, {"nope", Tensor::Float({1})}});
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("'nope'"), std::string::npos);
}

TEST(RuntimeSession, HookSeesEveryProducedValueAndCanReplaceIt) {
  auto s = Session::Create(ChainModel());
  ASSERT_TRUE(s.ok());
  Tensor x = RandomInput(2, 7);
  std::vector<std::string> seen;
  RunOptions ro;
  ro.hook = [&](ValueId, const std::string& name, Tensor& t) -> Status {
    seen.push_back(name);
    if (name == "r") {
      // Replace the Relu output with zeros: y becomes sigmoid(0) = 0.5 everywhere.
      float* p = t.mutable_data<float>();
      for (int64_t i = 0; i < t.numel(); ++i) p[i] = 0.f;
    }
    return Status::Ok();
  };
  auto out = (*s)->Run({{"x", x}}, ro);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  // With a hook on everything, Conv and Relu are not fused: both values are seen.
  EXPECT_EQ(seen, (std::vector<std::string>{"c", "r", "m", "y"}));
  EXPECT_EQ((*s)->last_stats().fused, 0);
  EXPECT_EQ((*s)->last_stats().steps, 4);
  for (int64_t i = 0; i < out->at("y").numel(); ++i) ASSERT_EQ(out->at("y").data<float>()[i], 0.5f);
  // The next run without the hook is unaffected.
  auto clean = (*s)->Run({{"x", x}});
  ASSERT_TRUE(clean.ok());
  ExpectNear(clean->at("y"), ChainReference(x));
  EXPECT_EQ((*s)->last_stats().fused, 1);  // Conv+Relu fused when nobody looks at c
  EXPECT_EQ((*s)->last_stats().steps, 3);
}

TEST(RuntimeSession, ListedHooksAndExtraOutputs) {
  Model model = ChainModel();
  auto s = Session::Create(model);
  ASSERT_TRUE(s.ok());
  Tensor x = RandomInput(1, 3);
  std::vector<std::string> seen;
  RunOptions ro;
  ro.hook = [&](ValueId, const std::string& name, Tensor&) -> Status {
    seen.push_back(name);
    return Status::Ok();
  };
  ro.hooked_values = {model.graph.FindValue("m")};
  ro.extra_outputs = {"c"};
  auto out = (*s)->Run({{"x", x}}, ro);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(seen, (std::vector<std::string>{"m"}));
  ASSERT_EQ(out->count("c"), 1u);
  // y = sigmoid(2 * relu(c)) recomputed from the returned pre-activation.
  const Tensor& c = out->at("c");
  for (int64_t i = 0; i < c.numel(); ++i) {
    float want = 1.f / (1.f + std::exp(-2.f * std::max(c.data<float>()[i], 0.f)));
    ASSERT_NEAR(out->at("y").data<float>()[i], want, 1e-6f);
  }
  ExpectNear(out->at("y"), ChainReference(x));
  // A hook error aborts the run with that error.
  ro.hook = [](ValueId, const std::string&, Tensor&) -> Status { return Cancelled("stop"); };
  auto stopped = (*s)->Run({{"x", x}}, ro);
  ASSERT_FALSE(stopped.ok());
  EXPECT_EQ(stopped.status().code(), StatusCode::kCancelled);
  auto bad = (*s)->Run({{"x", x}}, RunOptions{{}, {}, {"no_such_value"}});
  EXPECT_FALSE(bad.ok());
}

// Hooked values are handed over without copies; a hook that keeps a tensor keeps its contents
// (the executor copies on write before the next run overwrites it).
TEST(RuntimeSession, HookMayKeepTensorsAcrossRuns) {
  Model model = ChainModel();
  auto s = Session::Create(model);
  ASSERT_TRUE(s.ok());
  std::vector<Tensor> kept;
  RunOptions ro;
  ro.hooked_values = {model.graph.FindValue("m"), model.graph.FindValue("y")};
  ro.hook = [&](ValueId, const std::string& name, Tensor& t) -> Status {
    if (name == "m") kept.push_back(t);
    return Status::Ok();
  };
  Tensor x1 = RandomInput(2, 21), x2 = RandomInput(2, 22);
  auto out1 = (*s)->Run({{"x", x1}}, ro);
  ASSERT_TRUE(out1.ok()) << out1.status().ToString();
  Tensor y1 = out1->at("y").Clone();
  auto out2 = (*s)->Run({{"x", x2}}, ro);
  ASSERT_TRUE(out2.ok());
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_FALSE(kept[0].BitwiseEqual(kept[1]));
  // The first run's outputs and kept intermediates still hold the first run's values.
  EXPECT_TRUE(out1->at("y").BitwiseEqual(y1));
  ExpectNear(out1->at("y"), ChainReference(x1));
  ExpectNear(out2->at("y"), ChainReference(x2));
  for (int64_t i = 0; i < kept[0].numel(); ++i)
    ASSERT_NEAR(1.f / (1.f + std::exp(-kept[0].data<float>()[i])), y1.data<float>()[i], 1e-6f);
  // A hook that swaps in a new tensor of the same shape is honoured.
  ro.hook = [&](ValueId, const std::string& name, Tensor& t) -> Status {
    if (name == "m") {
      std::vector<float> zeros(static_cast<size_t>(t.numel()), 0.f);
      t = Tensor::Float(t.dims(), zeros);
    }
    return Status::Ok();
  };
  auto out3 = (*s)->Run({{"x", x1}}, ro);
  ASSERT_TRUE(out3.ok());
  for (int64_t i = 0; i < out3->at("y").numel(); ++i) ASSERT_EQ(out3->at("y").data<float>()[i], 0.5f);
  // Changing the shape is refused, and the session stays usable.
  ro.hook = [&](ValueId, const std::string& name, Tensor& t) -> Status {
    if (name == "m") t = Tensor::Float({1});
    return Status::Ok();
  };
  auto bad = (*s)->Run({{"x", x1}}, ro);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("changed the type or shape of 'm'"), std::string::npos);
  ro.hook = [](ValueId, const std::string&, Tensor&) -> Status { return Status::Ok(); };
  auto again = (*s)->Run({{"x", x1}}, ro);
  ASSERT_TRUE(again.ok());
  ExpectNear(again->at("y"), ChainReference(x1));
}

TEST(RuntimeSession, DeterministicForAThreadCount) {
  for (int threads : {1, 2}) {
    auto s = Session::Create(ChainModel(), SessionOptions{threads, std::nullopt});
    ASSERT_TRUE(s.ok());
    EXPECT_EQ((*s)->num_threads(), threads);
    Tensor x = RandomInput(4, 11);
    auto a = (*s)->Run({{"x", x}});
    auto b = (*s)->Run({{"x", x}});
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_TRUE(a->at("y").BitwiseEqual(b->at("y")));
  }
}

TEST(RuntimeSession, PeakMemoryReusesBuffers) {
  auto s = Session::Create(ChainModel());
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE((*s)->Run({{"x", RandomInput(8, 1)}}).ok());
  // Conv+Relu are fused, so two [8,3,4,4] float buffers would do; certainly fewer than 3.
  const int64_t one = 8 * 3 * 16 * 4;
  EXPECT_GE((*s)->last_stats().peak_bytes, 2 * one);
  EXPECT_LT((*s)->last_stats().peak_bytes, 3 * one);
}

TEST(RuntimeMemoryPlan, NeverOverlapsLiveBuffersAndReusesDeadOnes) {
  // A chain: each value lives from its step to the next.
  std::vector<runtime::BufferRequest> chain;
  for (ValueId v = 0; v < 6; ++v) chain.push_back({v, 1000, v, v + 1});
  auto p = runtime::PlanMemory(chain);
  EXPECT_EQ(p.total_bytes, 2 * 1024);  // two 64-byte-aligned buffers alternate

  std::mt19937 rng(5);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<runtime::BufferRequest> reqs;
    for (ValueId v = 0; v < 40; ++v) {
      int64_t a = rng() % 30, len = rng() % 6;
      reqs.push_back({v, static_cast<int64_t>(1 + rng() % 5000), a, a + len});
    }
    auto plan = runtime::PlanMemory(reqs);
    ASSERT_EQ(plan.offsets.size(), reqs.size());
    std::map<ValueId, int64_t> off(plan.offsets.begin(), plan.offsets.end());
    for (size_t i = 0; i < reqs.size(); ++i) {
      EXPECT_EQ(off[reqs[i].value] % 64, 0);
      EXPECT_LE(off[reqs[i].value] + reqs[i].bytes, plan.total_bytes);
      for (size_t j = i + 1; j < reqs.size(); ++j) {
        const auto &a = reqs[i], &b = reqs[j];
        bool live_together = a.first_step <= b.last_step && b.first_step <= a.last_step;
        bool overlap = off[a.value] < off[b.value] + b.bytes && off[b.value] < off[a.value] + a.bytes;
        ASSERT_FALSE(live_together && overlap) << "values " << a.value << " and " << b.value;
      }
    }
  }
}

// QuantizeLinear rounds half to even and saturates; DequantizeLinear undoes the affine map.
TEST(RuntimeSession, QuantizeLinearRoundsHalfToEvenAndSaturates) {
  Model m;
  m.SetOpsetVersion("", 13);
  Graph& g = m.graph;
  ValueId x = Val(g, "x");
  g.AddInput(x);
  std::vector<float> sc = {1.f};
  ValueId s = Init(g, "s", Tensor::Float({}, sc));
  int8_t zero = 0;
  ValueId z8 = Init(g, "z8", *Tensor::FromBytes(DataType::kInt8, {}, &zero, 1));
  uint8_t mid = 128;
  ValueId zu = Init(g, "zu", *Tensor::FromBytes(DataType::kUint8, {}, &mid, 1));
  ValueId q8 = Val(g, "q8", DataType::kInt8), qu = Val(g, "qu", DataType::kUint8), d = Val(g, "d");
  ASSERT_TRUE(g.AddNode("QuantizeLinear", {x, s, z8}, {q8}, "q8").ok());
  ASSERT_TRUE(g.AddNode("QuantizeLinear", {x, s, zu}, {qu}, "qu").ok());
  ASSERT_TRUE(g.AddNode("DequantizeLinear", {qu, s, zu}, {d}, "dq").ok());
  g.AddOutput(q8);
  g.AddOutput(qu);
  g.AddOutput(d);
  auto sess = Session::Create(m);
  ASSERT_TRUE(sess.ok()) << sess.status().ToString();
  std::vector<float> xs = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 0.49f, 300.f, -300.f, 126.5f, -127.5f};
  auto out = (*sess)->Run({{"x", Tensor::Float({static_cast<int64_t>(xs.size())}, xs)}});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  const std::vector<int> want8 = {0, 2, 2, 0, -2, -2, 0, 127, -128, 126, -128};
  const std::vector<int> wantu = {128, 130, 130, 128, 126, 126, 128, 255, 0, 254, 0};
  for (size_t i = 0; i < xs.size(); ++i) {
    EXPECT_EQ(out->at("q8").data<int8_t>()[i], want8[i]) << xs[i];
    EXPECT_EQ(out->at("qu").data<uint8_t>()[i], wantu[i]) << xs[i];
    EXPECT_EQ(out->at("d").data<float>()[i], static_cast<float>(wantu[i] - 128)) << xs[i];
  }
}

}  // namespace
}  // namespace onnxq

namespace onnxq {
namespace {

// auto_pad SAME_UPPER pads depend on the input size: each size gets its own packed kernel.
TEST(RuntimeSession, SamePaddedConvAcrossInputSizes) {
  Model m;
  m.SetOpsetVersion("", 13);
  Graph& g = m.graph;
  ValueId x = Val(g, "x");
  g.AddInput(x);
  std::vector<float> w(4 * 3 * 3 * 3);
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::cos(0.7f * static_cast<float>(i));
  ValueId wv = Init(g, "w", Tensor::Float({4, 3, 3, 3}, w));
  ValueId y = Val(g, "y");
  NodeId conv = *g.AddNode("Conv", {x, wv}, {y}, "conv");
  g.node(conv).attrs.Set(Attribute::String("auto_pad", "SAME_UPPER"));
  g.node(conv).attrs.Set(Attribute::Ints("strides", {2, 2}));
  g.AddOutput(y);
  auto s = Session::Create(m, SessionOptions{1, std::nullopt});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  for (int64_t size : {5, 6, 5}) {
    std::vector<float> xv(2 * 3 * size * size);
    for (size_t i = 0; i < xv.size(); ++i) xv[i] = std::sin(0.3f * static_cast<float>(i));
    auto out = (*s)->Run({{"x", Tensor::Float({2, 3, size, size}, xv)}});
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    const int64_t o = (size + 1) / 2;  // ceil(size / 2)
    ASSERT_EQ(out->at("y").dims(), (std::vector<int64_t>{2, 4, o, o}));
    // SAME_UPPER: total padding (o-1)*2+3-size, the odd one at the end.
    const int64_t total = (o - 1) * 2 + 3 - size, top = total / 2;
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t oc = 0; oc < 4; ++oc)
        for (int64_t oh = 0; oh < o; ++oh)
          for (int64_t ow = 0; ow < o; ++ow) {
            double acc = 0;
            for (int64_t ic = 0; ic < 3; ++ic)
              for (int64_t kh = 0; kh < 3; ++kh)
                for (int64_t kw = 0; kw < 3; ++kw) {
                  int64_t ih = oh * 2 - top + kh, iw = ow * 2 - top + kw;
                  if (ih < 0 || ih >= size || iw < 0 || iw >= size) continue;
                  acc += xv[((b * 3 + ic) * size + ih) * size + iw] * w[((oc * 3 + ic) * 3 + kh) * 3 + kw];
                }
            ASSERT_NEAR(out->at("y").data<float>()[((b * 4 + oc) * o + oh) * o + ow], acc, 1e-4)
                << "size " << size;
          }
  }
}

// Per-axis QuantizeLinear and int32 (bias) DequantizeLinear.
TEST(RuntimeSession, PerAxisQuantizeAndInt32Dequantize) {
  Model m;
  m.SetOpsetVersion("", 13);
  Graph& g = m.graph;
  ValueId x = Val(g, "x");
  g.AddInput(x);
  std::vector<float> sc = {0.5f, 2.f};
  ValueId s = Init(g, "s", Tensor::Float({2}, sc));
  int8_t zp[2] = {1, -3};
  ValueId z = Init(g, "z", *Tensor::FromBytes(DataType::kInt8, {2}, zp, 2));
  int32_t bias[2] = {-7, 100000};
  ValueId bq = Init(g, "bq", *Tensor::FromBytes(DataType::kInt32, {2}, bias, 8));
  std::vector<float> bs = {0.25f, 1e-3f};
  ValueId bsv = Init(g, "bs", Tensor::Float({2}, bs));
  ValueId q = Val(g, "q", DataType::kInt8), bd = Val(g, "bd");
  NodeId qn = *g.AddNode("QuantizeLinear", {x, s, z}, {q}, "q");
  g.node(qn).attrs.Set(Attribute::Int("axis", 0));
  NodeId dn = *g.AddNode("DequantizeLinear", {bq, bsv}, {bd}, "dq");
  g.node(dn).attrs.Set(Attribute::Int("axis", 0));
  g.AddOutput(q);
  g.AddOutput(bd);
  auto sess = Session::Create(m);
  ASSERT_TRUE(sess.ok()) << sess.status().ToString();
  std::vector<float> xv = {0.25f, 0.75f, -100.f, 5.f, 3.f, -1.f};  // [2,3], channel = row
  auto out = (*sess)->Run({{"x", Tensor::Float({2, 3}, xv)}});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  // Row 0: x/0.5 = 0.5 -> 0, 1.5 -> 2, -200 -> -200; +1, saturate.  Row 1: x/2 = 2.5 -> 2,
  // 1.5 -> 2, -0.5 -> -0; -3.
  const int want[6] = {1, 3, -128, -1, -1, -3};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(out->at("q").data<int8_t>()[i], want[i]) << i;
  EXPECT_FLOAT_EQ(out->at("bd").data<float>()[0], -1.75f);
  EXPECT_FLOAT_EQ(out->at("bd").data<float>()[1], 100.f);
}

}  // namespace
}  // namespace onnxq
