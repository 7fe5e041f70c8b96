// Building the quantization plan, and weight/bias quantization on it.
#include "onnxq/quant/qdq_plan.h"

#include <algorithm>
#include <functional>
#include <cmath>
#include <limits>
#include <numeric>
#include <set>
#include <sstream>

namespace onnxq::quant {
namespace {

bool IsQuantizedOp(const Node& n) {
  static const char* const kOps[] = {"Conv", "Gemm", "MatMul", "Add", "Mul", "Concat",
                                     "MaxPool", "AveragePool", "GlobalAveragePool"};
  if (!n.domain.empty() && n.domain != "ai.onnx") return false;
  for (const char* op : kOps)
    if (n.op_type == op) return true;
  return false;
}

// Ops whose output is a selection or rearrangement of their input values: the output lies on the
// input's quantization grid, and ONNX Runtime drops DQ -> op -> Q only with equal params.
bool IsPassThrough(const Node& n) {
  if (!n.domain.empty() && n.domain != "ai.onnx") return false;
  return n.op_type == "Reshape" || n.op_type == "Flatten" || n.op_type == "Transpose" ||
         n.op_type == "Squeeze" || n.op_type == "Unsqueeze" || n.op_type == "MaxPool";
}

bool IsFloat(const Graph& g, ValueId v) {
  return v != kNoValue && g.value(v).dtype == DataType::kFloat;
}

bool IsFloatInit(const Graph& g, ValueId v) {
  return v != kNoValue && g.value(v).is_initializer() &&
         g.value(v).initializer()->dtype() == DataType::kFloat;
}

// Constant scalar of a Clip bound (input slot or, before opset 11, attribute).
bool ClipBounds(const Model& m, const Node& n, double* lo, double* hi) {
  const Graph& g = m.graph;
  *lo = -std::numeric_limits<double>::infinity();
  *hi = std::numeric_limits<double>::infinity();
  if (m.OpsetVersion("") < 11) {
    auto a = n.attrs.GetFloat("min", -std::numeric_limits<float>::max());
    auto b = n.attrs.GetFloat("max", std::numeric_limits<float>::max());
    if (!a.ok() || !b.ok()) return false;
    *lo = *a;
    *hi = *b;
    return true;
  }
  for (int k = 1; k <= 2; ++k) {
    ValueId v = n.input(static_cast<size_t>(k));
    if (v == kNoValue) continue;
    const Tensor* t = g.value(v).initializer();
    if (t == nullptr || t->numel() != 1) return false;
    (k == 1 ? *lo : *hi) = t->GetAsDouble(0);
  }
  return true;
}

bool Excluded(const Node& n, const PlanOptions& o) {
  for (const auto& e : o.exclude)
    if (e == n.name || e == n.op_type) return true;
  return false;
}

struct UnionFind {
  std::map<ValueId, ValueId> parent;
  ValueId Find(ValueId v) {
    auto it = parent.find(v);
    if (it == parent.end()) {
      parent[v] = v;
      return v;
    }
    if (it->second == v) return v;
    ValueId r = Find(it->second);
    parent[v] = r;
    return r;
  }
  void Join(ValueId a, ValueId b) {
    a = Find(a);
    b = Find(b);
    if (a != b) parent[b] = a;
  }
};

}  // namespace

QuantParams FitIntoBounds(QuantParams p, double lo, double hi) {
  // A few ulps at most: the calibrated range already lies inside the activation's bounds, only the
  // float32 rounding of the scale can push the grid's end past them.
  for (int i = 0; i < 64 && (p.range_max() > hi || p.range_min() < lo); ++i)
    p.scale = std::nextafter(p.scale, 0.0f);
  return p;
}

StatusOr<QdqPlan> BuildQdqPlan(const Model& model, const PlanOptions& options) {
  const Graph& g = model.graph;
  QdqPlan plan;
  if (model.OpsetVersion("") < 13)
    return Unsupported("QDQ quantization needs ai.onnx opset 13 or newer (per-channel "
                       "DequantizeLinear); the model imports opset ",
                       model.OpsetVersion(""), ": convert it first");

  std::set<ValueId> points;  // activation tensors with Q/DQ
  std::set<ValueId> noted_inputs;
  UnionFind uf;
  std::set<NodeId> qnodes;

  // Marks v (input of a quantized op) as a point; walks up through pass-through producers so that
  // DQ -> Reshape -> Q patterns share params.
  std::function<void(ValueId)> mark = [&](ValueId v) {
    if (!IsFloat(g, v) || g.value(v).is_initializer()) return;
    if (!options.quantize_graph_inputs && g.IsGraphInput(v)) {
      if (noted_inputs.insert(v).second)
        plan.notes.push_back("graph input '" + g.value(v).name() + "' left in float (its consumers run on it unquantized)");
      return;
    }
    bool fresh = points.insert(v).second;
    uf.Find(v);
    if (!fresh) return;
    const Node* p = g.Producer(v);
    if (p != nullptr && IsPassThrough(*p) && !Excluded(*p, options) && IsFloat(g, p->input(0)) &&
        !g.value(p->input(0)).is_initializer()) {
      mark(p->input(0));
      uf.Join(p->input(0), v);
      qnodes.insert(p->id());
    }
  };

  for (NodeId id : g.order()) {
    const Node& n = g.node(id);
    if (!IsQuantizedOp(n)) continue;
    if (Excluded(n, options)) {
      plan.notes.push_back(n.Describe() + ": excluded, left in float");
      continue;
    }
    if (n.Is("Conv") || n.Is("Gemm") || n.Is("MatMul")) {
      WeightedNode w;
      w.node = id;
      w.preact = n.output(0);
      if (n.Is("MatMul")) {
        if (IsFloatInit(g, n.input(1)) && !g.value(n.input(0)).is_initializer()) {
          const Tensor* t = g.value(n.input(1)).initializer();
          if (t->rank() != 2) {
            plan.notes.push_back(n.Describe() + ": MatMul weight of rank " + std::to_string(t->rank()) +
                                 " left in float");
            continue;
          }
          w.input = n.input(0);
          w.weight = n.input(1);
          w.weight_slot = 1;
          w.axis = 1;
        } else if (!IsFloat(g, n.input(0)) || !IsFloat(g, n.input(1)) ||
                   g.value(n.input(0)).is_initializer() || g.value(n.input(1)).is_initializer()) {
          plan.notes.push_back(n.Describe() + ": MatMul operand layout not handled, left in float");
          continue;
        }
      } else {
        if (!IsFloatInit(g, n.input(1)) || !IsFloat(g, n.input(0)) ||
            g.value(n.input(0)).is_initializer()) {
          plan.notes.push_back(n.Describe() + ": weight is not a float initializer, left in float");
          continue;
        }
        w.input = n.input(0);
        w.weight = n.input(1);
        if (n.Is("Gemm")) {
          ONNXQ_ASSIGN_OR_RETURN(int64_t ta, n.attrs.GetInt("transA", 0));
          ONNXQ_ASSIGN_OR_RETURN(int64_t tb, n.attrs.GetInt("transB", 0));
          ONNXQ_ASSIGN_OR_RETURN(float alpha, n.attrs.GetFloat("alpha", 1.0f));
          ONNXQ_ASSIGN_OR_RETURN(float beta, n.attrs.GetFloat("beta", 1.0f));
          if (ta != 0 || alpha != 1.0f || beta != 1.0f) {
            plan.notes.push_back(n.Describe() + ": Gemm with transA/alpha/beta left in float");
            continue;
          }
          w.axis = tb ? 0 : 1;
          ValueId c = n.input(2);
          const Tensor* ct = c != kNoValue ? g.value(c).initializer() : nullptr;
          const Tensor* wt = g.value(w.weight).initializer();
          if (c != kNoValue && !(IsFloatInit(g, c) && ct->rank() == 1 &&
                                 ct->dims()[0] == wt->dims()[static_cast<size_t>(w.axis)])) {
            plan.notes.push_back(n.Describe() + ": Gemm bias is not a 1-D constant, left in float");
            continue;
          }
          w.bias = c;
        } else {
          w.axis = 0;
          if (n.input(2) != kNoValue) {
            if (!IsFloatInit(g, n.input(2))) {
              plan.notes.push_back(n.Describe() + ": bias is not a float initializer, left in float");
              continue;
            }
            w.bias = n.input(2);
          }
        }
        if (g.value(w.weight).initializer()->rank() < 2) {
          plan.notes.push_back(n.Describe() + ": weight rank below 2, left in float");
          continue;
        }
      }
      if (w.weight != kNoValue) plan.weighted.push_back(w);
      qnodes.insert(id);
      for (size_t k = 0; k < n.num_inputs(); ++k)
        if (static_cast<ValueId>(n.input(k)) != w.weight && n.input(k) != w.bias) mark(n.input(k));
      continue;
    }
    // Elementwise, Concat and pooling: every float input must be an activation.
    bool ok = true;
    for (ValueId v : n.inputs())
      if (v != kNoValue && (!IsFloat(g, v) || g.value(v).is_initializer())) ok = false;
    if (n.Is("Concat") || n.Is("MaxPool")) ok = ok && n.num_outputs() == 1;
    if (!ok) {
      plan.notes.push_back(n.Describe() + ": constant or non-float input, left in float");
      continue;
    }
    qnodes.insert(id);
    for (ValueId v : n.inputs()) mark(v);
  }

  // Outputs of quantized ops (after their fused activation) consumed by a quantized op are
  // already points via `mark`. Concat output shares its inputs' params; pass-through nodes in the
  // node set share too (done in mark). A quantized op whose output feeds a pass-through chain
  // into a quantized op was handled by mark walking up.
  for (NodeId id : qnodes) {
    const Node& n = g.node(id);
    if (n.Is("Concat") && points.count(n.output(0))) {
      for (ValueId v : n.inputs()) uf.Join(n.output(0), v);
    }
    if (n.Is("MaxPool") && points.count(n.output(0))) uf.Join(n.input(0), n.output(0));
  }
  // A MaxPool whose output is not consumed by a quantized op still needs Q on its output for
  // ONNX Runtime's DQ -> MaxPool -> Q pattern; it is a point of its input's group.
  for (NodeId id : qnodes) {
    const Node& n = g.node(id);
    if (n.Is("MaxPool") && !points.count(n.output(0)) && points.count(n.input(0)) &&
        IsFloat(g, n.output(0))) {
      points.insert(n.output(0));
      uf.Join(n.input(0), n.output(0));
    }
  }

  // Groups.
  std::map<ValueId, int> root_index;
  for (ValueId v : points) {
    ValueId r = uf.Find(v);
    auto it = root_index.find(r);
    int gi;
    if (it == root_index.end()) {
      gi = static_cast<int>(plan.groups.size());
      root_index[r] = gi;
      plan.groups.emplace_back();
    } else {
      gi = it->second;
    }
    plan.group_of[v] = gi;
    plan.groups[static_cast<size_t>(gi)].members.push_back(v);
  }
  for (auto& grp : plan.groups) {
    for (ValueId v : grp.members) {
      const Node* p = g.Producer(v);
      bool shared_out = p != nullptr && (IsPassThrough(*p) || p->Is("Concat")) &&
                        plan.group_of.count(p->input(0)) &&
                        plan.group_of.at(p->input(0)) == plan.group_of.at(v);
      if (!shared_out) {
        grp.observed.push_back(v);
        grp.simulated.push_back(v);
      }
      if (p != nullptr) {
        double lo = -1e300, hi = 1e300;
        if (p->Is("Relu")) {
          lo = 0;
        } else if (p->Is("Clip")) {
          double a, b;
          if (ClipBounds(model, *p, &a, &b)) {
            lo = a;
            hi = b;
          }
        }
        grp.bound_lo = std::max(grp.bound_lo, lo);
        grp.bound_hi = std::min(grp.bound_hi, hi);
      }
    }
    if (grp.observed.empty()) grp.observed.push_back(grp.members.front());
  }
  plan.quantized_nodes.assign(qnodes.begin(), qnodes.end());
  // Order weighted nodes topologically (they already are) and keep only those whose activation
  // input is a point (always true by construction).
  return plan;
}

Status QuantizeWeights(const Model& model, QdqPlan& plan, const WeightOptions& options,
                       ThreadPool* pool) {
  const Graph& g = model.graph;
  for (WeightedNode& w : plan.weighted) {
    WeightQuantOptions o;
    o.bits = options.bits;
    o.per_channel = options.per_channel;
    o.axis = w.axis;
    o.method = options.method;
    o.narrow_range = true;
    auto q = QuantizeWeight(*g.value(w.weight).initializer(), o, pool);
    if (!q.ok()) {
      Status s = q.status();
      return s.Prepend("quantizing the weight '" + g.value(w.weight).name() + "' of " +
                       g.node(w.node).Describe());
    }
    w.qweight = std::move(q).value();
    // An all-zero channel (e.g. a dead input channel zeroed before planning) gets scale 1 from the
    // zero-range rule, which would leave its int32 bias (scale = input scale x weight scale) with a
    // step as coarse as the input's. Any scale represents zeros exactly, so give it the smallest
    // scale of the live channels and the bias keeps its precision.
    if (w.qweight.axis >= 0 && w.qweight.params.size() > 1) {
      const Tensor& qt = w.qweight.q;
      const int64_t ch = static_cast<int64_t>(w.qweight.params.size());
      int64_t inner = 1, outer = 1;
      for (size_t k = 0; k < qt.rank(); ++k) {
        if (static_cast<int>(k) < w.qweight.axis) outer *= qt.dims()[k];
        if (static_cast<int>(k) > w.qweight.axis) inner *= qt.dims()[k];
      }
      std::vector<bool> zero(static_cast<size_t>(ch), true);
      const float* wf = g.value(w.weight).initializer()->data<float>();
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t c = 0; c < ch; ++c)
          for (int64_t i = 0; i < inner && zero[static_cast<size_t>(c)]; ++i)
            if (wf[(o * ch + c) * inner + i] != 0.0f) zero[static_cast<size_t>(c)] = false;
      float live_min = 0;
      for (int64_t c = 0; c < ch; ++c)
        if (!zero[static_cast<size_t>(c)]) {
          float sc = w.qweight.params[static_cast<size_t>(c)].scale;
          live_min = live_min == 0 ? sc : std::min(live_min, sc);
        }
      if (live_min > 0)
        for (int64_t c = 0; c < ch; ++c)
          if (zero[static_cast<size_t>(c)]) w.qweight.params[static_cast<size_t>(c)].scale = live_min;
    }
  }
  return Status::Ok();
}

namespace {

// The int32 bias must leave the accumulator room for the products: |bias_q| <= 2^30.
constexpr double kMaxBiasCode = 1073741824.0;

// A bias whose code would not fit (input scale x weight scale far below |bias|, as after a nearly
// dead activation whose calibrated range is ~1e-11) would be clamped and the layer's output lost.
// Instead the weight scale of the offending channels grows until the bias fits (as ONNX Runtime's
// quantizer does) and those channels are requantized: their weights get coarser, which costs
// little exactly when the input is that small. Returns the number of channels changed.
StatusOr<int64_t> FitBiasInInt32(const Graph& g, float input_scale, WeightedNode& w) {
  const Tensor& bias = *g.value(w.bias).initializer();
  const Tensor& weight = *g.value(w.weight).initializer();
  if (bias.dtype() != DataType::kFloat || weight.dtype() != DataType::kFloat) return int64_t{0};
  QuantizedWeight& qw = w.qweight;
  const int64_t nb = bias.numel();
  const bool per_tensor = qw.params.size() == 1;
  if (!per_tensor && static_cast<int64_t>(qw.params.size()) != nb) return int64_t{0};
  const float* b = bias.data<float>();
  std::vector<float> need(qw.params.size(), 0.f);
  for (int64_t c = 0; c < nb; ++c) {
    const size_t k = per_tensor ? 0 : static_cast<size_t>(c);
    if (!std::isfinite(b[c])) continue;  // QuantizeBias names it
    const double code = std::fabs(double(b[c])) / (double(input_scale) * double(qw.params[k].scale));
    if (code > kMaxBiasCode)
      need[k] = std::max(need[k], static_cast<float>(std::fabs(double(b[c])) /
                                                      (double(input_scale) * kMaxBiasCode) * 1.0001));
  }
  int64_t changed = 0;
  for (size_t k = 0; k < need.size(); ++k)
    if (need[k] > qw.params[k].scale) {
      qw.params[k].scale = need[k];
      ++changed;
    }
  if (changed == 0) return int64_t{0};
  // Requantize with the final scales (only channels whose scale changed differ).
  const auto& dims = weight.dims();
  const int64_t n = weight.numel();
  int64_t inner = 1;
  if (qw.axis >= 0)
    for (size_t d = static_cast<size_t>(qw.axis) + 1; d < dims.size(); ++d) inner *= dims[d];
  const int64_t channels = qw.axis >= 0 ? dims[static_cast<size_t>(qw.axis)] : 1;
  const float* x = weight.data<float>();
  std::vector<float> deq(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const size_t k = per_tensor ? 0 : static_cast<size_t>((i / inner) % channels);
    const int32_t q = QuantizeValue(x[i], qw.params[k]);
    if (qw.q.dtype() == DataType::kInt8) {
      qw.q.mutable_data<int8_t>()[i] = static_cast<int8_t>(q);
    } else if (qw.q.dtype() == DataType::kInt16) {
      qw.q.mutable_data<int16_t>()[i] = static_cast<int16_t>(q);
    } else {
      return Internal("weight of ", g.node(w.node).Describe(), " has unexpected type ",
                      DataTypeName(qw.q.dtype()));
    }
    deq[static_cast<size_t>(i)] = DequantizeValue(q, qw.params[k]);
  }
  qw.sqnr_db = Sqnr(weight.span<float>(), deq);
  return changed;
}

}  // namespace

Status QuantizeBiases(const Model& model, QdqPlan& plan) {
  const Graph& g = model.graph;
  for (WeightedNode& w : plan.weighted) {
    w.has_qbias = false;
    if (w.bias == kNoValue) continue;
    const ActivationGroup* in = plan.GroupOf(w.input);
    if (in == nullptr) continue;  // float input (e.g. a graph input): the bias stays float
    if (!in->has_params)
      return Internal("bias of ", g.node(w.node).Describe(), ": input has no quantization params");
    ONNXQ_ASSIGN_OR_RETURN(int64_t widened, FitBiasInInt32(g, in->params.scale, w));
    if (widened > 0) {
      std::ostringstream note;
      note << g.node(w.node).Describe() << ": weight scale of " << widened
           << " channel(s) raised so that the int32 bias fits (input scale " << in->params.scale
           << ")";
      plan.notes.push_back(note.str());
    }
    std::vector<float> ws = w.qweight.scales();
    auto qb = QuantizeBias(*g.value(w.bias).initializer(), in->params.scale, ws);
    if (!qb.ok()) {
      Status s = qb.status();
      return s.Prepend("quantizing the bias '" + g.value(w.bias).name() + "'");
    }
    w.qbias = std::move(qb).value();
    w.has_qbias = true;
  }
  return Status::Ok();
}

}  // namespace onnxq::quant
