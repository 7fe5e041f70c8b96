// QuantizeDynamic(): dynamic-range quantization in ONNX Runtime's IntegerOps graph pattern (see
// quantize_dynamic.h and docs/dynamic.md).
#include "onnxq/quant/quantize_dynamic.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <map>
#include <set>

#include "onnxq/base/thread_pool.h"
#include "onnxq/onnx/model_io.h"
#include "onnxq/passes/pass.h"
#include "onnxq/quant/quantize_model.h"
#include "onnxq/quant/report.h"
#include "onnxq/quant/weight_quant.h"

namespace onnxq::quant {
namespace {

using Clock = std::chrono::steady_clock;
double MsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

constexpr int64_t kOnnxFloat = 1;  // TensorProto.FLOAT, Cast's `to`

int64_t InitializerBytes(const Model& m) {
  int64_t total = 0;
  for (ValueId v : m.graph.initializer_order())
    if (m.graph.has_value(v) && m.graph.value(v).initializer())
      total += static_cast<int64_t>(m.graph.value(v).initializer()->nbytes());
  return total;
}

bool Listed(const std::vector<std::string>& list, const std::string& s) {
  return std::find(list.begin(), list.end(), s) != list.end();
}

Tensor Transpose2D(const Tensor& t) {
  const int64_t r = t.dims()[0], c = t.dims()[1];
  Tensor out = Tensor::Float({c, r});
  const float* s = t.data<float>();
  float* d = out.mutable_data<float>();
  for (int64_t i = 0; i < r; ++i)
    for (int64_t j = 0; j < c; ++j) d[j * r + i] = s[i * c + j];
  return out;
}

// The run-time quantization of one activation, shared by every node that reads it.
struct DynInput {
  ValueId q = kNoValue, scale = kNoValue, zp = kNoValue;
};

// A quantized weight as the integer op consumes it.
struct QWeight {
  ValueId q = kNoValue, scale = kNoValue, zp = kNoValue;
};

struct WeightRecord {
  std::string node, op, tensor, emitted_as;
  std::vector<int64_t> dims;  // of the original float weight
  int axis = -1;              // quantization axis in the emitted (integer op's) layout
  double sqnr_db = 0;
  std::vector<float> scales;  // the weight's own scales (Gemm's alpha not folded in)
};

class DynamicRewriter {
 public:
  DynamicRewriter(Model& model, const DynamicQuantizeOptions& o, ThreadPool* pool)
      : g_(model.graph), o_(o), pool_(pool) {}

  Status Run() {
    for (NodeId id : std::vector<NodeId>(g_.order())) {
      if (!g_.has_node(id)) continue;
      const Node& n = g_.node(id);
      if (!n.Is("Conv") && !n.Is("MatMul") && !n.Is("Gemm")) continue;
      if (!Listed(o_.op_types, n.op_type)) continue;
      const std::string desc = n.Describe(), op = n.op_type;
      if (Listed(o_.exclude, n.op_type) || (!n.name.empty() && Listed(o_.exclude, n.name))) {
        notes_.push_back("kept " + desc + " float: excluded");
        continue;
      }
      std::string why;
      ONNXQ_ASSIGN_OR_RETURN(bool done, Rewrite(id, &why));
      if (done)
        ++quantized_[op];
      else
        notes_.push_back("kept " + desc + " float: " + why);
    }
    // Float weights and biases no node reads any more.
    for (ValueId v : replaced_) {
      if (!g_.has_value(v) || !g_.value(v).uses().empty() || g_.IsGraphInput(v) || g_.IsGraphOutput(v))
        continue;
      g_.ClearInitializer(v);
      ONNXQ_RETURN_IF_ERROR(g_.RemoveValue(v));
    }
    for (NodeId id : g_.order()) g_.node(id).meta.clear();
    ONNXQ_RETURN_IF_ERROR(g_.TopologicalSort());
    return g_.Verify();
  }

  const std::map<std::string, int64_t>& quantized() const { return quantized_; }
  const std::vector<std::string>& notes() const { return notes_; }
  const std::vector<WeightRecord>& weights() const { return records_; }
  int64_t dynamic_inputs() const { return static_cast<int64_t>(dyn_.size()); }

 private:
  ValueId NewValue(const std::string& base, DataType t, std::optional<Shape> shape) {
    ValueId v = g_.AddUniqueValue(base);
    g_.value(v).dtype = t;
    g_.value(v).shape = std::move(shape);
    return v;
  }

  // Rewrites node `id` into the integer pattern; false (with a reason) when it must stay float.
  StatusOr<bool> Rewrite(NodeId id, std::string* why) {
    const Node& n = g_.node(id);
    const ValueId x = n.input(0), w = n.input(1), y = n.output(0);
    if (x == kNoValue || w == kNoValue || y == kNoValue) return *why = "missing input or output", false;
    if (g_.value(x).dtype != DataType::kFloat) return *why = "its input is not float32", false;
    const Tensor* wt = g_.value(w).initializer();
    if (wt == nullptr || g_.IsGraphInput(w))
      return *why = "its weight is not a constant initializer", false;
    if (wt->dtype() != DataType::kFloat) return *why = "its weight is not float32", false;

    const bool is_conv = n.Is("Conv"), is_gemm = n.Is("Gemm");
    bool trans_b = false;
    float alpha = 1.0f, beta = 1.0f;
    if (is_conv) {
      if (wt->rank() != 4)
        return *why = "only 2-D convolutions run as ConvInteger in onnxq (weight " +
                      DimsToString(wt->dims()) + ")", false;
    } else if (wt->rank() != 2) {
      return *why = "its weight is not 2-D (" + DimsToString(wt->dims()) + ")", false;
    }
    if (is_gemm) {
      ONNXQ_ASSIGN_OR_RETURN(int64_t ta, n.attrs.GetInt("transA", 0));
      ONNXQ_ASSIGN_OR_RETURN(int64_t tb, n.attrs.GetInt("transB", 0));
      ONNXQ_ASSIGN_OR_RETURN(alpha, n.attrs.GetFloat("alpha", 1.0f));
      ONNXQ_ASSIGN_OR_RETURN(beta, n.attrs.GetFloat("beta", 1.0f));
      if (ta != 0) return *why = "transA = 1", false;
      if (!(alpha > 0) || !std::isfinite(alpha)) return *why = "alpha is not positive and finite", false;
      if (!std::isfinite(beta)) return *why = "beta is not finite", false;
      trans_b = tb != 0;
    }
    const ValueId c = (is_conv || is_gemm) ? n.input(2) : kNoValue;
    const std::string node_desc = n.Describe(), node_name = n.name, op = n.op_type;
    const Attributes conv_attrs = n.attrs;

    // ---- weight (quantized once per distinct use of an initializer)
    const std::string key = g_.value(w).name() + "|" + op + "|" + (trans_b ? "t" : "n") + "|" +
                            std::to_string(std::bit_cast<uint32_t>(alpha));
    QWeight qw;
    auto found = weights_.find(key);
    if (found != weights_.end()) {
      qw = found->second;
    } else {
      ONNXQ_ASSIGN_OR_RETURN(qw, QuantizeWeightFor(w, *wt, node_desc, node_name, op, is_conv, trans_b, alpha));
      weights_.emplace(key, qw);
    }
    replaced_.insert(w);

    // ---- float addend (bias) in the output's broadcast shape
    ValueId addend = kNoValue;
    if (c != kNoValue) {
      const Tensor* ct = g_.value(c).initializer();
      const std::string cname = g_.value(c).name();
      if (is_conv) {
        if (ct != nullptr && !g_.IsGraphInput(c)) {
          if (ct->dtype() != DataType::kFloat) return *why = "its bias is not float32", false;
          ONNXQ_ASSIGN_OR_RETURN(Tensor r, ct->Reshaped({1, ct->numel(), 1, 1}));
          addend = g_.AddInitializer(cname + "_reshaped", r.Clone());
          replaced_.insert(c);
        } else {  // a run-time bias: ONNX Runtime's Reshape to [1, -1, 1, 1]
          std::vector<int64_t> shape = {1, -1, 1, 1};
          ValueId sv = g_.AddInitializer(cname + "_bias_reshape_shape", Tensor::Int64({4}, shape));
          addend = NewValue(cname + "_bias_reshape_output", DataType::kFloat, std::nullopt);
          ONNXQ_RETURN_IF_ERROR(g_.InsertNodeBefore(id, "Reshape", {c, sv}, {addend},
                                                    g_.UniqueNodeName(cname + "_bias_reshape"))
                                    .status());
        }
      } else if (beta == 1.0f) {
        addend = c;
      } else if (ct != nullptr && !g_.IsGraphInput(c)) {
        if (ct->dtype() != DataType::kFloat) return *why = "its C input is not float32", false;
        Tensor scaled = ct->Clone();
        for (int64_t i = 0; i < scaled.numel(); ++i) scaled.mutable_data<float>()[i] *= beta;
        addend = g_.AddInitializer(cname + "_times_beta", std::move(scaled));
        replaced_.insert(c);
      } else {
        ValueId bv = g_.AddInitializer(cname + "_beta", Tensor::Float({}, std::span<const float>(&beta, 1)));
        addend = NewValue(cname + "_times_beta", DataType::kFloat, g_.value(c).shape);
        ONNXQ_RETURN_IF_ERROR(g_.InsertNodeBefore(id, "Mul", {c, bv}, {addend},
                                                  g_.UniqueNodeName(cname + "_beta_mul"))
                                  .status());
      }
    }

    // ---- activation, integer op, scales, bias
    ONNXQ_ASSIGN_OR_RETURN(DynInput d, Dynamic(x, id));
    const std::string yname = g_.value(y).name();
    const std::string base = node_name.empty() ? yname : node_name;
    const std::optional<Shape> yshape = g_.value(y).shape;
    ValueId iv = NewValue(yname + "_output_quantized", DataType::kInt32, yshape);
    ONNXQ_ASSIGN_OR_RETURN(NodeId in, g_.InsertNodeBefore(id, is_conv ? "ConvInteger" : "MatMulInteger",
                                                          {d.q, qw.q, d.zp, qw.zp}, {iv},
                                                          g_.UniqueNodeName(base + "_quant")));
    if (is_conv) g_.node(in).attrs = conv_attrs;
    ValueId cv = NewValue(yname + "_output_quantized_cast_output", DataType::kFloat, yshape);
    ONNXQ_ASSIGN_OR_RETURN(NodeId cn, g_.InsertNodeBefore(id, "Cast", {iv}, {cv},
                                                          g_.UniqueNodeName(base + "_output_quantized_cast")));
    g_.node(cn).attrs.Set(Attribute::Int("to", kOnnxFloat));
    ValueId sm = NewValue(base + "_quant_scales_mul:0", DataType::kFloat, g_.value(qw.scale).shape);
    ONNXQ_RETURN_IF_ERROR(g_.InsertNodeBefore(id, "Mul", {d.scale, qw.scale}, {sm},
                                              g_.UniqueNodeName(base + "_quant_scales_mul"))
                              .status());
    ValueId last_out = NewValue(yname + "_dynamic_tmp", DataType::kFloat, yshape);
    NodeId last;
    if (addend == kNoValue) {
      ONNXQ_ASSIGN_OR_RETURN(last, g_.InsertNodeBefore(id, "Mul", {cv, sm}, {last_out},
                                                       g_.UniqueNodeName(base + "_quant_output_scale_mul")));
    } else {
      ValueId so = NewValue(yname + "quant_scaled_output", DataType::kFloat, yshape);
      ONNXQ_RETURN_IF_ERROR(g_.InsertNodeBefore(id, "Mul", {cv, sm}, {so},
                                                g_.UniqueNodeName(base + "_quant_output_scale_mul"))
                                .status());
      ONNXQ_ASSIGN_OR_RETURN(last, g_.InsertNodeBefore(id, "Add", {so, addend}, {last_out},
                                                       g_.UniqueNodeName(yname + "_bias_add")));
    }
    // The last node takes over the original output value (name, consumers, graph output).
    g_.RemoveNode(id);
    ONNXQ_RETURN_IF_ERROR(g_.SetNodeOutput(last, 0, y));
    ONNXQ_RETURN_IF_ERROR(g_.RemoveValue(last_out));
    return true;
  }

  StatusOr<QWeight> QuantizeWeightFor(ValueId w, const Tensor& wt, const std::string& node_desc,
                                      const std::string& node_name, const std::string& op, bool is_conv,
                                      bool trans_b, float alpha) {
    const std::string wname = g_.value(w).name();
    // The integer op's layout: Conv [M, C/g, kH, kW] (channels on axis 0); MatMul / Gemm [K, N]
    // (channels on axis 1; Gemm's transB weight is stored transposed).
    const Tensor wf = trans_b ? Transpose2D(wt) : wt;
    WeightQuantOptions wo;
    wo.bits = o_.weight_bits;
    wo.per_channel = o_.per_channel;
    wo.axis = is_conv ? 0 : 1;
    wo.method = o_.weight_scale == "mse" ? WeightScaleMethod::kMse : WeightScaleMethod::kMinMax;
    auto r = QuantizeWeight(wf, wo, pool_);
    if (!r.ok()) {
      Status s = r.status();
      return s.Prepend(node_desc + ": weight '" + wname + "'");
    }
    QuantizedWeight qwt = std::move(r).value();
    std::vector<float> scales = qwt.scales();
    WeightRecord rec;
    rec.node = node_name;
    rec.op = op;
    rec.tensor = wname;
    rec.emitted_as = is_conv ? "ConvInteger" : "MatMulInteger";
    rec.dims = wt.dims();
    rec.axis = qwt.axis;
    rec.sqnr_db = qwt.sqnr_db;
    rec.scales = scales;
    records_.push_back(std::move(rec));

    const bool per_channel = qwt.axis >= 0;
    const int64_t ch = static_cast<int64_t>(scales.size());
    for (float& s : scales) s *= alpha;  // Gemm: alpha * (A B) folded into the B scales
    QWeight q;
    q.q = g_.AddInitializer(wname + (trans_b ? "_transposed_quantized" : "_quantized"), qwt.q);
    // Scale shape: broadcasts against the integer op's output ([N, M, H, W] or [..., N]).
    std::vector<int64_t> sdims;
    if (per_channel) sdims = is_conv ? std::vector<int64_t>{1, ch, 1, 1} : std::vector<int64_t>{ch};
    q.scale = g_.AddInitializer(wname + "_scale", Tensor::Float(sdims, scales));
    // Zero points are all 0 (symmetric). ConvInteger: a scalar (ONNX Runtime's CPU kernel refuses
    // per-channel weight zero points); MatMulInteger: one per column when per-channel.
    std::vector<int64_t> zdims;
    if (per_channel && !is_conv) zdims = {ch};
    ONNXQ_ASSIGN_OR_RETURN(Tensor zt, Tensor::Create(DataType::kInt8, zdims));
    q.zp = g_.AddInitializer(wname + "_zero_point", std::move(zt));
    return q;
  }

  StatusOr<DynInput> Dynamic(ValueId x, NodeId before) {
    auto it = dyn_.find(x);
    if (it != dyn_.end()) return it->second;
    const std::string name = g_.value(x).name();
    DynInput d;
    d.q = NewValue(name + "_quantized", DataType::kUint8, g_.value(x).shape);
    d.scale = NewValue(name + "_scale", DataType::kFloat, Shape());
    d.zp = NewValue(name + "_zero_point", DataType::kUint8, Shape());
    ONNXQ_RETURN_IF_ERROR(g_.InsertNodeBefore(before, "DynamicQuantizeLinear", {x}, {d.q, d.scale, d.zp},
                                              g_.UniqueNodeName(name + "_QuantizeLinear"))
                              .status());
    dyn_.emplace(x, d);
    return d;
  }

  Graph& g_;
  const DynamicQuantizeOptions& o_;
  ThreadPool* pool_;
  std::map<ValueId, DynInput> dyn_;
  std::map<std::string, QWeight> weights_;
  std::set<ValueId> replaced_;
  std::map<std::string, int64_t> quantized_;
  std::vector<std::string> notes_;
  std::vector<WeightRecord> records_;
};

}  // namespace

Status DynamicQuantizeOptions::Validate() const {
  if (weight_bits < 2 || weight_bits > 8) return InvalidArgument("weight bits must be in 2..8, got ", weight_bits);
  if (weight_scale != "minmax" && weight_scale != "mse")
    return InvalidArgument("weight scale method must be minmax or mse, got '", weight_scale, "'");
  for (const auto& t : op_types)
    if (t != "Conv" && t != "MatMul" && t != "Gemm")
      return InvalidArgument("dynamic quantization handles Conv, MatMul and Gemm; got op type '", t, "'");
  if (eval_batch_size < 1) return InvalidArgument("evaluation batch size must be at least 1");
  ONNXQ_RETURN_IF_ERROR(passes::ParsePipeline(passes).status());
  return Status::Ok();
}

std::string DynamicQuantizeOptions::ToJson(bool with_execution) const {
  JsonWriter j;
  j.BeginObject();
  j.Field("mode", "dynamic");
  j.Field("weight_granularity", per_channel ? "per-channel" : "per-tensor");
  j.Field("weight_bits", weight_bits);
  j.Field("weight_scale", weight_scale);
  j.Field("weight_type", "int8 symmetric narrow-range");
  j.Field("activation_type", "uint8 asymmetric per tensor, computed at run time (DynamicQuantizeLinear)");
  j.Key("op_types").BeginArray();
  for (const auto& t : op_types) j.String(t);
  j.EndArray();
  j.Key("exclude").BeginArray();
  for (const auto& e : exclude) j.String(e);
  j.EndArray();
  j.Field("passes", passes);
  if (with_execution) {
    j.Field("threads", threads);
    j.Field("eval_batch_size", eval_batch_size);
  }
  j.EndObject();
  return j.str();
}

StatusOr<DynamicQuantizeResult> QuantizeDynamic(const Model& float_model, const DynamicQuantizeOptions& o,
                                                const std::string& model_path) {
  const auto t_start = Clock::now();
  std::vector<std::pair<std::string, double>> timings;
  ONNXQ_RETURN_IF_ERROR(o.Validate());
  const int64_t opset = float_model.OpsetVersion("");
  if (opset < 11)
    return Unsupported("dynamic quantization writes DynamicQuantizeLinear (opset 11); the model imports "
                       "ai.onnx opset ", opset, ": convert it to opset 11 or newer first");

  DynamicQuantizeResult res;
  auto t0 = Clock::now();
  res.optimized = float_model;
  passes::OptimizeOptions po;
  ONNXQ_ASSIGN_OR_RETURN(po.passes, passes::ParsePipeline(o.passes));
  ONNXQ_ASSIGN_OR_RETURN(passes::PassReport pass_report, passes::Optimize(res.optimized, po));
  timings.emplace_back("optimize", MsSince(t0));

  t0 = Clock::now();
  res.quantized = res.optimized;
  ThreadPool pool(o.threads);
  DynamicRewriter rw(res.quantized, o, &pool);
  ONNXQ_RETURN_IF_ERROR(rw.Run());
  res.quantized.SetMetadata("onnxq.quantize_config", o.ToJson(/*with_execution=*/false));
  for (const auto& [op, k] : rw.quantized()) res.quantized_nodes += k;
  timings.emplace_back("quantize", MsSince(t0));

  if (o.eval_data != nullptr) {
    t0 = Clock::now();
    EvalOptions eo;
    eo.threads = o.threads;
    eo.batch_size = o.eval_batch_size;
    eo.progress = o.eval_progress;
    auto ev = Evaluate(res.quantized, *o.eval_data, &float_model, eo);
    if (!ev.ok()) {
      Status s = ev.status();
      return s.Prepend("evaluating the dynamically quantized model");
    }
    res.evaluation = std::move(ev).value();
    timings.emplace_back("evaluate", MsSince(t0));
  }

  // ---- report
  std::map<std::string, int64_t> float_ops;  // nodes of the optimized model left in float
  for (NodeId id : res.optimized.graph.order()) ++float_ops[res.optimized.graph.node(id).op_type];
  for (const auto& [op, k] : rw.quantized()) {
    float_ops[op] -= k;
    if (float_ops[op] == 0) float_ops.erase(op);
  }
  JsonWriter j;
  j.BeginObject();
  j.Field("tool", "onnxq quantize --mode dynamic");
  j.Key("config").Raw(o.ToJson());
  j.Key("inputs").BeginObject();
  j.Key("model");
  WriteModelFingerprint(j, model_path);
  if (o.eval_data != nullptr) {
    j.Key("evaluation_data").BeginObject();
    j.Field("samples", o.eval_data->size());
    if (o.eval_data->size() > 0) j.Field("first", o.eval_data->source(0));
    j.EndObject();
  }
  j.EndObject();
  j.Key("passes").Raw(pass_report.ToJson());
  j.Key("sizes").BeginObject();
  j.Field("float_initializer_bytes", InitializerBytes(float_model));
  j.Field("quantized_initializer_bytes", InitializerBytes(res.quantized));
  auto fb = SerializeModel(float_model);
  auto qb = SerializeModel(res.quantized);
  if (fb.ok()) j.Field("float_model_bytes", static_cast<int64_t>(fb->size()));
  if (qb.ok()) j.Field("quantized_model_bytes", static_cast<int64_t>(qb->size()));
  j.EndObject();
  j.Key("quantized_nodes").BeginObject();
  for (const auto& [op, k] : rw.quantized()) j.Field(op, k);
  j.EndObject();
  j.Field("dynamic_quantize_linear_nodes", rw.dynamic_inputs());
  j.Key("float_nodes").BeginObject();
  for (const auto& [op, k] : float_ops) j.Field(op, k);
  j.EndObject();
  j.Key("weights").BeginArray();
  for (const auto& w : rw.weights()) {
    j.BeginObject();
    j.Field("node", w.node).Field("op", w.op).Field("tensor", w.tensor).Field("emitted_as", w.emitted_as);
    j.Key("shape").BeginArray();
    for (int64_t d : w.dims) j.Int(d);
    j.EndArray();
    j.Field("bits", o.weight_bits).Field("axis", w.axis).Field("zero_point", 0);
    j.Key("sqnr_db").Number(w.sqnr_db);
    j.Key("scale").BeginArray();
    for (float s : w.scales) j.Number(s);
    j.EndArray();
    j.EndObject();
  }
  j.EndArray();
  j.Key("notes").BeginArray();
  for (const auto& n : rw.notes()) j.String(n);
  j.EndArray();
  if (res.evaluation) {
    const EvalResult& e = *res.evaluation;
    j.Key("evaluation").BeginObject();
    j.Field("runner", "onnxq executor (integer ConvInteger / MatMulInteger kernels)");
    j.Field("reference", "the float input model in onnxq's executor");
    j.Field("batch_size", o.eval_batch_size);
    j.Field("count", e.count);
    if (e.has_labels) {
      j.Field("top1", e.top1).Field("top5", e.top5);
      j.Field("reference_top1", e.reference_top1).Field("reference_top5", e.reference_top5);
    }
    j.Field("top1_agreement", e.top1_agreement).Field("mean_kl", e.mean_kl);
    j.EndObject();
  }
  timings.emplace_back("total", MsSince(t_start));
  j.Key("timings_ms").BeginObject();
  for (const auto& [k, v] : timings) j.Field(k, v);
  j.EndObject();
  j.EndObject();
  res.report_json = j.str();
  return res;
}

}  // namespace onnxq::quant
