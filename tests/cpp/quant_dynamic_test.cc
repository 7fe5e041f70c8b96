// Dynamic-range quantization (QuantizeDynamic) on small hand-built Conv / MatMul / Gemm models:
//  - the emitted graph: ONNX Runtime's IntegerOps pattern, weights quantized exactly as an
//    independent per-channel symmetric int8 recipe computed here, zero-point shapes ORT accepts;
//  - onnxq's execution of the quantized model against an integer oracle written in this test
//    (DynamicQuantizeLinear's formula, int64 dot products, the float scale / bias arithmetic);
//  - against the float model, within a bound derived from the quantization steps:
//    |sum w^ x^ - sum w x| <= sum |x| |w^ - w| + sum |w^| |x^ - x| <= s_w/2 sum |x| + s_x/2 sum |w^|.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "onnxq/onnx/model_io.h"
#include "onnxq/quant/quantize_dynamic.h"
#include "onnxq/runtime/session.h"
#include "passes_test_util.h"

namespace onnxq::quant {
namespace {

using passes::ptest::Builder;
using passes::ptest::CountOps;

Tensor RandomTensor(std::vector<int64_t> dims, uint32_t seed, float lo, float hi) {
  Tensor t = Tensor::Float(std::move(dims));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.mutable_data<float>()[i] = d(rng);
  return t;
}

StatusOr<Tensor> RunOne(const Model& m, const std::string& input, const Tensor& x) {
  SessionOptions so;
  so.num_threads = 1;
  ONNXQ_ASSIGN_OR_RETURN(auto s, Session::Create(m, so));
  std::map<std::string, Tensor> feeds;
  feeds.emplace(input, x);
  ONNXQ_ASSIGN_OR_RETURN(auto out, s->Run(feeds));
  return out.begin()->second;
}

DynamicQuantizeOptions Opts() {
  DynamicQuantizeOptions o;
  o.threads = 1;
  return o;
}

// DynamicQuantizeLinear as ONNX defines it (uint8, range widened to contain 0).
struct DqlRef {
  float scale;
  int32_t zp;
  std::vector<int32_t> q;
};
DqlRef Dql(const Tensor& x) {
  float lo = 0, hi = 0;
  for (float v : x.span<float>()) lo = std::min(lo, v), hi = std::max(hi, v);
  DqlRef r;
  r.scale = (hi - lo) / 255.0f;
  if (r.scale == 0) r.scale = 1.0f;
  r.zp = static_cast<int32_t>(std::nearbyint(std::clamp(0.0f - lo / r.scale, 0.0f, 255.0f)));
  for (float v : x.span<float>())
    r.q.push_back(std::clamp(static_cast<int32_t>(std::nearbyint(v / r.scale)) + r.zp, 0, 255));
  return r;
}

// Per-channel symmetric narrow-range int8 of channel c's values: scale = max|w| / 127.
float ChannelScale(const std::vector<float>& vals) {
  float m = 0;
  for (float v : vals) m = std::max(m, std::fabs(v));
  return m == 0 ? 1.0f : m / 127.0f;
}

const Tensor& InitOf(const Graph& g, ValueId v) {
  EXPECT_TRUE(g.value(v).is_initializer()) << g.value(v).name();
  return *g.value(v).initializer();
}

const Node* FirstNode(const Graph& g, const std::string& op) {
  for (NodeId n : g.order())
    if (g.node(n).op_type == op) return &g.node(n);
  return nullptr;
}

// ------------------------------------------------------------------------------------ Conv

struct ConvCase {
  Model model;
  Tensor w, b;
  int64_t stride = 2;
  std::vector<int64_t> pads = {1, 0, 0, 1};  // top, left, bottom, right
};

ConvCase MakeConv() {
  ConvCase c;
  c.model = passes::ptest::EmptyModel(13);
  Builder b(c.model);
  ValueId x = b.Input("x", {2, 3, 9, 9});
  c.w = RandomTensor({5, 3, 3, 3}, 11, -0.8f, 0.8f);
  for (int64_t k = 0; k < 27; ++k) c.w.mutable_data<float>()[4 * 27 + k] = 0.0f;  // a dead channel
  for (int64_t k = 0; k < 27; ++k) c.w.mutable_data<float>()[1 * 27 + k] *= 0.05f;  // a small one
  c.b = RandomTensor({5}, 12, -0.5f, 0.5f);
  ValueId wv = c.model.graph.AddInitializer("w", c.w);
  ValueId bv = c.model.graph.AddInitializer("b", c.b);
  NodeId conv = b.Node("Conv", "conv", {x, wv, bv}, 1, {{2, 5, 4, 4}});
  b[conv].attrs.Set(Attribute::Ints("pads", c.pads));
  b[conv].attrs.Set(Attribute::Ints("strides", {2, 2}));
  b[conv].attrs.Set(Attribute::Ints("kernel_shape", {3, 3}));
  b.Output(b.Out(conv));
  return c;
}

TEST(QuantDynamic, ConvEmitsOrtIntegerPatternAndMatchesIntegerOracle) {
  ConvCase c = MakeConv();
  auto r = QuantizeDynamic(c.model, Opts());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const Graph& g = r->quantized.graph;
  ASSERT_TRUE(g.Verify().ok());
  EXPECT_EQ(CountOps(g, "DynamicQuantizeLinear"), 1);
  EXPECT_EQ(CountOps(g, "ConvInteger"), 1);
  EXPECT_EQ(CountOps(g, "Cast"), 1);
  EXPECT_EQ(CountOps(g, "Mul"), 2);
  EXPECT_EQ(CountOps(g, "Add"), 1);
  EXPECT_EQ(CountOps(g, "Conv"), 0);
  EXPECT_EQ(g.FindValue("w"), kNoValue) << "the float weight is removed";
  EXPECT_EQ(r->quantized_nodes, 1);
  ASSERT_EQ(g.outputs().size(), 1u);
  EXPECT_EQ(g.value(g.outputs()[0]).name(), "conv_out") << "the graph output keeps its name";
  ASSERT_NE(r->quantized.FindMetadata("onnxq.quantize_config"), nullptr);
  EXPECT_NE(r->quantized.FindMetadata("onnxq.quantize_config")->find("\"mode\":\"dynamic\""), std::string::npos);

  // ConvInteger(x_q, W_q, x_zp, W_zp) with Conv's attributes; W_zp a scalar int8 0.
  const Node* ci = FirstNode(g, "ConvInteger");
  ASSERT_NE(ci, nullptr);
  ASSERT_EQ(ci->num_inputs(), 4u);
  EXPECT_EQ(g.Producer(ci->input(0))->op_type, "DynamicQuantizeLinear");
  EXPECT_EQ(g.Producer(ci->input(2))->op_type, "DynamicQuantizeLinear");
  auto pads = ci->attrs.GetInts("pads");
  ASSERT_TRUE(pads.ok());
  EXPECT_EQ(*pads, c.pads);
  const Tensor& wq = InitOf(g, ci->input(1));
  const Tensor& wz = InitOf(g, ci->input(3));
  EXPECT_EQ(wq.dtype(), DataType::kInt8);
  EXPECT_EQ(wq.dims(), c.w.dims());
  EXPECT_EQ(wz.dtype(), DataType::kInt8);
  EXPECT_EQ(wz.rank(), 0u) << "ONNX Runtime's ConvInteger refuses per-channel zero points";
  EXPECT_EQ(wz.data<int8_t>()[0], 0);
  // Weights: independent per-channel symmetric int8.
  std::vector<float> sw(5);
  for (int64_t o = 0; o < 5; ++o) {
    std::vector<float> ch(c.w.data<float>() + o * 27, c.w.data<float>() + (o + 1) * 27);
    sw[o] = ChannelScale(ch);
    for (int64_t k = 0; k < 27; ++k) {
      int32_t want = static_cast<int32_t>(std::nearbyint(ch[k] / sw[o]));
      ASSERT_EQ(wq.data<int8_t>()[o * 27 + k], want) << "channel " << o << " tap " << k;
    }
  }
  // The per-channel scale reaches the float Mul as [1, M, 1, 1].
  const Node* cast = FirstNode(g, "Cast");
  ASSERT_NE(cast, nullptr);
  EXPECT_EQ(cast->input(0), ci->output(0));
  const Node* out_mul = &g.node(g.value(cast->output(0)).uses()[0].node);
  ASSERT_EQ(out_mul->op_type, "Mul");
  const Node* scales_mul = g.Producer(out_mul->input(1));
  ASSERT_EQ(scales_mul->op_type, "Mul");
  const Tensor& ws = InitOf(g, scales_mul->input(1));
  EXPECT_EQ(ws.dims(), (std::vector<int64_t>{1, 5, 1, 1}));
  for (int64_t o = 0; o < 5; ++o) EXPECT_EQ(ws.data<float>()[o], sw[o]);

  // Run: onnxq vs the integer oracle (same float operations: float(acc) * (s_x * s_w) + b), and vs
  // the float model within the step-derived bound.
  Tensor x = RandomTensor({2, 3, 9, 9}, 13, -1.7f, 2.3f);
  auto yq = RunOne(r->quantized, "x", x);
  ASSERT_TRUE(yq.ok()) << yq.status().ToString();
  auto yf = RunOne(c.model, "x", x);
  ASSERT_TRUE(yf.ok()) << yf.status().ToString();
  ASSERT_EQ(yq->dims(), (std::vector<int64_t>{2, 5, 4, 4}));
  DqlRef d = Dql(x);
  double max_err = 0;
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t o = 0; o < 5; ++o)
      for (int64_t oh = 0; oh < 4; ++oh)
        for (int64_t ow = 0; ow < 4; ++ow) {
          int64_t acc = 0;
          double sum_x = 0, sum_w = 0;
          for (int64_t ci2 = 0; ci2 < 3; ++ci2)
            for (int64_t kh = 0; kh < 3; ++kh)
              for (int64_t kw = 0; kw < 3; ++kw) {
                const int64_t ih = oh * 2 - c.pads[0] + kh, iw = ow * 2 - c.pads[1] + kw;
                if (ih < 0 || ih >= 9 || iw < 0 || iw >= 9) continue;  // padding: x_zp, contributes 0
                const int64_t xi = ((n * 3 + ci2) * 9 + ih) * 9 + iw, wi = ((o * 3 + ci2) * 3 + kh) * 3 + kw;
                acc += static_cast<int64_t>(d.q[xi] - d.zp) * wq.data<int8_t>()[wi];
                sum_x += std::fabs(x.data<float>()[xi]);
                sum_w += std::fabs(wq.data<int8_t>()[wi] * sw[o]);
              }
          const float sm = d.scale * sw[o];
          const float want = static_cast<float>(acc) * sm + c.b.data<float>()[o];
          const int64_t yi = ((n * 5 + o) * 4 + oh) * 4 + ow;
          const float got = yq->data<float>()[yi];
          EXPECT_NEAR(got, want, 1e-6 * std::fabs(want) + 1e-6) << "at " << yi;
          const double bound = sw[o] / 2 * sum_x + d.scale / 2 * sum_w + 1e-5;
          const double err = std::fabs(double(got) - yf->data<float>()[yi]);
          EXPECT_LE(err, bound) << "at " << yi;
          if (o == 4) {
            EXPECT_EQ(got, c.b.data<float>()[4]) << "a zero-weight channel outputs its bias exactly";
          }
          max_err = std::max(max_err, err);
        }
  EXPECT_GT(max_err, 0.0) << "the quantized model must differ from the float one somewhere";

  // The file round trip runs identically.
  const std::string path = (std::filesystem::temp_directory_path() / "onnxq_dyn_conv_test.onnx").string();
  ASSERT_TRUE(SaveModel(r->quantized, path).ok());
  auto reloaded = LoadModel(path);
  std::filesystem::remove(path);
  ASSERT_TRUE(reloaded.ok()) << reloaded.status().ToString();
  auto y2 = RunOne(*reloaded, "x", x);
  ASSERT_TRUE(y2.ok()) << y2.status().ToString();
  EXPECT_TRUE(y2->BitwiseEqual(*yq));
}

// ------------------------------------------------------------------------ MatMul and Gemm

TEST(QuantDynamic, MatMulPerColumnMatchesOracleAndBound) {
  Model m = passes::ptest::EmptyModel(13);
  Builder b(m);
  ValueId x = b.Input("x", {2, 3, 7});
  Tensor w = RandomTensor({7, 6}, 21, -1.f, 1.f);
  for (int64_t k = 0; k < 7; ++k) w.mutable_data<float>()[k * 6 + 2] *= 0.01f;  // one tiny column
  NodeId mm = b.Node("MatMul", "mm", {x, m.graph.AddInitializer("wm", w)}, 1, {{2, 3, 6}});
  b.Output(b.Out(mm));
  auto r = QuantizeDynamic(m, Opts());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const Graph& g = r->quantized.graph;
  EXPECT_EQ(CountOps(g, "MatMulInteger"), 1);
  EXPECT_EQ(CountOps(g, "MatMul"), 0);
  EXPECT_EQ(CountOps(g, "Add"), 0);
  const Node* mi = FirstNode(g, "MatMulInteger");
  ASSERT_NE(mi, nullptr);
  const Tensor& wq = InitOf(g, mi->input(1));
  const Tensor& wz = InitOf(g, mi->input(3));
  EXPECT_EQ(wq.dims(), (std::vector<int64_t>{7, 6}));
  EXPECT_EQ(wz.dims(), (std::vector<int64_t>{6})) << "per-column zero points, as ORT writes them";
  for (int64_t i = 0; i < 6; ++i) EXPECT_EQ(wz.data<int8_t>()[i], 0);
  std::vector<float> sw(6);
  for (int64_t n = 0; n < 6; ++n) {
    std::vector<float> col;
    for (int64_t k = 0; k < 7; ++k) col.push_back(w.data<float>()[k * 6 + n]);
    sw[n] = ChannelScale(col);
    for (int64_t k = 0; k < 7; ++k)
      ASSERT_EQ(wq.data<int8_t>()[k * 6 + n], static_cast<int32_t>(std::nearbyint(col[k] / sw[n])));
  }
  Tensor xin = RandomTensor({2, 3, 7}, 22, -3.f, 1.f);
  auto yq = RunOne(r->quantized, "x", xin);
  ASSERT_TRUE(yq.ok()) << yq.status().ToString();
  auto yf = RunOne(m, "x", xin);
  ASSERT_TRUE(yf.ok());
  DqlRef d = Dql(xin);
  for (int64_t row = 0; row < 6; ++row)
    for (int64_t n = 0; n < 6; ++n) {
      int64_t acc = 0;
      double sx = 0, swsum = 0;
      for (int64_t k = 0; k < 7; ++k) {
        acc += static_cast<int64_t>(d.q[row * 7 + k] - d.zp) * wq.data<int8_t>()[k * 6 + n];
        sx += std::fabs(xin.data<float>()[row * 7 + k]);
        swsum += std::fabs(wq.data<int8_t>()[k * 6 + n] * sw[n]);
      }
      const float want = static_cast<float>(acc) * (d.scale * sw[n]);
      const float got = yq->data<float>()[row * 6 + n];
      EXPECT_NEAR(got, want, 1e-6 * std::fabs(want) + 1e-7);
      EXPECT_LE(std::fabs(double(got) - yf->data<float>()[row * 6 + n]), sw[n] / 2 * sx + d.scale / 2 * swsum + 1e-6);
    }
}

TEST(QuantDynamic, GemmTransBAlphaBetaBecomesMatMulInteger) {
  Model m = passes::ptest::EmptyModel(13);
  Builder b(m);
  ValueId x = b.Input("x", {4, 7});
  Tensor w = RandomTensor({6, 7}, 31, -1.f, 1.f);  // [N, K], transB = 1
  Tensor cb = RandomTensor({6}, 32, -1.f, 1.f);
  NodeId gemm = b.Node("Gemm", "fc", {x, m.graph.AddInitializer("wg", w), m.graph.AddInitializer("cg", cb)}, 1,
                       {{4, 6}});
  b[gemm].attrs.Set(Attribute::Int("transB", 1));
  b[gemm].attrs.Set(Attribute::Float("alpha", 0.5f));
  b[gemm].attrs.Set(Attribute::Float("beta", 2.0f));
  b.Output(b.Out(gemm));
  auto r = QuantizeDynamic(m, Opts());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const Graph& g = r->quantized.graph;
  EXPECT_EQ(CountOps(g, "Gemm"), 0);
  EXPECT_EQ(CountOps(g, "MatMulInteger"), 1);
  EXPECT_EQ(CountOps(g, "Add"), 1);
  const Node* mi = FirstNode(g, "MatMulInteger");
  const Tensor& wq = InitOf(g, mi->input(1));
  ASSERT_EQ(wq.dims(), (std::vector<int64_t>{7, 6})) << "B is stored transposed to [K, N]";
  Tensor xin = RandomTensor({4, 7}, 33, -1.f, 1.f);
  auto yq = RunOne(r->quantized, "x", xin);
  ASSERT_TRUE(yq.ok()) << yq.status().ToString();
  auto yf = RunOne(m, "x", xin);
  ASSERT_TRUE(yf.ok());
  DqlRef d = Dql(xin);
  for (int64_t n = 0; n < 6; ++n) {
    std::vector<float> row(w.data<float>() + n * 7, w.data<float>() + (n + 1) * 7);
    const float swn = ChannelScale(row);
    for (int64_t k = 0; k < 7; ++k)
      ASSERT_EQ(wq.data<int8_t>()[k * 6 + n], static_cast<int32_t>(std::nearbyint(row[k] / swn)));
    for (int64_t i = 0; i < 4; ++i) {
      int64_t acc = 0;
      double sx = 0, swsum = 0;
      for (int64_t k = 0; k < 7; ++k) {
        acc += static_cast<int64_t>(d.q[i * 7 + k] - d.zp) * wq.data<int8_t>()[k * 6 + n];
        sx += std::fabs(xin.data<float>()[i * 7 + k]);
        swsum += std::fabs(wq.data<int8_t>()[k * 6 + n] * swn);
      }
      const float want = static_cast<float>(acc) * (d.scale * (swn * 0.5f)) + cb.data<float>()[n] * 2.0f;
      const float got = yq->data<float>()[i * 6 + n];
      EXPECT_NEAR(got, want, 1e-6 * std::fabs(want) + 1e-6);
      const double bound = 0.5 * (swn / 2 * sx + d.scale / 2 * swsum) + 1e-6;
      EXPECT_LE(std::fabs(double(got) - yf->data<float>()[i * 6 + n]), bound);
    }
  }
}

// ------------------------------------------------------------------------ whole model

// x -> Conv(3x3)+Relu -> Conv(1x1, no bias) -> GAP -> Flatten -> MatMul -> Gemm -> y
Model Net() {
  Model m = passes::ptest::EmptyModel(13);
  Builder b(m);
  ValueId x = b.Input("x", {2, 3, 8, 8});
  NodeId c1 = b.Node("Conv", "conv1", {x, b.RandConst("w1", {4, 3, 3, 3}, 1), b.RandConst("b1", {4}, 2)}, 1,
                     {{2, 4, 8, 8}});
  b[c1].attrs.Set(Attribute::Ints("pads", {1, 1, 1, 1}));
  NodeId relu = b.Node("Relu", "relu", {b.Out(c1)}, 1, {{2, 4, 8, 8}});
  NodeId c2 = b.Node("Conv", "conv2", {b.Out(relu), b.RandConst("w2", {8, 4, 1, 1}, 3)}, 1, {{2, 8, 8, 8}});
  NodeId gap = b.Node("GlobalAveragePool", "gap", {b.Out(c2)}, 1, {{2, 8, 1, 1}});
  NodeId flat = b.Node("Flatten", "flatten", {b.Out(gap)}, 1, {{2, 8}});
  NodeId mm = b.Node("MatMul", "mm", {b.Out(flat), b.RandConst("wm", {8, 6}, 4)}, 1, {{2, 6}});
  NodeId fc = b.Node("Gemm", "fc", {b.Out(mm), b.RandConst("wf", {6, 5}, 5), b.RandConst("bf", {5}, 6)}, 1,
                     {{2, 5}});
  b.Output(b.Out(fc));
  return m;
}

TEST(QuantDynamic, WholeModelQuantizesEveryWeightedOpAndStaysClose) {
  Model m = Net();
  auto r = QuantizeDynamic(m, Opts());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const Graph& g = r->quantized.graph;
  EXPECT_EQ(CountOps(g, "DynamicQuantizeLinear"), 4);  // x, relu, flatten, mm outputs
  EXPECT_EQ(CountOps(g, "ConvInteger"), 2);
  EXPECT_EQ(CountOps(g, "MatMulInteger"), 2);
  EXPECT_EQ(CountOps(g, "Cast"), 4);
  EXPECT_EQ(CountOps(g, "Mul"), 8);
  EXPECT_EQ(CountOps(g, "Add"), 2);  // conv1's and fc's biases; conv2 has none
  EXPECT_EQ(CountOps(g, "Relu"), 1);
  EXPECT_EQ(CountOps(g, "GlobalAveragePool"), 1);
  EXPECT_EQ(r->quantized_nodes, 4);
  EXPECT_EQ(r->quantized.OpsetVersion(""), 13);
  for (const char* key : {"\"quantized_nodes\":{\"Conv\":2,\"Gemm\":1,\"MatMul\":1}", "\"sqnr_db\"",
                          "\"dynamic_quantize_linear_nodes\":4", "\"float_nodes\":{\"Flatten\":1,"
                          "\"GlobalAveragePool\":1,\"Relu\":1}", "\"quantized_initializer_bytes\""})
    EXPECT_NE(r->report_json.find(key), std::string::npos) << key << "\n" << r->report_json;

  Tensor x = RandomTensor({2, 3, 8, 8}, 41, -1.f, 1.f);
  auto yq = RunOne(r->quantized, "x", x);
  ASSERT_TRUE(yq.ok()) << yq.status().ToString();
  auto yf = RunOne(m, "x", x);
  ASSERT_TRUE(yf.ok());
  double amax = 0, emax = 0;
  for (int64_t i = 0; i < yf->numel(); ++i) {
    amax = std::max(amax, double(std::fabs(yf->data<float>()[i])));
    emax = std::max(emax, std::fabs(double(yf->data<float>()[i]) - yq->data<float>()[i]));
  }
  // Four 8-bit layers: a few steps of error each, far below the output's magnitude.
  EXPECT_GT(emax, 0.0);
  EXPECT_LT(emax, 0.03 * amax) << "max error " << emax << " vs max |y| " << amax;
}

TEST(QuantDynamic, ExclusionsAndUnsupportedNodesStayFloat) {
  Model m = Net();
  DynamicQuantizeOptions o = Opts();
  o.exclude = {"conv2", "Gemm"};
  auto r = QuantizeDynamic(m, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const Graph& g = r->quantized.graph;
  EXPECT_EQ(CountOps(g, "ConvInteger"), 1);
  EXPECT_EQ(CountOps(g, "Conv"), 1);
  EXPECT_EQ(CountOps(g, "Gemm"), 1);
  EXPECT_EQ(CountOps(g, "MatMulInteger"), 1);
  EXPECT_NE(r->report_json.find("kept Conv 'conv2' float: excluded"), std::string::npos) << r->report_json;

  // MatMul of two run-time tensors: no constant weight, stays float.
  Model m2 = passes::ptest::EmptyModel(13);
  Builder b(m2);
  ValueId a = b.Input("a", {3, 4}), bb = b.Input("b", {4, 5});
  NodeId mm = b.Node("MatMul", "mm", {a, bb}, 1, {{3, 5}});
  b.Output(b.Out(mm));
  auto r2 = QuantizeDynamic(m2, Opts());
  ASSERT_TRUE(r2.ok()) << r2.status().ToString();
  EXPECT_EQ(CountOps(r2->quantized.graph, "MatMul"), 1);
  EXPECT_EQ(r2->quantized_nodes, 0);
  EXPECT_NE(r2->report_json.find("its weight is not a constant initializer"), std::string::npos);
}

TEST(QuantDynamic, PerTensorLowBitsAndRunTimeBias) {
  // Conv whose bias is a run-time input (ORT's Reshape to [1, -1, 1, 1] is emitted), then MatMul.
  Model m = passes::ptest::EmptyModel(13);
  Builder b(m);
  ValueId x = b.Input("x", {1, 2, 5, 5});
  ValueId bias = b.Input("bias", {3});
  NodeId conv = b.Node("Conv", "conv", {x, b.RandConst("w", {3, 2, 3, 3}, 51), bias}, 1, {{1, 3, 3, 3}});
  NodeId flat = b.Node("Flatten", "flat", {b.Out(conv)}, 1, {{1, 27}});
  NodeId mm = b.Node("MatMul", "mm", {b.Out(flat), b.RandConst("wm", {27, 4}, 52)}, 1, {{1, 4}});
  b.Output(b.Out(mm));
  DynamicQuantizeOptions o = Opts();
  o.per_channel = false;
  o.weight_bits = 4;
  auto r = QuantizeDynamic(m, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const Graph& g = r->quantized.graph;
  EXPECT_EQ(CountOps(g, "Reshape"), 1);
  for (const char* op : {"ConvInteger", "MatMulInteger"}) {
    const Node* n = FirstNode(g, op);
    ASSERT_NE(n, nullptr) << op;
    const Tensor& wq = InitOf(g, n->input(1));
    EXPECT_EQ(InitOf(g, n->input(3)).rank(), 0u) << op << ": per-tensor zero point is a scalar";
    int amax = 0;
    for (int8_t v : wq.span<int8_t>()) amax = std::max(amax, std::abs(int(v)));
    EXPECT_EQ(amax, 7) << op << ": 4-bit symmetric narrow range uses [-7, 7]";
  }
  Tensor xin = RandomTensor({1, 2, 5, 5}, 53, -1.f, 1.f);
  Tensor bin = RandomTensor({3}, 54, -1.f, 1.f);
  SessionOptions so;
  so.num_threads = 1;
  auto sq = Session::Create(r->quantized, so);
  auto sf = Session::Create(m, so);
  ASSERT_TRUE(sq.ok() && sf.ok());
  std::map<std::string, Tensor> feeds{{"x", xin}, {"bias", bin}};
  auto yq = (*sq)->Run(feeds);
  auto yf = (*sf)->Run(feeds);
  ASSERT_TRUE(yq.ok()) << yq.status().ToString();
  ASSERT_TRUE(yf.ok());
  const Tensor& a = yq->at("mm_out");
  const Tensor& f = yf->at("mm_out");
  double amax = 0, emax = 0;
  for (int64_t i = 0; i < f.numel(); ++i) {
    amax = std::max(amax, double(std::fabs(f.data<float>()[i])));
    emax = std::max(emax, std::fabs(double(a.data<float>()[i]) - f.data<float>()[i]));
  }
  EXPECT_GT(emax, 0.0);
  EXPECT_LT(emax, 0.25 * amax) << "4-bit per-tensor weights: coarse but not broken";
}

TEST(QuantDynamic, RefusesOldOpsetsAndBadOptions) {
  Model m = Net();
  m.SetOpsetVersion("", 10);
  auto r = QuantizeDynamic(m, Opts());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().ToString().find("opset 11"), std::string::npos) << r.status().ToString();
  DynamicQuantizeOptions o = Opts();
  o.op_types = {"Conv", "LSTM"};
  auto r2 = QuantizeDynamic(Net(), o);
  ASSERT_FALSE(r2.ok());
  EXPECT_NE(r2.status().ToString().find("LSTM"), std::string::npos);
  o = Opts();
  o.weight_bits = 9;
  EXPECT_FALSE(QuantizeDynamic(Net(), o).ok());
}

TEST(QuantDynamic, NonFiniteWeightIsAnErrorNamingTheNode) {
  Model m = Net();
  ValueId w = m.graph.FindValue("wm");
  Tensor t = m.graph.value(w).initializer()->Clone();
  t.mutable_data<float>()[3] = NAN;
  ASSERT_TRUE(m.graph.SetInitializer(w, t).ok());
  DynamicQuantizeOptions o = Opts();
  o.passes = "none";
  auto r = QuantizeDynamic(m, o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().ToString().find("MatMul 'mm'"), std::string::npos) << r.status().ToString();
  EXPECT_NE(r.status().ToString().find("wm"), std::string::npos) << r.status().ToString();
}

}  // namespace
}  // namespace onnxq::quant
