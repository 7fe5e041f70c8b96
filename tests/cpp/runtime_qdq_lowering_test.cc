// QDQ lowering (src/runtime/qdq_lowering.cc) on a hand-built QDQ graph: which groups become
// integer nodes, which stay float islands, and that the integer execution stays within one
// quantization step of the float Q/DQ reference (integer_qdq = false) on every ISA. Bit-exactness
// with ONNX Runtime is checked by tests/python/test_int8_qdq_vs_ort.py, where ONNX Runtime exists.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "onnxq/kernels/cpu.h"
#include "onnxq/runtime/session.h"

namespace onnxq {
namespace {

class QdqGraph {
 public:
  QdqGraph() {
    m.SetOpsetVersion("", 13);
    m.graph.name = "qdq";
  }
  Graph& g() { return m.graph; }

  ValueId Value(const std::string& name, DataType t, std::vector<int64_t> dims = {}) {
    ValueId v = *g().AddValue(name);
    g().value(v).dtype = t;
    if (!dims.empty()) g().value(v).shape = Shape::FromDims(dims);
    return v;
  }
  template <typename T>
  ValueId Const(const std::string& name, DataType t, std::vector<int64_t> dims, std::vector<T> v) {
    Tensor x = *Tensor::Create(t, dims);
    std::memcpy(x.mutable_raw(), v.data(), v.size() * sizeof(T));
    return g().AddInitializer(name, std::move(x));
  }
  ValueId F(const std::string& name, float v) { return Const<float>(name, DataType::kFloat, {}, {v}); }
  ValueId U8(const std::string& name, uint8_t v) { return Const<uint8_t>(name, DataType::kUint8, {}, {v}); }

  NodeId Node(const std::string& op, std::vector<ValueId> in, std::vector<ValueId> out) {
    auto n = g().AddNode(op, in, out, op + std::to_string(count_++));
    EXPECT_TRUE(n.ok()) << n.status().ToString();
    return *n;
  }
  // x (float) -> Q -> DQ; returns {q value, dq value}.
  std::pair<ValueId, ValueId> Qdq(ValueId x, const std::string& name, float scale, uint8_t zp,
                                  std::vector<int64_t> dims) {
    ValueId s = F(name + "_s", scale), z = U8(name + "_z", zp);
    ValueId q = Value(name + "_q", DataType::kUint8, dims);
    ValueId d = Value(name + "_dq", DataType::kFloat, dims);
    Node("QuantizeLinear", {x, s, z}, {q});
    Node("DequantizeLinear", {q, s, z}, {d});
    return {q, d};
  }
  // DQ(int8 per-channel weights) and DQ(int32 bias) for a conv reading x_scale.
  std::pair<ValueId, ValueId> Weights(const std::string& name, std::vector<int64_t> wdims,
                                      float x_scale, uint32_t seed) {
    const int64_t co = wdims[0];
    int64_t n = 1;
    for (int64_t d : wdims) n *= d;
    std::mt19937 rng(seed);
    std::vector<int8_t> w(static_cast<size_t>(n));
    for (auto& v : w) v = static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
    std::vector<float> ws(static_cast<size_t>(co)), bs(static_cast<size_t>(co));
    std::vector<int8_t> wz(static_cast<size_t>(co), 0);
    std::vector<int32_t> b(static_cast<size_t>(co)), bz(static_cast<size_t>(co), 0);
    for (int64_t c = 0; c < co; ++c) {
      ws[c] = 0.002f + 0.0005f * static_cast<float>(c % 5);
      bs[c] = x_scale * ws[c];
      b[c] = static_cast<int32_t>(rng() % 4001) - 2000;
    }
    ValueId wv = Value(name + "_w", DataType::kFloat, wdims), bv = Value(name + "_b", DataType::kFloat, {co});
    NodeId wn = Node("DequantizeLinear", {Const<int8_t>(name + "_wq", DataType::kInt8, wdims, w),
                                         Const<float>(name + "_ws", DataType::kFloat, {co}, ws),
                                         Const<int8_t>(name + "_wz", DataType::kInt8, {co}, wz)},
                     {wv});
    g().node(wn).attrs.Set(Attribute::Int("axis", 0));
    NodeId bn = Node("DequantizeLinear", {Const<int32_t>(name + "_bq", DataType::kInt32, {co}, b),
                                         Const<float>(name + "_bs", DataType::kFloat, {co}, bs),
                                         Const<int32_t>(name + "_bz", DataType::kInt32, {co}, bz)},
                     {bv});
    g().node(bn).attrs.Set(Attribute::Int("axis", 0));
    return {wv, bv};
  }
  NodeId Conv(ValueId x, std::pair<ValueId, ValueId> wb, ValueId y, int64_t k, int64_t group) {
    NodeId n = Node("Conv", {x, wb.first, wb.second}, {y});
    g().node(n).attrs.Set(Attribute::Ints("kernel_shape", {k, k}));
    g().node(n).attrs.Set(Attribute::Ints("pads", {k / 2, k / 2, k / 2, k / 2}));
    g().node(n).attrs.Set(Attribute::Int("group", group));
    return n;
  }

  Model m;

 private:
  int count_ = 0;
};

int CountOps(const Graph& g, const std::string& op, const std::string& domain = "") {
  int c = 0;
  for (NodeId n : g.order()) c += g.node(n).op_type == op && g.node(n).domain == domain;
  return c;
}

// input [1,4,10,10] -> Q/DQ -> Conv 3x3 (4->8) -> Clip(0,6) -> Q/DQ -> depthwise 3x3 -> Relu ->
// Q/DQ --+--> Add <-- Q/DQ <- Conv 1x1 (branch from the first Q/DQ) ; Add -> Q/DQ -> MaxPool 2x2
// -> Q/DQ (same params) -> GlobalAveragePool -> Q/DQ -> Reshape [1,8] -> Q/DQ (same params) ->
// output "out" (float). A broadcasting Add (float island) reads the Conv 1x1 branch: "side".
Model BuildModel() {
  QdqGraph b;
  Graph& g = b.g();
  ValueId in = b.Value("input", DataType::kFloat, {1, 4, 10, 10});
  g.AddInput(in);
  auto [q0, d0] = b.Qdq(in, "x0", 0.02f, 128, {1, 4, 10, 10});
  ValueId c1 = b.Value("c1", DataType::kFloat, {1, 8, 10, 10});
  b.Conv(d0, b.Weights("conv1", {8, 4, 3, 3}, 0.02f, 1), c1, 3, 1);
  ValueId r1 = b.Value("r1", DataType::kFloat, {1, 8, 10, 10});
  b.Node("Clip", {c1, b.F("lo", 0.f), b.F("hi", 6.f)}, {r1});
  auto [q1, d1] = b.Qdq(r1, "a1", 6.f / 255.f, 0, {1, 8, 10, 10});
  ValueId c2 = b.Value("c2", DataType::kFloat, {1, 8, 10, 10});
  b.Conv(d1, b.Weights("dw", {8, 1, 3, 3}, 6.f / 255.f, 2), c2, 3, 8);
  ValueId r2 = b.Value("r2", DataType::kFloat, {1, 8, 10, 10});
  b.Node("Relu", {c2}, {r2});
  auto [q2, d2] = b.Qdq(r2, "a2", 0.01f, 0, {1, 8, 10, 10});
  ValueId c3 = b.Value("c3", DataType::kFloat, {1, 8, 10, 10});
  b.Conv(d0, b.Weights("pw", {8, 4, 1, 1}, 0.02f, 3), c3, 1, 1);
  auto [q3, d3] = b.Qdq(c3, "a3", 0.03f, 120, {1, 8, 10, 10});
  ValueId s = b.Value("s", DataType::kFloat, {1, 8, 10, 10});
  b.Node("Add", {d2, d3}, {s});
  auto [q4, d4] = b.Qdq(s, "sum", 0.04f, 100, {1, 8, 10, 10});
  ValueId mp = b.Value("mp", DataType::kFloat, {1, 8, 5, 5});
  NodeId mpn = b.Node("MaxPool", {d4}, {mp});
  g.node(mpn).attrs.Set(Attribute::Ints("kernel_shape", {2, 2}));
  g.node(mpn).attrs.Set(Attribute::Ints("strides", {2, 2}));
  ValueId q5 = b.Value("mp_q", DataType::kUint8, {1, 8, 5, 5}), d5 = b.Value("mp_dq", DataType::kFloat, {1, 8, 5, 5});
  ValueId s4 = g.FindValue("sum_s"), z4 = g.FindValue("sum_z");
  b.Node("QuantizeLinear", {mp, s4, z4}, {q5});
  b.Node("DequantizeLinear", {q5, s4, z4}, {d5});
  ValueId gp = b.Value("gap", DataType::kFloat, {1, 8, 1, 1});
  b.Node("GlobalAveragePool", {d5}, {gp});
  auto [q6, d6] = b.Qdq(gp, "gap", 0.02f, 3, {1, 8, 1, 1});
  ValueId fl = b.Value("flat", DataType::kFloat, {1, 8});
  b.Node("Reshape", {d6, b.Const<int64_t>("shape", DataType::kInt64, {2}, {1, 8})}, {fl});
  ValueId q7 = b.Value("flat_q", DataType::kUint8, {1, 8}), out = b.Value("out", DataType::kFloat, {1, 8});
  b.Node("QuantizeLinear", {fl, g.FindValue("gap_s"), g.FindValue("gap_z")}, {q7});
  b.Node("DequantizeLinear", {q7, g.FindValue("gap_s"), g.FindValue("gap_z")}, {out});
  g.AddOutput(out);
  // Float island: a broadcasting Add (the int8 Add takes equal shapes or one element only).
  ValueId side = b.Value("side", DataType::kFloat, {1, 8, 10, 10});
  b.Node("Add", {d3, b.Const<float>("bias", DataType::kFloat, {1, 8, 1, 1},
                                    {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f})},
         {side});
  g.AddOutput(side);
  (void)q0;
  (void)q1;
  (void)q2;
  (void)q3;
  (void)q4;
  (void)q6;
  EXPECT_TRUE(g.Verify().ok());
  return b.m;
}

std::map<std::string, Tensor> Feeds(uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, 1.f);
  Tensor x = Tensor::Float({1, 4, 10, 10});
  for (int64_t i = 0; i < x.numel(); ++i) x.mutable_data<float>()[i] = d(rng);
  return {{"input", x}};
}

TEST(QdqLowering, LowersEveryPatternAndKeepsFloatIslands) {
  const Model m = BuildModel();
  auto s = Session::Create(m, {});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  // 3 Conv, Add, MaxPool, GlobalAveragePool, Reshape.
  EXPECT_EQ((*s)->lowered_qdq_groups(), 7);
  const Graph& g = (*s)->model().graph;
  // All three convolutions and the Add run channels-last (com.microsoft QLinearConv with
  // channels_last = 1); the 3x3 and the 1x1 on the input read it in NCHW (onnxq_nchw_input).
  EXPECT_EQ(CountOps(g, "QLinearConv"), 0);
  EXPECT_EQ(CountOps(g, "QLinearConv", "com.microsoft"), 3);
  int nchw_in = 0;
  for (NodeId n : g.order())
    if (g.node(n).Is("QLinearConv", "com.microsoft")) {
      EXPECT_EQ(g.node(n).attrs.GetInt("channels_last", 0).value(), 1);
      nchw_in += g.node(n).attrs.GetInt("onnxq_nchw_input", 0).value() == 1;
    }
  EXPECT_EQ(nchw_in, 2);
  // Back to NCHW where the chain ends: the Add's sum for the MaxPool, the 1x1 output for the
  // float island.
  EXPECT_EQ(CountOps(g, "Transpose"), 2);
  EXPECT_TRUE(g.FindValue("a1_q") == kNoValue);
  EXPECT_TRUE(g.FindValue("a1_q_nhwc") != kNoValue);
  EXPECT_TRUE(g.FindValue("sum_q") != kNoValue);
  EXPECT_EQ(CountOps(g, "QLinearAdd", "com.microsoft"), 1);
  EXPECT_EQ(CountOps(g, "Int8MaxPool", "ai.onnxq"), 1);
  EXPECT_EQ(CountOps(g, "QLinearGlobalAveragePool", "com.microsoft"), 1);
  EXPECT_EQ(CountOps(g, "Conv"), 0);
  EXPECT_EQ(CountOps(g, "Clip") + CountOps(g, "Relu"), 0);
  // Left in float: the input's QuantizeLinear, the final DequantizeLinear, the broadcasting Add
  // and the DequantizeLinear feeding it.
  EXPECT_EQ(CountOps(g, "QuantizeLinear"), 1);
  EXPECT_EQ(CountOps(g, "DequantizeLinear"), 2);
  EXPECT_EQ(CountOps(g, "Add"), 1);

  SessionOptions off;
  off.integer_qdq = false;
  auto ref = Session::Create(m, off);
  ASSERT_TRUE(ref.ok());
  EXPECT_EQ((*ref)->lowered_qdq_groups(), 0);
  EXPECT_EQ(CountOps((*ref)->model().graph, "Conv"), 3);
}

// Integer execution vs the float Q/DQ reference: the same quantized values up to rounding
// (requantization in one multiply against float accumulation and division), at most one step
// per value plus what a one-step input difference propagates, on every ISA.
TEST(QdqLowering, IntegerExecutionStaysWithinRoundingOfFloatReference) {
  const Model m = BuildModel();
  SessionOptions off;
  off.integer_qdq = false;
  auto ref = Session::Create(m, off);
  ASSERT_TRUE(ref.ok()) << ref.status().ToString();
  const std::vector<std::string> watched = {"a1_q", "a2_q", "a3_q", "sum_q", "mp_q", "gap_q", "flat_q"};
  RunOptions ro;
  ro.extra_outputs = watched;
  for (const bool channels_last : {true, false})
  for (kernels::Isa isa : kernels::SupportedIsas()) {
    SessionOptions so;
    so.int8_channels_last = channels_last;
    so.isa = isa;
    so.num_threads = 2;
    auto s = Session::Create(m, so);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    // Values inside a channels-last chain exist as "<name>_nhwc" ([N, H, W, C]).
    const Graph& lg = (*s)->model().graph;
    RunOptions lro;
    std::map<std::string, std::string> fetched;
    for (const auto& name : watched) {
      const bool nhwc = lg.FindValue(name) == kNoValue;
      EXPECT_EQ(nhwc, channels_last && (name == "a1_q" || name == "a2_q")) << name;
      fetched[name] = nhwc ? name + "_nhwc" : name;
      lro.extra_outputs.push_back(fetched[name]);
    }
    int64_t total = 0, differ = 0;
    for (uint32_t seed = 1; seed <= 4; ++seed) {
      auto feeds = Feeds(seed);
      auto got = (*s)->Run(feeds, lro);
      auto want = (*ref)->Run(feeds, ro);
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      ASSERT_TRUE(want.ok()) << want.status().ToString();
      for (const auto& name : watched) {
        Tensor a = got->at(fetched[name]);
        const Tensor& b = want->at(name);
        if (fetched[name] != name) {  // NHWC -> NCHW
          ASSERT_EQ(a.rank(), 4u) << name;
          const auto d = a.dims();
          Tensor t = Tensor::Create(a.dtype(), {d[0], d[3], d[1], d[2]}).value();
          for (int64_t n = 0; n < d[0]; ++n)
            for (int64_t h = 0; h < d[1]; ++h)
              for (int64_t w = 0; w < d[2]; ++w)
                for (int64_t c = 0; c < d[3]; ++c)
                  t.mutable_data<uint8_t>()[((n * d[3] + c) * d[1] + h) * d[2] + w] =
                      a.data<uint8_t>()[((n * d[1] + h) * d[2] + w) * d[3] + c];
          a = std::move(t);
        }
        ASSERT_EQ(a.dtype(), DataType::kUint8) << name;
        ASSERT_EQ(a.dims(), b.dims()) << name;
        for (int64_t i = 0; i < a.numel(); ++i) {
          const int d = std::abs(int{a.data<uint8_t>()[i]} - int{b.data<uint8_t>()[i]});
          // First layer: one step at most; later layers may inherit a one-step input difference.
          EXPECT_LE(d, name == "a1_q" ? 1 : 3) << name << " " << i << " " << kernels::IsaName(isa);
          differ += d != 0;
          ++total;
        }
      }
      const Tensor& o = got->at("out");
      const Tensor& r = want->at("out");
      for (int64_t i = 0; i < o.numel(); ++i)
        EXPECT_NEAR(o.data<float>()[i], r.data<float>()[i], 3 * 0.02f + 1e-6f);
    }
    // Mostly identical: the integer path computes the same quantized model.
    EXPECT_LT(differ * 20, total) << kernels::IsaName(isa);
  }
}

// A 1x1 Conv whose output stays float (a classifier after DequantizeLinear) becomes
// ai.onnxq Int8ConvFloat: the integer dot products times x_scale * w_scale, equal to the float
// Conv on the dequantized tensors up to float rounding. Spatial 1x1 (the channels-last GEMM) and
// 3x3 (the NCHW kernel with int32 output), on every ISA.
TEST(QdqLowering, FloatOutputConvRunsOnIntegers) {
  for (const int64_t hw : {int64_t{1}, int64_t{3}}) {
    QdqGraph b;
    Graph& g = b.g();
    ValueId in = b.Value("input", DataType::kFloat, {2, 24, hw, hw});
    g.AddInput(in);
    auto [q0, d0] = b.Qdq(in, "x0", 0.03f, 120, {2, 24, hw, hw});
    (void)q0;
    ValueId y = b.Value("logits", DataType::kFloat, {2, 20, hw, hw});
    b.Conv(d0, b.Weights("fc", {20, 24, 1, 1}, 0.03f, 5), y, 1, 1);
    g.AddOutput(y);
    SessionOptions off;
    off.integer_qdq = false;
    auto ref = Session::Create(b.m, off);
    ASSERT_TRUE(ref.ok()) << ref.status().ToString();
    for (kernels::Isa isa : kernels::SupportedIsas()) {
      SessionOptions so;
      so.isa = isa;
      so.num_threads = 2;
      auto s = Session::Create(b.m, so);
      ASSERT_TRUE(s.ok()) << s.status().ToString();
      EXPECT_EQ(CountOps((*s)->model().graph, "Int8ConvFloat", "ai.onnxq"), 1);
      EXPECT_EQ(CountOps((*s)->model().graph, "Conv"), 0);
      std::mt19937 rng(3);
      std::normal_distribution<float> dist(0.f, 1.f);
      Tensor x = Tensor::Float({2, 24, hw, hw});
      for (int64_t i = 0; i < x.numel(); ++i) x.mutable_data<float>()[i] = dist(rng);
      auto got = (*s)->Run({{"input", x}}, {});
      auto want = (*ref)->Run({{"input", x}}, {});
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      ASSERT_TRUE(want.ok()) << want.status().ToString();
      const Tensor& a = got->at("logits");
      const Tensor& r = want->at("logits");
      ASSERT_EQ(a.dims(), r.dims());
      int64_t nonzero = 0;
      for (int64_t i = 0; i < a.numel(); ++i) {
        const float w = r.data<float>()[i];
        EXPECT_NEAR(a.data<float>()[i], w, 1e-5f + 1e-5f * std::fabs(w))
            << i << " " << kernels::IsaName(isa) << " hw=" << hw;
        nonzero += w != 0.f;
      }
      EXPECT_GT(nonzero, a.numel() / 2);
    }
  }
}

// The residual Add of a channels-last chain fused into the 1x1 convolution computing one operand
// (ai.onnxq QLinearConvAdd): input -> Q/DQ -> Conv 3x3 (4->16, NCHW input) -> Q/DQ "a" -> Conv
// 1x1 (16->16) -> Q/DQ "b"; Add(DQ(a), DQ(b)) (or Add(DQ(b), DQ(a))) -> Q/DQ -> output. The
// reference is the same model with "b_q" also a graph output, which keeps the Add unfused, and the
// NCHW kernels (int8_channels_last = false): all agree bit for bit, on every ISA, with 1 and 2
// threads (the 2-thread small plane also splits the 1x1 over channel chunks, where the fused Add
// runs per row). A global pool ends the chain: it writes NCHW itself, no Transpose after it.
Model ResidualModel(bool conv_first, bool b_is_output, int64_t hw) {
  QdqGraph b;
  Graph& g = b.g();
  ValueId in = b.Value("input", DataType::kFloat, {1, 4, hw, hw});
  g.AddInput(in);
  auto [q0, d0] = b.Qdq(in, "x0", 0.02f, 128, {1, 4, hw, hw});
  ValueId c1 = b.Value("c1", DataType::kFloat, {1, 16, hw, hw});
  b.Conv(d0, b.Weights("conv1", {16, 4, 3, 3}, 0.02f, 11), c1, 3, 1);
  auto [qa, da] = b.Qdq(c1, "a", 0.05f, 110, {1, 16, hw, hw});
  ValueId c2 = b.Value("c2", DataType::kFloat, {1, 16, hw, hw});
  b.Conv(da, b.Weights("pw", {16, 16, 1, 1}, 0.05f, 12), c2, 1, 1);
  auto [qb, db] = b.Qdq(c2, "b", 0.04f, 130, {1, 16, hw, hw});
  ValueId s = b.Value("s", DataType::kFloat, {1, 16, hw, hw});
  if (conv_first) {
    b.Node("Add", {db, da}, {s});
  } else {
    b.Node("Add", {da, db}, {s});
  }
  auto [qs, ds] = b.Qdq(s, "sum", 0.06f, 120, {1, 16, hw, hw});
  g.AddOutput(ds);
  // A global pool at the end of the chain: it writes NCHW itself (no Transpose after it).
  ValueId gp = b.Value("gp", DataType::kFloat, {1, 16, 1, 1});
  b.Node("GlobalAveragePool", {ds}, {gp});
  auto [qg, dg] = b.Qdq(gp, "pool", 0.02f, 5, {1, 16, 1, 1});
  g.AddOutput(dg);
  (void)qg;
  if (b_is_output) g.AddOutput(qb);
  (void)q0;
  (void)qa;
  (void)qs;
  EXPECT_TRUE(g.Verify().ok());
  return b.m;
}

TEST(QdqLowering, ResidualAddFusedIntoConvolutionIsBitExact) {
  for (const bool conv_first : {true, false})
    for (const int64_t hw : {int64_t{9}, int64_t{20}}) {
      const Model fused = ResidualModel(conv_first, false, hw);
      const Model plain = ResidualModel(conv_first, true, hw);
      for (kernels::Isa isa : kernels::SupportedIsas())
        for (const int threads : {1, 2}) {
          SessionOptions so;
          so.isa = isa;
          so.num_threads = threads;
          auto sf = Session::Create(fused, so);
          auto sp = Session::Create(plain, so);
          ASSERT_TRUE(sf.ok()) << sf.status().ToString();
          ASSERT_TRUE(sp.ok()) << sp.status().ToString();
          const Graph& gf = (*sf)->model().graph;
          EXPECT_EQ(CountOps(gf, "QLinearConvAdd", "ai.onnxq"), 1);
          EXPECT_EQ(CountOps(gf, "QLinearAdd", "com.microsoft"), 0);
          EXPECT_TRUE(gf.FindValue("b_q_nhwc") == kNoValue);
          for (NodeId n : gf.order())
            if (gf.node(n).Is("QLinearConvAdd", "ai.onnxq"))
              EXPECT_EQ(gf.node(n).attrs.GetInt("conv_operand", -1).value(), conv_first ? 0 : 1);
          // One Transpose: the sum back to NCHW for its graph output; none after the pool.
          EXPECT_EQ(CountOps(gf, "Transpose"), 1);
          for (NodeId n : gf.order())
            if (gf.node(n).Is("QLinearGlobalAveragePool", "com.microsoft"))
              EXPECT_EQ(gf.node(n).attrs.GetInt("onnxq_nchw_output", 0).value(), 1);
          EXPECT_EQ(CountOps((*sp)->model().graph, "QLinearConvAdd", "ai.onnxq"), 0);
          EXPECT_EQ(CountOps((*sp)->model().graph, "QLinearAdd", "com.microsoft"), 1);
          std::mt19937 rng(7);
          std::normal_distribution<float> dist(0.f, 1.5f);
          Tensor x = Tensor::Float({1, 4, hw, hw});
          for (int64_t i = 0; i < x.numel(); ++i) x.mutable_data<float>()[i] = dist(rng);
          auto got = (*sf)->Run({{"input", x}}, {});
          auto want = (*sp)->Run({{"input", x}}, {});
          ASSERT_TRUE(got.ok()) << got.status().ToString();
          ASSERT_TRUE(want.ok()) << want.status().ToString();
          // And the NCHW kernels (no chains, no fusion) give the same bytes.
          SessionOptions nchw = so;
          nchw.int8_channels_last = false;
          auto sn = Session::Create(fused, nchw);
          ASSERT_TRUE(sn.ok()) << sn.status().ToString();
          auto base = (*sn)->Run({{"input", x}}, {});
          ASSERT_TRUE(base.ok()) << base.status().ToString();
          for (const char* name : {"sum_dq", "pool_dq"}) {
            const Tensor& u = base->at(name);
            const Tensor& v = got->at(name);
            ASSERT_EQ(u.dims(), v.dims()) << name;
            for (int64_t i = 0; i < u.numel(); ++i)
              ASSERT_EQ(u.data<float>()[i], v.data<float>()[i]) << name << " " << i;
          }
          const Tensor& pa = got->at("pool_dq");
          const Tensor& pr = want->at("pool_dq");
          ASSERT_EQ(pa.dims(), pr.dims());
          ASSERT_EQ(pa.dims(), (std::vector<int64_t>{1, 16, 1, 1}));
          for (int64_t i = 0; i < pa.numel(); ++i)
            ASSERT_EQ(pa.data<float>()[i], pr.data<float>()[i]) << "pool " << i;
          const Tensor& a = got->at("sum_dq");
          const Tensor& r = want->at("sum_dq");
          ASSERT_EQ(a.dims(), r.dims());
          int64_t distinct = 0;
          for (int64_t i = 0; i < a.numel(); ++i) {
            ASSERT_EQ(a.data<float>()[i], r.data<float>()[i])
                << i << " " << kernels::IsaName(isa) << " threads " << threads << " hw " << hw;
            distinct += r.data<float>()[i] != r.data<float>()[0];
          }
          EXPECT_GT(distinct, a.numel() / 2);
        }
    }
}

}  // namespace
}  // namespace onnxq
